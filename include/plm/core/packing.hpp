#pragma once
// Packed batches: sequences of different lengths laid end to end on one token
// axis, described by their offsets (as flash-attention's varlen API and
// esm.cpp do). A packed batch of token ids is (1, N), N the sum of the
// lengths; its activations are (1, N, C). Linear layers, norms, feed-forward
// blocks and the LM head treat the N tokens as rows and never touch padding;
// attention, the relative position bias and rotary positions are computed per
// sequence (nn/attention.hpp) from an AttentionPacking.
//
// Both live on the host: the per-sequence loops are driven from there on every
// backend, and the device sees contiguous slices.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/shape.hpp"

namespace plm {

class Packing {
 public:
  Packing() = default;
  // Sequences of these lengths, in order; every length must be > 0.
  explicit Packing(const std::vector<index_t>& lengths) {
    offsets_.reserve(lengths.size() + 1);
    for (std::size_t i = 0; i < lengths.size(); ++i) {
      PLM_CHECK(lengths[i] > 0, "Packing: sequence ", i, " has length ", lengths[i], "; packed sequences must not be empty");
      offsets_.push_back(offsets_.back() + lengths[i]);
      max_ = std::max(max_, lengths[i]);
    }
  }
  // From offsets: offsets[0] == 0, strictly increasing; offsets.size() - 1 sequences.
  static Packing from_offsets(const std::vector<index_t>& offsets) {
    PLM_CHECK(!offsets.empty(), "Packing: no offsets (n sequences need n + 1)");
    PLM_CHECK(offsets[0] == 0, "Packing: offsets must start at 0, not ", offsets[0]);
    std::vector<index_t> lengths;
    for (std::size_t i = 1; i < offsets.size(); ++i) lengths.push_back(offsets[i] - offsets[i - 1]);
    return Packing(lengths);
  }

  index_t sequences() const { return static_cast<index_t>(offsets_.size()) - 1; }
  index_t tokens() const { return offsets_.back(); }
  index_t offset(index_t i) const { return offsets_[static_cast<std::size_t>(i)]; }
  index_t length(index_t i) const { return offsets_[static_cast<std::size_t>(i) + 1] - offsets_[static_cast<std::size_t>(i)]; }
  index_t max_length() const { return max_; }
  const std::vector<index_t>& offsets() const { return offsets_; }
  // Each token's position within its own sequence (0 at every sequence's start).
  std::vector<std::int32_t> positions() const {
    std::vector<std::int32_t> p(static_cast<std::size_t>(tokens()));
    for (index_t i = 0; i < sequences(); ++i)
      for (index_t t = 0; t < length(i); ++t) p[static_cast<std::size_t>(offset(i) + t)] = static_cast<std::int32_t>(t);
    return p;
  }
  bool operator==(const Packing& o) const { return offsets_ == o.offsets_; }
  bool operator!=(const Packing& o) const { return !(*this == o); }

 private:
  std::vector<index_t> offsets_{0};
  index_t max_ = 0;
};

// Attention between a packed query axis and a packed key axis with the same
// number of sequences: a query of sequence i sees only the keys of sequence i
// (a block-diagonal mask). The per-sequence score and probability blocks
// (H, Lq_i, Lk_i) lie one after another: block i starts at H * block(i).
struct AttentionPacking {
  Packing q, k;
  std::vector<index_t> blocks{0};  // blocks[i] = sum over j < i of Lq_j * Lk_j

  AttentionPacking() = default;
  AttentionPacking(Packing queries, Packing keys) : q(std::move(queries)), k(std::move(keys)) {
    PLM_CHECK(q.sequences() == k.sequences(), "AttentionPacking: ", q.sequences(), " query sequences but ", k.sequences(),
              " key sequences");
    blocks.reserve(static_cast<std::size_t>(q.sequences()) + 1);
    for (index_t i = 0; i < q.sequences(); ++i) blocks.push_back(blocks.back() + q.length(i) * k.length(i));
  }
  // Self-attention within each sequence.
  static AttentionPacking self(const Packing& p) { return AttentionPacking(p, p); }

  index_t sequences() const { return q.sequences(); }
  index_t block(index_t i) const { return blocks[static_cast<std::size_t>(i)]; }
  // (query, key) pairs over all sequences; per head.
  index_t pairs() const { return blocks.back(); }
};

}  // namespace plm
