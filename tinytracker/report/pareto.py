"""The Pareto front of points to be minimised in both coordinates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(x, y)`` points, both minimised, in order of ``x``.

    A point is dominated when another point is no worse in both coordinates and better in at
    least one. So every copy of a front point is on the front (neither dominates the other),
    and of two points with the same ``x`` only the one with the smaller ``y`` is.
    Ties in the result are ordered by ``y``, then by index.
    """
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            raise ValueError(f"point {i} is not a number: {(x, y)}")
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front: list[int] = []
    best: tuple[float, float] | None = None  # the front point with the least y so far
    for i in order:
        x, y = points[i]
        # every earlier point has x' <= x; one dominates (x, y) unless y beats all of them, or
        # (x, y) repeats the point holding the least y
        if best is None or y < best[1] or (x, y) == best:
            front.append(i)
            best = (x, y)
    return front
