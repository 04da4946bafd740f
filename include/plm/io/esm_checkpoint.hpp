#pragma once
// Hugging Face ESM checkpoints (EsmForMaskedLM: facebook/esm2_t6_8M_UR50D, ...)
// <-> plm::nn::EsmModel.
//
// config.json maps to nn::EsmConfig by transformers' EsmConfig names; a field
// that is absent takes transformers' default. Weights map by name, with the
// spellings transformers itself reads: a LayerNorm's `weight` / `bias` may be
// stored as `gamma` / `beta` (transformers 5 writes those), and the rotary
// `inv_freq` buffers (per layer in published checkpoints, or
// `esm.rotary_embeddings.inv_freq`) are not parameters: plm computes the table;
// nor is the `esm.embeddings.position_ids` buffer beside ESM-1b's positions.
// Saving writes the names of the published checkpoints, which transformers 4
// and 5 both load.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/io/hf_config.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/nn/esm.hpp"

namespace plm::io {

// Reads an ESM config.json (model_type "esm") and validates it.
inline nn::EsmConfig read_esm_config(const std::string& path) {
  const nlohmann::json j = detail::read_config_object(path);
  const detail::ConfigFields f(j, path);
  std::string model_type;
  f.string("model_type", model_type);
  PLM_CHECK(model_type == "esm", "config: ", path, ": field 'model_type' is '", model_type, "', expected 'esm'");
  bool folding = false, decoder = false, cross = false;
  f.boolean("is_folding_model", folding);
  f.boolean("is_decoder", decoder);
  f.boolean("add_cross_attention", cross);
  PLM_CHECK(!folding, "config: ", path, ": an ESMFold model (is_folding_model) is not an ESM language model plm can build");
  PLM_CHECK(!decoder && !cross, "config: ", path, ": is_decoder / add_cross_attention: plm builds ESM as the bidirectional encoder only");

  nn::EsmConfig c;
  // transformers' EsmConfig defaults, for fields the file leaves out
  c.hidden_size = 768, c.num_hidden_layers = 12, c.num_attention_heads = 12, c.intermediate_size = 3072;
  c.hidden_dropout_prob = 0.1, c.attention_probs_dropout_prob = 0.1, c.max_position_embeddings = 1026;
  c.rope_theta = 10000.0, c.initializer_range = 0.02, c.layer_norm_eps = 1e-12;
  c.position_embedding_type = "absolute", c.token_dropout = false, c.tie_word_embeddings = true;
  PLM_CHECK(f.has("vocab_size"), "config: ", path, ": field 'vocab_size' is missing (transformers requires it for ESM)");
  f.integer("vocab_size", c.vocab_size);
  f.integer("hidden_size", c.hidden_size);
  f.integer("num_hidden_layers", c.num_hidden_layers);
  f.integer("num_attention_heads", c.num_attention_heads);
  f.integer("intermediate_size", c.intermediate_size);
  if (f.has("hidden_dropout_prob")) f.number("hidden_dropout_prob", c.hidden_dropout_prob);
  if (f.has("attention_probs_dropout_prob")) f.number("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  f.integer("max_position_embeddings", c.max_position_embeddings);
  f.number("rope_theta", c.rope_theta);
  f.number("initializer_range", c.initializer_range);
  if (f.has("layer_norm_eps")) f.number("layer_norm_eps", c.layer_norm_eps);
  if (f.has("position_embedding_type")) f.string("position_embedding_type", c.position_embedding_type);
  if (f.has("emb_layer_norm_before")) f.boolean("emb_layer_norm_before", c.emb_layer_norm_before);
  if (f.has("token_dropout")) f.boolean("token_dropout", c.token_dropout);
  f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  PLM_CHECK(!c.token_dropout || f.has("mask_token_id"), "config: ", path, ": token_dropout needs 'mask_token_id'");
  if (f.has("mask_token_id")) f.integer("mask_token_id", c.mask_token_id);
  if (f.has("pad_token_id")) f.integer("pad_token_id", c.pad_token_id);
  c.validate("config: " + path);
  return c;
}

// Writes c as the config.json of an EsmForMaskedLM (atomically).
inline void write_esm_config(const nn::EsmConfig& c, const std::string& path) {
  c.validate("config: " + path);
  const nlohmann::json j = {
      {"architectures", nlohmann::json::array({"EsmForMaskedLM"})},
      {"model_type", "esm"},
      {"torch_dtype", "float32"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"intermediate_size", c.intermediate_size},
      {"hidden_act", "gelu"},
      {"hidden_dropout_prob", c.hidden_dropout_prob},
      {"attention_probs_dropout_prob", c.attention_probs_dropout_prob},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rope_theta", c.rope_theta},
      {"initializer_range", c.initializer_range},
      {"layer_norm_eps", c.layer_norm_eps},
      {"position_embedding_type", c.position_embedding_type},
      {"emb_layer_norm_before", c.emb_layer_norm_before},
      {"token_dropout", c.token_dropout},
      {"mask_token_id", c.mask_token_id},
      {"pad_token_id", c.pad_token_id},
      {"cls_token_id", 0},
      {"eos_token_id", 2},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"is_folding_model", false},
  };
  const std::string text = j.dump(2) + "\n";
  write_file_atomically(path, [&](AtomicFile& f) { f.write(text); });
}

// ESM's names in files: LayerNorm weight / bias also as gamma / beta; rotary
// inv_freq buffers ignored; with encoder_only, the LM and contact heads too.
inline WeightNames esm_weight_names(bool encoder_only = false) {
  WeightNames w;
  w.candidates = layer_norm_candidates;
  w.ignored = [encoder_only](const std::string& n) {
    const std::string s = "rotary_embeddings.inv_freq";
    if (n == "esm.embeddings.position_ids") return true;  // a buffer older transformers stored, not a parameter
    if (encoder_only && (n.rfind("lm_head.", 0) == 0 || n.rfind("esm.contact_head.", 0) == 0)) return true;
    return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  return w;
}

// config.json of an ESM checkpoint directory.
inline nn::EsmConfig read_esm_dir_config(const std::string& dir) {
  return read_esm_config(detail::config_json_of(dir, "ESM "));
}

// Fills a model's own parameters (its param_range()) from an ESM directory; an
// encoder-only model (nn::encoder_only) takes the encoder of a full checkpoint.
template <class Model>
void load_esm_weights(Model& m, const std::string& dir) {
  load_parameters(m.params(), dir, esm_weight_names(!m.has_lm_head()), m.param_range());
}

// Builds Model (e.g. nn::EsmModel<cpu, float>) from an ESM checkpoint directory.
template <class Model>
Model load_esm(const std::string& dir) {
  Model m(read_esm_dir_config(dir), nn::uninitialized);
  load_esm_weights(m, dir);
  return m;
}

// Writes config.json and model.safetensors into dir (created if needed),
// loadable by transformers' EsmForMaskedLM.from_pretrained. With tied
// embeddings the decoder is not written (transformers ties it on loading).
template <class Stored = float, class Model>
void save_esm(const Model& m, const std::string& dir) {
  detail::save_model_dir<Stored>(m, dir, "save_esm", [&](const std::string& path) { write_esm_config(m.config(), path); });
}

}  // namespace plm::io
