#pragma once
// Masked-LM pre-training data (ESM-2, BERT): the example stream of
// example_stream.hpp (a FASTA file streamed in pools, a held-out part,
// length-bucketed batches under a token budget, epochs, an exact-resume
// cursor) with one masked-LM example per record, <cls> residues <eos> masked
// by mask_for_mlm (mlm.hpp) with the key pretrain_keys::example(epoch, record
// index): a record is masked anew in every epoch, and the same way whenever
// its pool is rebuilt after a resume.
//
//   samplers::MlmStream stream(stream_options, vocab, samplers::MlmExamples(mlm_options, samplers::mlm_tokens(vocab)));
//   samplers::MlmBatch<B> b;
//   stream.next(b);                               // ids, labels (-100 off the selected positions), valid
//   const auto valid = stream.held_out();         // fixed examples and batches
//   const auto base = samplers::mlm_frequency_baseline(stream.pool().examples, valid.examples);
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/data/vocabulary.hpp"
#include "plm/samplers/example_stream.hpp"
#include "plm/samplers/mlm.hpp"

namespace plm::samplers {

// The tokens a masked-LM example needs: what goes around the residues (-1:
// nothing), <mask>, and the residues a random replacement draws from.
struct MlmTokens {
  std::int32_t cls = -1, eos = -1, mask = -1;
  std::vector<std::int32_t> replacements;
};

// From a vocabulary: `cls` before the residues (empty: none), its eos after
// them, `mask`, and the 20 standard residues as replacements. ESM-2's
// alphabet: <cls> ... <eos>, <mask>.
inline MlmTokens mlm_tokens(const data::Vocabulary& v, const std::string& cls = "<cls>", const std::string& mask = "<mask>") {
  MlmTokens t;
  if (!cls.empty()) {
    const auto id = v.find(cls);
    PLM_CHECK(id.has_value(), "mlm_tokens: the vocabulary has no ", cls, " token");
    t.cls = *id;
  }
  t.eos = v.eos_id();
  const auto m = v.find(mask);
  PLM_CHECK(m.has_value(), "mlm_tokens: the vocabulary has no ", mask, " token");
  t.mask = *m;
  for (const char c : std::string_view(data::detail::standard_residues))
    if (const auto id = v.residue_id(c)) t.replacements.push_back(*id);
  PLM_CHECK(!t.replacements.empty(), "mlm_tokens: the vocabulary has no standard residue tokens");
  return t;
}

// The example maker of the masked-LM stream (see example_stream.hpp).
class MlmExamples {
 public:
  using Example = MlmExample;
  static constexpr const char* stream_name = "MlmStream";

  MlmExamples(MlmOptions options, MlmTokens tokens) : o_(std::move(options)), t_(std::move(tokens)) {
    o_.validate();
    PLM_CHECK(t_.mask >= 0, "MlmExamples: no <mask> token id");
    PLM_CHECK(!t_.replacements.empty() || o_.random_fraction == 0, "MlmExamples: random replacements (random_fraction ", o_.random_fraction,
              ") need residue ids to draw from");
  }

  const MlmOptions& options() const { return o_; }
  const MlmTokens& tokens() const { return t_; }
  std::size_t min_residues() const { return 1; }
  bool grouped() const { return false; }
  double group(std::uint64_t) const { return -1.0; }
  // residues: one sequence's tokens; the example is cls + residues + eos, masked with the draws of `key`.
  Example make(const std::vector<std::int32_t>& residues, std::uint64_t key, double = -1.0) const {
    data::Encoding e;
    const auto n = static_cast<std::int32_t>(residues.size());
    if (t_.cls >= 0) e.push(t_.cls, 0, 0);  // holds no residue: never selected
    for (std::int32_t i = 0; i < n; ++i) e.push(residues[static_cast<std::size_t>(i)], i, i + 1);
    if (t_.eos >= 0) e.push(t_.eos, n, n);
    return mask_for_mlm(e, t_.mask, t_.replacements, o_, key);
  }
  index_t input_length(const Example& e) const { return static_cast<index_t>(e.ids.size()); }
  index_t target_length(const Example&) const { return 0; }  // labels lie on the input tokens
  nlohmann::json settings() const {
    return {{"examples", "mlm"},
            {"select_probability", o_.select_probability},
            {"mask_fraction", o_.mask_fraction},
            {"random_fraction", o_.random_fraction},
            {"mlm_seed", o_.seed},
            {"mlm_tokens", {t_.cls, t_.eos, t_.mask}},
            {"replacements", t_.replacements}};
  }

 private:
  MlmOptions o_;
  MlmTokens t_;
};

using MlmPool = ExamplePoolOf<MlmExample>;

// The masked-LM stream, its batches collated (padded with the vocabulary's pad,
// or packed end to end when options().batching.packed).
class MlmStream : public ExampleStream<MlmExamples> {
 public:
  MlmStream(PretrainStreamOptions options, data::Vocabulary vocab, MlmExamples maker)
      : ExampleStream(std::move(options), std::move(vocab), std::move(maker)) {}

  using ExampleStream::next;
  template <class B>
  void next(MlmBatch<B>& out) {
    const auto& rows = next();
    collate_mlm<B>(pool().examples, rows, vocabulary().pad_id(), out, options().batching.packed);
  }
  // The held-out batch `k` (rows of held_out's examples), collated the same way.
  template <class B>
  void collate(const MlmPool& held_out, std::size_t k, MlmBatch<B>& out) const {
    PLM_CHECK(k < held_out.batches.size(), "MlmStream::collate: batch ", k, " of ", held_out.batches.size());
    collate_mlm<B>(held_out.examples, held_out.batches[k], vocabulary().pad_id(), out, options().batching.packed);
  }
};

// The accuracy of always predicting the most frequent masked target of some
// training examples (ties: the smallest id), on the masked positions of
// held-out examples: what a model must beat to have learnt more than residue
// frequencies.
struct MlmBaseline {
  std::int32_t token = -1;
  double accuracy = 0;        // share of held-out targets equal to token
  std::int64_t positions = 0;  // held-out targets counted
};

inline MlmBaseline mlm_frequency_baseline(const std::vector<MlmExample>& train, const std::vector<MlmExample>& held_out) {
  std::map<std::int32_t, std::int64_t> count;
  for (const auto& e : train)
    for (const std::int32_t t : e.labels)
      if (t != -100) count[t] += 1;
  PLM_CHECK(!count.empty(), "mlm_frequency_baseline: the training examples have no masked targets");
  MlmBaseline b;
  std::int64_t best = -1;
  for (const auto& [t, n] : count)
    if (n > best) best = n, b.token = t;
  std::int64_t hit = 0;
  for (const auto& e : held_out)
    for (const std::int32_t t : e.labels)
      if (t != -100) b.positions += 1, hit += t == b.token;
  PLM_CHECK(b.positions > 0, "mlm_frequency_baseline: the held-out examples have no masked targets");
  b.accuracy = double(hit) / double(b.positions);
  return b;
}

}  // namespace plm::samplers
