// Elementwise quantizers in one pass: the XLA FFI custom call behind ratedist's CPU
// stochastic (QSGD, NUQSGD, TernGrad, natural, stochastic scalar/TNQ/TUQ) and deterministic
// (sign, scaled sign, deterministic scalar, threshold) compressors.
//
// One row of x (shape (..., d)) is read once; the kernel writes the dequantized row and the
// counts of the entropy-coded symbols (shape (..., C)). The scale (||x||_2, max|x|, the rms,
// ||x||_1/d, the threshold) is a reduction computed by the caller in JAX and passed in, so it
// is bit-identical to the pure-JAX path. Every floating operation below repeats, in the same
// order and precision, the jax.numpy expression of ratedist/compressors (no FMA contraction:
// x86-64 baseline, -ffp-contract=off), so the results are bit for bit those of the pure-JAX
// path.
//
// Randomness: the uniforms of jax.random.uniform(key, (d,), dtype) and the words of
// jax.random.bits(key, (n,), uint32) in JAX's partitionable Threefry mode
// (jax_threefry_partitionable=True): element i is Threefry-2x32-20 (Salmon et al., SC'11;
// Random123) of the counter (hi, lo) = (i >> 32, i & 0xffffffff) under the 64-bit key
// (k0, k1); 32-bit words are b0 ^ b1, 64-bit words (b0 << 32) | b1. Element i depends only on
// (key, i): the output does not depend on threads, chunking or the batch layout.
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

inline uint32_t Rotl(uint32_t v, int r) { return (v << r) | (v >> (32 - r)); }

// Threefry-2x32-20 of the counters (hi, lo0 + j) for j < n, as JAX computes it
// (jax/_src/random/threefry2x32.py). Written as a flat loop the compiler vectorizes.
__attribute__((target_clones("avx2", "default"))) void Threefry(uint32_t k0, uint32_t k1,
                                                                 uint32_t hi, uint32_t lo0,
                                                                 int64_t n, uint32_t* out0,
                                                                 uint32_t* out1) {
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
};

template <typename F>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr int kMant = 23;
  static constexpr U kOne = 0x3f800000u;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr int kMant = 52;
  static constexpr U kOne = 0x3ff0000000000000ull;
};

// jax.random.uniform's mapping of random bits onto [0, 1).
template <typename F>
inline F UniformOf(uint32_t b0, uint32_t b1) {
  using U = typename Bits<F>::U;
  U w;
  if constexpr (sizeof(F) == 4) {
    w = b0 ^ b1;
  } else {
    w = (static_cast<U>(b0) << 32) | b1;
  }
  w = (w >> (8 * sizeof(F) - Bits<F>::kMant)) | Bits<F>::kOne;
  F f;
  std::memcpy(&f, &w, sizeof(F));
  return f - F(1);
}

// The random numbers of one block [i0, i0 + n): u[j] in [0, 1) compared as `u < p`.
// rng_bits = 32: jax.random.uniform; 8/16: ((b + 0.5) * 2^-rng_bits) with b the rng_bits-bit
// fields of jax.random.bits(key, (ceil(d * rng_bits / 32),), uint32), little-endian.
template <typename F>
struct Uniforms {
  uint32_t w0[kBlock], w1[kBlock];
  F u[kBlock];
  void Fill(uint32_t k0, uint32_t k1, int64_t i0, int64_t n, int rng_bits) {
    if (rng_bits == 32) {
      Threefry(k0, k1, static_cast<uint32_t>(i0 >> 32), static_cast<uint32_t>(i0), n, w0, w1);
      for (int64_t j = 0; j < n; ++j) u[j] = UniformOf<F>(w0[j], w1[j]);
      return;
    }
    const int per = 32 / rng_bits;  // i0 is a multiple of kBlock, hence of per
    const int64_t c0 = i0 / per, nw = (n + per - 1) / per;
    Threefry(k0, k1, static_cast<uint32_t>(c0 >> 32), static_cast<uint32_t>(c0), nw, w0, w1);
    const uint32_t mask = (1u << rng_bits) - 1u;
    const F scale = std::ldexp(F(1), -rng_bits);
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t w = w0[j / per] ^ w1[j / per];
      const uint32_t b = (w >> (rng_bits * (j % per))) & mask;
      u[j] = (static_cast<F>(b) + F(0.5)) * scale;
    }
  }
};

// Index of the cell of r: #{ levels[1..L-2] <= r } (a branch-free count, or a binary search
// for long tables), i.e. the fused compare-and-count of the pure-JAX path.
template <typename F>
inline int32_t Cell(const F* lv, int32_t L, F r) {
  const int32_t m = L - 2;  // interior levels lv[1..m]
  if (m <= 32) {
    int32_t c = 0;
    for (int32_t j = 1; j <= m; ++j) c += r >= lv[j];
    return c;
  }
  int32_t lo = 0, hi = m;
  while (lo < hi) {
    const int32_t mid = (lo + hi) / 2;
    if (lv[1 + mid] <= r) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// jnp.clip(r, a, b) = minimum(maximum(r, a), b) for finite r (NaN is not handled)
template <typename F>
inline F Clip(F r, F a, F b) {
  r = r < a ? a : r;
  return r > b ? b : r;
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

// One row; returns nothing, writes y (d) and adds the symbol counts to cnt (n_sym).
template <typename F>
void Row(const Params<F>& P, const F* x, int64_t d, F* y, int32_t* cnt, Uniforms<F>& U) {
  const F sc = P.scale;
  const bool nz = sc > F(0);
  const F* lv = P.lv;
  const int32_t L = P.L;
  switch (P.mode) {
    case kSign: {
      // sign (flag 0): +-1; scaled sign (flag 1): scale * (+-1). Symbol 1 = "x >= 0".
      int64_t pos = 0;
      if (P.flag) {
        for (int64_t i = 0; i < d; ++i) {
          const bool p = x[i] >= F(0);
          y[i] = sc * (p ? F(1) : F(-1));
          pos += p;
        }
      } else {
        for (int64_t i = 0; i < d; ++i) {
          const bool p = x[i] >= F(0);
          y[i] = p ? F(1) : F(-1);
          pos += p;
        }
      }
      cnt[1] += static_cast<int32_t>(pos);
      cnt[0] += static_cast<int32_t>(d - pos);
      return;
    }
    case kThreshold: {  // keep |x| > scale; symbol 1 = kept
      int64_t kept = 0;
      for (int64_t i = 0; i < d; ++i) {
        const bool k = std::fabs(x[i]) > sc;
        y[i] = k ? x[i] : F(0);
        kept += k;
      }
      cnt[1] += static_cast<int32_t>(kept);
      cnt[0] += static_cast<int32_t>(d - kept);
      return;
    }
    case kNearest: {  // thresholds lv[0..L-2], levels lv[L-1..2L-2]; flag: normalize
      const F* th = lv;
      const F* q = lv + (L - 1);
      for (int64_t i = 0; i < d; ++i) {
        const F v = P.flag ? (nz ? x[i] / sc : F(0)) : x[i];
        int32_t c = 0;
        if (L - 1 <= 32) {
          for (int32_t j = 0; j < L - 1; ++j) c += v > th[j];
        } else {
          int32_t lo = 0, hi = L - 1;  // #{th < v}
          while (lo < hi) {
            const int32_t mid = (lo + hi) / 2;
            if (th[mid] < v) lo = mid + 1; else hi = mid;
          }
          c = lo;
        }
        y[i] = P.flag ? sc * q[c] : q[c];
        cnt[c] += 1;
      }
      return;
    }
    default:
      break;
  }
  // stochastic modes: blocks of kBlock elements share one generator call
  for (int64_t i0 = 0; i0 < d; i0 += kBlock) {
    const int64_t n = (d - i0 < kBlock) ? d - i0 : kBlock;
    U.Fill(P.k0, P.k1, i0, n, P.rng_bits);
    const F* u = U.u;
    const F* xb = x + i0;
    F* yb = y + i0;
    if (P.mode == kMagnitude) {
      // r = safe_div(|x|, scale); idx = cell + (u < p); x_hat = scale * (+-levels[idx]);
      // symbol s + idx (x >= 0) or s - idx (x < 0), s = L - 1. flag 1 (TernGrad): a zero
      // level stays +0.
      const int32_t s = L - 1;
      for (int64_t j = 0; j < n; ++j) {
        const F ax = std::fabs(xb[j]);
        F r = nz ? ax / sc : F(0);
        r = Clip(r, lv[0], lv[s]);
        const int32_t c = Cell(lv, L, r);
        const F p = (r - lv[c]) / (lv[c + 1] - lv[c]);
        const int32_t idx = c + (u[j] < p);
        const bool neg = xb[j] < F(0);
        F v = lv[idx];
        if (neg && !(P.flag && v == F(0))) v = -v;
        yb[j] = sc * v;
        cnt[neg ? s - idx : s + idx] += 1;
      }
    } else if (P.mode == kSigned) {  // flag: normalize by scale
      for (int64_t j = 0; j < n; ++j) {
        F r = P.flag ? (nz ? xb[j] / sc : F(0)) : xb[j];
        r = Clip(r, lv[0], lv[L - 1]);
        const int32_t c = Cell(lv, L, r);
        const F p = (r - lv[c]) / (lv[c + 1] - lv[c]);
        const int32_t idx = c + (u[j] < p);
        yb[j] = P.flag ? sc * lv[idx] : lv[idx];
        cnt[idx] += 1;
      }
    } else {  // kNatural; n_sym = 2 n_exp + 1
      const int32_t n_exp = (P.n_sym - 1) / 2;
      const int32_t e_min = std::numeric_limits<F>::min_exponent - std::numeric_limits<F>::digits + 1;
      for (int64_t j = 0; j < n; ++j) {
        const F ax = std::fabs(xb[j]);
        int e = 0;
        (void)std::frexp(ax, &e);  // ax = m 2^e, m in [1/2, 1); e = 0 for ax = 0
        const F low = std::ldexp(F(1), e - 1);
        const bool pos = ax > F(0);
        const F p = pos ? ax / low - F(1) : F(0);
        const bool up = u[j] < p;
        const F mag = pos ? (up ? F(2) * low : low) : F(0);
        const bool neg = xb[j] < F(0);
        yb[j] = neg ? -mag : mag;
        int32_t eo = e + static_cast<int32_t>(up) - e_min;
        eo = eo < 0 ? 0 : (eo > n_exp - 1 ? n_exp - 1 : eo);
        cnt[pos ? (neg ? 1 + eo : 1 + n_exp + eo) : 0] += 1;
      }
    }
  }
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
  thread_local Uniforms<F> U;
  const F* xp = x.typed_data();
  const uint32_t* kp = key.typed_data();
  const F* sp = scale.typed_data();
  F* yp = y->typed_data();
  int32_t* cp = counts->typed_data();
  for (int64_t r = 0; r < rows; ++r) {
    P.k0 = kp[2 * r];
    P.k1 = kp[2 * r + 1];
    P.scale = sp[r];
    int32_t* c = cp + r * n_sym;
    for (int64_t j = 0; j < n_sym; ++j) c[j] = 0;
    Row<F>(P, xp + r * d, d, yp + r * d, c, U);
  }
  return ffi::Error::Success();
}

}  // namespace

#define RD_BIND(T)                                   \
  ffi::Ffi::Bind()                                   \
      .Arg<ffi::Buffer<T>>()                         \
      .Arg<ffi::Buffer<ffi::U32>>()                  \
      .Arg<ffi::Buffer<T>>()                         \
      .Ret<ffi::Buffer<T>>()                         \
      .Ret<ffi::Buffer<ffi::S32>>()                  \
      .Attr<int32_t>("mode")                         \
      .Attr<int32_t>("rng_bits")                     \
      .Attr<int32_t>("flag")                         \
      .Attr<ffi::Span<const double>>("table")

XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistQuantizeF32, Quantize<ffi::F32>, RD_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(RatedistQuantizeF64, Quantize<ffi::F64>, RD_BIND(ffi::F64));
