"""Per-person corrections of a gaze model, fitted on a few calibration frames.

Kinds (``kind=``), each a map from the model's output (and, for the feature kinds, its
penultimate features) to the corrected gaze point in cm:

* ``offset``: ``g + b``, a constant shift (the person's kappa seen on the screen plane, mostly);
  from 1 point.
* ``affine``: ``A g + b`` (6 parameters), also undoing a per-person scale, shear or rotation of
  the predicted point; from 3 points whose predictions are not collinear. Works on any model
  output, the INT8 model's included (calibration runs on the host, after the sensor). ``A`` is
  pulled towards the identity with the weight of ``prior_points`` calibration points of
  average spread (a ridge penalty on ``A - I``; ``b`` is free): a few noisy points otherwise
  give wild maps (measured: 3 points, no prior, 1.37 -> 4.2 cm). 0 is plain least squares,
  which removes an exact affine distortion exactly; a very large weight is ``offset``.
* ``ridge``: ``g + b + W (f - mean f)``, a ridge regression of the residual (label minus
  prediction) on the penultimate features ``f``, with an unpenalised intercept; alpha is
  relative to the features' mean squared norm (alpha = 1: the penalty weighs as much as one
  point of average spread), so it does not depend on their scale. With one point it reduces
  to ``offset``, so it needs 2.
* ``svr``: the same linear form fitted by a linear epsilon-SVR per axis (scikit-learn), after
  the GazeCapture paper (Krafka et al., CVPR 2016, sec. 5.3: an SVR on the penultimate
  features, fitted per person, cut iTracker's phone error from 1.71 to 1.34 cm). The residual
  rather than the gaze is regressed, so with a handful of points the model's own prediction
  stays the prior. From 2 points.

The defaults of :class:`FitOptions` were chosen on the validation subjects of the default
synthetic data (default TinyTracker; mean error over 3, 5, 9 and 13 points), never on the test
subjects the acceptance numbers come from. A :class:`Correction` is plain data (lists of
floats in JSON), saved by ``calibrate`` and applied by ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("offset", "affine", "ridge", "svr")
FEATURE_KINDS = ("ridge", "svr")
MIN_POINTS = {"offset": 1, "affine": 3, "ridge": 2, "svr": 2}
_WHY = {
    "offset": "",
    "affine": " whose predictions are not collinear (6 parameters, 2 per point)",
    "ridge": " (with 1 point it is kind=offset)",
    "svr": " (with 1 point it is kind=offset)",
}
# The smallest singular value of the centred predictions below which an affine map is
# undetermined (points on a line): relative to the largest, and absolute (cm), so that a model
# whose outputs do not vary at all is not fitted to float rounding.
COLLINEAR_TOL = 1e-6
COLLINEAR_MIN_CM = 1e-4


class CalibrationError(ValueError):
    """A calibration that cannot be fitted or applied as asked; the message names the key."""


@dataclass
class FitOptions:
    """Regularisation (config keys ``affine.prior_points``, ``ridge.alpha``, ``svr.C``,
    ``svr.epsilon_cm``); see the module docstring."""

    affine_prior_points: float = 10.0
    ridge_alpha: float = 3.0
    svr_c: float = 0.1
    svr_epsilon_cm: float = 0.2

    def __post_init__(self) -> None:
        for key, value in (("ridge.alpha", self.ridge_alpha), ("svr.C", self.svr_c)):
            if not value > 0:
                raise CalibrationError(f"{key} must be > 0, got {value!r}")
        for key, value in (("svr.epsilon_cm", self.svr_epsilon_cm),
                           ("affine.prior_points", self.affine_prior_points)):
            if not value >= 0:
                raise CalibrationError(f"{key} must be >= 0, got {value!r}")


def check_kind(kind: str, key: str = "kind") -> None:
    if kind not in KINDS:
        raise CalibrationError(f"{key} must be one of {KINDS}, got {kind!r}")


def check_points(kind: str, points: int) -> None:
    """Fail with a message naming ``points`` and the minimum when ``points`` is too small."""
    check_kind(kind)
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise CalibrationError(f"points must be a positive integer, got {points!r}")
    need = MIN_POINTS[kind]
    if points < need:
        usable = " or ".join(k for k in KINDS if MIN_POINTS[k] <= points)
        raise CalibrationError(
            f"points={points} is too few for kind={kind}: it needs points >= {need} "
            f"calibration points{_WHY[kind]}; with points={points} use kind={usable}")


@dataclass
class Correction:
    """A fitted correction; ``params`` hold numpy arrays (see the module docstring)."""

    kind: str
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def needs_features(self) -> bool:
        return self.kind in FEATURE_KINDS

    def apply(self, gaze_cm: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Corrected gaze ``(N, 2)`` cm from the model's ``(N, 2)`` output [and features]."""
        gaze_cm = np.asarray(gaze_cm, dtype=np.float64)
        p = self.params
        if self.kind == "offset":
            return gaze_cm + p["bias_cm"]
        if self.kind == "affine":
            return gaze_cm @ p["matrix"].T + p["bias_cm"]
        if features is None:
            raise CalibrationError(f"a kind={self.kind} correction needs the model's penultimate "
                                   "features, and none were given")
        features = np.asarray(features, dtype=np.float64)
        if features.shape[-1] != p["weights"].shape[0]:
            raise CalibrationError(
                f"this kind={self.kind} correction was fitted on {p['weights'].shape[0]} "
                f"features, the model gives {features.shape[-1]}: it belongs to another model")
        return gaze_cm + p["bias_cm"] + (features - p["feature_mean"]) @ p["weights"]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: np.asarray(v).tolist() for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "correction") -> Correction:
        kind = data.get("kind")
        if kind not in KINDS:
            raise CalibrationError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
        needed = {"offset": ("bias_cm",), "affine": ("matrix", "bias_cm")}.get(
            kind, ("bias_cm", "feature_mean", "weights"))
        missing = [k for k in needed if k not in data]
        if missing:
            raise CalibrationError(f"{where}: a kind={kind} correction needs {missing}")
        return cls(kind, {k: np.asarray(data[k], dtype=np.float64) for k in needed})


def fit(kind: str, gaze_cm: np.ndarray, target_cm: np.ndarray,
        features: np.ndarray | None = None, options: FitOptions | None = None) -> Correction:
    """Fit a ``kind`` correction on calibration frames: model output ``gaze_cm (k, 2)``, the
    dots ``target_cm (k, 2)`` and, for the feature kinds, ``features (k, D)``."""
    check_kind(kind)
    gaze_cm = np.asarray(gaze_cm, dtype=np.float64)
    target_cm = np.asarray(target_cm, dtype=np.float64)
    if gaze_cm.shape != target_cm.shape or gaze_cm.ndim != 2 or gaze_cm.shape[1] != 2:
        raise ValueError(f"gaze_cm and target_cm must both be (k, 2), got {gaze_cm.shape} "
                         f"and {target_cm.shape}")
    check_points(kind, len(gaze_cm))
    options = options or FitOptions()
    if kind == "offset":
        return Correction(kind, {"bias_cm": (target_cm - gaze_cm).mean(axis=0)})
    if kind == "affine":
        return _fit_affine(gaze_cm, target_cm, options.affine_prior_points)
    if features is None:
        raise CalibrationError(f"kind={kind} needs the model's penultimate features; this model "
                               "does not give them (use kind=offset or affine, or export the "
                               "ONNX file with features=true)")
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(gaze_cm):
        raise ValueError(f"features must be (k, D) with k={len(gaze_cm)}, got {features.shape}")
    fitter = _fit_ridge if kind == "ridge" else _fit_svr
    return Correction(kind, fitter(features, target_cm - gaze_cm, options))


def _fit_affine(gaze_cm: np.ndarray, target_cm: np.ndarray,
                prior_points: float) -> Correction:
    mean_g, mean_t = gaze_cm.mean(axis=0), target_cm.mean(axis=0)
    g, t = gaze_cm - mean_g, target_cm - mean_t
    sv = np.linalg.svd(g, compute_uv=False)
    if sv[-1] <= max(COLLINEAR_TOL * sv[0], COLLINEAR_MIN_CM):
        raise CalibrationError(
            f"the {len(gaze_cm)} calibration points' predictions lie on a line (singular values "
            f"{sv[0]:.3g}, {sv[-1]:.3g} cm): an affine map is undetermined; use points spread "
            "over the screen, or kind=offset")
    # min sum |t - A g|^2 + lam |A - I|^2 with the intercept free (centred data):
    # A = (t'g + lam I)(g'g + lam I)^-1; lam = prior_points x the mean per-axis spread
    lam = prior_points * float((g**2).sum()) / (2 * len(g))
    eye = np.eye(2)
    matrix = np.linalg.solve((g.T @ g + lam * eye).T, (t.T @ g + lam * eye).T).T
    return Correction("affine", {"matrix": matrix, "bias_cm": mean_t - matrix @ mean_g})


def _fit_ridge(features: np.ndarray, residual: np.ndarray,
               options: FitOptions) -> dict[str, np.ndarray]:
    mean_f, mean_r = features.mean(axis=0), residual.mean(axis=0)
    x = features - mean_f
    gram = x @ x.T  # k x k: the dual form, as k (<= 13) is far below D
    scale = float(np.trace(gram)) / len(x)
    lam = options.ridge_alpha * scale if scale > 0 else 1.0
    dual = np.linalg.solve(gram + lam * np.eye(len(x)), residual - mean_r)
    return {"bias_cm": mean_r, "feature_mean": mean_f, "weights": x.T @ dual}


def _fit_svr(features: np.ndarray, residual: np.ndarray,
             options: FitOptions) -> dict[str, np.ndarray]:
    from sklearn.svm import SVR

    mean_f = features.mean(axis=0)
    x = features - mean_f
    # one global scale (rms distance to the mean) keeps C comparable across models
    scale = float(np.sqrt((x**2).sum(axis=1).mean())) or 1.0
    weights = np.zeros((features.shape[1], 2))
    bias = np.zeros(2)
    for axis in range(2):
        svr = SVR(kernel="linear", C=options.svr_c, epsilon=options.svr_epsilon_cm)
        svr.fit(x / scale, residual[:, axis])
        weights[:, axis] = svr.coef_[0] / scale
        bias[axis] = svr.intercept_[0]
    return {"bias_cm": bias, "feature_mean": mean_f, "weights": weights}
