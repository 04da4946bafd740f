#pragma once
// The rows of one negative-mining batch: anchors, then their negatives, then
// their positives, as one list of items (what to encode, in row order) and an
// nn::PairRows saying which anchor row each negative / positive row attends
// over. One padded batch of all rows runs the shared encoder once per step.
//
//   make_negative_batch     from anchors and the negatives / positives the
//                           caller chose (an evaluation batch: anchors only)
//   sample_negative_batch   draws them with negatives.hpp's samplers: by label,
//                           or from per-protein candidate lists (hard negatives,
//                           non-interacting partners), and a positive per anchor
//                           when the loss needs one
//   NegativeBatchSampler    the batches of a labelled training set, epoch by
//                           epoch: a seeded shuffle cut into batches of anchors,
//                           each with its draws
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/nn/pair_attention.hpp"
#include "plm/samplers/negatives.hpp"

namespace plm::samplers {

struct NegativeBatch {
  std::vector<index_t> items;  // the item of every row, in row order
  nn::PairRows rows;
};

// anchors: items; negatives[a]: the negatives of anchor a (empty or one list
// per anchor); positives[a]: its positive, -1 for none (empty or one per anchor).
inline NegativeBatch make_negative_batch(const std::vector<index_t>& anchors, const std::vector<std::vector<index_t>>& negatives = {},
                                         const std::vector<index_t>& positives = {}) {
  PLM_CHECK(!anchors.empty(), "make_negative_batch: no anchors");
  PLM_CHECK(negatives.empty() || negatives.size() == anchors.size(), "make_negative_batch: ", negatives.size(),
            " negative lists for ", anchors.size(), " anchors");
  PLM_CHECK(positives.empty() || positives.size() == anchors.size(), "make_negative_batch: ", positives.size(), " positives for ",
            anchors.size(), " anchors");
  NegativeBatch b;
  b.items = anchors;
  b.rows.anchors = static_cast<index_t>(anchors.size());
  for (std::size_t a = 0; a < negatives.size(); ++a)
    for (index_t n : negatives[a]) b.items.push_back(n), b.rows.negative_anchor.push_back(static_cast<index_t>(a));
  for (std::size_t a = 0; a < positives.size(); ++a)
    if (positives[a] >= 0) b.items.push_back(positives[a]), b.rows.positive_anchor.push_back(static_cast<index_t>(a));
  return b;
}

struct NegativeBatchOptions {
  index_t negatives = 2;   // per anchor (the released code's default)
  bool positives = false;  // a positive per anchor (the entropy hinge); anchors without one then get no negatives
  std::uint64_t seed = 0;
};

// For every anchor (an index into idx), o.negatives negatives drawn by label,
// or from candidates[anchor] when candidates is not empty, and with
// o.positives a positive of its label. Draws depend on (seed, epoch, anchor)
// only (negatives.hpp). Items are indices into idx.
inline NegativeBatch sample_negative_batch(const LabelIndex& idx, const std::vector<index_t>& anchors, std::uint64_t epoch,
                                           const NegativeBatchOptions& o, const std::vector<std::vector<index_t>>& candidates = {}) {
  PLM_CHECK(o.negatives > 0, "sample_negative_batch: negatives per anchor ", o.negatives, " must be positive");
  PLM_CHECK(candidates.empty() || static_cast<index_t>(candidates.size()) == idx.size(), "sample_negative_batch: ", candidates.size(),
            " candidate lists for ", idx.size(), " proteins");
  const NegativeOptions no{o.negatives, o.seed};
  std::vector<std::vector<index_t>> negatives;
  std::vector<index_t> positives;
  for (index_t a : anchors) {
    index_t p = -1;
    if (o.positives) positives.push_back(p = sample_positive(idx, a, epoch, o.seed));
    if (o.positives && p < 0) {  // the hinge compares a negative with its anchor's positive: none, no negatives
      negatives.emplace_back();
      continue;
    }
    negatives.push_back(candidates.empty() ? sample_negatives_by_label(idx, a, epoch, no) : sample_negatives_by_pairs(candidates, a, epoch, no));
  }
  return make_negative_batch(anchors, negatives, positives);
}

// Every epoch: a shuffle of the training proteins by Philox(seed, epoch), cut
// into batches of `batch` anchors, each anchor with its draws for that epoch.
// A batch depends only on (seed, epoch, b), so a resumed run sees the same
// batches. Rows hold the caller's items (e.g. dataset indices).
class NegativeBatchSampler {
 public:
  // items: the training proteins; labels: their classes; with_negatives false:
  // anchors only (a supervised baseline on the same batches).
  NegativeBatchSampler(std::vector<index_t> items, const std::vector<std::int32_t>& labels, index_t batch, NegativeBatchOptions o,
                       bool with_negatives = true)
      : items_(std::move(items)), index_(labels), batch_(batch), o_(o), with_negatives_(with_negatives) {
    PLM_CHECK(!items_.empty() && items_.size() == labels.size(), "NegativeBatchSampler: ", items_.size(), " items and ", labels.size(),
              " labels; both must be equal and non-zero");
    PLM_CHECK(batch > 0, "NegativeBatchSampler: batch ", batch, " must be positive");
  }

  index_t batches() const { return (static_cast<index_t>(items_.size()) + batch_ - 1) / batch_; }  // per epoch
  const std::vector<index_t>& items() const { return items_; }
  const LabelIndex& index() const { return index_; }  // over positions in items()
  // Negatives from candidates[k] for items()[k] (positions in items(): hard_negatives'
  // result, non-interacting partners) instead of by label; empty: by label again.
  void set_candidates(std::vector<std::vector<index_t>> candidates) { candidates_ = std::move(candidates); }

  // Batch b (0 <= b < batches()) of an epoch.
  NegativeBatch batch(std::uint64_t epoch, index_t b) {
    PLM_CHECK(b >= 0 && b < batches(), "NegativeBatchSampler: batch ", b, " outside 0..", batches() - 1);
    if (order_.empty() || epoch != epoch_) {
      order_.resize(items_.size());
      std::iota(order_.begin(), order_.end(), index_t(0));
      Philox rng(o_.seed ^ 0x5f1e0ull, epoch);
      for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.below(static_cast<std::uint32_t>(i))]);
      epoch_ = epoch;
    }
    const auto first = order_.begin() + b * batch_, last = order_.begin() + std::min(static_cast<index_t>(order_.size()), (b + 1) * batch_);
    NegativeBatch nb = with_negatives_ ? sample_negative_batch(index_, {first, last}, epoch, o_, candidates_) : make_negative_batch({first, last});
    for (auto& i : nb.items) i = items_[static_cast<std::size_t>(i)];  // positions -> the caller's items
    return nb;
  }

 private:
  std::vector<index_t> items_;
  LabelIndex index_;
  index_t batch_;
  NegativeBatchOptions o_;
  bool with_negatives_;
  std::vector<std::vector<index_t>> candidates_;
  std::vector<index_t> order_;
  std::uint64_t epoch_ = 0;
};

}  // namespace plm::samplers
