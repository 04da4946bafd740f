#pragma once
// Per-element optimizer updates, so each backend can fuse them into one pass.
#include <algorithm>
#include <cmath>
#include <vector>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_optimizer {
  // AdamW (Loshchilov & Hutter), as torch.optim.AdamW:
  //   p -= lr * wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
  //   p -= lr * (m / c1) / (sqrt(v / c2) + eps)   with c1 = 1 - b1^t, c2 = 1 - b2^t
  template <class T>
  static void adamw_update(View<T> param, CView<T> grad, View<T> m, View<T> v, double lr, double beta1, double beta2, double eps,
                           double weight_decay, double correction1, double correction2) {
    require_compute_type<T>("adamw_update");
    check_adamw(param.shape(), grad.shape(), m.shape(), v.shape());
    T *p = param.data(), *pm = m.data(), *pv = v.data();
    const T* g = grad.data();
    const T decay = static_cast<T>(1 - lr * weight_decay), b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    const T step = static_cast<T>(lr / correction1), inv_c2 = static_cast<T>(1 / correction2), e = static_cast<T>(eps);
    parallel_for(param.numel(), 8, [&](index_t s, index_t en) {
      for (index_t i = s; i < en; ++i) {
        pm[i] = b1 * pm[i] + (T(1) - b1) * g[i];
        pv[i] = b2 * pv[i] + (T(1) - b2) * g[i] * g[i];
        p[i] = p[i] * decay - step * pm[i] / (std::sqrt(pv[i] * inv_c2) + e);
      }
    });
  }
  // Adafactor (Shazeer & Stern 2018), one parameter, as transformers.Adafactor.
  // A matrix (rows, cols) keeps factored second moments: row (rows) and col
  // (cols) running means of g^2 + eps1; a vector keeps full moments in `row`
  // and `col` is empty. The update u = g / sqrt(v_hat) is clipped to RMS
  // clip_threshold, scaled by lr, optionally averaged with momentum m
  // (empty = no first moment), and applied after decoupled weight decay.
  template <class T>
  static void adafactor_update(View<T> param, CView<T> grad, View<T> row, View<T> col, View<T> m, View<T> scratch, double lr,
                               double beta2t, double eps1, double clip_threshold, double beta1, double weight_decay) {
    require_compute_type<T>("adafactor_update");
    const bool factored = !col.empty();
    const auto [R, C] = check_adafactor(param.shape(), grad.shape(), row.shape(), col.shape(), m.shape(), scratch.shape(), factored,
                                        !m.empty());
    const index_t n = param.numel();
    const T* g = grad.data();
    T *p = param.data(), *u = scratch.data(), *vr = row.data(), *vc = col.data();
    const double b = beta2t;
    if (factored) {
      // running means of g^2 + eps1 over each row and each column
      std::vector<double> cs(static_cast<std::size_t>(C), 0.0);
      for (index_t r = 0; r < R; ++r) {
        double rs = 0;
        for (index_t c = 0; c < C; ++c) {
          const double q = double(g[r * C + c]) * double(g[r * C + c]) + eps1;
          rs += q;
          cs[static_cast<std::size_t>(c)] += q;
        }
        vr[r] = static_cast<T>(b * double(vr[r]) + (1 - b) * rs / double(C));
      }
      for (index_t c = 0; c < C; ++c) vc[c] = static_cast<T>(b * double(vc[c]) + (1 - b) * cs[static_cast<std::size_t>(c)] / double(R));
      // v_hat = row x col / mean(row)
      double row_mean = 0;
      for (index_t r = 0; r < R; ++r) row_mean += double(vr[r]);
      row_mean /= double(R);
      for (index_t r = 0; r < R; ++r) {
        const double rr = 1.0 / std::sqrt(double(vr[r]) / row_mean);
        for (index_t c = 0; c < C; ++c) u[r * C + c] = static_cast<T>(double(g[r * C + c]) * rr / std::sqrt(double(vc[c])));
      }
    } else {
      for (index_t i = 0; i < n; ++i) {
        vr[i] = static_cast<T>(b * double(vr[i]) + (1 - b) * (double(g[i]) * double(g[i]) + eps1));
        u[i] = static_cast<T>(double(g[i]) / std::sqrt(double(vr[i])));
      }
    }
    double ss = 0;
    for (index_t i = 0; i < n; ++i) ss += double(u[i]) * double(u[i]);
    const double rms = std::sqrt(ss / double(n));
    const double s = lr / std::max(1.0, rms / clip_threshold);
    const T decay = static_cast<T>(1 - lr * weight_decay);
    for (index_t i = 0; i < n; ++i) {
      double step = s * double(u[i]);
      if (!m.empty()) {
        m.data()[i] = static_cast<T>(beta1 * double(m.data()[i]) + (1 - beta1) * step);
        step = double(m.data()[i]);
      }
      p[i] = static_cast<T>(double(p[i] * decay) - step);
    }
  }
};

}  // namespace plm::detail
