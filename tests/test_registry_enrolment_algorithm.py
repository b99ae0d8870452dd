"""An algorithm registered once is enrolled everywhere: the generic algorithm tests, the
sweep configs, ``validate``'s constant check, the bounds table and the convergence figure.

The module defines a NEW method, ``ef21_dense`` (EF21 without the sparse fast path:
``h + C(x − h)`` on the dense vector), registers it only inside :func:`enrolled` with its
facts (argument kinds, its ``(A, B)`` bound, membership of the suite), and finds it through
the registry in every consumer; together with the new compressor of
``tests/compressors/test_registry_enrolment.py`` it also runs as a pair. Leaving the context
restores the registry, so other tests never see it.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from ratedist.compressors import make
from ratedist.sim import ALGORITHMS, Algorithm, run, tridiagonal_quadratic
from ratedist.sim.algorithms import register
from ratedist.sim.method import (
    alpha_of,
    check_compressor,
    compress,
    full_msg,
    label,
    payload_bits,
    theory,
)

sys.path.insert(0, str(Path(__file__).parent / "sim"))
sys.path.insert(0, str(Path(__file__).parent / "compressors"))

import test_registry_enrolment as compressor_enrolment
import test_sim_algorithms as generic

ROOT = Path(__file__).resolve().parents[1]
NAME = "ef21_dense"


def ef21_dense(compressor) -> Algorithm:
    """EF21 computed densely: ``g_i^{t+1} = h + C(x − h)`` (arXiv 2106.05203)."""
    comp = check_compressor("compressor", compressor)

    def init(grad0, key, shared, hp):
        return grad0, comp.init(grad0), full_msg(grad0)

    def step(h, y, x, cstate, key, shared, hp):
        c, cstate, msg = compress(comp, x - h, cstate, key, shared)
        return h + c, cstate, msg

    return Algorithm(
        f"{NAME}[{label(comp)}]",
        init,
        step,
        lambda d, n, hp: theory("ef21", alpha=alpha_of(comp, d))[0],
        lambda d, n, hp: theory("ef21", alpha=alpha_of(comp, d))[1],
        config={"algorithm": NAME, "compressor": label(comp)},
        needs=("h",),
        bits_per_step=lambda d, n, hp: payload_bits(comp, d),
        deterministic=comp.facts.deterministic,
    )


@contextlib.contextmanager
def enrolled_ef21_dense():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ALGORITHMS, "_entries", dict(ALGORITHMS._entries))
        register(NAME, args={"compressor": "contractive"}, bound="ef21", suite=True)(ef21_dense)
        yield


@pytest.fixture
def enrolled():
    with enrolled_ef21_dense():
        yield


@pytest.fixture(scope="module")
def tri():
    return tridiagonal_quadratic(n_workers=generic.N, dim=generic.D, seed=1, noise_scale=0.8)


def test_generic_algorithm_checks_find_it(enrolled, tri, key):
    assert NAME in ALGORITHMS.names()
    generic.check_example_runs(NAME, tri, key)
    generic.check_pathwise(NAME, tri, key)


def test_validate_constant_check_finds_it(enrolled, key):
    from ratedist.validate.checks import check_constants

    rows = {r.check: r for r in check_constants(True, key)}
    assert rows[f"3pc_constants[{NAME}]"].verdict == "holds"


def test_bounds_table_finds_it(enrolled):
    mod = runpy.run_path(str(ROOT / "analysis" / "bounds_table.py"))
    out = io.StringIO()
    with redirect_stdout(out):
        assert mod["main"](1e-2) == 0
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith(NAME))
    ef21_line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("ef21 "))
    assert line.split()[1:] == ef21_line.split()[1:]  # same constants, bits and budget


def test_convergence_figure_setups_find_it(enrolled):
    mod = runpy.run_path(str(ROOT / "paper_figures" / "convergence_3pc.py"), run_name="setups")
    assert NAME in mod["setups"](3)


def test_sweep_config_builds_it(enrolled, key):
    from ratedist.sim.sweep import expand_sweep, run_config

    doc = {
        "sweep": {"steps": 5, "gamma": 0.05},
        "problem": {"name": "tridiagonal_quadratic", "n_workers": 4, "dim": 12},
        "algorithms": [{"name": NAME, "compressor": "top-k:k=2"}],
    }
    (cfg,) = expand_sweep(doc)
    trace, meta = run_config(cfg)
    assert meta["algorithm"] == f"{NAME}[{label(make('top-k:k=2'))}]"
    assert trace.f.shape == (6,)


def test_new_algorithm_with_new_compressor(enrolled, key):
    with compressor_enrolment.enrolled_round_h():
        prob = tridiagonal_quadratic(4, 12, seed=0)
        tr = run(ALGORITHMS.get(NAME)(make("round-h:h=0.25")), prob, steps=10, key=key, gamma=0.05)
        assert tr.f[-1] < tr.f[0]
    assert NAME in ALGORITHMS.names()  # the compressor's context left ours alone


def test_enrolment_is_undone():
    with enrolled_ef21_dense():
        assert NAME in ALGORITHMS
    assert NAME not in ALGORITHMS
