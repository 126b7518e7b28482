"""Gaze on real photos, videos and cameras: ``python -m tinytracker.predict``.

:mod:`tinytracker.data.face_detection` (Haar face/eye boxes in GazeCapture's conventions) ->
``tinytracker.data.inputs`` (the data pipeline's crops, face grid and grid embedding) ->
``runner`` (checkpoint, or ONNX through :mod:`tinytracker.onnx_runner`; a saved
:mod:`tinytracker.correction` applied) -> ``screen`` (cm -> screen points/pixels) ->
``records`` (CSV/JSON) and ``draw`` (annotated PNG/mp4); ``pipeline`` ties them together,
``sources`` reads the input.
"""
