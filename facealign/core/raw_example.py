"""One annotated face as the raw tf.Example LandmarkExampleGen writes, and back.

Feature names come from facealign/core/examples.py. The Beam executor writes these
per split; `facealign evaluate` encodes the faces of any annotated folder the
same way, so the Evaluator and the command send a model identical requests;
`parse_example` reads one back (the Evaluator's ground truth).
"""
from __future__ import annotations

import io

import numpy as np
import PIL.Image
import tensorflow as tf

from facealign.core import examples as names


def face_dict(record, split: str = "") -> dict:
    """A FaceRecord as a plain (picklable) dict, tagged with its split."""
    return {"split": split, "image_path": str(record.image_path),
            "image_relpath": record.image_relpath,
            "landmarks": record.landmarks.reshape(-1).tolist(), "box": list(record.box),
            "box_source": record.box_source, "dataset": record.dataset,
            "subset": record.subset, "face_id": record.face_id,
            "image_size": list(record.image_size)}


def image_channels(image: bytes) -> int:
    """The colour channels an image file declares (its header only; 0 when unreadable)."""
    try:
        with PIL.Image.open(io.BytesIO(image)) as opened:
            return len(opened.getbands())
    except (OSError, ValueError):
        return 0


def landmark_spread(landmarks, box) -> float:
    """RMS distance of the landmarks from their centroid, in units of the box's side (the
    square root of its area): how the annotation sits in the box, whatever the image size."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 2)
    side = np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-12))
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()) / side)


def face_to_example(face: dict) -> bytes:
    """One face (face_dict) -> serialized tf.Example with its image file's bytes."""
    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(map(float, values))))

    def i(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    with open(face["image_path"], "rb") as handle:
        image = handle.read()
    x0, y0, x1, y1 = face["box"]
    width, height = face.get("image_size") or (0, 0)
    feature = {
        names.RAW_IMAGE: b(image),
        names.RAW_IMAGE_PATH: b(face["image_relpath"].encode()),
        names.RAW_LANDMARKS: f(face["landmarks"]),
        names.RAW_NUM_LANDMARKS: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[len(face["landmarks"]) // 2])),
        names.RAW_BOX: f(face["box"]),
        names.RAW_BOX_SOURCE: b(face["box_source"].encode()),
        names.RAW_DATASET: b(face["dataset"].encode()),
        names.RAW_SUBSET: b(face["subset"].encode()),
        names.RAW_FACE_ID: b(face["face_id"].encode()),
        names.RAW_BOX_WIDTH: f([x1 - x0]),
        names.RAW_BOX_HEIGHT: f([y1 - y0]),
        names.RAW_IMAGE_WIDTH: i(width),
        names.RAW_IMAGE_HEIGHT: i(height),
        names.RAW_IMAGE_CHANNELS: i(image_channels(image)),
        names.RAW_LANDMARK_SPREAD: f([landmark_spread(face["landmarks"], face["box"])]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def record_to_example(record) -> bytes:
    """A FaceRecord (facealign.core.data) -> serialized raw tf.Example."""
    return face_to_example(face_dict(record))


def parse_example(serialized: bytes) -> dict:
    """A serialized raw tf.Example -> {"image" (encoded bytes), "landmarks" float32 [N, 2],
    "box" float64 [4], "face_id", "dataset", "subset"}."""
    feature = tf.train.Example.FromString(serialized).features.feature

    def text(name: str) -> str:
        return feature[name].bytes_list.value[0].decode()

    landmarks = np.asarray(feature[names.RAW_LANDMARKS].float_list.value, np.float32)
    return {"image": feature[names.RAW_IMAGE].bytes_list.value[0],
            "landmarks": landmarks.reshape(-1, 2),
            "box": np.asarray(feature[names.RAW_BOX].float_list.value, np.float64),
            "face_id": text(names.RAW_FACE_ID), "dataset": text(names.RAW_DATASET),
            "subset": text(names.RAW_SUBSET)}
