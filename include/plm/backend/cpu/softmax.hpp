#pragma once
// Masked softmax over the last dimension of attention scores (B, H, Tq, Tk),
// with an additive bias (T5's relative position bias) and its backward.
#include <cmath>
#include <limits>

#include "plm/backend/cpu/common.hpp"
#include "plm/backend/softmax_mask.hpp"

namespace plm::detail {

struct cpu_softmax {
  // probs = softmax(mask(scale * scores + bias)) over the last dimension.
  // scores, probs: (B, H, Tq, Tk); probs may alias scores.
  template <class T>
  static void masked_softmax(CView<T> scores, View<T> probs, const SoftmaxMask<cpu, T>& mask = {}) {
    require_compute_type<T>("masked_softmax");
    check_softmax_mask("masked_softmax", scores.shape(), mask);
    check_same_shape("masked_softmax", "scores", scores.shape(), "probs", probs.shape());
    const index_t B = scores.dim(0), H = scores.dim(1), Tq = scores.dim(2), Tk = scores.dim(3);
    const bool shared_bias = !mask.bias.empty() && mask.bias.rank() == 3;
    const T* ps = scores.data();
    const T* pbias = mask.bias.data();
    const std::uint8_t* valid = mask.key_valid.data();
    T* pp = probs.data();
    parallel_for(B * H * Tq, Tk * 4, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) {
        const index_t b = r / (H * Tq), i = r % Tq;
        const T* s = ps + r * Tk;
        const T* bias = pbias ? pbias + (shared_bias ? r % (H * Tq) : r) * Tk : nullptr;
        const std::uint8_t* v = valid ? valid + b * Tk : nullptr;
        const index_t visible_end = mask.causal ? std::min(Tk, i + (Tk - Tq) + 1) : Tk;
        T* p = pp + r * Tk;
        T mx = -std::numeric_limits<T>::infinity();
        for (index_t j = 0; j < visible_end; ++j) {
          if (v && !v[j]) continue;
          const T l = mask.scale * s[j] + (bias ? bias[j] : T(0));
          p[j] = l;
          mx = l > mx ? l : mx;
        }
        if (mx == -std::numeric_limits<T>::infinity()) {  // nothing visible (or all -inf)
          for (index_t j = 0; j < Tk; ++j) p[j] = T(0);
          continue;
        }
        T sum = 0;
        for (index_t j = 0; j < Tk; ++j) {
          if (j >= visible_end || (v && !v[j])) {
            p[j] = T(0);
            continue;
          }
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const T inv = T(1) / sum;
        for (index_t j = 0; j < visible_end; ++j) p[j] *= inv;
      }
    });
  }

  // Backward of masked_softmax given its output probs and the gradient dprobs.
  //   dscores = scale * dlogits, dlogits = probs * (dprobs - sum_j probs * dprobs)
  //   dbias  += dlogits (summed over the batch when bias is shared (H, Tq, Tk))
  // dscores may alias dprobs. dbias is optional (empty view = not needed).
  template <class T>
  static void masked_softmax_backward(CView<T> probs, CView<T> dprobs, View<T> dscores, T scale = T(1), View<T> dbias = {}) {
    require_compute_type<T>("masked_softmax_backward");
    const Shape db = dbias.shape();
    const bool shared = check_softmax_backward(probs.shape(), dprobs.shape(), dscores.shape(), dbias.empty() ? nullptr : &db);
    const index_t B = probs.dim(0), H = probs.dim(1), Tq = probs.dim(2), Tk = probs.dim(3);
    const T *pp = probs.data(), *pd = dprobs.data();
    T* pg = dscores.data();
    T* pb = dbias.data();
    // Rows of one (h, i) across the batch go to the same thread, so a shared
    // dbias row is accumulated without races and in a fixed order.
    parallel_for(H * Tq, B * Tk * 4, [&](index_t r0, index_t r1) {
      for (index_t hr = r0; hr < r1; ++hr)
        for (index_t b = 0; b < B; ++b) {
          const index_t r = b * H * Tq + hr;
          const T* p = pp + r * Tk;
          const T* d = pd + r * Tk;
          T* g = pg + r * Tk;
          T dot = 0;
          for (index_t j = 0; j < Tk; ++j) dot += p[j] * d[j];
          T* db = pb ? pb + (shared ? hr : r) * Tk : nullptr;
          for (index_t j = 0; j < Tk; ++j) {
            const T dl = p[j] * (d[j] - dot);
            if (db) db[j] += dl;
            g[j] = scale * dl;
          }
        }
    });
  }
};

}  // namespace plm::detail
