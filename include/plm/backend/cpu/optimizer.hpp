#pragma once
// Per-element optimizer updates, so each backend can fuse them into one pass.
#include <cmath>

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
    const char* op = "adamw_update";
    check_same_shape(op, "param", param.shape(), "grad", grad.shape());
    check_same_shape(op, "param", param.shape(), "m", m.shape());
    check_same_shape(op, "param", param.shape(), "v", v.shape());
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
};

}  // namespace plm::detail
