#pragma once
// Learning-rate schedules: linear warm-up from 0, then constant, linear or
// cosine decay to final_fraction * lr at total_steps, or inverse square root.
#include <cmath>
#include <cstdint>
#include <string>

#include "plm/core/error.hpp"

namespace plm::optim {

struct LRSchedule {
  enum class Kind { constant, linear, cosine, inverse_sqrt };
  double lr = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  Kind kind = Kind::linear;
  double final_fraction = 0.0;  // linear / cosine end at lr * final_fraction

  static Kind parse(const std::string& name) {
    if (name == "constant") return Kind::constant;
    if (name == "linear") return Kind::linear;
    if (name == "cosine") return Kind::cosine;
    if (name == "inverse-sqrt") return Kind::inverse_sqrt;
    PLM_FAIL("LRSchedule: unknown schedule '", name, "' (constant, linear, cosine, inverse-sqrt)");
  }

  // Learning rate for optimizer step `step` (1-based: the first update is step 1).
  double at(std::int64_t step) const {
    PLM_CHECK(step >= 1, "LRSchedule: step ", step, " must be >= 1");
    if (step <= warmup_steps) return lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    const double after = static_cast<double>(step - warmup_steps);
    const double span = static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps));
    const double frac = std::min(1.0, after / span);
    switch (kind) {
      case Kind::constant: return lr;
      case Kind::linear: return lr * (1 - (1 - final_fraction) * frac);
      case Kind::cosine: return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + std::cos(3.141592653589793 * frac)));
      case Kind::inverse_sqrt:
        return lr * std::sqrt(static_cast<double>(std::max<std::int64_t>(warmup_steps, 1)) /
                              static_cast<double>(std::max<std::int64_t>(step, 1)));
    }
    return lr;
  }
};

}  // namespace plm::optim
