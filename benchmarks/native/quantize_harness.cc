// Per-element time of the quantizer kernel's row function (ratedist/_native/quantize.cc),
// without XLA: this file includes the kernel's source (QSRC) and calls Row() directly on one
// float32 vector of d = 1e7 Gaussian entries, best CPU time of 7 calls per mode. Built and run
// by benchmarks/bench_quantize_kernel.py. The checksums (counts and a strided sum of the
// output) let two builds be compared for equal results.
#include QSRC
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
int main(int argc, char** argv) {
  const int64_t d = 10000000;
  std::vector<float> x(d), y(d);
  std::mt19937 g(0); std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(g);
  double ss = 0; for (auto v : x) ss += double(v) * v;
  struct Case { const char* name; int mode, rng, flag; std::vector<double> tab; float scale; int nsym; };
  std::vector<double> q15; for (int i = 0; i <= 15; ++i) q15.push_back(i / 15.0);
  std::vector<double> tnq = {-2.0, -1.3, -0.7, -0.2, 0.2, 0.7, 1.3, 2.0};
  std::vector<double> near = {-1.75, -1.05, -0.5, 0, 0.5, 1.05, 1.75, -2.15, -1.34, -0.76, -0.25, 0.25, 0.76, 1.34, 2.15};
  std::vector<Case> cases = {
    {"qsgd s=15", 0, 32, 0, q15, float(std::sqrt(ss)), 31},
    {"qsgd s=15 rng8", 0, 8, 0, q15, float(std::sqrt(ss)), 31},
    {"terngrad", 0, 32, 1, {0.0, 1.0}, 5.0f, 3},
    {"tnq 3b", 1, 32, 1, tnq, 1.0f, 8},
    {"natural", 2, 32, 0, {}, 0.f, 2 * 280 + 1},
    {"sign", 3, 32, 1, {}, 0.8f, 2},
    {"nearest 3b", 4, 32, 1, near, 1.0f, 8},
    {"rand keys", 6, 32, 0, {}, 0.f, 1},
  };
  const char* only = argc > 1 ? argv[1] : nullptr;
  for (auto& c : cases) {
    if (only && std::string(c.name) != only) continue;
    std::vector<float> lv(c.tab.begin(), c.tab.end());
    Params<float> P{c.mode, c.rng, c.flag, lv.data(), 0, c.nsym, 12345u, 678u, c.scale};
    P.L = c.mode == kNearest ? int32_t((lv.size() + 1) / 2) : int32_t(lv.size());
    std::vector<int32_t> h(kLanes * c.nsym);
    double best = 1e9; long long cs = 0;
    for (int rep = 0; rep < 7; ++rep) {
      std::fill(h.begin(), h.end(), 0);
      clock_t t = clock();
      Row(P, x.data(), d, y.data(), h.data());
      best = std::min(best, double(clock() - t) / CLOCKS_PER_SEC);
    }
    for (int k = 0; k < kLanes * c.nsym; ++k) cs += (long long)h[k] * (k % c.nsym + 1);
    double ys = 0; for (int64_t i = 0; i < d; i += 7) ys += y[i];
    printf("%-16s %6.3f ns/elem  checksum %lld %.6g\n", c.name, best / d * 1e9, cs, ys);
  }
  // the integer-grid rounding with its symbol counts (GridRow): grid at delta = 0.5, Z^1
  // with dither at scale 0.5
  struct GridCase { const char* name; int mode; float scale; };
  std::vector<GridCase> grids = {{"grid 0.5", kGridStochastic, 0.5f},
                                 {"grid nearest", kGridNearest, 0.5f},
                                 {"zn dither", kZnDither, 0.5f}};
  std::vector<int32_t> ext(2);
  double ent = 0;
  GridScratch gw;
  for (auto& c : grids) {
    if (only && std::string(c.name) != only) continue;
    Params<float> P{c.mode, 32, 0, nullptr, 0, 0, 12345u, 678u, c.scale};
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      clock_t t = clock();
      GridRowAny(P, x.data(), d, y.data(), ext.data(), &ent, gw);
      best = std::min(best, double(clock() - t) / CLOCKS_PER_SEC);
    }
    double ys = 0; for (int64_t i = 0; i < d; i += 7) ys += y[i];
    printf("%-16s %6.3f ns/elem  checksum %.17g %.6g  symbols %d..%d\n", c.name,
           best / d * 1e9, ent, ys, ext[0], ext[1]);
  }
  // Rand-K's dense update (SubsetRow with the background, then the k sent entries scaled by
  // d/k): k = d/100; the checksum is the sum of the indices and a strided sum of the output
  if (!only || std::string("rand-k dense") == only) {
    const int64_t k = d / 100;
    std::vector<int32_t> idx(k);
    SubsetScratch sw;
    const float s = float(d) / float(k);
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      clock_t t = clock();
      Background bg;
      bg.xf = x.data();
      bg.yf = y.data();
      SubsetRow(12345u, 678u, d, k, 7.0, idx.data(), sw, bg);
      for (int64_t j = 0; j < k; ++j) y[idx[j]] = KeepIfNonFinite(x[idx[j]], x[idx[j]] * s);
      best = std::min(best, double(clock() - t) / CLOCKS_PER_SEC);
    }
    long long cs = 0; for (auto i : idx) cs += i;
    double ys = 0; for (int64_t i = 0; i < d; i += 7) ys += y[i];
    printf("%-16s %6.3f ns/elem  checksum %lld %.6g\n", "rand-k dense", best / d * 1e9, cs, ys);
  }
}
