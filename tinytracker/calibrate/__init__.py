"""Per-person calibration of gaze models (``python -m tinytracker.calibrate``).

``pattern`` (where the dots go, which frames stand in for them) ->
:mod:`tinytracker.correction.corrections` (offset, affine, ridge, SVR: fit and apply) ->
``protocol`` (per subject: calibrate on a few frames, test on the rest; the
error-against-points curve). ``model_outputs`` runs a checkpoint or an ONNX file over a split;
:mod:`tinytracker.correction.saved` is the corrections file ``predict`` applies; ``capture``
records a calibration set with a camera; ``calibration_set`` fits on such a set.
"""
