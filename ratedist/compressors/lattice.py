"""Lattice vector quantizer compressor (Z^n, A2, D4, E8), with optional subtractive dither.

One worker's vector ``x`` of length ``d`` is cut into ``m = ceil(d / n)`` blocks of the lattice
dimension ``n`` (the last block padded with zeros; the padded coordinates are dropped from
``x_hat``). With ``sigma_hat = ||x|| / sqrt(d)`` and the lattice scaled to cell volume
``(sigma_hat * step)^n``, i.e. ``scale = sigma_hat * step / V^(1/n)``:

    x_hat = scale * Q(x / scale)                    (dither=False)
    x_hat = scale * (Q(x / scale - u) + u)          (dither=True)

``step`` is therefore the edge of the cube with the volume of one scaled cell, in units of
``sigma_hat``: at equal ``step`` every lattice spends the same high-rate entropy
``h - log2(step)`` bits per coordinate and they differ only by the normalized second moment
``G`` (distortion ``G step^2 sigma^2``). ``"zn"`` is coordinatewise rounding (n = 1, no
padding).

Dither: ``u`` is uniform on the Voronoi cell, drawn from ``key`` per call (the quantizer
kernels' stream, :func:`ratedist.compressors._kernels.uniform_like`, mapped onto the cell by
:func:`ratedist.quantizers.lattice.cell_point`). It is a shared-seed
(subtractive) dither: the receiver regenerates ``u`` from the same key, so it costs 0 bits.
Then the error ``x_hat - x`` is ``scale`` times a vector uniform on the cell and independent of
``x`` (Zamir & Feder 1996, Thm. 1), zero mean because the cells are centrally symmetric: the
compressor is unbiased with ``E||x_hat - x||^2 = G step^2 ||x||^2`` exactly (each coordinate
of the cell error has variance ``G V^(2/n)``: the second-moment matrices of these cells are
isotropic). Without dither it is deterministic and biased, with the pathwise contraction
``||x_hat - x||^2 <= (ceil(d/n)/d) (rho^2 / V^(2/n)) step^2 ||x||^2`` from the covering radius
``rho``.

Bits (all symbols are the integer labels ``s = floor(p_j / generator[j, j])`` of the lattice
points ``p``, a bijection of the lattice onto Z^n, see
:func:`~ratedist.quantizers.lattice.lattice_labels`):

* ``side_bits``: ``float_bits`` for ``sigma_hat`` plus a range header for each of the ``n``
  label coordinates: the minimum ``lo_j`` as a ``float_bits``-bit integer and the width
  ``w_j`` in ``ceil(log2(float_bits + 1))`` bits.
* ``value_bits`` (container, fixed length): ``m * sum_j w_j`` with
  ``w_j = ceil(log2(max_j - lo_j + 1))`` over the blocks of this call (bit-packed offsets).
* ``index_bits``: 0.
* ``entropy_bits``: ``sum_j m * H(s[:, j]) + float_bits``, the per-coordinate empirical
  entropies of the labels (code tables not charged, like every entropy layer here). This is an
  approximation of the joint empirical entropy of the block symbols from ABOVE (subadditivity);
  at high rate it approaches the entropy of the lattice points (``sum_j log2 generator[j, j]
  = log2 V``, so the per-coordinate code loses nothing there). The joint empirical entropy is
  not used because with many distinct blocks it collapses to ``log2 m`` per block, far below
  any achievable rate. Even per coordinate, ``m = d / n`` samples of a law on ``K`` labels
  give a plug-in entropy biased LOW by about ``(K - 1) / (2 m ln 2)`` bits per column (0.1–0.2
  bit per coordinate for E8 at d = 1000): it is the size of this call's symbols under a code
  fitted to them (tables not charged), not the rate of a code for the label law. Rate–
  distortion points therefore pool the labels of all trials (:func:`lattice_symbols`,
  :func:`ratedist.infotheory.entropy_estimate.pooled_entropy_bits`).

Limits: since ``|x_i| / scale <= sqrt(d) V^(1/n) / step``, the lattice coordinates stay exact
integers or half-integers in float32 (and the int32 labels do not overflow) while
``sqrt(d) / step < 2^22``, e.g. ``d <= 10^7`` at ``step >= 0.001``.

References:
    J. H. Conway, N. J. A. Sloane, "Fast quantizing and decoding algorithms for lattice
    quantizers and codes", IEEE Trans. Inf. Theory 28(2), 1982.
    R. Zamir, M. Feder, "On lattice quantization noise", IEEE Trans. Inf. Theory 42(4), 1996
    (subtractive dither: error uniform on the cell, independent of the input).
    Gandikota et al., "vqSGD: Vector Quantized Stochastic Gradient Descent", arXiv 2108.09899
    (rate-distortion view of gradient quantizers).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ratedist._validation import check_choice, check_positive
from ratedist.compressors import _kernels, _symbols
from ratedist.compressors._common import (
    bit_width,
    check_float_bits,
    info_dtype,
    make_info,
)
from ratedist.compressors.base import (
    FLOAT_BITS,
    CompressInfo,
    Compressor,
    Facts,
    propagate_nonfinite,
    register,
)
from ratedist.quantizers.lattice import (
    Lattice,
    cell_point,
    get_lattice,
    lattice_labels,
)

#: Lattice names accepted by the compressor (``"zn"`` = coordinatewise rounding).
LATTICE_NAMES = ("zn", "a2", "d4", "e8")
#: Default ``step`` (cell edge in units of sigma_hat): about 3 bits per coordinate of entropy
#: (``0.5 log2(2 pi e) + 1``) at a distortion of ``G / 4`` (≈ -17 dB).
DEFAULT_STEP = 0.5


class LatticeState(NamedTuple):
    """State of the (stateless) lattice compressor: an empty pytree."""


def compressor_lattice(name: str) -> Lattice:
    """The block lattice of the compressor option ``lattice=name`` (``"zn"``: ``Z^1`` blocks)."""
    name = check_choice("lattice", name, LATTICE_NAMES)
    return get_lattice("z1" if name == "zn" else name)


def _scale(lat: Lattice, step: float, x: jax.Array) -> jax.Array:
    """``sigma_hat * step / V^(1/n)``, ``sigma_hat = ||x|| / sqrt(d)``: the scale of the lattice."""
    sigma_hat = jnp.sqrt(jnp.sum(x * x) / x.shape[0])
    return sigma_hat * jnp.asarray(step / lat.volume ** (1.0 / lat.dim), x.dtype)


def _round(
    lat: Lattice, dither: bool, x: jax.Array, u: Any, scale: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(x_hat, p)`` of one flat vector at ``scale``: the quantization of the module
    docstring, ``u`` the stream's uniforms (``ceil(d / n) n`` of them, or a function of the
    scaled blocks ``y`` that draws uniforms shaped like them; ignored without dither).
    ``p`` has shape ``(ceil(d / n), n)``: the (undithered) lattice points, one row
    per block, whose labels are the symbols of both bit layers.
    """
    n = lat.dim
    d = x.shape[0]
    m = -(-d // n)
    nz = scale > 0
    # Reconstruction divides by 1/scale instead of multiplying by scale: a product would
    # be contracted with a consumer's subtraction into one FMA (XLA on CPU duplicates
    # cheap producers into consumer fusions and drops optimization barriers), so error
    # feedback's ``v - x_hat`` would not use the rounded x_hat; a quotient cannot.
    inv_scale = 1 / jnp.where(nz, scale, 1)
    y = jnp.where(nz, x * inv_scale, 0).astype(x.dtype)
    y = jnp.pad(y, (0, m * n - d)).reshape(m, n)
    if dither:
        # uniform on the cell: the stream's uniforms mapped by cell_point
        w = cell_point(lat, u(y) if callable(u) else jnp.reshape(u, (m, n)))
        p = lat.closest_point(y - w)
        point = (p + w).reshape(-1)[:d]
    else:
        p = lat.closest_point(y)
        point = p.reshape(-1)[:d]
    x_hat = jnp.where(nz, point / inv_scale, 0).astype(x.dtype)
    return x_hat, p


def _quantize(
    lat: Lattice, step: float, dither: bool, x: jax.Array, key: Any
) -> tuple[jax.Array, jax.Array]:
    """``(x_hat, labels)`` of one flat vector: :func:`_round` at the norm-scaled
    :func:`_scale`, the dither drawn from ``key`` (one pass of the quantizer kernel on CPU),
    and the integer labels ``(ceil(d / n), n)`` of the lattice points.
    """
    x_hat, p = _round(lat, dither, x, lambda y: _kernels.uniform_like(y, key), _scale(lat, step, x))
    return x_hat, lattice_labels(lat, p)


def _round_z1(dither: bool, x: jax.Array, u: Any, scale: jax.Array) -> tuple[jax.Array, Any]:
    """:func:`_round` for ``Z^1`` blocks with the points as a flat vector (the labels of
    ``Z^1`` are its points): the definition behind the integer-grid kernel's ``ZN`` modes."""
    x_hat, p = _round(compressor_lattice("zn"), dither, x, u, scale)
    return x_hat, p.reshape(-1)


def lattice_symbols(
    x: Any,
    *,
    key: Any = None,
    lattice: str = "e8",
    step: float = DEFAULT_STEP,
    dither: bool = False,
    **_: Any,
) -> jax.Array:
    """The label matrix ``(ceil(d / n), n)`` (int32) that :func:`lattice` sends for ``x``.

    The same computation as the compressor's ``update`` (same ``key`` -> same dither -> same
    labels); the rate–distortion layer pools these over Monte Carlo trials to estimate the
    entropy of the label law (:func:`ratedist.infotheory.entropy_estimate.pooled_entropy_bits`)
    instead of averaging the per-call empirical entropies, which are biased low.
    Extra keyword arguments (``float_bits``) are accepted and ignored, so the compressor's
    ``facts.params`` can be passed as they are.
    """
    lat = compressor_lattice(lattice)
    return _quantize(lat, check_positive("step", step), bool(dither), jnp.asarray(x), key)[1]


def _normalized_covering_sq(lat: Lattice) -> float:
    return lat.covering_radius**2 / lat.volume ** (2.0 / lat.dim)


def _lattice_omega(d: int, *, lattice: str, step: float, **_: Any) -> float:
    """``omega = G step^2``: the exact variance of the DITHERED quantizer (for any d)."""
    return compressor_lattice(lattice).nsm_reference * step**2


def _lattice_alpha(d: int, *, lattice: str, step: float, **_: Any) -> float:
    """Pathwise contraction of the deterministic quantizer from the covering radius.

    ``||x_hat - x||^2 <= m rho^2 scale^2 = (ceil(d/n)/d) (rho^2 / V^(2/n)) step^2 ||x||^2``.
    Declared (by the factory) only where ``(rho^2 / V^(2/n)) step^2 < 1``, so it is > 0 for
    every d.
    """
    lat = compressor_lattice(lattice)
    m = -(-d // lat.dim)
    return 1.0 - (m / d) * _normalized_covering_sq(lat) * step**2


@register(
    "lattice",
    unbiased=False,
    deterministic=True,
    rd_sweep=[{"lattice": "e8"}, {"lattice": "d4"}, {"lattice": "a2"}, {"lattice": "zn"}],
    rd_curve=[{"lattice": n, "step": h} for n in ("zn", "e8") for h in (1.0, 0.5, 0.25)],
    examples=[
        {},
        {"lattice": "zn", "step": 0.25},
        {"lattice": "a2", "step": 1.0},
        {"lattice": "d4", "dither": True},
        {"lattice": "e8", "step": 0.8, "dither": True, "float_bits": 16},
        {"lattice": "zn", "dither": True},
    ],
)
def lattice(
    lattice: str = "e8",
    step: float = DEFAULT_STEP,
    dither: bool = False,
    float_bits: int = FLOAT_BITS,
) -> Compressor:
    """Lattice vector quantizer of the norm-scaled vector (see the module docstring).

    Args:
        lattice: ``"zn"`` (scalar rounding), ``"a2"``, ``"d4"`` or ``"e8"`` (not ``name``:
            ``make(name=...)`` reserves that keyword for the compressor's registry name).
        step: cell edge ``V^(1/n)`` of the scaled lattice in units of ``sigma_hat`` (> 0).
        dither: subtractive dither from ``key`` (unbiased; the dither costs 0 bits because
            the receiver regenerates it from the shared key).
        float_bits: width of ``sigma_hat`` and of each range minimum in the header.

    Returns:
        A :class:`Compressor`. Its facts: ``unbiased = dither``, ``deterministic = not
        dither``; ``omega(d) = G step^2`` with dither (exact); without dither
        ``alpha(d) = 1 - (ceil(d/n)/d) (rho^2/V^(2/n)) step^2`` when
        ``(rho^2/V^(2/n)) step^2 < 1`` (pathwise), else no alpha.

    Raises:
        ValueError: unknown ``lattice``, ``step <= 0``, bad ``float_bits``.
        TypeError: non-bool ``dither``.

    References:
        Conway & Sloane 1982 (closest points); Zamir & Feder 1996, Thm. 1 (dither).
    """
    name = check_choice("lattice", lattice, LATTICE_NAMES)
    step = check_positive("step", step)
    if not isinstance(dither, bool):
        raise TypeError(f"dither must be a bool, got {dither!r} ({type(dither).__name__})")
    float_bits = check_float_bits(float_bits)
    lat = compressor_lattice(name)
    n = lat.dim
    header_bits = n * (float_bits + (float_bits).bit_length())  # lo_j and w_j per coordinate
    params = {"lattice": name, "step": step, "dither": dither, "float_bits": float_bits}

    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, CompressInfo]:
        x = jnp.asarray(x)
        if x.ndim != 1 or x.shape[0] < 1:
            raise ValueError(
                f"x must be one worker's flat vector of shape (d,), got shape {tuple(x.shape)}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"x must have a floating dtype, got {x.dtype}")
        if dither and key is None:
            raise ValueError("lattice compressor with dither=True needs key=, got key=None")
        d = x.shape[0]
        m = -(-d // n)
        if n == 1:
            # Z^1: rounding, counts and entropy in one pass of the integer-grid kernel on CPU
            x_hat, entropy, lo, hi = _symbols.integer_round(
                x,
                key,
                _scale(lat, step, x),
                partial(_round_z1, dither),
                mode=_symbols.ZN_DITHER if dither else _symbols.ZN,
            )
        else:
            x_hat, labels = _quantize(lat, step, dither, x, key)
            x_hat = propagate_nonfinite(x, x_hat)
            # per column of labels: its entropy, smallest and largest value (native on CPU)
            entropies, lo, hi = _symbols.column_entropy(labels)
            entropy = jnp.sum(entropies)
        value_bits = m * jnp.sum(bit_width(hi - lo)).astype(info_dtype())
        entropy = entropy + float_bits
        return x_hat, state, make_info(value_bits, 0, float_bits + header_bits, entropy)

    def init(x: Any) -> LatticeState:
        return LatticeState()

    omega = None
    alpha = None
    if dither:
        omega = lambda d: _lattice_omega(d, **params)  # noqa: E731
    elif _normalized_covering_sq(lat) * step**2 < 1.0:
        alpha = lambda d: _lattice_alpha(d, **params)  # noqa: E731
    facts = Facts(
        name="lattice",
        params=params,
        unbiased=dither,
        deterministic=not dither,
        omega=omega,
        alpha=alpha,
    )
    return Compressor(init, _kernels.propagates_nonfinite(update), facts)
