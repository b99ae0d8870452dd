"""Every design method on every scalable source, over scales and level counts: none fails.

The sources are read from the registry (:data:`ratedist.sources.SOURCES`): every example
parameter set the designs accept, plus the lower end of each ``DESIGN_RANGES`` (Student-t
``df = 3``, power-law tail index 3), each rescaled to every scale below.

A design is scale-equivariant (``X -> c X`` maps the optimal quantizer of ``X`` to ``c`` times
it), so ``mse / scale^2`` must not depend on the scale. The check compares each design with
the one at scale 1.

Tolerance ``SCALE_RTOL = 1e-9`` (relative, on ``mse / scale^2``): the MSE is a sum of terms of
order ``Var(X)`` that cancel down to ``mse ~ Var(X) 4^-b``, so rounding alone moves it by
``~ n eps Var/mse``, measured ≤ 2e-11 at 256 levels; every solver is converged far below
that (Lloyd–Max and variance-optimal are stationary, so their MSE is second-order in the
1e-12/1e-10 residuals). ECSQ meets its entropy target only to its reported residual ``r``
bits, and ``dD/dH = -2 ln2 D`` at high rate, so its tolerance adds ``2 ln2 (r_1 + r_c)``.

The full cross product is ``slow``; the default suite runs a diagonal that visits every
method, every source family, every level count and every scale at least once, plus the
reported regression (unit-variance Laplace, 4 levels, Lloyd–Max: once "singular matrix").
"""

from __future__ import annotations

import math

import pytest

from ratedist.quantizers import DESIGNS, design, evaluate, lloyd, lloyd_max
from ratedist.sources import SOURCES, make_source

SCALE_RTOL = 1e-9


def _families() -> list[tuple[str, dict]]:
    """``(registry name, constructor parameters other than the scale)`` for every registered
    source with a ``scale`` option: each example parameter set that the designs accept
    (finite variance, inside ``DESIGN_RANGES``), plus the lower end of each design range."""
    out: list[tuple[str, dict]] = []
    for name in SOURCES.names():
        spec = SOURCES.get(name)
        if "scale" not in spec.options:
            continue
        scale_param = spec.options["scale"]
        candidates = [dict(ex) for ex in spec.examples.values()]
        for param, rng in spec.cls.DESIGN_RANGES.items():
            candidates.append({param: rng.lo})
        for params in candidates:
            params.pop(scale_param, None)
            src = spec.build(**params)
            try:
                src.variance()
                src.check_designable()
            except ValueError:
                continue
            if (name, params) not in out:
                out.append((name, params))
    return out


FAMILIES = _families()
SCALES = [1e-3, 1e-1, math.sqrt(0.5), 1e1, 1e3]
LEVELS = [2, 3, 4, 8, 16, 64, 256]
METHODS = DESIGNS.names()  # every method takes a number of levels (ecsq: a cap on cells)


def _family_id(family: tuple[str, dict]) -> str:
    name, params = family
    return name + "".join(f"-{k}{v:g}" for k, v in params.items())


def _normalized(method: str, family: tuple[str, dict], scale: float, n: int):
    name, params = family
    spec = SOURCES.get(name)
    src = spec.build(**params, **{spec.options["scale"]: scale})
    sol = design(method, src, levels=n)
    ev = evaluate(sol.value, src, rounding=DESIGNS.facts(method)["rounding"])
    return sol, ev.mse / scale**2


def check_sweep_case(method: str, family: tuple[str, dict], n: int, scales) -> None:
    ref_sol, ref = _normalized(method, family, 1.0, n)
    assert ref_sol.converged and math.isfinite(ref) and ref > 0
    for scale in scales:
        sol, value = _normalized(method, family, scale, n)
        where = f"{method} {_family_id(family)} n={n} scale={scale:g}"
        assert sol.converged, f"{where}: not converged (residual {sol.residual:.3g})"
        assert math.isfinite(value) and value > 0, f"{where}: mse/scale^2 = {value!r}"
        rtol = SCALE_RTOL
        if DESIGNS.facts(method).get("rate") == "entropy":
            rtol += 2 * math.log(2) * (sol.residual + ref_sol.residual)
        assert value == pytest.approx(ref, rel=rtol), where


def _diagonal() -> list[tuple[str, tuple[str, dict], int, float]]:
    """Each family once, with method, level count and scale cycling (co-prime strides)."""
    cases = []
    for i, family in enumerate(FAMILIES):
        method = METHODS[i % len(METHODS)]
        n = LEVELS[(3 * i) % len(LEVELS)]
        # generic-quadrature TNQ/TUQ on a Student-t at 256 levels takes ~10 s: keep it slow
        if method in ("tnq", "tuq") and family[0] == "student-t":
            n = min(n, 16)
        cases.append((method, family, n, SCALES[i % len(SCALES)]))
    # the remaining methods at the ends of the level range
    for j, method in enumerate(METHODS[len(FAMILIES) % len(METHODS) :]):
        family = FAMILIES[(2 * j + 1) % len(FAMILIES)]
        cases.append((method, family, LEVELS[-1] if j % 2 else LEVELS[0], SCALES[-1 - j % 2]))
    return cases


@pytest.mark.parametrize(
    ("method", "family", "n", "scale"),
    _diagonal(),
    ids=lambda v: _family_id(v) if isinstance(v, tuple) else str(v),
)
def test_design_sweep_diagonal(method, family, n, scale):
    check_sweep_case(method, family, n, [scale])


def test_unit_variance_laplace_lloyd_max_regression():
    # The Jacobian of Lloyd–Max's threshold equations is singular for an even number of
    # Laplace levels (shifting every threshold shifts every centroid by the same amount).
    check_sweep_case("lloyd-max", ("laplace", {}), 4, [math.sqrt(0.5)])
    src = make_source("laplace", scale=math.sqrt(0.5))
    newton = lloyd_max(src, 4)
    plain = lloyd(src, 4)  # no linear solve at all: an independent reference
    assert newton.converged and plain.converged
    # both within 1e-12 std of the fixed point: 10x that (house rule for iterative solvers)
    assert newton.value.levels == pytest.approx(plain.value.levels, abs=1e-11)


@pytest.mark.slow
@pytest.mark.parametrize("n", LEVELS)
@pytest.mark.parametrize("family", FAMILIES, ids=_family_id)
@pytest.mark.parametrize("method", METHODS)
def test_design_sweep_full(method, family, n):
    check_sweep_case(method, family, n, SCALES)
