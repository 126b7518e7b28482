"""tinytracker: gaze estimation experiments from GazeCapture to Sony's IMX500."""

__version__ = "0.1.0"
