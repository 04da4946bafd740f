#pragma once
// The tokenizer options a program that reads a model directory offers, and
// what it does with them:
//   TokenizerOptions tok;
//   train::add_tokenizer_options(cli, tok);   // --vocab, --tokenize, --raw
//   const data::Tokenizer t = tok.load(model_dir);
//   t.encode(tok.prepare(record.sequence), tok.style(), enc, record.id);
#include <string>

#include "plm/data/tokenizer.hpp"
#include "plm/train/cli.hpp"

namespace plm::train {

struct TokenizerOptions {
  std::string vocab;              // empty: the model directory's own tokenizer files
  std::string tokenize = "words";  // words: tok(list(seq), is_split_into_words=True); string: tok(seq)
  bool raw = false;               // pass sequences exactly as written

  data::Tokenizer load(const std::string& model_dir) const {
    return vocab.empty() ? data::Tokenizer::from_directory(model_dir) : data::Tokenizer::load(vocab);
  }
  data::InputStyle style() const { return data::parse_input_style(tokenize); }
  // Upper case, a trailing stop dropped, unless raw.
  std::string prepare(std::string s) const {
    if (raw) return s;
    for (char& c : s)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!s.empty() && s.back() == '*') s.pop_back();
    return s;
  }
};

// Adds --vocab, --tokenize and --raw to a CLI11 parser, checked while parsing.
template <class App>
void add_tokenizer_options(App& app, TokenizerOptions& t) {
  app.add_option("--vocab", t.vocab,
                 "override the model directory's tokenizer: ankh3, ankh, a tokenizer directory, tokenizer.json, spiece.model or "
                 "a vocabulary file")
      ->check(cli::one_of_or_file({"ankh3", "ankh"}, true));
  app.add_option("--tokenize", t.tokenize,
                 "how the model card calls the tokenizer: words = tok(list(seq), is_split_into_words=True), string = tok(seq)")
      ->check(cli::one_of({"words", "string"}));
  app.add_flag("--raw", t.raw, "tokenize the sequence exactly as written (default: upper-cased, a trailing '*' dropped)");
}

}  // namespace plm::train
