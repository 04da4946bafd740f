#pragma once
// Dropout driven by Philox: a call is keyed by (seed, stream), so the backward
// regenerates the forward's mask instead of storing it, and every backend drops
// the same elements. A model gives each dropout site its own stream and each
// forward pass its own seed.
#include <cstdint>

#include "plm/backend/cpu/ops.hpp"

namespace plm::nn {

struct Dropout {
  double p = 0;  // drop probability; 0 = identity
  bool active() const { return p > 0; }

  // y = dropout(x); with p == 0 a copy (or nothing when y aliases x).
  template <class B, class T>
  void forward(ConstView<B, T> x, TensorView<B, T> y, std::uint64_t seed, std::uint64_t stream) const {
    if (active()) ops<B>::dropout(x, y, static_cast<T>(p), seed, stream);
    else if (x.data() != y.data()) ops<B>::copy(x, y);
  }
  template <class B, class T>
  void backward(ConstView<B, T> dy, TensorView<B, T> dx, std::uint64_t seed, std::uint64_t stream) const {
    if (active()) ops<B>::dropout_backward(dy, dx, static_cast<T>(p), seed, stream);
    else if (dy.data() != dx.data()) ops<B>::copy(dy, dx);
  }
};

// Identifies one dropout site in one forward pass.
struct DropoutKey {
  std::uint64_t seed = 0;    // per forward pass (e.g. derived from the step)
  std::uint64_t stream = 0;  // per site: layer index and position in the layer
  DropoutKey at(std::uint64_t site) const { return DropoutKey{seed, stream * 64 + site}; }
};

}  // namespace plm::nn
