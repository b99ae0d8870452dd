// Time per row of the Top-K kernel's row function (ratedist/_native/select.cc), without XLA:
// this file includes the kernel's source (SSRC) and calls SelectRow() directly on rows of
// several kinds (Gaussian, Cauchy, sorted, few distinct values, all equal, a sample-missing
// row), best CPU time of the repeats. Built and run by benchmarks/bench_select_kernel.py. The
// checksum (a hash of the selected indices) lets two builds be compared for equal results.
#include SSRC
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>

template <typename F>
std::vector<F> Row(const std::string& kind, int64_t d, uint32_t seed) {
  std::vector<F> x(d);
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd;
  std::cauchy_distribution<double> cd;
  const int c = kind == "gauss" ? 0 : kind == "cauchy" ? 1 : kind == "sorted" ? 2
                : kind == "ints" ? 3 : kind == "equal" ? 4 : 5;
  for (int64_t i = 0; i < d; ++i) {
    switch (c) {
      case 0: x[i] = F(nd(g)); break;
      case 1: x[i] = F(cd(g)); break;
      case 2: x[i] = F(double(i) / d - 0.5); break;
      case 3: x[i] = F(int64_t(g() % 7) - 3); break;
      case 4: x[i] = F(-2.5); break;
      default: x[i] = F(1.0);
    }
  }
  if (kind == "miss") {  // large values only off the sampling grid of every sample size
    for (int64_t i = 1; i < d; i += 97) x[i] = F(10.0);
  }
  return x;
}

template <typename F>
void Case(const char* name, const std::string& kind, int64_t d, int64_t k, int rows, int reps) {
  std::vector<std::vector<F>> xs;
  for (int r = 0; r < rows; ++r) xs.push_back(Row<F>(kind, d, 1234u + r));
  std::vector<int32_t> idx(static_cast<size_t>(k));
  Scratch<F> w;
  double best = 1e30;
  uint64_t cs = 0;
  for (int rep = 0; rep < reps; ++rep) {
    uint64_t h = 1469598103934665603ull;
    clock_t t = clock();
    for (int r = 0; r < rows; ++r) {
      SelectRow(xs[r].data(), d, k, idx.data(), w);
      for (int64_t j = 0; j < k; ++j) h = (h ^ uint64_t(idx[j])) * 1099511628211ull;
    }
    best = std::min(best, double(clock() - t) / CLOCKS_PER_SEC / rows);
    cs = h;
  }
  printf("%-30s %9.1f us/row %7.3f ns/elem  checksum %016llx\n", name, best * 1e6,
         best / double(d) * 1e9, (unsigned long long)cs);
}

int main(int argc, char** argv) {
  const char* only = argc > 1 && argv[1][0] != '\0' ? argv[1] : nullptr;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 0;  // overrides every case's repeats
  struct C { const char* name; const char* kind; int f64; int64_t d, k; int rows, reps; };
  const C cases[] = {
      {"f32 gauss d=1e5 k=1e3", "gauss", 0, 100000, 1000, 8, 30},
      {"f32 gauss d=1e6 k=1e4", "gauss", 0, 1000000, 10000, 4, 10},
      {"f32 gauss d=1e7 k=1e5", "gauss", 0, 10000000, 100000, 1, 7},
      {"f64 gauss d=1e6 k=1e4", "gauss", 1, 1000000, 10000, 4, 10},
      {"f32 gauss d=1e6 k=10", "gauss", 0, 1000000, 10, 4, 10},
      {"f32 gauss d=1e6 k=1e5", "gauss", 0, 1000000, 100000, 4, 10},
      {"f32 cauchy d=1e6 k=1e4", "cauchy", 0, 1000000, 10000, 4, 10},
      {"f32 sorted d=1e6 k=1e4", "sorted", 0, 1000000, 10000, 4, 10},
      {"f32 ints d=1e6 k=1e4", "ints", 0, 1000000, 10000, 4, 10},
      {"f32 equal d=1e6 k=1e4", "equal", 0, 1000000, 10000, 4, 10},
      {"f32 miss d=1e6 k=1e4", "miss", 0, 1000000, 10000, 4, 10},
      {"f32 gauss d=1e4 k=100", "gauss", 0, 10000, 100, 64, 30},
  };
  for (const C& c : cases) {
    if (only && std::string(c.name).find(only) == std::string::npos) continue;
    if (c.f64) {
      Case<double>(c.name, c.kind, c.d, c.k, c.rows, reps > 0 ? reps : c.reps);
    } else {
      Case<float>(c.name, c.kind, c.d, c.k, c.rows, reps > 0 ? reps : c.reps);
    }
  }
}
