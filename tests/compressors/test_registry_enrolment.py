"""A compressor registered once is enrolled everywhere: generic checks, ``rd --all``, RD tests.

The module defines a NEW compressor, ``round-h`` (round every coordinate to the nearest
multiple of ``h``; each index sent as an int32), and its exact closed form on Gaussian
gradients, and registers both only inside :func:`enrolled_round_h` — the compressor with
:func:`ratedist.compressors.register` (its facts, RD sweep and examples), the closed form with
:func:`ratedist.rd.register_closed_form` against the compressor's name. Nothing else names it:
the generic compressor checks, ``ratedist rd --all`` and the closed-form-vs-Monte-Carlo test
find it through the registries. Leaving the context restores the registries, so the other
tests never see it.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_compressors_generic as generic

from ratedist import cli
from ratedist.compressors import COMPRESSORS, CompressInfo, Compressor, Facts, make, register
from ratedist.rd import CLOSED_FORMS, ClosedForm, default_specs, register_closed_form
from ratedist.sources import Gaussian

NAME = "round-h"
INDEX_BITS = 32  # each rounded index travels as an int32


# ----------------------------------------------------------------------------- the compressor
def round_h(h: float = 0.5) -> Compressor:
    """Deterministic rounding to the grid ``h Z``: ``C(x)_i = h round(x_i / h)``.

    Biased, not contractive in a useful sense (no alpha declared). Bits: ``32`` per coordinate
    in the container; the entropy layer codes the indices at their empirical entropy.
    """
    if not isinstance(h, int | float) or not h > 0 or not math.isfinite(h):
        raise ValueError(f"h must be a finite number > 0, got {h!r}")
    h = float(h)

    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, CompressInfo]:
        x = jnp.asarray(x)
        q = jnp.round(x / h)
        d = x.shape[0]
        s = jnp.sort(q)
        # multiplicity of each coordinate's symbol: sum_j c_j log2(d / c_j) over coordinates
        count = jnp.searchsorted(s, q, side="right") - jnp.searchsorted(s, q, side="left")
        dtype = jnp.result_type(float)
        entropy = jnp.sum(jnp.log2(d / count.astype(dtype)))
        zero = jnp.zeros((), dtype)
        info = CompressInfo(jnp.asarray(d * INDEX_BITS, dtype), zero, zero, entropy)
        return (h * q).astype(x.dtype), state, info

    facts = Facts(name=NAME, params={"h": h}, unbiased=False, deterministic=True)
    return Compressor(lambda x: (), update, facts)  # stateless: an empty pytree


def round_h_rd(d: int, *, sigma: float = 1.0, dtype: Any = "float32", h: float = 0.5):
    """Exact (R, D) of ``round-h`` on ``N(0, sigma^2)`` coordinates.

    Cells ``((j - 1/2) h, (j + 1/2) h)`` map to ``j h``: ``D sigma^2 = sum_j E[(g - j h)^2;
    cell j]`` from the Gaussian partial moments; the entropy rate is the entropy of the
    index law (the TRUE entropy); the container rate is 32 bits.
    """
    half = math.ceil(12.0 * sigma / h) + 1  # mass beyond 12 sigma is below 1e-32
    j = np.arange(-half, half + 1, dtype=np.float64)
    lo, hi = (j - 0.5) * h, (j + 0.5) * h
    src = Gaussian(sigma)
    m0, m1, m2 = (src.partial_moment(k, lo, hi) for k in range(3))
    mse = float(np.sum(m2 - 2.0 * j * h * m1 + (j * h) ** 2 * m0))
    p = m0[m0 > 0]
    entropy = float(-np.sum(p * np.log2(p)))
    return ClosedForm(float(INDEX_BITS), entropy, mse / sigma**2, True)


def _alphabet(params: dict[str, Any]) -> int:
    """Indices with non-negligible mass on a unit Gaussian: |j| <= 4/h."""
    return 2 * math.ceil(4.0 / params["h"]) + 1


@contextlib.contextmanager
def enrolled_round_h() -> Iterator[None]:
    """Register ``round-h`` and its closed form; restore both registries on exit."""
    with pytest.MonkeyPatch.context() as mp:
        # Snapshots of the registries' tables make the public registrations below undoable.
        mp.setattr(COMPRESSORS, "_entries", dict(COMPRESSORS._entries))
        mp.setattr(CLOSED_FORMS, "_entries", dict(CLOSED_FORMS._entries))
        register(
            NAME,
            unbiased=False,
            deterministic=True,
            examples=[{"h": 0.5}, {"h": 2.0}],
            rd_sweep=[{"h": 0.25}, {"h": 1.0}],
        )(round_h)
        register_closed_form(NAME, entropy_alphabet=_alphabet)(round_h_rd)
        yield


@pytest.fixture
def enrolled():
    with enrolled_round_h():
        yield


# ----------------------------------------------------------------------------- the checks
def test_enrolment_reads_params_and_is_undone():
    before = (COMPRESSORS.names(), CLOSED_FORMS.names())
    with enrolled_round_h():
        assert COMPRESSORS.facts(NAME)["params"] == {"h": (float, 0.5)}  # from the signature
        assert make(f"{NAME}:h=0.25").facts.params == {"h": 0.25}
        assert NAME in CLOSED_FORMS
    assert (COMPRESSORS.names(), CLOSED_FORMS.names()) == before
    with pytest.raises(ValueError, match="unknown compressor"):
        make(NAME)


def test_closed_form_at_high_resolution_is_h_squared_over_12():
    # Independent of the partial-moment sums: the uniform-noise limit (error ~ e^(-2 pi^2/h^2)).
    for h in (0.05, 0.1):
        cf = round_h_rd(1000, h=h)
        assert cf.distortion == pytest.approx(h * h / 12, rel=1e-12)
        # h(g) - log2 h for a fine grid (differential entropy of N(0, 1), bits), up to O(h^2)
        assert cf.entropy_rate_bits == pytest.approx(
            0.5 * math.log2(2 * math.pi * math.e) - math.log2(h), abs=h * h
        )


def _expand(fn) -> list[dict[str, Any]] | None:
    """The keyword sets a generic test runs with, besides ``(name, params)``; None if the test
    is not parametrized over registry cases."""
    marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
    over_cases = False
    axes = []
    for m in marks:
        names = m.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if names == ["name", "params"]:
            over_cases = True
            continue
        values = [getattr(v, "values", v) for v in m.args[1]]
        values = [v if len(names) > 1 else (v if isinstance(v, tuple) else (v,)) for v in values]
        axes.append([dict(zip(names, v, strict=True)) for v in values])
    if not over_cases:
        return None
    return [{k: v for d in combo for k, v in d.items()} for combo in itertools.product(*axes)]


def test_generic_compressor_checks_pick_it_up(enrolled):
    cases = [c for c in generic._cases() if c.values[0] == NAME]
    assert [c.values[1] for c in cases] == [{"h": 0.5}, {"h": 2.0}]
    ran, skipped = set(), {}
    for fname in sorted(vars(generic)):
        fn = getattr(generic, fname)
        if not fname.startswith("test_") or not callable(fn):
            continue
        extra = _expand(fn)
        if extra is None:
            continue
        wants_key = "key" in inspect.signature(fn).parameters
        for case, kwargs in itertools.product(cases, extra):
            args = dict(kwargs, name=case.values[0], params=case.values[1])
            if wants_key:
                args["key"] = jax.random.key(len(ran) + len(skipped))
            try:
                fn(**args)
                ran.add(fname)
            except pytest.skip.Exception as exc:
                skipped[fname] = str(exc)
    # Structural and bookkeeping properties apply to every compressor; the declared-only ones
    # (unbiasedness, omega, alpha, abs_mse, the sparse form, a bit formula) are skipped with a
    # reason.
    assert {
        "test_facts_of_instance",
        "test_dtype_shape_and_info",
        "test_zero_vector_gives_finite_output",
        "test_jit_and_vmap_agree",
        "test_second_call_does_not_retrace",
        "test_error_feedback_identity",
        "test_error_feedback_identity_bitwise_where_entries_are_kept_or_dropped",
        "test_nonfinite_input_coordinates_stay_nonfinite",
        "test_nonfinite_input_coordinates_stay_nonfinite_other_dtypes",
    } <= ran
    assert set(skipped) == {
        "test_unbiased",
        "test_variance_bound_omega",
        "test_contraction_alpha",
        "test_absolute_mse_bound",
        "test_sparse_form_densifies_to_update",
        "test_nonfinite_inputs_in_the_sparse_form",
        "test_bits_equal_documented_formula",
    }, skipped


def test_rd_all_lists_it(enrolled, capsys):
    assert default_specs()[NAME] == [f"{NAME}:h=0.25", f"{NAME}:h=1.0"]
    assert cli.main(["rd", "--dim", "200", "--all", "--trials", "0", "--json"]) == 0
    points = [p for p in json.loads(capsys.readouterr().out)["points"] if p["compressor"] == NAME]
    assert [p["params"] for p in points] == [{"h": 0.25}, {"h": 1.0}]
    for p in points:
        cf = round_h_rd(200, h=p["params"]["h"])
        assert p["distortion"] == cf.distortion and p["rate_bits"] == INDEX_BITS
    assert cli.main(["rd", "--dim", "200", "--compressor", f"{NAME}:h=1", "--trials", "4"]) == 0
    assert f"{NAME}:h=1.0" in capsys.readouterr().out


def test_rd_closed_form_vs_monte_carlo_picks_it_up(enrolled, monkeypatch, key):
    # The RD tests live in tests/rd; their generic check is imported, not copied.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "rd"))
    rd_mc = importlib.import_module("test_rd_monte_carlo")
    assert f"{NAME}:h=0.25" in rd_mc.closed_form_specs()
    for i, spec in enumerate(rd_mc.closed_form_specs("all")):
        if spec.startswith(NAME + ":"):
            p = rd_mc.check_closed_form_vs_monte_carlo(spec, jax.random.fold_in(key, i))
            assert p.exact and p.rate_bits == INDEX_BITS and p.distortion_mc > 0
