"""benchmarks/dan_pareto.py: a tiny real run (a random-weight row, a trained stage-1 row, dlib),
the Pareto marking on a constructed example, and one-line errors for bad --trained specs."""
import json
import math

import pytest

from benchmarks import dan_pareto


def test_pareto_marking_on_a_constructed_example():
    points = [(1.0, 5.0),    # fastest: on the front
              (2.0, 4.0),    # on the front
              (3.0, 4.5),    # slower and worse than (2, 4)
              (4.0, 3.0),    # the most accurate: on the front
              (2.0, 4.0),    # a tie with the second: both on the front
              (0.5, None),   # no NME (random weights): never on it, and beats nobody
              (5.0, 3.0)]    # as accurate as (4, 3), slower
    assert dan_pareto.pareto_optimal(points) == [True, True, False, True, True, False, False]
    assert dan_pareto.pareto_optimal([]) == []
    rows = [{"name": f"r{i}", "ms": ms, "nme": nme} for i, (ms, nme) in enumerate(points)]
    fast_and_good = dan_pareto.place((0.8, 3.5), rows)
    assert fast_and_good == {"dominates": ["r0", "r1", "r2", "r4"], "dominated_by": [],
                             "on_front": True}
    beaten = dan_pareto.place((3.0, 4.2), rows)
    assert beaten["dominated_by"] == ["r1", "r4"] and beaten["dominates"] == ["r2"]
    assert not beaten["on_front"]


@pytest.mark.parametrize("spec, says", [
    ("16", "give WIDTH=PATH"),
    ("sixteen=pretrained/dan-300w-fast", "give WIDTH=PATH"),
    ("16=", "give WIDTH=PATH"),
    ("16=/no/such/model", "/no/such/model"),
    ("32=pretrained/dan-300w-fast", "has model.dan.base_filters 16"),
])
def test_a_bad_trained_spec_is_a_one_line_error(spec, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        dan_pareto.main(["--widths", "16,32", "--stages", "1", "--quantize", "float32",
                         "--no-dlib", "--trained", spec])
    message = str(stopped.value.code)
    assert message.startswith(f"dan_pareto: --trained {spec}: ") and says in message
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err


def test_a_trained_width_named_twice_is_refused():
    with pytest.raises(SystemExit, match="width 16 is named twice"):
        dan_pareto.main(["--no-dlib", "--trained", "16=a", "--trained", "16=b"])


def test_a_tiny_real_run(tmp_path, capsys):
    """w8 (random weights) and w16 (pretrained/dan-300w-fast's stage 1), 1 stage, float32, on
    2 test faces, with dlib: every row timed, NME only where trained."""
    out, picture = tmp_path / "pareto.json", tmp_path / "pareto.png"
    result = dan_pareto.main(["--widths", "8,16", "--stages", "1", "--quantize", "float32",
                              "--faces", "2", "--photos", "2", "--rounds", "1",
                              "--round-ms", "5", "--json", str(out), "--plot", str(picture)])
    printed = capsys.readouterr().out
    rows = {row["name"]: row for row in result["rows"]}
    (dlib_name,) = [name for name in rows if name.startswith("dlib")]
    assert sorted(rows) == sorted(["DAN w8 1-stage float32", "DAN w16 1-stage float32",
                                   dlib_name])
    times = [row["ms_align"] for row in result["rows"]]
    assert times == sorted(times) and min(times) > 0
    random, trained = rows["DAN w8 1-stage float32"], rows["DAN w16 1-stage float32"]
    assert random["nme"] is None and random["pareto"] is None
    assert random["weights"] == "random (speed only)"
    assert trained["weights"] == "trained: dan-300w-fast, stage 1 of 2"
    # stage 1 of the fast DAN on real faces: a real, plausible NME through the .tflite file
    assert isinstance(trained["nme"], float) and 1.0 < trained["nme"] < 12.0
    assert trained["pareto"] is True and result["pareto_front"] == [trained["name"]]
    assert random["ms_network"] > 0 and trained["ms_network"] > 0   # (one short round: no order)
    assert isinstance(rows[dlib_name]["nme"], float) and math.isfinite(rows[dlib_name]["nme"])
    assert rows[dlib_name]["ms_network"] is None
    assert result["dlib"]["place"]["on_front"] in (True, False)
    # the table: "-" for an untrained NME, the dlib reference and where to find its own boxes
    assert "| DAN w8 1-stage float32 | random (speed only) |" in printed
    line = next(text for text in printed.splitlines() if text.startswith("| DAN w8 "))
    assert line.split("|")[5].strip() == "-"
    assert f"| {dlib_name} |" in printed and "peer_comparison.py" in printed
    assert result["machine"]["threads"] == 1 and result["machine"]["cpu"]
    assert 0 < result["timing_cpu_share"] <= 1 and 0 < result["cpu_share"] <= 1
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
