#pragma once
// Activations and their backward: gelu (tanh approximation, HF "gelu_new"),
// gelu_erf (exact, HF "gelu"), silu, relu. Eigen's vectorized tanh / exp do the
// transcendental work; erf is scalar std::erf.
// Outputs may alias inputs.
#include <algorithm>
#include <cmath>

#include "plm/backend/activation_kind.hpp"
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

  template <class T> static constexpr T gelu_k0 = T(0.7978845608028654);  // sqrt(2 / pi)
  template <class T> static constexpr T gelu_k1 = T(0.044715);
  // The exact GELU (Hugging Face "gelu", ESM, BERT): x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  template <class T> static constexpr T inv_sqrt2 = T(0.7071067811865476);
  template <class T> static constexpr T inv_sqrt_2pi = T(0.3989422804014327);

  // Each activation's value and slope over an Eigen array of T, evaluated.
  template <class T, class A>
  static auto value(Activation kind, const A& a) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    switch (kind) {
      case Activation::gelu:  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return Arr(T(0.5) * a * (T(1) + (gelu_k0<T> * (a + gelu_k1<T> * a.cube())).tanh()));
      case Activation::gelu_erf:
        return Arr(a.unaryExpr([](T v) { return T(0.5) * v * (T(1) + std::erf(v * inv_sqrt2<T>)); }));
      case Activation::silu:  // x sigmoid(x)
        return Arr(a / (T(1) + (-a).exp()));
      case Activation::relu:
        return Arr(a.max(T(0)));
    }
    PLM_FAIL("activation: unknown kind ", static_cast<int>(kind));
  }
  template <class T, class A>
  static auto slope(Activation kind, const A& a) {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    switch (kind) {
      case Activation::gelu: {
        const Arr t = (gelu_k0<T> * (a + gelu_k1<T> * a.cube())).tanh();
        return Arr(T(0.5) * (T(1) + t) + T(0.5) * a * (T(1) - t.square()) * gelu_k0<T> * (T(1) + T(3) * gelu_k1<T> * a.square()));
      }
      case Activation::gelu_erf:  // Phi(x) + x phi(x)
        return Arr(a.unaryExpr([](T v) {
          return T(0.5) * (T(1) + std::erf(v * inv_sqrt2<T>)) + v * inv_sqrt_2pi<T> * std::exp(T(-0.5) * v * v);
        }));
      case Activation::silu: {
        const Arr sg = T(1) / (T(1) + (-a).exp());
        return Arr(sg * (T(1) + a * (T(1) - sg)));
      }
      case Activation::relu:  // the derivative at 0 is taken as 0
        return Arr((a > T(0)).template cast<T>());
    }
    PLM_FAIL("activation: unknown kind ", static_cast<int>(kind));
  }

  template <class T> static void gelu(CView<T> x, View<T> y) { act<T>("gelu", Activation::gelu, x, y); }
  template <class T> static void gelu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    act_backward<T>("gelu_backward", Activation::gelu, x, dy, dx);
  }
  template <class T> static void gelu_erf(CView<T> x, View<T> y) { act<T>("gelu_erf", Activation::gelu_erf, x, y); }
  template <class T> static void gelu_erf_backward(CView<T> x, CView<T> dy, View<T> dx) {
    act_backward<T>("gelu_erf_backward", Activation::gelu_erf, x, dy, dx);
  }
  template <class T> static void silu(CView<T> x, View<T> y) { act<T>("silu", Activation::silu, x, y); }
  template <class T> static void silu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    act_backward<T>("silu_backward", Activation::silu, x, dy, dx);
  }
  template <class T> static void relu(CView<T> x, View<T> y) { act<T>("relu", Activation::relu, x, y); }
  template <class T> static void relu_backward(CView<T> x, CView<T> dy, View<T> dx) {
    act_backward<T>("relu_backward", Activation::relu, x, dy, dx);
  }

  // The gated feed-forward's activation in one pass: g = act(h0) * h1. The
  // activation itself is not kept; the backward recomputes it.
  template <class T>
  static void gated(Activation kind, CView<T> h0, CView<T> h1, View<T> g) {
    require_compute_type<T>("gated");
    check_gated("gated", h0.shape(), h1.shape(), g.shape(), g.shape());
    const T *p0 = h0.data(), *p1 = h1.data();
    T* pg = g.data();
    pieces(h0.numel(), 24, [&](index_t s, index_t len) {
      ArrMap<T>(pg + s, len) = value<T>(kind, CArrMap<T>(p0 + s, len)) * CArrMap<T>(p1 + s, len);
    });
  }
  // From dg: dh1 = dg * act(h0), dh0 = dg * h1 * act'(h0), in one pass. dh0 may alias dg.
  template <class T>
  static void gated_backward(Activation kind, CView<T> h0, CView<T> h1, CView<T> dg, View<T> dh0, View<T> dh1) {
    require_compute_type<T>("gated_backward");
    check_gated("gated_backward", h0.shape(), h1.shape(), dg.shape(), dh0.shape());
    check_gated("gated_backward", h0.shape(), h1.shape(), dg.shape(), dh1.shape());
    const T *p0 = h0.data(), *p1 = h1.data(), *pd = dg.data();
    T *q0 = dh0.data(), *q1 = dh1.data();
    pieces(h0.numel(), 40, [&](index_t s, index_t len) {
      const CArrMap<T> x(p0 + s, len), d(pd + s, len);
      ArrMap<T>(q1 + s, len) = d * value<T>(kind, x);
      ArrMap<T>(q0 + s, len) = d * CArrMap<T>(p1 + s, len) * slope<T>(kind, x);
    });
  }

 private:
  // f(start, length) over [0, n) in pieces, whole pieces per thread.
  template <class F>
  static void pieces(index_t n, index_t cost, F&& f) {
    parallel_for((n + piece - 1) / piece, piece * cost, [&](index_t b, index_t e) {
      for (index_t s = b * piece; s < std::min(n, e * piece); s += piece) f(s, std::min(piece, n - s));
    });
  }
  template <class T>
  static void act(const char* op, Activation kind, CView<T> x, View<T> y) {
    require_compute_type<T>(op);
    check_unary(op, x.shape(), y.shape());
    const T* px = x.data();
    T* py = y.data();
    pieces(x.numel(), 16, [&](index_t s, index_t len) { ArrMap<T>(py + s, len) = value<T>(kind, CArrMap<T>(px + s, len)); });
  }
  template <class T>
  static void act_backward(const char* op, Activation kind, CView<T> x, CView<T> dy, View<T> dx) {
    require_compute_type<T>(op);
    check_unary_backward(op, x.shape(), dy.shape(), dx.shape());
    const T *px = x.data(), *pdy = dy.data();
    T* pdx = dx.data();
    pieces(x.numel(), 24, [&](index_t s, index_t len) {
      ArrMap<T>(pdx + s, len) = CArrMap<T>(pdy + s, len) * slope<T>(kind, CArrMap<T>(px + s, len));
    });
  }
};

}  // namespace plm::detail
