"""Quantization of the float gaze nets: wrappers around ``tinytracker.models``, never forks.

* :mod:`tinytracker.quant.brevitas`: ``BrevitasNet``, the int8 (or mixed-precision)
  fake-quantized version of any float net, and ``calibrate``.
* :mod:`tinytracker.quant.training`: the float -> reference test -> calibrated quantized
  module start of a QAT / PTQ run (``python -m tinytracker.train +experiment=qat``).
* :mod:`tinytracker.quant.checkpoints`: float vs quantized checkpoint checks (no Brevitas
  import).

This package imports ``tinytracker.models``; nothing in ``models`` imports it.
"""
