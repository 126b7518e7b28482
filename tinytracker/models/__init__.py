"""Float gaze models and their footprint (parameters, MACs, stored size).

Quantized variants wrap these modules in ``tinytracker.quant``; nothing here imports it.
"""

from tinytracker.models.footprint import Footprint, footprint
from tinytracker.models.itracker import ITracker
from tinytracker.models.tinytracker import TinyTracker, TinyTrackerS

__all__ = [
    "Footprint",
    "ITracker",
    "TinyTracker",
    "TinyTrackerS",
    "footprint",
]
