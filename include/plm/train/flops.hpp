#pragma once
// FLOP counts for throughput and utilisation figures.
//
// A training step costs about 6 FLOPs per weight per token that passes through
// that weight (2 forward, 4 backward), so the count sums over encoder tokens and
// decoder tokens separately (6 x N_total x (S + T) would count every weight for
// both and overstate the work about 2x). Attention score and context products
// add 12 x Tq x Tk x (H d_kv) per layer and sequence (4 forward, 8 backward).
// Embedding lookups are gathers, not matrix products, and are not counted.
#include "plm/nn/config.hpp"

namespace plm::train {

struct T5StepFlops {
  double encoder_weights = 0, decoder_weights = 0, attention = 0;
  double total() const { return encoder_weights + decoder_weights + attention; }
};

// batch sequences, src_len encoder tokens and tgt_len decoder tokens each (padding included).
inline T5StepFlops t5_training_flops(const nn::T5Config& c, double batch, double src_len, double tgt_len, bool gated = true) {
  const double d = static_cast<double>(c.d_model), inner = static_cast<double>(c.inner_dim()), ff = static_cast<double>(c.d_ff);
  const double ffn = (gated ? 3.0 : 2.0) * d * ff;
  const double Le = static_cast<double>(c.num_layers), Ld = static_cast<double>(c.num_decoder_layers);
  T5StepFlops f;
  // encoder tokens: every encoder layer, plus the cross-attention K and V projections of every decoder layer
  f.encoder_weights = 6.0 * batch * src_len * (Le * (4 * d * inner + ffn) + Ld * 2 * d * inner);
  // decoder tokens: self-attention, cross-attention Q and O, FFN per layer, then the LM head
  if (c.num_decoder_layers > 0)
    f.decoder_weights = 6.0 * batch * tgt_len * (Ld * (4 * d * inner + 2 * d * inner + ffn) + d * static_cast<double>(c.vocab_size));
  f.attention = 12.0 * batch * inner * (Le * src_len * src_len + Ld * (tgt_len * tgt_len + tgt_len * src_len));
  return f;
}

}  // namespace plm::train
