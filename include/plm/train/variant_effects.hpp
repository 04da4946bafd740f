#pragma once
// Zero-shot variant effects with a masked language model: the masked-marginal
// score of a point mutation (ESM-1v / ESM-2 practice, Meier et al. 2021),
//
//   score(wt -> mt at i) = log p(mt | x with i masked) - log p(wt | x with i masked),
//
// the score deep-mutational-scan users compute with ESM. One masked copy of the
// sequence per distinct position, run in batches; mutations at the same
// position share their forward pass.
//
// A mutation is written as in DMS tables: wild-type letter, 1-based position,
// mutant letter ("K48R"). The wild-type letter must match the sequence, and
// both letters must be tokens of the vocabulary, each on its own.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/error.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/nn/dropout.hpp"

namespace plm::train {

struct Mutation {
  char wt = 0;
  index_t position = 0;  // 1-based, as DMS tables write it
  char mt = 0;

  // "K48R"; `where` (a file and line) is named in errors.
  static Mutation parse(std::string_view text, std::string_view where = {}) {
    const auto fail = [&](const char* why) {
      PLM_FAIL("mutation '", std::string(text.substr(0, 40)), "'", where.empty() ? "" : " at ", std::string(where), ": ", why,
               " (expected wild type, 1-based position, mutant, e.g. K48R)");
    };
    if (text.size() < 3 || text.size() > 12) fail("wrong length");
    const auto letter = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
    Mutation m;
    m.wt = text.front();
    m.mt = text.back();
    if (!letter(m.wt) || !letter(m.mt)) fail("the first and last characters must be residue letters");
    index_t p = 0;
    for (const char c : text.substr(1, text.size() - 2)) {
      if (c < '0' || c > '9') fail("the position must be a number");
      p = p * 10 + (c - '0');
    }
    if (p < 1) fail("positions count from 1");
    m.position = p;
    return m;
  }
  std::string str() const { return std::string(1, wt) + std::to_string(position) + std::string(1, mt); }
};

struct VariantScoreOptions {
  index_t batch = 16;                     // masked copies per forward pass
  data::InputStyle style = data::InputStyle::string;
};

// Masked-marginal scores of `mutations` of `sequence`, in their order. Model:
// an encoder with an LM head whose forward(ids, valid, logits, cache, pass)
// gives (B, T, V) logits and whose config() names mask_token_id (nn::EsmModel).
template <class Model>
std::vector<double> masked_marginal_scores(const Model& model, const data::Tokenizer& tokenizer, std::string_view sequence,
                                           const std::vector<Mutation>& mutations, VariantScoreOptions options = {},
                                           std::string_view name = {}) {
  using B = typename std::decay_t<decltype(model.params())>::backend_type;
  using T = typename std::decay_t<decltype(model.params())>::value_type;
  PLM_CHECK(options.batch >= 1, "masked_marginal_scores: batch ", options.batch, " must be at least 1");
  const data::Encoding enc = tokenizer.encode(sequence, options.style, name);
  const data::Vocabulary& vocab = tokenizer.vocabulary();
  const index_t V = model.config().vocab_size, Tn = static_cast<index_t>(enc.size());
  PLM_CHECK(vocab.size() <= V, "masked_marginal_scores: the tokenizer's ", vocab.size(), " tokens exceed the model's vocabulary of ", V);
  const std::int32_t mask_id = model.config().mask_token_id;
  // the token that holds residue p (1-based) alone
  const auto token_of = [&](const Mutation& m) -> index_t {
    PLM_CHECK(m.position <= static_cast<index_t>(sequence.size()), "mutation ", m.str(), ": position ", m.position, " is beyond ",
              name.empty() ? "the sequence" : std::string(name), " of ", sequence.size(), " residues");
    PLM_CHECK(sequence[static_cast<std::size_t>(m.position - 1)] == m.wt, "mutation ", m.str(), ": residue ", m.position, " of ",
              name.empty() ? "the sequence" : std::string(name), " is ", sequence[static_cast<std::size_t>(m.position - 1)], ", not ", m.wt);
    for (std::size_t k = 0; k < enc.size(); ++k)
      if (enc.begin[k] == m.position - 1 && enc.end[k] == m.position) return static_cast<index_t>(k);
    PLM_FAIL("mutation ", m.str(), ": no token holds residue ", m.position, " alone (the tokenizer merges it with a neighbour)");
  };
  const auto id_of = [&](const Mutation& m, char c) {
    const auto id = vocab.find(std::string(1, c));
    PLM_CHECK(id.has_value() && *id != vocab.unk_id(), "mutation ", m.str(), ": '", c, "' is not a token of the vocabulary");
    return *id;
  };
  std::map<index_t, std::vector<std::size_t>> by_token;  // masked token -> mutations scored there
  std::vector<std::pair<std::int32_t, std::int32_t>> ids(mutations.size());
  for (std::size_t i = 0; i < mutations.size(); ++i) {
    by_token[token_of(mutations[i])].push_back(i);
    ids[i] = {id_of(mutations[i], mutations[i].wt), id_of(mutations[i], mutations[i].mt)};
  }
  std::vector<index_t> positions;
  for (const auto& kv : by_token) positions.push_back(kv.first);
  std::vector<double> scores(mutations.size(), 0.0);
  typename Model::Cache cache;
  std::vector<std::int32_t> host_ids;
  std::vector<T> row(static_cast<std::size_t>(V));
  for (std::size_t first = 0; first < positions.size(); first += static_cast<std::size_t>(options.batch)) {
    const index_t n = std::min<index_t>(options.batch, static_cast<index_t>(positions.size() - first));
    host_ids.assign(static_cast<std::size_t>(n * Tn), 0);
    for (index_t b = 0; b < n; ++b) {
      std::copy(enc.ids.begin(), enc.ids.end(), host_ids.begin() + b * Tn);
      host_ids[static_cast<std::size_t>(b * Tn + positions[first + static_cast<std::size_t>(b)])] = mask_id;
    }
    Tensor<B, std::int32_t> batch_ids(Shape{n, Tn});
    upload(host_ids.data(), batch_ids.view());
    Tensor<B, T> logits(Shape{n, Tn, V});
    model.forward(batch_ids.cview(), ConstView<B, std::uint8_t>{}, logits.view(), cache, nn::Pass::eval());
    for (index_t b = 0; b < n; ++b) {
      const index_t t = positions[first + static_cast<std::size_t>(b)];
      download(ConstView<B, T>(logits.cview()[b][t]), row.data());
      double top = -INFINITY, sum = 0;
      for (const T v : row) top = std::max(top, static_cast<double>(v));
      for (const T v : row) sum += std::exp(static_cast<double>(v) - top);
      const double log_z = top + std::log(sum);
      for (const std::size_t i : by_token[t]) {
        const double lp_wt = static_cast<double>(row[static_cast<std::size_t>(ids[i].first)]) - log_z;
        const double lp_mt = static_cast<double>(row[static_cast<std::size_t>(ids[i].second)]) - log_z;
        scores[i] = lp_mt - lp_wt;
      }
    }
  }
  return scores;
}

}  // namespace plm::train
