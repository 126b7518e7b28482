"""Where calibration dots go, and which recorded frames stand in for them.

The pattern is the usual 13-point one (a 3x3 grid at 10%, 50% and 90% of the screen's width
and height, plus the centres of its four quadrants at 30% / 70%), ordered so that every prefix
is spread over the screen: ``points=1`` is the centre; 3 the centre and the top corners (a
triangle, so an affine map is determined); 5 the centre and the four corners; 9 the 3x3 grid;
13 the whole pattern. GazeCapture's calibration uses 9 or 13 such dots.

The guided capture shows the dots of this pattern; on a recorded data set (whose dots are
anywhere) :func:`select_frames` picks, for each pattern position in turn, the frame whose dot is
closest, preferring dots not used yet. Deterministic: ties go to the earlier frame. The screen
is taken as the rectangle the person's dots span (GazeCapture recordings mix portrait and
landscape screens, and the processed layout does not keep the orientation).
"""

from __future__ import annotations

import numpy as np

# (x, y) as fractions of the screen, from its top-left corner, x to the right, y down.
PATTERN: tuple[tuple[float, float], ...] = (
    (0.5, 0.5),
    (0.1, 0.1), (0.9, 0.1),
    (0.1, 0.9), (0.9, 0.9),
    (0.5, 0.1), (0.1, 0.5), (0.9, 0.5), (0.5, 0.9),
    (0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7),
)
MAX_POINTS = len(PATTERN)

# A screen as the rectangle it covers in camera coordinates (cm): x0, x1, y0, y1 with
# y1 the top edge (camera coordinates have y up).
ScreenBox = tuple[float, float, float, float]


def check_pattern_points(points: int, key: str = "points") -> None:
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
        raise ValueError(f"{key} must be between 1 and {MAX_POINTS} (the {MAX_POINTS}-point "
                         f"calibration pattern), got {points!r}")


def pattern_fractions(points: int) -> np.ndarray:
    """The first ``points`` positions of :data:`PATTERN`, ``(points, 2)`` screen fractions."""
    check_pattern_points(points)
    return np.asarray(PATTERN[:points], dtype=np.float64)


def pattern_cm(points: int, box: ScreenBox) -> np.ndarray:
    """Pattern positions in camera coordinates (cm) on the screen ``box``."""
    x0, x1, y0, y1 = box
    frac = pattern_fractions(points)
    return np.stack([x0 + frac[:, 0] * (x1 - x0), y1 - frac[:, 1] * (y1 - y0)], axis=1)


def bounding_box(targets_cm: np.ndarray) -> ScreenBox:
    """The rectangle the dots of a recording span: the screen, when its size is unknown."""
    (x0, y0), (x1, y1) = targets_cm.min(axis=0), targets_cm.max(axis=0)
    return float(x0), float(x1), float(y0), float(y1)


def select_frames(targets_cm: np.ndarray, points: int, box: ScreenBox | None = None,
                  decimals: int = 4) -> np.ndarray:
    """Row indices of ``points`` frames whose dots are closest to the pattern positions.

    ``targets_cm (N, 2)``: each frame's dot; ``box``: the screen (default: the dots' bounding
    box). Frames showing the same dot (equal to ``decimals``) count as one dot: a dot is
    reused only once every dot has been used. Raises when fewer than ``points`` frames exist.
    """
    targets_cm = np.asarray(targets_cm, dtype=np.float64)
    if len(targets_cm) < points:
        raise ValueError(f"{len(targets_cm)} frames cannot give {points} calibration points")
    goals = pattern_cm(points, box or bounding_box(targets_cm))
    dot_of = np.unique(targets_cm.round(decimals), axis=0, return_inverse=True)[1].reshape(-1)
    used_frames = np.zeros(len(targets_cm), dtype=bool)
    used_dots: set[int] = set()
    chosen: list[int] = []
    for goal in goals:
        fresh = ~used_frames & ~np.isin(dot_of, list(used_dots))
        pool = fresh if fresh.any() else ~used_frames
        dist = np.linalg.norm(targets_cm - goal, axis=1)
        dist[~pool] = np.inf
        row = int(np.argmin(dist))  # first minimum: the earlier frame wins ties
        chosen.append(row)
        used_frames[row] = True
        used_dots.add(int(dot_of[row]))
    return np.asarray(chosen, dtype=np.int64)
