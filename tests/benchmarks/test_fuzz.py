"""`benchmarks.fuzz`: a short run writes its figures, counts every case and finds a planted failure."""

import json

from benchmarks import fuzz


def test_short_run_writes_results(tmp_path):
    report = fuzz.main(["--minutes", "2", "--cases", "30", "--seed", "1", "--output", str(tmp_path / "f.json")])
    saved = json.loads((tmp_path / "f.json").read_text())
    huge = len(fuzz.huge_cases())
    assert saved["cases"] == report["cases"] == 30 > huge  # the huge-header cases first, then random mutations
    assert sum(saved["outcomes"].values()) == 2 * saved["cases"]  # read and upload for each case
    assert saved["failure_count"] == 0 and saved["outcomes"]["read/refused"] >= huge
    assert saved["largest_allocation"]["peak_mb"] < 64 and saved["slowest"]["seconds"] < 20
    assert "Fuzzed readers" in (tmp_path / "f.md").read_text()


def test_a_reader_raising_something_else_is_a_failure(tmp_path, monkeypatch):
    def broken(path):
        raise KeyError("planted")

    monkeypatch.setattr(fuzz, "readers", lambda: {"broken": broken})
    report = fuzz.fuzz(0, max_cases=0, keep=tmp_path / "kept")
    assert report["failure_count"] == report["cases"] == len(fuzz.huge_cases())
    assert report["failures"][0]["problem"] == "KeyError: 'planted'"
    assert len(list((tmp_path / "kept").iterdir())) == report["cases"]


def test_mutations_are_functions_of_their_parameters():
    data = bytes(range(100))
    assert fuzz.truncate(data, 0.5) == data[:50] and len(fuzz.truncate(data, 1.0)) == 99
    flipped = fuzz.flip_bits(data, [(0.0, 0), (0.5, 7)])
    assert flipped[0] == 1 and flipped[50] == 50 ^ 128 and flipped[1:50] == data[1:50]
    assert fuzz.png_claiming(60000, 60000)[16:24] == (60000).to_bytes(4, "big") * 2
