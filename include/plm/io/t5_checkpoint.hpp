#pragma once
// Hugging Face T5 checkpoints <-> plm T5 models.
//
// A checkpoint directory holds config.json and model.safetensors, as
// save_pretrained writes them for T5ForConditionalGeneration or T5EncoderModel.
// Parameters map by name one to one (plm uses Hugging Face's names), with the
// aliases transformers itself uses: `shared.weight` may be stored as
// `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight`. Loading
// refuses, naming every offending tensor, a checkpoint with missing, extra or
// mis-shaped tensors, so a wrong file never half-loads silently.
#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "plm/backend/cpu/ops.hpp"  // host-side conversions (ops<cpu>::convert)
#include "plm/core/type_tag.hpp"
#include "plm/io/hf_config.hpp"
#include "plm/io/hf_weights.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/nn/t5.hpp"

namespace plm::io {

namespace detail {
inline std::string list_names(const std::vector<std::string>& names, std::size_t limit = 8) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}
}  // namespace detail

// How a family's parameter names appear in files: the names a file may store
// a parameter under (its own name first; transformers renames some on saving),
// and file tensors that are not parameters (buffers such as ESM's rotary
// inv_freq) and may stay unread.
struct WeightNames {
  std::function<std::vector<std::string>(const std::string&)> candidates = [](const std::string& n) {
    return std::vector<std::string>{n};
  };
  std::function<bool(const std::string&)> ignored = [](const std::string&) { return false; };
};

// A parameter's name, then the spellings transformers also reads a LayerNorm's
// parameters under: `LayerNorm.gamma` for `LayerNorm.weight` and
// `LayerNorm.beta` for `LayerNorm.bias` (TF-converted files; transformers 5
// writes ESM's that way).
inline std::vector<std::string> layer_norm_candidates(const std::string& n) {
  std::vector<std::string> c{n};
  const auto ends = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  if (ends("LayerNorm.weight")) c.push_back(n.substr(0, n.size() - 6) + "gamma");
  if (ends("LayerNorm.bias")) c.push_back(n.substr(0, n.size() - 4) + "beta");
  return c;
}

// Reads every parameter of `range` (a model's param_range() when it shares its
// set with heads that the file does not hold) from a safetensors file or a
// model directory (model.safetensors, or a sharded model.safetensors.index.json;
// see ModelWeights), converting dtypes as needed. A parameter missing from the
// file, or a file tensor that is neither a candidate name of a parameter in the
// range nor ignored, is refused with every such name listed.
template <class B, class T>
void load_parameters(nn::ParameterSet<B, T>& params, const std::string& dir_or_file, const WeightNames& names, nn::ParamRange range) {
  PLM_CHECK(range.begin >= 0 && range.begin <= range.end && range.end <= params.size(), "load_parameters: parameter range [",
            range.begin, ", ", range.end, ") outside the set of ", params.size());
  const ModelWeights file(dir_or_file);
  const std::string& path = file.path();
  std::vector<std::string> missing, sources(static_cast<std::size_t>(range.size()));
  std::set<std::string> known;  // every candidate name of a parameter in the range
  for (index_t i = range.begin; i < range.end; ++i) {
    const auto& e = params.entry(i);
    std::string& src = sources[static_cast<std::size_t>(i - range.begin)];
    for (const std::string& c : names.candidates(e.name)) {
      known.insert(c);
      if (src.empty() && file.contains(c)) src = c;
    }
    if (src.empty()) missing.push_back(e.name);
  }
  PLM_CHECK(missing.empty(), "load_parameters: ", path, " lacks ", missing.size(), " tensor(s) the model needs: ",
            detail::list_names(missing));
  std::vector<std::string> extra;
  for (const auto& info : file.tensors())
    if (!known.count(info.name) && !names.ignored(info.name)) extra.push_back(info.name);
  PLM_CHECK(extra.empty(), "load_parameters: ", path, " has ", extra.size(), " tensor(s) this model does not have: ",
            detail::list_names(extra), " (a different architecture or config?)");
  Tensor<cpu, T> host;
  for (index_t i = range.begin; i < range.end; ++i) {
    const std::string& src = sources[static_cast<std::size_t>(i - range.begin)];
    if constexpr (std::is_same_v<B, cpu>) {
      file.read<T>(src, params.value(i));
    } else {
      host.resize(params.entry(i).shape);
      file.read<T>(src, host.view());
      upload(host.data(), params.value(i));
    }
  }
}

// T5's names: `shared.weight` may be stored as `encoder.embed_tokens.weight` /
// `decoder.embed_tokens.weight`; file tensors whose names start with one of
// `skip_prefixes` are ignored (e.g. "decoder." and "lm_head." to take the
// encoder of a full checkpoint).
inline WeightNames t5_weight_names(std::vector<std::string> skip_prefixes = {}) {
  WeightNames w;
  w.candidates = [](const std::string& n) {
    if (n == "shared.weight") return std::vector<std::string>{n, "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
    return std::vector<std::string>{n};
  };
  w.ignored = [skip = std::move(skip_prefixes)](const std::string& n) {
    for (const auto& p : skip)
      if (n.rfind(p, 0) == 0) return true;
    return false;
  };
  return w;
}

template <class B, class T>
void load_parameters(nn::ParameterSet<B, T>& params, const std::string& dir_or_file, const std::vector<std::string>& skip_prefixes,
                     nn::ParamRange range) {
  load_parameters(params, dir_or_file, t5_weight_names(skip_prefixes), range);
}

template <class B, class T>
void load_parameters(nn::ParameterSet<B, T>& params, const std::string& dir_or_file, const std::vector<std::string>& skip_prefixes = {}) {
  load_parameters(params, dir_or_file, skip_prefixes, params.all());
}

// Writes every parameter of `range` (default: the whole set) under its name,
// in float32 (or `Stored` = double / bf16).
template <class Stored = float, class B, class T>
void save_parameters(const nn::ParameterSet<B, T>& params, const std::string& path,
                     const std::map<std::string, std::string>& metadata = {{"format", "pt"}}, nn::ParamRange range = {-1, -1}) {
  if (range.begin < 0) range = params.all();
  PLM_CHECK(range.begin <= range.end && range.end <= params.size(), "save_parameters: parameter range [", range.begin, ", ",
            range.end, ") outside the set of ", params.size());
  std::vector<Tensor<cpu, Stored>> converted;
  std::vector<Tensor<cpu, T>> host;
  converted.reserve(static_cast<std::size_t>(range.size()));
  host.reserve(static_cast<std::size_t>(range.size()));
  SafetensorsWriter w;
  for (index_t i = range.begin; i < range.end; ++i) {
    const auto& e = params.entry(i);
    ConstView<cpu, T> v;
    if constexpr (std::is_same_v<B, cpu>) {
      v = params.value(i);
    } else {
      host.emplace_back(e.shape);
      download(ConstView<B, T>(params.value(i)), host.back().data());
      v = host.back().cview();
    }
    if constexpr (std::is_same_v<Stored, T>) {
      w.add<T>(e.name, v);
    } else {
      converted.emplace_back(e.shape);
      ops<cpu>::convert<T, Stored>(v, converted.back().view());
      w.add<Stored>(e.name, converted.back().cview());
    }
  }
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.write(path);
}

namespace detail {
// Whether two stored tensors hold the same values (compared as double).
inline bool same_values(const ModelWeights& w, const std::string& a, const std::string& b) {
  const TensorInfo *ia = w.find(a), *ib = w.find(b);
  if (!ia || !ib || ia->shape != ib->shape || ia->shape.size() != 2) return false;
  const Shape s{ia->shape[0], ia->shape[1]};
  Tensor<cpu, double> x(s), y(s);
  w.read<double>(a, x.view());
  w.read<double>(b, y.view());
  return std::equal(x.data(), x.data() + x.numel(), y.data());
}
}  // namespace detail

// Whether the LM head is tied, decided by the weights as transformers 5 does
// (its T5 config always says tie_word_embeddings: true): a checkpoint without
// lm_head.weight, or with one equal to shared.weight, is tied; one with a
// different lm_head.weight is untied. A transformers 4 config that says
// "tie_word_embeddings": false for a checkpoint with a decoder but no
// lm_head.weight is refused: its LM head is missing.
inline void resolve_tying(nn::T5Config& c, const ModelWeights& w, const std::string& config_path) {
  if (!w.contains("lm_head.weight")) {
    bool has_decoder = false;
    for (const TensorInfo& t : w.tensors()) has_decoder = has_decoder || t.name.rfind("decoder.", 0) == 0;
    PLM_CHECK(c.tie_word_embeddings || !has_decoder, "config: ", config_path,
              ": says \"tie_word_embeddings\": false (an LM head of its own), but ", w.path(), " has no lm_head.weight");
    if (has_decoder) c.tie_word_embeddings = true;
    return;
  }
  const char* shared = w.contains("shared.weight") ? "shared.weight" : "decoder.embed_tokens.weight";
  c.tie_word_embeddings = detail::same_values(w, "lm_head.weight", shared);
}

namespace detail {
// A model's own parameters as dir/model.safetensors (in Stored) and its config
// through write_config(path of dir/config.json); dir is created if needed.
template <class Stored, class Model, class WriteConfig>
void save_model_dir(const Model& m, const std::string& dir, const char* what, WriteConfig&& write_config) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  PLM_CHECK(!ec, what, ": cannot create ", dir, ": ", ec.message());
  save_parameters<Stored>(m.params(), (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}}, m.param_range());
  write_config((fs::path(dir) / "config.json").string());
}
}  // namespace detail

// config.json of a Hugging Face checkpoint directory, with the tying of the LM
// head decided by its weights (resolve_tying).
inline nn::T5Config read_t5_dir_config(const std::string& dir) {
  const std::string config_path = detail::config_json_of(dir);
  nn::T5Config c = read_t5_config(config_path);
  resolve_tying(c, ModelWeights(dir), config_path);
  return c;
}

// Fills a model's own parameters (its param_range(), also inside a set shared
// with heads) from a checkpoint directory. An encoder-only model takes the
// encoder half of a full checkpoint.
template <class Model>
void load_t5_weights(Model& m, const std::string& dir) {
  std::vector<std::string> skip;
  if (!m.has_decoder()) skip = {"decoder.", "lm_head."};
  load_parameters(m.params(), dir, skip, m.param_range());
}

// Builds a model of type Model (e.g. nn::Ankh3Model<cpu, float>) from a Hugging
// Face checkpoint directory. The config's feed_forward_proj must match the
// model type's policies (the constructor says so otherwise).
template <class Model>
Model load_t5(const std::string& dir) {
  Model m(read_t5_dir_config(dir), nn::uninitialized);  // every parameter comes from the checkpoint
  load_t5_weights(m, dir);
  return m;
}

// The encoder alone (num_decoder_layers = 0), from a T5EncoderModel checkpoint
// or from the encoder half of a T5ForConditionalGeneration one: what
// embedding extraction and encoder fine-tuning need, at half the memory.
template <class Model>
Model load_t5_encoder(const std::string& dir) {
  nn::T5Config c = read_t5_dir_config(dir);
  c.num_decoder_layers = 0;
  Model m(c, nn::uninitialized);
  load_t5_weights(m, dir);
  return m;
}

// Calls f(plm::type_tag<Model>{}) with the model alias a config's
// feed_forward_proj needs (gated-gelu: nn::AnkhModel, gated-silu:
// nn::Ankh3Model), so a program writes its code once as a generic lambda and
// the runtime config picks the instantiation; `where` names the config in the error.
template <class B, class T = float, class F>
decltype(auto) with_t5_model_type(const std::string& feed_forward_proj, F&& f, const std::string& where = "config") {
  if (feed_forward_proj == "gated-silu") return f(type_tag<nn::Ankh3Model<B, T>>{});
  if (feed_forward_proj == "gated-gelu") return f(type_tag<nn::AnkhModel<B, T>>{});
  PLM_FAIL(where, ": feed_forward_proj '", feed_forward_proj, "' is not an Ankh model type (gated-gelu or gated-silu)");
}

// with_t5_model_type for the model of a checkpoint directory (its config.json).
template <class B, class T = float, class F>
decltype(auto) with_t5_checkpoint_type(const std::string& dir, F&& f) {
  namespace fs = std::filesystem;
  return with_t5_model_type<B, T>(read_t5_dir_config(dir).feed_forward_proj, std::forward<F>(f),
                                  (fs::path(dir) / "config.json").string());
}

// Writes config.json and model.safetensors into dir (created if needed), loadable
// by transformers' from_pretrained (T5ForConditionalGeneration, or T5EncoderModel
// for a model without decoder).
template <class Stored = float, class Model>
void save_t5(const Model& m, const std::string& dir) {
  detail::save_model_dir<Stored>(m, dir, "save_t5", [&](const std::string& path) { write_t5_config(m.config(), path, !m.has_decoder()); });
}

}  // namespace plm::io
