"""Per-worker sparse matrices inside the jitted simulator, and their spectral constants.

Users' data arrive as ``scipy.sparse`` matrices, one per worker (``M_i``, shape ``(m, d)``).
Inside JAX every worker's matrix is stored in one layout with arrays of equal shape over the
workers (so ``vmap``/sharding over the worker axis works), padded with explicit zeros:

* ``"coo"`` (any pattern): ``rows``, ``cols`` (int32) and ``vals`` of shape ``(n, nnz_max)``,
  and the CSR row pointers ``indptr`` (int32, ``(n, m + 1)``);
  ``M_i x`` is a gather ``x[cols]`` and a sorted ``segment_sum`` over ``rows``,
  ``M_iᵀ s`` a gather ``s[rows]`` and a ``segment_sum`` over ``cols``. Memory O(n (nnz_max + m)).
* ``"coo_t"``: ``"coo"`` plus a copy in sliced columns (SELL-8 of ``M_iᵀ``: the non-empty
  columns sorted by their number of entries, eight per slice, each slice's entries
  interleaved; :func:`_sliced_columns`), so that ``M_iᵀ s`` is a sorted ``segment_sum`` and
  the native fused gradient terms make random accesses only to length-``m`` vectors; 28
  bytes per entry in all. Used by the sparse logistic and least-squares problems.
* ``"dia"`` (banded square matrices): the union of the diagonal offsets ``o_k`` over the
  workers (static) and ``vals`` of shape ``(n, K, d)`` with ``vals[i, k, r] = (M_i)[r, r + o_k]``;
  ``M_i x = sum_k vals[i, k] * x[· + o_k]`` (shifted slices, no gather, no scatter). Memory
  O(n K d), the same as the non-zeros for a full band.

On CPU (float32/float64) the ``"coo"``/``"coo_t"`` products run in a native kernel
(``ratedist/_native/sparse.cc``, XLA FFI): one custom call for all workers under ``vmap``
(``vmap_method="expand_dims"``: a vector shared by the workers is not copied), walking the rows
by ``indptr`` (no row index read per entry): ``M_i x`` with each row's sum in four interleaved
partial sums and ``M_iᵀ s`` as a scatter from the row-sorted arrays, with a custom VJP so
``jax.grad`` works. The fused :func:`data_terms` (logistic and least-squares gradients) reads
each row's entries once for both products on ``"coo"``, and on ``"coo_t"`` makes two passes
over the sliced columns (``M_i x`` accumulated into an L1-resident length-``m`` vector, then
each column's sum in a register): measured 1.3-1.6x faster than the row pass at 0.1-0.5 %
density with d = 20,000 (``benchmarks/README.md``), where the row pass's random accesses to
the length-``d`` vectors miss L1. Results equal the pure-JAX path (other platforms,
``RATEDIST_NATIVE=0``) up to the summation order: relative 1e-12 in float64 in the tests.

:func:`pack` chooses ``"dia"`` for square matrices whose band holds at most twice the largest
number of non-zeros of a worker (``DIA_MAX_FILL``), else ``"coo"`` (:data:`LAYOUTS`).

Spectral constants (:func:`extreme_eigenvalue`, :func:`largest_singular_value_sq`) use the exact
dense ``numpy.linalg.eigvalsh`` when the matrix order is at most :data:`DENSE_EIG_MAX_DIM`, else
Lanczos (``scipy.sparse.linalg.eigsh``, implicitly restarted, relative tolerance
:data:`LANCZOS_TOL` on the eigenvalue; Lehoucq, Sorensen, Yang, "ARPACK Users' Guide", 1998).
No dense ``(d, d)`` or ``(m, d)`` array is formed on the sparse path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ratedist import _native
from ratedist._registry import Registry
from ratedist._validation import check_choice

#: largest matrix order whose eigenvalues are computed densely (exact path)
DENSE_EIG_MAX_DIM = 256
#: relative tolerance of Lanczos eigenvalues (``eigsh(..., tol=LANCZOS_TOL)``)
LANCZOS_TOL = 1e-8
#: Lanczos basis size (``eigsh(..., ncv=)``): memory ncv * d floats, fewer restarts than 20
LANCZOS_NCV = 40
#: ``"dia"`` is chosen when (number of diagonals) * d <= DIA_MAX_FILL * (largest nnz of a worker)
DIA_MAX_FILL = 2.0


def is_sparse(a: Any) -> bool:
    """True for a ``scipy.sparse`` matrix or array."""
    return sp.issparse(a)


def as_csr_list(name: str, mats: Any, shape: tuple[int, int] | None = None) -> list[sp.csr_array]:
    """Per-worker matrices as float64 CSR arrays with finite entries and one common shape.

    ``mats`` is a sequence of ``scipy.sparse`` matrices (one per worker).

    Raises:
        TypeError: an element is not ``scipy.sparse``.
        ValueError: empty, shapes differ (or differ from ``shape``), non-finite entries.
    """
    if is_sparse(mats) or not isinstance(mats, Sequence) or len(mats) == 0:
        raise ValueError(
            f"{name} must be a non-empty sequence of scipy.sparse matrices (one per worker), "
            f"got {type(mats).__name__}"
        )
    out = []
    for i, m in enumerate(mats):
        if not is_sparse(m):
            raise TypeError(f"{name}[{i}] must be a scipy.sparse matrix, got {type(m).__name__}")
        m = sp.csr_array(m, dtype=np.float64)
        m.sum_duplicates()
        if not np.all(np.isfinite(m.data)):
            raise ValueError(f"{name}[{i}] must contain only finite values (found NaN or inf)")
        out.append(m)
    want = out[0].shape if shape is None else shape
    for i, m in enumerate(out):
        if m.shape != want:
            raise ValueError(f"{name}[{i}] must have shape {want}, got {m.shape}")
    return out


# ------------------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class Packed:
    """Per-worker sparse matrices in a JAX layout.

    Attributes:
        layout: the layout name (a key of :data:`LAYOUTS`).
        arrays: data leaves (worker axis first), to be merged into a problem's ``data``.
        matvec: ``(x, data_i) -> M_i x`` (JAX, one worker).
        rmatvec: ``(s, data_i) -> M_iᵀ s`` (JAX, one worker).
    """

    layout: str
    arrays: dict[str, np.ndarray]
    matvec: Callable[[Any, Any], Any]
    rmatvec: Callable[[Any, Any], Any]


# Native products (ratedist/_native/sparse.cc) on the row-sorted COO arrays, for both M v and
# Mᵀ v; the pure-JAX gather + segment_sum below is the fallback (other platforms, other dtypes,
# RATEDIST_NATIVE=0) and the reference of the tests.


def native_available(dtype: Any) -> bool:
    """Whether the COO products use the native CPU kernel for arrays of ``dtype``."""
    return jnp.dtype(dtype).name in _native.SPARSE_TARGETS and _native.status().available


#: modes of the kernel's product calls (``sparse.cc``)
_MATVEC, _RMATVEC = 0, 1


def _ffi(ptr, cols, vals, v, y, n_out, mode):
    target, _ = _native.SPARSE_TARGETS[v.dtype.name]
    outs = (jax.ShapeDtypeStruct((n_out,), v.dtype), jax.ShapeDtypeStruct(y.shape, v.dtype))
    call = jax.ffi.ffi_call(target, outs, vmap_method="expand_dims")
    return call(ptr, cols, vals, v, y, mode=np.int32(mode))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _native_product(ptr, rows, cols, vals, v, n_out, transpose):
    """``M v`` (``transpose=False``) or ``Mᵀ v`` by the FFI kernel; one call for all workers.

    The kernel walks the rows by the CSR pointers ``ptr``; ``rows`` (the same pattern as COO
    row indices) serves the derivative in ``vals`` only.
    """
    y = jnp.zeros((1,), v.dtype)  # read by the fused modes only
    return _ffi(ptr, cols, vals, v, y, n_out, _RMATVEC if transpose else _MATVEC)[0]


def _native_product_fwd(ptr, rows, cols, vals, v, n_out, transpose):
    out = _native_product(ptr, rows, cols, vals, v, n_out, transpose)
    return out, (ptr, rows, cols, vals, v)


def _native_product_bwd(n_out, transpose, res, ct):
    # out[at_k] += vals_k v[from_k]: d/dv is the other product, d/dvals_k = ct[at_k] v[from_k]
    ptr, rows, cols, vals, v = res
    at, frm = (cols, rows) if transpose else (rows, cols)
    ct_v = _native_product(ptr, rows, cols, vals, ct, v.shape[0], not transpose)
    return None, None, None, ct[at] * v[frm], ct_v


_native_product.defvjp(_native_product_fwd, _native_product_bwd)


def _dispatch(data_i, v, fallback, *, n_out, transpose):
    """The native product on CPU when available for the dtype, else ``fallback(v)``."""
    ptr, rows, cols = data_i["sp_indptr"], data_i["sp_rows"], data_i["sp_cols"]
    dtype = jnp.result_type(data_i["sp_vals"], v)
    if not native_available(dtype):
        return fallback(v)
    vals, v = data_i["sp_vals"].astype(dtype), v.astype(dtype)

    def native(vv):
        return _native_product(ptr, rows, cols, vals, vv, n_out, transpose)

    return jax.lax.platform_dependent(v, cpu=native, default=fallback)


def _coo_matvec_jax(x, data_i, *, n_rows):
    v = data_i["sp_vals"] * x[data_i["sp_cols"]]
    return jax.ops.segment_sum(v, data_i["sp_rows"], num_segments=n_rows, indices_are_sorted=True)


def _coo_rmatvec_jax(s, data_i, *, n_cols):
    v = data_i["sp_vals"] * s[data_i["sp_rows"]]
    return jax.ops.segment_sum(v, data_i["sp_cols"], num_segments=n_cols)


def _coo_matvec(x, data_i, *, n_rows):
    fallback = functools.partial(_coo_matvec_jax, data_i=data_i, n_rows=n_rows)
    return _dispatch(data_i, x, fallback, n_out=n_rows, transpose=False)


def _coo_rmatvec(s, data_i, *, n_cols):
    fallback = functools.partial(_coo_rmatvec_jax, data_i=data_i, n_cols=n_cols)
    return _dispatch(data_i, s, fallback, n_out=n_cols, transpose=True)


# Fused data terms of a gradient: with a = M x (one entry per row), per-row weights w(a, y)
# and loss terms l(a, y), ``(sum_r l(a_r, y_r), Mᵀ w(a, y))``. The kernel (modes 2 and 3 of
# ``sparse.cc``: one pass over the rows on ``"coo"``, two over the sliced columns on
# ``"coo_t"``) returns a and Mᵀ w; the loss terms are computed from a and summed in JAX. (The
# loss terms in the sliced kernel, sharing the weight's exp, measured no faster: glibc's log1p
# per row cost as much as XLA's logaddexp, ≈ 0.16 ms per step for 20,000 rows.)


def _logistic_rows(a, y):
    z = -y * a
    return y * jax.nn.sigmoid(z), jnp.logaddexp(0.0, z)


def _least_squares_rows(a, y):
    r = a - y
    return r, 0.5 * (r * r)


#: fused data terms: kind -> (kernel mode, ``(a, y) -> (weights, loss terms)`` in JAX)
FUSED_TERMS = {"logistic": (2, _logistic_rows), "least_squares": (3, _least_squares_rows)}


def data_terms(packed: Packed, kind: str, x: Any, data_i: Any, y: Any) -> tuple[Any, Any]:
    """``(sum_r l((M x)_r, y_r), Mᵀ w(M x, y))`` of one worker (see :data:`FUSED_TERMS`).

    Logistic: ``w = y sigmoid(-y a)``, ``l = log(1 + exp(-y a))``; least squares: ``w = a - y``,
    ``l = (a - y)^2 / 2``. On CPU with the native kernel (layouts ``"coo"``/``"coo_t"``,
    float32/float64) one custom call serves all workers under ``vmap`` (``"coo"``: one pass
    over the rows; ``"coo_t"``: two over the sliced columns, see the module docstring);
    elsewhere ``packed.matvec``, the row functions and ``packed.rmatvec`` in JAX.
    The native path has no derivative (the problems give gradients directly; ``jax.grad`` of
    a loss goes through :attr:`Packed.matvec`, which has one).
    """
    check_choice("kind", kind, list(FUSED_TERMS))
    mode, rows_fn = FUSED_TERMS[kind]

    def fallback(v):
        w, terms = rows_fn(packed.matvec(v, data_i), y)
        return jnp.sum(terms), packed.rmatvec(w, data_i)

    if packed.layout not in ("coo", "coo_t"):
        return fallback(x)
    dtype = jnp.result_type(x, y, data_i["sp_vals"])
    if not native_available(dtype):
        return fallback(x)
    yy = jnp.asarray(y, dtype)
    if packed.layout == "coo_t":  # sliced columns
        args = (data_i["spc_ptr"], data_i["spc_lanes"], data_i["spc_rows"])
        args, target = (*args, data_i["spc_vals"].astype(dtype)), _native.SPARSE_SLICED_TARGETS
    else:  # CSR rows
        args = (data_i["sp_indptr"], data_i["sp_cols"], data_i["sp_vals"].astype(dtype))
        target = _native.SPARSE_TARGETS

    def native(v):
        outs = (jax.ShapeDtypeStruct(v.shape, dtype), jax.ShapeDtypeStruct(yy.shape, dtype))
        call = jax.ffi.ffi_call(target[dtype.name][0], outs, vmap_method="expand_dims")
        out, a = call(*args, v, yy, mode=np.int32(mode))
        return jnp.sum(rows_fn(a, yy)[1]), out

    return jax.lax.platform_dependent(jnp.asarray(x, dtype), cpu=native, default=fallback)


def _pack_coo(mats: list[sp.csr_array]) -> Packed:
    """Padded COO: rows sorted (CSR order); padding entries are ``(0, 0, 0.0)``.

    The CSR row pointers ``sp_indptr`` (``(n, m + 1)``, entries ``ptr[r]:ptr[r+1]`` of row
    ``r``; the padding lies past ``ptr[m]``) are kept too: the native kernel walks the rows by
    them and reads no row index per entry.
    """
    n, (m, d) = len(mats), mats[0].shape
    nnz = max(1, max(M.nnz for M in mats))
    if nnz >= 2**31:
        raise ValueError(f"a worker's matrix must have < 2**31 non-zeros (int32), got {nnz}")
    ptr = np.zeros((n, m + 1), np.int32)
    rows = np.zeros((n, nnz), np.int32)
    cols = np.zeros((n, nnz), np.int32)
    vals = np.zeros((n, nnz))
    for i, M in enumerate(mats):
        k = M.nnz
        ptr[i] = M.indptr
        rows[i, :k] = np.repeat(np.arange(m, dtype=np.int32), np.diff(M.indptr))
        cols[i, :k] = M.indices
        vals[i, :k] = M.data
    return Packed(
        "coo",
        {"sp_indptr": ptr, "sp_rows": rows, "sp_cols": cols, "sp_vals": vals},
        functools.partial(_coo_matvec, n_rows=m),
        functools.partial(_coo_rmatvec, n_cols=d),
    )


#: lanes (columns) per slice of the sliced-column copy of ``"coo_t"`` (``sparse.cc``)
SLICE = 8


def _sliced_columns(M: sp.csr_array) -> tuple[np.ndarray, ...]:
    """``(sptr, lanes, rows, vals)``: ``M`` in sliced columns (SELL-8 of ``Mᵀ``, ``sparse.cc``).

    The non-empty columns sorted by decreasing number of entries (ties by column index), eight
    per slice: slice ``k``'s lanes are the columns ``lanes[8k:8k+8]`` (``d`` marks an unused
    lane); its entries are ``rows/vals[sptr[k]:sptr[k+1]]``, entry ``j`` of lane ``l`` at
    ``sptr[k] + 8 j + l`` in increasing row order, a lane shorter than its slice padded with
    row ``m`` and value 0. Sorting makes the eight lanes of a slice nearly equally long: the
    padding is a few percent of the entries.
    """
    m, d = M.shape
    C = sp.csc_array(M)
    C.sort_indices()
    counts = np.diff(C.indptr)
    order = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
    ns = -(-order.size // SLICE)
    lanes = np.full(ns * SLICE, d, np.int64)
    lanes[: order.size] = order
    lane_len = np.zeros(ns * SLICE, np.int64)
    lane_len[: order.size] = counts[order]
    sptr = np.zeros(ns + 1, np.int64)
    np.cumsum(SLICE * lane_len[::SLICE], out=sptr[1:])  # lane 0 of a slice is its longest
    if sptr[-1] >= 2**31:
        raise ValueError(f"a worker's padded non-zeros must be < 2**31 (int32), got {sptr[-1]}")
    rows = np.full(sptr[-1], m, np.int32)
    vals = np.zeros(sptr[-1])
    lens = counts[order]
    q = np.repeat(np.arange(order.size), lens)  # lane of each stored entry, lane by lane
    j = np.arange(q.size) - np.repeat(np.cumsum(lens) - lens, lens)  # its place in the lane
    pos = sptr[q // SLICE] + SLICE * j + q % SLICE
    src = C.indptr[order[q]] + j
    rows[pos] = C.indices[src]
    vals[pos] = C.data[src]
    return sptr.astype(np.int32), lanes.astype(np.int32), rows, vals


def _sliced_rmatvec_jax(s, data_i, *, n_cols):
    """``Mᵀ s`` from the sliced columns: products, a sorted ``segment_sum`` of the groups of
    eight by slice, and the lanes' sums put in their columns."""
    sptr, lanes = data_i["spc_ptr"], data_i["spc_lanes"]
    dtype = jnp.result_type(data_i["spc_vals"], s)
    w = jnp.concatenate([s.astype(dtype), jnp.zeros((1,), dtype)])  # row m: the padding
    prod = (data_i["spc_vals"] * w[data_i["spc_rows"]]).reshape(-1, SLICE)
    # slice of each group; groups past sptr[-1] (padding to the workers' common length) get
    # the out-of-range id ns and are dropped
    group = jnp.searchsorted(sptr, SLICE * jnp.arange(prod.shape[0]), side="right") - 1
    per_lane = jax.ops.segment_sum(
        prod, group, num_segments=lanes.shape[0] // SLICE, indices_are_sorted=True
    )
    return jnp.zeros((n_cols,), dtype).at[lanes].set(per_lane.reshape(-1), mode="drop")


def _coo_sliced_rmatvec(s, data_i, *, n_cols):
    # the native kernel scatters from the row-sorted arrays; the sliced copy serves the
    # fallback here and the native fused data terms
    fallback = functools.partial(_sliced_rmatvec_jax, data_i=data_i, n_cols=n_cols)
    return _dispatch(data_i, s, fallback, n_out=n_cols, transpose=True)


def _pack_coo_t(mats: list[sp.csr_array]) -> Packed:
    """Padded COO plus a sliced-column copy (:func:`_sliced_columns`) for ``M_iᵀ s``.

    The copy (leaves ``spc_ptr``, ``spc_lanes``, ``spc_rows``, ``spc_vals``, padded to the
    workers' largest slice count and length) lets the native fused data terms make only
    random accesses to length-``m`` vectors, and the pure-JAX ``M_iᵀ s`` a sorted
    ``segment_sum``; 12 bytes per entry plus a few percent of padding.
    """
    base = _pack_coo(mats)
    (m, d), n = mats[0].shape, len(mats)
    parts = [_sliced_columns(M) for M in mats]
    ns = max(1, max(p[0].size - 1 for p in parts))
    nnz = max(SLICE, max(p[2].size for p in parts))
    t = {
        "spc_ptr": np.zeros((n, ns + 1), np.int32),
        "spc_lanes": np.full((n, SLICE * ns), d, np.int32),
        "spc_rows": np.full((n, nnz), m, np.int32),
        "spc_vals": np.zeros((n, nnz)),
    }
    for i, (sptr, lanes, rows, vals) in enumerate(parts):
        t["spc_ptr"][i, : sptr.size] = sptr
        t["spc_ptr"][i, sptr.size :] = sptr[-1]  # empty slices
        t["spc_lanes"][i, : lanes.size] = lanes
        t["spc_rows"][i, : rows.size] = rows
        t["spc_vals"][i, : vals.size] = vals
    return Packed(
        "coo_t",
        {**base.arrays, **t},
        base.matvec,
        functools.partial(_coo_sliced_rmatvec, n_cols=d),
    )


def _dia_offsets(mats: list[sp.csr_array]) -> np.ndarray:
    offs = [
        np.unique(M.indices - np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))) for M in mats
    ]
    out = np.unique(np.concatenate(offs)) if offs else np.zeros(0, np.int64)
    return out if out.size else np.zeros(1, np.int64)


def _dia_matvec(x, data_i, *, offsets):
    d = x.shape[0]
    p = max(abs(o) for o in offsets)
    xp = jnp.pad(x, (p, p))
    vals = data_i["sp_diags"]
    out = vals[0] * xp[p + offsets[0] : p + offsets[0] + d]
    for k, o in enumerate(offsets[1:], start=1):
        out = out + vals[k] * xp[p + o : p + o + d]
    return out


def _dia_rmatvec(s, data_i, *, offsets):
    # (Mᵀ s)[c] = sum_k M[c - o_k, c] s[c - o_k] = sum_k vals[k, c - o_k] s[c - o_k]
    d = s.shape[0]
    p = max(abs(o) for o in offsets)
    vs = jnp.pad(data_i["sp_diags"] * s[None, :], ((0, 0), (p, p)))
    out = vs[0, p - offsets[0] : p - offsets[0] + d]
    for k, o in enumerate(offsets[1:], start=1):
        out = out + vs[k, p - o : p - o + d]
    return out


def _pack_dia(mats: list[sp.csr_array]) -> Packed:
    """Diagonal storage of square matrices (row-aligned: ``vals[k, r] = M[r, r + o_k]``)."""
    m, d = mats[0].shape
    if m != d:
        raise ValueError(f"layout 'dia' needs square matrices, got shape {(m, d)}")
    offsets = _dia_offsets(mats)
    vals = np.zeros((len(mats), offsets.size, d))
    for i, M in enumerate(mats):
        r = np.repeat(np.arange(d), np.diff(M.indptr))
        k = np.searchsorted(offsets, M.indices - r)
        vals[i, k, r] = M.data
    offs = tuple(int(o) for o in offsets)
    return Packed(
        "dia",
        {"sp_diags": vals},
        functools.partial(_dia_matvec, offsets=offs),
        functools.partial(_dia_rmatvec, offsets=offs),
    )


#: sparse layouts: name -> packer ``(list of CSR) -> Packed``
LAYOUTS: Registry[Callable[[list[sp.csr_array]], Packed]] = Registry("sparse layout")
LAYOUTS.add("coo", _pack_coo, square_only=False)
LAYOUTS.add("coo_t", _pack_coo_t, square_only=False)
LAYOUTS.add("dia", _pack_dia, square_only=True)


def auto_layout(mats: list[sp.csr_array]) -> str:
    """``"dia"`` for square matrices with a narrow band (see :data:`DIA_MAX_FILL`), else ``"coo"``."""
    m, d = mats[0].shape
    if m != d:
        return "coo"
    nnz = max(1, max(M.nnz for M in mats))
    return "dia" if _dia_offsets(mats).size * d <= DIA_MAX_FILL * nnz else "coo"


def pack(mats: list[sp.csr_array], layout: str = "auto") -> Packed:
    """Pack per-worker CSR matrices in ``layout`` (``"auto"`` or a key of :data:`LAYOUTS`).

    Raises:
        ValueError: unknown layout, or ``"dia"`` for non-square matrices.
    """
    check_choice("layout", layout, ["auto", *LAYOUTS.names()])
    name = auto_layout(mats) if layout == "auto" else layout
    return LAYOUTS.get(name)(mats)


# ------------------------------------------------------------------------------ spectra


def _method(order: int, method: str) -> str:
    check_choice("method", method, ["auto", "dense", "lanczos"])
    if method == "auto":
        return "dense" if order <= DENSE_EIG_MAX_DIM else "lanczos"
    return method


def extreme_eigenvalue(A: Any, which: str, *, method: str = "auto", tol: float = LANCZOS_TOL):
    """One extreme eigenvalue of a symmetric sparse matrix or ``LinearOperator``.

    Args:
        A: symmetric ``(d, d)`` ``scipy.sparse`` matrix or ``LinearOperator``.
        which: ``"LA"`` (largest), ``"SA"`` (smallest) or ``"LM"`` (largest magnitude, returned
            with its sign).
        method: ``"dense"`` (``eigvalsh`` of the densified matrix, exact to rounding),
            ``"lanczos"`` (``eigsh``, relative accuracy ``tol``) or ``"auto"`` (dense for
            ``d <= DENSE_EIG_MAX_DIM``).

    Returns:
        The eigenvalue (float).
    """
    check_choice("which", which, ["LA", "SA", "LM"])
    d = A.shape[0]
    if _method(d, method) == "dense" or d < 3:  # ARPACK needs k < d - 1
        dense = A @ np.eye(d) if isinstance(A, spla.LinearOperator) else A.toarray()
        ev = np.linalg.eigvalsh(0.5 * (dense + dense.T))
        return float({"LA": ev[-1], "SA": ev[0], "LM": ev[np.argmax(np.abs(ev))]}[which])
    # deterministic random start: a constant vector is nearly orthogonal to some extreme
    # eigenvectors (the alternating top one of tridiag(-1, 2, -1)), and Lanczos then settles on
    # a neighbouring eigenvalue of a clustered spectrum
    v0 = np.random.default_rng(0).standard_normal(d)
    ncv = min(d - 1, LANCZOS_NCV)
    ev = spla.eigsh(A, k=1, which=which, tol=tol, v0=v0, ncv=ncv, return_eigenvectors=False)
    return float(ev[0])


def largest_singular_value_sq(M: sp.spmatrix, *, method: str = "auto", tol: float = LANCZOS_TOL):
    """``||M||_2^2 = lambda_max(MᵀM)``, from the smaller of the Gram matrices ``MᵀM``, ``MMᵀ``.

    The Gram matrix is applied as a ``LinearOperator`` (two sparse products per iteration) on
    the Lanczos path, and formed sparsely then densified (order <= DENSE_EIG_MAX_DIM) on the
    dense path.
    """
    m, d = M.shape
    M = sp.csr_array(M)
    MT = sp.csr_array(M.T)
    if m < d:
        M, MT = MT, M  # Gram of order min(m, d): MᵀM with M now (max, min)
    order = M.shape[1]
    if _method(order, method) == "dense" or order < 3:
        G = (MT @ M).toarray()
        return float(max(np.linalg.eigvalsh(0.5 * (G + G.T))[-1], 0.0))
    op = spla.LinearOperator((order, order), matvec=lambda v: MT @ (M @ v), dtype=np.float64)
    return float(max(extreme_eigenvalue(op, "LA", method="lanczos", tol=tol), 0.0))


def solve_positive_definite(A: Any, b: np.ndarray, *, method: str = "auto"):
    """``(x, how)`` with ``A x = b`` if the symmetric sparse ``A`` is positive definite, else
    ``(None, how)``.

    Positive definiteness: a sparse LU with diagonal pivots only (SuperLU,
    ``diag_pivot_thresh=0``, symmetric mode) factors ``P A Pᵀ = L U`` with a symmetric
    permutation when ``perm_r == perm_c``; then ``U = D Lᵀ`` and, by Sylvester's law of inertia,
    ``A`` is positive definite iff every pivot ``U_kk > 0``. The same factors solve for ``x``.
    When SuperLU permutes rows and columns differently (or the factor is singular) the smallest
    eigenvalue is computed instead (:func:`extreme_eigenvalue`, ``method``) and ``x`` by
    ``spsolve``.
    """
    A = sp.csc_array(A)
    try:
        lu = spla.splu(
            A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
        )
    except RuntimeError:  # exactly singular pivot
        lu = None
    if lu is not None and np.array_equal(lu.perm_r, lu.perm_c):
        if np.all(lu.U.diagonal() > 0):
            return lu.solve(np.asarray(b, np.float64)), "LDL^T pivots > 0 (sparse LU)"
        return None, "LDL^T pivot <= 0 (sparse LU): not positive definite"
    lam_min = extreme_eigenvalue(A, "SA", method=method)
    if lam_min <= 0:
        return None, f"lambda_min = {lam_min:.3g} <= 0 ({method} eigenvalue)"
    return spla.spsolve(A, np.asarray(b, np.float64)), "lambda_min > 0, spsolve"
