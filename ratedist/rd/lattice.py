"""Operational rate–distortion of entropy-coded lattice quantizers on Gaussian gradients.

High-rate theory (Gersho 1979; Conway & Sloane SPLAG ch. 2 §3; Zamir & Feder 1996): a lattice
with normalized second moment ``G`` scaled to cell volume ``V`` and followed by an ideal
entropy coder has, per coordinate of an i.i.d. source with differential entropy ``h``,

    D = G V^(2/n),            R = h - (1/n) log2 V,

so that against the Shannon lower bound ``D_SLB(R) = 2^(2(h-R)) / (2 pi e)`` (exact ``D(R)``
for a Gaussian source) the gap is ``10 log10(2 pi e G)`` dB, or ``(1/2) log2(2 pi e G)`` bits,
independent of the rate. Z (``G = 1/12``) gives the classic 1.53 dB of ECSQ; A2, D4 and E8
recover their granular gains 0.17, 0.37 and 0.65 dB of it.

Conventions match :func:`ratedist.compressors.lattice.lattice`: ``step`` is the cell edge
``V^(1/n)`` in units of the source standard deviation, so ``V^(1/n) = sigma * step``; the
distortion is normalized per coordinate, ``D = E||g - g_hat||^2 / (d sigma^2)``; rates are bits
per coordinate.

Assumptions of the closed form: high rate (``step`` small against ``sigma``: the density is
nearly constant on a cell; for a Gaussian the corrections are ``O(exp(-2 pi^2 / step^2))``
in D), ideal entropy coding of the lattice points, no side information. With subtractive
dither the distortion ``G step^2`` holds exactly at every step (the rate does not).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_int, check_positive
from ratedist.compressors.base import FLOAT_BITS
from ratedist.compressors.lattice import compressor_lattice, lattice_symbols
from ratedist.compressors.lattice import lattice as make_lattice
from ratedist.infotheory.entropy_estimate import pooled_entropy_bits
from ratedist.infotheory.shannon import gap_to_shannon
from ratedist.quantizers.lattice import Lattice
from ratedist.rd.closed_form_base import ClosedForm, _check_d, register_closed_form

#: Differential entropy of a standard Gaussian, bits: (1/2) log2(2 pi e).
GAUSSIAN_ENTROPY_BITS = 0.5 * math.log2(2 * math.pi * math.e)


def lattice_gap_db(nsm: float) -> float:
    """High-rate gap ``10 log10(2 pi e G)`` dB of an entropy-coded lattice quantizer.

    Args:
        nsm: normalized second moment ``G`` (> 0; ``1/(2 pi e)`` is the sphere bound).

    Returns:
        The gap in dB between its ``D(R)`` and the Shannon (lower) bound at the same rate.

    References:
        Conway & Sloane, SPLAG ch. 2 §3 (G and the granular gain); Zamir & Feder, "On lattice
        quantization noise", IEEE Trans. IT 42(4), 1996.
    """
    nsm = check_positive("nsm", nsm)
    return 10.0 * math.log10(2 * math.pi * math.e * nsm)


def lattice_gap_bits(nsm: float) -> float:
    """The same gap as excess rate: ``(1/2) log2(2 pi e G)`` bits per coordinate."""
    nsm = check_positive("nsm", nsm)
    return 0.5 * math.log2(2 * math.pi * math.e * nsm)


def _nsm_of(lattice: Any, nsm: float | None) -> float:
    if nsm is not None:
        return check_positive("nsm", nsm)
    lat = lattice if isinstance(lattice, Lattice) else compressor_lattice(lattice)
    if lat.nsm_reference is None:
        raise ValueError(f"lattice {lat.name!r} has no tabulated G; pass nsm= (e.g. Monte Carlo)")
    return lat.nsm_reference


def lattice_high_rate_point(
    lattice: Any, step: float, sigma: float = 1.0, *, nsm: float | None = None
) -> tuple[float, float]:
    """High-rate ``(rate_bits, mse)`` of an entropy-coded lattice quantizer, Gaussian source.

    ``R = h(N(0, sigma^2)) - log2(sigma step) = (1/2) log2(2 pi e) - log2(step)`` and
    ``mse = G step^2 sigma^2`` per coordinate (so ``mse / sigma^2`` is the normalized D).

    Args:
        lattice: ``"zn"``, ``"a2"``, ``"d4"``, ``"e8"`` or a
            :class:`~ratedist.quantizers.lattice.Lattice` with a tabulated G.
        step: cell edge ``V^(1/n)`` in units of sigma (> 0).
        sigma: source standard deviation (> 0).
        nsm: override ``G`` (e.g. a Monte Carlo value).

    Returns:
        ``(rate_bits, mse)`` per coordinate. The rate may be negative for large ``step``,
        where the high-rate approximation is meaningless.

    Raises:
        ValueError: unknown lattice, ``step``/``sigma``/``nsm`` not > 0.
    """
    step = check_positive("step", step)
    sigma = check_positive("sigma", sigma)
    g = _nsm_of(lattice, nsm)
    return GAUSSIAN_ENTROPY_BITS - math.log2(step), g * step**2 * sigma**2


@register_closed_form("lattice")
def lattice_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    lattice: str = "e8",
    step: float = 0.5,
    dither: bool = False,
    float_bits: int = FLOAT_BITS,
) -> ClosedForm:
    """Entropy-coded lattice quantizer, high-rate theory (module docstring).

    ``D = G step^2`` (exact at every step with subtractive dither, high-rate otherwise);
    entropy rate ``h - log2(step) + float_bits/d`` (high rate, ideal coder, the scale charged);
    the container rate (bit-packed label ranges) has no closed form (``rate_bits=None``).
    """
    d = _check_d(d)
    rate, mse = lattice_high_rate_point(lattice, step, 1.0)
    return ClosedForm(None, rate + float_bits / d, float(mse), False)


def step_for_rate(rate_bits: float) -> float:
    """``step`` whose high-rate entropy is ``rate_bits`` per coordinate (Gaussian source).

    Inverse of the rate in :func:`lattice_high_rate_point`: ``2^((1/2) log2(2 pi e) - R)``.
    """
    rate = check_positive("rate_bits", rate_bits)
    return 2.0 ** (GAUSSIAN_ENTROPY_BITS - rate)


class LatticeRDPoint(NamedTuple):
    """Monte Carlo (R, D) of the lattice compressor on i.i.d. Gaussian vectors.

    Attributes:
        rate_bits: entropy-layer bits per coordinate, side information ``float_bits / d``
            included: the labels of all trials pooled, Miller–Madow
            (:func:`ratedist.infotheory.entropy_estimate.pooled_entropy_bits`).
        rate_se: its delete-one-trial jackknife standard error.
        container_rate_bits: mean container bits per coordinate (fixed-length code).
        distortion: mean of ``||g - g_hat||^2 / (d sigma^2)``.
        distortion_se: its standard error over trials.
        gap_db: ``10 log10(D / D_shannon(R))`` at the entropy-layer rate.
        gap_bits: ``R - R_shannon(D)``.
        rate_bias_bound: bound on the bias of ``rate_bits`` as an estimate of the label-law
            entropy rate: ``ceil(d/n) sum_j (K_j - 1) / (2 N ln 2) / d``.
        rate_per_call_bits: mean of the per-call ``info.entropy_bits / d`` (plug-in entropy of
            one call's labels; biased low, kept for comparison).
    """

    rate_bits: float
    rate_se: float
    container_rate_bits: float
    distortion: float
    distortion_se: float
    gap_db: float
    gap_bits: float
    rate_bias_bound: float = 0.0
    rate_per_call_bits: float = 0.0


def lattice_rd_monte_carlo(
    lattice: str = "e8",
    step: float = 0.5,
    *,
    key: Any,
    d: int = 4096,
    n_trials: int = 64,
    dither: bool = False,
    sigma: float = 1.0,
    float_bits: int = 32,
) -> LatticeRDPoint:
    """(R, D) of :func:`ratedist.compressors.lattice.lattice` by Monte Carlo.

    Draws ``n_trials`` vectors ``g ~ N(0, sigma^2 I_d)`` (float64 when x64 is enabled),
    compresses each once (``jit(vmap(update))``, dither keys folded from ``key``), averages
    the per-trial normalized distortion and estimates the entropy-layer rate from the labels
    of all trials pooled (Miller–Madow, bias bound and jackknife SE in the result): the mean
    of the per-call empirical entropies would be biased low by about ``(K - 1)/(2 m ln 2)``
    bits per label column with only ``m = ceil(d/n)`` blocks per call.

    Args:
        lattice: ``"zn"``, ``"a2"``, ``"d4"`` or ``"e8"``.
        step: cell edge in units of ``sigma_hat`` (> 0).
        key: JAX PRNG key.
        d: vector length (>= 1).
        n_trials: independent vectors (>= 2).
        dither: subtractive dither.
        sigma: source standard deviation (> 0).
        float_bits: width of the scale and header fields.

    Returns:
        A :class:`LatticeRDPoint`.

    Raises:
        ValueError: bad ``lattice``, ``step``, ``d``, ``n_trials``, ``sigma``, ``float_bits``.
    """
    comp = make_lattice(lattice, step=step, dither=dither, float_bits=float_bits)
    d = check_int("d", d, min_value=1)
    n_trials = check_int("n_trials", n_trials, min_value=2)
    sigma = check_positive("sigma", sigma)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    k_data, k_dither = jax.random.split(key)
    g = sigma * jax.random.normal(k_data, (n_trials, d), dtype)
    keys = jax.random.split(k_dither, n_trials)

    def one(x: jax.Array, k: jax.Array) -> tuple[jax.Array, ...]:
        x_hat, _, info = comp.update(x, comp.init(x), key=k)
        dist = jnp.sum((x - x_hat) ** 2) / (d * sigma**2)
        labels = lattice_symbols(x, key=k, **comp.facts.params)
        return dist, info.entropy_bits / d, info.container_bits / d, labels

    dist, per_call, cont, labels = jax.jit(jax.vmap(one))(g, keys)
    dist, per_call, cont = (np.asarray(a, np.float64) for a in (dist, per_call, cont))
    labels = np.asarray(labels)
    est = pooled_entropy_bits(labels)
    rows = labels.shape[1]
    r, dd = (rows * est.bits + float_bits) / d, float(dist.mean())
    gap_db, gap_bits = gap_to_shannon(r, dd, variance=1.0)
    return LatticeRDPoint(
        rate_bits=r,
        rate_se=rows * est.se / d,
        container_rate_bits=float(cont.mean()),
        distortion=dd,
        distortion_se=float(dist.std(ddof=1) / math.sqrt(n_trials)),
        gap_db=float(gap_db),
        gap_bits=float(gap_bits),
        rate_bias_bound=rows * est.bias_bound / d,
        rate_per_call_bits=float(per_call.mean()),
    )
