#pragma once
// Activations and their backward: gelu (tanh approximation, HF "gelu_new"),
// gelu_erf (exact, HF "gelu"), silu, relu. Eigen's vectorized tanh / exp do the
// transcendental work; erf is scalar std::erf.
// Outputs may alias inputs.
#include <algorithm>
#include <cmath>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_activation {
  // Elements go in cache-sized pieces (temporaries stay in L1/L2) at fixed
  // offsets, whole pieces per thread. Eigen computes a piece's unaligned head
  // and its tail with scalar functions and the rest with vectorized ones, which
  // can differ in the last bit (silu's exp: std::exp against Eigen's); with
  // pieces independent of the thread ranges, every element takes the same path
  // whatever the thread count.
  static constexpr index_t piece = 4096;

  template <class T, class F>
  static void unary(const char* op, CView<T> x, View<T> y, F f) {
    require_compute_type<T>(op);
    check_unary(op, x.shape(), y.shape());
    const T* px = x.data();
    T* py = y.data();
    const index_t n = x.numel();
    parallel_for((n + piece - 1) / piece, piece * 16, [&](index_t b, index_t e) {
      for (index_t s = b * piece; s < std::min(n, e * piece); s += piece) {
        const index_t len = std::min(piece, n - s);
        ArrMap<T> out(py + s, len);
        out = f(CArrMap<T>(px + s, len));
      }
    });
  }
  template <class T, class F>
  static void unary_backward(const char* op, CView<T> x, CView<T> dy, View<T> dx, F f) {
    require_compute_type<T>(op);
    check_unary_backward(op, x.shape(), dy.shape(), dx.shape());
    const T *px = x.data(), *pdy = dy.data();
    T* pdx = dx.data();
    const index_t n = x.numel();
    parallel_for((n + piece - 1) / piece, piece * 24, [&](index_t b, index_t e) {
      for (index_t s = b * piece; s < std::min(n, e * piece); s += piece) {
        const index_t len = std::min(piece, n - s);
        ArrMap<T> out(pdx + s, len);
        out = CArrMap<T>(pdy + s, len) * f(CArrMap<T>(px + s, len));
      }
    });
  }

  template <class T> static constexpr T gelu_k0 = T(0.7978845608028654);  // sqrt(2 / pi)
  template <class T> static constexpr T gelu_k1 = T(0.044715);

  // y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  template <class T>
  static void gelu(CView<T> x, View<T> y) {
    unary<T>("gelu", x, y, [](const auto& a) {
      return (T(0.5) * a * (T(1) + (gelu_k0<T> * (a + gelu_k1<T> * a.cube())).tanh())).eval();
    });
  }
  template <class T>
  static void gelu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    unary_backward<T>("gelu_backward", x, dy, dx, [](const auto& a) {
      const auto t = (gelu_k0<T> * (a + gelu_k1<T> * a.cube())).tanh().eval();
      return (T(0.5) * (T(1) + t) + T(0.5) * a * (T(1) - t.square()) * gelu_k0<T> * (T(1) + T(3) * gelu_k1<T> * a.square())).eval();
    });
  }

  // The exact GELU (Hugging Face "gelu", ESM, BERT): y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  template <class T> static constexpr T inv_sqrt2 = T(0.7071067811865476);
  template <class T> static constexpr T inv_sqrt_2pi = T(0.3989422804014327);
  template <class T>
  static void gelu_erf(CView<T> x, View<T> y) {
    unary<T>("gelu_erf", x, y, [](const auto& a) {
      return a.unaryExpr([](T v) { return T(0.5) * v * (T(1) + std::erf(v * inv_sqrt2<T>)); }).eval();
    });
  }
  // d/dx = Phi(x) + x phi(x)
  template <class T>
  static void gelu_erf_backward(CView<T> x, CView<T> dy, View<T> dx) {
    unary_backward<T>("gelu_erf_backward", x, dy, dx, [](const auto& a) {
      return a.unaryExpr([](T v) {
               return T(0.5) * (T(1) + std::erf(v * inv_sqrt2<T>)) + v * inv_sqrt_2pi<T> * std::exp(T(-0.5) * v * v);
             })
          .eval();
    });
  }

  // y = x * sigmoid(x)
  template <class T>
  static void silu(CView<T> x, View<T> y) {
    unary<T>("silu", x, y, [](const auto& a) { return (a / (T(1) + (-a).exp())).eval(); });
  }
  template <class T>
  static void silu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    unary_backward<T>("silu_backward", x, dy, dx, [](const auto& a) {
      const auto s = (T(1) / (T(1) + (-a).exp())).eval();
      return (s * (T(1) + a * (T(1) - s))).eval();
    });
  }

  // y = max(x, 0); the derivative at 0 is taken as 0.
  template <class T>
  static void relu(CView<T> x, View<T> y) {
    unary<T>("relu", x, y, [](const auto& a) { return a.max(T(0)).eval(); });
  }
  template <class T>
  static void relu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    unary_backward<T>("relu_backward", x, dy, dx, [](const auto& a) { return (a > T(0)).template cast<T>().eval(); });
  }
};

}  // namespace plm::detail
