#pragma once
// BERT / ESM masked-language-model examples: a share of a sequence's residue
// tokens is selected (ESM-2: 15%); of those, 80% become <mask>, 10% a random
// residue and 10% stay, and only the selected positions count in the loss
// (label = the original id, -100 elsewhere).
//
// Every draw of an example comes from its own Philox stream, keyed by the
// caller (e.g. epoch and record index), so an example is the same whenever it
// is rebuilt: a resumed run sees the masks it would have seen. Tokens that
// hold no residue (<cls>, <eos>, a task prefix: the Encoding says which) are
// never selected; a sequence with a residue has at least one selected.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/samplers/batching.hpp"

namespace plm::samplers {

struct MlmOptions {
  double select_probability = 0.15;  // share of residue tokens that count in the loss
  double mask_fraction = 0.8;        // of those: replaced by <mask>
  double random_fraction = 0.1;      //           replaced by a random residue; the rest keep their token
  std::uint64_t seed = 0;

  void validate() const {
    PLM_CHECK(select_probability > 0 && select_probability <= 1, "MlmOptions: select_probability ", select_probability,
              " must be in (0, 1]");
    PLM_CHECK(mask_fraction >= 0 && random_fraction >= 0 && mask_fraction + random_fraction <= 1, "MlmOptions: mask_fraction ",
              mask_fraction, " and random_fraction ", random_fraction, " must be non-negative and sum to at most 1");
  }
};

struct MlmExample {
  std::vector<std::int32_t> ids;     // the input, with <mask> and random residues in place
  std::vector<std::int32_t> labels;  // the original id where selected, -100 elsewhere
};

// Masks one encoded sequence. mask_id: the <mask> token; residues: the ids a
// random replacement draws from (e.g. the 20 standard residues); key: the
// example's stream, unique per example.
inline MlmExample mask_for_mlm(const data::Encoding& e, std::int32_t mask_id, const std::vector<std::int32_t>& residues,
                               const MlmOptions& o, std::uint64_t key) {
  o.validate();
  PLM_CHECK(!residues.empty() || o.random_fraction == 0, "mask_for_mlm: random replacements need residue ids to draw from");
  MlmExample x;
  x.ids = e.ids;
  x.labels.assign(e.ids.size(), -100);
  std::vector<std::size_t> candidates;
  for (std::size_t t = 0; t < e.size(); ++t)
    if (e.holds_residue(t)) candidates.push_back(t);
  if (candidates.empty()) return x;
  Philox rng(o.seed, key);
  std::vector<std::size_t> chosen;
  for (const std::size_t t : candidates)
    if (rng.uniform() < o.select_probability) chosen.push_back(t);
  if (chosen.empty()) chosen.push_back(candidates[rng.below(static_cast<std::uint32_t>(candidates.size()))]);
  for (const std::size_t t : chosen) {
    x.labels[t] = e.ids[t];
    const double r = rng.uniform();
    if (r < o.mask_fraction) x.ids[t] = mask_id;
    else if (r < o.mask_fraction + o.random_fraction)
      x.ids[t] = residues[rng.below(static_cast<std::uint32_t>(residues.size()))];
  }
  return x;
}

// A masked-LM batch: ids and labels (R, S) padded to the longest row, valid (R, S) 1 on tokens.
// Packed (core/packing.hpp): ids and labels (1, N) hold the rows end to end as
// `packing` says, valid is empty; EsmModel::forward_packed runs it.
template <class B>
struct MlmBatch {
  Tensor<B, std::int32_t> ids, labels;
  Tensor<B, std::uint8_t> valid;
  index_t tokens = 0;  // real (unpadded) tokens
  bool packed = false;
  Packing packing;
};

// The examples rows[k] as one batch; pad fills the ids after each row, -100 the labels.
// packed: the rows end to end instead, no padding.
template <class B>
void collate_mlm(const std::vector<MlmExample>& examples, const std::vector<index_t>& rows, std::int32_t pad, MlmBatch<B>& out,
                 bool packed = false) {
  out.packed = packed;
  if (packed) {
    std::vector<std::int32_t> ids, labels;
    std::vector<index_t> lengths;
    for (const index_t r : rows) {
      PLM_CHECK(r >= 0 && r < static_cast<index_t>(examples.size()), "collate_mlm: row ", r, " outside the ", examples.size(), " examples");
      const MlmExample& e = examples[static_cast<std::size_t>(r)];
      PLM_CHECK(!e.ids.empty() && e.ids.size() == e.labels.size(), "collate_mlm: example ", r, " has ", e.ids.size(), " ids and ",
                e.labels.size(), " labels");
      ids.insert(ids.end(), e.ids.begin(), e.ids.end());
      labels.insert(labels.end(), e.labels.begin(), e.labels.end());
      lengths.push_back(static_cast<index_t>(e.ids.size()));
    }
    PLM_CHECK(!lengths.empty(), "collate_mlm: empty batch");
    out.packing = Packing(lengths);
    out.tokens = out.packing.tokens();
    out.ids.resize(Shape{1, out.tokens});
    out.labels.resize(Shape{1, out.tokens});
    out.valid.resize(Shape{0});
    upload(ids.data(), out.ids.view());
    upload(labels.data(), out.labels.view());
    return;
  }
  std::vector<std::vector<std::int32_t>> ids, labels;
  std::vector<index_t> all;
  ids.reserve(rows.size());
  labels.reserve(rows.size());
  for (const index_t r : rows) {
    PLM_CHECK(r >= 0 && r < static_cast<index_t>(examples.size()), "collate_mlm: row ", r, " outside the ", examples.size(), " examples");
    ids.push_back(examples[static_cast<std::size_t>(r)].ids);
    labels.push_back(examples[static_cast<std::size_t>(r)].labels);
    all.push_back(static_cast<index_t>(all.size()));
  }
  Tensor<B, std::uint8_t> unused;
  pad_rows(ids, all, pad, out.ids, out.valid);
  pad_rows(labels, all, -100, out.labels, unused);
  out.tokens = 0;
  for (const auto& v : ids) out.tokens += static_cast<index_t>(v.size());
}

}  // namespace plm::samplers
