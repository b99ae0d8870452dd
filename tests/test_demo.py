"""`ratedist demo` runs end to end and writes its results atomically."""

import json
import math

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
    assert "Lloyd-Max levels" in capsys.readouterr().out


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
