"""tinytracker: gaze estimation experiments from GazeCapture to Sony's IMX500."""

import os

# albumentations asks PyPI for a newer release at every import: on an offline cluster node
# that warns or waits. Users who want the check set NO_ALBUMENTATIONS_UPDATE=0.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
