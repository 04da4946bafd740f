#pragma once
// AdamW over a model's flat parameter and gradient buffers, with per-group
// learning-rate multipliers and decoupled weight decay (torch.optim.AdamW).
#include <cmath>
#include <cstdint>
#include <string>
#include <optional>
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

  // range: the parameters this optimizer updates and keeps moments for (all of
  // them by default; one rank's shard under ZeRO-1, dist/data_parallel.hpp).
  AdamW(nn::ParameterSet<B, T>& params, Options o = {}, const ParamGroups& groups = {}, std::optional<nn::ParamRange> range = {})
      : ps_(&params), o_(o), groups_(groups.resolve(params)), range_(checked_range(params, range)),
        base_(range_.size() ? params.entry(range_.begin).offset : 0), m_(Shape{range_numel(params, range_)}), v_(m_.shape()) {
    PLM_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas (", o.beta1, ", ", o.beta2, ") outside [0, 1)");
    PLM_CHECK(o.eps > 0 && o.weight_decay >= 0, "AdamW: eps ", o.eps, " must be > 0 and weight_decay ", o.weight_decay, " >= 0");
    ops<B>::fill(m_.view(), T(0));
    ops<B>::fill(v_.view(), T(0));
  }

  // One update with base learning rate lr (from a schedule) on the current gradients.
  void step(double lr) {
    ++t_;
    const double c1 = 1 - std::pow(o_.beta1, static_cast<double>(t_)), c2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
    for (index_t i = range_.begin; i < range_.end; ++i) {
      const auto& e = ps_->entry(i);
      const auto& g = groups_[static_cast<std::size_t>(i)];
      const Shape flat{e.shape.numel()};
      const index_t at = e.offset - base_;
      ops<B>::adamw_update(ps_->value(i).reshape(flat), ConstView<B, T>(ps_->grad(i)).reshape(flat), m_.view().slice(at, at + flat[0]),
                           v_.view().slice(at, at + flat[0]), lr * g.lr_multiplier, o_.beta1, o_.beta2, o_.eps,
                           g.weight_decay ? o_.weight_decay : 0.0, c1, c2);
    }
  }

  std::int64_t steps() const { return t_; }
  nn::ParamRange range() const { return range_; }
  void set_steps(std::int64_t t) { t_ = t; }
  // The moments, named for checkpoints (io::save_checkpoint's state tensors).
  std::vector<std::pair<std::string, TensorView<B, T>>> state() { return {{"adamw.m", m_.view()}, {"adamw.v", v_.view()}}; }

 private:
  nn::ParameterSet<B, T>* ps_;
  Options o_;
  std::vector<GroupSettings> groups_;
  nn::ParamRange range_;
  index_t base_;  // flat offset of the range's first parameter
  Tensor<B, T> m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace plm::optim
