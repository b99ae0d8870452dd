// Exact Top-K by magnitude in O(d): the XLA FFI custom call behind ratedist's CPU Top-K.
//
// For every row of x (shape (..., d)) it returns the indices of the k entries of largest
// |x_i|, in increasing order (the caller gathers the values, which keeps them differentiable). The selected SET equals jax.lax.top_k(abs(x), k):
// magnitudes are compared as IEEE bit patterns with the sign bit cleared (a total order on
// which NaN ranks above +inf, as in XLA's TopK), and entries tied with the k-th largest
// magnitude are taken from the lowest index up. Cost: one pass over the row that
// collects the entries above a bracket taken from a strided sample, then std::nth_element
// on the collected keys (about 1.5-3 k of them, but at least ~8 d/1024 for very small k); a
// missed bracket falls back to all d entries.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename F>
using KeyOf = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;

constexpr int64_t kSample = 1024;  // strided sample used to bracket the k-th largest key

template <typename F>
struct Scratch {
  std::vector<KeyOf<F>> keys;  // keys of the candidates (reordered by the selection)
  std::vector<int32_t> where;  // their indices, increasing
};

template <typename F>
void SelectRow(const F* x, int64_t d, int64_t k, int32_t* idx, Scratch<F>& w) {
  using K = KeyOf<F>;
  constexpr K kMask = ~(K(1) << (8 * sizeof(K) - 1));
  auto key = [x](int64_t i) {
    K b;
    std::memcpy(&b, x + i, sizeof(K));
    return b & kMask;
  };
  w.keys.resize(static_cast<size_t>(d));
  w.where.resize(static_cast<size_t>(d));
  K* c = w.keys.data();
  int32_t* at = w.where.data();
  // 1. a lower bracket `lo` for the k-th largest key from a strided sample: its rank in the
  //    sample is the expected one plus 3 standard deviations plus 8, so that roughly 1.5-3 k
  //    keys (at least ~8 d/1024) are >= lo. Any lo is correct; a bad one only costs the fallback of step 2.
  K lo = 0;
  const int64_t s = std::min(d, kSample);
  const double expect = static_cast<double>(s) * static_cast<double>(k) / static_cast<double>(d);
  const auto r = static_cast<int64_t>(expect + 3.0 * std::sqrt(expect) + 8.0);
  if (r < s) {
    for (int64_t j = 0; j < s; ++j) c[j] = key(j * d / s);
    std::nth_element(c, c + (s - r), c + s);
    lo = c[s - r];
  }
  // 2. candidates: every key >= lo with its index (branch-free compaction, index order)
  int64_t m = 0;
  for (int64_t i = 0; i < d; ++i) {
    const K b = key(i);
    c[m] = b;
    at[m] = static_cast<int32_t>(i);
    m += b >= lo;
  }
  if (m < k) {  // the bracket missed: every entry is a candidate
    for (int64_t i = 0; i < d; ++i) {
      c[i] = key(i);
      at[i] = static_cast<int32_t>(i);
    }
    m = d;
  }
  // 3. the exact k-th largest key t, and how many keys equal to t to take
  std::nth_element(c, c + (m - k), c + m);
  const K t = c[m - k];
  int64_t above = 0;
  for (int64_t j = m - k + 1; j < m; ++j) above += c[j] > t;
  int64_t ties = k - above;  // lowest indices first
  // 4. emit from the candidates, in increasing index order
  int64_t out = 0;
  for (int64_t j = 0; j < m && out < k; ++j) {
    const int32_t i = at[j];
    const K b = key(i);
    if (b > t || (b == t && ties-- > 0)) {
      idx[out] = i;
      ++out;
    }
  }
}

template <ffi::DataType T>
ffi::Error TopKAbs(ffi::Buffer<T> x, ffi::ResultBuffer<ffi::S32> idx) {
  using F = ffi::NativeType<T>;
  auto dims = x.dimensions();
  auto odims = idx->dimensions();
  if (dims.size() == 0 || odims.size() != dims.size()) {
    return ffi::Error::InvalidArgument("ratedist top-k: x and the output need the same rank >= 1");
  }
  const int64_t d = dims.back();
  const int64_t k = odims.back();
  if (k < 1 || k > d) return ffi::Error::InvalidArgument("ratedist top-k: need 1 <= k <= d");
  if (d > INT32_MAX) return ffi::Error::InvalidArgument("ratedist top-k: d exceeds int32 indices");
  const int64_t rows = d == 0 ? 0 : static_cast<int64_t>(x.element_count()) / d;
  thread_local Scratch<F> work;
  const F* xp = x.typed_data();
  int32_t* ip = idx->typed_data();
  for (int64_t r = 0; r < rows; ++r) {
    SelectRow<F>(xp + r * d, d, k, ip + r * k, work);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistTopKAbsF32, TopKAbs<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistTopKAbsF64, TopKAbs<ffi::F64>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
