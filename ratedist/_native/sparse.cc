// Sparse matrix-vector products on ratedist's padded per-worker COO layout: the XLA FFI
// custom call behind ratedist.sim.problems.sparse on CPU.
//
// One matrix is stored as three arrays of equal length nnz (rows, cols: int32; vals: float),
// sorted by row (CSR order), padded at the end with explicit zeros (0, 0, 0.0). The kernel
// computes, in one pass over the entries in storage order,
//
//   transpose = 0:  out[rows[k]] += vals[k] * v[cols[k]]   (out = M v,  length = #rows)
//   transpose = 1:  out[cols[k]] += vals[k] * v[rows[k]]   (out = Mᵀ v, length = #cols)
//
// with out zero-initialized. Every product vals[k] * v[.] and every addition is that of the
// pure-JAX path (gather, multiply, segment_sum), entry by entry; with the entries in row order
// the transpose product adds the terms of each output in increasing row order, as a
// segment_sum over the column-sorted copy does. Equality to the pure-JAX path is therefore
// up to the summation order XLA's scatter uses, which is not specified (ratedist's tests allow
// a relative 1e-12 in float64, 1e-5 in float32). No FMA contraction (-ffp-contract=off).
//
// Batching (vmap with vmap_method="expand_dims"): every operand and the output carry the same
// number of leading batch dimensions; an operand's batch dimension is either the output's or
// 1 (broadcast, read without copying). A vector shared by all workers is therefore read in
// place, and one call serves all workers of a simulator step.
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

template <ffi::DataType T>
ffi::Error CooProduct(ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::S32> cols, ffi::Buffer<T> vals,
                      ffi::Buffer<T> v, ffi::ResultBuffer<T> out, int32_t transpose) {
  using F = ffi::NativeType<T>;
  const auto od = out->dimensions();
  const size_t rank = od.size();
  if (rank == 0 || rows.dimensions().size() != rank || cols.dimensions().size() != rank ||
      vals.dimensions().size() != rank || v.dimensions().size() != rank) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse product: operands and output need the same rank >= 1");
  }
  const int64_t nnz = vals.dimensions().back();
  if (rows.dimensions().back() != nnz || cols.dimensions().back() != nnz) {
    return ffi::Error::InvalidArgument(
        "ratedist sparse product: rows, cols and vals need the same length");
  }
  std::vector<int64_t> batch(od.begin(), od.end() - 1);
  int64_t n_batch = 1;
  for (size_t a = 0; a + 1 < rank; ++a) {
    for (auto dims : {rows.dimensions(), cols.dimensions(), vals.dimensions(), v.dimensions()}) {
      if (dims[a] != 1 && dims[a] != od[a]) {
        return ffi::Error::InvalidArgument(
            "ratedist sparse product: a batch dimension is neither 1 nor the output's");
      }
    }
    n_batch *= od[a];
  }
  const int64_t n_in = v.dimensions().back();
  const int64_t n_out = od.back();
  for (int64_t b = 0; b < n_batch; ++b) {
    Product<F>(rows.typed_data() + Offset(b, batch, rows.dimensions(), nnz),
               cols.typed_data() + Offset(b, batch, cols.dimensions(), nnz),
               vals.typed_data() + Offset(b, batch, vals.dimensions(), nnz), nnz,
               v.typed_data() + Offset(b, batch, v.dimensions(), n_in), n_in,
               out->typed_data() + b * n_out, n_out, transpose != 0);
  }
  return ffi::Error::Success();
}

}  // namespace

#define RD_SPARSE_HANDLER(name, T)                 \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, CooProduct<T>, \
                                ffi::Ffi::Bind()     \
                                    .Arg<ffi::Buffer<ffi::S32>>() \
                                    .Arg<ffi::Buffer<ffi::S32>>() \
                                    .Arg<ffi::Buffer<T>>()        \
                                    .Arg<ffi::Buffer<T>>()        \
                                    .Ret<ffi::Buffer<T>>()        \
                                    .Attr<int32_t>("transpose"));

RD_SPARSE_HANDLER(RatedistCooProductF32, ffi::F32)
RD_SPARSE_HANDLER(RatedistCooProductF64, ffi::F64)
