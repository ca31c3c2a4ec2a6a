"""`facealign data check` end to end: the figures on the real and demo data, exit codes."""
import pathlib
import shutil
import subprocess
import sys

from facealign.cli import main


def _check(capsys, *argv):
    code = main(["data", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_shared_300w_with_detector_boxes(shared_data, capsys):
    root = shared_data / "300w"
    code, out, err = _check(capsys, root, "--boxes", root / "boxes/afw.csv",
                            "--boxes", root / "boxes/helen_trainset.csv")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "accepted: 1,207 faces" in lines and "rejected: 0" in lines
    assert any(line.split() == ["300w:afw", "337", "0"] for line in lines)
    assert any(line.split() == ["300w:helen/trainset", "870", "0"] for line in lines)
    assert "face boxes: detector 1,207" in lines
    assert "rejects:" not in lines


def test_check_demo_data(demo_data, capsys):
    root = demo_data / "300w"
    code, out, _ = _check(capsys, root, "--boxes", root / "boxes.csv")
    assert code == 0
    assert "accepted: 60 faces" in out.splitlines() and "rejected: 0" in out.splitlines()


def test_check_coco(shared_data, capsys):
    wflw = shared_data / "samples/wflw"
    code, out, _ = _check(capsys, wflw, "--format", "coco", "--annotations",
                          wflw / "test_wflw.json")
    assert code == 0
    assert "accepted: 4 faces" in out and "landmarks per face: 98 (4 faces)" in out


def test_rejects_are_listed_and_the_exit_code_is_still_0(shared_data, tmp_path, capsys):
    for suffix in (".jpg", ".pts"):
        shutil.copy(shared_data / f"300w/afw/1051618982_1{suffix}", tmp_path)
    shutil.copy(shared_data / "300w/afw/111076519_1.pts", tmp_path)  # no image
    code, out, _ = _check(capsys, tmp_path)
    assert code == 0
    assert "accepted: 1 face" in out.splitlines() and "rejected: 1" in out.splitlines()
    assert f"  {tmp_path / '111076519_1.pts'}: no image beside the .pts" in out

    code, out, err = _check(capsys, tmp_path, "--on-error", "fail")
    assert code == 2 and out == ""
    assert err.startswith(f"facealign data: error: {tmp_path / '111076519_1.pts'}: no image beside")
    assert len(err.splitlines()) == 1


def test_unusable_input_exits_2_with_one_line(tmp_path, capsys):
    for argv, message in [
        ((tmp_path / "nope",), "dataset root does not exist"),
        ((tmp_path, "--boxes", tmp_path / "nope.csv"), "box CSV not found"),
        ((tmp_path, "--format", "coco"), "--format coco needs --annotations JSON"),
        ((tmp_path, "--format", "coco", "--annotations", tmp_path / "a.json"),
         "COCO annotation file not found"),
    ]:
        code, out, err = _check(capsys, *argv)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and message in err


def test_the_console_command_prints_no_traceback(tmp_path):
    command = pathlib.Path(sys.executable).parent / "facealign"  # the installed entry point
    result = subprocess.run([str(command), "data", "check", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"facealign data: error: {tmp_path / 'nope'}: "
                             "dataset root does not exist\n")
