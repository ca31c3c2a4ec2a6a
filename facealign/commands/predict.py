"""`facealign predict`: landmarks of the faces in some images, from a model folder or a server.

--model is a SavedModel folder or a TF Serving base folder (its newest version;
run in this process), a .tflite or .onnx export of `facealign export` (run in
this process by serving/canonical_model.py, no TensorFlow) or a model URL ``http://host:port/v1/models/NAME[/versions/N]``
(TF Serving or `facealign serve`; the same serving_default request over REST).

Faces: with --box, that one box in every image; without, every face the
--detector finds (default BlazeFace; `haar`: OpenCV's frontal face cascade),
its boxes mapped to the 300-W convention (serving/detector.py). One result per face.
The work is serving.aligner.Aligner's, as in the Python API (facealign.load).
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facealign.commands.face_options import add_face_options, checked_box
from facealign.core.errors import UserError


def add_parser(sub) -> None:
    parser = sub.add_parser("predict", help="landmarks of the faces in images")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--model", required=True,
                        help="SavedModel folder, TF Serving base folder (newest version), "
                             ".tflite / .onnx export or http://host:port/v1/models/NAME")
    parser.add_argument("--json", dest="json_out",
                        help="write the results here (default: print them)")
    parser.add_argument("--overlay", help="PNG with the points and boxes drawn; with several "
                                          "images, OUT-<image name>.png each")
    add_face_options(parser, "face box x0,y0,x1,y1 in pixels (skips detection)",
                     "face detector model for --detector haar (Haar cascade XML or YuNet ONNX)")
    parser.set_defaults(handler=run)


def overlay_path(template: str, image: pathlib.Path, several: bool) -> pathlib.Path:
    out = pathlib.Path(template)
    if not several:
        return out
    return out.with_name(f"{out.stem}-{image.stem}{out.suffix or '.png'}")


def run(args) -> int:
    from serving.aligner import Aligner
    from serving.errors import DetectorUnavailable
    from serving.images import draw, load_image
    from serving.model import open_model

    box = checked_box(args)
    pictures = [load_image(name) for name in args.images]  # bad files fail before the model loads
    aligner = Aligner(open_model(args.model), args.face_cascade, args.detector)
    results = []
    several = len(pictures) > 1
    for picture in pictures:
        try:
            faces = aligner.align(picture, box)
        except DetectorUnavailable as exc:
            raise UserError(f"{exc}; or pass --box x0,y0,x1,y1") from None
        if not faces:
            raise UserError(f"{picture.name}: no face found by {aligner.detector.name}; "
                            "pass --box x0,y0,x1,y1")
        for i, face in enumerate(faces):
            results.append({"image": picture.name, "face": i,
                            "box": np.round(face.box, 2).tolist(),
                            "box_source": face.box_source,
                            "stage_spread": round(face.stage_spread, 6),
                            "landmarks": np.round(face.landmarks, 3).tolist()})
        if args.overlay:
            drawn = picture.bgr
            for face in faces:
                drawn = draw(drawn, face.landmarks, face.box)
            out = overlay_path(args.overlay, pathlib.Path(picture.name), several)
            out.parent.mkdir(parents=True, exist_ok=True)
            import cv2

            if not cv2.imwrite(str(out), drawn):
                raise UserError(f"--overlay {out}: cannot write (use a .png name)")
        print(f"predict: {picture.name}: {len(faces)} face(s) "
              f"({'given box' if box is not None else 'detected'})", file=sys.stderr)
    text = json.dumps({"model": str(args.model), "results": results}, indent=1)
    if args.json_out:
        out = pathlib.Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    else:
        print(text)
    return 0
