#pragma once
// Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with
// Sublinear Memory Cost"), the optimizer T5 and the Ankh models were trained
// with. Matches transformers.Adafactor step for step:
//
//   beta2_t = 1 - t^decay_rate                       (decay_rate -0.8)
//   matrices keep row and column means of g^2 + eps1 (factored second
//   moments: rows + cols numbers instead of rows x cols), vectors keep them in full;
//   u = g / sqrt(v_hat), clipped to RMS <= clip_threshold
//   lr_t = relative_step ? min(1e-2, 1/sqrt(t)) (warmup_init: min(1e-6 t, 1/sqrt(t)))
//                        : the lr given to step() (from a schedule)
//   scale_parameter: lr_t *= max(eps2, RMS(p))
//   p = p (1 - lr_t wd) - lr_t u   (with beta1 > 0, a momentum average of lr_t u)
//
// Per-group learning-rate multipliers multiply lr_t.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/optim/param_groups.hpp"

namespace plm::optim {

template <class B, class T>
class Adafactor {
 public:
  struct Options {
    double eps1 = 1e-30;  // added to g^2
    double eps2 = 1e-3;   // floor of the parameter scale
    double clip_threshold = 1.0;
    double decay_rate = -0.8;
    double beta1 = 0.0;  // 0 = no first moment (Adafactor's memory-saving default)
    double weight_decay = 0.0;
    bool scale_parameter = true;
    bool relative_step = true;
    bool warmup_init = false;
  };

  // range: the parameters this optimizer updates and keeps moments for (all of
  // them by default; one rank's shard under ZeRO-1, dist/data_parallel.hpp).
  Adafactor(nn::ParameterSet<B, T>& params, Options o = {}, const ParamGroups& groups = {}, std::optional<nn::ParamRange> range = {})
      : ps_(&params), o_(o), groups_(groups.resolve(params)), range_(checked_range(params, range)) {
    PLM_CHECK(o.decay_rate < 0, "Adafactor: decay_rate ", o.decay_rate, " must be negative (beta2_t = 1 - t^decay_rate)");
    PLM_CHECK(o.beta1 >= 0 && o.beta1 < 1, "Adafactor: beta1 ", o.beta1, " outside [0, 1)");
    PLM_CHECK(o.eps1 > 0 && o.eps2 > 0 && o.clip_threshold > 0 && o.weight_decay >= 0, "Adafactor: eps1 ", o.eps1, ", eps2 ", o.eps2,
              ", clip_threshold ", o.clip_threshold, " must be > 0 and weight_decay ", o.weight_decay, " >= 0");
    PLM_CHECK(!o.warmup_init || o.relative_step, "Adafactor: warmup_init needs relative_step");
    index_t moments = 0, largest = 0;
    offsets_.assign(static_cast<std::size_t>(range_.begin), 0);  // indexed by parameter id; only the range's are used
    for (index_t i = range_.begin; i < range_.end; ++i) {
      const auto& e = params.entry(i);
      offsets_.push_back(moments);
      moments += factored(e.shape) ? e.shape[0] + e.shape.numel() / e.shape[0] : e.shape.numel();
      largest = std::max(largest, e.shape.numel());
    }
    v_.resize(Shape{moments});
    ops<B>::fill(v_.view(), T(0));
    base_ = range_.size() ? params.entry(range_.begin).offset : 0;
    if (o.beta1 > 0) {
      m_.resize(Shape{range_numel(params, range_)});
      ops<B>::fill(m_.view(), T(0));
    }
    scratch_.resize(Shape{std::max<index_t>(largest, 1)});
  }

  // One update on the current gradients. lr is the scheduled learning rate;
  // with relative_step it is ignored (the step size comes from t).
  void step(double lr = 0.0) {
    PLM_CHECK(o_.relative_step || lr > 0, "Adafactor: step(lr) needs lr > 0 without relative_step (got ", lr, ")");
    ++t_;
    const double t = static_cast<double>(t_);
    const double beta2t = 1.0 - std::pow(t, o_.decay_rate);
    double rel = lr;
    if (o_.relative_step) rel = std::min(o_.warmup_init ? 1e-6 * t : 1e-2, 1.0 / std::sqrt(t));
    for (index_t i = range_.begin; i < range_.end; ++i) {
      const auto& e = ps_->entry(i);
      const auto& g = groups_[static_cast<std::size_t>(i)];
      const index_t n = e.shape.numel();
      const index_t at = e.offset - base_;
      auto p = ps_->value(i);
      double lr_i = rel * g.lr_multiplier;
      if (o_.scale_parameter) lr_i *= std::max(o_.eps2, std::sqrt(ops<B>::sum_squares(ConstView<B, T>(p)) / double(n)));
      const bool f = factored(e.shape);
      const index_t R = f ? e.shape[0] : n, C = f ? n / R : 0;
      const Shape shape = f ? Shape{R, C} : Shape{n};
      auto v = v_.view();
      ops<B>::adafactor_update(p.reshape(shape), ConstView<B, T>(ps_->grad(i)).reshape(shape), v.slice(offsets_[i], offsets_[i] + R),
                               f ? v.slice(offsets_[i] + R, offsets_[i] + R + C) : TensorView<B, T>{},
                               o_.beta1 == 0 ? TensorView<B, T>{} : m_.view().slice(at, at + n).reshape(shape),
                               scratch_.view().slice(0, n).reshape(shape), lr_i, beta2t, o_.eps1, o_.clip_threshold, o_.beta1,
                               g.weight_decay ? o_.weight_decay : 0.0);
    }
  }

  std::int64_t steps() const { return t_; }
  nn::ParamRange range() const { return range_; }
  void set_steps(std::int64_t t) { t_ = t; }
  // The moments, named for checkpoints (io::save_checkpoint's state tensors).
  std::vector<std::pair<std::string, TensorView<B, T>>> state() {
    std::vector<std::pair<std::string, TensorView<B, T>>> s{{"adafactor.v", v_.view()}};
    if (o_.beta1 > 0) s.push_back({"adafactor.m", m_.view()});
    return s;
  }

 private:
  // Matrices get factored moments (as transformers does for rank 2; plm's
  // parameters have rank 1 or 2, other ranks keep full moments).
  static bool factored(const Shape& s) { return s.rank() == 2; }

  nn::ParameterSet<B, T>* ps_;
  Options o_;
  std::vector<GroupSettings> groups_;
  nn::ParamRange range_;
  index_t base_ = 0;  // flat offset of the range's first parameter
  std::vector<index_t> offsets_;
  Tensor<B, T> v_, m_, scratch_;
  std::int64_t t_ = 0;
};

}  // namespace plm::optim
