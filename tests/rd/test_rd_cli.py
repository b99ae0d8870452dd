"""The ``ratedist rd`` command: JSON contract, table output, plot file and exit codes."""

import json

import pytest

from ratedist import cli

REQUIRED = (
    "compressor",
    "params",
    "rate_bits",
    "entropy_rate_bits",
    "distortion",
    "distortion_mc",
    "distortion_mc_se",
    "shannon_distortion",
    "gap_db",
)


def _run_json(capsys, *argv):
    rc = cli.main(["rd", *argv, "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def test_rd_json_contract(capsys):
    obj = _run_json(
        capsys,
        "--source", "gaussian", "--dim", "200",
        "--compressor", "top-k:k=10", "qsgd:s=4", "scaled-sign",
        "--trials", "8", "--seed", "3",
    )  # fmt: skip
    assert obj["dim"] == 200 and obj["trials"] == 8
    pts = obj["points"]
    assert [p["compressor"] for p in pts] == ["top-k", "qsgd", "scaled-sign"]
    for p in pts:
        for key in REQUIRED:
            assert key in p
        assert p["distortion_mc"] is not None and p["distortion_mc_se"] >= 0
        assert p["shannon_distortion"] == pytest.approx(2 ** (-2 * p["rate_bits"]), rel=1e-12)
    assert pts[0]["params"] == {"k": 10, "float_bits": 32}
    assert pts[0]["rate_bits"] == pytest.approx(10 * (8 + 32) / 200)  # ceil(log2 200) = 8
    assert pts[2]["distortion"] == pytest.approx(199 / 200 * (1 - 2 / 3.141592653589793))


def test_rd_float_bits_and_closed_form_only(capsys):
    obj = _run_json(
        capsys, "--dim", "100", "--compressor", "scaled-sign", "--trials", "0", "--float-bits", "16"
    )
    (p,) = obj["points"]
    assert p["params"]["float_bits"] == 16
    assert p["rate_bits"] == pytest.approx(1 + 16 / 100)
    assert p["distortion_mc"] is None and p["distortion_mc_se"] is None


def test_rd_no_closed_form_is_null_and_identity_has_no_infinite_gap(capsys):
    obj = _run_json(
        capsys, "--dim", "64", "--compressor", "identity", "lattice:name=zn", "--trials", "4"
    )
    ident, lat = obj["points"]
    assert lat["params"]["lattice"] == "zn"  # name= is the command-line alias of lattice=
    assert ident["distortion"] == 0.0 and ident["gap_db"] is None
    assert lat["distortion"] is not None  # high-rate closed form registered for lattices
    assert lat["rate_bits"] > 0


def test_rd_table_and_plot(tmp_path, capsys):
    png = tmp_path / "rd.png"
    rc = cli.main(
        ["rd", "--dim", "100", "--compressor", "sign", "top-k:k=5", "--trials", "4",
         "--plot", str(png)]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "gap fixed (dB)" in out and "top-k" in out
    assert png.stat().st_size > 1000


def test_rd_plot_is_written_atomically_in_the_format_of_its_suffix(tmp_path, monkeypatch, capsys):
    import os

    from ratedist import _io

    replaced = []
    real_replace = os.replace

    def spy(src, dst):  # the figure arrives by an atomic rename of a finished temporary
        replaced.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", spy)
    pdf = tmp_path / "rd.pdf"
    assert cli.main(["rd", "--dim", "100", "--compressor", "sign", "--plot", str(pdf)]) == 0
    capsys.readouterr()
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert len(replaced) == 1 and replaced[0][1] == "rd.pdf" and replaced[0][0].endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd.pdf"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--dim", "100", "--compressor", "no-such"], "unknown compressor"),
        (["--dim", "100", "--compressor", "top-k:k=abc"], "k"),
        (["--dim", "100", "--compressor", "top-k:kk=3"], "kk"),
        (["--dim", "10", "--compressor", "top-k:k=20"], "k"),
        (["--dim", "0", "--compressor", "sign"], "dim"),
        (["--dim", "100"], "--compressor"),
        (["--dim", "100", "--compressor", "sign", "--trials", "1"], "trials"),
        (["--dim", "100", "--compressor", "sign", "--source", "laplace"], "source"),
        (["--dim", "100", "--compressor", "sign", "--seed", "-1"], "seed"),
        (["--dim", "100", "--compressor", "sign", "--float-bits", "0"], "float_bits"),
    ],
)
def test_rd_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert cli.main(["rd", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err


def test_rd_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["rd", "--dim", "ten", "--compressor", "sign"])
    assert exc.value.code == 2


def test_rd_all_closed_forms_only(capsys):
    from ratedist.compressors import COMPRESSORS
    from ratedist.rd import CLOSED_FORMS

    assert cli.main(["rd", "--dim", "1000", "--all", "--trials", "0", "--json"]) == 0
    captured = capsys.readouterr()
    obj = json.loads(captured.out)
    names = {p["compressor"] for p in obj["points"]}
    # Every registered compressor with a closed-form container rate is present (lattices have
    # none and are skipped with a note on stderr when no Monte Carlo is requested).
    assert names == set(COMPRESSORS.names()) & set(CLOSED_FORMS.names()) - {"lattice"}
    assert "lattice" in captured.err
    for p in obj["points"]:
        if p["distortion"]:
            assert p["gap_db"] > 0  # no operational point beats Shannon


def test_rd_rejects_a_sigma_the_float32_monte_carlo_cannot_represent(capsys):
    import jax

    with jax.enable_x64(False):  # the command's default precision
        rc = cli.main(["rd", "--dim", "100", "--compressor", "top-k:k=10", "--sigma", "1e200"])
    assert rc == 2
    cap = capsys.readouterr()
    assert "sigma must lie in [" in cap.err and "float32" in cap.err and "1e+200" in cap.err
    assert cap.out == "" and len(cap.err.splitlines()) == 1


@pytest.mark.parametrize("spec", ["top-k:,k=3", "top-k:k=10,,", "lattice:name=e8,,"])
def test_rd_spec_errors_quote_the_spec_as_typed(spec, capsys):
    assert cli.main(["rd", "--dim", "100", "--trials", "0", "--compressor", spec]) == 2
    err = capsys.readouterr().err
    assert f"spec {spec!r}:" in err and "float_bits" not in err and "lattice=" not in err


def test_rd_an_empty_parameter_list_takes_the_defaults_and_float_bits(capsys):
    (p,) = _run_json(capsys, "--dim", "100", "--trials", "0", "--compressor", "top-k:")["points"]
    assert p["compressor"] == "top-k" and p["params"]["float_bits"] == 32
