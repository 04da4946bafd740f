#pragma once
// Inverted dropout driven by Philox: element i of a call keyed (seed, stream) is
// kept when its uniform draw philox_u32(seed, stream, i) exceeds p. The backward
// regenerates the same mask from the same key, so no mask is stored, and the
// CUDA backend, indexing draws alike, drops exactly the same elements.
#include "plm/backend/cpu/common.hpp"
#include "plm/core/philox.hpp"

namespace plm::detail {

struct cpu_dropout {
  // y = x * keep / (1 - p). p in [0, 1). y may alias x.
  template <class T>
  static void dropout(CView<T> x, View<T> y, T p, std::uint64_t seed, std::uint64_t stream) {
    apply("dropout", x, y, p, seed, stream);
  }
  // dx = dy * keep / (1 - p) with the forward's key. dx may alias dy.
  template <class T>
  static void dropout_backward(CView<T> dy, View<T> dx, T p, std::uint64_t seed, std::uint64_t stream) {
    apply("dropout_backward", dy, dx, p, seed, stream);
  }

 private:
  template <class T>
  static void apply(const char* op, CView<T> x, View<T> y, T p, std::uint64_t seed, std::uint64_t stream) {
    require_compute_type<T>(op);
    check_dropout(op, x.shape(), y.shape(), static_cast<double>(p));
    const T* px = x.data();
    T* py = y.data();
    const T scale = T(1) / (T(1) - p);
    const float pf = static_cast<float>(p);
    const index_t n = x.numel(), blocks = (n + 3) / 4;
    parallel_for(blocks, 40, [&](index_t b0, index_t b1) {
      for (index_t b = b0; b < b1; ++b) {
        const PhiloxBlock r = philox_block(seed, stream, static_cast<std::uint64_t>(b));
        for (index_t j = 0; j < 4 && 4 * b + j < n; ++j) {
          const index_t i = 4 * b + j;
          py[i] = u32_to_uniform(r.v[j]) > pf ? px[i] * scale : T(0);
        }
      }
    });
  }
};

}  // namespace plm::detail
