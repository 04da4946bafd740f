#pragma once
// Whole-tensor reductions, accumulated in double.
#include <cmath>
#include <vector>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_reduce {
  template <class T, class F>
  static double reduce(CView<T> x, F f) {
    require_compute_type<T>("reduce");
    const T* p = x.data();
    const index_t n = x.numel();
    // Fixed-size blocks summed in block order: the result does not depend on the
    // number of threads.
    constexpr index_t block = 1 << 14;
    const index_t nb = (n + block - 1) / block;
    std::vector<double> part(static_cast<std::size_t>(nb), 0.0);
    parallel_for(nb, block, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        double s = 0;
        const index_t e = std::min(n, (b + 1) * block);
        for (index_t i = b * block; i < e; ++i) s += f(static_cast<double>(p[i]));
        part[static_cast<std::size_t>(b)] = s;
      }
    });
    double s = 0;
    for (double v : part) s += v;
    return s;
  }

  // Sum of all elements.
  template <class T> static double sum(CView<T> x) { return reduce<T>(x, [](double v) { return v; }); }
  // Sum of squares (for global gradient norms).
  template <class T> static double sum_squares(CView<T> x) { return reduce<T>(x, [](double v) { return v * v; }); }
  // True when no element is NaN or infinite.
  template <class T> static bool all_finite(CView<T> x) { return std::isfinite(reduce<T>(x, [](double v) { return v * 0.0; })); }
};

}  // namespace plm::detail
