// Sparse matrix-vector products on ratedist's padded per-worker CSR/COO layout, and the fused
// data terms of the sparse logistic and least-squares gradients: the XLA FFI custom call
// behind ratedist.sim.problems.sparse on CPU.
//
// One matrix M (m x d) is given by its CSR row pointers ptr (int32, length m + 1: row r's
// entries are ptr[r] .. ptr[r+1] - 1), and two arrays of equal length nnz, cols (int32) and
// vals (float), whose entries past ptr[m] are the layout's padding and are not read. Modes
// (attribute `mode`):
//
//   0 (M v):   out[r] = sum_e vals[e] v[cols[e]] over row r's entries   (length m);
//   1 (Mᵀ v):  out[cols[e]] += vals[e] v[r] over row r's entries        (length d);
//   2 (logistic): a = M v, out = Mᵀ (y * sigmoid(-y * a));
//   3 (least squares): a = M v, out = Mᵀ (a - y).
//
// The second output holds a = M v in modes 2 and 3 (the caller computes the loss from it,
// vectorized by XLA) and a single 0 in modes 0 and 1, where y is a dummy of length 1. The
// caller scales by 1/m and adds the regulariser.
//
// Walking the rows by ptr reads 12 bytes per entry (cols, vals) and no row index. Modes 2 and
// 3 read each row's entries once from memory: the row's dot product and weight, then the
// same entries, still in L1, scattered into out. A row's dot product is summed in
// four interleaved partial sums (entry e into sum e mod 4, combined as (s0 + s1) + (s2 + s3)):
// one running sum would make every addition wait for the previous one, a latency-bound
// chain of one entry per 3-4 cycles. This is a different order from the pure-JAX path's
// sequential segment_sum (and from scipy's CSR product): for a row with n terms t_k the two
// differ by at most about 2 n eps sum_k |t_k| (Higham, "Accuracy and Stability of Numerical
// Algorithms", 2nd ed., 2002, sec. 4.2); ratedist's tests compare with scipy and the
// pure-JAX path to 1e-12 of the largest reference entry in float64 (1e-5 in float32). The terms of each (Mᵀ v)[c] are added in increasing row order, as a segment_sum
// over the column-sorted copy does. No FMA contraction (-ffp-contract=off).
//
// Entries whose column index lies outside [0, d) are skipped, as XLA's gather and segment_sum
// drop them; ptr must be non-decreasing within [0, nnz] (checked in O(m), an InvalidArgument
// error otherwise).
//
// Batching (vmap with vmap_method="expand_dims"): every operand and output carries the same
// number of leading batch dimensions; an operand's batch dimension is either the outputs' or
// 1 (broadcast, read in place). A vector shared by all workers is therefore not copied, and
// one call serves all workers of a simulator step.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
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

// Column index j is in [0, n) (out-of-range indices come only from malformed input; the
// loops skip them, as XLA's gather/segment_sum drop them: a predictable branch per entry,
// measured faster than a separate range check of each row's indices).
RD_INLINE bool InRange(int32_t j, int64_t n) {
  return static_cast<uint64_t>(static_cast<uint32_t>(j)) < static_cast<uint64_t>(n);
}

// sum_e vals[e] v[cols[e]] over one row in four interleaved partial sums (entry e into sum
// e mod 4, combined as (s0 + s1) + (s2 + s3)): independent sums let the gathers of v and the
// additions of consecutive entries overlap.
template <typename F>
RD_INLINE F RowDot(const int32_t* __restrict cols, const F* __restrict vals, int64_t len,
                   const F* __restrict v, int64_t d) {
  F s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t e = 0;
  for (; e + 4 <= len; e += 4) {
    if (InRange(cols[e], d)) s0 += vals[e] * v[cols[e]];
    if (InRange(cols[e + 1], d)) s1 += vals[e + 1] * v[cols[e + 1]];
    if (InRange(cols[e + 2], d)) s2 += vals[e + 2] * v[cols[e + 2]];
    if (InRange(cols[e + 3], d)) s3 += vals[e + 3] * v[cols[e + 3]];
  }
  if (e < len && InRange(cols[e], d)) s0 += vals[e] * v[cols[e]];
  if (e + 1 < len && InRange(cols[e + 1], d)) s1 += vals[e + 1] * v[cols[e + 1]];
  if (e + 2 < len && InRange(cols[e + 2], d)) s2 += vals[e + 2] * v[cols[e + 2]];
  return (s0 + s1) + (s2 + s3);
}

// out[cols[e]] += vals[e] * w over one row (its columns are distinct: the updates are
// independent).
template <typename F>
RD_INLINE void RowAxpy(const int32_t* __restrict cols, const F* __restrict vals, int64_t len,
                       F w, F* __restrict out, int64_t d) {
  for (int64_t e = 0; e < len; ++e) {
    if (InRange(cols[e], d)) out[cols[e]] += vals[e] * w;
  }
}

// Per-row weight of the fused modes, from the row's dot product `a` and label/target y.
// (The loss terms are left to the caller, vectorized by XLA: computing them here, one more
// libm call per row inside the row loop, measured slower.)
template <typename F>
struct Logistic {
  static RD_INLINE F Weight(F a, F y) { return y * (F(1) / (F(1) + std::exp(y * a))); }
};

template <typename F>
struct LeastSquares {
  static RD_INLINE F Weight(F a, F y) { return a - y; }
};

// No weight: Mᵀ v with v_r the weight of row r.
template <typename F>
struct Identity {};

// Row r's entries are [ptr[r], ptr[r+1]) of cols and vals; out and dots are overwritten.
//   Fn = void, kDot:         dots = M v (out unused);
//   Fn = Identity, !kDot:    out = Mᵀ y;
//   Fn = Logistic/LeastSquares, kDot: out = Mᵀ w(M v, y), dots = M v.
template <typename F, typename Fn, bool kDot>
void Rows(const int32_t* __restrict ptr, const int32_t* __restrict cols,
          const F* __restrict vals, int64_t m, const F* __restrict v, int64_t d,
          const F* __restrict y, F* __restrict out, F* __restrict dots) {
  constexpr bool kScatter = !std::is_void<Fn>::value;
  if (kScatter) std::memset(out, 0, sizeof(F) * static_cast<size_t>(d));
  for (int64_t r = 0; r < m; ++r) {
    const int64_t b = ptr[r], len = ptr[r + 1] - b;
    const int32_t* c = cols + b;
    const F* a = vals + b;
    F acc = 0;
    if (kDot) {
      acc = RowDot<F>(c, a, len, v, d);
      dots[r] = acc;
    }
    if constexpr (kScatter) {
      F w;
      if constexpr (std::is_same<Fn, Identity<F>>::value) {
        w = y[r];
      } else {
        w = Fn::Weight(acc, y[r]);
      }
      RowAxpy<F>(c, a, len, w, out, d);
    }
  }
}

// 0 <= ptr[0] <= ptr[1] <= ... <= ptr[m] <= nnz.
bool ValidPointers(const int32_t* ptr, int64_t m, int64_t nnz) {
  if (ptr[0] < 0) return false;
  for (int64_t r = 0; r < m; ++r) {
    if (ptr[r + 1] < ptr[r]) return false;
  }
  return ptr[m] <= nnz;
}

enum Mode : int32_t { kMatvec = 0, kRmatvec = 1, kLogistic = 2, kLeastSquares = 3 };

template <ffi::DataType T>
ffi::Error CsrKernel(ffi::Buffer<ffi::S32> ptr, ffi::Buffer<ffi::S32> cols, ffi::Buffer<T> vals,
                     ffi::Buffer<T> v, ffi::Buffer<T> y, ffi::ResultBuffer<T> out,
                     ffi::ResultBuffer<T> dots, int32_t mode) {
  using F = ffi::NativeType<T>;
  if (mode < kMatvec || mode > kLeastSquares) {
    return ffi::Error::InvalidArgument("ratedist sparse kernel: unknown mode");
  }
  const auto od = out->dimensions();
  const size_t rank = od.size();
  for (auto dims : {ptr.dimensions(), cols.dimensions(), vals.dimensions(), v.dimensions(),
                    y.dimensions(), dots->dimensions()}) {
    if (rank == 0 || dims.size() != rank) {
      return ffi::Error::InvalidArgument(
          "ratedist sparse kernel: operands and outputs need the same rank >= 1");
    }
  }
  const int64_t nnz = vals.dimensions().back();
  if (cols.dimensions().back() != nnz) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse kernel: cols and vals need the same length");
  }
  const int64_t m = ptr.dimensions().back() - 1;  // rows of M
  if (m < 0) {
    return ffi::Error::InvalidArgument("ratedist sparse kernel: the row pointers are empty");
  }
  std::vector<int64_t> batch(od.begin(), od.end() - 1);
  int64_t n_batch = 1;
  for (size_t a = 0; a + 1 < rank; ++a) {
    for (auto dims : {ptr.dimensions(), cols.dimensions(), vals.dimensions(), v.dimensions(),
                      y.dimensions(), dots->dimensions()}) {
      if (dims[a] != 1 && dims[a] != od[a]) {
        return ffi::Error::InvalidArgument(
            "ratedist sparse kernel: a batch dimension is neither 1 nor the output's");
      }
    }
    n_batch *= od[a];
  }
  const int64_t n_in = v.dimensions().back();
  const int64_t n_out = od.back();
  const int64_t n_y = y.dimensions().back();
  const int64_t n_dots = dots->dimensions().back();
  if (n_dots != n_y) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse kernel: the second output needs the length of y");
  }
  const bool fused = mode == kLogistic || mode == kLeastSquares;
  if (fused ? (n_out != n_in || n_y != m) : (mode == kMatvec ? n_out : n_in) != m) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse kernel: lengths do not match the number of rows (M v: len(out); "
        "Mᵀ v: len(v); fused: len(y), with len(out) == len(v))");
  }
  for (int64_t b = 0; b < n_batch; ++b) {
    const int32_t* pp = ptr.typed_data() + Offset(b, batch, ptr.dimensions(), m + 1);
    const int32_t* cp = cols.typed_data() + Offset(b, batch, cols.dimensions(), nnz);
    const F* ap = vals.typed_data() + Offset(b, batch, vals.dimensions(), nnz);
    const F* vp = v.typed_data() + Offset(b, batch, v.dimensions(), n_in);
    const F* yp = y.typed_data() + Offset(b, batch, y.dimensions(), n_y);
    F* op = out->typed_data() + b * n_out;
    F* dp = dots->typed_data() + b * n_dots;
    if (!ValidPointers(pp, m, nnz)) {
      return ffi::Error::InvalidArgument(
          "ratedist sparse kernel: row pointers must be non-decreasing within [0, nnz]");
    }
    switch (mode) {
      case kMatvec:
        Rows<F, void, true>(pp, cp, ap, m, vp, n_in, nullptr, nullptr, op);
        break;
      case kRmatvec:
        Rows<F, Identity<F>, false>(pp, cp, ap, m, nullptr, n_out, vp, op, nullptr);
        break;
      case kLogistic:
        Rows<F, Logistic<F>, true>(pp, cp, ap, m, vp, n_in, yp, op, dp);
        break;
      default:
        Rows<F, LeastSquares<F>, true>(pp, cp, ap, m, vp, n_in, yp, op, dp);
    }
    if (!fused) std::memset(dp, 0, sizeof(F) * static_cast<size_t>(n_dots));
  }
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------- sliced columns
//
// The fused data terms again (modes 2 and 3), from a second copy of M in sliced columns (the
// SELL-8 format of Mᵀ; Kreutzer et al., "A unified sparse matrix data format for efficient
// general sparse matrix-vector multiplication on modern processors with wide SIMD units",
// SIAM J. Sci. Comput. 36(5), 2014): the non-empty columns of M, sorted by decreasing number
// of entries, are grouped eight at a time into slices; slice k's lanes hold the columns
// lanes[8k .. 8k+7] (a column index outside [0, d) marks an unused lane) and its entries are
// rows/vals[sptr[k] .. sptr[k+1]) in groups of eight, entry j of lane l at sptr[k] + 8 j + l,
// each lane's entries in increasing row order, a lane shorter than the slice padded with
// row index m (a zero slot) and value 0.
//
// Both products then make only random accesses to vectors of length m + 1, which stay in L1
// when m is a few thousand, and stream the entries twice; the row-wise fused pass above makes
// a random read of v and a random update of out (length d) per entry, which miss L1 once d
// is a few ten thousand:
//   1. a = M v:  s[rows[e]] += vals[e] v[lane column]  (s in L1, v read once per lane);
//   2. weights w_r = w(a_r, y_r) in s (s[m] = 0);
//   3. out[lane column] = sum_j vals[e] s[rows[e]] in the lane's register, in increasing row
//      order (the order of a sequential column sum; scipy's CSC product sums the same way),
//      columns in no slice get 0.
// a_r is summed in the order of the slices (columns by decreasing count), not by increasing
// column: the same error bound as above. Row indices outside [0, m] skip their entry.

// 0 <= sptr[0] <= ... <= sptr[ns] <= nnz, each slice a whole number of groups of eight.
bool ValidSlices(const int32_t* sptr, int64_t ns, int64_t nnz) {
  if (sptr[0] < 0 || sptr[0] % 8 != 0) return false;
  for (int64_t k = 0; k < ns; ++k) {
    if (sptr[k + 1] < sptr[k] || (sptr[k + 1] - sptr[k]) % 8 != 0) return false;
  }
  return sptr[ns] <= nnz;
}

// Steps 1-3 for one worker; s has length m + 1 (scratch).
template <typename F, typename Fn>
void SlicedTerms(const int32_t* __restrict sptr, const int32_t* __restrict lanes,
                 const int32_t* __restrict rows, const F* __restrict vals, int64_t ns, int64_t m,
                 const F* __restrict v, int64_t d, const F* __restrict y, F* __restrict out,
                 F* __restrict dots, F* __restrict s) {
  std::memset(s, 0, sizeof(F) * static_cast<size_t>(m + 1));
  for (int64_t k = 0; k < ns; ++k) {
    F vl[8];
    for (int l = 0; l < 8; ++l) vl[l] = InRange(lanes[8 * k + l], d) ? v[lanes[8 * k + l]] : F(0);
    for (int64_t e = sptr[k]; e < sptr[k + 1]; e += 8) {
      for (int l = 0; l < 8; ++l) {
        if (InRange(rows[e + l], m + 1)) s[rows[e + l]] += vals[e + l] * vl[l];
      }
    }
  }
  for (int64_t r = 0; r < m; ++r) {
    dots[r] = s[r];
    s[r] = Fn::Weight(s[r], y[r]);
  }
  s[m] = 0;
  std::memset(out, 0, sizeof(F) * static_cast<size_t>(d));
  for (int64_t k = 0; k < ns; ++k) {
    F acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t e = sptr[k]; e < sptr[k + 1]; e += 8) {
      for (int l = 0; l < 8; ++l) {
        if (InRange(rows[e + l], m + 1)) acc[l] += vals[e + l] * s[rows[e + l]];
      }
    }
    for (int l = 0; l < 8; ++l) {
      if (InRange(lanes[8 * k + l], d)) out[lanes[8 * k + l]] = acc[l];
    }
  }
}

// Operands: sptr (ns + 1), lanes (8 ns), rows and vals (nnz), v (d), y (m); outputs out (d)
// and a = M v (m); `mode` 2 (logistic) or 3 (least squares). Batching as for CsrKernel.
template <ffi::DataType T>
ffi::Error SlicedKernel(ffi::Buffer<ffi::S32> sptr, ffi::Buffer<ffi::S32> lanes,
                        ffi::Buffer<ffi::S32> rows, ffi::Buffer<T> vals, ffi::Buffer<T> v,
                        ffi::Buffer<T> y, ffi::ResultBuffer<T> out, ffi::ResultBuffer<T> dots,
                        int32_t mode) {
  using F = ffi::NativeType<T>;
  if (mode != kLogistic && mode != kLeastSquares) {
    return ffi::Error::InvalidArgument("ratedist sliced kernel: mode must be 2 or 3");
  }
  const auto od = out->dimensions();
  const size_t rank = od.size();
  for (auto dims : {sptr.dimensions(), lanes.dimensions(), rows.dimensions(), vals.dimensions(),
                    v.dimensions(), y.dimensions(), dots->dimensions()}) {
    if (rank == 0 || dims.size() != rank) {
      return ffi::Error::InvalidArgument(
          "ratedist sliced kernel: operands and outputs need the same rank >= 1");
    }
  }
  const int64_t ns = sptr.dimensions().back() - 1, nnz = vals.dimensions().back();
  const int64_t d = od.back(), m = y.dimensions().back();
  if (ns < 0 || lanes.dimensions().back() != 8 * ns || rows.dimensions().back() != nnz ||
      v.dimensions().back() != d || dots->dimensions().back() != m) {
    return ffi::Error::InvalidArgument(
        "ratedist sliced kernel: lengths must be sptr ns + 1, lanes 8 ns, rows = vals, "
        "v = out, y = the second output");
  }
  std::vector<int64_t> batch(od.begin(), od.end() - 1);
  int64_t n_batch = 1;
  for (size_t a = 0; a + 1 < rank; ++a) {
    for (auto dims : {sptr.dimensions(), lanes.dimensions(), rows.dimensions(),
                      vals.dimensions(), v.dimensions(), y.dimensions(), dots->dimensions()}) {
      if (dims[a] != 1 && dims[a] != od[a]) {
        return ffi::Error::InvalidArgument(
            "ratedist sliced kernel: a batch dimension is neither 1 nor the output's");
      }
    }
    n_batch *= od[a];
  }
  std::vector<F> scratch(static_cast<size_t>(m + 1));
  for (int64_t b = 0; b < n_batch; ++b) {
    const int32_t* sp = sptr.typed_data() + Offset(b, batch, sptr.dimensions(), ns + 1);
    const int32_t* lp = lanes.typed_data() + Offset(b, batch, lanes.dimensions(), 8 * ns);
    const int32_t* rp = rows.typed_data() + Offset(b, batch, rows.dimensions(), nnz);
    const F* ap = vals.typed_data() + Offset(b, batch, vals.dimensions(), nnz);
    const F* vp = v.typed_data() + Offset(b, batch, v.dimensions(), d);
    const F* yp = y.typed_data() + Offset(b, batch, y.dimensions(), m);
    if (!ValidSlices(sp, ns, nnz)) {
      return ffi::Error::InvalidArgument(
          "ratedist sliced kernel: slice pointers must be non-decreasing multiples of 8 "
          "apart within [0, nnz]");
    }
    F* op = out->typed_data() + b * d;
    F* dp = dots->typed_data() + b * m;
    if (mode == kLogistic) {
      SlicedTerms<F, Logistic<F>>(sp, lp, rp, ap, ns, m, vp, d, yp, op, dp, scratch.data());
    } else {
      SlicedTerms<F, LeastSquares<F>>(sp, lp, rp, ap, ns, m, vp, d, yp, op, dp, scratch.data());
    }
  }
  return ffi::Error::Success();
}

}  // namespace

#define RD_SPARSE_HANDLER(name, T)                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, CsrKernel<T>,                  \
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

#define RD_SLICED_HANDLER(name, T)                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, SlicedKernel<T>,               \
                                ffi::Ffi::Bind()                     \
                                    .Arg<ffi::Buffer<ffi::S32>>()    \
                                    .Arg<ffi::Buffer<ffi::S32>>()    \
                                    .Arg<ffi::Buffer<ffi::S32>>()    \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Arg<ffi::Buffer<T>>()           \
                                    .Ret<ffi::Buffer<T>>()           \
                                    .Ret<ffi::Buffer<T>>()           \
                                    .Attr<int32_t>("mode"));

RD_SLICED_HANDLER(RatedistSlicedTermsF32, ffi::F32)
RD_SLICED_HANDLER(RatedistSlicedTermsF64, ffi::F64)
