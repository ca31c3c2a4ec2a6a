"""benchmarks/served_boxes.py: the served detector (BlazeFace, calibrated) run on real AFW and
HELEN training photos replaces each row's 300-W box by the detection that overlaps it; a row
whose box no detection overlaps by IoU 0.5, or whose photo cannot be read, keeps its CSV box;
the rewritten CSVs have the same rows and columns and feed a configuration's `boxes`."""
import csv

import cv2
import numpy as np

from benchmarks import served_boxes
from facealign.core import config as config_lib
from facealign.core.data import BOX_FROM_DETECTOR, read_dataset
from serving import box_convention, detector

PHOTOS = ("afw/1051618982_1.jpg", "afw/1130084326_3.jpg", "helen/trainset/100466187_1.jpg")
BOX = ("x0", "y0", "x1", "y1")


def csv_rows(shared_data) -> list[dict]:
    rows = []
    for name in ("afw.csv", "helen_trainset.csv"):
        with open(shared_data / "300w" / "boxes" / name) as handle:
            rows += [row for row in csv.DictReader(handle) if row["image"] in PHOTOS]
    return rows


def as_box(row) -> np.ndarray:
    return np.array([float(row[k]) for k in BOX])


def test_each_face_gets_the_served_box_that_overlaps_its_csv_box(shared_data):
    rows = csv_rows(shared_data)
    assert len(rows) == len(PHOTOS)
    served = detector.create()
    replaced, overlaps = served_boxes.served_rows(rows, shared_data / "300w", served.detect)

    assert [r["image"] for r in replaced] == [r["image"] for r in rows]
    assert len(overlaps) == len(rows)          # BlazeFace finds each of these faces
    for row, new, overlap in zip(rows, replaced, overlaps):
        image = cv2.imread(str(shared_data / "300w" / row["image"]))
        detections = np.asarray(served.detect(image)).reshape(-1, 4)
        assert np.allclose(as_box(new), detections[box_convention.match(detections,
                                                                         as_box(row))],
                           atol=0.01)
        assert 0.5 <= overlap < 1.0            # its own box, not the CSV's
        assert abs(overlap - box_convention.box_iou(as_box(row), as_box(new))[0]) < 1e-3


def test_rows_without_an_overlapping_detection_keep_their_csv_box(shared_data):
    row = csv_rows(shared_data)[0]
    far = {**row, "x0": "0", "y0": "0", "x1": "20", "y1": "20"}       # no face there
    missing = {"image": "afw/no_such_photo.jpg", **{k: row[k] for k in BOX}}
    kept, overlaps = served_boxes.served_rows([far, missing], shared_data / "300w",
                                              detector.create().detect)
    assert kept == [far, missing] and overlaps == []


def test_the_written_csvs_feed_a_configuration(shared_data, tmp_path):
    result = served_boxes.main(["--out", str(tmp_path), "--data", str(shared_data / "300w"),
                                "--csvs", "afw.csv"])
    assert result["afw.csv"]["faces"] == result["afw.csv"]["served"] + \
        result["afw.csv"]["kept_csv_box"] == 337
    assert result["afw.csv"]["served"] >= 330 and result["afw.csv"]["mean_iou"] > 0.7
    with open(tmp_path / "afw.csv") as handle:
        written = list(csv.DictReader(handle))
    with open(shared_data / "300w" / "boxes" / "afw.csv") as handle:
        original = list(csv.DictReader(handle))
    assert [r["image"] for r in written] == [r["image"] for r in original]
    records, _ = read_dataset(shared_data / "300w", "300w", boxes=[tmp_path / "afw.csv"])
    read = {r.image_relpath: np.asarray(r.box, np.float64) for r in records
            if r.box_source == BOX_FROM_DETECTOR}
    assert len(read) == 337
    for row in written:
        assert np.allclose(read[row["image"]], as_box(row), atol=0.01)


def test_the_served_boxes_lever_holds_out_the_same_faces_from_the_new_boxes(tmp_path):
    from benchmarks import lever_ablation
    from facealign.core import splits

    overrides = lever_ablation.served_box_overrides(tmp_path)
    config = served_boxes.REPO / "configs" / "300w-fast.yaml"
    base = splits.held_out_faces(config_lib.load(config))
    served = splits.held_out_faces(config_lib.load(config, list(overrides)))
    assert [f.face_id for f in served] == [f.face_id for f in base] and len(base) == 100
    moved = [np.abs(np.asarray(s.box) - np.asarray(b.box)).max() for s, b in zip(served, base)]
    assert sum(m > 1.0 for m in moved) >= 95      # nearly every start is the detector's now


def test_malformed_rows_are_rejected_by_line_and_counted(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "boxes").mkdir(parents=True)
    (data / "afw").symlink_to(shared_data / "300w" / "afw")
    (data / "boxes" / "bad.csv").write_text(
        "image,x0,y0,x1,y1\nafw/1051618982_1.jpg,108.53,108.84,324.42,324.74\n"
        "afw/1130084326_3.jpg,1,2,x,4\nafw/no_such_photo.jpg,1,2,3,4\n")
    result = served_boxes.main(["--out", str(tmp_path / "out"), "--data", str(data),
                                "--csvs", "bad.csv"])
    assert result["bad.csv"]["faces"] == result["bad.csv"]["served"] == 1
    assert result["bad.csv"]["rejected"] == 2
    printed = capsys.readouterr().out
    assert "served_boxes: rejected " in printed
    assert "bad.csv: line 3: " in printed and "bad.csv: line 4: " in printed
    with open(tmp_path / "out" / "bad.csv") as handle:
        assert [row["image"] for row in csv.DictReader(handle)] == ["afw/1051618982_1.jpg"]
