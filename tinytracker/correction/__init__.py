"""Per-person gaze corrections: fitting and applying them (``corrections``) and the file that
holds them (``saved``).

Below both users: ``tinytracker.calibrate`` fits and saves corrections, ``tinytracker.predict``
loads and applies them; neither imports the other for it.
"""
