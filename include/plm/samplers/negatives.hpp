#pragma once
// Positives and negatives for negative-mining fine-tuning (arXiv 2405.17902).
//
//   by label      a negative of anchor i: a label other than i's, uniformly among
//                 the labels that have members, then a member of it uniformly
//                 (the released code's rule)
//   by pairs      partners known not to interact with the anchor (interaction tasks)
//   hard          the proteins of other labels whose embeddings are most similar
//                 (cosine) to the anchor's, recomputed by the caller every K steps
//
// Unlike the released code, draws never mutate the pools, and every draw comes
// from Philox(seed, stream = (epoch, anchor)): the same seed repeats a run,
// another epoch gives other negatives, and an anchor's draws do not depend on
// the batch it is in.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"

namespace plm::samplers {

namespace detail {
inline std::uint64_t draw_stream(std::uint64_t epoch, index_t anchor) { return (epoch << 32) ^ static_cast<std::uint64_t>(anchor); }
}  // namespace detail

// Members of every label, from one label per protein.
class LabelIndex {
 public:
  explicit LabelIndex(std::vector<std::int32_t> labels) : labels_(std::move(labels)) {
    for (std::size_t i = 0; i < labels_.size(); ++i) {
      PLM_CHECK(labels_[i] >= 0, "LabelIndex: protein ", i, " has negative label ", labels_[i]);
      members_[labels_[i]].push_back(static_cast<index_t>(i));
    }
    for (const auto& [label, m] : members_) label_list_.push_back(label);
  }
  index_t size() const { return static_cast<index_t>(labels_.size()); }
  std::int32_t label(index_t i) const {
    PLM_CHECK(i >= 0 && i < size(), "LabelIndex: protein ", i, " outside 0..", size() - 1);
    return labels_[static_cast<std::size_t>(i)];
  }
  const std::vector<index_t>& members(std::int32_t label) const {
    const auto it = members_.find(label);
    PLM_CHECK(it != members_.end(), "LabelIndex: no protein has label ", label);
    return it->second;
  }
  const std::vector<std::int32_t>& labels() const { return label_list_; }

 private:
  std::vector<std::int32_t> labels_;
  std::map<std::int32_t, std::vector<index_t>> members_;
  std::vector<std::int32_t> label_list_;
};

struct NegativeOptions {
  index_t negatives = 2;  // per anchor (the released code's default)
  std::uint64_t seed = 0;
};

// A positive (same label, another protein) for anchor i, or -1 when i is its label's only member.
inline index_t sample_positive(const LabelIndex& idx, index_t anchor, std::uint64_t epoch, std::uint64_t seed) {
  const auto& m = idx.members(idx.label(anchor));
  if (m.size() < 2) return -1;
  Philox rng(seed ^ 0x706f73ull, detail::draw_stream(epoch, anchor));
  // uniform over the other members: draw among size - 1 and skip the anchor
  const auto k = static_cast<std::size_t>(rng.below(static_cast<std::uint32_t>(m.size() - 1)));
  const auto self = static_cast<std::size_t>(std::lower_bound(m.begin(), m.end(), anchor) - m.begin());
  return m[k < self ? k : k + 1];
}

// o.negatives proteins of other labels for anchor i (with replacement, as the released code).
inline std::vector<index_t> sample_negatives_by_label(const LabelIndex& idx, index_t anchor, std::uint64_t epoch, const NegativeOptions& o) {
  const std::int32_t y = idx.label(anchor);
  const auto& labels = idx.labels();
  PLM_CHECK(labels.size() >= 2, "sample_negatives_by_label: every protein has label ", y, "; negatives need a second label");
  const auto self = static_cast<std::size_t>(std::lower_bound(labels.begin(), labels.end(), y) - labels.begin());
  Philox rng(o.seed ^ 0x6e6567ull, detail::draw_stream(epoch, anchor));
  std::vector<index_t> out;
  for (index_t k = 0; k < o.negatives; ++k) {
    auto l = static_cast<std::size_t>(rng.below(static_cast<std::uint32_t>(labels.size() - 1)));
    if (l >= self) ++l;
    const auto& m = idx.members(labels[l]);
    out.push_back(m[rng.below(static_cast<std::uint32_t>(m.size()))]);
  }
  return out;
}

// o.negatives partners known not to interact with the anchor, drawn uniformly
// from its list (non_partners[i]); an anchor with an empty list is an error naming it.
inline std::vector<index_t> sample_negatives_by_pairs(const std::vector<std::vector<index_t>>& non_partners, index_t anchor,
                                                      std::uint64_t epoch, const NegativeOptions& o) {
  PLM_CHECK(anchor >= 0 && anchor < static_cast<index_t>(non_partners.size()), "sample_negatives_by_pairs: anchor ", anchor,
            " outside 0..", non_partners.size() - 1);
  const auto& m = non_partners[static_cast<std::size_t>(anchor)];
  PLM_CHECK(!m.empty(), "sample_negatives_by_pairs: protein ", anchor, " has no known non-interacting partner");
  Philox rng(o.seed ^ 0x706169ull, detail::draw_stream(epoch, anchor));
  std::vector<index_t> out;
  for (index_t k = 0; k < o.negatives; ++k) out.push_back(m[rng.below(static_cast<std::uint32_t>(m.size()))]);
  return out;
}

// Hard negatives: for every protein, the k proteins of other labels with the
// highest cosine similarity of their embeddings (N, C), most similar first.
// The similarity matrix is one GEMM on the backend; rows are ranked on the host.
template <class B, class T>
std::vector<std::vector<index_t>> hard_negatives(ConstView<B, T> embeddings, const LabelIndex& idx, index_t k) {
  PLM_CHECK(embeddings.rank() == 2 && embeddings.dim(0) == idx.size(), "hard_negatives: embeddings ", embeddings.shape(),
            " must be (", idx.size(), ", C)");
  PLM_CHECK(k > 0, "hard_negatives: k must be positive, got ", k);
  const index_t N = embeddings.dim(0), C = embeddings.dim(1);
  std::vector<T> host(static_cast<std::size_t>(N * C));
  download(embeddings, host.data());
  for (index_t i = 0; i < N; ++i) {  // unit rows, so the GEMM gives cosines
    double s = 0;
    for (index_t c = 0; c < C; ++c) s += double(host[static_cast<std::size_t>(i * C + c)]) * double(host[static_cast<std::size_t>(i * C + c)]);
    PLM_CHECK(s > 0 && std::isfinite(s), "hard_negatives: embedding of protein ", i, " has norm ", std::sqrt(s));
    const double inv = 1.0 / std::sqrt(s);
    for (index_t c = 0; c < C; ++c) host[static_cast<std::size_t>(i * C + c)] = static_cast<T>(double(host[static_cast<std::size_t>(i * C + c)]) * inv);
  }
  Tensor<B, T> unit(Shape{N, C}), sim(Shape{N, N});
  upload(host.data(), unit.view());
  ops<B>::matmul(unit.cview(), false, unit.cview(), true, sim.view());  // (N, N) cosines
  std::vector<T> s(static_cast<std::size_t>(N * N));
  download(sim.cview(), s.data());
  std::vector<std::vector<index_t>> out(static_cast<std::size_t>(N));
  std::vector<index_t> cand;
  for (index_t i = 0; i < N; ++i) {
    cand.clear();
    for (index_t j = 0; j < N; ++j)
      if (idx.label(j) != idx.label(i)) cand.push_back(j);
    const auto kk = static_cast<std::size_t>(std::min<index_t>(k, static_cast<index_t>(cand.size())));
    const T* row = s.data() + i * N;
    std::partial_sort(cand.begin(), cand.begin() + static_cast<long>(kk), cand.end(),
                      [&](index_t a, index_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    out[static_cast<std::size_t>(i)].assign(cand.begin(), cand.begin() + static_cast<long>(kk));
  }
  return out;
}

}  // namespace plm::samplers
