"""Published reference points for the accuracy-versus-size plot.

They are GazeCapture test errors; runs on the synthetic data are not comparable in absolute
error (the plot says so), only in size and in the shape of the trade-off.
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 1024  # bytes; the paper's 608 KB matches the released TinyTracker.tflite (625,504 B = 611 KiB)


@dataclass(frozen=True)
class Reference:
    label: str
    size_bytes: int
    error_cm: float
    source: str


TINYTRACKER_PAPER = Reference(
    label="TinyTracker (paper, GazeCapture)",
    size_bytes=608 * KB,
    error_cm=2.34,
    # Bonazzi et al., "TinyTracker", arXiv:2307.07813 (IEEE Sensors 2023): INT8 model of 608 KB,
    # 2.34 cm mean error on the GazeCapture test set.
    source="Bonazzi et al., arXiv:2307.07813",
)

# iTracker's INT8 size is not published; this is tinytracker.models.footprint's
# quantized_size_bytes of our ITracker(image_size=224) (6,286,274 parameters, 8-bit kernels,
# 32-bit biases), checked in tests/test_report.py.
ITRACKER_INT8_BYTES = 6_293_576

ITRACKER = Reference(
    label="iTracker (PyTorch re-impl., GazeCapture)",
    size_bytes=ITRACKER_INT8_BYTES,
    # CSAILVision/GazeCapture, pytorch/README.md: "The combined test L2 error of the provided
    # checkpoint is 2.46 cm" (iPhone and iPad together), the figure TinyTracker compares with.
    error_cm=2.46,
    source="CSAILVision/GazeCapture pytorch/README.md",
)

REFERENCES = (TINYTRACKER_PAPER, ITRACKER)

# Sony IMX500: 8 MB of on-sensor memory for the network (the model must fit it whole).
IMX500_MODEL_BYTES = 8 * KB * KB
