#pragma once
// Dropout driven by Philox: a call is keyed by (seed, stream), so the backward
// regenerates the forward's mask instead of storing it, and every backend drops
// the same elements. A model gives each dropout site its own stream and each
// forward pass its own seed.
//
// Dropout acts only in a training pass (Pass::train(seed)); the default pass is
// Pass::eval(), in which every dropout site is the identity, as in transformers'
// model.eval(). Embedding, scoring and generation therefore never drop anything,
// whatever the config's dropout_rate.
#include <cstdint>

#include "plm/core/error.hpp"

#include "plm/backend/ops.hpp"

namespace plm::nn {

// Where a dropout site sits in a model. The names give every site of every
// layer its own Philox stream, and the fields are packed into disjoint bit
// ranges, so no two sites can share a stream at any depth:
//
//   bits 56-63  stack   DropoutStack (encoder, decoder; none outside a stack)
//   bits 24-55  layer   0 = the stack's own sites, i + 1 = layer i (< 2^32 - 1 layers)
//   bits 12-23  block   DropoutBlock: the sub-block of a layer
//   bits  0-11  site    the site within a block (DropoutSite)
enum class DropoutStack : std::uint8_t { none = 0, encoder = 1, decoder = 2 };
enum class DropoutBlock : std::uint16_t {
  stack = 0,  // the stack's own sites (embeddings, output)
  self_attention = 1,
  self_attention_residual = 2,
  cross_attention = 3,
  cross_attention_residual = 4,
  feed_forward = 5,
  feed_forward_residual = 6,
};
enum class DropoutSite : std::uint16_t {
  main = 0,        // the only site of a block (attention probabilities, feed-forward hidden, residual branch)
  embeddings = 0,  // stack block: dropout on the embeddings
  output = 1,      // stack block: dropout after the final norm
};

// How a forward pass runs: eval (the default; no dropout) or training with the
// pass's dropout seed (derive it from the step, so a resumed run drops the same).
struct Pass {
  bool training = false;
  std::uint64_t seed = 0;
  static constexpr Pass eval() { return {}; }
  static constexpr Pass train(std::uint64_t seed) { return {true, seed}; }
};

// Identifies one dropout site in one forward pass.
struct DropoutKey {
  static constexpr std::uint64_t max_layers = (std::uint64_t(1) << 32) - 2;

  std::uint64_t seed = 0;  // per forward pass (e.g. derived from the step)
  bool training = false;   // false: every site is the identity
  DropoutStack stack = DropoutStack::none;
  std::uint32_t layer = 0;  // 0 = stack level, i + 1 = layer i
  DropoutBlock block = DropoutBlock::stack;
  DropoutSite site = DropoutSite::main;

  DropoutKey in_stack(DropoutStack s) const {
    DropoutKey k = *this;
    k.stack = s;
    return k;
  }
  DropoutKey in_layer(std::uint64_t i) const {
    PLM_CHECK(i < max_layers, "DropoutKey: layer ", i, " beyond the ", max_layers, " layers a stream id can name");
    DropoutKey k = *this;
    k.layer = static_cast<std::uint32_t>(i + 1);
    return k;
  }
  DropoutKey in_block(DropoutBlock b) const {
    DropoutKey k = *this;
    k.block = b;
    return k;
  }
  DropoutKey at(DropoutSite s) const {
    DropoutKey k = *this;
    k.site = s;
    return k;
  }
  static constexpr DropoutKey of(Pass p) {
    DropoutKey k;
    k.seed = p.seed;
    k.training = p.training;
    return k;
  }
  // The Philox stream of this site.
  std::uint64_t stream() const {
    return (std::uint64_t(stack) << 56) | (std::uint64_t(layer) << 24) | (std::uint64_t(block) << 12) | std::uint64_t(site);
  }
};

struct Dropout {
  double p = 0;  // drop probability; 0 = identity
  // Whether this site drops anything in the pass of `key`.
  bool active(const DropoutKey& key) const { return p > 0 && key.training; }

  // y = dropout(x) at the site `key`; outside training (or with p == 0) a copy,
  // or nothing when y aliases x.
  template <class B, class T>
  void forward(ConstView<B, T> x, TensorView<B, T> y, const DropoutKey& key) const {
    if (active(key)) ops<B>::dropout(x, y, static_cast<T>(p), key.seed, key.stream());
    else if (x.data() != y.data()) ops<B>::copy(x, y);
  }
  template <class B, class T>
  void backward(ConstView<B, T> dy, TensorView<B, T> dx, const DropoutKey& key) const {
    if (active(key)) ops<B>::dropout_backward(dy, dx, static_cast<T>(p), key.seed, key.stream());
    else if (dy.data() != dx.data()) ops<B>::copy(dy, dx);
  }
};

}  // namespace plm::nn
