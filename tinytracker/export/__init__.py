"""Export trained gaze models for deployment: ``python -m tinytracker.export``.

``onnx``: float32 ONNX, or int8 QCDQ ONNX for quantized (QAT/PTQ) checkpoints
(:mod:`tinytracker.export.onnx`). ``imx500``: Sony MCT quantization for the IMX500 and Sony's
converter, ``packerOut.zip`` for ``imx500-package`` on a Raspberry Pi
(:mod:`tinytracker.export.imx500`, :mod:`tinytracker.export.imxconv`). ``tflite``: full-integer
LiteRT for CPUs and microcontrollers, through ``litert-torch`` and TFLite Micro in their own
environment (:mod:`tinytracker.export.tflite`, :mod:`tinytracker.export.litert_env`).
"""
