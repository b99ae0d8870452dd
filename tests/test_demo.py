"""`ratedist demo` runs end to end and writes its results atomically."""

import csv
import json
import math
import os
import re
import time

import pytest

from ratedist import cli


def test_demo_writes_levels_rd_figure_and_json(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--out", str(out), "--dim", "256", "--trials", "4", "--skip-validate"])
    assert rc == 0
    report = json.loads((out / "demo.json").read_text())
    methods = {row["method"] for row in report["levels"]}
    assert {"lloyd-max", "uniform", "tnq", "tuq"} <= methods
    lm = next(r for r in report["levels"] if r["method"] == "lloyd-max")
    assert len(lm["levels"]) == 2 ** report["bits"] and lm["converged"]
    assert report["rd_points"] and (out / "rd_gaussian.png").stat().st_size > 10_000
    assert not list(out.glob("*.tmp*")), "temporary files left behind"
    captured = capsys.readouterr()
    assert "Lloyd-Max levels" in captured.out
    # the report directory: tables as CSV/JSON, Markdown and HTML pages, progress on stderr
    assert {p.name for p in out.iterdir()} == {
        "demo.json",
        "index.html",
        "levels.csv",
        "levels.json",
        "rd_gaussian.json",
        "rd_gaussian.png",
        "report.md",
    }
    assert f"report: {out / 'report.md'}" in captured.out
    assert "1/3 optimal 3-bit levels" in captured.err and "done" in captured.err
    rows = list(csv.DictReader((out / "levels.csv").open()))
    assert [r["method"] for r in rows] == [r["method"] for r in report["levels"]]
    lm_csv = next(r for r in rows if r["method"] == "lloyd-max")
    assert [float(v) for v in lm_csv["levels"].split()] == lm["levels"]
    assert json.loads((out / "levels.json").read_text()) == report["levels"]
    assert json.loads((out / "rd_gaussian.json").read_text()) == report["rd_points"]
    md = (out / "report.md").read_text()
    assert "![" in md and "(rd_gaussian.png)" in md and "Theory vs simulation" not in md


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--bits", "0"]) == 2
    assert "bits" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(tmp_path), "--dim", "64"]) == 2
    assert "dim must be >= 256" in capsys.readouterr().err


def test_demo_quick_uses_small_sizes_and_the_3pc_checks(tmp_path, monkeypatch, capsys):
    import ratedist.validate
    from ratedist.commands import demo
    from ratedist.validate.core import CHECKS

    assert set(demo.SIZES["quick"]["checks"]) <= set(CHECKS.names())

    seen = {}

    def rd_section(dim, trials, seed, out, per_compressor):
        seen.update(dim=dim, trials=trials, per_compressor=per_compressor)
        return "", []

    def run_checks(names=None, quick=False, **kw):
        seen.update(names=names, quick=quick)
        return []

    monkeypatch.setattr(demo, "_rd_section", rd_section)
    monkeypatch.setattr(demo, "_levels_section", lambda bits: ("", []))
    monkeypatch.setattr(ratedist.validate, "run_checks", run_checks)
    assert cli.main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert seen == {
        "dim": 256,
        "trials": 8,
        "per_compressor": 1,
        "names": ("3pc_constants", "gd_identities", "lyapunov_pathwise"),
        "quick": True,
    }
    assert json.loads((tmp_path / "demo.json").read_text())["quick"] is True
    # explicit sizes win over --quick; the full run keeps its defaults
    assert cli.main(["demo", "--quick", "--dim", "300", "--out", str(tmp_path)]) == 0
    assert seen["dim"] == 300 and seen["trials"] == 8
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert (seen["dim"], seen["trials"], seen["per_compressor"], seen["names"]) == (
        1000,
        32,
        None,
        None,
    )
    capsys.readouterr()


def test_levels_table_names_the_bit_layer_and_ecsq_gap_is_at_its_entropy():
    from ratedist.commands.demo import _levels_section

    text, _ = _levels_section(3)
    lines = text.splitlines()
    head = lines[1]
    for column in ("R fixed (bit)", "gap fixed (dB)", "H (bit)", "gap entropy (dB)"):
        assert column in head
    (ecsq,) = [line.split() for line in lines if line.startswith("ecsq ")]
    mse, r_fixed, gap_fixed, h, gap_entropy = (float(v) for v in ecsq[3:8])
    # Gaps from the printed D and rates: 10 log10(D / 2^(-2R)) at each layer's rate.
    assert gap_entropy == pytest.approx(10 * math.log10(mse / 2 ** (-2 * h)), abs=2e-3)
    assert gap_fixed == pytest.approx(10 * math.log10(mse / 2 ** (-2 * r_fixed)), abs=2e-3)
    # ECSQ sits near its 1.53 dB high-rate gap at its entropy (Gish & Pierce), far from the
    # fixed-rate gap of its many-level container.
    assert 0.0 < gap_entropy < 2.0 and gap_fixed > 10.0


def _fake_sections(monkeypatch):
    """Replace the slow sections by small stand-ins that write the same kinds of file."""
    import ratedist.validate
    from ratedist._io import atomic_write
    from ratedist.commands import demo
    from ratedist.validate.verdicts import CheckResult

    def rd_section(dim, trials, seed, out, per_compressor):
        atomic_write(out / "rd_gaussian.png", lambda fh: fh.write(b"\x89PNG stand-in"))
        return "", [{"compressor": "sign", "rate_bits": 1.0, "distortion_mc": None}]

    def run_checks(names=None, quick=False, on_result=None, **kw):
        rows = [
            CheckResult("a[x]", 1.0, 0.5, 0.1, "holds", "what | was compared [0.1 s]"),
            CheckResult("a[y]", 1.0, 0.5, 0.1, "holds", "what was compared [0.1 s]"),
            CheckResult("b", 0.0, float("nan"), float("nan"), "inconclusive", "failed [0.0 s]"),
        ]
        for r in rows:
            on_result(r)
        return rows

    monkeypatch.setattr(demo, "_rd_section", rd_section)
    monkeypatch.setattr(ratedist.validate, "run_checks", run_checks)


def test_demo_report_links_its_files_and_reruns_into_the_same_directory(
    tmp_path, monkeypatch, capsys
):
    _fake_sections(monkeypatch)
    out = tmp_path / "report"
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    # one progress line per stage and one per check, with the elapsed seconds
    assert re.search(r"\[ +[0-9.]+ s\] 3/4 theory vs simulation", err)
    assert err.count("a 0.1 s") == 1 and "b 0.0 s" in err

    validation = json.loads((out / "validation.json").read_text())
    assert [r["check"] for r in validation] == ["a[x]", "a[y]", "b"]
    assert validation[2]["measured"] is None
    md = (out / "report.md").read_text()
    html = (out / "index.html").read_text()
    for section in ("Optimal 3-bit levels", "Theory vs simulation", "Timings", "Reproduce"):
        assert section in md and section in html
    assert "| check | predicted | measured | SE | verdict |" in md
    assert "what \\| was" not in md  # details stay in validation.json, not in the table
    assert "ratedist demo --quick --out " + str(out) in md
    # every file the pages point to exists next to them
    md_links = re.findall(r"\]\(([^)]+)\)", md)
    html_links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "rd_gaussian.png" in md_links and "rd_gaussian.png" in html_links
    for link in {*md_links, *html_links}:
        assert (out / link).is_file(), link
    record = json.loads((out / "demo.json").read_text())
    assert set(record["timings"]) == {"stages", "wall_s", "cpu_s"}
    assert set(record["timings"]["stages"]) == {"levels", "rd", "validate"}

    # a second run into the same directory replaces every file and leaves nothing else
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    stale = out / f".levels.csv.{2**22 + 12345}.abc123.tmp"  # a killed writer's temporary
    stale.write_text("partial")
    os.utime(stale, (time.time() - 10, time.time() - 10))
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before)
    for name in ("levels.csv", "levels.json", "validation.json", "rd_gaussian.json"):
        assert after[name] == before[name], name

    # without the checks, the report neither shows nor keeps the earlier validation table
    assert cli.main(["demo", "--quick", "--skip-validate", "--out", str(out)]) == 0
    assert not (out / "validation.json").exists()
    md = (out / "report.md").read_text()
    assert "Theory vs simulation" not in md and "validation.json" not in md
    assert "--skip-validate" in md
    capsys.readouterr()
