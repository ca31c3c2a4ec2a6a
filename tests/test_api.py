"""The Python API (facealign.load(...).align(...)) on the committed pretrained DAN and real
300-W photos: a TF Serving base folder and its version folder, boxes given or detected, every
image input form, a model behind a REST URL, and errors that name the bad input."""
import csv
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

import facealign
from facealign.core import metrics
from facealign.core.data.pts import read_pts
from serving import server
from tests import model_fixtures

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = REPO / "pretrained" / "dan-300w"
IMAGE = "afw/1051618982_1.jpg"


@pytest.fixture(scope="module")
def photo(shared_data):
    """(path, its box from the 300-W box CSV, its 68 annotated points)."""
    root = shared_data / "300w"
    with open(root / "boxes" / "afw.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["image"] == IMAGE)
    box = np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")], np.float32)
    return root / IMAGE, box, read_pts((root / IMAGE).with_suffix(".pts"))


@pytest.fixture(scope="module")
def aligner():
    return facealign.load(BASE)  # the base folder: its newest (only) version


def nme(face, truth) -> float:
    return float(metrics.face_errors(face.landmarks[None], truth[None])[0])


def test_base_folder_and_version_folder_align_a_photo_from_its_box(aligner, photo):
    path, box, truth = photo
    (version,) = [p for p in BASE.iterdir() if p.name.isdigit()]
    assert aligner.model.path == str(version)
    (face,) = aligner.align(path, boxes=box)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.box_source == "user" and face.box.tolist() == box.tolist()
    assert nme(face, truth) < 0.06  # inter-ocular; the model's held-out mean is 5.4%
    assert 0 <= face.stage_spread < 0.05
    (same,) = facealign.load(str(version)).align(str(path), [box.tolist()])
    np.testing.assert_allclose(same.landmarks, face.landmarks, atol=1e-3)


def test_without_boxes_the_detector_finds_the_face(aligner, photo):
    path, box, truth = photo
    faces = aligner.align(path)
    assert len(faces) == 1 and faces[0].box_source == "detector"
    found = faces[0].box
    overlap = np.r_[np.maximum(found[:2], box[:2]), np.minimum(found[2:], box[2:])]
    inter = np.prod(np.clip(overlap[2:] - overlap[:2], 0, None))
    assert inter / (np.prod(found[2:] - found[:2]) + np.prod(box[2:] - box[:2]) - inter) > 0.5
    assert nme(faces[0], truth) < 0.06
    assert aligner.align(np.zeros((120, 160, 3), np.uint8)) == []  # nothing to find


def test_bytes_and_rgb_or_gray_arrays_give_the_same_landmarks(aligner, photo):
    path, box, _ = photo
    (from_path,) = aligner.align(path, box)
    (from_bytes,) = aligner.align(path.read_bytes(), box)
    np.testing.assert_array_equal(from_bytes.landmarks, from_path.landmarks)  # same bytes
    bgr = cv2.imread(str(path))
    two_faces = aligner.align(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.stack([box, box + 3]))
    assert len(two_faces) == 2
    np.testing.assert_allclose(two_faces[0].landmarks, from_path.landmarks, atol=0.5)
    # each face from its own box: the second as when aligned alone from box + 3 (a good model
    # lands near the same points from both boxes, so "different from the first" proves nothing)
    (shifted,) = aligner.align(path, box + 3)
    np.testing.assert_allclose(two_faces[1].landmarks, shifted.landmarks, atol=0.5)
    assert np.abs(two_faces[1].landmarks - two_faces[0].landmarks).max() > 0.05
    (gray,) = aligner.align(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), box)
    np.testing.assert_allclose(gray.landmarks, from_path.landmarks, atol=0.5)


def test_bad_inputs_raise_errors_naming_them(aligner, photo, tmp_path):
    path, box, _ = photo
    cases = [
        (lambda: aligner.align(tmp_path / "missing.jpg", box), facealign.api.ImageError,
         f"{tmp_path / 'missing.jpg'}: cannot read"),
        (lambda: aligner.align(b"GIF89a not really", box), facealign.api.ImageError,
         "<bytes>: not an image OpenCV can decode"),
        (lambda: aligner.align(np.zeros((40, 40, 3), np.float32), box), facealign.api.ImageError,
         "dtype float32"),
        (lambda: aligner.align(np.zeros((40, 40, 2), np.uint8), box), facealign.api.ImageError,
         "shape [40, 40, 2]"),
        (lambda: aligner.align(path, box[:3]), facealign.api.BoxError,
         f"boxes for {path} of shape [3]"),
        (lambda: aligner.align(path, [box, box[:3]]), facealign.api.BoxError, "boxes for"),
        (lambda: aligner.align(path, box[[2, 1, 0, 3]]), facealign.api.BoxError,
         "x1 must exceed x0"),
        (lambda: aligner.align(path, [np.nan, 1, 2, 3]), facealign.api.BoxError, "not finite"),
        (lambda: facealign.load(tmp_path), facealign.api.ModelError,
         f"{tmp_path}: not a SavedModel folder"),
        (lambda: facealign.load(tmp_path / "nowhere"), facealign.api.ModelError,
         "no such model folder"),
        (lambda: facealign.load("http://localhost:8501/v2/models/x"), facealign.api.ModelError,
         "is not a model URL"),
    ]
    for call, error, words in cases:
        with pytest.raises(error) as info:
            call()
        assert words in str(info.value)
        assert isinstance(info.value, ValueError)


def test_a_rest_url_gives_what_the_folder_gives(shared_data, photo, tmp_path):
    path, box, _ = photo
    model_fixtures.export_tiny_dan(tmp_path / "4", model_fixtures.afw_mean_shape(shared_data))
    with server.LocalServer(tmp_path, "tiny", "127.0.0.1", 0, warmup=False) as local:
        remote = facealign.load(local.model_url)
        (over_rest,) = remote.align(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), box)
        with pytest.raises(facealign.api.ModelError, match="404"):
            facealign.load(local.url + "/v1/models/other").align(path, box)
    (in_process,) = facealign.load(tmp_path).align(path, box)
    np.testing.assert_allclose(over_rest.landmarks, in_process.landmarks, atol=0.5)
    assert over_rest.box_source == "user"


def test_importing_facealign_does_not_import_tensorflow():
    code = ("import sys, facealign, facealign.core.config\n"
            "assert 'tensorflow' not in sys.modules and 'facealign.api' not in sys.modules\n"
            "load = facealign.load  # imports facealign.api, not TensorFlow\n"
            "assert load is sys.modules['facealign.api'].load and 'load' in dir(facealign)\n"
            "assert 'tensorflow' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
