#pragma once
// Ankh3's two pre-training tasks as seq2seq examples, and the mix of both.
//
//   [NLU]  inputs  [NLU] x_1 <extra_id_0> x_3 ... </s>    (span corruption, span_mask.hpp)
//          targets <extra_id_0> x_2 ... </s>
//   [S2S]  inputs  [S2S] x_1 ... x_k </s>                   (completion: first part)
//          targets x_k+1 ... x_n </s>                       (the rest)
//
// Every draw of an example (its task, masking probability, mask, split point)
// comes from its own Philox stream keyed by (seed, example key), so an example
// is the same whatever else is in its batch, on every backend and after a
// resume. Use a key that identifies the example in the run, e.g.
// epoch * records + record index.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/samplers/span_mask.hpp"

namespace plm::samplers {

// Split point of a completion example: the encoder sees the first k tokens.
// fraction in [min_fraction, max_fraction] (equal = fixed; the Ankh3 model
// card splits at 0.5), k clamped to [1, n - 1] so both sides are non-empty.
struct CompletionSplit {
  double min_fraction = 0.5, max_fraction = 0.5;

  void validate() const {
    PLM_CHECK(min_fraction > 0 && max_fraction < 1 && min_fraction <= max_fraction, "CompletionSplit: fraction range [",
              min_fraction, ", ", max_fraction, "] must lie in (0, 1) with min <= max");
  }
  index_t split_point(index_t n, Philox& rng) const {
    PLM_CHECK(n >= 2, "CompletionSplit: a sequence of ", n, " tokens cannot be split into a prefix and a rest");
    const double f = min_fraction == max_fraction ? min_fraction : min_fraction + (max_fraction - min_fraction) * rng.uniform();
    return std::clamp<index_t>(std::llround(static_cast<double>(n) * f), 1, n - 1);
  }
};

enum class Task : std::int32_t { nlu = 0, s2s = 1 };

inline const char* task_name(Task t) { return t == Task::nlu ? "nlu" : "s2s"; }

// Token ids the tasks need; from a data::Vocabulary (nlu_id(), s2s_id(), eos_id(), sentinel_id(k)).
struct Ankh3Tokens {
  std::int32_t nlu = -1, s2s = -1, eos = 1;
  std::vector<std::int32_t> sentinels;
  bool task_prefix = true;  // prepend [NLU] / [S2S] to the encoder input
};

struct Ankh3Options {
  std::vector<double> mask_probabilities{0.2};  // one drawn uniformly per example (or per batch)
  double mean_span_length = 1.0;               // 1 = Ankh3's single-residue sentinels, 3 = T5
  bool probability_per_batch = false;          // draw it once per batch: pass batch_mask_probability() to make()
  CompletionSplit split;
  double nlu_weight = 1.0, s2s_weight = 1.0;  // task mixing weights (sampling odds)
  std::uint64_t seed = 0;

  void validate() const {
    PLM_CHECK(!mask_probabilities.empty(), "Ankh3Options: no masking probabilities");
    for (double p : mask_probabilities)
      PLM_CHECK(p > 0 && p < 1, "Ankh3Options: masking probability ", p, " must be in (0, 1)");
    PLM_CHECK(mean_span_length >= 1, "Ankh3Options: mean span length ", mean_span_length, " must be >= 1");
    PLM_CHECK(nlu_weight >= 0 && s2s_weight >= 0 && nlu_weight + s2s_weight > 0, "Ankh3Options: task weights ", nlu_weight, " / ",
              s2s_weight, " must be >= 0 and not both 0");
    split.validate();
  }
};

struct Seq2SeqExample {
  Task task = Task::nlu;
  std::vector<std::int32_t> inputs, targets;  // both end with eos
  double mask_probability = 0;                // [NLU] only
  index_t masked = 0;                         // [NLU]: residues hidden; [S2S]: residues to complete
};

class Ankh3Sampler {
 public:
  Ankh3Sampler(Ankh3Options o, Ankh3Tokens t) : o_(std::move(o)), t_(std::move(t)) {
    o_.validate();
    PLM_CHECK(o_.nlu_weight == 0 || !t_.sentinels.empty(), "Ankh3Sampler: the [NLU] task needs sentinel tokens");
    PLM_CHECK(!t_.task_prefix || ((o_.nlu_weight == 0 || t_.nlu >= 0) && (o_.s2s_weight == 0 || t_.s2s >= 0)),
              "Ankh3Sampler: task prefixes need the [NLU] and [S2S] token ids (the vocabulary has none?)");
  }

  const Ankh3Options& options() const { return o_; }

  // One masking probability for a whole batch (probability_per_batch).
  double batch_mask_probability(std::uint64_t batch_key) const {
    Philox rng(o_.seed ^ 0x5bd1e995u, batch_key);
    return o_.mask_probabilities[rng.below(static_cast<std::uint32_t>(o_.mask_probabilities.size()))];
  }

  // residues: one sequence's tokens without eos. mask_probability < 0: drawn
  // per example (ignored unless probability_per_batch is set).
  Seq2SeqExample make(const std::vector<std::int32_t>& residues, std::uint64_t key, double mask_probability = -1) const {
    PLM_CHECK(residues.size() >= 2, "Ankh3Sampler: example ", key, " has ", residues.size(),
              " residues; both tasks need at least 2 (filter short sequences when reading)");
    Philox rng(o_.seed, key);
    const double total = o_.nlu_weight + o_.s2s_weight;
    const Task task = rng.uniform() * total <= o_.nlu_weight ? Task::nlu : Task::s2s;
    Seq2SeqExample ex;
    ex.task = task;
    if (task == Task::nlu) {
      double p = mask_probability;
      if (!o_.probability_per_batch || p < 0)
        p = o_.mask_probabilities[rng.below(static_cast<std::uint32_t>(o_.mask_probabilities.size()))];
      const auto mask = random_spans_noise_mask(static_cast<index_t>(residues.size()), p, o_.mean_span_length, rng,
                                                static_cast<index_t>(t_.sentinels.size()));
      auto c = span_corrupt(residues, mask, t_.sentinels);
      if (t_.task_prefix) ex.inputs.push_back(t_.nlu);
      ex.inputs.insert(ex.inputs.end(), c.inputs.begin(), c.inputs.end());
      ex.targets = std::move(c.targets);
      ex.mask_probability = p;
      ex.masked = c.masked;
    } else {
      const index_t k = o_.split.split_point(static_cast<index_t>(residues.size()), rng);
      if (t_.task_prefix) ex.inputs.push_back(t_.s2s);
      ex.inputs.insert(ex.inputs.end(), residues.begin(), residues.begin() + k);
      ex.targets.assign(residues.begin() + k, residues.end());
      ex.masked = static_cast<index_t>(residues.size()) - k;
    }
    ex.inputs.push_back(t_.eos);
    ex.targets.push_back(t_.eos);
    return ex;
  }

 private:
  Ankh3Options o_;
  Ankh3Tokens t_;
};

}  // namespace plm::samplers
