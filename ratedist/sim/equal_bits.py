"""Gradient-coding methods compared at equal uplink bits: the protocol shared by the
``gc_equal_bits`` validation check and ``paper_figures/gradient_coding.py``.

The comparison (every method of :data:`~ratedist.sim.gcdl.GC_METHODS` can take part):

* **Budget.** The common bit budget is that of ``rounds`` expected full-precision rounds:
  ``B(p) = n F + rounds n (1 − p) F`` container bits of all workers, with ``F = 32 d`` bits
  per float vector (the initial messages ``t = 0``, when everyone answers, plus ``rounds``
  rounds in which ``n (1 − p)`` workers answer on average; :func:`expected_uplink`).
  A method runs long enough to spend ``B`` on every replica (5 standard deviations of the
  straggler count above its expected number of steps, :func:`steps_for_budget`).
* **Value at a budget.** The loss a method has reached with ``B`` bits is the value at its last
  iterate whose cumulative uplink is ``<= B`` (:func:`value_at_bits`): what a user who may
  spend ``B`` bits holds; no interpolation between iterates, no extrapolation past a run.
* **Step size.** Each method gets the best ``gamma`` of the grid ``c_j gamma_0 s_m``
  (:func:`gamma_grid`): ``gamma_0 = 1/lambda_max(∇²f(x^0))`` (:func:`curvature`), ``s_m = 1``
  for methods whose aggregate has the gradient's scale and ``s_m = ||∇f(x^0)|| / sqrt(d)``
  for the majority vote (whose aggregate is a ±1 vector: the same first-step length as GD
  at ``gamma_0``). "Best" = lowest mean ``f − f*`` at the budget over ``r_tune`` tuning
  replicas, chosen separately for every budget (:meth:`EqualBitsRun.chosen`); the reported
  values come from ``r_eval`` further, independent replicas at that ``gamma``
  (:func:`run_equal_bits`: one vmapped program for every ``p``, ``gamma`` and replica).
* **Common random numbers.** Replica ``r`` of every method uses the key ``fold_in(key, r)``,
  so the methods see the same straggler draws at the same step index; differences between
  methods are taken replica by replica (:func:`paired_difference`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg

from ratedist._registry import Registry
from ratedist._validation import check_int
from ratedist.compressors.base import FLOAT_BITS
from ratedist.sim.codes import GradientCode, make_code
from ratedist.sim.gcdl import gc_setup
from ratedist.sim.problems import Problem, logistic_nonconvex, mlp
from ratedist.sim.runner import run
from ratedist.sim.stages import bernoulli_stragglers

#: standard deviations of the number of answering workers added to a run's length
STEP_MARGIN_SD = 5.0

#: gradient scale of a method's aggregate, by its server rule (:attr:`GCMethod.rule`):
#: ``(||∇f(x^0)||, d) -> s_m`` multiplying the step-size grid
RULE_SCALE: dict[str, Callable[[float, int], float]] = {
    "decode": lambda g0, d: 1.0,
    "mean_active": lambda g0, d: 1.0,
    "majority": lambda g0, d: g0 / math.sqrt(d),
}

#: Problems of the gradient-coding comparison: ``n_partitions -> Problem``; facts:
#: ``label`` (figure titles), ``loss_label`` (what ``f − f*`` is, for axis labels), ``convex``.
EQUAL_BITS_PROBLEMS: Registry[Callable[[int], Problem]] = Registry("equal-bits problem")


@EQUAL_BITS_PROBLEMS.register(
    "logistic",
    label="convex logistic regression (synthetic, d = 20)",
    loss_label=r"$f(x^t) - f^*$",
    convex=True,
)
def logistic_problem(n_partitions: int) -> Problem:
    """Logistic regression without regulariser (``lam = 0``: convex) on synthetic data,
    ``d = 20``, 50 samples per partition; ``f*`` by L-BFGS-B (the global minimum)."""
    return logistic_nonconvex(n_workers=n_partitions, n_samples=50 * n_partitions, dim=20, lam=0.0)


@EQUAL_BITS_PROBLEMS.register(
    "mlp",
    label="MLP 4-8-1 tanh regression (d = 49)",
    loss_label=r"$f(x^t)$  ($f^* = 0$: a lower bound)",
    convex=False,
)
def mlp_problem(n_partitions: int) -> Problem:
    """The one-hidden-layer tanh MLP (4 inputs, 8 hidden units, ``d = 49``), 32 samples per
    partition, full local gradients (``batch_size=None``: the only randomness is the
    stragglers' and the compressors'); ``f* = 0`` is a lower bound (the teacher's targets
    carry ``0.1 N(0, 1)`` noise, so the loss levels off near ``0.1^2/2 = 0.005``)."""
    return mlp(n_partitions, hidden=8, dim_in=4, n_samples=32 * n_partitions, batch_size=None)


# ------------------------------------------------------------------------------ pure helpers


def value_at_bits(bits: Any, values: Any, budget: Any) -> np.ndarray:
    """The value at the last iterate whose cumulative bits are ``<= budget``.

    Args:
        bits: cumulative bits, ``(..., T + 1)``, nondecreasing along the last axis (NaN after
            a divergence, as in :class:`~ratedist.sim.trace.Trace`).
        values: same shape, the metric at each iterate.
        budget: a number or a 1-D array of budgets.

    Iterates that sent nothing (every worker straggled) share the count of the previous one;
    the latest of them is taken.

    Returns:
        ``(...)`` for a scalar budget, ``(..., len(budget))`` otherwise. NaN where the run did
        not spend the budget (no extrapolation), where even the first message exceeds it, and
        at every budget for a run that diverged (its counts turn NaN): a diverged step size
        never gets a value, not even at budgets it spent before diverging.

    Raises:
        ValueError: ``bits`` and ``values`` differ in shape, or ``budget`` is not a number or
            a 1-D array.
    """
    bits = np.asarray(bits, np.float64)
    values = np.asarray(values, np.float64)
    if bits.shape != values.shape or bits.ndim < 1:
        raise ValueError(
            f"bits and values must have the same shape (..., T + 1), got {bits.shape} and "
            f"{values.shape}"
        )
    b = np.asarray(budget, np.float64)
    if b.ndim > 1:
        raise ValueError(f"budget must be a number or a 1-D array, got shape {b.shape}")
    flat_b = np.atleast_1d(b)
    rows_bits = bits.reshape(-1, bits.shape[-1])
    rows_vals = values.reshape(-1, values.shape[-1])
    out = np.full((rows_bits.shape[0], flat_b.size), np.nan)
    for r, (rb, rv) in enumerate(zip(rows_bits, rows_vals, strict=True)):
        if not np.isfinite(rb[-1]):
            continue  # diverged: bits are NaN from the divergence on
        i = np.searchsorted(rb, flat_b, side="right") - 1
        ok = (i >= 0) & (flat_b <= rb[-1])
        out[r, ok] = rv[i[ok]]
    out = out.reshape(bits.shape[:-1] + flat_b.shape)
    return out[..., 0] if b.ndim == 0 else out


def expected_uplink(message_bits: float, n_workers: int, p: float, rounds: float) -> float:
    """Expected cumulative container bits of all workers after ``rounds`` rounds: the initial
    messages of all ``n`` workers plus ``n (1 − p)`` answering workers per round."""
    return n_workers * message_bits * (1.0 + rounds * (1.0 - p))


def steps_for_budget(message_bits: float, n_workers: int, p: float, budget: float) -> int:
    """Steps after which a method sending ``message_bits`` per answering worker has spent
    ``budget`` bits on all but a ``STEP_MARGIN_SD``-sigma unlucky straggler draw.

    The expected number ``T = (budget/(n message_bits) − 1)/(1 − p)``, plus
    ``STEP_MARGIN_SD`` standard deviations of the binomial count of answers over ``T`` steps
    (relative sd ``sqrt(p/((1 − p) n T))``), plus one.
    """
    T = max((budget / (n_workers * message_bits) - 1.0) / (1.0 - p), 1.0)
    rel_sd = math.sqrt(p / ((1.0 - p) * n_workers * T))
    return math.ceil(T * (1.0 + STEP_MARGIN_SD * rel_sd)) + 1


def paired_difference(a: Any, b: Any) -> tuple[float, float, int]:
    """Mean and standard error of ``a_r − b_r`` over the replicas where both are finite.

    Returns:
        ``(mean, se, count)``; NaNs when fewer than two pairs are finite.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan, math.nan, int(d.size)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), int(d.size)


def mean_se(a: Any) -> tuple[float, float]:
    """Mean and standard error over the finite entries (NaNs if fewer than two)."""
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


# ------------------------------------------------------------------------------ step sizes


def _full_grad(problem: Problem) -> Callable[[Any], Any]:
    data = jax.tree_util.tree_map(jnp.asarray, problem.data)

    def f(x):
        return jnp.mean(jax.vmap(problem.loss_fn, in_axes=(None, 0))(x, data))

    return jax.grad(f)


#: largest dimension whose Hessian :func:`curvature` forms densely (else Lanczos on HVPs)
DENSE_HESSIAN_MAX_DIM = 2048


def curvature(problem: Problem, x: Any = None, *, tol: float = 1e-10) -> float:
    """``max |eig(∇²f(x))|`` of ``f = (1/n) sum_i f_i`` (``x`` defaults to ``problem.x0``).

    The Hessian comes from JAX (exact derivatives); for ``d <=``
    :data:`DENSE_HESSIAN_MAX_DIM` it is formed and its eigenvalues computed by
    ``numpy.linalg.eigvalsh``, else the largest-magnitude one by Lanczos
    (``scipy.sparse.linalg.eigsh``, relative tolerance ``tol``) on Hessian-vector products.
    """
    x = jnp.asarray(np.asarray(problem.x0 if x is None else x, np.float64))
    grad = _full_grad(problem)
    d = x.shape[0]
    if d <= DENSE_HESSIAN_MAX_DIM:
        H = np.asarray(jax.jit(jax.jacfwd(grad))(x), np.float64)
        return float(np.max(np.abs(np.linalg.eigvalsh((H + H.T) / 2))))
    hvp = jax.jit(lambda v: jax.jvp(grad, (x,), (v,))[1])
    op = scipy.sparse.linalg.LinearOperator(
        (d, d), matvec=lambda v: np.asarray(hvp(jnp.asarray(v.ravel()))), dtype=np.float64
    )
    return float(abs(scipy.sparse.linalg.eigsh(op, k=1, which="LM", tol=tol)[0][0]))


def gamma_grid(rule: str, problem: Problem, multipliers: Sequence[float]) -> np.ndarray:
    """Step sizes ``c_j gamma_0 s_m`` of a method with server ``rule`` (module docstring).

    Raises:
        ValueError: unknown rule; a flat problem (zero curvature or gradient at ``x^0``).
    """
    if rule not in RULE_SCALE:
        raise ValueError(f"rule must be one of {sorted(RULE_SCALE)}, got {rule!r}")
    lam = curvature(problem)
    g0 = float(np.linalg.norm(np.asarray(_full_grad(problem)(jnp.asarray(problem.x0)))))
    if not (lam > 0 and g0 > 0):
        raise ValueError(
            f"problem {problem.name!r} is flat at x0 (curvature {lam:g}, ||grad|| {g0:g}): no "
            "step-size scale"
        )
    scale = RULE_SCALE[rule](g0, problem.dim) / lam
    return scale * np.asarray(multipliers, np.float64)


# ------------------------------------------------------------------------------ the runs


def full_precision_budget(dim: int, n_workers: int, p: float, rounds: float) -> float:
    """The common budget: bits of ``rounds`` expected rounds of ``d`` 32-bit floats per
    answering worker (:func:`expected_uplink`, initial messages included)."""
    return expected_uplink(dim * FLOAT_BITS, n_workers, p, rounds)


class EqualBitsRun(NamedTuple):
    """One method on one problem at every straggler probability and step size of the grid
    (:func:`run_equal_bits`); the step size is chosen afterwards, per budget.

    Run arrays are indexed ``[p, j, r, t]``: straggler probability, grid point, replica
    (the first ``r_tune`` tune, the others evaluate), iterate ``t = 0..steps``.

    Attributes:
        method: the :data:`~ratedist.sim.gcdl.GC_METHODS` name.
        ps: straggler probabilities ``(P,)``.
        gammas: the step-size grid ``(G,)``.
        n_workers, dim: the code's workers and the problem's dimension (budgets).
        rounds: the largest budget the run was sized for, in full-precision rounds.
        r_tune: number of tuning replicas.
        bits: cumulative uplink bits of all workers (container convention).
        f_gap: ``f(x^t) − f*``.
        grad_norm_sq: ``||∇f(x^t)||^2``.
        steps: steps run.
        seconds: wall time of the run (compile included).
    """

    method: str
    ps: np.ndarray
    gammas: np.ndarray
    n_workers: int
    dim: int
    rounds: float
    r_tune: int
    bits: np.ndarray
    f_gap: np.ndarray
    grad_norm_sq: np.ndarray
    steps: int
    seconds: float

    def budget(self, rounds: float | None = None) -> np.ndarray:
        """``(P,)`` bits of ``rounds`` full-precision rounds (default: the run's)."""
        r = self.rounds if rounds is None else float(rounds)
        if not 0 <= r <= self.rounds:
            raise ValueError(f"rounds must be in [0, {self.rounds:g}] (the run's), got {rounds!r}")
        return np.array([full_precision_budget(self.dim, self.n_workers, p, r) for p in self.ps])

    def _at(self, rounds: float | None, metric: str, replicas: slice) -> np.ndarray:
        if metric not in ("f_gap", "grad_norm_sq"):
            raise ValueError(f"metric must be 'f_gap' or 'grad_norm_sq', got {metric!r}")
        vals, b = getattr(self, metric), self.budget(rounds)
        return np.stack(
            [
                value_at_bits(self.bits[i, :, replicas], vals[i, :, replicas], b[i])
                for i in range(self.ps.size)
            ]
        )  # (P, G, R)

    def tune_score(self, rounds: float | None = None) -> np.ndarray:
        """``(P, G)``: mean ``f − f*`` at the budget over the tuning replicas (NaN where one
        of them diverged or did not spend the budget)."""
        v = self._at(rounds, "f_gap", slice(0, self.r_tune))
        ok = np.isfinite(v)
        return np.where(ok.all(axis=-1), np.where(ok, v, 0.0).mean(axis=-1), np.nan)

    def chosen(self, rounds: float | None = None) -> np.ndarray:
        """``(P,)``: index of the best step size at the budget (−1 where none worked)."""
        s = self.tune_score(rounds)
        return np.array([int(np.nanargmin(r)) if np.isfinite(r).any() else -1 for r in s])

    def gamma(self, rounds: float | None = None) -> np.ndarray:
        """``(P,)``: the chosen step size (NaN where none worked)."""
        c = self.chosen(rounds)
        return np.where(c >= 0, self.gammas[np.maximum(c, 0)], np.nan)

    def at_edge(self, rounds: float | None = None) -> np.ndarray:
        """``(P,)``: the chosen step size is the smallest or largest of the grid."""
        c = self.chosen(rounds)
        return (c == 0) | (c == self.gammas.size - 1)

    def at_budget(self, rounds: float | None = None, metric: str = "f_gap") -> np.ndarray:
        """``(P, r_eval)``: the metric at the budget on the evaluation replicas, at the step
        size chosen for that budget."""
        v = self._at(rounds, metric, slice(self.r_tune, None))
        return _pick(v, self.chosen(rounds))

    def curves(
        self, rounds: float | None = None, metric: str = "f_gap"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(bits, values)``, each ``(P, r_eval, steps + 1)``: the evaluation replicas at the
        step size chosen for the budget."""
        c = self.chosen(rounds)
        ev = slice(self.r_tune, None)
        return _pick(self.bits[:, :, ev], c), _pick(getattr(self, metric)[:, :, ev], c)


def _pick(a: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``a[p, chosen[p]]`` per ``p`` (NaN where ``chosen`` is −1)."""
    out = a[np.arange(chosen.size), np.maximum(chosen, 0)]
    bad = (chosen < 0).reshape((-1,) + (1,) * (out.ndim - 1))
    return np.where(bad, np.nan, out)


def run_equal_bits(
    method: str,
    problem: Problem,
    code: GradientCode,
    *,
    ps: Sequence[float],
    rounds: float,
    multipliers: Sequence[float],
    r_tune: int,
    r_eval: int,
    key: Any,
) -> EqualBitsRun:
    """Run ``method`` on ``problem`` (coded with ``code`` when the method is coded) at every
    straggler probability in ``ps`` and every step size of :func:`gamma_grid`, with
    ``r_tune + r_eval`` replicas, as one vmapped program, long enough to spend the budget of
    ``rounds`` full-precision rounds (:func:`steps_for_budget`).

    Args:
        method: a :data:`~ratedist.sim.gcdl.GC_METHODS` name.
        problem: the base problem (its workers are the code's partitions).
        code: the gradient code; its ``n`` workers are the uncoded methods' workers too, so
            the code must have ``n`` partitions (FRC, CRC).
        ps: Bernoulli straggler probabilities in ``[0, 1)``.
        rounds: the largest budget of interest, in expected full-precision rounds.
        multipliers: the grid ``c_j`` (:func:`gamma_grid`).
        r_tune, r_eval: tuning and evaluation replicas (replicas ``0..r_tune − 1`` tune).
        key: JAX key; replica ``r`` uses ``fold_in(key, r)`` whatever the method.

    Raises:
        ValueError: bad sizes; a code whose partitions differ from its workers or from the
            problem's; a method without a static bit count.
    """
    r_tune = check_int("r_tune", r_tune, min_value=1)
    r_eval = check_int("r_eval", r_eval, min_value=2)
    ps = np.asarray(ps, np.float64).ravel()
    n = code.n_workers
    if not problem.n_workers == code.n_partitions == n:
        raise ValueError(
            f"code must have as many partitions as workers and as the problem has workers "
            f"({problem.n_workers}), got {code.name!r}"
        )
    setup = gc_setup(method, problem, code, bernoulli_stragglers(float(ps[0])))
    alg = setup.round.algorithm
    if alg.bits_per_step is None:
        raise ValueError(f"method {method!r} has no static bit count (bits_per_step)")
    msg_bits = float(alg.bits_per_step(problem.dim, n, dict(alg.hyper)))
    steps = max(
        steps_for_budget(msg_bits, n, p, full_precision_budget(problem.dim, n, p, rounds))
        for p in map(float, ps)
    )
    grid = gamma_grid(setup.method.rule, problem, multipliers)
    G, P = grid.size, ps.size
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # the largest step sizes of the grid may diverge: those runs are NaN, never chosen
        warnings.filterwarnings("ignore", message=".*diverged.*", category=RuntimeWarning)
        tr = run(
            setup.round,
            setup.problem,
            steps=steps,
            key=key,
            gamma=np.tile(grid, P),
            hyper={"straggle_p": np.repeat(ps, G)},
            replicas=r_tune + r_eval,
            check_3pc=False,
        )
    shape = (P, G, r_tune + r_eval, -1)
    return EqualBitsRun(
        method=method,
        ps=ps,
        gammas=grid,
        n_workers=n,
        dim=problem.dim,
        rounds=float(rounds),
        r_tune=r_tune,
        bits=tr.uplink_total().reshape(shape),
        f_gap=np.asarray(tr.f_gap).reshape(shape),
        grad_norm_sq=np.asarray(tr.grad_norm_sq).reshape(shape),
        steps=steps,
        seconds=time.perf_counter() - t0,
    )


class EqualBitsConfig(NamedTuple):
    """Sizes of the comparison shared by the ``gc_equal_bits`` check and the figure.

    Attributes:
        n_workers: workers (= data partitions) of the fractional repetition code.
        s: stragglers the code tolerates (FRC groups of ``s + 1`` workers).
        ps: Bernoulli straggler probabilities.
        rounds: the common budget, in expected full-precision rounds.
        multipliers: the step-size grid ``c_j`` (:func:`gamma_grid`).
        r_tune, r_eval: tuning and evaluation replicas.
    """

    n_workers: int = 8
    s: int = 1
    ps: tuple[float, ...] = (0.1, 0.3)
    rounds: float = 50.0
    multipliers: tuple[float, ...] = tuple(3.0**k for k in range(-6, 3))
    r_tune: int = 4
    r_eval: int = 8


def compare_methods(
    methods: Sequence[str],
    problems: Sequence[str],
    key: Any,
    config: EqualBitsConfig = EqualBitsConfig(),
) -> dict[str, dict[str, EqualBitsRun]]:
    """:func:`run_equal_bits` of every method on every problem of
    :data:`EQUAL_BITS_PROBLEMS` named in ``problems``, coded with FRC(``n``, ``s``).

    Every method of a problem gets the same key (common random numbers: the same straggler
    draws per replica and step index); problem ``i`` uses ``fold_in(key, i)``.

    Returns:
        ``{problem: {method: run}}`` in the given orders.

    Raises:
        ValueError: an unknown method or problem name.
    """
    code = make_code("frc", n=config.n_workers, s=config.s)
    out: dict[str, dict[str, EqualBitsRun]] = {}
    for i, name in enumerate(problems):
        problem = EQUAL_BITS_PROBLEMS.get(name)(config.n_workers)
        k = jax.random.fold_in(key, i)
        out[name] = {
            m: run_equal_bits(
                m,
                problem,
                code,
                ps=config.ps,
                rounds=config.rounds,
                multipliers=config.multipliers,
                r_tune=config.r_tune,
                r_eval=config.r_eval,
                key=k,
            )
            for m in methods
        }
    return out
