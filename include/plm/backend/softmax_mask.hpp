#pragma once
// Optional parts of a masked softmax, shared by every backend's ops.
#include <cstdint>

#include "plm/backend/tags.hpp"
#include "plm/core/packing.hpp"
#include "plm/core/tensor.hpp"

namespace plm {

// logits = scale * scores + bias, then positions hidden by key_valid or the
// causal rule are excluded from the softmax (probability exactly 0). A row with
// no visible key gets all-zero probabilities instead of NaN.
template <class B, class T>
struct SoftmaxMask {
  TensorView<B, const T> bias;                   // (H, Tq, Tk) shared by the batch, or (B, H, Tq, Tk); empty = none
  TensorView<B, const std::uint8_t> key_valid;   // (B, Tk): 1 attend, 0 padding; empty = all valid
  bool causal = false;                           // key j visible to query i iff j <= i + (Tk - Tq)
  T scale = T(1);                                // T5 does not scale scores; 1/sqrt(d) for other models
  // Packed queries and keys (core/packing.hpp): attention layers split the work
  // per sequence, and bias then holds the per-sequence blocks (H, Lq_i, Lk_i)
  // end to end. The softmax op itself takes one block at a time.
  const AttentionPacking* packed = nullptr;
};

}  // namespace plm
