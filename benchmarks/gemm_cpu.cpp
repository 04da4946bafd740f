// GFLOP/s of ops<cpu>::matmul at transformer shapes, next to a plain OpenBLAS
// cblas_sgemm on the same operands in the same run, with 1 and 2 threads.
//
// Shapes: a Linear layer of d_model 768 over 2048 tokens (x W^T), the FFN up
// projection to 3072, and the two GEMMs of each one's backward (dX = dY W,
// dW = dY^T X). Each figure is the median of --reps timed runs after two warm-up
// runs; plm and OpenBLAS runs alternate so drift hits both alike.
//
//   gemm_cpu [--reps N] [--threads 1,2]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "plm/plm.hpp"
#include "plm/testing/gradient_check.hpp"

namespace {

using namespace plm;

struct Case {
  const char* name;
  index_t m, n, k;
  bool ta, tb;
};

template <class F>
double median_seconds(F&& f, int reps, std::vector<double>& out) {
  out.clear();
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(out.begin(), out.end());
  return out[out.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  std::vector<int> thread_counts = {1, 2};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      thread_counts.clear();
      for (std::string s = argv[++i]; !s.empty();) {
        const auto c = s.find(',');
        thread_counts.push_back(std::atoi(s.substr(0, c).c_str()));
        s = c == std::string::npos ? "" : s.substr(c + 1);
      }
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--threads 1,2]\n", argv[0]);
      return 2;
    }
  }
#if defined(PLM_BENCH_EIGEN_ONLY)
  const char* route = "Eigen's own GEMM";
#elif defined(PLM_USE_BLAS)
  const char* route = "OpenBLAS via Eigen's BLAS hook";
#else
  const char* route = "Eigen's own GEMM";
#endif
  std::printf("ops<cpu>::matmul GEMM route: %s; peer: cblas_sgemm (OpenBLAS); median of %d runs\n\n", route, reps);

  // Row-major operands; transposed shapes stored as the transposes a backward pass sees.
  const Case cases[] = {
      {"fwd   x W^T     2048x768x768 ", 2048, 768, 768, false, true},
      {"bwd   dY W      2048x768x768 ", 2048, 768, 768, false, false},
      {"bwd   dY^T X    768x768x2048 ", 768, 768, 2048, true, false},
      {"fwd   x Wi^T    2048x3072x768", 2048, 3072, 768, false, true},
      {"bwd   dY Wi     2048x768x3072", 2048, 768, 3072, false, false},
      {"bwd   dY^T X    3072x768x2048", 3072, 768, 2048, true, false},
  };
  std::printf("| shape (M x N x K) | threads | plm GFLOP/s | OpenBLAS GFLOP/s | plm / OpenBLAS |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  std::vector<double> scratch;
  for (int nt : thread_counts) {
    set_num_threads(nt);
    openblas_set_num_threads(nt);
    for (const Case& c : cases) {
      const Shape sa = c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k};
      const Shape sb = c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n};
      Tensor<cpu, float> a(sa), b(sb), out(Shape{c.m, c.n}), ref(Shape{c.m, c.n});
      testing::fill_uniform<float>(a, 1, 1);
      testing::fill_uniform<float>(b, 1, 2);
      auto run_plm = [&] { ops<cpu>::matmul<float>(a, c.ta, b, c.tb, out); };
      auto run_blas = [&] {
        cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans, c.m, c.n, c.k,
                    1.f, a.data(), static_cast<int>(sa[1]), b.data(), static_cast<int>(sb[1]), 0.f, ref.data(),
                    static_cast<int>(c.n));
      };
      for (int w = 0; w < 2; ++w) {
        run_plm();
        run_blas();
      }
      // Same result as the peer (so the timing is of a correct product).
      double worst = 0;
      for (index_t i = 0; i < out.numel(); ++i)
        worst = std::max(worst, double(std::abs(out.data()[i] - ref.data()[i])) / std::max(1.f, std::abs(ref.data()[i])));
      if (worst > 1e-3) {
        std::fprintf(stderr, "gemm_cpu: %s differs from OpenBLAS by %g\n", c.name, worst);
        return 1;
      }
      std::vector<double> tp, tb;
      for (int r = 0; r < reps; ++r) {  // interleave
        tp.push_back(median_seconds(run_plm, 1, scratch));
        tb.push_back(median_seconds(run_blas, 1, scratch));
      }
      std::sort(tp.begin(), tp.end());
      std::sort(tb.begin(), tb.end());
      const double flop = 2.0 * c.m * c.n * c.k;
      const double gp = flop / tp[tp.size() / 2] * 1e-9, gb = flop / tb[tb.size() / 2] * 1e-9;
      std::printf("| %s | %d | %.1f | %.1f | %.3f |\n", c.name, nt, gp, gb, gp / gb);
      std::fflush(stdout);
    }
  }
  return 0;
}
