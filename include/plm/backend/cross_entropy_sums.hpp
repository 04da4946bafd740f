#pragma once
// What ops<B>::cross_entropy returns and its optional per-row arguments,
// shared by every backend.
#include <cstdint>

#include "plm/core/tensor.hpp"

namespace plm {

// Sums over the rows whose target is not ignored.
struct CrossEntropySums {
  double loss = 0;         // sum of per-row losses (with label smoothing if any)
  double nll = 0;          // sum of -log p(target), without smoothing
  std::int64_t count = 0;  // rows that count
  std::int64_t correct = 0;  // rows whose argmax equals the target
};

// Optional per-row inputs and outputs of cross_entropy (empty views = unused).
template <class B, class T>
struct CrossEntropyRows {
  TensorView<B, const T> grad_scale;       // (rows): per-row gradient scale, replacing the scalar one
  TensorView<B, T> loss;                   // (rows) out: each row's loss, 0 where ignored
  TensorView<B, std::uint8_t> correct;     // (rows) out: 1 where argmax == target
};

}  // namespace plm
