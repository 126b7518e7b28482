"""Gaze on the Raspberry Pi AI Camera: ``python -m tinytracker.deploy.pi network.rpk deploy.json``.

``network.rpk``: ``imx500-package`` of the exported ``packerOut.zip``; ``deploy.json``: written
next to it by ``format=imx500``. Per frame: the largest face on the host stream (Haar, as
``predict``) -> the inference ROI -> ``set_inference_roi_abs``; the output tensor of the frame
-> decoded -> the host head -> XCam, YCam cm printed, with the sensor's DNN and DSP runtime
(``get_kpi_info``, ms). A thin shell over :mod:`tinytracker.deploy.camera`, which the
emulation shares; a test keeps arithmetic out of this file.

The output tensor of a frame was computed on the ROI set for an earlier frame, so the box
given to the head is the ROI last set, not the one found on this frame.
Needs picamera2 (Raspberry Pi OS: ``sudo apt install python3-picamera2 imx500-all``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Sequence

from tinytracker.deploy import camera, decode, roi

log = logging.getLogger("tinytracker.deploy.pi")
PICAMERA2_MISSING = ("picamera2 is not installed: this program runs on a Raspberry Pi with the "
                     "AI Camera (sudo apt install python3-picamera2 imx500-all). On a computer, "
                     "evaluate the camera's path with tinytracker.deploy.camera.emulate_frame.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tinytracker.deploy.pi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", help="network.rpk (imx500-package of packerOut.zip)")
    parser.add_argument("manifest", help="deploy.json written by format=imx500")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    parser.add_argument("--stream-width", type=int, default=640)
    parser.add_argument("--stream-height", type=int, default=480)
    parser.add_argument("--draw", action="store_true", help="draw the ROI and gaze on a preview")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from picamera2 import Picamera2
        from picamera2.devices.imx500 import IMX500
    except ImportError:
        log.error(PICAMERA2_MISSING)
        return 2
    from tinytracker.data.face_detection import HaarDetector

    manifest, head = camera.load(args.manifest)
    imx500 = IMX500(args.network)  # uploads the network: minutes the first time
    for mismatch in camera.sensor_mismatches(imx500.config["input_tensor"],
                                             imx500.get_input_size(), manifest):
        log.warning("%s: %s (the emulated error does not describe this camera)",
                    args.network, mismatch)
    picam2 = Picamera2(imx500.camera_num)
    stream_size = (args.stream_width, args.stream_height)
    picam2.configure(picam2.create_preview_configuration(
        main={"size": stream_size, "format": "RGB888"}))
    imx500.show_network_fw_progress_bar()
    picam2.start()
    detector = HaarDetector()
    active = roi.full_frame_roi(manifest.roi.sensor_size)  # the sensor's default ROI
    frames = itertools.count() if args.frames == 0 else range(args.frames)
    for index in frames:
        request = picam2.capture_request()
        try:
            active = step(request, index, active, imx500, detector, stream_size, manifest, head,
                          args.draw)
        finally:
            request.release()
    picam2.stop()
    return 0


def step(request, index, active, imx500, detector, stream_size, manifest, head, show):
    """One frame: gaze on the ROI in effect, then the ROI for the next frames."""
    metadata = request.get_metadata()
    frame = camera.stream_rgb(request.make_array("main"))
    kpi = imx500.get_kpi_info(metadata)  # (dnn_ms, dsp_ms) or None
    try:
        values = decode.from_sensor(imx500.get_outputs(metadata), manifest.output.size)
    except decode.DecodeError as err:
        log.info("frame %d: %s", index, err)
    else:
        gaze = camera.gaze_cm(values, active, manifest, head)[0]
        log.info("frame %d: XCam %.2f cm, YCam %.2f cm, ROI %s, DNN/DSP runtime (ms) %s",
                 index, gaze[0], gaze[1], active.as_tuple(), kpi)
        if show:
            draw(frame, active, gaze, stream_size, metadata)
    detection = detector(frame)
    try:
        chosen = camera.roi_for_face(detection.face, stream_size, metadata.get("ScalerCrop"),
                                     manifest)
    except roi.RoiError as err:
        log.info("frame %d: %s; keeping ROI %s", index, err, active.as_tuple())
        return active
    imx500.set_inference_roi_abs(chosen.as_tuple())
    return chosen


def draw(frame, active, gaze, stream_size, metadata) -> None:
    """The ROI rectangle and the gaze in cm, in a window (needs a display)."""
    import cv2

    rect = roi.sensor_to_stream(active.as_tuple(), stream_size, metadata.get("ScalerCrop"))
    top_left, bottom_right = roi.corners(rect)
    shown = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    cv2.rectangle(shown, top_left, bottom_right, (0, 255, 0), 2)
    cv2.putText(shown, f"gaze {gaze[0]:+.1f}, {gaze[1]:+.1f} cm", top_left,
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
    cv2.imshow("tinytracker", shown)
    cv2.waitKey(1)


if __name__ == "__main__":
    sys.exit(main())
