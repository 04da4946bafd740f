#pragma once
// Elementwise arithmetic, broadcasting over rows, layout changes and copies.
// Outputs may alias inputs of the same shape (out[i] depends only on in[i]).
#include <type_traits>

#include "plm/backend/cpu/common.hpp"
#include "plm/core/dtype.hpp"

namespace plm::detail {

struct cpu_elementwise {
  // x[i] = value. Any element type.
  template <class T>
  static void fill(View<T> x, T value) {
    check_not_null("fill", "x", x.data(), x.numel());
    T* p = x.data();
    parallel_for(x.numel(), 1, [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) p[i] = value;
    });
  }

  // dst = src. Any element type.
  template <class T>
  static void copy(CView<T> src, View<T> dst) {
    check_same_shape("copy", "src", src.shape(), "dst", dst.shape());
    check_not_null("copy", "src", src.data(), src.numel());
    check_not_null("copy", "dst", dst.data(), dst.numel());
    if (src.data() != dst.data() && src.numel() > 0)
      std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * sizeof(T));
  }

  // dst = src with a type conversion (float <-> double, float <-> bf16, ...).
  template <class S, class D>
  static void convert(CView<S> src, View<D> dst) {
    check_same_shape("convert", "src", src.shape(), "dst", dst.shape());
    const S* s = src.data();
    D* d = dst.data();
    parallel_for(src.numel(), 2, [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) {
        if constexpr (std::is_same_v<D, bf16>)
          d[i] = bf16(static_cast<float>(s[i]));
        else if constexpr (std::is_same_v<S, bf16>)
          d[i] = static_cast<D>(static_cast<float>(s[i]));
        else
          d[i] = static_cast<D>(s[i]);
      }
    });
  }

  template <class T, class F>
  static void binary(const char* op, CView<T> a, CView<T> b, View<T> out, F f) {
    require_compute_type<T>(op);
    check_elementwise(op, a.shape(), b.shape(), out.shape());
    const T *pa = a.data(), *pb = b.data();
    T* po = out.data();
    parallel_for(a.numel(), 1, [&](index_t s, index_t e) {
      for (index_t i = s; i < e; ++i) po[i] = f(pa[i], pb[i]);
    });
  }

  // out = a + b, a - b, a * b.
  template <class T> static void add(CView<T> a, CView<T> b, View<T> out) { binary<T>("add", a, b, out, [](T x, T y) { return x + y; }); }
  template <class T> static void sub(CView<T> a, CView<T> b, View<T> out) { binary<T>("sub", a, b, out, [](T x, T y) { return x - y; }); }
  template <class T> static void mul(CView<T> a, CView<T> b, View<T> out) { binary<T>("mul", a, b, out, [](T x, T y) { return x * y; }); }

  // out = alpha * x.
  template <class T>
  static void scale(CView<T> x, T alpha, View<T> out) {
    require_compute_type<T>("scale");
    check_same_shape("scale", "x", x.shape(), "out", out.shape());
    const T* px = x.data();
    T* po = out.data();
    parallel_for(x.numel(), 1, [&](index_t s, index_t e) {
      for (index_t i = s; i < e; ++i) po[i] = alpha * px[i];
    });
  }

  // y += alpha * x.
  template <class T>
  static void axpy(T alpha, CView<T> x, View<T> y) {
    require_compute_type<T>("axpy");
    check_same_shape("axpy", "x", x.shape(), "y", y.shape());
    const T* px = x.data();
    T* py = y.data();
    parallel_for(x.numel(), 1, [&](index_t s, index_t e) {
      for (index_t i = s; i < e; ++i) py[i] += alpha * px[i];
    });
  }

  template <class T, class F>
  static void row_broadcast(const char* op, CView<T> x, CView<T> row, View<T> out, F f) {
    require_compute_type<T>(op);
    check_row_broadcast(op, x.shape(), row.shape(), out.shape());
    const index_t rows = x.shape().rows(), cols = x.dim(-1);
    const T *px = x.data(), *pr = row.data();
    T* po = out.data();
    parallel_for(rows, cols, [&](index_t s, index_t e) {
      for (index_t r = s; r < e; ++r)
        for (index_t c = 0; c < cols; ++c) po[r * cols + c] = f(px[r * cols + c], pr[c]);
    });
  }

  // out = x + row, out = x * row, with row (C) broadcast over x (..., C).
  template <class T> static void add_row(CView<T> x, CView<T> row, View<T> out) { row_broadcast<T>("add_row", x, row, out, [](T a, T b) { return a + b; }); }
  template <class T> static void mul_row(CView<T> x, CView<T> row, View<T> out) { row_broadcast<T>("mul_row", x, row, out, [](T a, T b) { return a * b; }); }

  // out[r, :] = x[r, :] * factor[r] for x (..., C) seen as rows: a per-row
  // scale (ESM's token dropout); it is its own backward.
  template <class T>
  static void scale_rows(CView<T> x, CView<T> factor, View<T> out) {
    require_compute_type<T>("scale_rows");
    check_scale_rows(x.shape(), factor.shape(), out.shape());
    const index_t rows = x.shape().rows(), cols = x.dim(-1);
    const T *px = x.data(), *pf = factor.data();
    T* po = out.data();
    parallel_for(rows, cols, [&](index_t s, index_t e) {
      for (index_t r = s; r < e; ++r)
        for (index_t c = 0; c < cols; ++c) po[r * cols + c] = px[r * cols + c] * pf[r];
    });
  }

  // Rotary position embedding (RoFormer, as ESM-2 and Hugging Face apply it):
  // x (..., T, D) holds pairs (i, i + D/2) that turn by the angle of position t,
  //   y[i]       = x[i] cos[t, i] - x[i + D/2] sin[t, i]
  //   y[i + D/2] = x[i + D/2] cos[t, i] + x[i] sin[t, i]
  // inverse turns back (sin negated): the rotation is orthogonal, so that is
  // also the backward. y may alias x.
  template <class T>
  static void rotary(CView<T> x, CView<T> cos, CView<T> sin, View<T> y, bool inverse = false) {
    require_compute_type<T>("rotary");
    check_rotary(x.shape(), cos.shape(), sin.shape(), y.shape());
    const index_t D = x.dim(-1), half = D / 2, Tn = x.dim(-2), rows = x.shape().rows();
    const T *px = x.data(), *pc = cos.data(), *ps = sin.data();
    T* py = y.data();
    const T sign = inverse ? T(-1) : T(1);
    parallel_for(rows, D, [&](index_t s, index_t e) {
      for (index_t r = s; r < e; ++r) {
        const T* c = pc + (r % Tn) * half;
        const T* sn = ps + (r % Tn) * half;
        const T* a = px + r * D;
        T* o = py + r * D;
        for (index_t i = 0; i < half; ++i) {
          const T x1 = a[i], x2 = a[i + half], si = sign * sn[i];
          o[i] = x1 * c[i] - x2 * si;
          o[i + half] = x2 * c[i] + x1 * si;
        }
      }
    });
  }

  // out (C) = beta * out + sum over rows of x (..., C). The gradient of add_row.
  template <class T>
  static void sum_rows(CView<T> x, View<T> out, T beta = T(0)) {
    require_compute_type<T>("sum_rows");
    check_sum_rows(x.shape(), out.shape());
    const index_t rows = x.shape().rows(), cols = x.dim(-1);
    const T* px = x.data();
    T* po = out.data();
    // Split columns across threads: each output element is summed by one thread
    // in row order, so the result does not depend on the thread count.
    parallel_for(cols, rows, [&](index_t s, index_t e) {
      for (index_t c = s; c < e; ++c) po[c] = beta == T(0) ? T(0) : beta * po[c];
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = s; c < e; ++c) po[c] += px[r * cols + c];
    });
  }

  // out (A, C, B, D) = x (A, B, C, D) with dimensions 1 and 2 swapped: turns
  // (batch, time, heads, d_head) into (batch, heads, time, d_head) and back.
  template <class T>
  static void transpose12(CView<T> x, View<T> out) {
    check_transpose12(x.shape(), out.shape(), x.data() == out.data());
    const index_t A = x.dim(0), B = x.dim(1), C = x.dim(2), D = x.dim(3);
    const T* px = x.data();
    T* po = out.data();
    parallel_for(A * B, C * D, [&](index_t s, index_t e) {
      for (index_t ab = s; ab < e; ++ab) {
        const index_t a = ab / B, b = ab % B;
        for (index_t c = 0; c < C; ++c)
          std::memcpy(po + ((a * C + c) * B + b) * D, px + ((a * B + b) * C + c) * D, static_cast<std::size_t>(D) * sizeof(T));
      }
    });
  }
};

}  // namespace plm::detail
