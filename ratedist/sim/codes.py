"""Gradient codes: redundant assignment of k data partitions to n workers, and their decoders.

A code is an encoding matrix ``B`` (``n`` workers x ``k`` partitions): worker ``i`` holds the
partitions in the support of row ``i`` and sends ``y_i = sum_j B_ij g_j``, with ``g_j`` the
gradient of partition ``j``. The server receives the ``y_i`` of the workers that answer (the
participation ``mask``) and forms ``g = sum_i a_i(mask) y_i``. The decoding weights satisfy

    a(mask)^T B = 1^T,   a_i(mask) = 0 for the stragglers,                      (exact)

for every pattern of at most ``s`` stragglers (FRC, CRC: then ``g = sum_j g_j`` exactly), or
are an unbiased rescaling (random replication: ``E[a(mask)^T B] = 1^T`` over the straggler
law). The partition gradients are the summands of the problem's gradient: with the base
problem's ``f = (1/k) sum_j f_j``, ``g_j = grad f_j / k``, so ``sum_j g_j = grad f`` (see
:func:`ratedist.sim.coded.coded`).

Codes (registry :data:`CODES`):

========================  ===========================================  =======================
code                      ``B``                                        decoder
========================  ===========================================  =======================
``uncoded``               ``I_n`` (``k = n``)                          ``n / #answering``
``frc``                   ``n/(s+1)`` groups of ``s+1`` identical      one answering worker
                          workers, each holding its group's ``s+1``    per group, weight 1
                          partitions (``k = n``)
``crc``                   cyclic support ``{i, ..., i+s} mod n``,      ``a^T B_F = 1^T`` solved
                          real coefficients from a random ``H``        per pattern (table or
                          (``k = n``)                                  least squares in jit)
``random_replication``    each partition to ``d`` distinct random      ``1/(d (1 − p))`` or
                          workers (0/1 entries)                        ``n / (d #answering)``
========================  ===========================================  =======================

Every code gives ``weights(mask, worker) -> a_i`` (JAX) for the simulator's
:func:`~ratedist.sim.stages.decode` aggregation (:meth:`GradientCode.aggregation`), and
:func:`ratedist.sim.coded.coded` builds the problem with ``n`` coded workers and the matching
worker oracle from a problem whose ``k`` workers are the partitions.

References:
    Tandon, Lei, Dimakis, Karampatziakis, "Gradient Coding: Avoiding Stragglers in
    Distributed Learning", ICML 2017, arXiv 1612.03301 (FRC: Sec. 3; the cyclic code: Alg. 2;
    every partition must be on ``>= s + 1`` workers).
    Bitar, Wootters, El Rouayheb, "Stochastic Gradient Coding for Straggler Mitigation in
    Distributed Learning", arXiv 1905.05383 (random replication with unbiased rescaling).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._registry import Registry
from ratedist._validation import check_choice, check_in_interval, check_int
from ratedist.sim.stages import (
    Aggregation,
    decode,
)

#: Registry of gradient-code constructors.
CODES: Registry[Callable[..., GradientCode]] = Registry("gradient code")

#: ``"auto"`` decodes the cyclic code with a table of ``C(n, s)`` rows when it holds at most
#: this many entries (``C(n, s) * n``; 2^22 float64 = 32 MiB), else by least squares in jit.
TABLE_MAX_ENTRIES = 1 << 22

DECODERS = ("auto", "table", "lstsq")

#: Server rules on a code's decoded sum ``sum_i a_i(mask) y_i`` (:meth:`GradientCode.aggregation`):
#: ``rule -> (finish, label)``, with ``finish`` applied to the sum (None: the sum itself) and
#: ``label`` formatted with the code's name.
DECODE_RULES: Mapping[str, tuple[Callable[[Any], Any] | None, str]] = {
    "decode": (None, "{code}"),
    "majority": (jnp.sign, "majority[{code}]"),
}


class GradientCode(NamedTuple):
    """An encoding matrix and its decoder.

    Attributes:
        name: label (``"crc[n=8,s=2]"``).
        B: encoding matrix, numpy float64 ``(n_workers, n_partitions)``.
        s: number of stragglers decoded exactly (``a(mask)^T B = 1^T`` for every mask with
            at most ``s`` stragglers); 0 for codes that only promise unbiasedness.
        vector: ``mask -> a(mask)`` (JAX, bool ``(n,)`` -> ``(n,)``), zero on stragglers.
        unbiased_under: the straggler law under which ``E a(mask)^T B = 1^T`` when more than
            ``s`` workers may straggle (``"bernoulli(p)"``, ``"exactly"``), or None.
        config: JSON-able description.
    """

    name: str
    B: np.ndarray
    s: int
    vector: Callable[[Any], Any]
    unbiased_under: str | None
    config: Mapping[str, Any]

    @property
    def n_workers(self) -> int:
        return int(self.B.shape[0])

    @property
    def n_partitions(self) -> int:
        return int(self.B.shape[1])

    def weights(self, mask: Any, worker: Any) -> Any:
        """``a_worker(mask)``: the decoding weight of one worker (for ``decode(...)``)."""
        return self.vector(mask)[worker]

    def aggregation(self, rule: str = "decode") -> Aggregation:
        """The simulator's aggregation stage on the decoded sum ``sum_i a_i(mask) y_i``.

        Args:
            rule: ``"decode"`` (``g`` = the decoded sum) or ``"majority"`` (``g`` = its sign,
                coordinate-wise: signSGD with a majority vote over the decoded gradient);
                see :data:`DECODE_RULES`.

        Raises:
            ValueError: an unknown rule (the message lists the known ones).
        """
        rule = check_choice("rule", rule, tuple(DECODE_RULES))
        finish, label = DECODE_RULES[rule]
        agg = decode(self.weights, name=label.format(code=self.name))
        return agg._replace(finish=finish, config={**agg.config, "rule": rule})


def _check_n_s(n: Any, s: Any) -> tuple[int, int]:
    n = check_int("n", n, min_value=1)
    s = check_int("s", s, min_value=0)
    if s >= n:
        raise ValueError(f"s (stragglers) must be in [0, n - 1] = [0, {n - 1}], got s={s}")
    return n, s


def _count_rescale(n: int, d: float) -> Callable[[Any], Any]:
    """``a_i = mask_i n / (d #answering)`` (0 when nobody answers)."""

    def vector(mask):
        m = jnp.sum(mask)
        return jnp.where(mask, n / (d * jnp.maximum(m, 1)), 0.0)

    return vector


# ------------------------------------------------------------------------------ uncoded
@CODES.register("uncoded")
def uncoded(n: int) -> GradientCode:
    """No redundancy: ``B = I_n``; the server averages the answering workers,
    ``a_i = n / #answering`` (the mean of the answering partitions' ``grad f_i``).

    Exact with everyone answering; unbiased under exactly-``s`` stragglers (a uniformly random
    answering set of fixed size) and under Bernoulli stragglers conditional on at least one
    answer (see :func:`random_replication`, ``d = 1``).

    Raises:
        ValueError: ``n`` < 1.
    """
    n = check_int("n", n, min_value=1)
    return GradientCode(
        f"uncoded[n={n}]",
        np.eye(n),
        0,
        _count_rescale(n, 1.0),
        "exactly",
        {"code": "uncoded", "n": n},
    )


# ---------------------------------------------------------------------- fractional repetition
def frc_matrix(n: int, s: int) -> np.ndarray:
    """The fractional repetition code's ``B`` (Tandon et al. Sec. 3): ``n/(s+1)`` groups of
    ``s + 1`` consecutive workers; every worker of group ``q`` holds partitions
    ``q(s+1), ..., q(s+1) + s`` with coefficient 1."""
    n, s = _check_frc(n, s)
    group = np.arange(n) // (s + 1)
    return (group[:, None] == group[None, :]).astype(np.float64)


def _check_frc(n: Any, s: Any) -> tuple[int, int]:
    n, s = _check_n_s(n, s)
    if n % (s + 1):
        raise ValueError(
            f"n must be divisible by s + 1 = {s + 1} for the fractional repetition code, got "
            f"n={n} (allowed: multiples of s + 1)"
        )
    return n, s


@CODES.register("frc")
def frc(n: int, s: int) -> GradientCode:
    """Fractional repetition code tolerating ``s`` stragglers (Tandon et al., Sec. 3).

    Decoder: in each group of ``s + 1`` identical workers the first answering one gets weight 1,
    the others 0. With at most ``s`` stragglers every group has an answering worker, so
    ``a^T B = 1^T`` (exact, and the weights are 0/1: no amplification of errors). A group
    whose ``s + 1`` workers all straggle contributes nothing (its partitions are missing).

    Raises:
        ValueError: ``s`` not in ``[0, n − 1]`` or ``n`` not divisible by ``s + 1``.
    """
    n, s = _check_frc(n, s)
    idx = np.arange(n)
    group = idx // (s + 1)
    # earlier[i, l]: worker l is in i's group and comes before i
    earlier = jnp.asarray((group[:, None] == group[None, :]) & (idx[None, :] < idx[:, None]))

    def vector(mask):
        m = mask.astype(jnp.int32)
        before = earlier.astype(jnp.int32) @ m
        return jnp.where(mask & (before == 0), 1.0, 0.0)

    return GradientCode(
        f"frc[n={n},s={s}]", frc_matrix(n, s), s, vector, None, {"code": "frc", "n": n, "s": s}
    )


# ---------------------------------------------------------------------- cyclic repetition
def crc_matrix(n: int, s: int, seed: int = 0) -> np.ndarray:
    """The cyclic repetition code's ``B`` (Tandon et al., Alg. 2).

    ``H`` is an ``s x n`` standard Gaussian matrix with its last column replaced by minus the
    sum of the others, so ``H 1 = 0``. Row ``i`` of ``B`` has support ``{i, ..., i + s} mod n``,
    coefficient 1 on partition ``i`` and ``-H_S^{-1} H_i`` on the other ``s`` (``H_S`` the
    ``s x s`` block of the support's other columns): ``B H^T = 0``. Generically ``H`` has rank
    ``s`` and any ``n − s`` rows of ``B`` are independent, hence span ``null(H)`` (dimension
    ``n − s``), which contains ``1``: every pattern of ``s`` stragglers is decodable.

    Args:
        n: workers (= partitions).
        s: stragglers tolerated.
        seed: seed of the numpy generator drawing ``H``.

    Raises:
        ValueError: ``s`` not in ``[0, n − 1]``.
    """
    n, s = _check_n_s(n, s)
    seed = check_int("seed", seed, min_value=0)
    if s == 0:
        return np.eye(n)
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((s, n))
    H[:, -1] = -H[:, :-1].sum(axis=1)
    B = np.zeros((n, n))
    for i in range(n):  # construction, once, on the host
        support = (i + np.arange(s + 1)) % n
        B[i, support[0]] = 1.0
        B[i, support[1:]] = -np.linalg.solve(H[:, support[1:]], H[:, support[0]])
    return B


def decoding_vector(B: np.ndarray, mask: Any) -> np.ndarray:
    """Min-norm least-squares ``a`` with ``a^T B_mask = 1^T`` and ``a = 0`` on stragglers
    (numpy float64 reference; ``B_mask`` = the rows of the answering workers)."""
    mask = np.asarray(mask, dtype=bool)
    a = np.zeros(B.shape[0])
    sol, *_ = np.linalg.lstsq(B[mask].T, np.ones(B.shape[1]), rcond=None)
    a[mask] = sol
    return a


def _colex_rank_table(n: int, s: int) -> np.ndarray:
    """``C(c, m)`` for ``c < n``, ``m = 1..s`` (int64 ``(n, s)``): the colex rank of a sorted
    ``s``-subset ``c_1 < ... < c_s`` is ``sum_m C(c_m, m)``."""
    return np.array([[math.comb(c, m) for m in range(1, s + 1)] for c in range(n)], np.int64)


def _crc_table(B: np.ndarray, s: int) -> np.ndarray:
    """Decoding vectors of every pattern of exactly ``s`` stragglers, row = colex rank."""
    n = B.shape[0]
    ranks = _colex_rank_table(n, s)
    table = np.zeros((math.comb(n, s), n))
    for strag in itertools.combinations(range(n), s):  # host precomputation, once
        r = int(sum(ranks[c, m] for m, c in enumerate(strag)))
        mask = np.ones(n, bool)
        mask[list(strag)] = False
        table[r] = decoding_vector(B, mask)
    return table


def _crc_table_vector(B: np.ndarray, s: int) -> Callable[[Any], Any]:
    """Table decoder: complete the stragglers to ``s`` with the first answering workers (their
    weight is then 0: still exact), look the pattern up by its colex rank."""
    n = B.shape[0]
    table = jnp.asarray(_crc_table(B, s))
    ranks = jnp.asarray(_colex_rank_table(n, s))
    idx = jnp.arange(n)

    def vector(mask):
        # stragglers first (by index), then answering workers (by index)
        order = jnp.argsort(jnp.where(mask, n + idx, idx))
        chosen = jnp.sort(order[:s])
        r = jnp.sum(ranks[chosen, jnp.arange(s)])
        return jnp.where(mask, table[r], 0.0)

    return vector


def _lstsq_vector(B: np.ndarray) -> Callable[[Any], Any]:
    """Least-squares decoder in jit: the min-norm solution of ``B_mask^T a = 1`` with the
    straggler rows zeroed (its straggler entries are 0 up to rounding; forced to 0)."""
    Bj = jnp.asarray(B)
    ones = jnp.ones((B.shape[1],))

    def vector(mask):
        Bm = jnp.where(mask[:, None], Bj, 0.0)
        a = jnp.linalg.lstsq(Bm.T, ones)[0]
        return jnp.where(mask, a, 0.0)

    return vector


def _table_fits(n: int, s: int) -> bool:
    return math.comb(n, s) * n <= TABLE_MAX_ENTRIES


@CODES.register("crc")
def crc(n: int, s: int, seed: int = 0, decoder: str = "auto") -> GradientCode:
    """Cyclic repetition code with real coefficients (Tandon et al., Alg. 2) tolerating ``s``
    stragglers, with exact decoding weights ``a(mask)^T B = 1^T`` per straggler pattern.

    Decoders (same weights up to rounding):

    * ``"table"``: every pattern of exactly ``s`` stragglers solved once on the host (numpy
      float64 least squares), ``C(n, s)`` rows; a pattern with fewer stragglers is completed
      with the first answering workers (weight 0). Per step: a sort and a gather.
    * ``"lstsq"``: ``jnp.linalg.lstsq`` of the masked ``n x n`` system inside jit (SVD, in the
      simulation dtype: float32 without x64 loses ~4 more digits than the table).
    * ``"auto"``: the table when ``C(n, s) n <= TABLE_MAX_ENTRIES``, else least squares.

    With more than ``s`` stragglers the table decoder uses the pattern of the first ``s`` and
    the lstsq decoder the least-squares fit: neither is exact then.

    Args:
        n: workers (= partitions).
        s: stragglers tolerated, ``0 <= s < n``.
        seed: seed of the random ``H`` (:func:`crc_matrix`).
        decoder: ``"auto"``, ``"table"`` or ``"lstsq"``.

    Raises:
        ValueError: ``s`` not in ``[0, n − 1]``, an unknown decoder.
    """
    n, s = _check_n_s(n, s)
    decoder = check_choice("decoder", decoder, DECODERS)
    B = crc_matrix(n, s, seed)
    use_table = decoder == "table" or (decoder == "auto" and _table_fits(n, s))
    vector = _crc_table_vector(B, s) if use_table else _lstsq_vector(B)
    return GradientCode(
        f"crc[n={n},s={s}]",
        B,
        s,
        vector,
        None,
        {"code": "crc", "n": n, "s": s, "seed": seed, "decoder": decoder},
    )


class Conditioning(NamedTuple):
    """Conditioning of a code's decoding systems over straggler patterns of size ``s``.

    Attributes:
        patterns: number of patterns examined (all ``C(n, s)``, or a random sample).
        cond_max, cond_median: 2-norm condition number ``sigma_max/sigma_min`` of the
            ``(n − s) x k`` matrix ``B_F`` of the answering rows.
        weight_norm_max: ``max ||a(mask)||_2`` (how much decoding amplifies independent errors
            on the ``y_i``, e.g. quantization noise: ``E||sum a_i e_i||^2 = sum a_i^2 E||e_i||^2``).
        residual_max: ``max ||a^T B_F − 1^T||_inf`` of the float64 solutions.
    """

    patterns: int
    cond_max: float
    cond_median: float
    weight_norm_max: float
    residual_max: float


def decoding_conditioning(
    code: GradientCode, *, max_patterns: int = 2000, seed: int = 0
) -> Conditioning:
    """Condition numbers, weight norms and residuals of ``code``'s decoding systems over the
    patterns of exactly ``code.s`` stragglers (all of them, or ``max_patterns`` drawn
    uniformly when there are more).

    Raises:
        ValueError: ``max_patterns`` < 1.
    """
    max_patterns = check_int("max_patterns", max_patterns, min_value=1)
    n, s, B = code.n_workers, code.s, code.B
    if math.comb(n, s) <= max_patterns:
        pats = [list(c) for c in itertools.combinations(range(n), s)]
    else:
        rng = np.random.default_rng(seed)
        pats = [list(rng.choice(n, s, replace=False)) for _ in range(max_patterns)]
    conds, norms, res = [], [], []
    for strag in pats:
        mask = np.ones(n, bool)
        mask[strag] = False
        sv = np.linalg.svd(B[mask], compute_uv=False)
        conds.append(sv[0] / sv[-1])
        a = decoding_vector(B, mask)
        norms.append(np.linalg.norm(a))
        res.append(np.max(np.abs(a @ B - 1.0)))
    return Conditioning(
        len(pats),
        float(np.max(conds)),
        float(np.median(conds)),
        float(np.max(norms)),
        float(np.max(res)),
    )


def exact_straggler_masks(n: int, r: int) -> np.ndarray:
    """Every participation mask of ``n`` workers with exactly ``r`` stragglers, bool
    ``(C(n, r), n)`` (True = answers), in ``itertools.combinations`` order (host, no checks)."""
    masks = np.ones((math.comb(n, r), n), bool)
    for row, strag in enumerate(itertools.combinations(range(n), r)):
        masks[row, list(strag)] = False
    return masks


def straggler_masks(n: int, s: int) -> np.ndarray:
    """Every participation mask of ``n`` workers with at most ``s`` stragglers, bool
    ``(sum_{r<=s} C(n, r), n)`` (True = answers), fewest stragglers first."""
    n = check_int("n", n, min_value=1)
    s = check_int("s", s, min_value=0, max_value=n)
    return np.concatenate([exact_straggler_masks(n, r) for r in range(s + 1)])


def decoding_vectors(code: GradientCode, masks: Any) -> np.ndarray:
    """``a(mask)`` for a batch of masks (jit + vmap of ``code.vector``), numpy ``(M, n)``."""
    return np.asarray(jax.jit(jax.vmap(code.vector))(jnp.asarray(masks, bool)))


# ---------------------------------------------------------------------- random replication
RESCALINGS = ("probability", "count")


def random_replication_matrix(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """0/1 ``B`` (``n x k``): each partition to ``d`` distinct workers drawn uniformly
    (column sums ``d``)."""
    rng = np.random.default_rng(seed)
    B = np.zeros((n, k))
    for j in range(k):  # construction, once, on the host
        B[rng.choice(n, d, replace=False), j] = 1.0
    return B


@CODES.register("random_replication")
def random_replication(
    n: int,
    d: int,
    p: float = 0.0,
    k: int | None = None,
    rescale: str = "probability",
    seed: int = 0,
) -> GradientCode:
    """Random ``d``-fold replication with unbiased rescaling (stochastic gradient coding,
    Bitar et al., arXiv 1905.05383).

    Each of the ``k`` partitions goes to ``d`` distinct workers drawn uniformly, so every
    column of ``B`` sums to ``d`` and ``sum_i y_i = d sum_j g_j``. Decoders:

    * ``rescale="probability"``: ``a_i = 1/(d (1 − p))`` for every answering worker. Under
      i.i.d. Bernoulli(``p``) stragglers ``E a_i = 1/d`` for every ``i``, so
      ``E g = (1/d) sum_i y_i = sum_j g_j``: exactly unbiased (for every ``B`` with column
      sums ``d``). Under exactly-``s`` stragglers it is unbiased with ``p = s/n``.
    * ``rescale="count"``: ``a_i = n / (d m)`` with ``m`` the number of answering workers.
      Given ``m >= 1`` the answering set is uniform among the ``m``-subsets (Bernoulli and
      exactly-``s`` alike), so ``E[g | m] = (n/(d m)) (m/n) sum_i y_i = sum_j g_j``:
      unbiased under exactly-``s`` stragglers; under Bernoulli(``p``) unbiased conditional on
      ``m >= 1`` (``E g = (1 − p^n) sum_j g_j`` overall). It needs no knowledge of ``p``
      and is exact when everyone answers.

    Args:
        n: workers.
        d: replication factor, ``1 <= d <= n``.
        p: the straggler probability the ``"probability"`` rescaling assumes, in ``[0, 1)``.
        k: partitions (default ``n``).
        rescale: ``"probability"`` or ``"count"``.
        seed: seed of the assignment.

    Raises:
        ValueError: ``d`` not in ``[1, n]``, ``p`` not in ``[0, 1)``, ``k`` < 1, an unknown
            rescaling.
    """
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=1)
    if d > n:
        raise ValueError(
            f"d (replication) must be in [1, n] = [1, {n}] (each partition goes to d distinct "
            f"workers), got d={d}"
        )
    p = check_in_interval("p", p, 0.0, 1.0, closed=(True, False))
    k = n if k is None else check_int("k", k, min_value=1)
    rescale = check_choice("rescale", rescale, RESCALINGS)
    seed = check_int("seed", seed, min_value=0)
    B = random_replication_matrix(n, d, k, seed)
    if rescale == "count":
        vector, law = _count_rescale(n, float(d)), "exactly"
    else:
        w = 1.0 / (d * (1.0 - p))

        def vector(mask):
            return jnp.where(mask, w, 0.0)

        law = f"bernoulli({p:g})"
    return GradientCode(
        f"random_replication[n={n},d={d},{rescale}]",
        B,
        0,
        vector,
        law,
        {
            "code": "random_replication",
            "n": n,
            "d": d,
            "p": p,
            "k": k,
            "rescale": rescale,
            "seed": seed,
        },
    )


def make_code(name: str, **params: Any) -> GradientCode:
    """Build a registered code by name (``CODES.names()``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    return CODES.get(name)(**params)
