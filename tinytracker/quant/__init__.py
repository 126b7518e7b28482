"""Quantization of the float gaze nets: wrappers around ``tinytracker.models``, never forks.

* :mod:`tinytracker.quant.scheme`: ``QuantScheme``, the one declaration of the scheme
  (bits, scaling, layer groups) that the config maps onto; no Brevitas import.
* :mod:`tinytracker.quant.brevitas`: ``BrevitasNet``, the int8 (or mixed-precision)
  fake-quantized version of any float net, and ``calibrate``; built from ``folding`` (batch
  norm), ``swap`` (float -> Brevitas layers) and ``input_links`` (int32 biases).
* :mod:`tinytracker.quant.training`: the float -> reference test -> calibrated quantized
  module start of a QAT / PTQ run (``python -m tinytracker.train +experiment=qat``).
* :mod:`tinytracker.quant.checkpoints`: float or quantized? ``is_quantized_checkpoint``,
  ``is_quantized_net`` and the checkpoint-kind checks (no Brevitas import).
* :mod:`tinytracker.quant.mct`: Sony MCT post-training quantization for the IMX500, around
  an fx-traceable wrapper of the float TinyTracker / TinyTrackerS (``format=imx500``).
* :mod:`tinytracker.quant.float_weights`: the float net of any checkpoint (a QAT
  checkpoint's float weights), where another quantizer starts.

This package imports ``tinytracker.models``; nothing in ``models`` imports it.
"""
