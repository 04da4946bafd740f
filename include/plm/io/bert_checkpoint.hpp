#pragma once
// Hugging Face BERT checkpoints (BertForMaskedLM: Rostlab/prot_bert, ...)
// <-> plm::nn::BertModel.
//
// config.json maps to nn::BertConfig by transformers' BertConfig names; a field
// that is absent takes BertConfig's default. Rostlab/prot_bert's file has no
// model_type, so a config without one is read when its architectures name a
// Bert class. Weights map by name, with the spellings transformers itself
// reads: LayerNorm `gamma` / `beta`, the logits' bias stored as
// `cls.predictions.decoder.bias` (its tied alias). File tensors that are not
// part of BertForMaskedLM are ignored, as from_pretrained drops them: the
// pooler (`bert.pooler.*`, which BertModel has and BertForMaskedLM does not),
// the next-sentence head (`cls.seq_relationship.*`, BertForPreTraining's), the
// `bert.embeddings.position_ids` buffer older versions stored, and, with tied
// embeddings, a stored copy of the decoder (`cls.predictions.decoder.weight`).
// Saving writes what transformers 5's save_pretrained writes.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/io/hf_config.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/nn/bert.hpp"

namespace plm::io {

// Reads a BERT config.json (model_type "bert") and validates it.
inline nn::BertConfig read_bert_config(const std::string& path) {
  const nlohmann::json j = detail::read_config_object(path);
  const detail::ConfigFields f(j, path);
  if (f.has("model_type")) {
    std::string model_type;
    f.string("model_type", model_type);
    PLM_CHECK(model_type == "bert", "config: ", path, ": field 'model_type' is '", model_type, "', expected 'bert'");
  } else {
    bool bert_class = false;
    if (j.contains("architectures") && j.at("architectures").is_array())
      for (const auto& a : j.at("architectures")) bert_class = bert_class || (a.is_string() && a.get<std::string>().rfind("Bert", 0) == 0);
    PLM_CHECK(bert_class, "config: ", path, ": field 'model_type' is missing and 'architectures' names no Bert class (expected a BERT config)");
  }
  bool decoder = false, cross = false;
  f.boolean("is_decoder", decoder);
  f.boolean("add_cross_attention", cross);
  PLM_CHECK(!decoder && !cross, "config: ", path, ": is_decoder / add_cross_attention: plm builds BERT as the bidirectional encoder only");

  nn::BertConfig c;  // transformers' BertConfig defaults, for fields the file leaves out
  f.integer("vocab_size", c.vocab_size);
  f.integer("hidden_size", c.hidden_size);
  f.integer("num_hidden_layers", c.num_hidden_layers);
  f.integer("num_attention_heads", c.num_attention_heads);
  f.integer("intermediate_size", c.intermediate_size);
  f.string("hidden_act", c.hidden_act);
  if (f.has("hidden_dropout_prob")) f.number("hidden_dropout_prob", c.hidden_dropout_prob);
  if (f.has("attention_probs_dropout_prob")) f.number("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  f.integer("max_position_embeddings", c.max_position_embeddings);
  f.integer("type_vocab_size", c.type_vocab_size);
  f.number("initializer_range", c.initializer_range);
  f.number("layer_norm_eps", c.layer_norm_eps);
  if (j.contains("pad_token_id") && j.at("pad_token_id").is_null()) c.pad_token_id = -1;
  else f.integer("pad_token_id", c.pad_token_id);
  if (f.has("position_embedding_type")) f.string("position_embedding_type", c.position_embedding_type);
  f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  c.validate("config: " + path);
  return c;
}

// Writes c as the config.json of a BertForMaskedLM (atomically).
inline void write_bert_config(const nn::BertConfig& c, const std::string& path) {
  c.validate("config: " + path);
  const nlohmann::json j = {
      {"architectures", nlohmann::json::array({"BertForMaskedLM"})},
      {"model_type", "bert"},
      {"torch_dtype", "float32"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"intermediate_size", c.intermediate_size},
      {"hidden_act", c.hidden_act},
      {"hidden_dropout_prob", c.hidden_dropout_prob},
      {"attention_probs_dropout_prob", c.attention_probs_dropout_prob},
      {"max_position_embeddings", c.max_position_embeddings},
      {"type_vocab_size", c.type_vocab_size},
      {"initializer_range", c.initializer_range},
      {"layer_norm_eps", c.layer_norm_eps},
      {"pad_token_id", c.pad_token_id >= 0 ? nlohmann::json(c.pad_token_id) : nlohmann::json(nullptr)},
      {"position_embedding_type", c.position_embedding_type},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"is_decoder", false},
      {"add_cross_attention", false},
  };
  const std::string text = j.dump(2) + "\n";
  write_file_atomically(path, [&](AtomicFile& f) { f.write(text); });
}

// BERT's names in files (see the top of this header). `tied`: the model's
// tie_word_embeddings; with encoder_only, the MLM head (cls.*) is ignored too.
inline WeightNames bert_weight_names(bool tied, bool encoder_only = false) {
  WeightNames w;
  w.candidates = [tied](const std::string& n) {
    std::vector<std::string> c = layer_norm_candidates(n);
    if (tied && n == "cls.predictions.bias") c.push_back("cls.predictions.decoder.bias");
    // a file whose decoder bias was saved only under its tied alias (transformers 4)
    if (!tied && n == "cls.predictions.decoder.bias") c.push_back("cls.predictions.bias");
    return c;
  };
  w.ignored = [tied, encoder_only](const std::string& n) {
    const auto starts = [&](const char* p) { return n.rfind(p, 0) == 0; };
    return (encoder_only && starts("cls.")) || starts("bert.pooler.") || starts("cls.seq_relationship.") || n == "bert.embeddings.position_ids" ||
           (tied && n == "cls.predictions.decoder.weight");
  };
  return w;
}

// config.json of a BERT checkpoint directory.
inline nn::BertConfig read_bert_dir_config(const std::string& dir) {
  return read_bert_config(detail::config_json_of(dir, "BERT "));
}

// Fills a model's own parameters (its param_range()) from a BERT directory; an
// encoder-only model (nn::encoder_only) takes the encoder of a full checkpoint.
template <class Model>
void load_bert_weights(Model& m, const std::string& dir) {
  load_parameters(m.params(), dir, bert_weight_names(m.config().tie_word_embeddings, !m.has_lm_head()), m.param_range());
}

// Builds Model (e.g. nn::BertModel<cpu, float>) from a BERT checkpoint directory.
template <class Model>
Model load_bert(const std::string& dir) {
  Model m(read_bert_dir_config(dir), nn::uninitialized);
  load_bert_weights(m, dir);
  return m;
}

// Writes config.json and model.safetensors into dir (created if needed),
// loadable by transformers' BertForMaskedLM.from_pretrained. With tied
// embeddings the decoder is not written (transformers ties it on loading).
template <class Stored = float, class Model>
void save_bert(const Model& m, const std::string& dir) {
  detail::save_model_dir<Stored>(m, dir, "save_bert", [&](const std::string& path) { write_bert_config(m.config(), path); });
}

}  // namespace plm::io
