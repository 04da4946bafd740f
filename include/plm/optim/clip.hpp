#pragma once
// Global-norm gradient clipping over a model's flat gradient buffer, and
// gradient accumulation.
#include <cmath>
#include <cstdint>

#include "plm/backend/ops.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::optim {

// The global L2 norm of every gradient of the set, without changing them (for
// metrics, or a loop that clips elsewhere). A NaN or infinite norm is an error
// naming the first parameter whose gradient is not finite: that is the layer
// where the run blew up, and stepping would destroy the weights.
template <class B, class T>
double grad_norm(const nn::ParameterSet<B, T>& ps) {
  const double norm = std::sqrt(ops<B>::sum_squares(ConstView<B, T>(ps.grads())));
  if (!std::isfinite(norm)) {
    for (index_t i = 0; i < ps.size(); ++i)
      PLM_CHECK(ops<B>::all_finite(ConstView<B, T>(ps.grad(i))), "grad_norm: the gradient of '", ps.entry(i).name,
                "' contains NaN or infinity");
    PLM_FAIL("grad_norm: gradient norm overflows (", norm, ")");
  }
  return norm;
}

// Scales all gradients by max_norm / norm when the global L2 norm exceeds
// max_norm; returns the norm before clipping. Non-finite gradients are an
// error, as in grad_norm.
template <class B, class T>
double clip_grad_norm(nn::ParameterSet<B, T>& ps, double max_norm) {
  PLM_CHECK(max_norm > 0, "clip_grad_norm: max_norm ", max_norm, " must be positive");
  const double norm = grad_norm(ps);
  if (norm > max_norm) ops<B>::scale(ConstView<B, T>(ps.grads()), static_cast<T>(max_norm / norm), ps.grads());
  return norm;
}

// Gradient accumulation over n micro-batches per optimizer step. Backward ops
// add into the gradients, so accumulating is just not zeroing between
// micro-batches; weighting each micro-batch's loss by 1/n makes the sum the
// mean gradient of the whole step.
struct GradientAccumulation {
  std::int64_t micro_batches = 1;
  double loss_weight() const { return 1.0 / static_cast<double>(micro_batches); }
  // True after the last micro-batch of a step (micro_step counts from 0).
  bool boundary(std::int64_t micro_step) const { return (micro_step + 1) % micro_batches == 0; }
};

}  // namespace plm::optim
