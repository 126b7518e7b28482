"""Per-person corrections, calibration-frame choice and the protocol, on hand-made data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinytracker.calibrate.pattern import PATTERN, pattern_cm, select_frames
from tinytracker.calibrate.protocol import ModelOutputs, calibrate_subjects, error_curve, summarise
from tinytracker.correction.corrections import (
    KINDS,
    MIN_POINTS,
    CalibrationError,
    Correction,
    FitOptions,
    check_points,
    fit,
)
from tinytracker.correction.saved import load_calibration, save_corrections
from tinytracker.models import ITracker, TinyTracker, TinyTrackerS

RNG = np.random.default_rng(0)
SCREEN = (-1.86, 3.99, -11.21, -0.80)  # iPhone 6, camera cm: x0, x1, y0, y1


def distort(points: np.ndarray, matrix: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return points @ matrix.T + bias


def screen_points(n: int) -> np.ndarray:
    x0, x1, y0, y1 = SCREEN
    return np.stack([RNG.uniform(x0, x1, n), RNG.uniform(y0, y1, n)], axis=1)


EXACT = FitOptions(affine_prior_points=0.0)  # plain least squares


def test_affine_distortion_is_removed_exactly():
    target = screen_points(40)
    # the model's output: the truth rotated 8 deg, scaled 0.7 / 1.2, sheared and shifted
    theta = np.deg2rad(8)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = rot @ np.array([[0.7, 0.15], [0.0, 1.2]])
    gaze = distort(target, matrix, np.array([0.9, -1.4]))
    for k in (3, 9, 13):
        rows = select_frames(target, k, SCREEN)
        corr = fit("affine", gaze[rows], target[rows], options=EXACT)
        assert np.abs(corr.apply(gaze) - target).max() < 1e-9, k
        assert np.allclose(corr.params["matrix"], np.linalg.inv(matrix))
    # an offset removes only the shift: a rotation and scaling stay
    offset = fit("offset", gaze[:9], target[:9])
    assert np.abs(offset.apply(gaze) - target).max() > 0.1


def test_affine_prior_moves_between_least_squares_and_offset():
    target = screen_points(9)
    gaze = distort(target, np.array([[0.8, 0.1], [0.0, 1.1]]), np.array([0.4, 0.2]))
    gaze += RNG.normal(0, 0.2, gaze.shape)
    plain = fit("affine", gaze, target, options=EXACT)
    huge = fit("affine", gaze, target, options=FitOptions(affine_prior_points=1e12))
    offset = fit("offset", gaze, target)
    assert np.allclose(huge.apply(gaze), offset.apply(gaze), atol=1e-6)
    some = fit("affine", gaze, target, options=FitOptions(affine_prior_points=3.0))
    # the penalised map is nearer the identity than least squares, and fits worse in sample
    eye = np.eye(2)
    assert (np.linalg.norm(some.params["matrix"] - eye)
            < np.linalg.norm(plain.params["matrix"] - eye))
    in_sample = [np.linalg.norm(c.apply(gaze) - target, axis=1).mean() for c in (plain, some)]
    assert in_sample[0] < in_sample[1]


def test_offset_removes_a_constant_shift_from_one_point():
    target = screen_points(10)
    corr = fit("offset", target[:1] + [0.3, -1.1], target[:1])
    assert np.allclose(corr.apply(target + [0.3, -1.1]), target, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_points_below_the_minimum_fail_naming_points_and_the_minimum(kind):
    need = MIN_POINTS[kind]
    if need == 1:
        with pytest.raises(CalibrationError, match=r"points must be a positive integer"):
            check_points(kind, 0)
        return
    target = screen_points(need - 1)
    with pytest.raises(CalibrationError) as err:
        fit(kind, target + 0.5, target, features=RNG.normal(size=(need - 1, 8)))
    message = str(err.value)
    assert f"points={need - 1} is too few for kind={kind}" in message
    assert f"points >= {need}" in message
    assert "use kind=offset" in message


def test_affine_on_collinear_predictions_fails_clearly():
    line = np.stack([np.linspace(-1, 3, 5), np.linspace(-2, -9, 5)], axis=1)
    with pytest.raises(CalibrationError, match="lie on a line"):
        fit("affine", line, screen_points(5))


def test_feature_kinds_without_features_fail_clearly():
    target = screen_points(5)
    with pytest.raises(CalibrationError, match="needs the model's penultimate features"):
        fit("ridge", target, target)


def test_ridge_recovers_a_residual_linear_in_the_features():
    # the residual (label - output) is a linear function of 20-d features
    feats = RNG.normal(size=(13, 20))
    w = RNG.normal(size=(20, 2)) * 0.1
    gaze = screen_points(13)
    target = gaze + 0.7 + feats @ w
    corr = fit("ridge", gaze, target, feats, FitOptions(ridge_alpha=1e-9))
    assert np.abs(corr.apply(gaze, feats) - target).max() < 1e-6
    # strong regularisation leaves only the mean residual: the offset kind
    flat = fit("ridge", gaze, target, feats, FitOptions(ridge_alpha=1e9))
    offset = fit("offset", gaze, target)
    assert np.allclose(flat.apply(gaze, feats), offset.apply(gaze), atol=1e-6)


def test_svr_fits_the_residual_within_epsilon():
    feats = RNG.normal(size=(13, 6))
    gaze = screen_points(13)
    target = gaze + feats[:, :2] * 0.5
    corr = fit("svr", gaze, target, feats, FitOptions(svr_c=100.0, svr_epsilon_cm=0.01))
    assert np.abs(corr.apply(gaze, feats) - target).max() < 0.05


def test_frame_choice_follows_the_pattern_and_prefers_new_dots():
    goals = pattern_cm(13, SCREEN)
    # 4 frames on each of 13 dots near the pattern positions, shuffled
    dots = goals + RNG.normal(0, 0.05, goals.shape)
    targets = np.repeat(dots, 4, axis=0)
    order = RNG.permutation(len(targets))
    targets = targets[order]
    rows = select_frames(targets, 13, SCREEN)
    assert len(set(map(tuple, targets[rows]))) == 13  # 13 distinct dots
    assert np.allclose(targets[rows], dots)  # each the dot of its pattern position
    assert (select_frames(targets, 13, SCREEN) == rows).all()  # deterministic
    # with only 2 dots, 3 frames must reuse one; all frames are distinct rows
    two = np.repeat(dots[:2], 3, axis=0)
    rows = select_frames(two, 3)
    assert len(set(rows.tolist())) == 3
    assert len(PATTERN) == 13 and PATTERN[0] == (0.5, 0.5)


def hand_made_outputs(subjects: int = 4, frames: int = 30, features: bool = False
                      ) -> tuple[ModelOutputs, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Each subject's output is its own affine distortion of the truth."""
    parts, truth = [], {}
    for s in range(subjects):
        dots = screen_points(frames // 3)
        target = np.repeat(dots, 3, axis=0)
        matrix = np.eye(2) + RNG.normal(0, 0.1, (2, 2))
        bias = RNG.normal(0, 0.8, 2)
        truth[100 + s] = (matrix, bias)
        parts.append((np.full(frames, 100 + s), np.arange(frames), target,
                      distort(target, matrix, bias)))
    rec, frame, target, gaze = (np.concatenate(p) for p in zip(*parts, strict=True))
    feats = RNG.normal(size=(len(rec), 8)) if features else None
    return ModelOutputs(rec, frame, target, gaze, feats), truth


def test_protocol_calibrates_each_subject_on_its_own_frames():
    out, truth = hand_made_outputs()
    results = calibrate_subjects(out, "affine", 9, EXACT)
    summary = summarise(results, out)
    assert summary["subjects"] == 4
    assert summary["frames_calibration"] == 4 * 9
    assert summary["frames_evaluated"] == 4 * 21
    assert summary["error_cm_before"] > 0.3
    assert summary["error_cm_after"] < 1e-9
    for r in results:
        # calibration and evaluation frames are disjoint, and the subject's own
        assert not set(r.calibration_rows) & set(r.eval_rows)
        assert set(out.rec[r.calibration_rows]) == set(out.rec[r.eval_rows]) == {r.rec}
        matrix, _ = truth[r.rec]
        assert np.allclose(r.correction.params["matrix"], np.linalg.inv(matrix))
    assert set(summary["per_subject"]) == {"00100", "00101", "00102", "00103"}


def test_too_few_frames_for_a_subject_names_it():
    out, _ = hand_made_outputs(subjects=2, frames=9)
    with pytest.raises(CalibrationError, match=r"recording\) 00100 has 9 frames; points=9 needs"):
        calibrate_subjects(out, "affine", 9)


def test_curve_reports_every_kind_where_it_can_run():
    out, _ = hand_made_outputs(features=True)
    curve = error_curve(out, ["offset", "affine", "ridge"], [1, 3, 9], EXACT)
    assert curve["error_cm_after"]["affine"][0] is None
    assert "affine@1" in curve["notes"]
    assert curve["error_cm_after"]["affine"][2] < 1e-9
    assert curve["best_kind"][1:] == ["affine", "affine"]
    assert curve["error_cm_after"]["offset"][0] is not None
    # without features the feature kinds are left out, with the reason
    out.features = None
    curve = error_curve(out, ["ridge"], [3])
    assert curve["error_cm_after"]["ridge"] == [None]
    assert "features" in curve["notes"]["ridge@3"]


def test_saved_corrections_round_trip(tmp_path):
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"weights")
    corr = Correction("affine", {"matrix": np.eye(2) * 1.1, "bias_cm": np.array([0.2, -0.3])})
    path = save_corrections(tmp_path / "corrections.json", {17: corr, 23: corr}, str(model),
                            "checkpoint", "affine", 9, extra={17: {"calibration_frames": [1]}})
    saved = load_calibration(path)
    key, back = saved.for_subject("17")
    assert key == "00017" and saved.matches(model)
    assert np.allclose(back.apply([[1.0, 2.0]]), [[1.3, 1.9]])
    assert json.loads(path.read_text())["subjects"]["00017"]["calibration_frames"] == [1]
    with pytest.raises(CalibrationError, match="holds 2 subjects .*calibration_subject"):
        saved.for_subject(None)
    with pytest.raises(CalibrationError, match="calibration_subject=5 is not in"):
        saved.for_subject(5)
    model.write_bytes(b"other weights")
    assert not saved.matches(model)
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(CalibrationError, match="is not a tinytracker calibration"):
        load_calibration(tmp_path / "bad.json")


@pytest.mark.parametrize("net,inputs", [
    (TinyTracker(image_size=64, grid_embedding=True),
     (torch.randn(2, 3, 64, 64), torch.randn(2, 2, 64, 64))),
    (TinyTrackerS(image_size=64, output_activation="tanh"),
     (torch.randn(2, 1, 64, 64), torch.randn(2, 2, 64, 64))),
    (ITracker(image_size=64),
     (torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64),
      torch.rand(2, 625).round())),
])
def test_nets_return_penultimate_features_without_changing_forward(net, inputs):
    net.eval()
    with torch.no_grad():
        gaze, feats = net.forward_with_features(*inputs)
        assert torch.equal(gaze, net(*inputs))
        assert torch.equal(feats, net.features(*inputs))
    assert feats.shape == (2, net.feature_dim)
    assert (feats >= 0).all()  # after the hidden layer's ReLU


def test_holdout_dots_evaluates_only_frames_of_other_dots():
    out, _ = hand_made_outputs(subjects=2, frames=30)  # 10 dots x 3 frames each
    for r in calibrate_subjects(out, "affine", 5, EXACT, holdout="dots"):
        cal_dots = {tuple(t) for t in out.target_cm[r.calibration_rows].round(4)}
        assert not cal_dots & {tuple(t) for t in out.target_cm[r.eval_rows].round(4)}
        assert len(r.eval_rows) == 30 - 3 * len(cal_dots)  # every frame of the other dots
    few, _ = hand_made_outputs(subjects=1, frames=9)  # 3 dots
    with pytest.raises(CalibrationError, match="holdout=dots leaves no frame to evaluate"):
        calibrate_subjects(few, "offset", 3, holdout="dots")


def test_affine_on_constant_predictions_fails_instead_of_fitting_rounding():
    constant = np.full((5, 2), [1.0, -4.0]) + RNG.normal(0, 1e-7, (5, 2))
    with pytest.raises(CalibrationError, match="lie on a line"):
        fit("affine", constant, screen_points(5))
