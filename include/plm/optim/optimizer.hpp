#pragma once
// One optimizer type for a training loop: AdamW or Adafactor, chosen at run
// time (a command-line option, a config), behind the same step / state /
// steps interface, so a loop never branches on which one it holds.
//
//   auto opt = optim::make_optimizer<B, float>("adamw", ps, {/*weight_decay=*/0.01}, groups);
//   ... backward ...; optim::clip_grad_norm(ps, 1.0); opt.step(schedule.at(step)); ps.zero_grad();
//   io::save_checkpoint(path, ps, opt.named_state(), ts);
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "plm/io/checkpoint.hpp"
#include "plm/optim/adafactor.hpp"
#include "plm/optim/adamw.hpp"

namespace plm::optim {

enum class OptimizerKind {
  adamw,               // torch.optim.AdamW, lr from the caller's schedule
  adafactor,           // Adafactor with the caller's lr (relative_step and scale_parameter off)
  adafactor_relative,  // Adafactor with its own step size min(1e-2, 1/sqrt(t)) and parameter scaling
};

inline const char* optimizer_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::adamw: return "adamw";
    case OptimizerKind::adafactor: return "adafactor";
    case OptimizerKind::adafactor_relative: return "adafactor-relative";
  }
  return "?";
}

inline OptimizerKind parse_optimizer_kind(const std::string& name) {
  for (auto k : {OptimizerKind::adamw, OptimizerKind::adafactor, OptimizerKind::adafactor_relative})
    if (name == optimizer_name(k)) return k;
  PLM_FAIL("optimizer: unknown '", name, "' (adamw, adafactor, adafactor-relative)");
}

struct OptimizerOptions {
  double weight_decay = 0.01;                      // decoupled, both optimizers
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW only; Adafactor keeps its own defaults
};

template <class B, class T>
class Optimizer {
 public:
  using State = std::vector<std::pair<std::string, TensorView<B, T>>>;

  // range: the parameters it updates and keeps state for (every one by
  // default; a rank's shard under ZeRO-1, dist::DataParallel::optimizer_range()).
  Optimizer(OptimizerKind kind, nn::ParameterSet<B, T>& params, OptimizerOptions o = {}, const ParamGroups& groups = {},
            std::optional<nn::ParamRange> range = {})
      : kind_(kind) {
    PLM_CHECK(params.allocated(), "Optimizer: the parameter set must be allocated before the optimizer is made");
    if (kind == OptimizerKind::adamw) {
      impl_.template emplace<AdamW<B, T>>(params, typename AdamW<B, T>::Options{o.beta1, o.beta2, o.eps, o.weight_decay}, groups, range);
    } else {
      typename Adafactor<B, T>::Options ao;
      ao.weight_decay = o.weight_decay;
      ao.relative_step = kind == OptimizerKind::adafactor_relative;
      ao.scale_parameter = ao.relative_step;
      impl_.template emplace<Adafactor<B, T>>(params, ao, groups, range);
    }
  }

  OptimizerKind kind() const { return kind_; }
  const char* name() const { return optimizer_name(kind_); }
  // One update with base learning rate lr (adafactor-relative ignores it).
  void step(double lr) {
    std::visit([&](auto& o) { if constexpr (!std::is_same_v<std::decay_t<decltype(o)>, std::monostate>) o.step(lr); }, impl_);
  }
  std::int64_t steps() const {
    return std::visit([](const auto& o) -> std::int64_t {
      if constexpr (std::is_same_v<std::decay_t<decltype(o)>, std::monostate>) return 0;
      else return o.steps();
    }, impl_);
  }
  // After a resume: the step count the bias corrections and schedules continue from.
  void set_steps(std::int64_t t) {
    std::visit([&](auto& o) { if constexpr (!std::is_same_v<std::decay_t<decltype(o)>, std::monostate>) o.set_steps(t); }, impl_);
  }
  // The moments, named ("adamw.m", "adafactor.v", ...).
  State state() {
    return std::visit([](auto& o) -> State {
      if constexpr (std::is_same_v<std::decay_t<decltype(o)>, std::monostate>) return {};
      else return o.state();
    }, impl_);
  }
  // The moments as io::save_checkpoint / load_checkpoint state tensors.
  std::vector<io::NamedTensor<B, T>> named_state() {
    std::vector<io::NamedTensor<B, T>> s;
    for (auto& [name, view] : state()) s.push_back({name, view});
    return s;
  }

 private:
  OptimizerKind kind_;
  std::variant<std::monostate, AdamW<B, T>, Adafactor<B, T>> impl_;
};

// By name: "adamw", "adafactor" or "adafactor-relative".
template <class B, class T>
Optimizer<B, T> make_optimizer(const std::string& name, nn::ParameterSet<B, T>& params, OptimizerOptions o = {},
                               const ParamGroups& groups = {}, std::optional<nn::ParamRange> range = {}) {
  return Optimizer<B, T>(parse_optimizer_kind(name), params, o, groups, range);
}

}  // namespace plm::optim
