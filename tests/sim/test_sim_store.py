"""Result store and sweeps: atomic files, resume after an interruption, the CLI."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ratedist.cli import main
from ratedist.sim import gd, run, tridiagonal_quadratic
from ratedist.sim.store import ResultStore, config_hash, load_trace, save_trace
from ratedist.sim.sweep import expand_sweep, load_sweep, problem_labels, run_sweep

SIMULATIONS = Path(__file__).parents[2] / "simulations"

DOC = {
    "sweep": {"steps": 5, "gamma": "theory", "seeds": [0, 1]},
    "problem": {"name": "tridiagonal_quadratic", "n_workers": 3, "dim": 6},
    "algorithms": [
        {"name": "gd"},
        {"name": "ef21", "compressor": ["top-k:k=1", "top-k:k=2"]},
    ],
}


@pytest.fixture(scope="module")
def small_trace():
    import jax

    return run(gd(), tridiagonal_quadratic(3, 6), steps=4, key=jax.random.key(0))


def test_config_hash_is_canonical():
    a = {"b": 1, "a": [1, 2.5, "x"]}
    b = {"a": [1, 2.5, "x"], "b": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "b": 2})
    with pytest.raises(TypeError, match="config"):
        config_hash({"x": object()})


def test_save_load_roundtrip(tmp_path, small_trace):
    path = save_trace(tmp_path / "r.npz", small_trace, {"k": 1}, {"m": "x"})
    tr, cfg, meta = load_trace(path)
    assert cfg == {"k": 1} and meta == {"m": "x"}
    for name in small_trace._fields:
        a, b = getattr(small_trace, name), getattr(tr, name)
        if name == "bits":
            for f in a._fields:
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        else:
            np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]  # no temp file left behind


def test_failed_write_leaves_nothing(tmp_path, small_trace, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_trace(tmp_path / "r.npz", small_trace, {"k": 1})
    assert list(tmp_path.iterdir()) == []


def test_expand_sweep_grid():
    cfgs = expand_sweep(DOC)
    assert len(cfgs) == (1 + 2) * 2
    assert {c["algorithm"].get("compressor") for c in cfgs} == {None, "top-k:k=1", "top-k:k=2"}
    assert len({config_hash(c) for c in cfgs}) == 6


def test_sweep_interrupted_then_resumed(tmp_path, small_trace):
    cfgs = expand_sweep(DOC)
    calls = []

    def runner(cfg, progress=False):
        calls.append(config_hash(cfg))
        if len(calls) == 4:
            raise KeyboardInterrupt("killed at config 3")
        return small_trace, {"algorithm": cfg["algorithm"]["name"]}

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfgs, tmp_path, runner=runner)
    store = ResultStore(tmp_path)
    assert [store.done(c) for c in cfgs] == [True, True, True, False, False, False]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    calls.clear()
    counts = run_sweep(cfgs, tmp_path, runner=lambda c, progress=False: (small_trace, {}))
    assert counts == {"total": 6, "ran": 3, "skipped": 3, "claimed": 0, "diverged": 0}
    assert all(store.done(c) for c in cfgs)
    assert len(list(store)) == 6


def test_cli_simulate_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[sweep]\nsteps = 5\ngamma = 'theory'\n\n"
        "[problem]\nname = 'tridiagonal_quadratic'\nn_workers = 2\ndim = 6\n\n"
        "[[algorithms]]\nname = 'lag'\nzeta = [0.0, 2.0]\n"
    )
    out = tmp_path / "res"
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0
    assert "2 run, 0 skipped" in capsys.readouterr().out
    assert main(["simulate", str(cfg), "--out", str(out)]) == 0
    assert "0 run, 2 skipped" in capsys.readouterr().out
    (tr, c, meta), *_ = list(ResultStore(out))
    assert tr.f.shape == (6,) and meta["problem"] == "tridiagonal_quadratic"
    assert json.loads(json.dumps(c)) == c


@pytest.mark.filterwarnings("default::RuntimeWarning")  # shown, not raised, as for a user
def test_cli_simulate_summary_names_diverged_runs(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[sweep]\nsteps = 400\ngamma = 100.0\n\n"
        "[problem]\nname = 'tridiagonal_quadratic'\nn_workers = 2\ndim = 6\n\n"
        "[[algorithms]]\nname = 'gd'\n"
    )
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "res")]) == 0
    cap = capsys.readouterr()
    assert "1 run (1 DIVERGED" in cap.out
    assert "DIVERGED at step" in cap.err
    # the warning is one line naming the command, not a Python warning with a source line
    assert "ratedist simulate: warning: gd on tridiagonal_quadratic diverged" in cap.err
    assert "RuntimeWarning" not in cap.err


@pytest.mark.parametrize("name", ["ef21_lag_tridiagonal.toml", "logistic_3pc.toml"])
def test_example_configs_parse(name):
    here = os.path.dirname(__file__)
    cfgs = load_sweep(os.path.join(here, "..", "..", "simulations", name))
    assert len(cfgs) >= 5


def test_sweep_bad_inputs(tmp_path, capsys):
    with pytest.raises(ValueError, match="steps"):
        expand_sweep({**DOC, "sweep": {}})
    with pytest.raises(ValueError, match="steps"):
        expand_sweep({**DOC, "sweep": {"steps": 0}})
    with pytest.raises(ValueError, match="gamma"):
        expand_sweep({**DOC, "sweep": {"steps": 3, "gamma": -1.0}})
    with pytest.raises(ValueError, match="unknown problem"):
        expand_sweep({**DOC, "problem": {"name": "nope"}})
    with pytest.raises(ValueError, match="unknown algorithm"):
        expand_sweep({**DOC, "algorithms": [{"name": "nope"}]})
    with pytest.raises(ValueError, match="unknown keys"):
        expand_sweep({**DOC, "sweep": {"steps": 3, "stpes": 2}})
    with pytest.raises(ValueError, match="algorithms must not be empty"):
        expand_sweep({**DOC, "algorithms": []})
    with pytest.raises(ValueError, match="seeds must not be empty"):
        expand_sweep({**DOC, "sweep": {"steps": 3, "seeds": []}})
    with pytest.raises(ValueError, match="problems must not be empty"):
        expand_sweep({**DOC, "problems": []})
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\nsteps=")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_sweep(bad)
    assert main(["simulate", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_sweep_removes_orphaned_temporaries_but_not_a_live_writers(tmp_path, small_trace):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = subprocess.Popen(["sleep", "60"])
    old = time.time() - 60
    names = {
        "orphan": f".{'0' * 16}.npz.{dead.pid}.k2j3.tmp",
        "live": f".{'1' * 16}.npz.{sleeper.pid}.k2j3.tmp",
        "mine": f".{'2' * 16}.npz.{os.getpid()}.k2j3.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (old, old))
    lines = []
    try:
        run_sweep(
            expand_sweep(DOC)[:1],
            tmp_path,
            runner=lambda c, progress=False: (small_trace, {}),
            log=lines.append,
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    left = set(os.listdir(tmp_path))
    assert names["orphan"] not in left and {names["live"], names["mine"]} <= left
    assert any(names["orphan"] in line and "killed" in line for line in lines)


def test_unserialisable_config_values_are_named_by_their_key_path(tmp_path, capsys):
    with pytest.raises(TypeError, match=r"config value at a\[1\]\.b is nan"):
        config_hash({"a": [1, {"b": float("nan")}]})
    cfg = tmp_path / "nan.toml"
    cfg.write_text(
        "[sweep]\nsteps = 2\n[problem]\nname = 'tridiagonal_quadratic'\nn_workers = 2\n"
        "dim = 4\nnoise_std = nan\n[[algorithms]]\nname = 'gd'\n"
    )
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "res")]) == 2
    assert "config value at problem.noise_std is nan" in capsys.readouterr().err


def test_problem_labels_tell_apart_problems_that_share_a_family_name():
    problems = [
        {"name": "logistic_nonconvex", "n_workers": 20, "dim": 50},
        {"name": "logistic_breast_cancer", "n_workers": 20},
        {"name": "tridiagonal_quadratic", "dim": 10, "seed": 0},
        {"name": "tridiagonal_quadratic", "dim": 100, "seed": 0},
    ]
    labels = problem_labels(problems)
    assert len(set(labels)) == len(labels)
    assert labels[:2] == ["logistic_nonconvex", "logistic_breast_cancer"]
    assert "dim=10" in labels[2] and "seed" not in labels[2]


def test_sweep_log_and_summary_name_synthetic_and_dataset_problems_apart(
    tmp_path, small_trace, capsys
):
    doc = {
        "sweep": {"steps": 4},
        "problems": [
            {"name": "logistic_nonconvex", "n_workers": 3, "dim": 6},
            {"name": "logistic_breast_cancer", "n_workers": 3},
        ],
        "algorithms": [{"name": "gd"}],
    }
    # Both constructors report the same family name, as the real problems do.
    meta = {"problem": "logistic_nonconvex", "algorithm": "gd"}
    lines = []
    run_sweep(
        expand_sweep(doc),
        tmp_path,
        runner=lambda c, progress=False: (small_trace, meta),
        log=lines.append,
    )
    assert len(lines) == 2 and lines[0].split(" on ")[1] != lines[1].split(" on ")[1]
    spec = importlib.util.spec_from_file_location("summarize", SIMULATIONS / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    assert summarize.main([str(tmp_path)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2 and len({r.split()[0] for r in rows}) == 2
