"""benchmarks/peer_comparison.py and benchmarks/dlib_peer.py: the 300-W -> dlib box fit, the
scoring of hits and misses, and a tiny real run of the benchmark on 3 public test faces."""
import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

from benchmarks import dlib_peer, peer_comparison
from facealign.core import landmarks68
from serving.box_convention import BoxCalibration

REPO = pathlib.Path(__file__).resolve().parents[1]
FAST = REPO / "pretrained" / "dan-300w-fast"
HAS_DLIB = all(importlib.util.find_spec(name) for name in ("dlib", "face_recognition_models"))
NO_DLIB = "dlib is not installed: pip install -e .[peers] (dlib-bin, face_recognition_models)"


def synthetic_boxes(rng, count):
    centres = rng.uniform(100, 400, (count, 2))
    sizes = rng.uniform(60, 200, (count, 1))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def test_the_box_fit_recovers_a_known_calibration():
    rng = np.random.default_rng(0)
    known = BoxCalibration(dx=0.02, dy=-0.07, sx=0.8, sy=0.85)
    targets = synthetic_boxes(rng, 40)
    detections = [known.apply(box) for box in targets]
    # a neighbouring face beside one, which the match ignores; a photo where none is found
    detections[0] = np.concatenate([detections[0] + [150, 0, 150, 0], detections[0]])
    detections[1] = np.zeros((0, 4))
    fitted = dlib_peer.fit_boxes(detections, targets)
    found = fitted["calibration"]
    assert fitted["matched"] == fitted["raw_matched"] == 39
    for key in ("dx", "dy", "sx", "sy"):
        assert getattr(found, key) == pytest.approx(getattr(known, key), abs=1e-4)
    assert fitted["mean_iou_mapped"] > 0.999 > fitted["mean_iou_unmapped"]
    assert max(fitted["residual_std"]) < 1e-4


def test_the_box_fit_is_the_least_squares_mean_under_noise():
    rng = np.random.default_rng(1)
    known = BoxCalibration(dx=0.0, dy=-0.06, sx=0.82, sy=0.82)
    targets = synthetic_boxes(rng, 400)
    mapped = known.apply(targets)
    size = (mapped[:, 2:] - mapped[:, :2]).repeat(2, axis=1)
    detections = [box[None] for box in mapped + rng.normal(0, 0.03, mapped.shape) * size]
    found = dlib_peer.fit_boxes(detections, targets)["calibration"]
    for key in ("dx", "dy", "sx", "sy"):
        assert getattr(found, key) == pytest.approx(getattr(known, key), abs=0.01)


def fake_system(faces, detections):
    """A System whose 'images' are face indices: from_box answers the truth; photo gives
    detections[i] with the true landmarks."""
    truth = [np.asarray(face.landmarks) for face in faces]
    return peer_comparison.System(
        "fake", "none", peer_comparison.BOX,
        photo=lambda i: [(box, truth[i]) for box in detections[i]],
        from_box=lambda i, box: truth[i])


def test_a_perfect_prediction_scores_zero_and_a_miss_is_a_failure(shared_data):
    faces = peer_comparison.read_test_faces(shared_data / "300w-test", 3)
    box = np.asarray(faces[0].box, np.float32)
    far = box + np.float32(1000)
    system = fake_system(faces, [[far, box], [far], []])  # a hit, a wrong face, nothing
    detected, boxed = peer_comparison.scored_errors(system, faces, [0, 1, 2])
    assert detected[0] == 0.0 and np.isinf(detected[1:]).all()
    assert (boxed == 0.0).all()
    row = peer_comparison.summary(detected, np.isfinite(detected))
    assert row["found"] == 1 and row["faces"] == 3
    assert row["nme_inter_ocular"] == 0.0 and row["nme_common"] == 0.0
    assert row["failure_rate_0.08"] == pytest.approx(200 / 3, abs=0.01)
    assert row["auc_0.08"] == pytest.approx(1 / 3, abs=1e-4)
    perfect = peer_comparison.summary(boxed, np.isfinite(detected))
    assert (perfect["auc_0.08"], perfect["failure_rate_0.08"]) == (1.0, 0.0)


def test_an_error_of_a_tenth_of_the_eye_distance_is_nme_10_percent_and_a_failure(shared_data):
    face = peer_comparison.read_test_faces(shared_data / "300w-test", 1)[0]
    truth = np.asarray(face.landmarks, np.float64)
    shift = 0.1 * landmarks68.inter_ocular_distance(truth[None])[0]
    system = peer_comparison.System("fake", "none", peer_comparison.BOX,
                                    photo=lambda _: [], from_box=lambda _, __: truth + [shift, 0])
    _, boxed = peer_comparison.scored_errors(system, [face], [0])
    row = peer_comparison.summary(boxed, [True])
    assert row["nme_inter_ocular"] == pytest.approx(10.0, abs=1e-3)
    assert row["failure_rate_0.08"] == 100.0 and row["auc_0.08"] == 0.0


def test_without_dlib_the_benchmark_stops_with_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    with pytest.raises(SystemExit) as stopped:
        peer_comparison.main(["--limit", "1"])
    message = str(stopped.value.code)
    assert "\n" not in message
    assert "dlib is not installed" in message and "pip install -e .[peers]" in message


def test_a_model_spec_without_a_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        peer_comparison.main(["--model", str(FAST), "--no-dlib"])
    assert "give NAME=PATH" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real run on the first 3 test faces: dan-300w-fast, plain and flip-averaged (and
    dlib where installed)."""
    out = tmp_path_factory.mktemp("peer") / "peer.json"
    argv = ["--model", f"fast={FAST}", "--data", str(peer_comparison.TEST), "--limit", "3",
            "--flip-average", "fast", "--timing-faces", "2", "--rounds", "1", "--json", str(out)]
    if not HAS_DLIB:
        argv.append("--no-dlib")
    return peer_comparison.main(argv), out


def rows_of(result, system_prefix):
    return [row for row in result["rows"] if row["system"].startswith(system_prefix)]


def check_rows(rows):
    detector, boxed = rows
    assert detector["boxes"].startswith(peer_comparison.OWN)
    assert boxed["found"] == boxed["faces"] == 3
    for row in rows:
        assert row["found"] == len([e for e in row["errors"] if e is not None])
        if row["found"]:
            assert 0 < row["nme_inter_ocular"] < 10, row   # real models on real faces
        assert row["ms_landmarks"] > 0
    assert detector["ms_photo"] > 0 and boxed["ms_photo"] is None


def test_our_model_scores_three_real_faces_from_both_boxes(tiny_run):
    result, out = tiny_run
    check_rows([row for row in result["rows"] if row["system"] == "fast"])
    averaged = rows_of(result, "fast averaged")
    check_rows(averaged)
    plain = [row for row in result["rows"] if row["system"] == "fast"]
    assert averaged[1]["errors"] != plain[1]["errors"]   # a second answer, averaged in
    assert json.loads(out.read_text())["rows"] == result["rows"]
    assert result["faces"] == 3 and result["machine"]["tf_threads"] == 1
    assert 0 < result["cpu_share"] <= 1
    text = peer_comparison.table(result)
    assert "| fast | 300-W box | 3/3 |" in text
    if result["mediapipe"]:
        assert all(ms > 0 for ms in result["mediapipe"]["ms_per_face"].values())
        assert "MediaPipe face landmark" in text


@pytest.mark.skipif(not HAS_DLIB, reason=NO_DLIB)
def test_dlib_scores_three_real_faces_from_both_boxes(tiny_run):
    result, _ = tiny_run
    rows = rows_of(result, "dlib")
    check_rows(rows)
    assert rows[1]["boxes"] == peer_comparison.MAPPED
    assert result["dlib"]["w300_to_dlib"] == vars(dlib_peer.W300_TO_DLIB)
