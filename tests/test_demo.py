"""`ratedist demo` runs end to end and writes its results atomically."""

import json

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
    assert "Lloyd-Max levels" in capsys.readouterr().out


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--bits", "0"]) == 2
    assert "bits" in capsys.readouterr().err
    assert cli.main(["demo", "--out", str(tmp_path), "--dim", "64"]) == 2
    assert "dim must be >= 256" in capsys.readouterr().err
