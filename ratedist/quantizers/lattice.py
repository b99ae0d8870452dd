"""Lattice vector quantizers as data: Z^n, A2, D_n (D4) and E8 with exact closest points.

A :class:`Lattice` is a frozen record of a lower-triangular generator matrix (rows are basis
vectors, lattice points are ``k @ generator`` for integer row vectors ``k``), its cell volume
``|det generator|`` and an exact, vectorized ``jax.numpy`` closest-point function acting on
points shaped ``(..., dim)``. The same function runs at design time on numpy input (it is
pure ``jnp``) and inside ``jit``/``vmap`` at run time.

Closest-point algorithms (Conway & Sloane 1982; SPLAG ch. 20):

* ``Z^n``: coordinatewise rounding.
* ``D_n = {x in Z^n : sum x even}``: round every coordinate (``f(x)``); if the coordinate sum
  is odd, round the coordinate farthest from an integer the other way (``g(x)``).
* ``E8 = D8 ∪ (D8 + 1/2)``: the nearer of the D8 closest points of ``x`` and of ``x - 1/2``
  (shifted back).
* ``A2`` (hexagonal, minimal distance 1): the union of two cosets of the rectangular lattice
  ``Z x sqrt(3) Z``, whose closest points are found by coordinatewise rounding; the nearer of
  the two is returned (Conway & Sloane's coset search, exact).

Ties (points equidistant from several lattice points, a set of measure zero) are broken
deterministically: ``jnp.round`` rounds halves to even, the first coordinate wins the
"farthest from an integer" search in ``D_n`` and the first coset wins in ``E8`` and ``A2``.

Integer labels. Because every generator here is lower triangular, the map
``p -> floor(p_j / generator[j, j])`` (computed exactly from the integer coefficients, see
:func:`lattice_labels`) is a bijection from the lattice onto ``Z^n``. Its coordinates are the
symbols that the compressor sends: their ranges are nearly those of the source coordinates
divided by the diagonal, so per-coordinate codes lose nothing at high rate
(``sum_j log2 generator[j, j] = log2 volume``).

References:
    J. H. Conway, N. J. A. Sloane, "Fast quantizing and decoding algorithms for lattice
    quantizers and codes", IEEE Trans. Inf. Theory 28(2):227-232, 1982.
    J. H. Conway, N. J. A. Sloane, *Sphere Packings, Lattices and Groups* (SPLAG), 3rd ed.,
    ch. 2 Table 2.3 (normalized second moments), ch. 4 (generators), ch. 20 (algorithms).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ratedist import _native
from ratedist._registry import Registry
from ratedist._validation import check_array, check_int

# ----------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Lattice:
    """A lattice with an exact closest-point map.

    Attributes:
        name: short name (``"z1"``, ``"z4"``, ``"a2"``, ``"d4"``, ``"e8"``, ...).
        dim: dimension ``n``.
        generator: ``(n, n)`` float64 lower-triangular generator, rows are basis vectors.
        volume: cell volume ``|det generator|``.
        closest_point: ``x (..., n) -> nearest lattice point (..., n)`` in ``jax.numpy``,
            dtype of ``x`` preserved.
        covering_radius: largest distance from a point of space to the lattice (literature
            value; bounds the error of the deterministic quantizer pathwise).
        nsm_reference: literature normalized second moment ``G`` (SPLAG Table 2.3), or
            ``None`` where no closed form is tabulated.
    """

    name: str
    dim: int
    generator: np.ndarray = field(compare=False, repr=False)
    volume: float
    closest_point: Callable[[Any], jax.Array] = field(compare=False, repr=False)
    covering_radius: float = field(default=float("nan"), compare=False)
    nsm_reference: float | None = field(default=None, compare=False)

    def __call__(self, x: Any) -> jax.Array:
        """Closest lattice point of each row of ``x`` (shape ``(..., dim)``)."""
        x = jnp.asarray(x)
        _check_last_axis(x, self.dim)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
        # jit: one compiled program per shape instead of eager op-by-op dispatch (inlined
        # when called inside a trace).
        return jax.jit(self.closest_point)(x)

    @property
    def label_shift(self) -> np.ndarray:
        """``N[i, j] = generator[i, j] / generator[j, j]`` for ``i > j``, else 0.

        Labels are ``s = k + floor(k @ N)`` for integer coefficients ``k``
        (see :func:`lattice_labels`).
        """
        g = self.generator
        return np.tril(g / np.diag(g)[None, :], k=-1)


def _make(
    name: str,
    generator: np.ndarray,
    closest_point: Callable[[Any], jax.Array],
    covering_radius: float,
    nsm_reference: float | None,
) -> Lattice:
    g = np.array(generator, dtype=np.float64)
    if not np.allclose(g, np.tril(g)):
        raise ValueError(f"generator of {name} must be lower triangular")
    g.setflags(write=False)
    return Lattice(
        name=name,
        dim=int(g.shape[0]),
        generator=g,
        volume=float(abs(np.prod(np.diag(g)))),
        closest_point=closest_point,
        covering_radius=float(covering_radius),
        nsm_reference=nsm_reference,
    )


def _check_last_axis(x: Any, dim: int) -> None:
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(
            f"x must have shape (..., {dim}) for a {dim}-dimensional lattice, got shape "
            f"{tuple(x.shape)}"
        )


# ----------------------------------------------------------------------------- algorithms
def closest_point_zn(x: Any) -> jax.Array:
    """Closest point of ``Z^n``: coordinatewise rounding (halves to even)."""
    return jnp.round(jnp.asarray(x))


def _closest_point_dn_jax(x: jax.Array) -> jax.Array:
    n = x.shape[-1]
    f = jnp.round(x)
    delta = x - f
    worst = jnp.argmax(jnp.abs(delta), axis=-1)
    onehot = jnp.arange(n).reshape((*(1,) * (x.ndim - 1), n)) == worst[..., None]
    other_way = jnp.where(delta >= 0, 1, -1).astype(x.dtype)
    g = f + jnp.where(onehot, other_way, jnp.zeros_like(f))
    odd = jnp.mod(jnp.sum(f, axis=-1), 2) != 0
    return jnp.where(odd[..., None], g, f)


def _closest_point_dn_native(x: jax.Array) -> jax.Array:
    target, _ = _native.CLOSEST_DN_TARGETS[x.dtype.name]

    def ffi(a):
        out = jax.ShapeDtypeStruct(a.shape, a.dtype)
        return jax.ffi.ffi_call(target, out, vmap_method="broadcast_all")(a)

    @jax.custom_jvp
    def call(a):
        return jax.lax.platform_dependent(a, cpu=ffi, default=_closest_point_dn_jax)

    @call.defjvp
    def _jvp(primals, tangents):
        # piecewise constant, as the pure-JAX function (round has a zero derivative)
        out = call(primals[0])
        return out, jnp.zeros_like(out)

    return call(x)


def closest_point_dn(x: Any) -> jax.Array:
    """Closest point of ``D_n = {z in Z^n : sum z even}`` (Conway & Sloane 1982, Sec. III).

    ``f(x)`` rounds every coordinate; if ``sum f(x)`` is odd, the coordinate with the largest
    rounding error (first one on ties) is rounded the other way instead.

    On CPU (float32/float64, native kernels available) one native pass per call
    (``ratedist/_native/quantize.cc``); elsewhere jax.numpy. Every step is exact (the parity
    sum while it stays below 2^24 in float32), so both give the same bits.
    """
    x = jnp.asarray(x)
    if (
        x.ndim >= 1
        and x.size > 0
        and x.shape[-1] <= 64  # the kernel's largest n
        and x.dtype.name in _native.CLOSEST_DN_TARGETS
        and _native.status().available
    ):
        return _closest_point_dn_native(x)
    return _closest_point_dn_jax(x)


def _nearer(x: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise the nearer of ``a`` and ``b`` to ``x`` (``a`` on ties)."""
    da = jnp.sum((x - a) ** 2, axis=-1)
    db = jnp.sum((x - b) ** 2, axis=-1)
    return jnp.where((da <= db)[..., None], a, b)


def closest_point_e8(x: Any) -> jax.Array:
    """Closest point of ``E8 = D8 ∪ (D8 + 1/2)`` (Conway & Sloane 1982, Sec. IV)."""
    x = jnp.asarray(x)
    half = jnp.asarray(0.5, x.dtype)
    y0 = closest_point_dn(x)
    y1 = closest_point_dn(x - half) + half
    return _nearer(x, y0, y1)


def closest_point_a2(x: Any) -> jax.Array:
    """Closest point of the hexagonal lattice ``A2`` with basis ``(1, 0), (1/2, sqrt(3)/2)``.

    ``A2 = R ∪ (R + (1/2, sqrt(3)/2))`` with ``R = Z x sqrt(3) Z``; the closest point of each
    coset is found by rounding each coordinate on its own scale, and the nearer is kept.
    """
    x = jnp.asarray(x)
    r3 = jnp.asarray(math.sqrt(3.0), x.dtype)
    lead = (1,) * (x.ndim - 1)
    scale = jnp.stack([jnp.ones((), x.dtype), r3]).reshape((*lead, 2))
    shift = jnp.stack([jnp.asarray(0.5, x.dtype), r3 / 2]).reshape((*lead, 2))
    y0 = jnp.round(x / scale) * scale
    y1 = jnp.round((x - shift) / scale) * scale + shift
    return _nearer(x, y0, y1)


# ----------------------------------------------------------------------------- constructors
def integer_lattice(n: int = 1) -> Lattice:
    """The integer lattice ``Z^n`` (volume 1, G = 1/12, covering radius sqrt(n)/2)."""
    n = check_int("n", n, min_value=1)
    return _make(f"z{n}", np.eye(n), closest_point_zn, math.sqrt(n) / 2, 1.0 / 12.0)


def _d_generator(n: int) -> np.ndarray:
    # Rows 2 e_1 and e_i - e_{i-1} (i >= 2): lower triangular, det 2 (SPLAG ch. 4, Sec. 7.1).
    g = np.eye(n)
    g[0, 0] = 2.0
    for i in range(1, n):
        g[i, i - 1] = -1.0
    return g


#: Literature normalized second moments (SPLAG Table 2.3; D3 = FCC, D4 = 13/(120 sqrt 2),
#: E8 = 929/12960, A2 = 5/(36 sqrt 3)).
_NSM_D = {2: 1.0 / 12.0, 3: 0.0787451, 4: 13.0 / (120.0 * math.sqrt(2.0))}


def d_lattice(n: int = 4) -> Lattice:
    """The checkerboard lattice ``D_n`` (n >= 2; volume 2; D4 is the 24-cell lattice).

    Covering radius ``max(1, sqrt(n)/2)`` (deep holes ``(1, 0, ..., 0)`` and
    ``(1/2, ..., 1/2)``, SPLAG ch. 4 Sec. 7.1).
    """
    n = check_int("n", n, min_value=2)
    return _make(
        f"d{n}", _d_generator(n), closest_point_dn, max(1.0, math.sqrt(n) / 2), _NSM_D.get(n)
    )


def e8_lattice() -> Lattice:
    """The Gosset lattice ``E8`` (volume 1, covering radius 1, G = 929/12960).

    Generator of SPLAG ch. 4 Fig. 4.10 (lower triangular): ``2 e_1``, ``e_i - e_{i-1}``
    (i = 2..7) and ``(1/2, ..., 1/2)``.
    """
    g = _d_generator(8)
    g[7] = 0.5
    return _make("e8", g, closest_point_e8, 1.0, 929.0 / 12960.0)


def a2_lattice() -> Lattice:
    """The hexagonal lattice ``A2`` (minimal distance 1, volume sqrt(3)/2).

    Covering radius ``1/sqrt(3)``; ``G = 5 / (36 sqrt 3)``.
    """
    g = np.array([[1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])
    return _make("a2", g, closest_point_a2, 1.0 / math.sqrt(3.0), 5.0 / (36.0 * math.sqrt(3.0)))


#: Registry of lattice factories ``factory(dim) -> Lattice``; fact ``dim`` is the fixed
#: dimension or ``None`` where any ``dim`` is accepted.
LATTICES: Registry[Callable[[int | None], Lattice]] = Registry("lattice")


def _fixed(make: Callable[[], Lattice], dim: int) -> Callable[[int | None], Lattice]:
    def factory(n: int | None = None) -> Lattice:
        if n is not None and check_int("dim", n) != dim:
            raise ValueError(f"dim of this lattice is fixed to {dim}, got {n}")
        return make()

    return factory


def _any_dim(make: Callable[[int], Lattice], name: str) -> Callable[[int | None], Lattice]:
    def factory(n: int | None = None) -> Lattice:
        if n is None:
            raise ValueError(f"lattice {name!r} needs dim (any integer >= 1 or 2), got None")
        return make(check_int("dim", n, min_value=1))

    return factory


LATTICES.add("z1", _fixed(lambda: integer_lattice(1), 1), dim=1)
LATTICES.add("zn", _any_dim(integer_lattice, "zn"), dim=None)
LATTICES.add("a2", _fixed(a2_lattice, 2), dim=2)
LATTICES.add("dn", _any_dim(d_lattice, "dn"), dim=None)
LATTICES.add("d4", _fixed(lambda: d_lattice(4), 4), dim=4)
LATTICES.add("e8", _fixed(e8_lattice, 8), dim=8)


def get_lattice(name: str, dim: int | None = None) -> Lattice:
    """The registered lattice ``name`` (``dim`` is required for ``"zn"`` and ``"dn"``).

    Raises:
        ValueError: unknown ``name``, or ``dim`` missing/inconsistent.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a lattice name (str), got {name!r}")
    return LATTICES.get(name)(dim)


# ----------------------------------------------------------------------------- coordinates
def lattice_coefficients(lattice: Lattice, points: Any) -> jax.Array:
    """Integer coefficients ``k`` (int32) with ``points = k @ generator``.

    ``points`` must be lattice points (e.g. outputs of ``lattice(x)``); the coefficients are
    rounded, so float error in ``points`` up to ``~0.5 / ||generator^-1||`` is absorbed.
    """
    points = jnp.asarray(points)
    _check_last_axis(points, lattice.dim)
    ginv = jnp.asarray(np.linalg.inv(lattice.generator), points.dtype)
    return jnp.round(points @ ginv).astype(jnp.int32)


def lattice_labels(lattice: Lattice, points: Any) -> jax.Array:
    """Integer labels ``s_j = floor(p_j / generator[j, j])`` of lattice points (int32).

    Computed exactly as ``s = k + floor(k @ N)`` from the integer coefficients ``k`` and the
    dyadic matrix ``N = lattice.label_shift`` (entries are multiples of 1/4 for the lattices
    here, so the floor is exact in floating point). The map is a bijection of the lattice
    onto ``Z^n`` (inverse: :func:`lattice_from_labels`).
    """
    points = jnp.asarray(points)
    k = lattice_coefficients(lattice, points)
    ftype = points.dtype if jnp.issubdtype(points.dtype, jnp.floating) else jnp.float32
    shift = jnp.floor(k.astype(ftype) @ jnp.asarray(lattice.label_shift, ftype))
    return k + shift.astype(jnp.int32)


def lattice_from_labels(lattice: Lattice, labels: Any, dtype: Any = None) -> jax.Array:
    """Inverse of :func:`lattice_labels`: lattice points from integer labels.

    Decodes the coefficients from the last coordinate to the first,
    ``k_j = s_j - floor(sum_{i>j} k_i N_ij)`` (a static loop over ``dim``).
    """
    labels = jnp.asarray(labels)
    _check_last_axis(labels, lattice.dim)
    dtype = dtype or jax.dtypes.canonicalize_dtype(jnp.float64)
    shift = jnp.asarray(lattice.label_shift, dtype)
    s = labels.astype(dtype)
    n = lattice.dim
    k = [None] * n
    for j in range(n - 1, -1, -1):
        off = sum((k[i] * shift[i, j] for i in range(j + 1, n)), jnp.zeros_like(s[..., j]))
        k[j] = s[..., j] - jnp.floor(off)
    kk = jnp.stack(k, axis=-1)
    return kk @ jnp.asarray(lattice.generator, dtype)


# ----------------------------------------------------------------------------- sampling / G
def uniform_in_cell(lattice: Lattice, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
    """Points uniform on the Voronoi cell of 0, shaped ``shape + (dim,)``.

    A point ``v`` uniform on the fundamental parallelepiped ``[0, 1)^n @ generator`` is
    uniform on the torus ``R^n / lattice``; its error ``v - Q(v)`` is therefore uniform on the
    Voronoi cell (up to the measure-zero tie set). Used for subtractive dither.
    """
    dtype = dtype or jax.dtypes.canonicalize_dtype(jnp.float64)
    return _uniform_in_cell(lattice, key, tuple(shape), jnp.dtype(dtype))


@partial(jax.jit, static_argnums=(0, 2, 3))
def _uniform_in_cell(lattice: Lattice, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    return cell_point(lattice, jax.random.uniform(key, (*shape, lattice.dim), dtype=dtype))


def cell_point(lattice: Lattice, u: Any) -> Any:
    """The point of the Voronoi cell of 0 that ``u`` (shape ``(..., dim)``, entries in
    ``[0, 1)``) addresses: ``v - Q(v)`` with ``v = u @ generator``. Uniform ``u`` give points
    uniform on the cell (see :func:`uniform_in_cell`); callers with their own uniforms (the
    lattice compressor's dither, drawn from the quantizer kernels' stream) use this map."""
    u = jnp.asarray(u)
    v = u @ jnp.asarray(lattice.generator, u.dtype)
    return v - lattice.closest_point(v)


def normalized_second_moment(
    lattice: Lattice, n_samples: int, key: Any, *, chunk: int = 65536
) -> tuple[float, float]:
    """Monte Carlo normalized second moment ``G = E||e||^2 / (n V^(2/n))`` and its SE.

    ``e`` is uniform on the Voronoi cell (:func:`uniform_in_cell`); the estimate is the mean
    of ``||e_i||^2 / (n V^(2/n))`` over ``n_samples`` draws (float64 when x64 is enabled),
    accumulated over chunks with ``lax.map``. Exact references (SPLAG Table 2.3): Z 1/12,
    A2 0.0801875, D4 0.0766032, E8 0.0716821.

    Args:
        lattice: the lattice.
        n_samples: number of uniform points (>= 2).
        key: JAX PRNG key.
        chunk: points per chunk (memory bound).

    Returns:
        ``(G, standard_error)`` as Python floats.

    Raises:
        ValueError: ``n_samples < 2`` or ``chunk < 1``.
    """
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice must be a Lattice, got {type(lattice).__name__}")
    n_samples = check_int("n_samples", n_samples, min_value=2)
    chunk = min(check_int("chunk", chunk, min_value=1), n_samples)
    n_chunks = -(-n_samples // chunk)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    norm = lattice.dim * lattice.volume ** (2.0 / lattice.dim)

    def one(i: jax.Array) -> tuple[jax.Array, jax.Array]:
        e = uniform_in_cell(lattice, jax.random.fold_in(key, i), (chunk,), dtype)
        m = jnp.sum(e * e, axis=-1) / norm
        w = (i * chunk + jnp.arange(chunk)) < n_samples
        m = jnp.where(w, m, 0.0)
        return jnp.sum(m), jnp.sum(m * m)

    s1, s2 = jax.jit(lambda idx: jax.lax.map(one, idx))(jnp.arange(n_chunks))
    s1 = float(np.sum(np.asarray(s1, np.float64)))
    s2 = float(np.sum(np.asarray(s2, np.float64)))
    mean = s1 / n_samples
    var = max(s2 / n_samples - mean * mean, 0.0) * n_samples / (n_samples - 1)
    return mean, math.sqrt(var / n_samples)


# ----------------------------------------------------------------------------- brute force
def _lll_reduce(basis: np.ndarray, delta: float = 0.99) -> np.ndarray:
    """LLL-reduced basis (rows) of the lattice spanned by ``basis`` (textbook, small n)."""
    b = np.array(basis, np.float64)
    n = b.shape[0]

    def gram_schmidt(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bs = np.zeros_like(b)
        mu = np.zeros((n, n))
        for i in range(n):
            bs[i] = b[i]
            for j in range(i):
                mu[i, j] = b[i] @ bs[j] / (bs[j] @ bs[j])
                bs[i] -= mu[i, j] * bs[j]
        return bs, mu

    bs, mu = gram_schmidt(b)
    k = 1
    while k < n:
        for j in range(k - 1, -1, -1):
            q = np.round(mu[k, j])
            if q:
                b[k] -= q * b[j]
                bs, mu = gram_schmidt(b)
        if bs[k] @ bs[k] >= (delta - mu[k, k - 1] ** 2) * (bs[k - 1] @ bs[k - 1]):
            k += 1
        else:
            b[[k, k - 1]] = b[[k - 1, k]]
            bs, mu = gram_schmidt(b)
            k = max(k - 1, 1)
    return b


def brute_force_closest_point(
    lattice: Lattice, x: Any, *, max_candidates: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """Closest lattice points by exhaustive search over a box of coefficients (numpy, tests).

    With an LLL-reduced basis ``B`` (rows), ``t = x B^-1`` and a radius ``r`` that bounds the
    distance from every point to its closest lattice point ``c``, the coefficients of ``c``
    satisfy ``|k_j - t_j| <= r ||B^-1[:, j]||``, hence ``|k_j - round(t_j)| <= r ||B^-1[:, j]||
    + 1/2``: every integer vector in that box around the Babai point ``round(t)`` is tried
    (a complete search). ``r`` is the smaller of the largest Babai distance in the batch
    (a bound by construction) and ``lattice.covering_radius`` (a literature fact; it keeps the
    E8 box at 25515 candidates). Ties keep the first candidate found.

    Args:
        lattice: the lattice.
        x: points shaped ``(m, dim)``.
        max_candidates: refuse boxes larger than this (memory/time guard).

    Returns:
        ``(points, sq_distances)`` as float64 numpy arrays.

    Raises:
        ValueError: wrong shape, or a box larger than ``max_candidates``.
    """
    x = check_array("x", x, ndim=2)
    if x.shape[1] != lattice.dim:
        raise ValueError(f"x must have shape (m, {lattice.dim}), got {x.shape}")
    g = _lll_reduce(lattice.generator)
    ginv = np.linalg.inv(g)
    babai = np.round(x @ ginv)
    r = float(np.sqrt(np.max(np.sum((x - babai @ g) ** 2, axis=1))))
    if math.isfinite(lattice.covering_radius):
        r = min(r, lattice.covering_radius)
    half = np.floor(r * np.linalg.norm(ginv, axis=0) + 0.5 + 1e-9).astype(int)
    n_cand = int(np.prod(2 * half + 1))
    if n_cand > max_candidates:
        raise ValueError(
            f"brute force box has {n_cand} candidates, more than max_candidates={max_candidates}"
        )
    offsets = np.array(list(itertools.product(*[range(-h, h + 1) for h in half])), np.float64)
    # ||x - (b + o) B||^2 = ||res - o B||^2 with the Babai residual res: one GEMM per chunk.
    steps = offsets @ g
    steps_sq = np.sum(steps**2, axis=1)
    res = x - babai @ g
    best = np.empty_like(x)
    best_d = np.full(x.shape[0], np.inf)
    for start in range(0, offsets.shape[0], 32768):
        sl = slice(start, start + 32768)
        d2 = np.sum(res**2, axis=1)[:, None] - 2.0 * res @ steps[sl].T + steps_sq[None, sl]
        j = np.argmin(d2, axis=1)
        dj = d2[np.arange(x.shape[0]), j]
        better = dj < best_d
        best[better] = (babai[better] @ g) + steps[sl][j[better]]
        best_d[better] = dj[better]
    best_d = np.sum((x - best) ** 2, axis=1)
    return best, best_d
