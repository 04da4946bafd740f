#pragma once
// Cross-entropy over the last dimension of logits with its gradient, fused:
// each row is read for its max, then once more to form the softmax, the loss
// and the gradient together, while it is still in cache.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/backend/cpu/common.hpp"
#include "plm/backend/cross_entropy_sums.hpp"

namespace plm::detail {

struct cpu_cross_entropy {
  // logits: (..., V); targets: (...) int32; rows whose target == ignore_index
  // contribute nothing (and get zero gradient).
  // Per row: loss = (1 - s) * -log p[t] + s * mean_j(-log p[j]), s = label_smoothing.
  // If dlogits is given (same shape as logits; may alias it), it is WRITTEN with
  // grad_scale * d loss / d logits = grad_scale * (p - (1 - s) onehot(t) - s / V).
  // A target outside [0, V) that is not ignore_index is an error naming its row.
  template <class T>
  static CrossEntropySums cross_entropy(CView<T> logits, CView<std::int32_t> targets, std::int32_t ignore_index,
                                        T label_smoothing = T(0), View<T> dlogits = {}, T grad_scale = T(1),
                                        const CrossEntropyRows<cpu, T>& per_row = {}) {
    require_compute_type<T>("cross_entropy");
    const Shape dl = dlogits.shape();
    check_cross_entropy(logits.shape(), targets.shape(), dlogits.empty() ? nullptr : &dl, static_cast<double>(label_smoothing),
                        per_row.grad_scale.empty() ? -1 : per_row.grad_scale.numel(), per_row.loss.empty() ? -1 : per_row.loss.numel(),
                        per_row.correct.empty() ? -1 : per_row.correct.numel());
    const index_t rows = logits.shape().rows(), V = logits.dim(-1);
    const std::int32_t* pt = targets.data();
    for (index_t r = 0; r < rows; ++r)
      if (pt[r] != ignore_index && (pt[r] < 0 || pt[r] >= V)) fail_bad_target(pt[r], r, V, ignore_index);
    const T* pl = logits.data();
    T* pg = dlogits.data();
    const T* rscale = per_row.grad_scale.data();
    T* rloss = per_row.loss.data();
    std::uint8_t* rcorrect = per_row.correct.data();
    // The sums are taken over fixed blocks of rows (about 2^14 logits each) and
    // the block sums added in block order, so they do not depend on the number
    // of threads (per-thread sums would be split where the thread ranges fall).
    const index_t block = std::max<index_t>(1, (index_t{1} << 14) / std::max<index_t>(V, 1)), blocks = (rows + block - 1) / block;
    std::vector<CrossEntropySums> part(static_cast<std::size_t>(blocks));
    parallel_for(blocks, block * V * 4, [&](index_t b0, index_t b1) {
      for (index_t blk = b0; blk < b1; ++blk) {
        CrossEntropySums s;
        for (index_t r = blk * block, r_end = std::min(rows, r + block); r < r_end; ++r) {
          const T* l = pl + r * V;
          T* g = pg ? pg + r * V : nullptr;
          const std::int32_t t = pt[r];
          if (t == ignore_index) {
            if (g)
              for (index_t j = 0; j < V; ++j) g[j] = T(0);
            if (rloss) rloss[r] = T(0);
            if (rcorrect) rcorrect[r] = 0;
            continue;
          }
          T mx = l[0];
          index_t arg = 0;
          for (index_t j = 1; j < V; ++j)
            if (l[j] > mx) mx = l[j], arg = j;
          double z = 0, sum_l = 0;
          for (index_t j = 0; j < V; ++j) {
            z += std::exp(static_cast<double>(l[j] - mx));
            sum_l += static_cast<double>(l[j]);
          }
          const double lse = static_cast<double>(mx) + std::log(z);
          const double nll = lse - static_cast<double>(l[t]);
          const double smooth = lse - sum_l / static_cast<double>(V);  // mean_j -log p_j
          const double ls = static_cast<double>(label_smoothing);
          const double row_loss = (1 - ls) * nll + ls * smooth;
          s.loss += row_loss;
          s.nll += nll;
          s.count += 1;
          s.correct += arg == t;
          if (rloss) rloss[r] = static_cast<T>(row_loss);
          if (rcorrect) rcorrect[r] = arg == t;
          if (g) {
            const T gs = rscale ? rscale[r] : grad_scale;
            const T inv_z = static_cast<T>(1.0 / z), off = static_cast<T>(ls / static_cast<double>(V));
            for (index_t j = 0; j < V; ++j) g[j] = gs * (std::exp(l[j] - mx) * inv_z - off);
            g[t] -= gs * static_cast<T>(1 - ls);
          }
        }
        part[static_cast<std::size_t>(blk)] = s;
      }
    });
    CrossEntropySums total;
    for (const auto& s : part) {
      total.loss += s.loss;
      total.nll += s.nll;
      total.count += s.count;
      total.correct += s.correct;
    }
    return total;
  }
};

}  // namespace plm::detail
