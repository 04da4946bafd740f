#pragma once
// Hugging Face T5 config.json <-> plm::nn::T5Config.
//
// The fields of T5Config carry the names of Hugging Face's T5Config, so the
// mapping is one to one. Reading follows transformers' T5Config constructor:
// a field that is absent takes its default there (which differs from some of
// plm's defaults: vocab_size 32128, d_ff 2048, dropout_rate 0.1,
// feed_forward_proj "relu", tie_word_embeddings true), num_decoder_layers
// absent or null means num_layers, and unknown keys are ignored.
//
// Tying and output scaling, as both transformers 4 and 5 write them:
// scale_decoder_outputs is the key when present (transformers 5), and
// otherwise equals tie_word_embeddings (transformers 4). transformers 5 writes
// "tie_word_embeddings": true for every T5 and decides tying by the weights;
// io::read_t5_dir_config does the same (io::resolve_tying). Writing puts both
// keys: "tie_word_embeddings" as the model is (so transformers 4 reads an
// untied model right) and "scale_decoder_outputs" (so transformers 5 does).
// decoder_start_token_id, which transformers leaves unset for T5, defaults to
// pad_token_id: T5 starts decoding from the pad token.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/io/atomic_file.hpp"
#include "plm/nn/config.hpp"

namespace plm::io {

namespace detail {

// feed_forward_proj -> (dense_act_fn, is_gated_act), split as transformers does:
// "gated-<act>" or "<act>"; "gated-gelu" keeps its historical "gelu_new".
struct T5Activation {
  std::string dense_act_fn;
  bool is_gated_act = false;
};
inline T5Activation t5_activation(const std::string& feed_forward_proj, const std::string& where) {
  std::vector<std::string> parts{""};
  for (char ch : feed_forward_proj) {
    if (ch == '-') parts.emplace_back();
    else parts.back() += ch;
  }
  const bool gated = parts.front() == "gated";
  if ((parts.size() > 1 && !gated) || parts.size() > 2 || parts.back().empty())
    PLM_FAIL("config: ", where, ": feed_forward_proj '", feed_forward_proj,
             "' is not of the form 'gated-<act>' or '<act>', e.g. 'gated-gelu' or 'relu'");
  if (feed_forward_proj == "gated-gelu") return {"gelu_new", true};
  return {parts.back(), gated};
}

// T5Config::validate, with the file named in the message.
inline void validate_config(const nn::T5Config& c, const std::string& path) {
  try {
    c.validate();
  } catch (const Error& e) {
    std::string inner = e.what();
    if (inner.rfind("plm: ", 0) == 0) inner.erase(0, 5);  // so that "plm: " leads the message once
    PLM_FAIL("config: ", path, ": ", inner);
  }
}

// Typed access to one optional field of a config object; errors name the file and the field.
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& j, const std::string& path) : j_(j), path_(path) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  template <class Int>
  void integer(const char* key, Int& out) const {
    if (!j_.contains(key)) return;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_number_integer()) fail(key, "an integer", v);
    const bool fits = v.is_number_unsigned()
                          ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<Int>::max())
                          : v.get<std::int64_t>() >= static_cast<std::int64_t>(std::numeric_limits<Int>::min());
    if (!fits) PLM_FAIL("config: ", path_, ": field '", key, "' value ", v.dump(), " is out of range");
    out = v.is_number_unsigned() ? static_cast<Int>(v.get<std::uint64_t>()) : static_cast<Int>(v.get<std::int64_t>());
  }
  void number(const char* key, double& out) const {
    if (!j_.contains(key)) return;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_number()) fail(key, "a number", v);
    out = v.get<double>();
  }
  void boolean(const char* key, bool& out) const {
    if (!j_.contains(key)) return;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_boolean()) fail(key, "true or false", v);
    out = v.get<bool>();
  }
  void string(const char* key, std::string& out) const {
    if (!j_.contains(key)) return;
    const nlohmann::json& v = j_.at(key);
    if (!v.is_string()) fail(key, "a string", v);
    out = v.get<std::string>();
  }

 private:
  [[noreturn]] void fail(const char* key, const char* expected, const nlohmann::json& v) const {
    std::string got = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (got.size() > 80) got = got.substr(0, 77) + "...";
    PLM_FAIL("config: ", path_, ": field '", key, "' must be ", expected, ", got ", v.type_name(), " ", got);
  }
  const nlohmann::json& j_;
  const std::string& path_;
};

// A config.json's top-level object, bounded before parsing (any model family).
inline nlohmann::json read_config_object(const std::string& path) {
  const JsonLimits limits{std::size_t{1} << 20, 32};  // a config.json is a few hundred bytes
  const InputFile file(path, "config");
  PLM_CHECK(file.size() <= limits.max_bytes, "config: ", path, ": ", file.size(), " bytes is far too large for a config.json (limit ",
            limits.max_bytes, ")");
  nlohmann::json j = parse_json(file.read_all(), "config", path, limits);
  PLM_CHECK(j.is_object(), "config: ", path, ": the top level must be a JSON object, got ", j.type_name());
  return j;
}

// The config.json of a checkpoint directory, after checking that dir is one;
// `family` ("", "ESM ", "BERT ") names what was expected in the error.
inline std::string config_json_of(const std::string& dir, const char* family = "") {
  namespace fs = std::filesystem;
  std::error_code ec;  // the non-throwing overload: a bare std::filesystem error would not say what was expected
  PLM_CHECK(fs::is_directory(dir, ec), dir, " is not a directory", ec ? " (" + ec.message() + ")" : std::string(),
            " (expected a Hugging Face ", family, "checkpoint: config.json and model.safetensors)");
  return (fs::path(dir) / "config.json").string();
}

}  // namespace detail

// The model_type of a checkpoint directory's config.json ("t5", "esm", "bert",
// ...): which family's loader a program hands the directory to.
inline std::string read_model_type(const std::string& dir) {
  const std::string path = detail::config_json_of(dir);
  const nlohmann::json j = detail::read_config_object(path);
  const auto it = j.find("model_type");
  if (it != j.end() && it->is_string()) return it->get<std::string>();
  // Older configs (ProtBert's) have none; their architectures name the family.
  const auto arch = j.find("architectures");
  if (arch != j.end() && arch->is_array())
    for (const auto& a : *arch)
      if (a.is_string() && a.get<std::string>().rfind("Bert", 0) == 0) return "bert";
  PLM_FAIL("config: ", path, ": no string field 'model_type', and no architectures that name a family (which model is this?)");
}

// Reads a Hugging Face T5 config.json (model_type "t5") and validates it.
inline nn::T5Config read_t5_config(const std::string& path) {
  const nlohmann::json j = detail::read_config_object(path);
  const detail::ConfigFields f(j, path);

  std::string model_type = "t5";
  f.string("model_type", model_type);
  PLM_CHECK(model_type == "t5", "config: ", path, ": field 'model_type' is '", model_type, "', expected 't5'");

  nn::T5Config c;
  // transformers' T5Config defaults, for fields the file leaves out.
  c.vocab_size = 32128, c.d_model = 512, c.d_kv = 64, c.d_ff = 2048, c.num_heads = 8, c.num_layers = 6;
  c.relative_attention_num_buckets = 32, c.relative_attention_max_distance = 128;
  c.layer_norm_epsilon = 1e-6, c.dropout_rate = 0.1, c.initializer_factor = 1.0;
  c.feed_forward_proj = "relu", c.tie_word_embeddings = true;
  c.pad_token_id = 0, c.eos_token_id = 1;

  f.integer("vocab_size", c.vocab_size);
  f.integer("d_model", c.d_model);
  f.integer("d_kv", c.d_kv);
  f.integer("d_ff", c.d_ff);
  f.integer("num_heads", c.num_heads);
  f.integer("num_layers", c.num_layers);
  c.num_decoder_layers = c.num_layers;
  if (f.has("num_decoder_layers")) f.integer("num_decoder_layers", c.num_decoder_layers);
  f.integer("relative_attention_num_buckets", c.relative_attention_num_buckets);
  f.integer("relative_attention_max_distance", c.relative_attention_max_distance);
  f.number("layer_norm_epsilon", c.layer_norm_epsilon);
  f.number("dropout_rate", c.dropout_rate);
  f.number("initializer_factor", c.initializer_factor);
  f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  // Output scaling: the key transformers 5 writes, or else (transformers 4, and
  // transformers 5 reading a file without the key) the same as tie_word_embeddings.
  bool scale = c.tie_word_embeddings;
  f.boolean("scale_decoder_outputs", scale);
  c.scale_decoder_outputs = scale;
  f.string("feed_forward_proj", c.feed_forward_proj);
  f.integer("pad_token_id", c.pad_token_id);
  f.integer("eos_token_id", c.eos_token_id);
  c.decoder_start_token_id = c.pad_token_id;
  f.integer("decoder_start_token_id", c.decoder_start_token_id);

  // Sizes against the sane bounds first, naming the field as the file spells it.
  for (const auto& l : nn::T5Config::limits()) {
    const index_t v = c.*l.field;
    PLM_CHECK(v >= l.lo && v <= l.hi, "config: ", path, ": field '", l.name, "' = ", v, " is out of range [", l.lo, ", ", l.hi, "]");
  }
  detail::t5_activation(c.feed_forward_proj, path);
  detail::validate_config(c, path);
  return c;
}

// Writes c as a Hugging Face config.json (atomically, like the safetensors
// writer): every T5Config field, plus what transformers derives or expects
// (model_type, architectures, is_encoder_decoder, dense_act_fn, is_gated_act,
// torch_dtype). encoder_only names the T5EncoderModel architecture; a config
// with no decoder layers must be written that way.
inline void write_t5_config(const nn::T5Config& c, const std::string& path, bool encoder_only = false) {
  detail::validate_config(c, path);
  PLM_CHECK(encoder_only || c.num_decoder_layers > 0, "config: ", path,
            ": the config has no decoder layers; write it with encoder_only = true");
  const detail::T5Activation act = detail::t5_activation(c.feed_forward_proj, path);

  nlohmann::json j = {
      {"architectures", nlohmann::json::array({encoder_only ? "T5EncoderModel" : "T5ForConditionalGeneration"})},
      {"model_type", "t5"},
      {"is_encoder_decoder", !encoder_only},
      {"torch_dtype", "float32"},
      {"vocab_size", c.vocab_size},
      {"d_model", c.d_model},
      {"d_kv", c.d_kv},
      {"d_ff", c.d_ff},
      {"num_heads", c.num_heads},
      {"num_layers", c.num_layers},
      {"num_decoder_layers", c.num_decoder_layers},
      {"relative_attention_num_buckets", c.relative_attention_num_buckets},
      {"relative_attention_max_distance", c.relative_attention_max_distance},
      {"layer_norm_epsilon", c.layer_norm_epsilon},
      {"dropout_rate", c.dropout_rate},
      {"initializer_factor", c.initializer_factor},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"scale_decoder_outputs", c.scales_decoder_outputs()},
      {"feed_forward_proj", c.feed_forward_proj},
      {"dense_act_fn", act.dense_act_fn},
      {"is_gated_act", act.is_gated_act},
      {"pad_token_id", c.pad_token_id},
      {"eos_token_id", c.eos_token_id},
      {"decoder_start_token_id", c.decoder_start_token_id},
  };
  std::string text;
  try {
    text = j.dump(2) + "\n";  // keys sorted, indent 2: the layout transformers writes
  } catch (const nlohmann::json::exception& e) {  // feed_forward_proj must be UTF-8
    PLM_FAIL("config: ", path, ": cannot encode: ", e.what());
  }
  write_file_atomically(path, [&](AtomicFile& f) { f.write(text); });
}

}  // namespace plm::io
