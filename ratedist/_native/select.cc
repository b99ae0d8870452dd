// Exact Top-K by magnitude in O(d): the XLA FFI custom call behind ratedist's CPU Top-K.
//
// For every row of x (shape (..., d)) it returns the indices of the k entries of largest
// |x_i|, in increasing order (the caller gathers the values, which keeps them
// differentiable), and a flag (int32, one per row): 1 if some non-finite entry of the row
// was not selected (the sparse non-finite policy of the compressors needs it; see
// UnsentNonFinite). The selected SET equals jax.lax.top_k(abs(x), k): magnitudes are compared
// as IEEE bit patterns with the sign bit cleared (a total order on which NaN ranks above +inf,
// as in XLA's TopK), and entries tied with the k-th largest magnitude are taken from the
// lowest index up.
//
// Per row (cost O(d); the constant is one SIMD read of the row):
//   1. a lower bracket lo of the k-th largest key t from a strided sample of 1024 keys
//      (roughly 1.5-3 k keys, at least ~8 d / 1024, are >= lo). Any lo is correct: a bad one
//      only costs time (step 2).
//   2. one pass collects the keys >= lo with their indices, in index order (AVX-512:
//      compare, then compress in registers, 64 keys at a time; AVX2: lane packing by a
//      permutation table; otherwise groups of 64 without a candidate are skipped by a
//      vectorized max and the others compacted branch-free). If fewer than k keys are >= lo,
//      every entry is a candidate.
//   3. t by a radix select among the candidates (11-bit histograms over the candidates' key
//      range, then std::nth_element on the few keys left), and how many keys equal to t to
//      take: the first k - #{keys > t} of them in index order.
//   4. the candidates >= t up to the last tie taken and > t after it are emitted in index
//      order (AVX-512: compress in registers).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

#define RD_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// The row function is compiled for AVX-512, AVX2 and the x86-64 baseline; the loader picks
// one (GCC function multiversioning). Only integer compares and counts: the same result on
// all. The candidate pass also has AVX-512 and AVX2 intrinsics versions and the emission an
// AVX-512 one, used when the CPU has them (for testing, RATEDIST_SELECT_NO_AVX512 compiles
// the AVX-512 ones out and RATEDIST_SELECT_PORTABLE all of them).
#define RD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#ifndef RATEDIST_SELECT_PORTABLE
#include <immintrin.h>
#define RD_X86_AVX2 1
#ifndef RATEDIST_SELECT_NO_AVX512
#define RD_X86_AVX512 1
#endif
#endif
#else
#define RD_CLONES
#endif

namespace ffi = xla::ffi;

namespace {

template <typename F>
using KeyOf = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;

template <typename K>
constexpr K kMask = ~(K(1) << (8 * sizeof(K) - 1));  // clears the sign bit

constexpr int64_t kBlock = 16;     // scratch slack: SIMD stores of whole vectors (<= 16 keys)
constexpr int64_t kSample = 1024;  // strided sample used to bracket the k-th largest key

template <typename F>
struct Scratch {
  std::vector<KeyOf<F>> keys;  // candidate keys, in index order
  std::vector<int32_t> where;  // their indices, increasing
  std::vector<KeyOf<F>> work;  // keys being selected among (reordered; as many as candidates)
  std::vector<int32_t> hist;   // radix-select histograms (kLanes << kRadixBits buckets)
};

template <typename F>
RD_INLINE KeyOf<F> Key(const F* x, int64_t i) {
  KeyOf<F> b;
  std::memcpy(&b, x + i, sizeof(b));
  return b & kMask<KeyOf<F>>;
}

// ---- step 2: the candidate pass. Writes the keys >= lo of x[0, d) and their indices to c
// and at (each needs d + kBlock slots) in index order; returns how many.

template <typename F>
RD_INLINE int64_t CollectTail(const F* x, int64_t i, int64_t d, KeyOf<F> lo, KeyOf<F>* c,
                              int32_t* at, int64_t m) {
  for (; i < d; ++i) {
    const KeyOf<F> b = Key(x, i);
    c[m] = b;
    at[m] = static_cast<int32_t>(i);
    m += b >= lo;
  }
  return m;
}

template <typename F>
RD_INLINE int64_t CollectBlocks(const F* x, int64_t d, KeyOf<F> lo, KeyOf<F>* c, int32_t* at) {
  constexpr int64_t kGroup = 64;  // keys whose "any key >= lo" is tested together
  int64_t m = 0, i = 0;
  for (; i + kGroup <= d; i += kGroup) {
    KeyOf<F> top = 0;
    for (int64_t j = 0; j < kGroup; ++j) top = std::max(top, Key(x, i + j));  // vectorized
    if (top >= lo) m = CollectTail(x, i, i + kGroup, lo, c, at, m);
  }
  return CollectTail(x, i, d, lo, c, at, m);
}

#ifdef RD_X86_AVX512
// 16 keys per vector; the selected lanes are compressed in registers and stored whole (the
// next store overwrites the unused lanes), which is much faster than a compressing store.
__attribute__((target("avx512f"))) int64_t CollectAvx512(const float* x, int64_t d, uint32_t lo,
                                                         uint32_t* c, int32_t* at) {
  const __m512i mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i vlo = _mm512_set1_epi32(static_cast<int32_t>(lo));
  __m512i iv = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t m = 0, i = 0;
  for (; i + 64 <= d; i += 64) {  // 4 vectors; skipped together when none has a candidate
    __m512i kx[4];
    __mmask16 q[4];
    for (int u = 0; u < 4; ++u) {
      kx[u] = _mm512_and_si512(_mm512_loadu_si512(x + i + 16 * u), mask);
      q[u] = _mm512_cmpge_epu32_mask(kx[u], vlo);
    }
    if ((q[0] | q[1] | q[2] | q[3]) != 0) {
      for (int u = 0; u < 4; ++u) {
        const __m512i iu = _mm512_add_epi32(iv, _mm512_set1_epi32(16 * u));
        _mm512_storeu_si512(c + m, _mm512_maskz_compress_epi32(q[u], kx[u]));
        _mm512_storeu_si512(at + m, _mm512_maskz_compress_epi32(q[u], iu));
        m += __builtin_popcount(q[u]);
      }
    }
    iv = _mm512_add_epi32(iv, _mm512_set1_epi32(64));
  }
  return CollectTail(x, i, d, lo, c, at, m);
}

__attribute__((target("avx512f"))) int64_t CollectAvx512(const double* x, int64_t d, uint64_t lo,
                                                         uint64_t* c, int32_t* at) {
  const __m512i mask = _mm512_set1_epi64(0x7fffffffffffffffLL);
  const __m512i vlo = _mm512_set1_epi64(static_cast<int64_t>(lo));
  __m512i iv = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t m = 0, i = 0;
  for (; i + 32 <= d; i += 32) {  // 4 vectors; skipped together when none has a candidate
    __m512i kx[4];
    __mmask8 q[4];
    for (int u = 0; u < 4; ++u) {
      kx[u] = _mm512_and_si512(_mm512_loadu_si512(x + i + 8 * u), mask);
      q[u] = _mm512_cmpge_epu64_mask(kx[u], vlo);
    }
    if ((q[0] | q[1] | q[2] | q[3]) != 0) {
      for (int u = 0; u < 4; ++u) {
        const __m512i iu = _mm512_add_epi64(iv, _mm512_set1_epi64(8 * u));
        _mm512_storeu_si512(c + m, _mm512_maskz_compress_epi64(q[u], kx[u]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at + m),
                            _mm512_cvtepi64_epi32(_mm512_maskz_compress_epi64(q[u], iu)));
        m += __builtin_popcount(q[u]);
      }
    }
    iv = _mm512_add_epi64(iv, _mm512_set1_epi64(32));
  }
  return CollectTail(x, i, d, lo, c, at, m);
}

bool HaveAvx512() {
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") != 0);
  return yes;
}
#endif

#ifdef RD_X86_AVX2
// AVX2 has no compress: the selected lanes of 8 are packed by a permutation from a table
// indexed by the 8-bit mask (keys and lo are < 2^31 resp. 2^63, so signed compares order
// them; key >= lo is key > lo - 1).
struct PackTable {
  alignas(32) int32_t lanes[256][8];
  constexpr PackTable() : lanes() {
    for (int q = 0; q < 256; ++q) {
      int n = 0;
      for (int l = 0; l < 8; ++l) {
        if (q >> l & 1) lanes[q][n++] = l;
      }
      for (int l = n; l < 8; ++l) lanes[q][l] = 0;
    }
  }
};
constexpr PackTable kPack{};

struct PackTable64 {  // 4 lanes of 64 bits as pairs of 32-bit lanes
  alignas(32) int32_t lanes[16][8];
  constexpr PackTable64() : lanes() {
    for (int q = 0; q < 16; ++q) {
      int n = 0;
      for (int l = 0; l < 4; ++l) {
        if (q >> l & 1) {
          lanes[q][2 * n] = 2 * l;
          lanes[q][2 * n + 1] = 2 * l + 1;
          ++n;
        }
      }
    }
  }
};
constexpr PackTable64 kPack64{};

__attribute__((target("avx2"))) int64_t CollectAvx2(const float* x, int64_t d, uint32_t lo,
                                                    uint32_t* c, int32_t* at) {
  const __m256i mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i below = _mm256_set1_epi32(static_cast<int32_t>(lo) - 1);
  __m256i iv = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t m = 0, i = 0;
  for (; i + 32 <= d; i += 32) {  // 4 vectors; skipped together when none has a candidate
    __m256i kx[4];
    int q[4];
    for (int u = 0; u < 4; ++u) {
      kx[u] = _mm256_and_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8 * u)), mask);
      q[u] = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(kx[u], below)));
    }
    if ((q[0] | q[1] | q[2] | q[3]) != 0) {
      for (int u = 0; u < 4; ++u) {
        const __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.lanes[q[u]]));
        const __m256i iu = _mm256_add_epi32(iv, _mm256_set1_epi32(8 * u));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + m),
                            _mm256_permutevar8x32_epi32(kx[u], p));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at + m),
                            _mm256_permutevar8x32_epi32(iu, p));
        m += __builtin_popcount(q[u]);
      }
    }
    iv = _mm256_add_epi32(iv, _mm256_set1_epi32(32));
  }
  return CollectTail(x, i, d, lo, c, at, m);
}

__attribute__((target("avx2"))) int64_t CollectAvx2(const double* x, int64_t d, uint64_t lo,
                                                    uint64_t* c, int32_t* at) {
  const __m256i mask = _mm256_set1_epi64x(0x7fffffffffffffffLL);
  const __m256i below = _mm256_set1_epi64x(static_cast<int64_t>(lo) - 1);
  const __m256i evens = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  __m256i iv = _mm256_setr_epi64x(0, 1, 2, 3);
  int64_t m = 0, i = 0;
  for (; i + 16 <= d; i += 16) {  // 4 vectors; skipped together when none has a candidate
    __m256i kx[4];
    int q[4];
    for (int u = 0; u < 4; ++u) {
      kx[u] = _mm256_and_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 4 * u)), mask);
      q[u] = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(kx[u], below)));
    }
    if ((q[0] | q[1] | q[2] | q[3]) != 0) {
      for (int u = 0; u < 4; ++u) {
        const __m256i p =
            _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack64.lanes[q[u]]));
        const __m256i iu = _mm256_add_epi64(iv, _mm256_set1_epi64x(4 * u));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + m),
                            _mm256_permutevar8x32_epi32(kx[u], p));
        const __m256i packed =
            _mm256_permutevar8x32_epi32(_mm256_permutevar8x32_epi32(iu, p), evens);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(at + m), _mm256_castsi256_si128(packed));
        m += __builtin_popcount(q[u]);
      }
    }
    iv = _mm256_add_epi64(iv, _mm256_set1_epi64x(16));
  }
  return CollectTail(x, i, d, lo, c, at, m);
}

bool HaveAvx2() {
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") != 0);
  return yes;
}
#endif

template <typename F>
RD_INLINE int64_t Collect(const F* x, int64_t d, KeyOf<F> lo, KeyOf<F>* c, int32_t* at) {
#ifdef RD_X86_AVX512
  if (HaveAvx512()) return CollectAvx512(x, d, lo, c, at);
#endif
#ifdef RD_X86_AVX2
  if (HaveAvx2()) return CollectAvx2(x, d, lo, c, at);
#endif
  return CollectBlocks(x, d, lo, c, at);
}

// ---- selection: the r-th largest t of src[0, n) (1 <= r <= n) and how many keys are > t.
// Radix select: a histogram of 2^11 buckets over [min, max] picks the bucket holding t, whose
// keys are gathered into buf (n slots; buf may be src); repeated until few keys are left,
// then std::nth_element. Each round narrows the key range by 2^11, so a 32-bit key takes at
// most 3 rounds and a 64-bit key 6.

constexpr int kRadixBits = 11;
constexpr int64_t kRadixSmall = 128;  // below this many keys, std::nth_element

// hist[b] = #{j < n : (src[j] - mn) >> shift == b} for b <= top. Large inputs are counted in
// kLanes interleaved histograms (hist needs kLanes << kRadixBits slots), which breaks the
// chain of increments of one bucket when many keys share it.
constexpr int64_t kLanes = 4;
constexpr int64_t kLanesFrom = 4096;  // fewer keys: one histogram

template <typename K>
RD_INLINE void Histogram(const K* src, int64_t n, K mn, int shift, int64_t top, int32_t* hist) {
  if (n < kLanesFrom) {
    std::fill(hist, hist + top + 1, 0);
    for (int64_t j = 0; j < n; ++j) ++hist[(src[j] - mn) >> shift];
    return;
  }
  constexpr int64_t kStride = int64_t{1} << kRadixBits;
  std::fill(hist, hist + kLanes * kStride, 0);
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) ++hist[l * kStride + ((src[j + l] - mn) >> shift)];
  }
  for (; j < n; ++j) ++hist[(src[j] - mn) >> shift];
  for (int64_t l = 1; l < kLanes; ++l) {
    for (int64_t b = 0; b <= top; ++b) hist[b] += hist[l * kStride + b];
  }
}

template <typename K>
RD_INLINE K NthLargest(const K* src, int64_t n, int64_t r, K* buf, int32_t* hist,
                       int64_t* greater) {
  int64_t above = 0;  // keys > every key still in play
  while (n > kRadixSmall) {
    K mn = src[0], mx = src[0];
    for (int64_t j = 1; j < n; ++j) {
      mn = std::min(mn, src[j]);
      mx = std::max(mx, src[j]);
    }
    if (mn == mx) {  // all equal: t = mn and none of them is > t
      *greater = above;
      return mn;
    }
    const K span = mx - mn;
    const int width = 8 * static_cast<int>(sizeof(unsigned long long)) -
                      __builtin_clzll(static_cast<unsigned long long>(span));
    const int shift = std::max(0, width - kRadixBits);
    const int64_t top = static_cast<int64_t>(span >> shift);
    Histogram(src, n, mn, shift, top, hist);
    int64_t b = top, acc = 0;  // bucket b holds t: acc < r <= acc + hist[b] keys in b and above
    while (acc + hist[b] < r) acc += hist[b--];
    int64_t kept = 0;
    for (int64_t j = 0; j < n; ++j) {  // buf[kept] is never ahead of src[j] when buf == src
      const K key = src[j];
      buf[kept] = key;
      kept += static_cast<int64_t>((key - mn) >> shift) == b;
    }
    above += acc;
    r -= acc;
    n = kept;
    src = buf;
    if (shift == 0) {  // one key value per bucket
      *greater = above;
      return mn + static_cast<K>(b);
    }
  }
  if (src != buf) std::copy(src, src + n, buf);
  std::nth_element(buf, buf + (n - r), buf + n);
  const K t = buf[n - r];
  for (int64_t j = n - r + 1; j < n; ++j) above += buf[j] > t;
  *greater = above;
  return t;
}

// ---- step 4: appends at[j] for every j in [j0, j1) with c[j] >= thr to idx (from out on);
// returns the new out. The caller guarantees that at most k - out are appended.

template <typename K>
RD_INLINE int64_t EmitScalar(const K* c, const int32_t* at, int64_t j0, int64_t j1, K thr,
                             int32_t* idx, int64_t out, int64_t k) {
  for (int64_t j = j0; j < j1 && out < k; ++j) {
    idx[out] = at[j];
    out += c[j] >= thr;
  }
  return out;
}

#ifdef RD_X86_AVX512
__attribute__((target("avx512f"))) int64_t EmitAvx512(const uint32_t* c, const int32_t* at,
                                                      int64_t j0, int64_t j1, uint32_t thr,
                                                      int32_t* idx, int64_t out, int64_t k) {
  const __m512i vt = _mm512_set1_epi32(static_cast<int32_t>(thr));
  int64_t j = j0;
  for (; j + 16 <= j1 && out + 16 <= k; j += 16) {
    const __mmask16 q = _mm512_cmpge_epu32_mask(_mm512_loadu_si512(c + j), vt);
    _mm512_storeu_si512(idx + out, _mm512_maskz_compress_epi32(q, _mm512_loadu_si512(at + j)));
    out += __builtin_popcount(q);
  }
  return EmitScalar(c, at, j, j1, thr, idx, out, k);
}

__attribute__((target("avx512f"))) int64_t EmitAvx512(const uint64_t* c, const int32_t* at,
                                                      int64_t j0, int64_t j1, uint64_t thr,
                                                      int32_t* idx, int64_t out, int64_t k) {
  const __m512i vt = _mm512_set1_epi64(static_cast<int64_t>(thr));
  int64_t j = j0;
  for (; j + 8 <= j1 && out + 8 <= k; j += 8) {
    const __mmask8 q = _mm512_cmpge_epu64_mask(_mm512_loadu_si512(c + j), vt);
    const __m512i a =
        _mm512_cvtepi32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + j)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + out),
                        _mm512_cvtepi64_epi32(_mm512_maskz_compress_epi64(q, a)));
    out += __builtin_popcount(q);
  }
  return EmitScalar(c, at, j, j1, thr, idx, out, k);
}
#endif

template <typename K>
RD_INLINE int64_t Emit(const K* c, const int32_t* at, int64_t j0, int64_t j1, K thr,
                       int32_t* idx, int64_t out, int64_t k) {
#ifdef RD_X86_AVX512
  if (HaveAvx512()) return EmitAvx512(c, at, j0, j1, thr, idx, out, k);
#endif
  return EmitScalar(c, at, j0, j1, thr, idx, out, k);
}

// The position of the ties-th key equal to t in c[0, m) (there are at least ties of them).
template <typename K>
RD_INLINE int64_t TieCut(const K* c, int64_t m, K t, int64_t ties) {
  int64_t j = 0;
  for (; j + 64 <= m; j += 64) {  // whole blocks of 64 by a vectorized count
    int64_t eq = 0;
    for (int64_t u = 0; u < 64; ++u) eq += c[j + u] == t;
    if (eq >= ties) break;
    ties -= eq;
  }
  for (;; ++j) {
    if (c[j] == t && --ties == 0) return j;
  }
}

template <typename F>
RD_INLINE void SelectRowImpl(const F* x, int64_t d, int64_t k, int32_t* idx, Scratch<F>& w) {
  using K = KeyOf<F>;
  const size_t cap = static_cast<size_t>(d + kBlock);
  if (w.keys.size() < cap) {
    w.keys.resize(cap);
    w.where.resize(cap);
  }
  w.hist.resize(size_t{kLanes} << kRadixBits);
  K* c = w.keys.data();
  int32_t* at = w.where.data();
  int32_t* hist = w.hist.data();
  auto work = [&w](int64_t n) {  // the selection's buffer, grown to the largest need only
    if (w.work.size() < static_cast<size_t>(n)) w.work.resize(static_cast<size_t>(n));
    return w.work.data();
  };
  int64_t greater = 0;
  // 1. a lower bracket lo of t from a strided sample of s keys, in which about e = s k / d
  //    are >= t: the sample's r-th largest key, r = e + 3 sqrt(e) + 8, so that roughly
  //    1.5-3 k keys (at least ~8 d / s) are >= lo.
  K lo = 0;
  const int64_t s = std::min(d, kSample);
  const double e = static_cast<double>(s) * static_cast<double>(k) / static_cast<double>(d);
  const auto r = static_cast<int64_t>(e + 3.0 * std::sqrt(e) + 8.0);
  if (r < s) {
    const int64_t stride = d / s;  // >= 1; positions stride/2 + j stride < d
    K* v = work(s);
    for (int64_t j = 0; j < s; ++j) v[j] = Key(x, stride / 2 + j * stride);
    lo = NthLargest(v, s, r, v, hist, &greater);
  }
  // 2. candidates: every key >= lo with its index, in index order
  int64_t m = Collect(x, d, lo, c, at);
  if (m < k) m = Collect(x, d, K(0), c, at);  // lo missed: every entry is a candidate
  // 3. the exact k-th largest key t, and how many keys equal to t to take (lowest indices
  //    first): those up to candidate jcut
  const K t = NthLargest(c, m, k, work(m), hist, &greater);
  const int64_t jcut = TieCut(c, m, t, k - greater);
  // 4. emit, in increasing index order: keys >= t up to jcut, keys > t after it
  const int64_t out = Emit(c, at, 0, jcut + 1, t, idx, 0, k);
  Emit(c, at, jcut + 1, m, static_cast<K>(t + 1), idx, out, k);
}

RD_CLONES void SelectRow(const float* x, int64_t d, int64_t k, int32_t* idx,
                         Scratch<float>& w) {
  SelectRowImpl(x, d, k, idx, w);
}

RD_CLONES void SelectRow(const double* x, int64_t d, int64_t k, int32_t* idx,
                         Scratch<double>& w) {
  SelectRowImpl(x, d, k, idx, w);
}

// 1 if some non-finite entry of the row x[0, d) is not among the k selected indices, else 0.
// Non-finite keys (exponent all ones) rank above every finite key, so they are all selected
// unless every selected key is non-finite; only then is the row counted (the common case
// stops at the first finite selected entry).
template <typename F>
int32_t UnsentNonFinite(const F* x, int64_t d, int64_t k, const int32_t* idx) {
  using K = KeyOf<F>;
  constexpr K kInf = kMask<K> & ~((K(1) << (std::numeric_limits<F>::digits - 1)) - 1);
  for (int64_t j = 0; j < k; ++j) {
    if (Key(x, idx[j]) < kInf) return 0;
  }
  int64_t n = 0;
  for (int64_t i = 0; i < d; ++i) n += Key(x, i) >= kInf;
  return n > k ? 1 : 0;
}

template <ffi::DataType T>
ffi::Error TopKAbs(ffi::Buffer<T> x, ffi::ResultBuffer<ffi::S32> idx,
                   ffi::ResultBuffer<ffi::S32> unsent) {
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
  if (static_cast<int64_t>(unsent->element_count()) != rows) {
    return ffi::Error::InvalidArgument("ratedist top-k: need one unsent flag per row");
  }
  thread_local Scratch<F> work;
  const F* xp = x.typed_data();
  int32_t* ip = idx->typed_data();
  int32_t* up = unsent->typed_data();
  for (int64_t r = 0; r < rows; ++r) {
    SelectRow(xp + r * d, d, k, ip + r * k, work);
    up[r] = UnsentNonFinite(xp + r * d, d, k, ip + r * k);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistTopKAbsF32, TopKAbs<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistTopKAbsF64, TopKAbs<ffi::F64>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
