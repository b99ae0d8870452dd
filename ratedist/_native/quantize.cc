// Elementwise quantizers in one pass: the XLA FFI custom call behind ratedist's CPU
// stochastic (QSGD, NUQSGD, TernGrad, natural, stochastic scalar/TNQ/TUQ) and deterministic
// (sign, scaled sign, deterministic scalar, threshold) compressors.
//
// One row of x (shape (..., d)) is read once; the kernel writes the dequantized row (with the
// compressors' non-finite policy applied: x_hat_i = x_i where x_i is NaN or +-inf) and the
// counts of the entropy-coded symbols (shape (..., C); unspecified for non-finite inputs). The scale (||x||_2, max|x|, the rms,
// ||x||_1/d, the threshold) is a reduction computed by the caller in JAX and passed in, so it
// is bit-identical to the pure-JAX path. Every floating operation below repeats, in the same
// order and precision, the jax.numpy expression of ratedist/compressors (no FMA contraction:
// x86-64 baseline, -ffp-contract=off), so the results are bit for bit those of the pure-JAX
// path.
//
// Randomness: ratedist's stream (ratedist/compressors/_kernels.py, `stream_words`). Block j
// is Threefry-2x32-20 (Salmon et al., SC'11; Random123; the function of jax.random) of the
// counter (hi, lo) = (j >> 32, j & 0xffffffff) under the 64-bit key (k0, k1); its two output
// words are the words 2j and 2j + 1 of the stream (jax.random XORs them into one number per
// block: using both halves the generator work per number). Element i of a row draws its
// uniform from word i (float32: 23 bits, as jax.random.uniform builds it), from words 2i and
// 2i + 1 (float64: 52 bits of the 64-bit word (w_2i << 32) | w_2i+1), or from the
// rng_bits-bit field i mod (32 / rng_bits) of word i / (32 / rng_bits) (little-endian). Element
// i depends only on (key, i): the output does not depend on threads, chunking or the batch
// layout.
//
// A second handler, RatedistRandomSubset, returns Rand-K's k indices (those of the k largest
// keys of mode kRandKeys) from the same stream in one pass that does not write the keys, and
// RatedistRandKDenseF32/F64 Rand-K's dense update from the same pass; a third, RatedistGridF32/F64, rounds onto an integer grid (the grid compressor, the Z^n
// lattice) and counts its symbols in the same pass; a fourth, RatedistClosestDnF32/F64, is the
// D_n lattice's decoder (D4, and E8 through its two cosets), and a fifth,
// RatedistColumnEntropy, the entropy layer of the lattices' label columns.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#include <type_traits>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 512;  // elements whose random words are generated together
constexpr int kLanes = 4;        // sub-histograms (breaks the increment dependency chain)
constexpr int kMaxCum = 64;      // largest level index counted by cumulative counts

#define RD_INLINE inline __attribute__((always_inline))
// The row functions are compiled for AVX-512, Haswell (AVX2 with FMA: the dithered Z^1 rounds
// an explicit std::fma, which a plain "avx2" clone would call from libm per element) and the
// x86-64 baseline; the loader picks one (GCC function multiversioning). Integer and IEEE
// arithmetic, FMA included, give the same bits on all.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RD_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define RD_CLONES
#endif

RD_INLINE uint32_t Rotl(uint32_t v, int r) { return (v << r) | (v >> (32 - r)); }

// Threefry-2x32-20 of the counters (hi, lo0 + j) for j < n, as JAX computes it
// (jax/_src/random/threefry2x32.py). A flat loop the compiler vectorizes.
RD_INLINE void Threefry(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo0, int64_t n,
                        uint32_t* __restrict out0, uint32_t* __restrict out1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  for (int64_t j = 0; j < n; ++j) {
    uint32_t x0 = hi + k0;
    uint32_t x1 = lo0 + static_cast<uint32_t>(j) + k1;
#define RD_ROUND(r) \
  x0 += x1;         \
  x1 = Rotl(x1, r); \
  x1 ^= x0;
#define RD_R4A RD_ROUND(13) RD_ROUND(15) RD_ROUND(26) RD_ROUND(6)
#define RD_R4B RD_ROUND(17) RD_ROUND(29) RD_ROUND(16) RD_ROUND(24)
    RD_R4A x0 += k1;
    x1 += k2 + 1u;
    RD_R4B x0 += k2;
    x1 += k0 + 2u;
    RD_R4A x0 += k0;
    x1 += k1 + 3u;
    RD_R4B x0 += k1;
    x1 += k2 + 4u;
    RD_R4A x0 += k2;
    x1 += k0 + 5u;
#undef RD_R4A
#undef RD_R4B
#undef RD_ROUND
    out0[j] = x0;
    out1[j] = x1;
  }
}

// The modes of the kernel (attribute `mode`); the Python side holds the same table.
enum Mode : int32_t {
  kMagnitude = 0,  // QSGD/NUQSGD/TernGrad: |x|/scale rounded on levels in [0, 1], signed
  kSigned = 1,     // stochastic scalar: x/scale (or x) rounded on the levels
  kNatural = 2,    // natural compression: |x| rounded to a power of two
  kSign = 3,       // sign / scaled sign: scale * (x >= 0 ? 1 : -1)
  kNearest = 4,    // deterministic scalar: levels[#{thresholds < x/scale}] (* scale)
  kThreshold = 5,  // threshold sparsifier: |x| > scale ? x : 0
  kRandKeys = 6,   // Rand-K's random keys: float32((bits >> 2) + 2^23) as F; x is not read
  kUniform = 7,    // the uniforms u of Fill (rng_bits 8/16/32), compared as `u < p`; x not read
};

template <typename F>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  using I = int32_t;
  static constexpr int kMant = 23;
  static constexpr int kBias = 127;
  static constexpr U kOne = 0x3f800000u;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  using I = int64_t;
  static constexpr int kMant = 52;
  static constexpr int kBias = 1023;
  static constexpr U kOne = 0x3ff0000000000000ull;
};

template <typename F>
RD_INLINE F FromBits(typename Bits<F>::U w) {
  F f;
  std::memcpy(&f, &w, sizeof(F));
  return f;
}
template <typename F>
RD_INLINE typename Bits<F>::U ToBits(F f) {
  typename Bits<F>::U w;
  std::memcpy(&w, &f, sizeof(F));
  return w;
}
// the exponent field (all ones: inf and NaN)
template <typename F>
constexpr typename Bits<F>::U ToBitsConst() {
  using U = typename Bits<F>::U;
  return ((U(1) << (8 * sizeof(F) - 1 - Bits<F>::kMant)) - 1) << Bits<F>::kMant;
}

// The non-finite policy of ratedist's compressors (base.propagate_nonfinite): where x is NaN
// or +-inf the output is x itself. Applied to every output element, after the rounding.
template <typename F>
RD_INLINE void KeepNonFinite(const F* __restrict x, F* __restrict y, int64_t n) {
  using U = typename Bits<F>::U;
  constexpr U kInf = ToBitsConst<F>();
  for (int64_t j = 0; j < n; ++j) {
    const bool finite = (ToBits<F>(x[j]) & kInf) != kInf;
    y[j] = finite ? y[j] : x[j];
  }
}

template <typename F>
struct Params {
  int32_t mode, rng_bits, flag;
  const F* lv;  // levels (kMagnitude/kSigned) or thresholds then levels (kNearest)
  int32_t L;
  int32_t n_sym;
  uint32_t k0, k1;
  F scale;
};

template <typename F>
struct alignas(64) Work {
  uint32_t w0[kBlock], w1[kBlock];
  F u[kBlock], r[kBlock], a[kBlock], b[kBlock];
  typename Bits<F>::I c[kBlock];
  int32_t sym[kBlock];
};

// The same blocks C x 16 at a time: the rounds of one block are a serial chain (add, rotate,
// xor), so C independent 16-lane chains keep the vector units busy where the flat loop above
// runs one chain. GCC vector extensions: the same integer operations, the same bits, on every
// target. On x86-64 with GCC, C is chosen per instruction set by function multiversioning so
// that the 2 C vectors of a step fill 16 registers: C = 8 with AVX-512 (zmm), 4 with AVX2
// (ymm), 2 otherwise (xmm; also the choice for other compilers and CPUs). Measured on one
// core (Zen 5, 1e7 words, ns per word, flat loop -> chains): AVX-512 0.35 -> 0.18, AVX2
// 1.13 -> 0.74, SSE2 2.1 -> 1.24. Returns the number of blocks done (all but the last
// n mod 16); the caller finishes with Threefry.
#if defined(__GNUC__)
#define RD_WIDE_THREEFRY 1
typedef uint32_t V16 __attribute__((vector_size(64)));

template <int R, int C>
RD_INLINE void WideRound(V16* __restrict a, V16* __restrict b) {
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) {
    a[c] += b[c];
    b[c] = (b[c] << R) | (b[c] >> (32 - R));
    b[c] ^= a[c];
  }
}
template <int C>
RD_INLINE void WideInject(V16* __restrict a, V16* __restrict b, uint32_t ka, uint32_t kb) {
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) {
    a[c] += ka;
    b[c] += kb;
  }
}
template <int C>
RD_INLINE int64_t ThreefryWide(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo0, int64_t n,
                               uint32_t* __restrict out0, uint32_t* __restrict out1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  V16 iota;
  for (int l = 0; l < 16; ++l) iota[l] = static_cast<uint32_t>(l);
  const int64_t done = n / (16 * C) * (16 * C);
  for (int64_t j = 0; j < done; j += 16 * C) {
    V16 a[C], b[C];
    for (int c = 0; c < C; ++c) {
      a[c] = V16{} + (hi + k0);
      b[c] = iota + (lo0 + static_cast<uint32_t>(j + 16 * c) + k1);
    }
#define RD_W4A                                                                   \
  WideRound<13, C>(a, b); WideRound<15, C>(a, b); WideRound<26, C>(a, b); \
  WideRound<6, C>(a, b);
#define RD_W4B                                                                   \
  WideRound<17, C>(a, b); WideRound<29, C>(a, b); WideRound<16, C>(a, b); \
  WideRound<24, C>(a, b);
    RD_W4A WideInject<C>(a, b, k1, k2 + 1u);
    RD_W4B WideInject<C>(a, b, k2, k0 + 2u);
    RD_W4A WideInject<C>(a, b, k0, k1 + 3u);
    RD_W4B WideInject<C>(a, b, k1, k2 + 4u);
    RD_W4A WideInject<C>(a, b, k2, k0 + 5u);
#undef RD_W4A
#undef RD_W4B
    for (int c = 0; c < C; ++c) {
      std::memcpy(out0 + j + 16 * c, &a[c], sizeof(V16));
      std::memcpy(out1 + j + 16 * c, &b[c], sizeof(V16));
    }
  }
  return done;
}
// C chains while 16 C blocks remain, then C / 2, ... 1 (short rows and 8/16-bit draws)
template <int C>
RD_INLINE int64_t ThreefryCascade(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo0,
                                  int64_t n, uint32_t* __restrict out0,
                                  uint32_t* __restrict out1) {
  int64_t done = ThreefryWide<C>(k0, k1, hi, lo0, n, out0, out1);
  if constexpr (C > 1) {
    done += ThreefryCascade<C / 2>(k0, k1, hi, lo0 + static_cast<uint32_t>(done), n - done,
                                   out0 + done, out1 + done);
  }
  return done;
}
#if defined(RATEDIST_THREEFRY_CHAINS)  // one fixed number of chains (the tests' builds)
int64_t ThreefryVec(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo0, int64_t n,
                    uint32_t* out0, uint32_t* out1) {
  return ThreefryCascade<RATEDIST_THREEFRY_CHAINS>(k0, k1, hi, lo0, n, out0, out1);
}
#elif defined(__x86_64__) && !defined(__clang__)
__attribute__((target("avx512f"))) int64_t ThreefryVec(uint32_t k0, uint32_t k1, uint32_t hi,
                                                       uint32_t lo0, int64_t n, uint32_t* out0,
                                                       uint32_t* out1) {
  return ThreefryCascade<8>(k0, k1, hi, lo0, n, out0, out1);
}
__attribute__((target("avx2"))) int64_t ThreefryVec(uint32_t k0, uint32_t k1, uint32_t hi,
                                                    uint32_t lo0, int64_t n, uint32_t* out0,
                                                    uint32_t* out1) {
  return ThreefryCascade<4>(k0, k1, hi, lo0, n, out0, out1);
}
__attribute__((target("default"))) int64_t ThreefryVec(uint32_t k0, uint32_t k1, uint32_t hi,
                                                       uint32_t lo0, int64_t n, uint32_t* out0,
                                                       uint32_t* out1) {
  return ThreefryCascade<2>(k0, k1, hi, lo0, n, out0, out1);
}
#else
int64_t ThreefryVec(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo0, int64_t n,
                    uint32_t* out0, uint32_t* out1) {
  return ThreefryCascade<2>(k0, k1, hi, lo0, n, out0, out1);
}
#endif
#endif

// The stream words [2 j0, 2 (j0 + nb)) as w0[j - j0] (word 2j) and w1[j - j0] (word 2j + 1).
RD_INLINE void Blocks(const uint32_t k0, const uint32_t k1, int64_t j0, int64_t nb,
                      uint32_t* __restrict w0, uint32_t* __restrict w1) {
  const auto hi = static_cast<uint32_t>(j0 >> 32);
  const auto lo = static_cast<uint32_t>(j0);
  int64_t done = 0;
#ifdef RD_WIDE_THREEFRY
  done = ThreefryVec(k0, k1, hi, lo, nb, w0, w1);
#endif
  Threefry(k0, k1, hi, lo + static_cast<uint32_t>(done), nb - done, w0 + done, w1 + done);
}

// u[j] in [0, 1) for the elements [i0, i0 + n) (i0 a multiple of kBlock), compared as
// `u < p`. rng_bits = 32: 23 (float32) or 52 (float64) random mantissa bits, u = 1.f - 1;
// 8/16: (b + 0.5) 2^-rng_bits with b the rng_bits-bit fields of the words.
template <typename F>
RD_INLINE void Fill(const Params<F>& P, int64_t i0, int64_t n, Work<F>& W) {
  using U = typename Bits<F>::U;
  constexpr int kShift = 8 * sizeof(F) - Bits<F>::kMant;
  if (P.rng_bits == 32) {
    if constexpr (sizeof(F) == 4) {  // element i: word i = half (i & 1) of block i >> 1
      const int64_t nb = (n + 1) >> 1;
      Blocks(P.k0, P.k1, i0 >> 1, nb, W.w0, W.w1);
      for (int64_t j = 0; j < nb; ++j) {
        W.u[2 * j] = FromBits<F>((W.w0[j] >> kShift) | Bits<F>::kOne) - F(1);
        W.u[2 * j + 1] = FromBits<F>((W.w1[j] >> kShift) | Bits<F>::kOne) - F(1);
      }
    } else {  // element i: block i, (w_2i << 32) | w_2i+1
      Blocks(P.k0, P.k1, i0, n, W.w0, W.w1);
      for (int64_t j = 0; j < n; ++j) {
        const U w = (static_cast<U>(W.w0[j]) << 32) | W.w1[j];
        W.u[j] = FromBits<F>((w >> kShift) | Bits<F>::kOne) - F(1);
      }
    }
    return;
  }
  // 8/16 bits: 8 or 4 elements per block (kBlock is a multiple of 8: the last block's spare
  // fields land inside u and are never read); fields of one word with compile-time shifts
  const int per = 32 / P.rng_bits;  // fields per word
  const int64_t nb = (n + 2 * per - 1) / (2 * per);
  Blocks(P.k0, P.k1, i0 / (2 * per), nb, W.w0, W.w1);
  if (P.rng_bits == 8) {
    for (int64_t b = 0; b < nb; ++b) {
      for (int k = 0; k < 4; ++k) {
        const auto f0 = static_cast<int32_t>((W.w0[b] >> (8 * k)) & 0xffu);
        const auto f1 = static_cast<int32_t>((W.w1[b] >> (8 * k)) & 0xffu);
        W.u[8 * b + k] = (static_cast<F>(f0) + F(0.5)) * F(1.0 / 256.0);
        W.u[8 * b + 4 + k] = (static_cast<F>(f1) + F(0.5)) * F(1.0 / 256.0);
      }
    }
  } else {
    for (int64_t b = 0; b < nb; ++b) {
      for (int k = 0; k < 2; ++k) {
        const auto f0 = static_cast<int32_t>((W.w0[b] >> (16 * k)) & 0xffffu);
        const auto f1 = static_cast<int32_t>((W.w1[b] >> (16 * k)) & 0xffffu);
        W.u[4 * b + k] = (static_cast<F>(f0) + F(0.5)) * F(1.0 / 65536.0);
        W.u[4 * b + 2 + k] = (static_cast<F>(f1) + F(0.5)) * F(1.0 / 65536.0);
      }
    }
  }
}

// jnp.clip(r, a, b) = minimum(maximum(r, a), b) for finite r (NaN is not handled)
template <typename F>
RD_INLINE F Clip(F r, F a, F b) {
  r = r < a ? a : r;
  return r > b ? b : r;
}

// c[j] = #{ levels[1..L-2] <= r[j] } (the fused compare-and-count of the pure-JAX path) and
// the cell's ends a[j] = levels[c[j]], b[j] = levels[c[j] + 1]: vectorized over j without
// gathers for short tables, a binary search for long ones.
template <typename F>
RD_INLINE void Cells(const F* lv, int32_t L, int64_t n, Work<F>& W) {
  using I = typename Bits<F>::I;
  const int32_t m = L - 2;
  if (m <= 64) {
    const F a0 = lv[0], b0 = lv[1];
    for (int64_t j = 0; j < n; ++j) {
      W.c[j] = 0;
      W.a[j] = a0;
      W.b[j] = b0;
    }
    // Levels are increasing: once a level is above every r of the block, so are the rest
    // (QSGD at large d has r = |x|/||x|| far below the first interior level almost
    // everywhere, and stops after one pass). The count is an integer sum: it vectorizes.
    for (int32_t l = 1; l <= m; ++l) {
      const F t = lv[l], t1 = lv[l + 1];
      I hits = 0;
      for (int64_t j = 0; j < n; ++j) {
        const bool ge = W.r[j] >= t;
        hits += static_cast<I>(ge);
        W.c[j] += static_cast<I>(ge);
        W.a[j] = ge ? t : W.a[j];
        W.b[j] = ge ? t1 : W.b[j];
      }
      if (hits == 0) break;
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    int32_t lo = 0, hi = m;
    while (lo < hi) {
      const int32_t mid = (lo + hi) / 2;
      if (lv[1 + mid] <= W.r[j]) lo = mid + 1; else hi = mid;
    }
    W.c[j] = lo;
    W.a[j] = lv[lo];
    W.b[j] = lv[lo + 1];
  }
}

RD_INLINE void Histogram(const int32_t* sym, int64_t n, int32_t* h, int32_t n_sym) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) h[k * n_sym + sym[j + k]] += 1;
  }
  for (; j < n; ++j) h[sym[j]] += 1;
}

// Counts of small alphabets without a scattered increment per element. For a block of signed
// indices v (|v| < L <= kMaxCum + 1), ge[l] += #{v >= l} and le[l] += #{v <= -l} for l >= 1,
// vectorized compare-and-counts; the symbol counts are their differences (EmitCumulative).
struct Cumulative {
  int64_t n = 0;
  int64_t ge[kMaxCum + 2] = {}, le[kMaxCum + 2] = {};
};

template <bool kSigned>
RD_INLINE void CumulativeCounts(const int32_t* __restrict v, int64_t n, int32_t L,
                                Cumulative& C) {
  C.n += n;
  // |v| <= L - 1; stop at the first level no element reaches (the early exit also keeps the
  // compiler from vectorizing the level loop instead of the element loop)
  for (int32_t l = 1; l < L; ++l) {
    int32_t p = 0, q = 0;  // n <= kBlock: no overflow
    for (int64_t j = 0; j < n; ++j) {
      p += static_cast<int32_t>(v[j] >= l);
      if constexpr (kSigned) q += static_cast<int32_t>(v[j] <= -l);
    }
    if (p + q == 0) break;
    C.ge[l] += p;
    C.le[l] += q;
  }
}

// Adds the counts of the L levels to h: magnitude (signed v): symbols s + l (v = l) and
// s - l (v = -l), s = L - 1; otherwise symbol l (v = l >= 0).
RD_INLINE void EmitCumulative(const Cumulative& C, int32_t L, bool magnitude, int32_t* h) {
  const int32_t s = magnitude ? L - 1 : 0;
  h[s] += static_cast<int32_t>(C.n - C.ge[1] - C.le[1]);
  for (int32_t l = 1; l < L; ++l) {
    h[s + l] += static_cast<int32_t>(C.ge[l] - C.ge[l + 1]);
    if (magnitude) h[s - l] += static_cast<int32_t>(C.le[l] - C.le[l + 1]);
  }
}

// The non-finite policy for one element: y where x is finite, else x.
template <typename F>
RD_INLINE F KeepIfNonFinite(F x, F y) {
  using U = typename Bits<F>::U;
  constexpr U kInf = ToBitsConst<F>();
  return (ToBits<F>(x) & kInf) != kInf ? y : x;
}

// Table sizes of the fused one-pass rows (2, 3 and 4-bit tables): m compares are padded up to
// the first size that holds them (the padding never matches); 0: too many, the multi-pass code.
RD_INLINE int FusedSize(int32_t m) { return m <= 2 ? 2 : m <= 6 ? 6 : m <= 14 ? 14 : 0; }

// The table of a fused row with M compares: thresholds th[l] (the padding +inf, above every
// finite value, and no comparison with NaN is true) and the values taken where they are
// passed; sm multiplies the chosen level (the scale, or 1 where the caller does not normalize:
// q * 1 = q exactly); dv divides x (the scale, or 1: v / 1 = v, NaN and -0 included) and keep
// says whether the quotient is used (false: a normalizing caller with scale <= 0 or NaN, where
// r = 0, as safe_div).
template <typename F, int M>
struct FusedTable {
  F th[M + 1], av[M + 1], bv[M + 1];
  F a0, b0, lo, hi, sm, dv;
  bool keep;
};

template <typename F, int M>
RD_INLINE void FusedScale(const Params<F>& P, FusedTable<F, M>& T) {
  const bool nz = P.scale > F(0);
  T.sm = P.flag ? P.scale : F(1);
  T.dv = P.flag ? P.scale : F(1);
  T.keep = !P.flag || nz;
}

// kSigned (interior levels lv[1..m], m = L - 2 <= M): th[l] = lv[l], av[l] = lv[l],
// bv[l] = lv[l + 1] for l = 1..m.
template <typename F, int M>
RD_INLINE FusedTable<F, M> SignedTable(const Params<F>& P) {
  FusedTable<F, M> T;
  const int32_t m = P.L - 2;
  const F* lv = P.lv;
  for (int l = 0; l <= M; ++l) {
    const bool real = l >= 1 && l <= m;
    T.th[l] = real ? lv[l] : std::numeric_limits<F>::infinity();
    T.av[l] = real ? lv[l] : F(0);
    T.bv[l] = real ? lv[l + 1] : F(0);
  }
  T.a0 = T.lo = lv[0];
  T.b0 = lv[1];
  T.hi = lv[P.L - 1];
  FusedScale(P, T);
  return T;
}

// kSigned, with the cell search, the rounding, the non-finite policy and the cumulative counts
// of one block in one loop over its elements (values in registers; a level loop of fixed
// length M that the compiler unrolls). The same operations in the same order as the multi-pass
// path (Cells, then the rounding loop, then CumulativeCounts<false>): the compares r >= lv[l]
// of the interior levels l = 1..m (the padding compares false for the clipped r and for NaN),
// the last level matched wins, and idx = c + up.
template <typename F, int M>
RD_INLINE void SignedFused(const FusedTable<F, M>& T, const F* __restrict xb, int64_t n,
                           const F* __restrict u, F* __restrict yb, int32_t L, Cumulative& C) {
  using I = typename Bits<F>::I;
  F th[M + 1], av[M + 1], bv[M + 1];
  for (int l = 1; l <= M; ++l) {
    th[l] = T.th[l];
    av[l] = T.av[l];
    bv[l] = T.bv[l];
  }
  const F lo = T.lo, hi = T.hi, a0 = T.a0, b0 = T.b0, sm = T.sm, dv = T.dv;
  const bool keep = T.keep;
  // The counts of idx in byte fields: symbol s adds 1 << 8 (s mod 4) to acc[s / 4], summed
  // over kChunk <= 255 elements (no field overflows whatever the vector width), then unpacked.
  constexpr int kAcc = (M + 2 + 3) / 4;
  constexpr int64_t kChunk = 128;
  int32_t cnt[4 * kAcc] = {};
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t j1 = n - j0 < kChunk ? n : j0 + kChunk;
    uint32_t acc[kAcc] = {};
    for (int64_t j = j0; j < j1; ++j) {
      const F v = xb[j];
      const F q0 = v / dv;
      const F r = Clip(keep ? q0 : F(0), lo, hi);
      I c = 0;
      F a = a0, b = b0;
#pragma GCC unroll 16
      for (int l = 1; l <= M; ++l) {
        const bool ge = r >= th[l];
        c += static_cast<I>(ge);
        a = ge ? av[l] : a;
        b = ge ? bv[l] : b;
      }
      const F p = (r - a) / (b - a);
      const bool up = u[j] < p;
      const F q = up ? b : a;
      yb[j] = KeepIfNonFinite<F>(v, sm * q);
      const auto idx = static_cast<uint32_t>(c + static_cast<I>(up));  // 0 .. m + 1
      const uint32_t one = 1u << (8 * (idx & 3u));
#pragma GCC unroll 4
      for (int k = 0; k < kAcc; ++k) acc[k] += (idx >> 2) == static_cast<uint32_t>(k) ? one : 0u;
    }
    for (int k = 0; k < kAcc; ++k) {
      for (int f = 0; f < 4; ++f) cnt[4 * k + f] += static_cast<int32_t>((acc[k] >> (8 * f)) & 0xffu);
    }
  }
  C.n += n;
  int32_t ge = 0;  // #{idx >= l}
  for (int l = L - 1; l >= 1; --l) {
    ge += cnt[l];
    C.ge[l] += ge;
  }
}

// kNearest (thresholds lv[0..t-1], levels lv[t..2t], t = L - 1 <= K): th[l] = lv[l],
// av[l] = the level above it, lv[t + l + 1], for l = 0..t-1; a0 = lv[t].
template <typename F, int K>
RD_INLINE FusedTable<F, K> NearestTable(const Params<F>& P) {
  FusedTable<F, K> T;
  const int32_t t = P.L - 1;
  const F* lv = P.lv;
  for (int l = 0; l <= K; ++l) {
    const bool real = l < t;
    T.th[l] = real ? lv[l] : std::numeric_limits<F>::infinity();
    T.av[l] = real ? lv[t + l + 1] : F(0);
    T.bv[l] = F(0);
  }
  T.a0 = lv[t];
  T.b0 = T.lo = T.hi = F(0);
  FusedScale(P, T);
  return T;
}

// kNearest in one pass over the whole row: the level carried through the threshold loop as
// in the multi-pass path (r > th[l], the last match wins), #{r > th[l]} counted as the number
// of indices >= l + 1.
template <typename F, int K>
RD_INLINE void NearestFused(const FusedTable<F, K>& T, const F* __restrict x, int64_t d,
                            F* __restrict y, int32_t L, Cumulative& C) {
  F th[K], av[K];
  for (int l = 0; l < K; ++l) {
    th[l] = T.th[l];
    av[l] = T.av[l];
  }
  const F a0 = T.a0, sm = T.sm, dv = T.dv;
  const bool keep = T.keep;
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    const F* __restrict xb = x + i0;
    F* __restrict yb = y + i0;
    int32_t cnt[K] = {};  // n <= kBlock: no overflow
    for (int64_t j = 0; j < n; ++j) {
      const F v = xb[j];
      const F q0 = v / dv;
      const F r = keep ? q0 : F(0);
      F a = a0;
#pragma GCC unroll 16
      for (int l = 0; l < K; ++l) {
        const bool gt = r > th[l];
        cnt[l] += static_cast<int32_t>(gt);
        a = gt ? av[l] : a;
      }
      yb[j] = KeepIfNonFinite<F>(v, sm * a);
    }
    C.n += n;
    for (int l = 0; l < L - 1; ++l) C.ge[l + 1] += cnt[l];
  }
}

// Stochastic modes; h holds kLanes * n_sym counters.
template <typename F>
RD_INLINE void StochRow(const Params<F>& P, const F* __restrict x, int64_t d, F* __restrict y,
                        int32_t* h) {
  using U = typename Bits<F>::U;
  using I = typename Bits<F>::I;
  Work<F> W;  // on the stack (16-24 KB): no TLS lookups in the block loops
  const F sc = P.scale;
  const bool nz = sc > F(0);
  const F* lv = P.lv;
  const int32_t L = P.L;
  const bool cumulative = L - 1 <= kMaxCum;  // kMagnitude/kSigned: counts without scatter
  const int fused = P.mode == kSigned ? FusedSize(L - 2) : 0;  // one pass per block
  FusedTable<F, 2> T2;
  FusedTable<F, 6> T6;
  FusedTable<F, 14> T14;
  if (fused == 2) T2 = SignedTable<F, 2>(P);
  if (fused == 6) T6 = SignedTable<F, 6>(P);
  if (fused == 14) T14 = SignedTable<F, 14>(P);
  Cumulative C;
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    const F* __restrict xb = x + i0;
    F* __restrict yb = y + i0;
    Fill<F>(P, i0, n, W);
    if (fused == 2) {
      SignedFused<F, 2>(T2, xb, n, W.u, yb, L, C);
      continue;
    } else if (fused == 6) {
      SignedFused<F, 6>(T6, xb, n, W.u, yb, L, C);
      continue;
    } else if (fused == 14) {
      SignedFused<F, 14>(T14, xb, n, W.u, yb, L, C);
      continue;
    }
    if (P.mode == kMagnitude || P.mode == kSigned) {
      const bool mag = P.mode == kMagnitude;
      const bool norm = mag || P.flag;
      const F lo = lv[0], hi = lv[L - 1];
      for (int64_t j = 0; j < n; ++j) {
        const F v = mag ? std::fabs(xb[j]) : xb[j];
        const F r = norm ? (nz ? v / sc : F(0)) : v;
        W.r[j] = Clip(r, lo, hi);
      }
      Cells<F>(lv, L, n, W);
      if (mag) {
        // x_hat = scale * (+-levels[idx]); symbol s + idx (x >= 0) or s - idx (x < 0),
        // s = L - 1. flag 1 (TernGrad): a zero level stays +0.
        const bool zero_plus = P.flag;
        for (int64_t j = 0; j < n; ++j) {
          const F a = W.a[j], b = W.b[j];
          const F p = (W.r[j] - a) / (b - a);
          const bool up = W.u[j] < p;
          const bool neg = xb[j] < F(0);
          const F v = up ? b : a;
          const bool flip = neg && !(zero_plus && v == F(0));
          yb[j] = sc * (flip ? -v : v);
          const auto idx = static_cast<int32_t>(W.c[j] + static_cast<I>(up));
          W.sym[j] = neg ? -idx : idx;  // the symbol minus s
        }
        if (cumulative) {
          CumulativeCounts<true>(W.sym, n, L, C);
        } else {
          for (int64_t j = 0; j < n; ++j) W.sym[j] += L - 1;
          Histogram(W.sym, n, h, P.n_sym);
        }
      } else {
        const bool scaled = P.flag;
        for (int64_t j = 0; j < n; ++j) {
          const F a = W.a[j], b = W.b[j];
          const F p = (W.r[j] - a) / (b - a);
          const bool up = W.u[j] < p;
          const F v = up ? b : a;
          yb[j] = scaled ? sc * v : v;
          W.sym[j] = static_cast<int32_t>(W.c[j] + static_cast<I>(up));  // idx
        }
        if (cumulative) {
          CumulativeCounts<false>(W.sym, n, L, C);
        } else {
          Histogram(W.sym, n, h, P.n_sym);
        }
      }
      KeepNonFinite<F>(xb, yb, n);
      continue;
    } else {  // kNatural; n_sym = 2 n_exp + 1
      const I n_exp = (P.n_sym - 1) / 2;
      const I e_min =
          std::numeric_limits<F>::min_exponent - std::numeric_limits<F>::digits + 1;
      constexpr int kM = Bits<F>::kMant;
      constexpr U kExp = (U(1) << (8 * sizeof(F) - 1 - kM)) - 1;
      constexpr U kMantMask = (U(1) << kM) - 1;
      I subnormal = 0;
      for (int64_t j = 0; j < n; ++j) {
        // normal |x| = 1.f 2^(E - bias): frexp's e = E - bias + 1 and low = 2^(e - 1) is
        // |x| with the mantissa cleared
        const F ax = std::fabs(xb[j]);
        const U bits = ToBits<F>(ax);
        const I ex = static_cast<I>((bits >> kM) & kExp);
        subnormal += static_cast<I>(ex == 0) & static_cast<I>(ax > F(0));
        // Branch-free (random branches would be mispredicted half the time). p = ax / low - 1
        // without the division: for normal ax, ax / low is exactly 1.f (ax's mantissa with
        // the exponent of 1). ax = 0: p = 0 (the division gives 0/0 - 1 = NaN), `u < p` is
        // false either way, so mag = 0, as in JAX; inf/NaN (ex all ones): the division gives
        // NaN, so up = 0 there too; subnormal ax: the block is redone below.
        const F low = FromBits<F>(bits & (kExp << kM));
        const I pos = static_cast<I>(ax > F(0));
        const F p = FromBits<F>((bits & kMantMask) | Bits<F>::kOne) - F(1);
        const I up = static_cast<I>(W.u[j] < p) & static_cast<I>(ex != static_cast<I>(kExp));
        // mag = low * (1 + up), exactly: low or 2 low, 2 low by adding 1 to the exponent
        // field (2^emax overflows to the bits of inf, as the product does)
        const U mag = ToBits<F>(low) + (static_cast<U>(up) << kM);
        const I neg = static_cast<I>(xb[j] < F(0));
        const U out = mag | (static_cast<U>(neg) << (8 * sizeof(F) - 1));
        // the non-finite policy (x where the exponent field is all ones), branch-free
        const U keep = U(0) - static_cast<U>(ex != static_cast<I>(kExp));
        yb[j] = FromBits<F>((out & keep) | (ToBits<F>(xb[j]) & ~keep));
        I eo = ex - Bits<F>::kBias + 1 + up - e_min;
        eo = std::min(std::max(eo, I(0)), n_exp - 1);
        W.sym[j] = static_cast<int32_t>(pos * (1 + eo + (1 - neg) * n_exp));
      }
      if (subnormal != 0) {  // redo the block with frexp/ldexp (exact for subnormals)
        for (int64_t j = 0; j < n; ++j) {
          const F ax = std::fabs(xb[j]);
          int e = 0;
          (void)std::frexp(ax, &e);  // ax = m 2^e, m in [1/2, 1); e = 0 for ax = 0
          const F low = std::ldexp(F(1), e - 1);
          const bool pos = ax > F(0);
          const F p = pos ? ax / low - F(1) : F(0);
          const bool up = W.u[j] < p;
          const F mag = pos ? (up ? F(2) * low : low) : F(0);
          const bool neg = xb[j] < F(0);
          yb[j] = KeepIfNonFinite<F>(xb[j], neg ? -mag : mag);
          I eo = e + static_cast<I>(up) - e_min;
          eo = eo < 0 ? 0 : (eo > n_exp - 1 ? n_exp - 1 : eo);
          W.sym[j] = static_cast<int32_t>(pos ? (neg ? 1 + eo : 1 + n_exp + eo) : 0);
        }
      }
    }
    Histogram(W.sym, n, h, P.n_sym);  // (the non-finite policy is applied above)
  }
  if (cumulative && P.mode != kNatural) EmitCumulative(C, L, P.mode == kMagnitude, h);
}

// Deterministic modes, one read of x; h holds kLanes * n_sym counters.
template <typename F>
RD_INLINE void DetRow(const Params<F>& P, const F* __restrict x, int64_t d, F* __restrict y,
                      int32_t* h) {
  const F sc = P.scale;
  const bool nz = sc > F(0);
  const F* lv = P.lv;
  const int32_t L = P.L;
  if (P.mode == kSign) {  // sign (flag 0): +-1; scaled sign (flag 1): scale * (+-1)
    int64_t pos = 0;
    const F one = P.flag ? sc : F(1);
    using U = typename Bits<F>::U;
    constexpr U kInf = ToBitsConst<F>();
    for (int64_t i = 0; i < d; ++i) {
      const bool p = x[i] >= F(0);
      const F v = P.flag ? sc * (p ? F(1) : F(-1)) : (p ? F(1) : F(-1));
      y[i] = (ToBits<F>(x[i]) & kInf) != kInf ? v : x[i];
      pos += p;
    }
    (void)one;
    h[1] += static_cast<int32_t>(pos);
    h[0] += static_cast<int32_t>(d - pos);
    return;
  }
  if (P.mode == kThreshold) {  // keep |x| > scale; symbol 1 = kept
    int64_t kept = 0;
    using U = typename Bits<F>::U;
    constexpr U kInf = ToBitsConst<F>();
    for (int64_t i = 0; i < d; ++i) {
      const bool k = std::fabs(x[i]) > sc;
      y[i] = (k || (ToBits<F>(x[i]) & kInf) == kInf) ? x[i] : F(0);
      kept += k;
    }
    h[1] += static_cast<int32_t>(kept);
    h[0] += static_cast<int32_t>(d - kept);
    return;
  }
  // kNearest: thresholds lv[0..L-2], levels lv[L-1..2L-2]; flag: normalize
  using I = typename Bits<F>::I;
  Work<F> W;  // on the stack (16-24 KB): no TLS lookups in the block loops
  const F* th = lv;
  const F* q = lv + (L - 1);
  const bool cumulative = L - 1 <= kMaxCum;
  Cumulative C;
  switch (FusedSize(L - 2)) {  // K = m + 1 thresholds, one pass
    case 2:
      NearestFused<F, 3>(NearestTable<F, 3>(P), x, d, y, L, C);
      return EmitCumulative(C, L, false, h);
    case 6:
      NearestFused<F, 7>(NearestTable<F, 7>(P), x, d, y, L, C);
      return EmitCumulative(C, L, false, h);
    case 14:
      NearestFused<F, 15>(NearestTable<F, 15>(P), x, d, y, L, C);
      return EmitCumulative(C, L, false, h);
    default:
      break;
  }
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    const F* __restrict xb = x + i0;
    F* __restrict yb = y + i0;
    for (int64_t j = 0; j < n; ++j) W.r[j] = P.flag ? (nz ? xb[j] / sc : F(0)) : xb[j];
    if (cumulative) {
      // level and count carried through the threshold loop (no gather); #{r > th[l]} is the
      // number of indices >= l + 1
      for (int64_t j = 0; j < n; ++j) W.a[j] = q[0];
      C.n += n;
      for (int32_t l = 0; l < L - 1; ++l) {
        const F t = th[l], v = q[l + 1];
        int32_t hits = 0;  // n <= kBlock
        for (int64_t j = 0; j < n; ++j) {
          const bool gt = W.r[j] > t;
          hits += gt;
          W.a[j] = gt ? v : W.a[j];
        }
        C.ge[l + 1] += hits;
      }
      for (int64_t j = 0; j < n; ++j) yb[j] = P.flag ? sc * W.a[j] : W.a[j];
      KeepNonFinite<F>(xb, yb, n);
      continue;
    }
    for (int64_t j = 0; j < n; ++j) {
      int32_t lo = 0, hi = L - 1;  // #{th < v}
      while (lo < hi) {
        const int32_t mid = (lo + hi) / 2;
        if (th[mid] < W.r[j]) lo = mid + 1; else hi = mid;
      }
      W.c[j] = lo;
    }
    for (int64_t j = 0; j < n; ++j) {
      const I c = W.c[j];
      yb[j] = P.flag ? sc * q[c] : q[c];
      W.sym[j] = static_cast<int32_t>(c);
    }
    KeepNonFinite<F>(xb, yb, n);
    Histogram(W.sym, n, h, P.n_sym);
  }
  if (cumulative) EmitCumulative(C, L, false, h);
}

// Rand-K's keys: 30 random bits of stream word i mapped monotonically onto normal positive
// float32 numbers (then widened exactly to F); one symbol counted.
template <typename F>
RD_INLINE void KeysRow(const Params<F>& P, int64_t d, F* __restrict y, int32_t* h) {
  Work<F> W;  // on the stack (16-24 KB): no TLS lookups in the block loops
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    const int64_t nb = (n + 1) >> 1;
    Blocks(P.k0, P.k1, i0 >> 1, nb, W.w0, W.w1);
    for (int64_t j = 0; j < nb; ++j) {
      W.u[2 * j] = static_cast<F>(FromBits<float>((W.w0[j] >> 2) + 0x00800000u));
      W.u[2 * j + 1] = static_cast<F>(FromBits<float>((W.w1[j] >> 2) + 0x00800000u));
    }
    F* __restrict yb = y + i0;
    for (int64_t j = 0; j < n; ++j) yb[j] = W.u[j];
  }
  h[0] += static_cast<int32_t>(d);
}

// The stream's uniforms as drawn for stochastic rounding (Fill); one symbol counted.
template <typename F>
RD_INLINE void UniformRow(const Params<F>& P, int64_t d, F* __restrict y, int32_t* h) {
  Work<F> W;
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    Fill<F>(P, i0, n, W);
    F* __restrict yb = y + i0;
    for (int64_t j = 0; j < n; ++j) yb[j] = W.u[j];
  }
  h[0] += static_cast<int32_t>(d);
}

RD_CLONES void RowF32(const Params<float>& P, const float* x, int64_t d, float* y, int32_t* h) {
  if (P.mode == kUniform) {
    UniformRow<float>(P, d, y, h);
  } else if (P.mode == kRandKeys) {
    KeysRow<float>(P, d, y, h);
  } else if (P.mode <= kNatural) {
    StochRow<float>(P, x, d, y, h);
  } else {
    DetRow<float>(P, x, d, y, h);
  }
}
RD_CLONES void RowF64(const Params<double>& P, const double* x, int64_t d, double* y,
                      int32_t* h) {
  if (P.mode == kUniform) {
    UniformRow<double>(P, d, y, h);
  } else if (P.mode == kRandKeys) {
    KeysRow<double>(P, d, y, h);
  } else if (P.mode <= kNatural) {
    StochRow<double>(P, x, d, y, h);
  } else {
    DetRow<double>(P, x, d, y, h);
  }
}
inline void Row(const Params<float>& P, const float* x, int64_t d, float* y, int32_t* h) {
  RowF32(P, x, d, y, h);
}
inline void Row(const Params<double>& P, const double* x, int64_t d, double* y, int32_t* h) {
  RowF64(P, x, d, y, h);
}

// ----------------------------------------------------------------------------- Rand-K subset
// Rand-K's index set without writing the d keys: the indices of top_k_abs(rand_keys(x), k)
// (ratedist/compressors/sparse.py), in increasing order. Key i is v_i = w_i >> 2, 30 bits of
// stream word i (KeysRow maps v_i monotonically onto float32 (v_i + 2^23) bits, so the float
// order is the order of v_i); top_k_abs takes the k largest keys with equal keys going to the
// lower index. Here the pair (v_i, i) is packed as (v_i << 32) | (2^32 - 1 - i): its integer
// order is exactly that order, and no two pairs are equal.
//
// The v_i are i.i.d. uniform on [0, 2^30), so a bracket is analytic: the keys >= t0 with
// d (2^30 - t0) / 2^30 = k + sigmas sqrt(k) + kSubsetExtra expected survivors (standard
// deviation ~ sqrt(k)) contain the top k unless fewer than k survive; then (probability
// ~ Phi(-sigmas) + e^-kSubsetExtra) the row is redone with t0 = 0 (every key a candidate).
// One pass generates the words block by block into L1, flags the keys >= t0 (vectorized),
// skips the groups of 16 words with no flag, and walks the set flags of the others in index
// order; a histogram of the ~k survivors' top key bits and std::nth_element on the one bucket
// that holds it find the k-th largest pair T (KthLargest), and the survivors >= T are emitted.
// Memory: 16 bytes per survivor (all d of them when k is close to d or the bracket missed),
// kept per thread for the next call.
constexpr double kSubsetExtra = 16.0;
constexpr int64_t kSubsetGroup = 8;  // blocks (16 words) tested together against t0
static_assert(kSubsetGroup == 8, "the group test reads 8 one-byte flags as one word");

// the bracket: 2^30 - ceil(expected 2^30 / d) clamped to [0, 2^30] (2^30: no candidate)
inline uint32_t SubsetThreshold(int64_t d, int64_t k, double sigmas) {
  const double expect =
      static_cast<double>(k) + sigmas * std::sqrt(static_cast<double>(k)) + kSubsetExtra;
  constexpr double kTop = 1073741824.0;  // 2^30
  if (!(expect > 0.0)) return 1u << 30;
  if (expect >= static_cast<double>(d)) return 0;
  const double t = kTop - std::ceil(expect * kTop / static_cast<double>(d));
  return t <= 0.0 ? 0u : static_cast<uint32_t>(t);
}

// Rand-K's dense output (RatedistRandKDense) starts as the zero background under the
// non-finite policy: y_i = x_i where x_i is NaN or +-inf, else +0. The candidate pass writes it
// block by block, so that its memory traffic overlaps the stream's arithmetic; the k sent
// entries are set afterwards.
struct Background {
  const float* xf = nullptr;
  float* yf = nullptr;
  const double* xd = nullptr;
  double* yd = nullptr;
};

template <typename F>
RD_INLINE void ZeroBackground(const F* __restrict x, F* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = KeepIfNonFinite(x[j], F(0));
}

// The packed pairs of the keys v_i >= t0, i < d, in increasing i, in c (grown as needed;
// never shrunk); returns their number. Writes the background bg of the same elements (if any).
RD_CLONES int64_t SubsetCandidates(uint32_t k0, uint32_t k1, int64_t d, uint32_t t0,
                                   std::vector<uint64_t>& c, const Background& bg) {
  if (t0 >= (1u << 30)) {  // no 30-bit key reaches t0: the background only
    if (bg.yf != nullptr) ZeroBackground(bg.xf, bg.yf, d);
    if (bg.yd != nullptr) ZeroBackground(bg.xd, bg.yd, d);
    return 0;
  }
  const uint32_t tw = t0 << 2;      // w >> 2 >= t0  <=>  w >= 4 t0
  alignas(64) uint32_t w0[kBlock / 2], w1[kBlock / 2];
  alignas(64) uint8_t h0[kBlock / 2], h1[kBlock / 2];
  int64_t m = 0;
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    const int64_t nb = (n + 1) >> 1;  // element i0 + 2j: w0[j], i0 + 2j + 1: w1[j]
    if (static_cast<int64_t>(c.size()) < m + n) {
      const int64_t grown = std::max<int64_t>(2 * static_cast<int64_t>(c.size()), m + n);
      c.resize(static_cast<size_t>(grown));
    }
    uint64_t* __restrict out = c.data();
    Blocks(k0, k1, i0 >> 1, nb, w0, w1);
    if (bg.yf != nullptr) ZeroBackground(bg.xf + i0, bg.yf + i0, n);
    if (bg.yd != nullptr) ZeroBackground(bg.xd + i0, bg.yd + i0, n);
    // vectorized flags (one byte per word), then groups of kSubsetGroup blocks tested as one
    // 64-bit word; in a group with a survivor, its set flags are walked in index order
    const int64_t nr = (nb + kSubsetGroup - 1) / kSubsetGroup * kSubsetGroup;
    for (int64_t j = 0; j < nb; ++j) {
      h0[j] = static_cast<uint8_t>(w0[j] >= tw);
      h1[j] = static_cast<uint8_t>(w1[j] >= tw);
    }
    if (n & 1) h1[nb - 1] = 0;  // an odd row end has no element i0 + 2 nb - 1
    for (int64_t j = nb; j < nr; ++j) h0[j] = h1[j] = 0;
    for (int64_t g = 0; g < nb; g += kSubsetGroup) {
      uint64_t a0, a1;
      std::memcpy(&a0, h0 + g, sizeof(a0));
      std::memcpy(&a1, h1 + g, sizeof(a1));
      uint64_t f = a0 | (a1 << 1);  // bit 8 b + e: element i0 + 2 (g + b) + e survives
      while (f != 0) {  // rarely entered at small k/d
        const int t = __builtin_ctzll(f);
        const int64_t j = g + (t >> 3);
        const auto i = static_cast<uint32_t>(i0 + 2 * j + (t & 1));
        const uint32_t v = ((t & 1) ? w1[j] : w0[j]) >> 2;
        out[m++] = (static_cast<uint64_t>(v) << 32) | (~i);
        f &= f - 1;
      }
    }
  }
  return m;
}

struct SubsetScratch {
  std::vector<uint64_t> cand, sel;
  std::vector<int64_t> hist;
};

// The k-th largest of the m > k candidate pairs c (keys >= t0): a histogram of the keys' top
// bits finds the bucket that holds it (the keys are uniform on [t0, 2^30), so the buckets are
// even), std::nth_element then orders that bucket's few pairs only.
inline uint64_t KthLargest(const uint64_t* c, int64_t m, int64_t k, uint32_t t0,
                           SubsetScratch& w) {
  constexpr int64_t kBuckets = 2048;
  const uint32_t span = (1u << 30) - t0;  // keys - t0 lie in [0, span)
  int shift = 0;
  while ((static_cast<uint64_t>(span - 1) >> shift) >= static_cast<uint64_t>(kBuckets)) ++shift;
  auto bucket = [&](uint64_t pair) { return ((pair >> 32) - t0) >> shift; };
  w.hist.assign(kBuckets, 0);
  for (int64_t j = 0; j < m; ++j) ++w.hist[bucket(c[j])];
  int64_t above = 0, b = kBuckets - 1;  // pairs in the buckets above b
  while (above + w.hist[b] < k) above += w.hist[b--];
  w.sel.clear();
  for (int64_t j = 0; j < m; ++j) {
    if (static_cast<int64_t>(bucket(c[j])) == b) w.sel.push_back(c[j]);
  }
  const auto r = static_cast<int64_t>(w.sel.size()) - (k - above);  // from the bottom
  std::nth_element(w.sel.begin(), w.sel.begin() + r, w.sel.end());
  return w.sel[static_cast<size_t>(r)];
}

// One row: the k indices, increasing, into idx (and the background bg, if any).
void SubsetRow(uint32_t k0, uint32_t k1, int64_t d, int64_t k, double sigmas, int32_t* idx,
               SubsetScratch& w, const Background& bg = Background()) {
  uint32_t t0 = SubsetThreshold(d, k, sigmas);
  int64_t m = SubsetCandidates(k0, k1, d, t0, w.cand, bg);
  if (m < k) {  // the bracket missed: all d keys
    t0 = 0;
    m = SubsetCandidates(k0, k1, d, t0, w.cand, Background());
  }
  const uint64_t* c = w.cand.data();
  const uint64_t t = m > k ? KthLargest(c, m, k, t0, w) : 0;  // every pair >= 0 when m == k
  int64_t o = 0;
  for (int64_t j = 0; j < m; ++j) {
    if (c[j] >= t) idx[o++] = static_cast<int32_t>(~static_cast<uint32_t>(c[j]));
  }
}

ffi::Error RandomSubset(ffi::Buffer<ffi::U32> key, ffi::ResultBuffer<ffi::S32> idx, int64_t d,
                        double sigmas) {
  const int64_t k = idx->dimensions().size() == 0 ? 0 : idx->dimensions().back();
  if (d < 1 || d > INT32_MAX) {
    return ffi::Error::InvalidArgument("ratedist random subset: need 1 <= d <= 2^31 - 1");
  }
  if (k < 1 || k > d) {
    return ffi::Error::InvalidArgument("ratedist random subset: need 1 <= k <= d");
  }
  const int64_t rows = static_cast<int64_t>(key.element_count()) / 2;
  if (static_cast<int64_t>(key.element_count()) != 2 * rows ||
      static_cast<int64_t>(idx->element_count()) != rows * k) {
    return ffi::Error::InvalidArgument("ratedist random subset: inconsistent shapes");
  }
  thread_local SubsetScratch work;
  const uint32_t* kp = key.typed_data();
  int32_t* ip = idx->typed_data();
  for (int64_t r = 0; r < rows; ++r) {
    SubsetRow(kp[2 * r], kp[2 * r + 1], d, k, sigmas, ip + r * k, work);
  }
  return ffi::Error::Success();
}

// Rand-K's update in one call: x_hat = where(isfinite(x), zeros.at[idx].set(x[idx] * s), x)
// with idx = SubsetRow's indices and s the scale input (rand-k-unbiased: d/k in x's dtype;
// rand-k: 1, and x * 1 = x exactly, NaN and -0 included). The same bits as that jax.numpy
// expression: the background is written in the candidate pass, then the k sent entries.
template <ffi::DataType T>
ffi::Error RandKDense(ffi::Buffer<T> x, ffi::Buffer<ffi::U32> key, ffi::Buffer<T> scale,
                      ffi::ResultBuffer<T> y, int64_t k, double sigmas) {
  using F = ffi::NativeType<T>;
  auto dims = x.dimensions();
  if (dims.size() == 0) return ffi::Error::InvalidArgument("ratedist rand-k: x needs rank >= 1");
  const int64_t d = dims.back();
  if (d < 1 || d > INT32_MAX) {
    return ffi::Error::InvalidArgument("ratedist rand-k: need 1 <= d <= 2^31 - 1");
  }
  if (k < 1 || k > d) return ffi::Error::InvalidArgument("ratedist rand-k: need 1 <= k <= d");
  const int64_t rows = static_cast<int64_t>(x.element_count()) / d;
  if (static_cast<int64_t>(scale.element_count()) != rows ||
      static_cast<int64_t>(key.element_count()) != 2 * rows) {
    return ffi::Error::InvalidArgument("ratedist rand-k: inconsistent shapes");
  }
  thread_local SubsetScratch work;
  thread_local std::vector<int32_t> idx;
  idx.resize(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    const F* xr = x.typed_data() + r * d;
    F* yr = y->typed_data() + r * d;
    Background bg;
    if constexpr (sizeof(F) == 4) {
      bg.xf = xr;
      bg.yf = yr;
    } else {
      bg.xd = xr;
      bg.yd = yr;
    }
    const uint32_t* kp = key.typed_data() + 2 * r;
    SubsetRow(kp[0], kp[1], d, k, sigmas, idx.data(), work, bg);
    const F s = scale.typed_data()[r];
    for (int64_t j = 0; j < k; ++j) {
      const F v = xr[idx[j]];
      yr[idx[j]] = KeepIfNonFinite(v, v * s);
    }
  }
  return ffi::Error::Success();
}

// ----------------------------------------------------------------------------- symbol entropy
// Symbols are counted in histograms of their value span while it is at most
// max(4 m, 2^16) and 2^22 integers (m symbols); wider rows or columns are sorted instead.
constexpr int64_t kRunSpanMax = int64_t(1) << 22;
constexpr int64_t kRunSpanMin = int64_t(1) << 16;
inline int64_t HistogramSpanLimit(int64_t m) {
  return std::min(kRunSpanMax, std::max(4 * m, kRunSpanMin));
}

// sum_c c log2(d / c) over the nonzero counts (increasing symbol order)
inline double EntropyBits(int32_t c, int64_t d) {
  return c == 0 ? 0.0 : static_cast<double>(c) * std::log2(static_cast<double>(d) / c);
}

// The entropy sum_c c log2(m / c) of the m symbols in buf (sorted in place, increasing
// values: the same order of the terms as a histogram's), and their smallest and largest value.
inline double SortedEntropy(std::vector<int32_t>& buf, int32_t* ext) {
  const auto m = static_cast<int64_t>(buf.size());
  std::sort(buf.begin(), buf.end());
  ext[0] = buf.front();
  ext[1] = buf.back();
  double bits = 0.0;
  int64_t start = 0;
  for (int64_t i = 1; i <= m; ++i) {
    if (i == m || buf[i] != buf[i - 1]) {
      bits += EntropyBits(static_cast<int32_t>(i - start), m);
      start = i;
    }
  }
  return bits;
}

// ----------------------------------------------------------------------------- integer grid
// Rounding onto an integer grid whose symbols are not known in advance: the grid compressor
// (ratedist/compressors/grid.py) and the Z^n lattice (ratedist/compressors/lattice.py). Per
// element, from x, the caller's scale s and the stream's uniform u (Fill), the jax.numpy
// expressions of those modules in the same order:
//   kGridStochastic  y = x * (1/s), k = floor(y), i = k + (u < y - k), x_hat = s * i
//   kGridNearest     i = rint(y) (ties to even),                     x_hat = s * i
//   kZn              t = s > 0 ? x * (1 / s) : 0, i = rint(t),        x_hat = s > 0 ? i / (1/s) : 0
//   kZnDither        w = u - rint(u) (the point of Z^1's cell),
//                    i = rint(t - w),                                x_hat = ... (i + w) / (1/s)
// with the non-finite policy on x_hat, and the symbol int32(i) (XLA's conversion: saturating,
// NaN -> 0). Outputs: x_hat, the smallest and largest symbol, and the empirical entropy of the
// symbols in bits, sum_c c log2(d / c) over the counts c of the distinct symbols (in double,
// in increasing order of the symbols; written as float32 or float64, the caller's choice):
// the pure-JAX path sums the same terms in another order, so the two agree to rounding. (A
// length-d counts output would cost a 4d-byte write and a read with a
// logarithm per entry in XLA: more than the rounding itself.)
//
// One pass: block by block the symbols go to kLanes interleaved histograms of a span that is
// widened (and re-laid out) whenever a block's symbols fall outside it. A row whose span would
// exceed HistogramSpanLimit(d) is redone into a symbol buffer and sorted (SortedEntropy).
enum GridMode : int32_t {
  kGridStochastic = 0,
  kGridNearest = 1,
  kZn = 2,
  kZnDither = 3,
};

// XLA's float -> int32 conversion of an integral v: NaN -> 0, saturating at the int32 range
// (the truncating conversion gives INT32_MIN for NaN and every v out of range)
template <typename F>
RD_INLINE int32_t SaturatingInt(F v) {
  constexpr F kTop = F(2147483648.0);
  const auto t = static_cast<int32_t>(v >= F(-kTop) && v < kTop ? v : F(-kTop));
  return v >= kTop ? std::numeric_limits<int32_t>::max() : (v == v ? t : 0);
}

template <typename F>
RD_INLINE void GridBlock(const Params<F>& P, const F* __restrict xb, int64_t n,
                         F* __restrict yb, Work<F>& W) {
  const F s = P.scale;
  const F rs = F(1) / s;
  if (P.mode == kGridStochastic) {
    for (int64_t j = 0; j < n; ++j) {
      const F v = xb[j] * rs;
      // floor(v) from rint (GCC vectorizes rint here but not floor): the same value for
      // every v, signed zeros, infinities and NaN included
      const F near = std::nearbyint(v);
      const F k = near > v ? near - F(1) : near;
      const F i = k + (W.u[j] < v - k ? F(1) : F(0));
      yb[j] = KeepIfNonFinite<F>(xb[j], s * i);
      W.sym[j] = SaturatingInt<F>(i);
    }
  } else if (P.mode == kGridNearest) {
    for (int64_t j = 0; j < n; ++j) {
      const F i = std::nearbyint(xb[j] * rs);
      yb[j] = KeepIfNonFinite<F>(xb[j], s * i);
      W.sym[j] = SaturatingInt<F>(i);
    }
  } else {
    const bool nz = s > F(0);
    const F inv = F(1) / (nz ? s : F(1));
    const bool dither = P.mode == kZnDither;
    for (int64_t j = 0; j < n; ++j) {
      const F w = dither ? W.u[j] - std::nearbyint(W.u[j]) : F(0);
      // dither: XLA contracts the product of y = x (1/s) with the subtraction of w (through
      // the select) into one FMA, so the kernel does the same
      const F t = dither ? (nz ? std::fma(xb[j], inv, -w) : F(0) - w) : (nz ? xb[j] * inv : F(0));
      const F i = std::nearbyint(t);
      const F point = dither ? i + w : i;
      yb[j] = KeepIfNonFinite<F>(xb[j], nz ? point / inv : F(0));
      W.sym[j] = SaturatingInt<F>(i);
    }
  }
}

// Counts of a block of n <= kBlock symbols in [lo, lo + kByteSpan], added to h[0 .. hi - lo],
// without scattered increments: the offsets r = sym - lo as bytes, four per 32-bit word, and
// for each level l >= 1 the count ge_l = #{r >= l} from a carry-free byte-wise add (r + 128 - l
// <= 254 sets bit 7 of its byte iff r >= l), so one vector instruction compares 4 x (vector
// width) symbols; count(lo + l - 1) = ge_(l-1) - ge_l.
constexpr int64_t kByteSpan = 127;
static_assert(kBlock % 4 == 0 && kBlock / 4 <= 255, "byte-wise counters must not overflow");

RD_INLINE void ByteCounts(const int32_t* __restrict sym, int64_t n, int32_t lo, int32_t hi,
                          int32_t* __restrict h) {
  alignas(64) uint32_t words[kBlock / 4];
  auto* rel = reinterpret_cast<uint8_t*>(words);  // (bytes may alias the words)
  for (int64_t j = 0; j < n; ++j) rel[j] = static_cast<uint8_t>(sym[j] - lo);
  for (int64_t j = n; j < ((n + 3) & ~int64_t(3)); ++j) rel[j] = 0;  // 0 is >= no level
  const int64_t nw = (n + 3) >> 2;
  int32_t prev = static_cast<int32_t>(n);
  for (int32_t l = 1; l <= hi - lo; ++l) {
    const uint32_t add = 0x01010101u * static_cast<uint32_t>(128 - l);
    uint32_t acc = 0;  // four byte counters, each <= nw <= 128
    for (int64_t k = 0; k < nw; ++k) acc += ((words[k] + add) >> 7) & 0x01010101u;
    const uint32_t pairs = (acc & 0x00ff00ffu) + ((acc >> 8) & 0x00ff00ffu);
    const auto ge = static_cast<int32_t>((pairs & 0xffffu) + (pairs >> 16));
    h[l - 1] += prev - ge;
    prev = ge;
  }
  h[hi - lo] += prev;
}

struct GridHist {
  std::vector<int32_t> h;  // kLanes tables of span counters: h[k * span + (v - base)]
  int64_t base = 0, span = 0;
};

// Widens G to cover [lo, hi] (at least doubling, so that a drifting row re-lays out O(log)
// times); false when the span would exceed limit.
inline bool GridCover(GridHist& G, int64_t lo, int64_t hi, int64_t limit) {
  if (G.span > 0 && lo >= G.base && hi < G.base + G.span) return true;
  int64_t a = lo, b = hi;
  if (G.span > 0) {
    a = std::min(a, G.base);
    b = std::max(b, G.base + G.span - 1);
    const int64_t want = std::max(b - a + 1, 2 * G.span);
    const int64_t extra = want - (b - a + 1);
    a -= extra / 2;
    b += extra - extra / 2;
  }
  const int64_t span = b - a + 1;
  if (span > limit) return false;
  std::vector<int32_t> h(static_cast<size_t>(kLanes * span), 0);
  for (int k = 0; k < kLanes && G.span > 0; ++k) {
    std::copy(G.h.begin() + k * G.span, G.h.begin() + (k + 1) * G.span,
              h.begin() + k * span + (G.base - a));
  }
  G.h.swap(h);
  G.base = a;
  G.span = span;
  return true;
}

struct GridScratch {
  GridHist hist;
  std::vector<int32_t> sym;
};

// One row: x_hat into y, the smallest and largest symbol into ext, the entropy into *ent.
template <typename F>
RD_INLINE void GridRow(const Params<F>& P, const F* x, int64_t d, F* y, int32_t* ext,
                       double* ent, GridScratch& w) {
  const int64_t limit = HistogramSpanLimit(d);
  const bool random = P.mode == kGridStochastic || P.mode == kZnDither;
  GridHist& G = w.hist;
  G.span = 0;
  Work<F> W;
  bool fits = true;
  for (int64_t i0 = 0; i0 < d && fits; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    if (random) {
      // the next block's lines of x and y, requested before the stream's arithmetic (the
      // hardware prefetcher alone leaves the loads of x stalled after it)
      const int64_t ahead = std::min<int64_t>(kBlock, d - i0 - n);
      for (int64_t j = 0; j < ahead; j += 64 / static_cast<int64_t>(sizeof(F))) {
        __builtin_prefetch(x + i0 + n + j, 0);
        __builtin_prefetch(y + i0 + n + j, 1);
      }
      Fill<F>(P, i0, n, W);
    }
    GridBlock<F>(P, x + i0, n, y + i0, W);
    int32_t lo = W.sym[0], hi = W.sym[0];
    for (int64_t j = 1; j < n; ++j) {
      lo = std::min(lo, W.sym[j]);
      hi = std::max(hi, W.sym[j]);
    }
    if (!GridCover(G, lo, hi, limit)) {
      fits = false;
      break;
    }
    int32_t* h = G.h.data();
    const int64_t span = G.span, base = G.base;
    if (static_cast<int64_t>(hi) - lo <= kByteSpan) {
      ByteCounts(W.sym, n, lo, hi, h + (lo - base));
      continue;
    }
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) ++h[k * span + (W.sym[j + k] - base)];
    }
    for (; j < n; ++j) ++h[W.sym[j] - base];
  }
  if (fits) {
    const int32_t* h = G.h.data();
    int64_t first = -1, last = -1;
    double bits = 0.0;
    for (int64_t r = 0; r < G.span; ++r) {
      int32_t c = 0;
      for (int k = 0; k < kLanes; ++k) c += h[k * G.span + r];
      if (c == 0) continue;
      if (first < 0) first = r;
      last = r;
      bits += EntropyBits(c, d);
    }
    ext[0] = static_cast<int32_t>(G.base + first);
    ext[1] = static_cast<int32_t>(G.base + last);
    *ent = bits;
    return;
  }
  // too wide for a histogram: every symbol into a buffer (the blocks again, same stream)
  w.sym.resize(static_cast<size_t>(d));
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    if (random) Fill<F>(P, i0, n, W);
    GridBlock<F>(P, x + i0, n, y + i0, W);
    std::copy(W.sym, W.sym + n, w.sym.begin() + i0);
  }
  *ent = SortedEntropy(w.sym, ext);
}

RD_CLONES void GridRowF32(const Params<float>& P, const float* x, int64_t d, float* y,
                          int32_t* ext, double* ent, GridScratch& w) {
  GridRow<float>(P, x, d, y, ext, ent, w);
}
RD_CLONES void GridRowF64(const Params<double>& P, const double* x, int64_t d, double* y,
                          int32_t* ext, double* ent, GridScratch& w) {
  GridRow<double>(P, x, d, y, ext, ent, w);
}
inline void GridRowAny(const Params<float>& P, const float* x, int64_t d, float* y,
                       int32_t* ext, double* ent, GridScratch& w) {
  GridRowF32(P, x, d, y, ext, ent, w);
}
inline void GridRowAny(const Params<double>& P, const double* x, int64_t d, double* y,
                       int32_t* ext, double* ent, GridScratch& w) {
  GridRowF64(P, x, d, y, ext, ent, w);
}

// The entropy outputs of the grid and column-entropy handlers: float32 or float64 (the
// caller's info dtype), written from a double.
inline bool EntropyTypeOk(const ffi::AnyBuffer& ent) {
  return ent.element_type() == ffi::DataType::F32 || ent.element_type() == ffi::DataType::F64;
}
inline void StoreEntropy(const ffi::AnyBuffer& ent, int64_t i, double bits) {
  if (ent.element_type() == ffi::DataType::F64) {
    static_cast<double*>(ent.untyped_data())[i] = bits;
  } else {
    static_cast<float*>(ent.untyped_data())[i] = static_cast<float>(bits);
  }
}

// ----------------------------------------------------------------------------- column entropy
// The entropy layer of the lattice labels: for each column j of an int32 matrix (m, n), the
// smallest and largest value and sum_c c log2(m / c) over the counts c of its distinct values
// (in double, increasing values; the pure-JAX path, run counts + counts_entropy_bits per
// column, sums in another order: the same to rounding). One pass finds the columns' ranges,
// a second counts every column at once into its own histogram (columns are interleaved in
// memory, so consecutive increments go to different tables); a column whose span exceeds
// the histogram limit is gathered and sorted (SortedEntropy).
struct ColumnScratch {
  std::vector<int32_t> hist, col;
};

template <int64_t N>  // N = 0: n at run time
RD_INLINE void ColumnRanges(const int32_t* __restrict v, int64_t m, int32_t* lo, int32_t* hi,
                            int64_t n_run = N) {
  const int64_t n = N > 0 ? N : n_run;
  for (int64_t j = 0; j < n; ++j) lo[j] = hi[j] = v[j];
  for (int64_t r = 1; r < m; ++r) {
    const int32_t* row = v + r * n;
    for (int64_t j = 0; j < n; ++j) {
      lo[j] = row[j] < lo[j] ? row[j] : lo[j];
      hi[j] = row[j] > hi[j] ? row[j] : hi[j];
    }
  }
}

template <int64_t N>
RD_INLINE void ColumnCounts(const int32_t* __restrict v, int64_t m, const int64_t* base,
                            int32_t* __restrict h, int64_t n_run = N) {
  const int64_t n = N > 0 ? N : n_run;
  for (int64_t r = 0; r < m; ++r) {
    const int32_t* row = v + r * n;
    for (int64_t j = 0; j < n; ++j) ++h[base[j] + row[j]];
  }
}

void ColumnEntropyMatrix(const int32_t* v, int64_t m, int64_t n, int32_t* ext, double* ent,
                         ColumnScratch& w) {
  constexpr int64_t kMaxCols = 64;
  int32_t lo[kMaxCols], hi[kMaxCols];
  int64_t off[kMaxCols + 1];
  if (n == 4) {
    ColumnRanges<4>(v, m, lo, hi);
  } else if (n == 8) {
    ColumnRanges<8>(v, m, lo, hi);
  } else {
    ColumnRanges<0>(v, m, lo, hi, n);
  }
  const int64_t limit = HistogramSpanLimit(m);
  bool wide[kMaxCols];
  off[0] = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t span = static_cast<int64_t>(hi[j]) - lo[j] + 1;
    wide[j] = span > limit;
    off[j + 1] = off[j] + (wide[j] ? 0 : span);
    ext[2 * j] = lo[j];
    ext[2 * j + 1] = hi[j];
  }
  w.hist.assign(static_cast<size_t>(off[n]), 0);
  int32_t* h = w.hist.data();
  int64_t base[kMaxCols];  // h index of value 0 of column j (narrow columns)
  for (int64_t j = 0; j < n; ++j) base[j] = off[j] - lo[j];
  bool any_wide = false;
  for (int64_t j = 0; j < n; ++j) any_wide = any_wide || wide[j];
  if (!any_wide && n == 4) {
    ColumnCounts<4>(v, m, base, h);
  } else if (!any_wide && n == 8) {
    ColumnCounts<8>(v, m, base, h);
  } else if (!any_wide) {
    ColumnCounts<0>(v, m, base, h, n);
  } else {
    for (int64_t r = 0; r < m; ++r) {
      const int32_t* row = v + r * n;
      for (int64_t j = 0; j < n; ++j) {
        if (!wide[j]) ++h[base[j] + row[j]];
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    double bits = 0.0;
    if (!wide[j]) {
      for (int64_t i = off[j]; i < off[j + 1]; ++i) bits += EntropyBits(h[i], m);
    } else {
      w.col.resize(static_cast<size_t>(m));
      for (int64_t r = 0; r < m; ++r) w.col[r] = v[r * n + j];
      int32_t e2[2];
      bits = SortedEntropy(w.col, e2);
    }
    ent[j] = bits;
  }
}

// Outputs: ext (..., n, 2) and the entropies (..., n; float32 or float64) of v (..., m, n).
ffi::Error ColumnEntropy(ffi::Buffer<ffi::S32> v, ffi::ResultBuffer<ffi::S32> ext,
                         ffi::Result<ffi::AnyBuffer> ent) {
  auto dims = v.dimensions();
  if (dims.size() < 2) return ffi::Error::InvalidArgument("ratedist column entropy: rank < 2");
  const int64_t n = dims.back(), m = dims[dims.size() - 2];
  if (m < 1 || n < 1 || n > 64) {
    return ffi::Error::InvalidArgument("ratedist column entropy: need m >= 1, 1 <= n <= 64");
  }
  const int64_t mats = static_cast<int64_t>(v.element_count()) / (m * n);
  if (static_cast<int64_t>(ext->element_count()) != 2 * n * mats ||
      static_cast<int64_t>(ent->element_count()) != n * mats) {
    return ffi::Error::InvalidArgument("ratedist column entropy: inconsistent shapes");
  }
  if (!EntropyTypeOk(*ent)) {
    return ffi::Error::InvalidArgument("ratedist column entropy: float32 or float64 entropy");
  }
  thread_local ColumnScratch work;
  double bits[64];
  for (int64_t a = 0; a < mats; ++a) {
    ColumnEntropyMatrix(v.typed_data() + a * m * n, m, n, ext->typed_data() + 2 * n * a, bits,
                        work);
    for (int64_t j = 0; j < n; ++j) StoreEntropy(*ent, a * n + j, bits[j]);
  }
  return ffi::Error::Success();
}

// Outputs: x_hat (..., d), the smallest and largest symbol (..., 2), the entropy in bits
// (...; float32 or float64).
template <ffi::DataType T>
ffi::Error Grid(ffi::Buffer<T> x, ffi::Buffer<ffi::U32> key, ffi::Buffer<T> scale,
                ffi::ResultBuffer<T> y, ffi::ResultBuffer<ffi::S32> ext,
                ffi::Result<ffi::AnyBuffer> ent, int32_t mode, int32_t rng_bits) {
  using F = ffi::NativeType<T>;
  auto dims = x.dimensions();
  if (dims.size() == 0) return ffi::Error::InvalidArgument("ratedist grid: x needs rank >= 1");
  const int64_t d = dims.back();
  if (d < 1 || d > INT32_MAX) return ffi::Error::InvalidArgument("ratedist grid: bad d");
  const int64_t rows = static_cast<int64_t>(x.element_count()) / d;
  if (static_cast<int64_t>(scale.element_count()) != rows ||
      static_cast<int64_t>(key.element_count()) != 2 * rows ||
      static_cast<int64_t>(ext->element_count()) != 2 * rows ||
      static_cast<int64_t>(ent->element_count()) != rows) {
    return ffi::Error::InvalidArgument("ratedist grid: inconsistent shapes");
  }
  if (!EntropyTypeOk(*ent)) {
    return ffi::Error::InvalidArgument("ratedist grid: the entropy must be float32 or float64");
  }
  if (rng_bits != 8 && rng_bits != 16 && rng_bits != 32) {
    return ffi::Error::InvalidArgument("ratedist grid: rng_bits must be 8, 16 or 32");
  }
  if (mode < kGridStochastic || mode > kZnDither) {
    return ffi::Error::InvalidArgument("ratedist grid: unknown mode");
  }
  thread_local GridScratch work;
  Params<F> P{mode, rng_bits, 0, nullptr, 0, 0, 0, 0, F(0)};
  for (int64_t r = 0; r < rows; ++r) {
    P.k0 = key.typed_data()[2 * r];
    P.k1 = key.typed_data()[2 * r + 1];
    P.scale = scale.typed_data()[r];
    double bits = 0.0;
    GridRowAny(P, x.typed_data() + r * d, d, y->typed_data() + r * d,
               ext->typed_data() + 2 * r, &bits, work);
    StoreEntropy(*ent, r, bits);
  }
  return ffi::Error::Success();
}

// ----------------------------------------------------------------------------- D_n decoder
// closest_point_dn of ratedist/quantizers/lattice.py (Conway & Sloane 1982, Sec. III) row by
// row (rows of n coordinates): f = rint(x) (ties to even); if sum f is odd, the coordinate
// with the largest |x - f| (the first on ties; the first NaN if any, as jnp.argmax) is rounded
// the other way (+1 if x - f >= 0, else -1) and the others get + 0 (so -0 becomes +0, as the
// jax.numpy `f + where(onehot, other_way, 0)`). Every operation is exact (the sum of f while
// |sum| < 2^24 in float32, 2^53 in float64, i.e. within the lattice compressor's limits), so
// the result does not depend on an evaluation order: the same bits as the pure-JAX function.
// Rows go kDnChunk at a time, coordinate-major (each step a vector over the chunk's rows) and
// branch-free (the parity is a coin flip per row: a branch would be mispredicted half the
// time); a short last chunk is padded with zero rows (decoded, not written). N = 4 and 8 are
// compiled with fixed loops; N = 0: n (<= kDnMaxN) at run time.
constexpr int64_t kDnChunk = 16;
constexpr int64_t kDnMaxN = 64;
template <typename F, int64_t N>
RD_INLINE void DnChunks(const F* __restrict x, F* __restrict y, int64_t rows, int64_t n_run) {
  constexpr int64_t kN = N > 0 ? N : kDnMaxN;
  constexpr F kInf = std::numeric_limits<F>::infinity();
  const int64_t n = N > 0 ? N : n_run;
  for (int64_t r0 = 0; r0 < rows; r0 += kDnChunk) {
    const int64_t nr = std::min(kDnChunk, rows - r0);
    alignas(64) F xs[kN][kDnChunk], f[kN][kDnChunk];
    if (nr == kDnChunk) {
      for (int64_t j = 0; j < kDnChunk; ++j)
        for (int64_t k = 0; k < n; ++k) xs[k][j] = x[(r0 + j) * n + k];
    } else {
      for (int64_t j = 0; j < kDnChunk; ++j)
        for (int64_t k = 0; k < n; ++k) xs[k][j] = j < nr ? x[(r0 + j) * n + k] : F(0);
    }
    alignas(64) F s[kDnChunk], best[kDnChunk];
    alignas(64) int32_t worst[kDnChunk], nan[kDnChunk];
    for (int64_t j = 0; j < kDnChunk; ++j) {
      s[j] = F(0);
      best[j] = F(-1);
      worst[j] = 0;
      nan[j] = 0;
    }
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t j = 0; j < kDnChunk; ++j) {
        const F fk = std::nearbyint(xs[k][j]);
        const F a = std::fabs(xs[k][j] - fk);
        const int32_t isnan_a = a != a;
        const int32_t take = (nan[j] == 0) & ((a > best[j]) | isnan_a);
        worst[j] = take ? static_cast<int32_t>(k) : worst[j];
        best[j] = take ? a : best[j];
        nan[j] |= isnan_a;
        s[j] += fk;
        f[k][j] = fk;
      }
    }
    // jnp.mod(s, 2) != 0 for an integral s: s / 2 not integral (exact: s * 0.5); NaN and
    // +-inf sums count as odd (their mod is NaN)
    alignas(64) int32_t odd[kDnChunk];
    for (int64_t j = 0; j < kDnChunk; ++j) {
      const F h = s[j] * F(0.5);
      odd[j] = (!(h == std::floor(h))) | (std::fabs(s[j]) == kInf);
    }
    for (int64_t k = 0; k < n; ++k) {
      for (int64_t j = 0; j < kDnChunk; ++j) {
        const F other = xs[k][j] - f[k][j] >= F(0) ? F(1) : F(-1);
        const F g = f[k][j] + (worst[j] == k ? other : F(0));
        f[k][j] = odd[j] ? g : f[k][j];
      }
    }
    if (nr == kDnChunk) {
      for (int64_t j = 0; j < kDnChunk; ++j)
        for (int64_t k = 0; k < n; ++k) y[(r0 + j) * n + k] = f[k][j];
    } else {
      for (int64_t j = 0; j < nr; ++j)
        for (int64_t k = 0; k < n; ++k) y[(r0 + j) * n + k] = f[k][j];
    }
  }
}

template <typename F>
RD_INLINE void DnRowsAnyN(const F* x, F* y, int64_t rows, int64_t n) {
  if (n == 4) {
    DnChunks<F, 4>(x, y, rows, n);
  } else if (n == 8) {
    DnChunks<F, 8>(x, y, rows, n);
  } else {
    DnChunks<F, 0>(x, y, rows, n);
  }
}

RD_CLONES void DnRowsF32(const float* x, float* y, int64_t rows, int64_t n) {
  DnRowsAnyN<float>(x, y, rows, n);
}
RD_CLONES void DnRowsF64(const double* x, double* y, int64_t rows, int64_t n) {
  DnRowsAnyN<double>(x, y, rows, n);
}
inline void DnRowsAny(const float* x, float* y, int64_t rows, int64_t n) {
  DnRowsF32(x, y, rows, n);
}
inline void DnRowsAny(const double* x, double* y, int64_t rows, int64_t n) {
  DnRowsF64(x, y, rows, n);
}

template <ffi::DataType T>
ffi::Error ClosestDn(ffi::Buffer<T> x, ffi::ResultBuffer<T> y) {
  auto dims = x.dimensions();
  if (dims.size() == 0 || dims.back() < 1 || dims.back() > kDnMaxN) {
    return ffi::Error::InvalidArgument("ratedist D_n: x needs rank >= 1 and 1 <= n <= 64");
  }
  const int64_t n = dims.back();
  DnRowsAny(x.typed_data(), y->typed_data(), static_cast<int64_t>(x.element_count()) / n, n);
  return ffi::Error::Success();
}

template <ffi::DataType T>
ffi::Error Quantize(ffi::Buffer<T> x, ffi::Buffer<ffi::U32> key, ffi::Buffer<T> scale,
                    ffi::ResultBuffer<T> y, ffi::ResultBuffer<ffi::S32> counts, int32_t mode,
                    int32_t rng_bits, int32_t flag, ffi::Span<const double> table) {
  using F = ffi::NativeType<T>;
  auto dims = x.dimensions();
  if (dims.size() == 0) return ffi::Error::InvalidArgument("ratedist quantize: x needs rank >= 1");
  const int64_t d = dims.back();
  const int64_t rows = d == 0 ? 0 : static_cast<int64_t>(x.element_count()) / d;
  const int64_t n_sym = counts->dimensions().back();
  if (static_cast<int64_t>(scale.element_count()) != rows ||
      static_cast<int64_t>(key.element_count()) != 2 * rows ||
      static_cast<int64_t>(counts->element_count()) != rows * n_sym) {
    return ffi::Error::InvalidArgument("ratedist quantize: inconsistent shapes");
  }
  if (rng_bits != 8 && rng_bits != 16 && rng_bits != 32) {
    return ffi::Error::InvalidArgument("ratedist quantize: rng_bits must be 8, 16 or 32");
  }
  if (d > INT32_MAX) return ffi::Error::InvalidArgument("ratedist quantize: d too large");
  thread_local std::vector<F> lv;
  lv.assign(table.begin(), table.end());  // double -> F rounds to nearest, as jnp.asarray
  Params<F> P{mode, rng_bits, flag, lv.data(), 0, static_cast<int32_t>(n_sym), 0, 0, F(0)};
  P.L = mode == kNearest ? static_cast<int32_t>((lv.size() + 1) / 2)
                         : static_cast<int32_t>(lv.size());
  const bool needs_table = mode == kMagnitude || mode == kSigned || mode == kNearest;
  if (needs_table && P.L < 2) {
    return ffi::Error::InvalidArgument("ratedist quantize: need at least 2 levels");
  }
  thread_local std::vector<int32_t> hist;
  hist.resize(static_cast<size_t>(kLanes * n_sym));
  const F* xp = x.typed_data();
  const uint32_t* kp = key.typed_data();
  const F* sp = scale.typed_data();
  F* yp = y->typed_data();
  int32_t* cp = counts->typed_data();
  for (int64_t r = 0; r < rows; ++r) {
    P.k0 = kp[2 * r];
    P.k1 = kp[2 * r + 1];
    P.scale = sp[r];
    std::fill(hist.begin(), hist.end(), 0);
    Row(P, xp + r * d, d, yp + r * d, hist.data());
    int32_t* c = cp + r * n_sym;
    for (int64_t j = 0; j < n_sym; ++j) {
      int32_t t = 0;
      for (int k = 0; k < kLanes; ++k) t += hist[k * n_sym + j];
      c[j] = t;
    }
  }
  return ffi::Error::Success();
}

}  // namespace

// x, the key words and the scale in; x_hat and an int32 output (counts / symbol range) out
#define RD_ROW_IO(T)                \
  ffi::Ffi::Bind()                  \
      .Arg<ffi::Buffer<T>>()        \
      .Arg<ffi::Buffer<ffi::U32>>() \
      .Arg<ffi::Buffer<T>>()        \
      .Ret<ffi::Buffer<T>>()        \
      .Ret<ffi::Buffer<ffi::S32>>()

#define RD_BIND(T)                  \
  RD_ROW_IO(T)                      \
      .Attr<int32_t>("mode")        \
      .Attr<int32_t>("rng_bits")    \
      .Attr<int32_t>("flag")        \
      .Attr<ffi::Span<const double>>("table")

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistQuantizeF32, Quantize<ffi::F32>, RD_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistQuantizeF64, Quantize<ffi::F64>, RD_BIND(ffi::F64));

// ... and the entropy (float32 or float64)
#define RD_GRID_BIND(T)             \
  RD_ROW_IO(T)                      \
      .Ret<ffi::AnyBuffer>()        \
      .Attr<int32_t>("mode")        \
      .Attr<int32_t>("rng_bits")

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistGridF32, Grid<ffi::F32>, RD_GRID_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistGridF64, Grid<ffi::F64>, RD_GRID_BIND(ffi::F64));

#define RD_DN_BIND(T) ffi::Ffi::Bind().Arg<ffi::Buffer<T>>().Ret<ffi::Buffer<T>>()
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistClosestDnF32, ClosestDn<ffi::F32>, RD_DN_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistClosestDnF64, ClosestDn<ffi::F64>, RD_DN_BIND(ffi::F64));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistColumnEntropy, ColumnEntropy,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>());
#define RD_RANDK_BIND(T)                                                                   \
  ffi::Ffi::Bind()                                                                         \
      .Arg<ffi::Buffer<T>>()                                                               \
      .Arg<ffi::Buffer<ffi::U32>>()                                                        \
      .Arg<ffi::Buffer<T>>()                                                               \
      .Ret<ffi::Buffer<T>>()                                                               \
      .Attr<int64_t>("k")                                                                  \
      .Attr<double>("sigmas")
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistRandKDenseF32, RandKDense<ffi::F32>,
                              RD_RANDK_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistRandKDenseF64, RandKDense<ffi::F64>,
                              RD_RANDK_BIND(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistRandomSubset, RandomSubset,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("d")
                                  .Attr<double>("sigmas"));
