"""`facealign predict`: landmarks of the faces in some images, from a model folder or a server.

--model is a SavedModel folder (run in this process) or a model URL
``http://host:port/v1/models/NAME[/versions/N]`` (TF Serving or `facealign
serve`; the same serving_default request over REST).

Faces: with --box, that one box in every image; without, every face OpenCV's
Haar frontal face cascade finds (serving/detector.py: the detector the DAN
authors' demo uses, so its boxes match what DAN expects; where the XML comes
from and how it runs on OpenCV 5 is explained there). One result per face.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facealign.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("predict", help="landmarks of the faces in images")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder or http://host:port/v1/models/NAME")
    parser.add_argument("--box", help="face box x0,y0,x1,y1 in pixels (skips detection)")
    parser.add_argument("--json", dest="json_out",
                        help="write the results here (default: print them)")
    parser.add_argument("--overlay", help="PNG with the points and boxes drawn; with several "
                                          "images, OUT-<image name>.png each")
    parser.add_argument("--face-cascade", help="face detector model (Haar cascade XML or "
                                               "YuNet ONNX); see serving/detector.py")
    parser.set_defaults(handler=run)


def overlay_path(template: str, image: pathlib.Path, several: bool) -> pathlib.Path:
    out = pathlib.Path(template)
    if not several:
        return out
    return out.with_name(f"{out.stem}-{image.stem}{out.suffix or '.png'}")


def find_faces(images, box_text, cascade):
    """[(path, encoded bytes, BGR image, boxes [K, 4], box source)] or UserError."""
    from serving import detector as face_detector
    from serving.model import parse_box, read_image

    box = parse_box(box_text) if box_text else None
    detector = None
    faces = []
    for name in images:
        path = pathlib.Path(name)
        data, image = read_image(path)
        if box is not None:
            faces.append((path, data, image, box[None], "user"))
            continue
        if detector is None:
            try:
                detector = face_detector.FaceDetector(cascade)
            except face_detector.DetectorUnavailable as exc:
                raise UserError(f"{exc}; or pass --box x0,y0,x1,y1") from None
        boxes = detector.detect(image)
        if not len(boxes):
            raise UserError(f"{path}: no face found by {detector.name}; pass --box x0,y0,x1,y1")
        faces.append((path, data, image, boxes, "detector"))
    return faces


def run(args) -> int:
    faces = find_faces(args.images, args.box, args.face_cascade)
    from serving.model import draw, open_model

    model = open_model(args.model)
    results = []
    several = len(faces) > 1
    for path, data, image, boxes, source in faces:
        prediction = model.predict([data] * len(boxes), boxes)
        for i, (box, landmarks, spread) in enumerate(
                zip(boxes, prediction.landmarks, prediction.stage_spread)):
            results.append({"image": str(path), "face": i, "box": np.round(box, 2).tolist(),
                            "box_source": source, "stage_spread": round(float(spread), 6),
                            "landmarks": np.round(landmarks, 3).tolist()})
        if args.overlay:
            picture = image
            for box, landmarks in zip(boxes, prediction.landmarks):
                picture = draw(picture, landmarks, box)
            out = overlay_path(args.overlay, path, several)
            out.parent.mkdir(parents=True, exist_ok=True)
            import cv2

            if not cv2.imwrite(str(out), picture):
                raise UserError(f"--overlay {out}: cannot write (use a .png name)")
        print(f"predict: {path}: {len(boxes)} face(s) "
              f"({'given box' if source == 'user' else 'detected'})", file=sys.stderr)
    text = json.dumps({"model": str(args.model), "results": results}, indent=1)
    if args.json_out:
        out = pathlib.Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    else:
        print(text)
    return 0
