"""Multi-process simulation on JAX's distributed runtime: 2 processes x 4 emulated CPU devices
(gloo collectives over the loopback address) against single-process vmap, and a lost process.

The jobs run in subprocesses (the device count and the distributed client are fixed when JAX
starts); compile time dominates, so the problems are tiny and the runs short.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import distributed_cases as dc
import numpy as np
import pytest

from ratedist.sim import distributed

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
#: seconds without a heartbeat before a process is declared dead in the failure test
HEARTBEAT_S = 4
#: the survivor must have exited this many seconds after the kill: the heartbeat timeout plus
#: the coordination service's polling and the abort (measured 3-6 s on an idle machine; the
#: margin covers a loaded 2-core machine)
EXIT_WITHIN_S = HEARTBEAT_S + 26


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


#: the default suite runs one case (one 2-process job: ~10-20 s on an idle 2-core machine,
#: compile-bound); the others run in a second job under -m slow
DEFAULT_CASES = ("ef21_top_k",)
SLOW_CASES = tuple(c for c in dc.CASES if c not in DEFAULT_CASES)


def _launch(tmp_path_factory, cases, *flags):
    out = tmp_path_factory.mktemp("dist") / "traces.npz"
    script = str(HERE / "distributed_cases.py")
    rc = distributed.launch(
        [script, str(out), *cases, *flags], 2, local_devices=4, timeout=240, grace=20, env=_env()
    )
    assert rc == 0, f"the 2-process job failed with status {rc}"
    return dict(np.load(out))


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
    return _launch(tmp_path_factory, DEFAULT_CASES)


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory):
    return _launch(tmp_path_factory, SLOW_CASES, "--local-vmap")


def _check_bitwise(job, case):
    assert int(job["n_processes"]) == 2 and int(job["n_devices"]) == 8
    ref = dc.run_case(case, engine="vmap")  # this process: one device, the vmap engine
    for f in dc.FIELDS:
        want = dc.field(ref, f)
        got = job[f"{case}/{f}"]
        assert got.shape == want.shape, f
        # gather aggregation: the same fixed-order reduction, so the same bits
        np.testing.assert_array_equal(got, want, err_msg=f"{case}: {f}")


@pytest.mark.parametrize("case", DEFAULT_CASES)
def test_two_processes_match_single_process_vmap_bitwise(default_job, case):
    _check_bitwise(default_job, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_two_processes_match_single_process_vmap_bitwise_more_methods(slow_job, case):
    _check_bitwise(slow_job, case)


@pytest.mark.slow
def test_vmap_inside_a_job_runs_locally(slow_job):
    # engine="vmap" in a multi-process program: every process runs all workers on its own
    # device, and its outputs are not gathered across processes
    ref = dc.run_case(SLOW_CASES[0], engine="vmap")
    for f in dc.FIELDS:
        np.testing.assert_array_equal(slow_job[f"local_vmap/{f}"], dc.field(ref, f), err_msg=f)


@pytest.mark.slow
def test_coded_case_has_stragglers(slow_job):
    # the straggler case must exercise partial participation, or it proves nothing
    answered = slow_job["coded/answered"][1:]
    assert not answered.all() and answered.any()


_SPIN = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    from ratedist.sim import distributed, engines

    lay = distributed.initialize()
    mesh = engines.worker_mesh()
    x = jax.make_array_from_callback(
        (8, 4), NamedSharding(mesh, P("workers")), lambda i: jnp.ones((8, 4))[i])
    f = jax.jit(jax.shard_map(lambda b: jax.lax.psum(b, "workers"), mesh=mesh,
                              in_specs=P("workers"), out_specs=P()))
    f(x).block_until_ready()
    print("joined", lay.process_id, flush=True)
    while True:
        f(x).block_until_ready()
    """
)


def _wait_for(proc, text, lines, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(text in s for s in lines):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("victim", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_killed_process_ends_the_job(victim):
    coord = f"127.0.0.1:{distributed.free_port()}"
    env = {**_env(), distributed.ENV_HEARTBEAT_TIMEOUT: str(HEARTBEAT_S)}
    procs, outs = [], []
    for i in range(2):
        p = subprocess.Popen(
            [sys.executable, "-c", _SPIN],
            env=distributed.local_env(i, 2, coord, 4, base=env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = [], []
        for stream, sink in ((p.stdout, out), (p.stderr, err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(s), daemon=True).start()
        procs.append(p)
        outs.append((out, err))
    try:
        for p, (out, err) in zip(procs, outs, strict=True):
            assert _wait_for(p, "joined", out, 120), "".join(err)[-2000:]
        procs[victim].kill()  # SIGKILL after it has joined and runs collectives
        killed_at = time.monotonic()
        survivor = procs[1 - victim]
        rc = survivor.wait(timeout=EXIT_WITHIN_S)
        took = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    time.sleep(0.2)  # let the reader threads drain
    err = "".join(outs[1 - victim][1])
    assert rc != 0
    assert took <= EXIT_WITHIN_S
    assert "JAX distributed service detected fatal errors" in err, err[-2000:]
    if victim == 1:
        # the coordinator names the lost process
        assert "stopped sending heartbeats" in err and "\n1\n" in err, err[-2000:]


def test_resolve_reads_arguments_then_environment():
    env = {
        distributed.ENV_COORDINATOR: "10.0.0.1:1234",
        distributed.ENV_NUM_PROCESSES: "4",
        distributed.ENV_PROCESS_ID: "3",
    }
    assert distributed.resolve(env=env) == ("10.0.0.1:1234", 4, 3)
    assert distributed.resolve("h:1", 2, 0, env=env) == ("h:1", 2, 0)
    assert distributed.resolve(env={}) == (None, None, None)  # left to JAX's detection


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"coordinator": "nohost"}, "coordinator must be 'host:port'"),
        ({"num_processes": 0}, "num_processes"),
        ({"num_processes": 2, "process_id": 2}, r"process_id must be in \[0, num_processes"),
        ({"env": {distributed.ENV_NUM_PROCESSES: "two"}}, "RATEDIST_NUM_PROCESSES"),
    ],
)
def test_resolve_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.resolve(**kwargs)


def test_local_env_sets_the_job_and_the_device_count():
    env = distributed.local_env(
        1, 2, "127.0.0.1:5", 4, base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --a"}
    )
    assert env[distributed.ENV_PROCESS_ID] == "1" and env[distributed.ENV_NUM_PROCESSES] == "2"
    assert env["XLA_FLAGS"].split() == ["--a", "--xla_force_host_platform_device_count=4"]


def test_launch_reports_a_failing_process(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import os, sys\nsys.exit(3 if os.environ['RATEDIST_PROCESS_ID'] == '1' else 0)\n"
    )
    assert distributed.launch([str(script)], 2, grace=5) == 3
    with pytest.raises(ValueError, match="argv"):
        distributed.launch([], 2)


def test_initialize_rejects_a_bad_heartbeat_before_starting_anything(monkeypatch):
    monkeypatch.setenv(distributed.ENV_HEARTBEAT_TIMEOUT, "soon")
    with pytest.raises(ValueError, match="RATEDIST_HEARTBEAT_TIMEOUT must be a number"):
        distributed.initialize("127.0.0.1:1", 2, 0)
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        distributed.initialize("127.0.0.1:1", 2, 0, heartbeat_timeout=0)


SWEEP = """\
[sweep]
steps = 20
gamma = "theory"
seeds = [0, 1]
engine = "shard_map"

[problem]
name = "tridiagonal_quadratic"
n_workers = 8
dim = 40

[[algorithms]]
name = "ef21"
compressor = "top-k:k=4"
"""


@pytest.mark.slow
def test_simulate_distributed_runs_every_config_once_and_matches_one_process(tmp_path):
    # `ratedist simulate --distributed` as a 2-process job (2 devices each) against the same
    # sweep in one process on 4 emulated devices: process 0 alone writes one file per config,
    # and the traces agree to the rounding of the cross-process psum (its reduction order is
    # the backend's: engines.py).
    from ratedist.sim.store import load_trace

    toml = tmp_path / "sweep.toml"
    toml.write_text(SWEEP)
    job, ref = tmp_path / "job", tmp_path / "ref"
    argv = ["-m", "ratedist", "simulate", str(toml), "--out", str(job), "--distributed"]
    rc = distributed.launch(argv, 2, local_devices=2, timeout=240, grace=20, env=_env())
    assert rc == 0
    env = _env()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    cmd = [sys.executable, "-m", "ratedist", "simulate", str(toml), "--out", str(ref)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=240)
    names = sorted(p.name for p in job.iterdir())
    assert names == sorted(p.name for p in ref.iterdir()) and len(names) == 2
    for name in names:
        got, _, _ = load_trace(job / name)
        want, _, _ = load_trace(ref / name)
        for f in ("x", "f", "grad_norm_sq"):
            a, b = np.asarray(getattr(got, f)), np.asarray(getattr(want, f))
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * np.max(np.abs(b)), err_msg=f)


def test_simulate_distributed_refuses_an_executor(tmp_path, capsys):
    from ratedist.cli import main

    toml = tmp_path / "sweep.toml"
    toml.write_text(SWEEP)
    argv = ["simulate", str(toml), "--distributed", "--executor", "dask://localhost:1"]
    assert main(argv) == 2
    assert "--distributed and --executor" in capsys.readouterr().err


def test_launcher_runs_a_job_and_reports_bad_arguments(tmp_path, capsys):
    from ratedist.sim import launch

    assert launch.main(["--num-processes", "0", "--", "x.py"]) == 2
    assert "num_processes" in capsys.readouterr().err
    script = tmp_path / "fail.py"
    script.write_text("import sys; sys.exit(3)\n")
    assert launch.main(["--num-processes", "2", "--", str(script)]) == 3
