"""The generator's knobs (:class:`SyntheticParams`), its version and its random streams.

``conf/data/synthetic.yaml``'s ``synthetic:`` node overrides these defaults for training; the
defaults of the set size (``seed``, ``subjects``, ``frames_per_subject``) are the YAML's, so a
generator called without them builds the same set as ``tinytracker.train`` (a test compares
the two).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

GENERATOR_VERSION = 2  # 2: kappa_v_std 1.0 -> 0.7 deg
# Seed streams: SeedSequence([seed, stream, ...]), so the split draw never shifts a subject's.
SUBJECT_STREAM, SPLIT_STREAM = 0, 1


@dataclass
class SyntheticParams:
    """Every knob of the generator (defaults: see :mod:`tinytracker.data.synthetic` for the
    sources)."""

    seed: int = 0
    subjects: int = 120  # one recording each; many people, few frames each (as the YAML)
    frames_per_subject: int = 30
    frames_per_dot: int = 5  # consecutive frames showing the same dot
    val_fraction: float = 0.15  # of subjects; at least one
    test_fraction: float = 0.15  # of subjects; at least one
    focal_px: float = 600.0  # pinhole focal length for the 480x640 frame
    distance_min_cm: float = 25.0  # eye-to-screen-plane distance, per subject
    distance_max_cm: float = 45.0
    head_x_mean_cm: float = 1.06  # centre line of the iPhone 6 screen
    head_x_std_cm: float = 1.5
    head_y_mean_cm: float = -4.0  # eyes a little below the camera, over the screen's top half
    head_y_std_cm: float = 2.0
    head_jitter_cm: float = 0.3  # per frame, each of X, Y, Z
    roll_std_deg: float = 3.0  # per subject
    roll_jitter_deg: float = 1.0  # per frame
    fixation_noise_cm: float = 0.3  # per axis, per frame: gaze lands off the dot
    kappa_h_mean_deg: float = 5.0  # angle kappa, visual vs optical axis (temporal, mirrored)
    kappa_h_std_deg: float = 1.5
    kappa_v_mean_deg: float = 1.5
    kappa_v_std_deg: float = 0.7
    iris_gain_h_cm: float = 4.0  # iris travel per unit sine of yaw (exaggerated eyeball)
    iris_gain_v_cm: float = 2.2  # iris travel per unit sine of pitch
    blink_prob: float = 0.03  # closed eyes, eye boxes invalid
    blur_max_sigma_px: float = 1.3  # per frame sigma ~ U(0, max)
    jpeg_quality: int = 90  # of the raw frames (GazeCapture ships JPEG frames)

    def __post_init__(self) -> None:
        if self.subjects < 3:
            raise ValueError(f"subjects must be >= 3 (train, val and test need one each), "
                             f"got {self.subjects}")
        for key in ("frames_per_subject", "frames_per_dot"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.distance_min_cm <= self.distance_max_cm:
            raise ValueError("need 0 < distance_min_cm <= distance_max_cm, got "
                             f"{self.distance_min_cm}, {self.distance_max_cm}")


def make_params(**values: Any) -> SyntheticParams:
    """``SyntheticParams`` from keyword values, naming any unknown key."""
    known = {f.name for f in fields(SyntheticParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(known)}")
    return SyntheticParams(**values)
