#pragma once
// T5Config: the runtime sizes of a T5-family encoder-decoder, named as in
// Hugging Face's T5Config / config.json so a checkpoint's config maps one to one.
//
// Structure that changes the generated code (activation, gating, norm, position
// scheme) is a compile-time policy of the model type; `feed_forward_proj` here
// records what a config file says so the model can refuse a mismatch.
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "plm/core/error.hpp"
#include "plm/core/shape.hpp"

namespace plm::nn {

struct T5Config {
  static constexpr index_t max_layers = (index_t(1) << 32) - 2;  // what a dropout stream id can name (nn::DropoutKey)

  // Sane bounds, generous but finite: far above any published T5 / Ankh model,
  // low enough that no size product overflows and a bad config.json is refused
  // by name instead of failing an allocation. validate() and io::read_t5_config check them.
  struct Limit {
    const char* name;
    index_t T5Config::*field;
    index_t lo, hi;
  };
  static constexpr index_t max_width = index_t(1) << 20;       // d_model, d_kv, d_ff, d_kv * num_heads
  static constexpr index_t max_vocab = index_t(1) << 24;
  static constexpr index_t max_heads = 4096;
  static constexpr index_t max_depth = 1024;                   // encoder and decoder layers, each
  static constexpr index_t max_buckets = index_t(1) << 16;     // relative_attention_num_buckets
  static constexpr index_t max_distance = index_t(1) << 30;    // relative_attention_max_distance
  static constexpr index_t max_parameters = index_t(1) << 40;  // also any single weight matrix
  static constexpr std::array<Limit, 9> limits() {
    return {{{"vocab_size", &T5Config::vocab_size, 1, max_vocab},
             {"d_model", &T5Config::d_model, 1, max_width},
             {"d_kv", &T5Config::d_kv, 1, max_width},
             {"d_ff", &T5Config::d_ff, 1, max_width},
             {"num_heads", &T5Config::num_heads, 1, max_heads},
             {"num_layers", &T5Config::num_layers, 1, max_depth},
             {"num_decoder_layers", &T5Config::num_decoder_layers, 0, max_depth},
             {"relative_attention_num_buckets", &T5Config::relative_attention_num_buckets, 4, max_buckets},
             {"relative_attention_max_distance", &T5Config::relative_attention_max_distance, 1, max_distance}}};
  }

  index_t vocab_size = 256;
  index_t d_model = 512;
  index_t d_kv = 64;  // per-head width; d_kv * num_heads need not equal d_model
  index_t d_ff = 1024;
  index_t num_heads = 8;
  index_t num_layers = 6;          // encoder layers
  index_t num_decoder_layers = 6;  // 0 = encoder-only
  index_t relative_attention_num_buckets = 32;
  index_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  double dropout_rate = 0.0;
  double initializer_factor = 1.0;
  // tied: the LM head reuses `shared` (no lm_head.weight of its own).
  bool tie_word_embeddings = false;
  // Whether the decoder output is multiplied by d_model^-0.5 before the LM head
  // (original T5). Unset: as tie_word_embeddings, the convention of transformers 4
  // (and of transformers 5 for a config.json without the key). Ankh and T5 v1.1
  // are untied and unscaled.
  std::optional<bool> scale_decoder_outputs;
  std::string feed_forward_proj = "gated-gelu";  // "gated-gelu", "gated-silu", "relu", "gelu", ...
  std::int32_t pad_token_id = 0;
  std::int32_t eos_token_id = 1;
  std::int32_t decoder_start_token_id = 0;

  index_t inner_dim() const { return d_kv * num_heads; }
  bool scales_decoder_outputs() const { return scale_decoder_outputs.value_or(tie_word_embeddings); }

  // Raises plm::Error naming the first field that makes no sense.
  void validate() const {
    for (const Limit& l : limits()) {
      const index_t v = this->*l.field;
      if (l.lo == 1) PLM_CHECK(v > 0, "T5Config: ", l.name, " must be positive, got ", v);
      PLM_CHECK(v >= l.lo && v <= l.hi, "T5Config: ", l.name, " = ", v, " is out of range [", l.lo, ", ", l.hi, "]");
    }
    // The bucket function divides by log(max_distance / max_exact), max_exact being num_buckets / 2 in the decoder.
    PLM_CHECK(relative_attention_max_distance > relative_attention_num_buckets / 2, "T5Config: relative_attention_max_distance ",
              relative_attention_max_distance, " must exceed relative_attention_num_buckets / 2 (", relative_attention_num_buckets / 2, ")");
    // Within the limits above no product below overflows 64 bits.
    PLM_CHECK(inner_dim() <= max_width, "T5Config: d_kv * num_heads = ", d_kv, " * ", num_heads, " = ", inner_dim(), " exceeds ", max_width);
    for (auto [name, n] : {std::pair{"vocab_size * d_model", vocab_size * d_model}, std::pair{"d_model * d_ff", d_model * d_ff},
                           std::pair{"d_model * d_kv * num_heads", d_model * inner_dim()}})
      PLM_CHECK(n <= max_parameters, "T5Config: ", name, " = ", n, " exceeds ", max_parameters, " (2^40) weights in one matrix");
    PLM_CHECK(parameter_count() <= max_parameters, "T5Config: ", parameter_count(), " parameters exceed 2^40 (vocab_size ", vocab_size,
              ", d_model ", d_model, ", d_ff ", d_ff, ", d_kv * num_heads ", inner_dim(), ", layers ", num_layers, " + ", num_decoder_layers, ")");
    PLM_CHECK(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0, "T5Config: layer_norm_epsilon must be positive, got ",
              layer_norm_epsilon);
    PLM_CHECK(dropout_rate >= 0 && dropout_rate < 1, "T5Config: dropout_rate must be in [0, 1), got ", dropout_rate);
    PLM_CHECK(std::isfinite(initializer_factor) && initializer_factor > 0, "T5Config: initializer_factor must be positive and finite, got ",
              initializer_factor);
    for (auto [name, id] : {std::pair{"pad_token_id", pad_token_id}, std::pair{"eos_token_id", eos_token_id},
                            std::pair{"decoder_start_token_id", decoder_start_token_id}})
      PLM_CHECK(id >= 0 && id < vocab_size, "T5Config: ", name, " ", id, " outside the vocabulary of ", vocab_size);
  }

  // Parameters of the model this config describes (embedding, attention,
  // feed-forward, norms, position bias tables, an untied LM head when there is a
  // decoder), as nn::T5Model registers them. Only call it for sizes within the
  // limits above: the products then fit in 64 bits.
  index_t parameter_count() const {
    const bool gated = feed_forward_proj.rfind("gated-", 0) == 0;
    const index_t attention = 4 * d_model * inner_dim(), ff = (gated ? 3 : 2) * d_model * d_ff;
    const index_t bias = relative_attention_num_buckets * num_heads;
    index_t n = vocab_size * d_model + num_layers * (attention + ff + 2 * d_model) + d_model + bias;
    if (num_decoder_layers > 0)
      n += num_decoder_layers * (2 * attention + ff + 3 * d_model) + d_model + bias + (tie_word_embeddings ? 0 : vocab_size * d_model);
    return n;
  }

  // --- presets --------------------------------------------------------------
  // Public Ankh-family configs (Hugging Face config.json of ElnaggarLab models).
  static T5Config ankh_base() {
    T5Config c;
    c.vocab_size = 144, c.d_model = 768, c.d_kv = 64, c.d_ff = 3072, c.num_heads = 12;
    c.num_layers = 48, c.num_decoder_layers = 24;
    c.relative_attention_num_buckets = 64, c.relative_attention_max_distance = 128;
    c.feed_forward_proj = "gated-gelu";
    return c;
  }
  static T5Config ankh_large() {
    T5Config c = ankh_base();
    c.d_model = 1536, c.d_ff = 3840, c.num_heads = 16;
    return c;
  }
  // Ankh3-large: 48 encoder layers, gated-silu, vocabulary 256. The decoder depth
  // is not published with the paper; 24 is the Ankh family's value.
  static T5Config ankh3_large() {
    T5Config c = ankh_large();
    c.vocab_size = 256;
    c.feed_forward_proj = "gated-silu";
    return c;
  }
  // Ankh3-XL: d_model 2560, 32 heads, 48 encoder layers. Its d_ff is not
  // confirmed publicly, so the caller states it (read it from the checkpoint's config.json).
  static T5Config ankh3_xl(index_t d_ff) {
    T5Config c = ankh3_large();
    c.d_model = 2560, c.num_heads = 32, c.d_ff = d_ff;
    return c;
  }
  // Small Ankh3-shaped configs: `tiny` for tests, `small` for CPU training runs.
  static T5Config ankh3_tiny() {
    T5Config c = ankh3_large();
    c.d_model = 32, c.d_kv = 8, c.d_ff = 48, c.num_heads = 4, c.num_layers = 2, c.num_decoder_layers = 2;
    c.relative_attention_num_buckets = 8, c.relative_attention_max_distance = 16;
    return c;
  }
  static T5Config ankh3_small() {
    T5Config c = ankh3_large();
    c.d_model = 256, c.d_kv = 32, c.d_ff = 640, c.num_heads = 8, c.num_layers = 4, c.num_decoder_layers = 2;
    c.relative_attention_num_buckets = 32, c.relative_attention_max_distance = 128;
    return c;
  }
  // By name: "ankh-base", "ankh-large", "ankh3-large", "ankh3-tiny", "ankh3-small".
  static T5Config preset(const std::string& name) {
    if (name == "ankh-base") return ankh_base();
    if (name == "ankh-large") return ankh_large();
    if (name == "ankh3-large") return ankh3_large();
    if (name == "ankh3-tiny") return ankh3_tiny();
    if (name == "ankh3-small") return ankh3_small();
    if (name == "ankh3-xl") PLM_FAIL("T5Config: preset ankh3-xl needs its d_ff: call T5Config::ankh3_xl(d_ff) or load its config.json");
    PLM_FAIL("T5Config: unknown preset '", name, "' (known: ankh-base, ankh-large, ankh3-large, ankh3-xl, ankh3-tiny, ankh3-small)");
  }
};

namespace detail {
// The checks every BERT-style config (transformers' names: EsmConfig,
// BertConfig) shares: sizes within C's bounds, heads that divide the width,
// the norm's epsilon, the init range and the dropout rates; each error names
// the key.
template <class C>
void validate_encoder_sizes(const C& c, const std::string& where) {
  const auto in = [&](const char* key, index_t v, index_t lo, index_t hi) {
    PLM_CHECK(v >= lo && v <= hi, where, ": ", key, " = ", v, " is outside [", lo, ", ", hi, "]");
  };
  in("vocab_size", c.vocab_size, 1, C::max_vocab);
  in("hidden_size", c.hidden_size, 1, C::max_width);
  in("num_hidden_layers", c.num_hidden_layers, 1, C::max_depth);
  in("num_attention_heads", c.num_attention_heads, 1, C::max_heads);
  in("intermediate_size", c.intermediate_size, 1, C::max_width);
  PLM_CHECK(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
            " is not a multiple of num_attention_heads ", c.num_attention_heads);
  PLM_CHECK(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0 && c.layer_norm_eps < 1, where, ": layer_norm_eps = ",
            c.layer_norm_eps, " must be in (0, 1)");
  PLM_CHECK(std::isfinite(c.initializer_range) && c.initializer_range > 0, where, ": initializer_range = ", c.initializer_range,
            " must be positive");
  for (const auto& [key, p] : {std::pair<const char*, double>{"hidden_dropout_prob", c.hidden_dropout_prob},
                               {"attention_probs_dropout_prob", c.attention_probs_dropout_prob}})
    PLM_CHECK(p >= 0 && p < 1, where, ": ", key, " = ", p, " must be in [0, 1)");
}
}  // namespace detail

}  // namespace plm::nn
