#pragma once
// Token-level cross-entropy with an ignore index and optional label smoothing,
// its gradient fused into the same pass over the logits.
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/backend/ops.hpp"

namespace plm::objectives {

struct CrossEntropyResult {
  double loss = 0;             // mean over counted tokens (with smoothing)
  double nll = 0;              // mean -log p(target), without smoothing
  std::int64_t tokens = 0;     // counted (non-ignored) tokens
  std::int64_t correct = 0;    // argmax == target
  double accuracy() const { return tokens ? static_cast<double>(correct) / static_cast<double>(tokens) : 0.0; }
};

template <class B, class T>
class CrossEntropy {
 public:
  explicit CrossEntropy(std::int32_t ignore_index = -100, double label_smoothing = 0.0)
      : ignore_index_(ignore_index), label_smoothing_(label_smoothing) {}

  std::int32_t ignore_index() const { return ignore_index_; }

  // logits: (..., V); targets: (...). Returns the mean over non-ignored tokens.
  // When dlogits is given (same shape as logits, may alias it) it is WRITTEN
  // with weight * d loss / d logits. A batch with no counted token gives loss 0
  // and zero gradient. A non-finite loss raises plm::Error (it would poison
  // every parameter at the next update).
  CrossEntropyResult operator()(ConstView<B, T> logits, ConstView<B, std::int32_t> targets, TensorView<B, T> dlogits = {},
                                double weight = 1.0) const {
    host_targets_.resize(static_cast<std::size_t>(targets.numel()));
    download(targets, host_targets_.data());
    std::int64_t n = 0;
    for (std::int32_t t : host_targets_) n += t != ignore_index_;
    const T scale = n ? static_cast<T>(weight / static_cast<double>(n)) : T(0);
    const CrossEntropySums s = ops<B>::cross_entropy(logits, targets, ignore_index_, static_cast<T>(label_smoothing_), dlogits, scale);
    CrossEntropyResult r;
    r.tokens = s.count;
    r.correct = s.correct;
    if (s.count) {
      r.loss = s.loss / static_cast<double>(s.count);
      r.nll = s.nll / static_cast<double>(s.count);
    }
    PLM_CHECK(std::isfinite(r.loss), "CrossEntropy: loss is ", r.loss, " over ", s.count, " tokens of logits ", logits.shape(),
              ops<B>::all_finite(logits) ? "" : " (the logits contain NaN or infinity)");
    return r;
  }

 private:
  std::int32_t ignore_index_;
  double label_smoothing_;
  mutable std::vector<std::int32_t> host_targets_;
};

}  // namespace plm::objectives
