"""Quantizers designed from a fitted gradient model, measured on held-out samples."""

import json
import math

import numpy as np
import pytest

from ratedist.gradients.design import design_layer, sample_mse
from ratedist.quantizers import DESIGNS, design, evaluate
from ratedist.quantizers.evaluate import rounding_of
from ratedist.sources import Laplace

METHODS = ["lloyd-max", "tnq", "ecsq", "variance-optimal"]


def _laplace(n, seed):
    rng = np.random.default_rng(seed)
    return Laplace(scale=0.01).ppf(rng.uniform(size=n))


def test_sample_mse_matches_the_exact_mse_on_the_source():
    src = Laplace(scale=1.0)
    x = src.ppf(np.random.default_rng(1).uniform(size=40_000))
    for method in ("uniform", "tuq"):
        q = design(method, src, bits=3).value
        r = rounding_of(method)
        mse, se = sample_mse(q, x, rounding=r)
        assert abs(mse - evaluate(q, src, rounding=r).mse) < 5 * se


def test_designed_from_the_model_matches_its_prediction_on_samples_of_the_model():
    fit_x = _laplace(3000, 0)
    first = design_layer(fit_x, fit_x[:100], methods=METHODS, empirical=False)
    # Held-out samples drawn from the fitted model itself, in the layer's units.
    u = np.random.default_rng(2).uniform(size=20_000)
    eval_x = first.rms * np.asarray(first.model.ppf(u))
    res = design_layer(fit_x, eval_x, methods=METHODS, empirical=False)
    assert res.model == first.model and res.rms == first.rms
    assert len(res.rows) == len(METHODS) * 3
    for r in res.rows:
        assert r.error is None, r
        assert abs(r.measured - r.predicted) < 5 * r.measured_se, r
        assert r.model_cost_db == pytest.approx(10 * math.log10(r.measured / r.predicted))


def test_empirical_reference_and_json():
    x = _laplace(1200, 3)
    res = design_layer(x[:600], x[600:], methods=["uniform"], bits=[2], name="layer 'w'")
    (row,) = res.rows
    assert row.empirical is not None and row.empirical_se > 0
    assert row.empirical == pytest.approx(row.measured, rel=0.3)
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (np.full(200, 0.5), "all 200 samples equal 0.5"),
        (np.r_[np.linspace(-1, 1, 200), np.nan], "not finite (1 NaN"),
    ],
)
def test_bad_layers_are_named(bad, fragment):
    good = _laplace(200, 4)
    with pytest.raises(ValueError, match=r"layer 'dense/w' at step 3 \(fitting half\)") as e:
        design_layer(bad, good, name="layer 'dense/w' at step 3", empirical=False)
    assert fragment in str(e.value)
    with pytest.raises(ValueError, match=r"\(held-out half\)"):
        design_layer(good, bad, name="layer 'dense/w' at step 3", empirical=False)


def test_bad_budget_and_method():
    x = _laplace(200, 5)
    with pytest.raises(ValueError, match="bits"):
        design_layer(x, x, bits=[0], empirical=False)
    with pytest.raises(ValueError, match="nope"):
        design_layer(x, x, methods=["nope"], empirical=False)


def test_every_method_is_applicable():
    x = _laplace(400, 6)
    res = design_layer(x[:200], x[200:], bits=[2], empirical=False)
    assert [r.method for r in res.rows] == list(DESIGNS.names())
    assert all(r.error is None for r in res.rows)


# ----------------------------------------------------------------------------- capture, CLI
sk = pytest.importorskip("sklearn")

from ratedist import cli  # noqa: E402
from ratedist.gradients import load_capture  # noqa: E402
from ratedist.gradients.design import design_capture, split_minibatches  # noqa: E402

CAPTURE = ["--model", "logistic-digits", "--batch-size", "16", "--quiet", "--steps", "2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("design") / "run"
    argv = ["gradients", "capture", *CAPTURE, "--minibatches", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    return out


def test_split_and_table_on_a_tiny_capture(store):
    cap = load_capture(store)
    a, b = split_minibatches(cap, 2, "dense/w")
    assert a.size == b.size == 2 * 640
    res = design_capture(cap, bits=[2, 3], methods=["uniform", "tuq"], empirical=False)
    by_layer = {lr.layer: lr for lr in res}
    assert by_layer["dense/b"].result is None  # 2 x 10 coordinates: too few to fit
    assert "layer 'dense/b' at step 2 (fitting half)" in by_layer["dense/b"].error
    rows = by_layer["dense/w"].result.rows
    assert [(r.method, r.bits) for r in rows] == [
        ("uniform", 2),
        ("uniform", 3),
        ("tuq", 2),
        ("tuq", 3),
    ]
    assert all(r.measured > 0 and r.predicted > 0 and math.isfinite(r.model_cost_db) for r in rows)


def test_cli_design_table_and_json(store, capsys):
    capsys.readouterr()
    argv = ["gradients", "design", str(store), "--bits", "2", "--methods", "uniform,ecsq"]
    assert cli.main([*argv, "--no-empirical"]) == 0
    cap = capsys.readouterr()
    assert "step 2:" in cap.out and "dense/b: error: layer 'dense/b' at step 2" in cap.out
    assert [
        ln.split()[0]
        for ln in cap.out.splitlines()
        if ln.startswith("    ") and "deterministic" in ln
    ] == ["uniform", "ecsq"]
    assert "warning: not designed: layer 'dense/b'" in cap.err
    assert cli.main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["steps"][0]["layers"]["dense/w"]["rows"]
    assert {r["method"] for r in rows} == {"uniform", "ecsq"}
    assert all(r["empirical"] is not None for r in rows)
    assert "error" in out["steps"][0]["layers"]["dense/b"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--bits", "0"], "--bits"),
        (["--bits", "2,x"], "--bits"),
        (["--methods", "uniform,nope"], "nope"),
        (["--step", "7"], "step 7"),
    ],
)
def test_cli_design_errors_exit_2(store, capsys, extra, fragment):
    capsys.readouterr()
    assert cli.main(["gradients", "design", str(store), "--no-empirical", *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_cli_design_missing_directory_and_one_minibatch(tmp_path, capsys):
    assert cli.main(["gradients", "design", str(tmp_path / "none")]) == 2
    out = tmp_path / "one"
    argv = ["gradients", "capture", *CAPTURE, "--minibatches", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["gradients", "design", str(out), "--no-empirical"]) == 0
    assert "at least 2 are needed" in capsys.readouterr().out


def test_sample_entropy_matches_the_exact_entropy_on_the_source():
    from ratedist.gradients.design import sample_entropy_bits

    src = Laplace(scale=1.0)
    x = src.ppf(np.random.default_rng(7).uniform(size=40_000))
    for method in ("lloyd-max", "tnq"):
        q = design(method, src, bits=3).value
        r = rounding_of(method)
        h = sample_entropy_bits(q, x, rounding=r)
        assert h == pytest.approx(evaluate(q, src, rounding=r).entropy_bits, abs=0.01)
