"""The Python API beside the CLI: ``facealign.load(model).align(image)``.

The face-alignment library's shape (``FaceAlignment(...).get_landmarks(image)``):
one object holding the model and a pluggable face detector, one call per image::

    import facealign

    aligner = facealign.load("pretrained/dan-300w")     # or a version folder, a .tflite or
                                                        # .onnx export, or a URL
    for face in aligner.align("photo.jpg"):             # or bytes, or an RGB array
        face.landmarks     # float32 [68, 2], x, y in the photo's pixels
        face.box           # float32 [4], the box the model started from
        face.stage_spread  # large (> 0.05) = the cascade has not settled: unreliable
    aligner.align(rgb_array, boxes=[x0, y0, x1, y1])    # your own box(es): no detection

It is `facealign predict` without the files: the same serving.aligner.Aligner
and the same serving signature, so its landmarks are the evaluated model's.
"""
from __future__ import annotations

from serving.aligner import Aligner, Face
from serving.detector import detector_name
from serving.errors import BoxError, DetectorUnavailable, ImageError, InputError, ModelError
from serving.model import open_model

__all__ = ["load", "Aligner", "Face", "InputError", "ModelError", "ImageError", "BoxError",
           "DetectorUnavailable"]


def load(model, face_cascade=None, detector=None, timeout: float = 60.0,
         num_threads: int | None = None) -> Aligner:
    """An Aligner for `model`, whose ``align(image, boxes=None) -> list[Face]`` gives landmarks.

    model: a SavedModel folder, a TF Serving base folder (a folder of numbered
        versions: the newest is loaded), a ``.tflite`` (LiteRT) or ``.onnx``
        file written by `facealign export` with its ``.json`` sidecar beside it
        (run without TensorFlow, on `num_threads` threads, default the
        runtime's), or a REST URL ``http://host:port/v1/models/NAME[/versions/N]``
        (TF Serving or `facealign serve`; `timeout` seconds per request).
    detector: the face detector used when ``align`` gets no boxes: a name,
        "blazeface" (the default: MediaPipe's BlazeFace, its short-range model,
        then for small faces its back-camera model and tiles), "blazeface-short",
        "blazeface-back", "blazeface-full" (one model alone) or "haar" (OpenCV's
        frontal face cascade), whose boxes are mapped to the 300-W box
        convention the models were trained on (serving/detector.py); or any
        object with ``detect(bgr_uint8_image) -> float [K, 4]`` boxes, largest
        first, used as it is.
    face_cascade: a Haar cascade XML or a YuNet ONNX file for the "haar"
        detector (given alone, it selects "haar").

    Raises ModelError (a ValueError) naming the model when it cannot be opened,
    InputError (a ValueError) for an unknown detector name.
    ``align`` takes a path, encoded bytes, or a uint8 [H, W] / [H, W, 3] RGB
    array, and boxes as [4] or [K, 4] x0, y0, x1, y1 pixels; it returns one
    Face per box, or per detected face (largest first; [] when none), and raises
    ImageError / BoxError naming the bad input, DetectorUnavailable when it must
    detect and no detector model can be found.
    """
    if detector is None or isinstance(detector, str):
        detector_name(detector, face_cascade)  # a bad name fails here, not at the first image
    return Aligner(open_model(model, timeout, num_threads), face_cascade, detector)
