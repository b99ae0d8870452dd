"""Sweeps over many processes: shards, claims, reproducible result bytes, a Dask executor.

The reference for every multi-process run is the same sweep run by one process: the result
directories must hold the same files, byte for byte.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ratedist.cli import main
from ratedist.sim.store import ResultStore, load_trace, read_claim, save_trace
from ratedist.sim.sweep import Shard, expand_sweep, parse_shard, run_config, run_sweep

ROOT = Path(__file__).parents[2]

TOML = """\
[sweep]
steps = 3
gamma = "theory"
seeds = [0, 1]

[problem]
name = "tridiagonal_quadratic"
n_workers = 3
dim = 6

[[algorithms]]
name = "gd"

[[algorithms]]
name = "ef21"
compressor = "top-k:k=1"
"""
DOC = {
    "sweep": {"steps": 3, "gamma": "theory", "seeds": [0, 1]},
    "problem": {"name": "tridiagonal_quadratic", "n_workers": 3, "dim": 6},
    "algorithms": [{"name": "gd"}, {"name": "ef21", "compressor": "top-k:k=1"}],
}


def _hash_reference(cfg) -> int:
    """The config hash as an integer, computed here from its definition (SHA-256 of the
    sorted, compact JSON; first 16 hex digits)."""
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16)


def _files(directory: Path) -> dict[str, bytes]:
    """Every entry of a result directory (claims and temporaries included) by name."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The sweep run by one process: the reference directory."""
    out = tmp_path_factory.mktemp("single")
    counts = run_sweep(expand_sweep(DOC), out)
    assert counts["ran"] == 4
    return _files(out)


# ------------------------------------------------------------------------------ shards
@pytest.mark.parametrize(
    ("spec", "expected"), [("0/3", (0, 3)), (" 2/3 ", (2, 3)), ((1, 2), (1, 2)), ("0/1", (0, 1))]
)
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == Shard(*expected)


@pytest.mark.parametrize("spec", ["3/3", "-1/3", "1/0", "1", "a/3", "1/2/3", "0/-1", ""])
def test_parse_shard_refuses_bad_specs(spec):
    with pytest.raises(ValueError, match=r"shard must be 'i/n'.*got"):
        parse_shard(spec)


def test_parse_shard_refuses_other_types():
    with pytest.raises(TypeError, match="shard"):
        parse_shard(3)
    with pytest.raises(TypeError, match="shard"):
        parse_shard((True, 2))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_configs_by_hash(n):
    cfgs = expand_sweep(
        {**DOC, "algorithms": [{"name": "ef21", "compressor": [f"top-k:k={k}" for k in (1, 2, 3)]}]}
    )
    for cfg in cfgs:
        owners = [i for i in range(n) if cfg in Shard(i, n)]
        assert owners == [_hash_reference(cfg) % n]


# ------------------------------------------------------------------------------ claims
def test_claim_is_exclusive_and_released(tmp_path):
    store = ResultStore(tmp_path)
    cfg = {"k": 1}
    claim = store.claim(cfg)
    assert claim is not None and claim.path.name.endswith(".claim")
    holder = read_claim(claim.path)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["token"] == claim.token
    assert store.claim(cfg) is None  # held by a live process (this one)
    store.release(claim)
    assert not claim.path.exists()
    again = store.claim(cfg)
    assert again is not None and again.token != claim.token
    assert [p.name for p in tmp_path.iterdir()] == [claim.path.name]  # no temporary left


def _write_claim(path: Path, **holder) -> bytes:
    raw = json.dumps(holder).encode()
    path.write_bytes(raw)
    return raw


def test_stale_claims_are_taken_over_live_ones_not(tmp_path):
    store = ResultStore(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, now = socket.gethostname(), time.time()
    cases = [  # (holder, taken over with the default timeout)
        ({"host": host, "pid": dead.pid, "time": now, "token": "a"}, True),
        ({"host": host, "pid": os.getpid(), "time": now, "token": "b"}, False),
        ({"host": "elsewhere", "pid": 1, "time": now - 60, "token": "c"}, False),
        ({"host": "elsewhere", "pid": 1, "time": now - 7 * 3600, "token": "d"}, True),
        ({}, False),  # not a claim this module wrote: judged by the file's age
    ]
    for i, (holder, stale) in enumerate(cases):
        cfg = {"case": i}
        _write_claim(store.claim_path(cfg), **holder)
        claim = store.claim(cfg)
        assert (claim is not None) == stale, holder
        if stale:
            assert read_claim(claim.path)["token"] == claim.token
    # timeout 0: every claim is stale, a live one too
    claim = store.claim({"case": 1}, timeout_s=0)
    assert claim is not None
    with pytest.raises(ValueError, match="timeout_s"):
        store.claim({"case": 9}, timeout_s=-1)


def test_release_keeps_a_claim_taken_over_meanwhile(tmp_path):
    store = ResultStore(tmp_path)
    cfg = {"k": 1}
    mine = store.claim(cfg)
    theirs = store.claim(cfg, timeout_s=0)
    store.release(mine)
    assert read_claim(store.claim_path(cfg))["token"] == theirs.token


def test_result_bytes_do_not_depend_on_the_time_of_writing(tmp_path, monkeypatch):
    import jax

    from ratedist.sim import gd, run, tridiagonal_quadratic

    trace = run(gd(), tridiagonal_quadratic(3, 6), steps=2, key=jax.random.key(0))
    monkeypatch.setattr(time, "time", lambda: 1.0e9)
    a = save_trace(tmp_path / "a.npz", trace, {"k": 1}).read_bytes()
    monkeypatch.setattr(time, "time", lambda: 1.7e9)
    b = save_trace(tmp_path / "b.npz", trace, {"k": 1}).read_bytes()
    assert a == b
    with np.load(tmp_path / "a.npz") as z:  # still an ordinary .npz
        np.testing.assert_array_equal(z["f"], trace.f)


# ------------------------------------------------------------------------------ sweeps
def test_shards_together_write_the_single_process_files(tmp_path, single):
    calls = []

    def runner(cfg, progress=False):
        calls.append(json.dumps(cfg, sort_keys=True))
        return run_config(cfg, progress=progress)

    totals = [
        run_sweep(expand_sweep(DOC), tmp_path, runner=runner, shard=f"{i}/3")["total"]
        for i in range(3)
    ]
    assert sum(totals) == 4
    assert len(calls) == len(set(calls)) == 4  # disjoint shards: no config run twice
    assert _files(tmp_path) == single


@pytest.mark.parametrize("claim_timeout_s", [3600.0, 0.0])
def test_two_runs_of_one_shard_at_once_leave_a_consistent_store(tmp_path, single, claim_timeout_s):
    """Two threads run the whole sweep into one directory at the same time. With claims, no
    config runs twice; with every claim stale (timeout 0), configs may run twice and the
    store must still hold exactly the single-process files."""
    calls, barrier = [], threading.Barrier(2)

    def runner(cfg, progress=False):
        calls.append(json.dumps(cfg, sort_keys=True))
        time.sleep(0.05)  # hold the claim long enough for the other thread to meet it
        return run_config(cfg, progress=progress)

    counts, errors = [], []

    def sweep():
        try:
            barrier.wait()
            counts.append(
                run_sweep(
                    expand_sweep(DOC), tmp_path, runner=runner, claim_timeout_s=claim_timeout_s
                )
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _files(tmp_path) == single
    if claim_timeout_s > 0:
        assert len(calls) == len(set(calls)) == 4
        assert sum(c["ran"] for c in counts) == 4
    for p in tmp_path.iterdir():
        load_trace(p)


def test_a_config_claimed_by_a_live_process_is_not_run(tmp_path):
    cfg = expand_sweep(DOC)[0]
    held = ResultStore(tmp_path).claim(cfg)  # another holder (token) in a live process

    def runner(cfg, progress=False):
        raise AssertionError("a claimed config must not run")

    lines = []
    counts = run_sweep([cfg], tmp_path, runner=runner, log=lines.append)
    assert counts == {"total": 1, "ran": 0, "skipped": 0, "claimed": 1, "diverged": 0}
    assert lines == [
        f"claimed {held.path.stem}.npz by {socket.gethostname()}:{os.getpid()} since "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(read_claim(held.path)['time']))}"
        ": not run here"
    ]


def test_a_failed_run_releases_its_claim(tmp_path):
    def runner(cfg, progress=False):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_sweep(expand_sweep(DOC), tmp_path, runner=runner)
    assert list(tmp_path.iterdir()) == []


def test_cli_dask_executor_writes_the_single_process_files(tmp_path, single, capsys):
    distributed = pytest.importorskip("distributed")
    toml = tmp_path / "sweep.toml"
    toml.write_text(TOML)
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        rc = main(["simulate", str(toml), "--out", str(out), "--executor", f"dask://{address}"])
    assert rc == 0
    assert "4 run, 0 skipped, 4 total" in capsys.readouterr().out
    assert _files(out) == single


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "3/3"], "shard must be 'i/n'"),
        (["--executor", "spark://h:1"], "--executor must be one of"),
        (["--executor", "dask://"], "--executor must be one of"),
    ],
)
def test_cli_refuses_bad_shard_and_executor(tmp_path, capsys, extra, message):
    toml = tmp_path / "sweep.toml"
    toml.write_text(TOML)
    assert main(["simulate", str(toml), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_dry_run_lists_the_shard(tmp_path, capsys):
    toml = tmp_path / "sweep.toml"
    toml.write_text(TOML)
    listed = []
    for i in range(2):
        assert main(["simulate", str(toml), "--dry-run", "--shard", f"{i}/2"]) == 0
        listed += [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    expected = sorted(f"{_hash_reference(c):016x}" for c in expand_sweep(DOC))
    assert sorted(listed) == expected


# ---------------------------------------------------------------- separate processes
def _simulate(toml: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "ratedist.cli", "simulate", str(toml), "--out", str(out), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_concurrent_shard_processes_write_the_single_process_files(tmp_path, single):
    """3 processes ``--shard i/3`` and, at the same time, 2 processes of one same shard
    (``0/1``: the whole sweep) into another directory: both directories equal the
    single-process one."""
    toml = tmp_path / "sweep.toml"
    toml.write_text(TOML)
    procs = [_simulate(toml, tmp_path / "sharded", "--shard", f"{i}/3") for i in range(3)]
    procs += [_simulate(toml, tmp_path / "twice", "--shard", "0/1") for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, outs
    ran = [int(out.split(" run")[0]) for out, _ in outs]
    assert sum(ran[:3]) == 4  # disjoint shards: each config run exactly once
    assert _files(tmp_path / "sharded") == single
    assert _files(tmp_path / "twice") == single


@pytest.mark.slow
def test_dask_worker_processes_write_the_single_process_files(tmp_path, single):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        counts = run_sweep(expand_sweep(DOC), tmp_path, executor=client)
    assert counts["ran"] == 4
    assert _files(tmp_path) == single
