#pragma once
// AdamW over a model's flat parameter and gradient buffers, with per-group
// learning-rate multipliers and decoupled weight decay (torch.optim.AdamW).
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/optim/param_groups.hpp"

namespace plm::optim {

template <class B, class T>
class AdamW {
 public:
  struct Options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  };

  AdamW(nn::ParameterSet<B, T>& params, Options o = {}, const ParamGroups& groups = {})
      : ps_(&params), o_(o), groups_(groups.resolve(params)), m_(Shape{params.numel()}), v_(Shape{params.numel()}) {
    PLM_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas (", o.beta1, ", ", o.beta2, ") outside [0, 1)");
    PLM_CHECK(o.eps > 0 && o.weight_decay >= 0, "AdamW: eps ", o.eps, " must be > 0 and weight_decay ", o.weight_decay, " >= 0");
    ops<B>::fill(m_.view(), T(0));
    ops<B>::fill(v_.view(), T(0));
  }

  // One update with base learning rate lr (from a schedule) on the current gradients.
  void step(double lr) {
    ++t_;
    const double c1 = 1 - std::pow(o_.beta1, static_cast<double>(t_)), c2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
    for (index_t i = 0; i < ps_->size(); ++i) {
      const auto& e = ps_->entry(i);
      const auto& g = groups_[static_cast<std::size_t>(i)];
      const Shape flat{e.shape.numel()};
      ops<B>::adamw_update(ps_->value(i).reshape(flat), ConstView<B, T>(ps_->grad(i)).reshape(flat), m_.view().slice(e.offset, e.offset + flat[0]),
                           v_.view().slice(e.offset, e.offset + flat[0]), lr * g.lr_multiplier, o_.beta1, o_.beta2, o_.eps,
                           g.weight_decay ? o_.weight_decay : 0.0, c1, c2);
    }
  }

  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }
  // The moments, named for checkpoints (io::save_checkpoint's state tensors).
  std::vector<std::pair<std::string, TensorView<B, T>>> state() { return {{"adamw.m", m_.view()}, {"adamw.v", v_.view()}}; }

 private:
  nn::ParameterSet<B, T>* ps_;
  Options o_;
  std::vector<GroupSettings> groups_;
  Tensor<B, T> m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace plm::optim
