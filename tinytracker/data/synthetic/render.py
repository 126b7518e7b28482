"""Pixels of the generator: the subject drawn with cv2's anti-aliased polygons over a
per-subject background, then the per-subject imaging conditions (blur, light, sensor noise).

Drawing works in head-frame centimetres (:class:`HeadProjection` maps them to the frame);
see :mod:`tinytracker.data.synthetic` for what is drawn and why.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from tinytracker.data.synthetic.optics import FRAME_H_PX, FRAME_W_PX, REFERENCE_IPD_CM
from tinytracker.data.synthetic.params import SyntheticParams
from tinytracker.data.synthetic.subjects import BGR, Appearance, Subject, SubjectFrames

BG_MARGIN_PX = 24  # background canvas margin for the per-frame hand-held shift


class HeadProjection:
    """Head-frame points (cm, origin between the eyes, +x subject's right, +y up) -> pixels."""

    def __init__(self, head_cm: np.ndarray, roll_deg: float, focal_px: float) -> None:
        r = math.radians(roll_deg)
        self.c, self.s = math.cos(r), math.sin(r)
        self.head = head_cm
        self.px_per_cm = focal_px / head_cm[2]

    def __call__(self, pts_cm: np.ndarray) -> np.ndarray:
        # rotate by roll, translate to the head, project: u = cx - f X / Z, v = cy - f Y / Z
        k = self.px_per_cm
        rot = np.array([[-k * self.c, -k * self.s], [k * self.s, -k * self.c]])
        offset = np.array([FRAME_W_PX / 2 - k * self.head[0], FRAME_H_PX / 2 - k * self.head[1]])
        return pts_cm @ rot + offset

    def fixed(self, pts_cm: np.ndarray) -> np.ndarray:
        """cv2 fixed-point coordinates (``shift=4``: 1/16 px) for sub-pixel drawing."""
        return np.round(self(pts_cm) * 16).astype(np.int32)


@functools.lru_cache(maxsize=64)
def _unit_arc(t0: float, t1: float, n: int) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-9)
    arc = np.stack([np.cos(t), np.sin(t)], axis=1)
    arc.flags.writeable = False  # shared by every caller
    return arc


def _ellipse(cx: float, cy: float, a: float, b: float, t0: float = 0.0,
             t1: float = 2 * math.pi, n: int = 40) -> np.ndarray:
    """Points of an ellipse with semi-axes ``a``, ``b`` (arc from ``t0`` to ``t1``), in
    head-frame cm."""
    return _unit_arc(t0, t1, n) * (a, b) + (cx, cy)


def _fill(img: np.ndarray, proj: HeadProjection, polys: list[np.ndarray], colour: Any) -> None:
    cv2.fillPoly(img, [proj.fixed(p) for p in polys], colour, cv2.LINE_AA, 4)


def _line(img: np.ndarray, proj: HeadProjection, pts: np.ndarray, colour: Any,
          thick_cm: float) -> None:
    thick = max(1, round(thick_cm * proj.px_per_cm))
    cv2.polylines(img, [proj.fixed(pts)], False, colour, thick, cv2.LINE_AA, 4)


def _shade(colour: BGR, f: float) -> BGR:
    return tuple(int(min(255, c * f)) for c in colour)


def draw_eye(img: np.ndarray, proj: HeadProjection, appearance: Appearance, centre_x_cm: float,
             iris_cm: np.ndarray, closed: bool) -> None:
    """One eye centred at head-frame (``centre_x_cm``, 0), iris displaced by ``iris_cm``."""
    a, b = appearance.eye_width_cm / 2, appearance.eye_height_cm / 2
    lash = _shade(appearance.hair_bgr, 0.5)
    crease = _ellipse(centre_x_cm, 0.1, a * 1.05, b + 0.35, 0.15 * math.pi, 0.85 * math.pi)
    _line(img, proj, crease, _shade(appearance.skin_bgr, 0.8), 0.08)
    if closed:
        # closed lid: lashes along a downward arc, no sclera or iris
        _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b * 0.5, math.pi, 2 * math.pi), lash, 0.14)
        return
    opening = _ellipse(centre_x_cm, 0.0, a, b)
    _fill(img, proj, [opening], appearance.sclera_bgr)
    ix, iy = centre_x_cm + float(iris_cm[0]), float(iris_cm[1])
    r_iris = 0.4 * appearance.eye_height_cm  # iris radius: 40% of the eye opening's height
    _fill(img, proj, [_ellipse(ix, iy, r_iris, r_iris)], _shade(appearance.iris_bgr, 0.6))
    _fill(img, proj, [_ellipse(ix, iy, 0.8 * r_iris, 0.8 * r_iris)], appearance.iris_bgr)
    _fill(img, proj, [_ellipse(ix, iy, 0.42 * r_iris, 0.42 * r_iris)], (15, 15, 15))
    # corneal glint of a fixed light source: fixed relative to the eye, not to the iris
    glint = 0.05 * appearance.eye_height_cm
    _fill(img, proj, [_ellipse(centre_x_cm - 0.12, 0.15, glint, glint, n=12)], (250, 250, 250))
    # eyelids: skin ring around the opening hides the part of the iris outside it
    reach = float(np.hypot(*iris_cm)) + r_iris + 0.05  # just enough to cover the iris
    lids = [_ellipse(centre_x_cm, 0.0, a + reach, b + reach), opening]
    _fill(img, proj, lids, appearance.skin_bgr)
    _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b, 0.0, math.pi), lash, 0.12)
    _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b, math.pi, 2 * math.pi),
          _shade(appearance.skin_bgr, 0.7), 0.05)


def draw_subject(img: np.ndarray, proj: HeadProjection, appearance: Appearance,
                 iris: dict[str, np.ndarray], blink: bool) -> None:
    """Back to front: shirt, neck, hair, face, fringe, eyes (lids last), brows, nose, mouth."""
    skin_dark = _shade(appearance.skin_bgr, 0.82)
    k = appearance.ipd_cm / REFERENCE_IPD_CM  # every fixed proportion below scales with the IPD
    shoulders = np.array([[-22, -40], [-19, -16], [-6, -12.5], [6, -12.5], [19, -16],
                          [22, -40]]) * k
    _fill(img, proj, [shoulders], appearance.shirt_bgr)
    _fill(img, proj, [np.array([[-3.2, -6], [3.2, -6], [3.4, -14], [-3.4, -14]]) * k],
          skin_dark)
    # the face ellipse's semi-axes and centre
    fa, fb = appearance.face_half_width_cm, appearance.face_half_height_cm
    fcy = appearance.face_centre_y_cm
    if appearance.hair_style > 0:
        hair = _ellipse(0, fcy + 0.6 * k, fa + 0.6 * k, fb + 0.5 * k)
        _fill(img, proj, [hair], appearance.hair_bgr)
    _fill(img, proj, [_ellipse(0, fcy, fa, fb)], appearance.skin_bgr)
    if appearance.hair_style == 2:  # fringe on the forehead
        top = _ellipse(0, fcy, fa, fb, 0.12 * math.pi, 0.88 * math.pi)
        line = _ellipse(0, appearance.brow_y_cm + 2.2 * k, fa * 0.8, 0.8 * k, 0.88 * math.pi,
                        0.12 * math.pi)
        _fill(img, proj, [np.concatenate([top, line])], appearance.hair_bgr)
    for eye, sign in (("right", 1.0), ("left", -1.0)):
        cx = sign * appearance.ipd_cm / 2
        draw_eye(img, proj, appearance, cx, iris[eye], blink)
        t = np.linspace(-1.0, 1.0, 9)
        brow = np.stack([cx + sign * (0.1 + 1.7 * t) * k,
                         appearance.brow_y_cm + 0.35 * k * (1 - t**2)], axis=1)
        _line(img, proj, brow, appearance.hair_bgr, appearance.brow_thickness_cm)
    nose = np.array([[0.45, -0.6], [0.75, -3.0], [0.2, -3.5]]) * k
    _line(img, proj, nose, skin_dark, 0.12)
    for sign in (1.0, -1.0):
        _fill(img, proj, [_ellipse(sign * 0.5 * k, -3.45 * k, 0.28 * k, 0.13 * k, n=16)],
              _shade(appearance.skin_bgr, 0.45))
    mw = appearance.mouth_width_cm / 2
    _fill(img, proj, [_ellipse(0, appearance.mouth_y_cm, mw, 0.45 * k)], appearance.lips_bgr)
    lip_line = _ellipse(0, appearance.mouth_y_cm + 0.3 * k, mw, 0.3 * k, 1.05 * math.pi,
                        1.95 * math.pi, n=16)
    _line(img, proj, lip_line, _shade(appearance.lips_bgr, 0.5), 0.08)


def make_background(rng: np.random.Generator) -> np.ndarray:
    """A per-subject BGR canvas larger than the frame: gradient + blotchy texture + shapes."""
    h, w = FRAME_H_PX + 2 * BG_MARGIN_PX, FRAME_W_PX + 2 * BG_MARGIN_PX
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    canvas = (c0 + (c1 - c0) * ramp) * np.ones((1, w, 1), np.float32)
    coarse = rng.normal(0.0, rng.uniform(0, 40), (int(rng.integers(3, 12)),
                                                  int(rng.integers(3, 12)), 3))
    canvas += cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(canvas, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 12))):
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(15, 160))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + size, y + int(rng.integers(15, 200))), colour, -1)
        else:
            cv2.circle(img, (x, y), size // 2, colour, -1, cv2.LINE_AA)
    return img


@dataclass(frozen=True)
class ImagingConditions:
    """Per-subject lighting and sensor (not the pinhole geometry, which is
    ``SyntheticParams.focal_px``); per-frame variation comes from ``SubjectFrames.nuisance``."""

    brightness_grey: float  # grey levels added
    gain: np.ndarray  # (H, W, 3) float32: contrast x colour tint x directional light ramp
    noise_sigma_grey: float
    noise_grey: np.ndarray  # (H + 2m, W + 2m, 3) float32 N(0, noise_sigma), sliced per frame


def sample_imaging_conditions(rng: np.random.Generator) -> ImagingConditions:
    """Contrast 0.7-1.15, tint +-10% per channel, a linear light ramp of up to +-50% across
    the frame in a random direction, brightness -40..+30 and sensor noise sigma 2-7 grey
    levels (a phone sensor indoors)."""
    contrast = rng.uniform(0.7, 1.15)
    tint = rng.uniform(0.9, 1.1, 3)
    angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.5)
    u = (np.arange(FRAME_W_PX) - FRAME_W_PX / 2) * (strength * math.cos(angle) / 400)
    v = (np.arange(FRAME_H_PX) - FRAME_H_PX / 2) * (strength * math.sin(angle) / 400)
    ramp = 1.0 + np.add.outer(v, u)
    gain = (ramp[:, :, None] * (contrast * tint)).astype(np.float32)
    brightness = float(rng.uniform(-40, 30))
    sigma = float(rng.uniform(2.0, 7.0))
    shape = (FRAME_H_PX + 2 * BG_MARGIN_PX, FRAME_W_PX + 2 * BG_MARGIN_PX, 3)
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return ImagingConditions(brightness, gain, sigma, noise)


class FrameBuffers:
    """Frame-sized buffers reused across frames. Fresh multi-megabyte arrays per frame cost
    thousands of page faults each (measured: more system than user time), so every cv2 call
    below writes into one of these."""

    def __init__(self) -> None:
        shape = (FRAME_H_PX, FRAME_W_PX)
        self.image = np.empty((*shape, 3), np.uint8)
        self.blur = np.empty((*shape, 3), np.uint8)
        self.light = np.empty((*shape, 3), np.float32)
        self.out = np.empty((*shape, 3), np.uint8)


def apply_imaging(img: np.ndarray, imaging: ImagingConditions, nuisance: np.ndarray,
                  blur_max_sigma_px: float, buffers: FrameBuffers) -> np.ndarray:
    """Blur, lighting and sensor noise; ``nuisance`` holds this frame's uniform draws in
    [0, 1). Returns ``buffers.out``, overwritten by the next call.

    Blur comes first, on uint8 (cheaper); the light ramp is smooth, so the order hardly
    matters. Per frame: contrast x0.95-1.05, brightness +-10, blur sigma, noise offset.
    """
    sigma = blur_max_sigma_px * nuisance[2]
    if sigma > 0.3:  # below that a 3-tap kernel is nearly the identity; save the time
        img = cv2.GaussianBlur(img, (0, 0), sigma, dst=buffers.blur)
    out = cv2.multiply(img, imaging.gain, dst=buffers.light, scale=0.95 + 0.1 * nuisance[0],
                       dtype=cv2.CV_32F)
    oy, ox = int(nuisance[3] * 2 * BG_MARGIN_PX), int(nuisance[4] * 2 * BG_MARGIN_PX)
    noise = imaging.noise_grey[oy:oy + FRAME_H_PX, ox:ox + FRAME_W_PX]
    cv2.addWeighted(out, 1.0, noise, 1.0, imaging.brightness_grey + (nuisance[1] - 0.5) * 20,
                    dst=out)
    cv2.max(out, 0.0, dst=out)  # so that convertScaleAbs's abs is a no-op
    return cv2.convertScaleAbs(out, dst=buffers.out)  # rounds and saturates at 255


def render_frame(params: SyntheticParams, subject: Subject, frames: SubjectFrames, i: int,
                 imaging: ImagingConditions, background: np.ndarray,
                 buffers: FrameBuffers | None = None) -> np.ndarray:
    """Frame ``i`` of a subject as a BGR uint8 image (a buffer of ``buffers`` when given)."""
    buffers = buffers or FrameBuffers()
    nuisance = frames.nuisance[i]
    oy = BG_MARGIN_PX + int((nuisance[5] - 0.5) * BG_MARGIN_PX)  # hand-held shift of the scene
    ox = BG_MARGIN_PX + int((nuisance[6] - 0.5) * BG_MARGIN_PX)
    img = buffers.image
    np.copyto(img, background[oy:oy + FRAME_H_PX, ox:ox + FRAME_W_PX])
    proj = HeadProjection(frames.head_cm[i], float(frames.roll_deg[i]), params.focal_px)
    iris = {eye: offsets[i] for eye, offsets in frames.iris_cm.items()}
    draw_subject(img, proj, subject.appearance, iris, bool(frames.blink[i]))
    return apply_imaging(img, imaging, nuisance, params.blur_max_sigma_px, buffers)
