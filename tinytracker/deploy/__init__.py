"""The camera side of an IMX500 deployment, shared by the Raspberry Pi program and its emulation.

- :mod:`~tinytracker.deploy.roi`: face box -> inference ROI on the sensor, the ISP's crop+scale
  and input quantisation emulated in numpy, the normalised box the host head takes;
- :mod:`~tinytracker.deploy.decode`: ``dnnParams.xml`` and the sensor's output tensor;
- :mod:`~tinytracker.deploy.head`: the numpy-only host head and its file;
- :mod:`~tinytracker.deploy.manifest`: ``deploy.json``;
- :mod:`~tinytracker.deploy.camera`: the steps the Pi and the emulation share, and
  ``emulate_frame``: one frame through the camera's path on a computer;
- :mod:`~tinytracker.deploy.pi`: ``python -m tinytracker.deploy.pi network.rpk deploy.json``.

Nothing here imports torch at module level, so the Pi needs numpy (and OpenCV, picamera2).
"""
