"""serving/tracking.py without the CLI: the box relation, the lost-face checks, and the
Tracker following a real face moved across frames, with a real (centroid probe) SavedModel."""
import cv2
import numpy as np
import pytest

from facealign.core import geometry
from facealign.core.data.pts import read_pts
from serving import tracking
from serving.aligner import Aligner
from serving.model import open_model
from tests import model_fixtures

FACE = "300w/afw/1051618982_1.jpg"


def test_box_relation_round_trip():
    landmarks = np.array([[10, 20], [50, 20], [30, 70]], np.float32)
    box = np.array([0, 5, 60, 80], np.float32)
    relation = tracking.box_relation(box, landmarks)
    np.testing.assert_allclose(tracking.box_from_landmarks(landmarks, relation), box, atol=1e-4)
    np.testing.assert_allclose(tracking.box_from_landmarks(landmarks + [7, -3], relation),
                               box + [7, -3, 7, -3], atol=1e-4)


def test_lost_reason(shared_data):
    points = read_pts((shared_data / FACE).with_suffix(".pts"))
    frame = (400, 500)

    def reason(landmarks, spread=0.01, previous=None):
        return tracking.lost_reason(landmarks, spread, frame, previous, max_spread=0.05,
                                    min_face=12.0)

    assert reason(points) is None and reason(points, previous=points * 1.2) is None
    assert reason(points, spread=0.2).startswith("stage_spread 0.200")
    assert reason(np.where(np.arange(68)[:, None] == 3, np.nan, points)) == "not finite"
    centre = points.mean(axis=0)
    assert reason(centre + (points - centre) * 0.01) == "landmarks collapsed"
    assert reason(points + [1000, 0]) == "left the frame"
    assert reason(centre + (points - centre) * 3, previous=points) == (
        "landmark box changed size more than 2x")


def moving_face(shared_data, frames: int, step=(5, -2)):
    """A real face (its landmarks' box, 1.2x) pasted on black, moving by `step` each frame,
    and its box in the first frame."""
    image = cv2.imread(str(shared_data / FACE))
    x0, y0, x1, y1 = geometry.bounding_box(read_pts((shared_data / FACE).with_suffix(".pts")))
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.6 * max(x1 - x0, y1 - y0)
    patch = cv2.resize(image[int(cy - half):int(cy + half), int(cx - half):int(cx + half)],
                       (100, 100), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(frames):
        frame = np.zeros((240, 320, 3), np.uint8)
        left, top = 60 + step[0] * i, 90 + step[1] * i
        frame[top:top + 100, left:left + 100] = patch
        out.append(frame)
    return out, np.array([60, 90, 160, 190], np.float32)


@pytest.fixture(scope="module")
def centroid(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("tracking") / "centroid"
    model_fixtures.export_centroid_model(path, model_fixtures.afw_mean_shape(shared_data))
    return open_model(path)


def test_tracker_follows_from_the_previous_landmarks(centroid, shared_data):
    frames, box = moving_face(shared_data, 5)
    tracker = tracking.Tracker(Aligner(centroid), first_box=box)
    entries = [tracker.step(i, frame) for i, frame in enumerate(frames)]
    assert [e["redetected"] for e in entries] == [True, False, False, False, False]
    assert not any(e["lost"] for e in entries)
    assert entries[0]["box"] == box.tolist() and tracker.relation is not None
    centres = np.array([np.mean(e["landmarks"], axis=0) for e in entries])
    np.testing.assert_allclose(np.diff(centres, axis=0), [[5, -2]] * 4, atol=1.0)
    # a black frame loses the face; the detector (OpenCV's cascade) finds it again (its box
    # is off the probe's centre: a looser spread limit than a DAN's)
    tracker = tracking.Tracker(Aligner(centroid), first_box=box, max_spread=0.5)
    entries = [tracker.step(0, frames[0]), tracker.step(1, np.zeros_like(frames[0])),
               tracker.step(2, frames[1])]
    assert [e["lost"] for e in entries] == [False, True, False]
    assert entries[2]["redetected"] and entries[2]["box"] != box.tolist()
    np.testing.assert_allclose(np.mean(entries[2]["landmarks"], axis=0),
                               centres[1], atol=3.0)
