#pragma once
// RMS norm (T5) and layer norm over the last dimension, forward and backward.
// Row statistics accumulate in double, as T5 computes its variance in fp32
// even when activations are half precision.
#include <cmath>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_norm {
  // y = x / sqrt(mean(x^2) + eps) * weight.  x, y: (..., C); weight: (C); inv_rms: (rows) for backward.
  template <class T>
  static void rms_norm(CView<T> x, CView<T> weight, T eps, View<T> y, View<T> inv_rms) {
    require_compute_type<T>("rms_norm");
    check_rms_norm(x.shape(), weight.shape(), y.shape(), inv_rms.shape());
    const index_t rows = x.shape().rows(), C = x.dim(-1);
    const T *px = x.data(), *pw = weight.data();
    T *py = y.data(), *pr = inv_rms.data();
    parallel_for(rows, C * 3, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const T* xr = px + r * C;
        double ss = 0;
        for (index_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
        const T inv = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(C) + static_cast<double>(eps)));
        pr[r] = inv;
        T* yr = py + r * C;
        for (index_t c = 0; c < C; ++c) yr[c] = xr[c] * inv * pw[c];
      }
    });
  }

  // dx = inv * (g - xhat * mean(g * xhat)), g = dy * weight, xhat = x * inv;
  // dweight += sum over rows of dy * xhat.
  template <class T>
  static void rms_norm_backward(CView<T> x, CView<T> weight, CView<T> inv_rms, CView<T> dy, View<T> dx, View<T> dweight) {
    require_compute_type<T>("rms_norm_backward");
    check_rms_norm_backward(x.shape(), weight.shape(), inv_rms.shape(), dy.shape(), dx.shape(), dweight.shape());
    const index_t rows = x.shape().rows(), C = x.dim(-1);
    const T *px = x.data(), *pw = weight.data(), *pr = inv_rms.data(), *pdy = dy.data();
    T *pdx = dx.data(), *pdw = dweight.data();
    // Columns first (dx may alias dy), each dweight element summed by one thread.
    parallel_for(C, rows * 2, [&](index_t c0, index_t c1) {
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = c0; c < c1; ++c) pdw[c] += pdy[r * C + c] * px[r * C + c] * pr[r];
    });
    parallel_for(rows, C * 4, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const T *xr = px + r * C, *dyr = pdy + r * C;
        const T inv = pr[r];
        double dot = 0;
        for (index_t c = 0; c < C; ++c) dot += static_cast<double>(dyr[c]) * pw[c] * xr[c] * inv;
        const T m = static_cast<T>(dot / static_cast<double>(C));
        T* dxr = pdx + r * C;
        for (index_t c = 0; c < C; ++c) dxr[c] = inv * (dyr[c] * pw[c] - xr[c] * inv * m);
      }
    });
  }

  // y = (x - mean) / sqrt(var + eps) * weight + bias. mean, rstd: (rows) for backward.
  template <class T>
  static void layer_norm(CView<T> x, CView<T> weight, CView<T> bias, T eps, View<T> y, View<T> mean, View<T> rstd) {
    require_compute_type<T>("layer_norm");
    check_layer_norm(x.shape(), weight.shape(), bias.shape(), y.shape(), mean.shape(), rstd.shape());
    const index_t rows = x.shape().rows(), C = x.dim(-1);
    const T *px = x.data(), *pw = weight.data(), *pb = bias.data();
    T *py = y.data(), *pm = mean.data(), *ps = rstd.data();
    parallel_for(rows, C * 4, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const T* xr = px + r * C;
        double s = 0;
        for (index_t c = 0; c < C; ++c) s += xr[c];
        const double mu = s / static_cast<double>(C);
        double v = 0;
        for (index_t c = 0; c < C; ++c) v += (xr[c] - mu) * (xr[c] - mu);
        const T rs_ = static_cast<T>(1.0 / std::sqrt(v / static_cast<double>(C) + static_cast<double>(eps)));
        const T m_ = static_cast<T>(mu);
        pm[r] = m_;
        ps[r] = rs_;
        T* yr = py + r * C;
        for (index_t c = 0; c < C; ++c) yr[c] = (xr[c] - m_) * rs_ * pw[c] + pb[c];
      }
    });
  }

  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight;
  // dweight += sum dy * xhat, dbias += sum dy.
  template <class T>
  static void layer_norm_backward(CView<T> x, CView<T> weight, CView<T> mean, CView<T> rstd, CView<T> dy, View<T> dx,
                                  View<T> dweight, View<T> dbias) {
    require_compute_type<T>("layer_norm_backward");
    check_layer_norm_backward(x.shape(), weight.shape(), mean.shape(), rstd.shape(), dy.shape(), dx.shape(), dweight.shape(),
                              dbias.shape());
    const index_t rows = x.shape().rows(), C = x.dim(-1);
    const T *px = x.data(), *pw = weight.data(), *pm = mean.data(), *ps = rstd.data(), *pdy = dy.data();
    T *pdx = dx.data(), *pdw = dweight.data(), *pdb = dbias.data();
    parallel_for(C, rows * 3, [&](index_t c0, index_t c1) {
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = c0; c < c1; ++c) {
          const T g = pdy[r * C + c];
          pdw[c] += g * (px[r * C + c] - pm[r]) * ps[r];
          pdb[c] += g;
        }
    });
    parallel_for(rows, C * 6, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const T *xr = px + r * C, *dyr = pdy + r * C;
        const T mu = pm[r], rs_ = ps[r];
        double sg = 0, sgx = 0;
        for (index_t c = 0; c < C; ++c) {
          const double g = static_cast<double>(dyr[c]) * pw[c];
          sg += g;
          sgx += g * (xr[c] - mu) * rs_;
        }
        const T mg = static_cast<T>(sg / static_cast<double>(C)), mgx = static_cast<T>(sgx / static_cast<double>(C));
        T* dxr = pdx + r * C;
        for (index_t c = 0; c < C; ++c) dxr[c] = rs_ * (dyr[c] * pw[c] - mg - (xr[c] - mu) * rs_ * mgx);
      }
    });
  }
};

}  // namespace plm::detail
