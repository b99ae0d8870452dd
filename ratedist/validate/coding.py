"""Gradient-coding checks of the suite: exact decoding of the repetition codes, unbiased
random replication, the moments of the stochastic 1-bit quantizer, and 1-bit gradient coding
against full-precision gradient coding at equal uplink bits.

Registered in :data:`~ratedist.validate.verdicts.CHECKS` on import (by
:mod:`ratedist.validate.core`); theory in ``docs/theory/gradient_coding.md``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ratedist.compressors import make
from ratedist.sim import (
    codes,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
)
from ratedist.sim.equal_bits import (
    EQUAL_BITS_PROBLEMS,
    EqualBitsConfig,
    EqualBitsRun,
    compare_methods,
    paired_difference,
)
from ratedist.validate.verdicts import K_SE, CheckResult, register, verdict_equal, verdict_less


def _partition_gradients(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Partition gradients ``A_j x − b_j`` of a tridiagonal quadratic at a random point
    (numpy, from the dense matrices: nothing compiled)."""
    prob = tridiagonal_quadratic(k, d, seed=3)
    x = rng.standard_normal(d)
    return tridiagonal_matrices(prob) @ x - tridiagonal_linear_terms(prob)


def _numpy_rng(key: Any) -> np.random.Generator:
    """A numpy generator seeded from a JAX key (masks drawn without compiling anything)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def _recovery_row(code: Any, masks: np.ndarray, grads: np.ndarray, tol: float, note: str):
    """Max relative error of the decoded ``sum_i a_i y_i`` vs ``grad f = mean_j grad f_j``."""
    k = grads.shape[0]
    y = code.B @ grads / k  # worker i sends sum_j B_ij g_j with g_j = grad f_j / k
    full = grads.sum(axis=0) / k
    a = codes.decoding_vectors(code, masks)
    err = np.linalg.norm(a @ y - full[None, :], axis=1) / np.linalg.norm(full)
    worst = float(np.max(err))
    verdict, why = verdict_equal(0.0, worst, tol)
    return CheckResult(
        f"gradient_coding[{code.config['code']}:n={code.n_workers},s={code.s}]",
        0.0,
        worst,
        0.0,
        verdict,
        f"max ||sum a_i y_i - ∇f|| / ||∇f|| over {len(masks)} patterns ({note}); {why}",
    )


def _unbiased_row(code: Any, masks: Any, label: str) -> CheckResult:
    """``E[a(mask)^T B] = 1^T``: the partition whose mean decoded coefficient is farthest from
    1 in standard errors."""
    c = codes.decoding_vectors(code, masks) @ code.B  # (M, k) decoded coefficients
    m = c.shape[0]
    mean, se = c.mean(axis=0), c.std(axis=0, ddof=1) / math.sqrt(m)
    j = int(np.argmax(np.abs(mean - 1.0) / se))
    verdict, why = verdict_equal(1.0, float(mean[j]), K_SE * float(se[j]))
    return CheckResult(
        f"gradient_coding[{code.config['code']}:{code.config['rescale']}]",
        1.0,
        float(mean[j]),
        float(se[j]),
        verdict,
        f"E[a(mask)^T B]_j = 1 (worst of k = {code.n_partitions} partitions, {m} masks, "
        f"{label}, d = {code.config['d']}); {why} (5 SE)",
    )


@register(
    "gradient_coding",
    summary="FRC/CRC decode ∇f exactly with <= s stragglers; random replication is unbiased",
)
def check_gradient_coding(quick: bool, key: Any) -> list[CheckResult]:
    d = 20 if quick else 100
    rng = _numpy_rng(key)
    out = []
    # (n, s): every pattern of <= s stragglers, and random exactly-s patterns at a larger n
    small, large = ((6, 2), (12, 3)) if quick else ((8, 3), (24, 3))
    n_random = 200 if quick else 1000
    for make_code, tol, note in (
        (codes.frc, 1e-14, "0/1 weights: float64 summation order only"),
        (codes.crc, 1e-8, "real weights: conditioning of the decoding systems"),
    ):
        for n, s in (small, large):
            code = make_code(n, s)
            grads = _partition_gradients(n, d, rng)
            if n <= 8:
                masks, which = codes.straggler_masks(n, s), "all with <= s stragglers"
            else:
                rank = rng.random((n_random, n)).argsort(axis=1)
                masks, which = rank >= s, f"{n_random} random with exactly s"
            out.append(_recovery_row(code, masks, grads, tol, f"{which}; {note}"))
    n, dup, p, s = (8, 2, 0.3, 3) if quick else (16, 3, 0.3, 5)
    m = 20000 if quick else 100000
    bern = rng.random((m, n)) >= p
    out.append(
        _unbiased_row(codes.random_replication(n, dup, p=p), bern, f"Bernoulli(p = {p}) stragglers")
    )
    rank = rng.random((m, n)).argsort(axis=1)
    out.append(
        _unbiased_row(
            codes.random_replication(n, dup, rescale="count"), rank >= s, f"exactly {s} stragglers"
        )
    )
    return out


@register(
    "one_bit_quantizer",
    summary="stochastic 1-bit quantizer: E Q(v) = v, E||Q(v) - v||^2 = d R^2 - ||v||^2",
)
def check_one_bit_quantizer(quick: bool, key: Any) -> list[CheckResult]:
    d, m = (32, 20000) if quick else (256, 100000)
    v = _numpy_rng(key).standard_normal(d)
    out = []
    for scale, bound, R in (
        ("l2", None, float(np.linalg.norm(v))),
        ("linf", None, float(np.max(np.abs(v)))),
        ("bound", 1.5 * float(np.max(np.abs(v))), 1.5 * float(np.max(np.abs(v)))),
    ):
        comp = make("stochastic-sign", scale=scale, bound=bound)
        keys = jax.random.split(jax.random.fold_in(key, len(out)), m)
        q = np.asarray(
            jax.jit(jax.vmap(lambda k, c=comp: c.update(jnp.asarray(v), (), key=k)[0]))(keys)
        )
        dev = q.mean(axis=0) - v
        err = ((q - v[None, :]) ** 2).sum(axis=1)
        # SE floored at sqrt(mse / (d m)): a coordinate with |v_j| = R is never flipped and
        # shows zero sample variance (its mean is then exact up to summation round-off)
        se = np.maximum(q.std(axis=0, ddof=1), math.sqrt(err.mean() / d)) / math.sqrt(m)
        j = int(np.argmax(np.abs(dev) / se))
        verdict, why = verdict_equal(0.0, float(dev[j]), K_SE * float(se[j]))
        out.append(
            CheckResult(
                f"one_bit_quantizer[{scale}:mean]",
                0.0,
                float(dev[j]),
                float(se[j]),
                verdict,
                f"E Q(v)_j - v_j, worst of d = {d} coordinates, {m} draws; {why} (5 SE)",
            )
        )
        pred = d * R * R - float(v @ v)
        mse, se_mse = float(err.mean()), float(err.std(ddof=1) / math.sqrt(m))
        verdict, why = verdict_equal(pred, mse, K_SE * se_mse)
        out.append(
            CheckResult(
                f"one_bit_quantizer[{scale}:mse]",
                pred,
                mse,
                se_mse,
                verdict,
                f"d R^2 - ||v||^2 with R = {R:.4g}, d = {d}, {m} draws; {why} (5 SE)",
            )
        )
    return out


#: the 1-bit methods compared with :data:`GC_REFERENCE` (quick: the first only)
GC_ONEBIT = ("onebit_gc", "onebit_gc_ef")
#: full-precision gradient coding, the method to beat at equal bits
GC_REFERENCE = "full_gc"
#: an earlier budget reported in the detail (its own step-size choice), in full rounds
GC_EARLY_ROUNDS = 10.0


def _gc_row(
    problem: str, i: int, runs: dict[str, EqualBitsRun], method: str, cfg: EqualBitsConfig
) -> CheckResult:
    """One row: ``method`` vs :data:`GC_REFERENCE` on ``problem`` at ``ps[i]``."""
    ref, one = runs[GC_REFERENCE], runs[method]
    a, b = one.at_budget()[i], ref.at_budget()[i]
    both = np.isfinite(a) & np.isfinite(b)  # a diverged or short replica counts for neither
    _, se, count = paired_difference(b, a)
    ma, mb = (float(v[both].mean()) if count else math.nan for v in (a, b))
    verdict, why = verdict_less(ma, mb, se)
    e_diff, e_se, _ = paired_difference(
        ref.at_budget(GC_EARLY_ROUNDS)[i], one.at_budget(GC_EARLY_ROUNDS)[i]
    )
    edge = [m for m in (method, GC_REFERENCE) if runs[m].at_edge()[i]]
    p = float(one.ps[i])
    detail = (
        f"f − f* at {one.budget()[i]:.4g} uplink bits of all workers (container; = "
        f"{cfg.rounds:g} expected rounds of 32-bit floats, FRC n = {cfg.n_workers}, s = "
        f"{cfg.s}, Bernoulli p = {p:g}), mean of {count} of {a.size} replicas; predicted = "
        f"{GC_REFERENCE}, "
        f"measured = {method}, error = SE of the paired difference; gamma = "
        f"{one.gamma()[i]:.3g} vs {ref.gamma()[i]:.3g}, each the best of "
        f"{one.gammas.size} on {one.r_tune} tuning replicas"
        + (f" (at the grid's edge: {', '.join(edge)})" if edge else "")
        + f"; {why} (5 SE). At {GC_EARLY_ROUNDS:g} rounds ({method} gamma "
        f"{one.gamma(GC_EARLY_ROUNDS)[i]:.3g}): {GC_REFERENCE} − {method} = {e_diff:.3g} ± "
        f"{e_se:.2g}"
    )
    if verdict == "violated" and one.gamma()[i] < one.gamma(GC_EARLY_ROUNDS)[i]:
        detail += (
            f"; {method}'s best gamma shrinks as the budget grows, the signature of a variance "
            "floor: its messages' compression noise does not vanish at the optimum (only the "
            "decoded sum of the workers' gradients does)"
        )
    return CheckResult(f"gc_equal_bits[{problem}:p={p:g}:{method}]", mb, ma, se, verdict, detail)


@register(
    "gc_equal_bits",
    summary="1-bit gradient coding reaches a lower loss than full-precision gradient coding at "
    "equal uplink bits (convex logistic, MLP; Bernoulli stragglers)",
    quick=False,
)
def check_gc_equal_bits(quick: bool, key: Any) -> list[CheckResult]:
    """Both problems of :data:`~ratedist.sim.equal_bits.EQUAL_BITS_PROBLEMS`, both straggler
    probabilities of the default :class:`~ratedist.sim.equal_bits.EqualBitsConfig`; quick runs
    only ``onebit_gc`` (each method is one compiled program, and compiling dominates).

    Not part of ``validate --quick``: it tests an empirical claim of a paper, not a theorem
    or identity of the library, and a violated row is a finding about the method rather than
    a defect (on the convex logistic, ``onebit_gc`` loses: its unbiased 1-bit messages carry
    a variance that does not vanish at the optimum); and it compiles four programs.
    ``ratedist validate --check gc_equal_bits [--quick]`` runs it."""
    cfg = EqualBitsConfig()
    onebit = GC_ONEBIT[:1] if quick else GC_ONEBIT
    problems = EQUAL_BITS_PROBLEMS.names()
    runs = compare_methods((*onebit, GC_REFERENCE), problems, key, cfg)
    return [
        _gc_row(name, i, runs[name], m, cfg)
        for name in problems
        for i in range(len(cfg.ps))
        for m in onebit
    ]
