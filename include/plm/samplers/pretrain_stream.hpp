#pragma once
// Ankh3 pre-training data: the example stream of example_stream.hpp (a FASTA
// file streamed in pools, a held-out part, length-bucketed batches, epochs, an
// exact-resume cursor) with one Ankh3 example per record.
//
// One masking probability per batch (Ankh3Options::probability_per_batch):
// each record draws its probability (Ankh3Sampler::batch_mask_probability,
// keyed by the example key), its example is built once with it, and the pool
// is batched separately per probability. Every batch then holds [NLU] examples
// of one probability, sized by their real lengths; which probability a batch
// has is drawn with odds proportional to how many records drew it.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/data/vocabulary.hpp"
#include "plm/samplers/ankh3.hpp"
#include "plm/samplers/batching.hpp"
#include "plm/samplers/example_stream.hpp"

namespace plm::samplers {

// The Ankh3 task tokens of a vocabulary: [NLU], [S2S], eos and its sentinels.
inline Ankh3Tokens ankh3_tokens(const data::Vocabulary& v) {
  Ankh3Tokens t;
  t.nlu = v.nlu_id(), t.s2s = v.s2s_id(), t.eos = v.eos_id();
  for (std::int32_t k = 0; k < v.num_sentinels(); ++k) t.sentinels.push_back(v.sentinel_id(k));
  return t;
}

// The example maker of the Ankh3 stream (see example_stream.hpp): an
// Ankh3Sampler example per record; with probability_per_batch the records are
// grouped by the masking probability they draw.
class Ankh3Examples {
 public:
  using Example = Seq2SeqExample;
  static constexpr const char* stream_name = "PretrainStream";

  explicit Ankh3Examples(Ankh3Sampler sampler) : sampler_(std::move(sampler)) {}

  const Ankh3Sampler& sampler() const { return sampler_; }
  std::size_t min_residues() const { return 2; }  // both tasks need two residues
  bool grouped() const { return sampler_.options().probability_per_batch; }
  double group(std::uint64_t key) const { return sampler_.batch_mask_probability(key); }
  Example make(const std::vector<std::int32_t>& residues, std::uint64_t key, double group) const {
    return sampler_.make(residues, key, grouped() ? group : -1.0);
  }
  index_t input_length(const Example& e) const { return static_cast<index_t>(e.inputs.size()); }
  index_t target_length(const Example& e) const { return static_cast<index_t>(e.targets.size()); }
  nlohmann::json settings() const {
    const auto& s = sampler_.options();
    return {{"mask_probabilities", s.mask_probabilities},
            {"mean_span_length", s.mean_span_length},
            {"probability_per_batch", s.probability_per_batch},
            {"split", {s.split.min_fraction, s.split.max_fraction}},
            {"task_weights", {s.nlu_weight, s.s2s_weight}},
            {"sampler_seed", s.seed}};
  }

 private:
  Ankh3Sampler sampler_;
};

using ExamplePool = ExamplePoolOf<Seq2SeqExample>;

// make_example_pool with an Ankh3Sampler (the maker made from it).
inline ExamplePool make_example_pool(const std::vector<PretrainRecord>& records, const Ankh3Sampler& sampler, std::uint64_t epoch,
                                     const BatchOptions& batching, Philox& order) {
  return make_example_pool(records, Ankh3Examples(sampler), epoch, batching, order);
}

// The most frequent residue of some training records, and how often always
// predicting it is right on the residue targets of held-out examples: the
// accuracy a model must beat to have learnt more than residue frequencies.
struct ResidueBaseline {
  std::int32_t token = -1;
  std::map<std::string, double> accuracy;  // task name ("nlu", "s2s") -> share of residue targets equal to token
};

inline ResidueBaseline residue_frequency_baseline(const std::vector<PretrainRecord>& train, const std::vector<Seq2SeqExample>& held_out,
                                                  const data::Vocabulary& vocab) {
  std::map<std::int32_t, std::int64_t> count;
  for (const auto& r : train)
    for (std::int32_t t : r.tokens)
      if (vocab.is_residue(t)) count[t] += 1;
  PLM_CHECK(!count.empty(), "residue_frequency_baseline: the training records hold no residue tokens");
  ResidueBaseline b;
  std::int64_t best = -1;
  for (const auto& [t, n] : count)
    if (n > best) best = n, b.token = t;  // ties: the smallest id
  for (Task task : {Task::nlu, Task::s2s}) {
    std::int64_t n = 0, hit = 0;
    for (const auto& ex : held_out)
      if (ex.task == task)
        for (std::int32_t t : ex.targets)
          if (vocab.is_residue(t)) n += 1, hit += t == b.token;
    b.accuracy[task_name(task)] = n ? double(hit) / double(n) : 0.0;
  }
  return b;
}

// The Ankh3 stream: ExampleStream<Ankh3Examples> made from an Ankh3Sampler,
// with its batches collated for T5Model.
class PretrainStream : public ExampleStream<Ankh3Examples> {
 public:
  PretrainStream(PretrainStreamOptions options, data::Vocabulary vocab, Ankh3Sampler sampler)
      : ExampleStream(std::move(options), std::move(vocab), Ankh3Examples(std::move(sampler))) {}

  using ExampleStream::next;
  // The next training batch, collated.
  template <class B>
  void next(Seq2SeqBatch<B>& out, const CollateOptions& collate_options = {}) {
    const auto& rows = next();
    collate<B>(pool().examples, rows, out, collate_options);
  }
  // The next training batch, packed (batch with PretrainStreamOptions::batching.packed
  // so the token budget counts the tokens a packed batch computes on).
  template <class B>
  void next(PackedSeq2SeqBatch<B>& out, const CollateOptions& collate_options = {}) {
    const auto& rows = next();
    collate_packed<B>(pool().examples, rows, out, collate_options);
  }

  const Ankh3Sampler& sampler() const { return maker().sampler(); }
};

}  // namespace plm::samplers
