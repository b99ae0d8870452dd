// Sparse matrix-vector products on ratedist's padded per-worker COO layout, and the fused
// data terms of the sparse logistic and least-squares gradients: the XLA FFI custom call
// behind ratedist.sim.problems.sparse on CPU.
//
// One matrix M (m x d) is stored as three arrays of equal length nnz (rows, cols: int32; vals:
// float), sorted by row (CSR order), padded at the end with explicit zeros (0, 0, 0.0). Modes
// (attribute `mode`), with out zero-initialized:
//
//   0 (M v):   out[rows[k]] += vals[k] * v[cols[k]]   (length m), one pass in storage order;
//   1 (Mᵀ v):  out[cols[k]] += vals[k] * v[rows[k]]   (length d), one pass in storage order;
//   2 (logistic): a = M v, out = Mᵀ (y * sigmoid(-y * a));
//   3 (least squares): a = M v, out = Mᵀ (a - y).
//
// The second output holds a = M v in modes 2 and 3 (the caller computes the loss from it,
// vectorized by XLA) and a single 0 in modes 0 and 1, where y is a dummy of length 1.
//
// Modes 2 and 3 read each row's entries once from memory: the row's dot product is summed in
// a register, its weight (y_r sigmoid(-y_r a_r), or a_r - y_r) computed, and the same entries, still in
// L1, scattered into out. Entries after the row index first decreases are the layout's
// padding and are skipped (they hold 0.0); rows without entries have a_r = 0 and add nothing
// to out. The caller scales by 1/m and adds the regulariser.
//
// Every product vals[k] * v[.] and every addition is that of the pure-JAX path (gather,
// multiply, segment_sum), entry by entry: a row's sum is 0 + t_1 + t_2 + ... in storage order,
// and, with the entries in row order, the terms of each (Mᵀ v)[c] are added in increasing row
// order, as a segment_sum over the column-sorted copy does. Agreement with the pure-JAX path
// is therefore up to the order XLA's reductions use and the last bits of exp (ratedist's
// tests allow a relative 1e-12 in float64, 1e-5 in float32). No FMA contraction
// (-ffp-contract=off).
//
// Batching (vmap with vmap_method="expand_dims"): every operand and output carries the same
// number of leading batch dimensions; an operand's batch dimension is either the outputs' or
// 1 (broadcast, read in place). A vector shared by all workers is therefore not copied, and
// one call serves all workers of a simulator step.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#define RD_INLINE inline __attribute__((always_inline))

// Offset (in elements) of batch item b of an operand of batch shape `dims` (each 1 or the
// output's) and row length `len`, given the output's batch shape `out`.
int64_t Offset(int64_t b, const std::vector<int64_t>& out, ffi::Span<const int64_t> dims,
               int64_t len) {
  int64_t off = 0, stride = len;
  for (int64_t a = static_cast<int64_t>(out.size()) - 1; a >= 0; --a) {
    const int64_t i = b % out[a];
    b /= out[a];
    if (dims[a] != 1) off += i * stride;
    stride *= dims[a];
  }
  return off;
}

template <typename F>
RD_INLINE bool InRange(int32_t i, int64_t n) {
  return static_cast<uint64_t>(static_cast<uint32_t>(i)) < static_cast<uint64_t>(n);
}

// out = M v: the entries of a row are consecutive, so the row's sum is kept in a register
// (0 + t_1 + t_2 + ..., the order of a sequential segment_sum) and stored when the row changes.
template <typename F>
void RowProduct(const int32_t* __restrict rows, const int32_t* __restrict cols,
                const F* __restrict vals, int64_t nnz, const F* __restrict v, int64_t n_in,
                F* __restrict out, int64_t n_out) {
  int32_t cur = -1;
  F acc = 0;
  for (int64_t k = 0; k < nnz; ++k) {
    const int32_t i = rows[k], j = cols[k];
    // out-of-range indices (only from malformed input) are skipped, as XLA drops them
    if (!InRange<F>(i, n_out) || !InRange<F>(j, n_in)) continue;
    if (i != cur) {
      if (cur >= 0) out[cur] += acc;
      cur = i;
      acc = 0;
    }
    acc += vals[k] * v[j];
  }
  if (cur >= 0) out[cur] += acc;
}

// out = Mᵀ v: a scatter; the terms of out[c] arrive in increasing row order.
template <typename F>
void ColProduct(const int32_t* __restrict rows, const int32_t* __restrict cols,
                const F* __restrict vals, int64_t nnz, const F* __restrict v, int64_t n_in,
                F* __restrict out, int64_t n_out) {
  for (int64_t k = 0; k < nnz; ++k) {
    const int32_t i = cols[k], j = rows[k];
    if (!InRange<F>(i, n_out) || !InRange<F>(j, n_in)) continue;
    out[i] += vals[k] * v[j];
  }
}

// Per-row weight of the fused modes, from the row's dot product `a` and y_r.
template <typename F>
struct Logistic {
  static RD_INLINE F Weight(F a, F y) { return y * (F(1) / (F(1) + std::exp(y * a))); }
};

template <typename F>
struct LeastSquares {
  static RD_INLINE F Weight(F a, F y) { return a - y; }
};

// out = Mᵀ w(M v, y) and dots = M v, reading each row's entries once.
template <typename F, typename Fn>
void Fused(const int32_t* __restrict rows, const int32_t* __restrict cols,
           const F* __restrict vals, int64_t nnz, const F* __restrict v, int64_t d,
           const F* __restrict y, int64_t m, F* __restrict out, F* __restrict dots) {
  std::memset(out, 0, sizeof(F) * static_cast<size_t>(d));
  std::memset(dots, 0, sizeof(F) * static_cast<size_t>(m));
  int32_t prev = -1;
  int64_t k = 0;
  while (k < nnz) {
    const int32_t r = rows[k];
    if (r < prev || !InRange<F>(r, m)) break;  // the padding (or malformed input) starts
    int64_t end = k;
    F acc = 0;
    for (; end < nnz && rows[end] == r; ++end) {
      const int32_t j = cols[end];
      if (InRange<F>(j, d)) acc += vals[end] * v[j];
    }
    dots[r] = acc;
    const F w = Fn::Weight(acc, y[r]);
    for (int64_t e = k; e < end; ++e) {
      const int32_t j = cols[e];
      if (InRange<F>(j, d)) out[j] += vals[e] * w;
    }
    prev = r;
    k = end;
  }
}

template <typename F>
void Product(const int32_t* rows, const int32_t* cols, const F* vals, int64_t nnz, const F* v,
             int64_t n_in, F* out, int64_t n_out, bool transpose) {
  std::memset(out, 0, sizeof(F) * static_cast<size_t>(n_out));
  if (transpose) {
    ColProduct<F>(rows, cols, vals, nnz, v, n_in, out, n_out);
  } else {
    RowProduct<F>(rows, cols, vals, nnz, v, n_in, out, n_out);
  }
}

enum Mode : int32_t { kMatvec = 0, kRmatvec = 1, kLogistic = 2, kLeastSquares = 3 };

template <ffi::DataType T>
ffi::Error CooKernel(ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::S32> cols, ffi::Buffer<T> vals,
                     ffi::Buffer<T> v, ffi::Buffer<T> y, ffi::ResultBuffer<T> out,
                     ffi::ResultBuffer<T> dots, int32_t mode) {
  using F = ffi::NativeType<T>;
  if (mode < kMatvec || mode > kLeastSquares) {
    return ffi::Error::InvalidArgument("ratedist sparse kernel: unknown mode");
  }
  const auto od = out->dimensions();
  const size_t rank = od.size();
  for (auto dims : {rows.dimensions(), cols.dimensions(), vals.dimensions(), v.dimensions(),
                    y.dimensions(), dots->dimensions()}) {
    if (rank == 0 || dims.size() != rank) {
      return ffi::Error::InvalidArgument(
          "ratedist sparse kernel: operands and outputs need the same rank >= 1");
    }
  }
  const int64_t nnz = vals.dimensions().back();
  if (rows.dimensions().back() != nnz || cols.dimensions().back() != nnz) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse kernel: rows, cols and vals need the same length");
  }
  std::vector<int64_t> batch(od.begin(), od.end() - 1);
  int64_t n_batch = 1;
  for (size_t a = 0; a + 1 < rank; ++a) {
    for (auto dims : {rows.dimensions(), cols.dimensions(), vals.dimensions(), v.dimensions(),
                      y.dimensions(), dots->dimensions()}) {
      if (dims[a] != 1 && dims[a] != od[a]) {
        return ffi::Error::InvalidArgument(
            "ratedist sparse kernel: a batch dimension is neither 1 nor the output's");
      }
    }
    n_batch *= od[a];
  }
  if (dots->dimensions().back() != y.dimensions().back()) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse kernel: the second output needs the length of y");
  }
  const int64_t n_in = v.dimensions().back();
  const int64_t n_out = od.back();
  const int64_t m = y.dimensions().back();
  const int64_t n_dots = dots->dimensions().back();
  for (int64_t b = 0; b < n_batch; ++b) {
    const int32_t* rp = rows.typed_data() + Offset(b, batch, rows.dimensions(), nnz);
    const int32_t* cp = cols.typed_data() + Offset(b, batch, cols.dimensions(), nnz);
    const F* ap = vals.typed_data() + Offset(b, batch, vals.dimensions(), nnz);
    const F* vp = v.typed_data() + Offset(b, batch, v.dimensions(), n_in);
    const F* yp = y.typed_data() + Offset(b, batch, y.dimensions(), m);
    F* op = out->typed_data() + b * n_out;
    F* dp = dots->typed_data() + b * n_dots;
    if (mode == kLogistic || mode == kLeastSquares) {
      if (n_out != n_in) {
        return ffi::Error::InvalidArgument(
            "ratedist sparse kernel: the fused modes need len(out) == len(v)");
      }
      if (mode == kLogistic) {
        Fused<F, Logistic<F>>(rp, cp, ap, nnz, vp, n_in, yp, m, op, dp);
      } else {
        Fused<F, LeastSquares<F>>(rp, cp, ap, nnz, vp, n_in, yp, m, op, dp);
      }
    } else {
      Product<F>(rp, cp, ap, nnz, vp, n_in, op, n_out, mode == kRmatvec);
      std::memset(dp, 0, sizeof(F) * static_cast<size_t>(n_dots));
    }
  }
  return ffi::Error::Success();
}

}  // namespace

#define RD_SPARSE_HANDLER(name, T)                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, CooKernel<T>,                  \
                                ffi::Ffi::Bind()                     \
                                    .Arg<ffi::Buffer<ffi::S32>>()    \
                                    .Arg<ffi::Buffer<ffi::S32>>()    \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Ret<ffi::Buffer<T>>()           \
                                    .Ret<ffi::Buffer<T>>()           \
                                    .Attr<int32_t>("mode"));

RD_SPARSE_HANDLER(RatedistCooProductF32, ffi::F32)
RD_SPARSE_HANDLER(RatedistCooProductF64, ffi::F64)
