"""The exported SavedModel on real 300-W photos: the in-graph crop, the mapping back to
image pixels, the three signatures and the metadata file.

Two tiny models with the DAN's dict interface ({"stage_1": ..., "stage_2": ...}):
`constant` returns S0 from both stages, so serving_default must return S0 fitted to
the box; `probe` moves S0 by an amount computed from the crop's pixels, so the
crop itself shows in the output, and its two stages differ.
"""
import csv
import pathlib

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from components.landmark_example_gen.executor import face_to_example
from facealign.core import canonical, geometry, model_format
from facealign.core.data import read_dataset
from facealign.core.model_format import PREDICT_CANONICAL, SERVING_DEFAULT, TF_EXAMPLE
from trainer import export

SIZE = 112
FACES = 4


class MeanShapeLayer(keras.layers.Layer):
    """S0 (+ a constant, + an offset from the image's pixels when `probe`): [B, N, 2]."""

    def __init__(self, mean_shape, offset=(0.0, 0.0), probe=False, **kwargs):
        super().__init__(**kwargs)
        self.shape_value = (np.asarray(mean_shape, np.float32).reshape(-1, 2)
                            + np.asarray(offset, np.float32))
        self.probe = probe

    def call(self, images):
        batch = tf.shape(images)[0]
        shape = tf.tile(tf.constant(self.shape_value)[None], [batch, 1, 1])
        if not self.probe:
            return shape
        pixels = tf.cast(images, tf.float32) / 255.0
        whole = tf.reduce_mean(pixels, axis=[1, 2, 3])
        top = tf.reduce_mean(pixels[:, : SIZE // 2], axis=[1, 2, 3])
        return shape + tf.stack([8.0 * whole - 4.0, 8.0 * top - 4.0], axis=-1)[:, None, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.shape_value.shape


def tiny_model(mean_shape, probe: bool) -> keras.Model:
    image = keras.Input((SIZE, SIZE, 1), dtype="uint8", name="image")
    stage_1 = MeanShapeLayer(mean_shape, name="s1")(image)
    stage_2 = (MeanShapeLayer(mean_shape, (3.0, 4.0), probe=True, name="s2")(image) if probe
               else MeanShapeLayer(mean_shape, name="s2")(image))
    return keras.Model(image, {"stage_1": stage_1, "stage_2": stage_2})


@pytest.fixture(scope="module")
def faces(shared_data):
    """[(jpeg bytes, box float32 [4], path)] of a few AFW faces with their detector boxes."""
    root = shared_data / "300w"
    with open(root / "boxes" / "afw.csv") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["image"])
    chosen = []
    for row in rows:
        path = root / row["image"]
        size = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
        if all(size != c[2].shape for c in chosen):  # faces of different image sizes
            box = np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")], np.float32)
            chosen.append((path.read_bytes(), box, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
                           path))
        if len(chosen) == FACES:
            break
    assert len({c[2].shape for c in chosen}) == FACES
    return chosen


@pytest.fixture(scope="module")
def exported(demo_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    root = demo_data / "300w"
    records, _ = read_dataset(root, boxes=[root / "boxes.csv"], name="demo")
    mean = geometry.procrustes_mean([r.landmarks for r in records])
    s0 = canonical.CanonicalFrame.from_mean_shape(mean, SIZE).mean_shape
    result = {"s0": s0}
    for name in ("constant", "probe"):
        model = tiny_model(s0, probe=name == "probe")
        path = str(tmp / name)
        export.export_saved_model(model, s0, path, metadata={"model": name, "stages": 2})
        result[name] = (model, path, tf.saved_model.load(path))
    return result


def serve(loaded, faces_, signature=SERVING_DEFAULT):
    fn = loaded.signatures[signature]
    out = fn(image_bytes=tf.constant([f[0] for f in faces_]),
             box=tf.constant(np.stack([f[1] for f in faces_])))
    return {k: v.numpy() for k, v in out.items()}


def graph_crop(exported, encoded: bytes, box) -> np.ndarray:
    """The in-graph crop (export._Graph.crop_one), uint8 [S, S]."""
    model, _, _ = exported["constant"]
    graph = export._Graph(model, exported["s0"], SIZE)
    scale, centre = graph.fit(tf.constant(np.asarray(box, np.float32)[None]))
    return graph.crop_one((tf.constant(encoded), scale[0], centre[0])).numpy()[..., 0]


def interior(image_shape, box, s0, margin: int = 2) -> np.ndarray:
    """Canonical pixels at least `margin` pixels inside the photo."""
    frame = canonical.CanonicalFrame(s0, SIZE)
    inside = cv2.warpAffine(np.full(image_shape, 255, np.uint8),
                            canonical.eval_transform(frame, box),
                            (SIZE, SIZE), flags=cv2.INTER_NEAREST)
    return cv2.erode(inside, np.ones((2 * margin + 1,) * 2, np.uint8)) > 0


# --- serving_default -------------------------------------------------------------------

def test_signatures_and_their_interface(exported):
    _, _, loaded = exported["constant"]
    assert set(loaded.signatures) >= {"serving_default", "serving_tf_example",
                                      "predict_canonical"}
    default = loaded.signatures[SERVING_DEFAULT]
    assert set(default.structured_input_signature[1]) == {"image_bytes", "box"}
    assert set(default.structured_outputs) == {"landmarks", "stage_spread", "landmark_spread"}
    canonical_fn = loaded.signatures[PREDICT_CANONICAL]
    spec = canonical_fn.structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, SIZE, SIZE, 1]


def test_constant_model_returns_s0_fitted_to_the_box(exported, faces):
    _, _, loaded = exported["constant"]
    out = serve(loaded, faces)  # mixed image sizes in one batch
    assert out["landmarks"].shape == (FACES, 68, 2) and out["landmarks"].dtype == np.float32
    for landmarks, (_, box, _, _) in zip(out["landmarks"], faces):
        np.testing.assert_allclose(landmarks, geometry.fit_shape_to_box(exported["s0"], box),
                                   atol=1e-3)
    np.testing.assert_array_equal(out["stage_spread"], np.zeros(FACES, np.float32))


def test_probe_model_is_the_canonical_output_mapped_back(exported, faces):
    model, _, loaded = exported["probe"]
    out = serve(loaded, faces)
    s0 = exported["s0"]
    for landmarks, (encoded, box, _, _) in zip(out["landmarks"], faces):
        crop = graph_crop(exported, encoded, box)
        predicted = model(crop[None, ..., None], training=False)["stage_2"].numpy()[0]
        expected = geometry.apply_transform(geometry.box_fit_transform(s0, box), predicted)
        np.testing.assert_allclose(landmarks, expected, atol=2e-3)
    # the output depends on the pixels: different faces move differently (relative to their box)
    relative_moves = np.array([(lm[0] - geometry.fit_shape_to_box(s0, box)[0]) / (box[2] - box[0])
                               for lm, (_, box, _, _) in zip(out["landmarks"], faces)])
    assert np.ptp(relative_moves, axis=0).max() > 1e-3


def test_batch_result_equals_single_results(exported, faces):
    _, _, loaded = exported["probe"]
    batch = serve(loaded, faces)
    for i, face in enumerate(faces):
        single = serve(loaded, [face])
        np.testing.assert_allclose(single["landmarks"][0], batch["landmarks"][i], atol=1e-4)
        np.testing.assert_allclose(single["stage_spread"][0], batch["stage_spread"][i], atol=1e-6)


def test_png_and_grayscale_images(exported, faces):
    _, _, loaded = exported["probe"]
    encoded, box, _, _ = faces[0]
    rgb = tf.io.decode_image(encoded, channels=3).numpy()
    png = tf.io.encode_png(rgb).numpy()  # lossless: the same pixels as the JPEG
    gray = np.round(tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32)).numpy())
    gray_png = tf.io.encode_png(np.clip(gray, 0, 255).astype(np.uint8)).numpy()
    gray_jpeg = cv2.imencode(".jpg", gray[..., 0].astype(np.uint8),
                             [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    out = serve(loaded, [(encoded, box), (png, box), (gray_png, box), (gray_jpeg, box)])
    assert np.all(np.isfinite(out["landmarks"]))
    np.testing.assert_allclose(out["landmarks"][1], out["landmarks"][0], atol=1e-4)
    # a gray image is the luma the graph computes itself (to rounding)
    np.testing.assert_allclose(out["landmarks"][2], out["landmarks"][0], atol=0.05)
    np.testing.assert_allclose(out["landmarks"][3], out["landmarks"][0], atol=0.2)
    constant = serve(exported["constant"][2], [(gray_png, box), (gray_jpeg, box)])
    for landmarks in constant["landmarks"]:
        np.testing.assert_allclose(landmarks, geometry.fit_shape_to_box(exported["s0"], box),
                                   atol=1e-3)


# --- serving_tf_example and predict_canonical ------------------------------------------------

def test_serving_tf_example_matches_serving_default(exported, faces):
    _, _, loaded = exported["probe"]
    serialized = []
    for _encoded, box, _image, path in faces:
        face = {"image_path": str(path), "image_relpath": f"afw/{path.name}",
                "landmarks": [0.0] * 136, "box": box.tolist(), "box_source": "detector",
                "dataset": "shared", "subset": "afw", "face_id": f"shared:afw/{path.stem}"}
        serialized.append(face_to_example(face))
    from_examples = loaded.signatures[TF_EXAMPLE](examples=tf.constant(serialized))
    default = serve(loaded, faces)
    np.testing.assert_allclose(from_examples["landmarks"].numpy(), default["landmarks"],
                               atol=1e-4)
    np.testing.assert_allclose(from_examples["stage_spread"].numpy(), default["stage_spread"],
                               atol=1e-6)


def test_predict_canonical_equals_the_keras_model(exported):
    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 1), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    for name in ("constant", "probe"):
        model, _, loaded = exported[name]
        out = loaded.signatures[PREDICT_CANONICAL](image=tf.constant(images))
        expected = model(images, training=False)
        np.testing.assert_allclose(out["landmarks"].numpy(), expected["stage_2"].numpy(),
                                   atol=1e-5)


def test_stage_spread(exported):
    s0 = exported["s0"]
    images = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 1), dtype=np.uint8)
    constant = exported["constant"][2].signatures[PREDICT_CANONICAL](image=tf.constant(images))
    np.testing.assert_array_equal(constant["stage_spread"].numpy(), np.zeros(3, np.float32))
    probe = exported["probe"][2].signatures[PREDICT_CANONICAL](image=tf.constant(images))
    landmarks = probe["landmarks"].numpy()
    # stage_1 is S0 and every point of stage_2 moved by the same vector
    moved = np.linalg.norm(landmarks[:, 0] - s0[0], axis=-1)
    expected = moved / np.linalg.norm(s0.max(0) - s0.min(0))
    spread = probe["stage_spread"].numpy()
    assert np.all(spread > 0)
    np.testing.assert_allclose(spread, expected, rtol=1e-4)


# --- metadata ------------------------------------------------------------------------------

def test_metadata_file(exported):
    _, path, _ = exported["probe"]
    metadata = model_format.ModelMetadata.read(path).to_dict()
    assert metadata["num_landmarks"] == 68 and metadata["image_size"] == SIZE
    assert metadata["model"] == "probe" and metadata["stages"] == 2
    np.testing.assert_allclose(metadata["mean_shape"], exported["s0"], atol=1e-4)
    assert (pathlib.Path(path) / "assets.extra" / model_format.METADATA_FILE).is_file()


# --- the in-graph crop against the numpy/OpenCV one -------------------------------------------

def edge_face(face):
    """The face with the photo cut just left of its box (a PNG), so the frame leaves the photo."""
    encoded, box, _, path = face
    cut = int(box[0]) + 3
    rgb = tf.io.decode_image(encoded, channels=3).numpy()[:, cut:]
    png = tf.io.encode_png(rgb).numpy()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return png, box - np.array([cut, 0, cut, 0], np.float32), image, path.with_suffix(".png")


def test_in_graph_crop_matches_eval_sample(exported, faces):
    s0 = exported["s0"]
    frame = canonical.CanonicalFrame(s0, SIZE)
    black = 0
    for encoded, box, image, path in faces + [edge_face(faces[0])]:
        ours = graph_crop(exported, encoded, box)
        theirs = canonical.eval_sample(image, np.zeros((68, 2), np.float32), box, frame).image
        mask = interior(image.shape, box, s0)
        assert mask.mean() > 0.5
        diff = np.abs(ours.astype(int) - theirs.astype(int))[mask]
        # different JPEG -> gray paths (TF: RGB then luma; OpenCV: the JPEG's Y plane)
        assert diff.mean() < 1.5, path.name
        assert np.percentile(diff, 99) <= 6, path.name
        # well outside the photo both are black
        outside = ~cv2.dilate(interior(image.shape, box, s0, margin=0).astype(np.uint8),
                              np.ones((5, 5), np.uint8)).astype(bool)
        assert np.all(ours[outside] == 0) and np.all(theirs[outside] == 0)
        black += outside.sum()
        # same decoded pixels: the geometry agrees to rounding (pixel centres, bilinear)
        rgb = tf.io.decode_image(encoded, channels=3).numpy()
        gray = np.clip(np.round(tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32)).numpy()),
                       0, 255).astype(np.uint8)[..., 0]
        same = canonical.eval_sample(gray, np.zeros((68, 2), np.float32), box, frame).image
        assert np.abs(ours.astype(int) - same.astype(int))[mask].max() <= 1, path.name
    assert black > 100  # the edge face did leave the photo


def test_weights_are_stored_once(demo_data, tmp_path):
    """The SavedModel's checkpoint holds each weight once (Keras' ExportArchive held two copies)."""
    s0 = np.random.default_rng(0).uniform(20, 90, (68, 2)).astype(np.float32)
    image = keras.Input((SIZE, SIZE, 1), dtype="uint8")
    features = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(
        keras.layers.Rescaling(1 / 255)(image)))
    hidden = keras.layers.Dense(2048)(features)                 # 196*2048 weights: 1.6 MB
    points = keras.layers.Reshape((68, 2))(keras.layers.Dense(136)(hidden))
    model = keras.Model(image, {"stage_1": points, "stage_2": points})
    path = tmp_path / "model"
    export.export_saved_model(model, s0, str(path))
    weight_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
    stored = sum(f.stat().st_size for f in (path / "variables").iterdir())
    assert weight_bytes <= stored < 1.1 * weight_bytes
    names = [name for name, _ in tf.train.list_variables(str(path / "variables" / "variables"))]
    assert len([n for n in names if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]) == len(model.weights)
    loaded = tf.saved_model.load(str(path))
    crops = np.random.default_rng(1).integers(0, 255, (3, SIZE, SIZE, 1), np.uint8)
    expected = model(crops)["stage_2"].numpy()
    got = loaded.signatures[PREDICT_CANONICAL](image=tf.constant(crops))["landmarks"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_trainer_warmup_faces_are_held_out_crops_with_their_boxes(demo_data, tmp_path):
    """run.warmup_faces turns eval samples into (PNG, box) requests whose in-graph crop
    reproduces the sample: the box really is the face's detector box in that picture."""
    from facealign.core.canonical_example import encode_canonical_example
    from trainer import run

    root = demo_data / "300w"
    records, _ = read_dataset(root, boxes=[root / "boxes.csv"], name="demo")
    frame = canonical.CanonicalFrame.from_mean_shape(
        geometry.procrustes_mean([r.landmarks for r in records]), SIZE)
    samples = [canonical.eval_sample(cv2.imread(str(r.image_path)), r.landmarks, r.box, frame)
               for r in records[:3]]
    path = tmp_path / "eval-00000-of-00001.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for sample in samples:
            writer.write(encode_canonical_example(sample, "demo:x").SerializeToString())
    faces = run.warmup_faces([str(tmp_path / "eval-*")], count=2)
    assert len(faces) == 2
    graph = export._Graph(tiny_model(frame.mean_shape, probe=False), frame.mean_shape, SIZE)
    for (png, box), sample in zip(faces, samples):
        assert png.startswith(b"\x89PNG")
        scale, centre = graph.fit(tf.constant([box], tf.float32))
        np.testing.assert_allclose(scale.numpy(), [1.0], atol=1e-4)
        crop = graph.crop_one((tf.constant(png), scale[0], centre[0])).numpy()[..., 0]
        assert np.abs(crop.astype(int) - sample.image.astype(int)).max() <= 1
