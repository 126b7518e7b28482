"""Export trained gaze models for deployment: ``python -m tinytracker.export``.

``onnx``: float32 ONNX, or int8 QCDQ ONNX for quantized (QAT/PTQ) checkpoints
(:mod:`tinytracker.export.onnx`). ``imx500``: not implemented yet.
"""
