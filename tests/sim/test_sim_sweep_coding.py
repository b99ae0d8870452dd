"""Sweep documents with gradient codes, stragglers and aggregation rules: the vocabulary, its
checks at expansion time, the canonical configs (unchanged without these tables), runs that
share one compiled program over the straggler probability, and the example config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ratedist._registry import Registry
from ratedist.sim import configs, runner, sweep
from ratedist.sim.stages import PARTICIPATION, pattern_stragglers
from ratedist.sim.store import config_hash
from ratedist.sim.sweep import expand_sweep, load_sweep, run_config

SIMULATIONS = Path(__file__).parents[2] / "simulations"

PROBLEM = {"name": "logistic_nonconvex", "n_workers": 6, "n_samples": 120, "dim": 4}
BASE = {"sweep": {"steps": 5, "gamma": 0.5}, "problem": PROBLEM, "algorithms": [{"name": "gd"}]}


def doc(**sections):
    return {**BASE, **sections}


def test_configs_without_stage_tables_keep_their_hashes():
    # hashes of the configs as they were before codes and stragglers entered sweeps: the
    # result files of existing sweeps are still found
    old = {
        "sweep": {"steps": 5, "gamma": "theory", "seeds": [0, 1]},
        "problem": {"name": "tridiagonal_quadratic", "n_workers": 3, "dim": 6},
        "algorithms": [{"name": "gd"}, {"name": "ef21", "compressor": ["top-k:k=1", "top-k:k=2"]}],
    }
    cfgs = expand_sweep(old)
    assert [config_hash(c) for c in cfgs] == [
        "0e29f3122cf49c8b",
        "b35c15ff47be1ae8",
        "a41cd1a9ecaa4fc6",
        "fd415e1914ec073d",
        "6bcdc6bc46a87f58",
        "e3bf8801f610b221",
    ]
    assert not any(set(c) & set(sweep.STAGE_SECTIONS) for c in cfgs)


def test_stage_tables_expand_into_the_grid():
    cfgs = expand_sweep(
        doc(
            codes=[{"name": "frc", "s": 1}, {"name": "crc", "s": [1, 2]}],
            participation={"name": "bernoulli", "p": [0.1, 0.3]},
            aggregation={"name": "majority"},
            algorithms=[{"name": "gd"}, {"name": "ef14", "compressor": "scaled-sign"}],
        )
    )
    assert len(cfgs) == 3 * 2 * 2
    # n filled in from the problem's n_workers; only the given tables appear
    assert cfgs[0]["code"] == {"name": "frc", "s": 1, "n": 6}
    assert cfgs[0]["aggregation"] == {"name": "majority"}
    # the straggler probability varies fastest (after the seeds): consecutive configs that
    # differ only in it share a compiled program
    assert [c["participation"]["p"] for c in cfgs[:4]] == [0.1, 0.3, 0.1, 0.3]
    assert [c["algorithm"]["name"] for c in cfgs[:4]] == ["gd", "gd", "ef14", "ef14"]
    assert len({config_hash(c) for c in cfgs}) == len(cfgs)
    # an explicit n equal to the default is the same config
    explicit = expand_sweep(doc(code={"name": "frc", "s": 1, "n": 6}))
    assert config_hash(explicit[0]) == config_hash(
        expand_sweep(doc(code={"name": "frc", "s": 1}))[0]
    )
    # a participation model without a code: the problem's own workers straggle
    (cfg,) = expand_sweep(doc(participation={"name": "exactly", "s": 2}))
    assert "code" not in cfg and cfg["participation"] == {"name": "exactly", "s": 2}


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        (
            {"code": {"name": "random_replication", "d": 7}},
            r"d \(replication\) must be in \[1, n\]",
        ),
        ({"code": {"name": "crc", "s": 6}}, r"s \(stragglers\) must be in \[0, n - 1\]"),
        ({"code": {"name": "frc", "s": 3}}, "n must be divisible by s \\+ 1"),
        ({"participation": {"name": "bernoulli", "p": [0.1, 1.0]}}, r"p must lie in \[0.0, 1.0\)"),
        ({"participation": {"name": "bernoulli", "p": -0.1}}, r"p must lie in \[0.0, 1.0\)"),
        (
            {
                "algorithms": [
                    {"name": "compressed_sgd", "compressor": "stochastic-sign:scale=bound,bound=0"}
                ]
            },
            r"\[algorithms\] .*bound must be > 0",
        ),
        ({"algorithms": [{"name": "ef14", "compressor": "top-k:k=0"}]}, r"\[algorithms\] .*k"),
        (
            {"code": {"name": "lt"}},
            "unknown gradient code 'lt'; known: crc, frc, random_replication",
        ),
        (
            {"participation": {"name": "adversary"}},
            "unknown participation 'adversary'; known: adversarial, all",
        ),
        (
            {"aggregation": {"name": "median"}},
            "unknown aggregation 'median'; known: decode, majority",
        ),
        (
            {"code": {"name": "frc", "s": 1}, "aggregation": {"name": "mean"}},
            r"aggregation with a \[code\] must be one of \['decode', 'majority'\]",
        ),
        ({"aggregation": {"name": "decode"}}, r"'decode' needs parameter\(s\) \['weights'\]"),
        (
            {"code": {"name": "random_replication", "d": 2, "n": 8, "k": 4}},
            "the code has 4 partitions but problem 'logistic_nonconvex' has n_workers = 6",
        ),
        (
            {"code": {"name": "frc", "s": 1}, "participation": {"name": "exactly", "s": 6}},
            "s must be < n_workers = 6",
        ),
        (
            {"code": {"name": "frc", "s": 1, "encode": "partition"}},
            r"encode must be one of \['combination', 'partitions'\]",
        ),
        ({"code": {"name": "frc", "s": 1, "q": 2}}, r"code 'frc' has no parameter\(s\) \['q'\]"),
        ({"code": {"name": "frc"}}, r"code 'frc' needs parameter\(s\) \['s'\]"),
        (
            {"participation": {"name": "bernoulli", "p": 0.1, "code": 1}},
            "'code' is not a parameter",
        ),
        ({"partcipation": {"name": "bernoulli", "p": 0.1}}, r"unknown sections \['partcipation'\]"),
        ({"code": {"name": "frc", "s": 1}, "codes": [{"name": "crc", "s": 1}]}, "both"),
        ({"codes": []}, "codes must not be empty"),
        (
            {
                "code": {"name": "frc", "s": 1},
                "sweep": {"steps": 5},
                "algorithms": [{"name": "ef21", "compressor": "top-k:k=1"}],
            },
            "gamma must be a number for algorithm 'ef21.* with a \\[code\\]",
        ),
    ],
)
def test_bad_configurations_are_refused_at_expansion(sections, match):
    with pytest.raises(ValueError, match=match):
        expand_sweep(doc(**sections))


def test_load_sweep_refuses_a_bad_code(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        "[sweep]\nsteps = 3\ngamma = 0.5\n[problem]\nname = 'logistic_nonconvex'\nn_workers = 6\n"
        "[code]\nname = 'frc'\ns = 2\n[[algorithms]]\nname = 'gd'\n"
    )
    assert len(load_sweep(path)) == 1
    path.write_text(path.read_text().replace("s = 2", "s = 3"))
    with pytest.raises(ValueError, match="divisible"):
        load_sweep(path)


def test_a_participation_model_that_takes_the_code_receives_it(monkeypatch):
    seen = []

    def first_group(code):
        """Adversarial: the first s workers of the code straggle at every step."""
        seen.append(code)
        mask = np.ones((1, code.n_workers), bool)
        mask[0, : code.s] = False
        return pattern_stragglers(mask)

    models = Registry("participation")
    for name in PARTICIPATION.names():
        models.add(name, PARTICIPATION.get(name), **PARTICIPATION.facts(name))
    models.add("first_group", first_group)
    monkeypatch.setattr(configs, "PARTICIPATION", models)
    (cfg,) = expand_sweep(doc(code={"name": "frc", "s": 1}, participation={"name": "first_group"}))
    assert cfg["participation"] == {"name": "first_group"}
    assert seen[-1].name == "frc[n=6,s=1]"
    with pytest.raises(ValueError, match="needs a \\[code\\] table"):
        expand_sweep(doc(participation={"name": "first_group"}))


def test_exact_codes_with_s_stragglers_run_as_uncoded_gd():
    steps = {"sweep": {"steps": 15, "gamma": "theory"}}
    (ref,) = expand_sweep(doc(**steps))
    (cfg,) = expand_sweep(
        doc(**steps, code={"name": "frc", "s": 1}, participation={"name": "exactly", "s": 1})
    )
    tr_ref, _ = run_config(ref)
    tr, meta = run_config(cfg)
    np.testing.assert_allclose(tr.f, tr_ref.f, rtol=1e-12)
    assert meta["code"] == "frc[n=6,s=1]" and meta["code_s"] == 1
    assert meta["participation"] == "exactly[s=1]" and meta["aggregation"] == "frc[n=6,s=1]"
    assert meta["n_workers"] == 6


def test_a_straggler_probability_sweep_shares_one_compiled_program(monkeypatch):
    builds = []
    build = runner._build
    monkeypatch.setattr(runner, "_build", lambda *a: builds.append(1) or build(*a))
    cfgs = expand_sweep(
        doc(
            code={"name": "crc", "s": 1},
            participation={"name": "bernoulli", "p": [0.0, 0.4]},
            aggregation={"name": "majority"},
        )
    )
    (tr0, m0), (tr1, m1) = (run_config(c) for c in cfgs)
    assert len(builds) == 1
    assert tr0.hyper["straggle_p"] == 0.0 and tr1.hyper["straggle_p"] == 0.4
    assert (m0["participation"], m1["participation"]) == ("bernoulli[p=0]", "bernoulli[p=0.4]")
    assert m0["aggregation"] == "majority[crc[n=6,s=1]]"
    assert not np.array_equal(tr0.x, tr1.x)
    # no stragglers: the sign of the exactly decoded gradient, signGD on the base problem
    (sign_gd,) = expand_sweep(doc(aggregation={"name": "majority"}))
    np.testing.assert_allclose(tr0.x, run_config(sign_gd)[0].x, atol=1e-10)


def test_the_example_config_expands_and_runs():
    cfgs = load_sweep(SIMULATIONS / "gradient_coding.toml")
    codes = {c["code"]["name"] for c in cfgs}
    assert codes == {"frc", "crc", "random_replication"}
    assert {c["participation"]["p"] for c in cfgs} == {0.1, 0.3}
    assert len(cfgs) == 18
    short = {**cfgs[0], "steps": 10}
    tr, meta = run_config(short)
    assert np.all(np.isfinite(tr.f)) and tr.f[-1] < tr.f[0]
    assert meta["code"] == "frc[n=6,s=1]" and meta["participation"] == "bernoulli[p=0.1]"


def test_dry_run_and_summary_name_the_code_and_the_stragglers(tmp_path, capsys):
    import importlib.util

    from ratedist.cli import main

    example = SIMULATIONS / "gradient_coding.toml"
    assert main(["simulate", str(example), "--dry-run", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 18
    assert (
        "code={'name': 'frc', 's': 1, 'n': 6} participation={'name': 'bernoulli', 'p': 0.1}"
        in lines[0]
    )
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[sweep]\nsteps = 3\ngamma = 0.5\n[problem]\nname = 'logistic_nonconvex'\nn_workers = 4\n"
        "n_samples = 40\ndim = 3\n[code]\nname = 'crc'\ns = 1\n"
        "[participation]\nname = 'exactly'\ns = 1\n[[algorithms]]\nname = 'gd'\n"
    )
    out = tmp_path / "res"
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0
    assert "with crc[n=4,s=1], exactly[s=1]" in capsys.readouterr().err
    spec = importlib.util.spec_from_file_location("summarize", SIMULATIONS / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    assert summarize.main([str(out)]) == 0
    assert "logistic_nonconvex crc[n=4,s=1] exactly[s=1]" in capsys.readouterr().out


def test_partition_encoding_in_a_sweep_charges_every_held_partition():
    alg = {"name": "compressed_sgd", "compressor": "stochastic-sign:scale=l2"}
    traces = {}
    for enc in ("combination", "partitions"):
        (cfg,) = expand_sweep(
            {
                **doc(code={"name": "frc", "s": 1, "encode": enc}),
                "algorithms": [alg],
            }
        )
        traces[enc], _ = run_config(cfg)
    d = PROBLEM["dim"]
    # FRC with s = 1: every worker holds 2 partitions, each message d sign bits + a 32-bit norm
    np.testing.assert_allclose(traces["combination"].uplink_per_answering_worker(), d + 32)
    np.testing.assert_allclose(traces["partitions"].uplink_per_answering_worker(), 2 * (d + 32))
