"""Synthetic gaze dataset in the raw GazeCapture layout, generated deterministically from a seed.

``python -m tinytracker.data.synthetic out_dir=... seed=0 subjects=120 frames_per_subject=30``

One recording (folder ``NNNNN``) per subject, with every file of the raw layout described in
:mod:`tinytracker.data.gazecapture`, so :func:`tinytracker.data.prepare.prepare` processes it
like real data. Each subject draws from ``np.random.default_rng(SeedSequence([seed, 0, i]))``,
so a subject does not depend on how many others are generated or in which order, and the
same seed gives byte-identical files (cv2's JPEG encoder is deterministic).

Geometry (GazeCapture's camera coordinates in centimetres; Krafka et al., "Eye Tracking for
Everyone", CVPR 2016):

* Camera at the origin; X to the right as the subject sees the screen (the subject's right),
  Y up, Z from the device towards the subject. The screen lies in the plane Z = 0, below the
  camera (portrait, orientation 1). Device: iPhone 6, from GazeCapture's
  ``apple_device_data.csv``: camera 1.861 cm right of the screen's left edge and 0.803 cm
  above its top edge, screen 5.850 x 10.405 cm, so XCam in [-1.861, 3.989] and YCam in
  [-11.208, -0.803]; 375 x 667 screen points.
* Frames are 480 x 640 px (portrait, as GazeCapture's iPhone frames), pinhole camera with
  focal length ``focal_px`` = 600 px (horizontal field of view 2 atan(240/600) = 44 deg) and
  the principal point at the frame centre. The image is not mirrored: a point at camera
  (X, Y, Z) appears at u = 240 - f X / Z, v = 320 - f Y / Z, so the subject's left eye
  (GazeCapture's "left eye", ``appleLeftEye.json``) is on the image's right side.
* The face is a plane at Z = head distance, facing the screen (forward = -Z). Per subject:
  distance ~ U(25, 45) cm, eye midpoint X ~ N(1.06, 1.5) cm (the screen's centre line),
  Y ~ N(-4, 2) cm, roll ~ N(0, 3 deg); per frame jitter N(0, 0.3) cm on X, Y, Z and
  N(0, 1 deg) on roll; the position is clipped so the face box stays inside the frame.
  Interpupillary distance ~ N(6.3, 0.3) cm (adult mean 63 mm: Dodgson, "Variation and
  extrema of human interpupillary distance", SPIE 5291, 2004); face features scale with it.
* Targets: dots uniform over the screen (0.25 cm margin), ``frames_per_dot`` consecutive
  frames per dot (GazeCapture shows each dot for about 2 s, giving tens of frames; we use
  fewer frames per dot so a small set covers more positions). Label = the dot's XCam/YCam.

Gaze and the injected label noise (everything that separates the label from the image):

1. Fixation noise: the subject fixates F = dot + N(0, ``fixation_noise_cm`` = 0.3 cm) per axis,
   independently per frame.
2. Visual axis: each eye's line of sight from the eye centre to F.
3. Angle kappa: the optical axis (which the iris follows) is the visual axis turned
   temporally by kappa_h ~ N(5, 1.5) deg (one value per subject, mirrored between the eyes:
   right eye to +X, left eye to -X) and down by kappa_v ~ N(1.5, 0.7) deg (both eyes). The
   per-subject part cannot be learned without calibration; its horizontal part largely
   cancels between the two eyes, its vertical part does not.
4. Iris position: the iris centre sits in the eye opening, displaced in the head frame by
   (gain_h sin(yaw), gain_v sin(pitch)) of the optical axis relative to the head's forward
   direction, so a dot straight ahead of an eye (and no kappa/noise) gives a centred iris.
   A human eyeball has a radius of about 1.2 cm (axial length ~24 mm); that would move the
   iris by only ~2 px horizontally and ~3 px vertically in a 112 px face crop across this
   screen, so the gains are exaggerated to ``iris_gain_h_cm`` = 4.0 (3.3x) and
   ``iris_gain_v_cm`` = 2.2 (1.8x): with the defaults the iris travels ~6 px horizontally and
   ~5.5 px vertically at 112 px across the screen (median over subjects). In ~0.5% of frames
   (close subject, dot at a far corner) the iris centre leaves the eye opening and is partly
   hidden by the lids.
5. Labels are written rounded to 1e-4 cm.

SYNTHETIC.json reports, on the test subjects' valid frames: the error of always predicting
the training-set mean dot (the floor a model must beat) and the error left by noise sources
1 and 3 for an ideal reader of both irises that knows only the population-mean kappa (with
few test subjects this varies a lot with the seed: it is dominated by their kappa_v).

Rendering (cv2, sub-pixel anti-aliased polygons): per-subject background (gradient, blotchy
texture, random shapes; shifted per frame like a hand-held phone), shirt, neck, hair, a
skin-toned face ellipse (tone drawn over a wide range), eyebrows, nose, mouth, and eyes with
sclera, iris (radius 40% of the eye opening's height), pupil, eyelids and a fixed corneal
glint. Eye opening 2.8-3.2 x 1.3-1.6 cm (about 25% of the face-box width; the height is
exaggerated ~1.4x over a human's ~1 cm so the iris stays readable). Nuisances, per subject:
brightness, contrast, colour tint, a directional lighting gradient, sensor noise level; per
frame: brightness/contrast jitter, Gaussian blur (sigma 0-1.3 px), the noise pattern, head
roll and position, background shift. Blinks (``blink_prob`` = 3% of frames): eyes drawn
closed and both eye boxes marked invalid, as the real eye detector does.

Detector boxes (``appleFace.json``): a square of side 12 cm x IPD/6.3 centred 2.2 cm below the
eyes (brows to below the mouth, like Apple's face box), with N(0, 2%) jitter of position
and size; eye boxes: squares of side 1.25 x eye width around each eye centre, N(0, 3%)
jitter, stored relative to the face box. ``faceGrid.json`` follows from the face box via
:func:`tinytracker.data.geometry.face_grid_from_rect`.

Modules, in the order data flows: :mod:`.params` (the knobs), :mod:`.optics` (device, frame,
pinhole camera and eye geometry), :mod:`.subjects` (random draws: splits, faces, poses, gaze),
:mod:`.render` (pixels), :mod:`.recording` (one subject's files), :mod:`.pool` (subjects
in-process or in worker processes), :mod:`.summary` (SYNTHETIC.json), :mod:`.build`
(:func:`generate`) and :mod:`.__main__` (the command line).
"""

from tinytracker.data.synthetic.build import GenerationReport, generate
from tinytracker.data.synthetic.params import GENERATOR_VERSION, SyntheticParams, make_params

__all__ = ["GENERATOR_VERSION", "GenerationReport", "SyntheticParams", "generate", "make_params"]
