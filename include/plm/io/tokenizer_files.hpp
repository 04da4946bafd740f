#pragma once
// The tokenizer files of a saved model directory, so that transformers'
// AutoTokenizer.from_pretrained(dir) and plm's Tokenizer::from_directory(dir)
// both read the ids the model was trained with:
//   - a tokenizer read from Hugging Face files: those files, byte for byte;
//   - the ESM-2 alphabet (Tokenizer::esm2()): vocab.txt, tokenizer_config.json
//     (EsmTokenizer) and special_tokens_map.json;
//   - plm's own vocabulary: a tokenizer.json (WordLevel over the vocabulary, one
//     token per character, "</s>" appended; specials, task tokens and sentinels
//     as added special tokens), tokenizer_config.json and special_tokens_map.json.
// Every file is written atomically; an existing file is replaced only as a whole.
// A generation_config.json (pad, eos, decoder start) goes with a model that has
// a decoder.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/io/atomic_file.hpp"
#include "plm/nn/config.hpp"

namespace plm::io {

namespace detail {

inline void write_json_file(const std::string& path, const nlohmann::json& j) {
  write_file_atomically(path, [&](AtomicFile& f) { f.write(j.dump(2) + "\n"); });
}

}  // namespace detail

// tokenizer.json for plm's own vocabulary: what transformers' tokenizers
// library needs to give the ids Vocabulary::encode gives for upper-case residues.
inline nlohmann::json vocabulary_tokenizer_json(const data::Vocabulary& v) {
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (std::int32_t id = 0; id < v.size(); ++id) {
    vocab[v.token(id)] = id;
    if (!v.is_residue(id) && (v.token(id).size() > 1 || id == v.pad_id() || id == v.eos_id() || id == v.unk_id()))
      added.push_back({{"id", id}, {"content", v.token(id)}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", true}});
  }
  const std::string eos = v.token(v.eos_id());
  const nlohmann::json seq = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const nlohmann::json end = {{"SpecialToken", {{"id", eos}, {"type_id", 0}}}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", ""}}}, {"behavior", "Isolated"}, {"invert", false}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {seq, end}},
            {"pair", {seq, end, {{"Sequence", {{"id", "B"}, {"type_id", 0}}}}, end}},
            {"special_tokens", {{eos, {{"id", eos}, {"ids", {v.eos_id()}}, {"tokens", {eos}}}}}}}},
          {"decoder", nullptr},
          {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", v.token(v.unk_id())}}}};
}

// Writes the tokenizer files into `dir` (which must exist).
inline void save_tokenizer(const data::Tokenizer& tok, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  PLM_CHECK(fs::is_directory(dir, ec), "save_tokenizer: ", dir, ": not a directory");
  const data::Vocabulary& v = tok.vocabulary();
  if (tok.is_esm() && tok.files().empty()) {  // the esm2() alphabet: what EsmTokenizer.save_pretrained writes
    std::string vocab_txt;
    for (std::int32_t id = 0; id < v.size(); ++id) vocab_txt += v.token(id) + "\n";
    write_file_atomically((fs::path(dir) / "vocab.txt").string(), [&](AtomicFile& f) { f.write(vocab_txt); });
    const nlohmann::json specials = {{"cls_token", "<cls>"}, {"eos_token", v.token(v.eos_id())}, {"pad_token", v.token(v.pad_id())},
                                     {"unk_token", v.token(v.unk_id())}, {"mask_token", "<mask>"}};
    nlohmann::json config = specials;
    config["tokenizer_class"] = "EsmTokenizer";
    config["model_max_length"] = 1000000000;
    detail::write_json_file((fs::path(dir) / "tokenizer_config.json").string(), config);
    detail::write_json_file((fs::path(dir) / "special_tokens_map.json").string(), specials);
    return;
  }
  if (tok.is_pretrained()) {
    for (const std::string& src : tok.files()) {
      std::ifstream in(src, std::ios::binary);
      PLM_CHECK(in.good(), "save_tokenizer: cannot open ", src, " to copy it");
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      PLM_CHECK(!in.bad(), "save_tokenizer: read error in ", src);
      write_file_atomically((fs::path(dir) / fs::path(src).filename()).string(), [&](AtomicFile& f) { f.write(bytes); });
    }
    return;
  }
  detail::write_json_file((fs::path(dir) / "tokenizer.json").string(), vocabulary_tokenizer_json(v));
  nlohmann::json extra = nlohmann::json::array();
  for (std::int32_t n = 0; n < v.num_sentinels(); ++n) extra.push_back(v.token(v.sentinel_id(n)));
  for (const std::string& task : {v.specials().nlu, v.specials().s2s})
    if (v.find(task)) extra.push_back(task);
  const nlohmann::json specials = {{"pad_token", v.token(v.pad_id())}, {"eos_token", v.token(v.eos_id())}, {"unk_token", v.token(v.unk_id())}};
  nlohmann::json config = specials;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["model_max_length"] = 1000000000;
  config["extra_special_tokens"] = extra;
  detail::write_json_file((fs::path(dir) / "tokenizer_config.json").string(), config);
  nlohmann::json map = specials;
  map["additional_special_tokens"] = extra;
  detail::write_json_file((fs::path(dir) / "special_tokens_map.json").string(), map);
}

// generation_config.json, as transformers writes it for an encoder-decoder.
inline void save_generation_config(const nn::T5Config& c, const std::string& dir) {
  detail::write_json_file((std::filesystem::path(dir) / "generation_config.json").string(),
                          {{"_from_model_config", true},
                           {"decoder_start_token_id", c.decoder_start_token_id},
                           {"eos_token_id", c.eos_token_id},
                           {"pad_token_id", c.pad_token_id}});
}

}  // namespace plm::io
