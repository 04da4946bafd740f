#pragma once
// T5's relative position bias: a learned scalar per (bucket, head), where the
// bucket of (query i, key j) depends on j - i: exact for short distances,
// logarithmic up to max_distance, clipped beyond. Bidirectional in the encoder
// (separate buckets for keys before and after the query), causal in the decoder.
// Computed once per forward by a stack and shared by all its layers.
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/packing.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::nn {

// Bucket of relative position (key - query), exactly as Hugging Face's
// T5Attention._relative_position_bucket (the log in float32).
inline std::int32_t relative_position_bucket(index_t relative_position, bool bidirectional, index_t num_buckets,
                                             index_t max_distance) {
  std::int32_t bucket = 0;
  index_t n = num_buckets, rp = relative_position;
  if (bidirectional) {
    n /= 2;
    if (rp > 0) bucket += static_cast<std::int32_t>(n);
    rp = rp < 0 ? -rp : rp;
  } else {
    rp = rp < 0 ? -rp : 0;
  }
  const index_t max_exact = n / 2;
  if (rp < max_exact) return bucket + static_cast<std::int32_t>(rp);
  const float scaled = std::log(static_cast<float>(rp) / static_cast<float>(max_exact)) /
                       static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact))) *
                       static_cast<float>(n - max_exact);
  index_t large = max_exact + static_cast<index_t>(scaled);
  if (large > n - 1) large = n - 1;
  return bucket + static_cast<std::int32_t>(large);
}

template <class B, class T>
class RelativePositionBias {
 public:
  struct Cache {
    Tensor<B, std::int32_t> buckets;  // (Tq * Tk)
    Tensor<B, T> rows;                // (Tq * Tk, H)
    std::vector<std::int32_t> host, by_distance;
  };

  RelativePositionBias() = default;
  // name: the attention module that owns the table, e.g. "encoder.block.0.layer.0.SelfAttention".
  RelativePositionBias(ParameterSet<B, T>& ps, const std::string& name, index_t num_buckets, index_t max_distance,
                       index_t heads, bool bidirectional, double init_std)
      : table_(add_param(ps, name + ".relative_attention_bias.weight", Shape{num_buckets, heads}, init_std)),
        num_buckets_(num_buckets), max_distance_(max_distance), heads_(heads), bidirectional_(bidirectional) {}

  bool bidirectional() const { return bidirectional_; }

  // bias: (H, Tq, Tk); query i sits at absolute position q_offset + i, key j at j.
  void forward(index_t Tq, index_t Tk, index_t q_offset, TensorView<B, T> bias, Cache& c) const {
    PLM_CHECK(bias.shape() == Shape({heads_, Tq, Tk}), "RelativePositionBias: bias ", bias.shape(), " must be (H, Tq, Tk) = ",
              Shape({heads_, Tq, Tk}));
    c.host.resize(static_cast<std::size_t>(Tq * Tk));
    fill_buckets(Tq, Tk, q_offset, c.host.data(), c.by_distance);
    gather_rows(c);
    // (Tq*Tk, H) -> (H, Tq*Tk)
    ops<B>::transpose12(c.rows.cview().reshape(Shape{1, Tq * Tk, heads_, 1}), bias.reshape(Shape{1, heads_, Tq * Tk, 1}));
  }

  // Packed sequences (core/packing.hpp): bias holds each sequence's (H, Lq_i, Lk_i)
  // block at H * pk.block(i), both axes counted from the sequence's start.
  void forward(const AttentionPacking& pk, TensorView<B, T> bias, Cache& c) const {
    PLM_CHECK(bias.numel() == heads_ * pk.pairs(), "RelativePositionBias: packed bias of ", bias.numel(), " values, but ", heads_,
              " heads over ", pk.pairs(), " (query, key) pairs need ", heads_ * pk.pairs());
    c.host.resize(static_cast<std::size_t>(pk.pairs()));
    for (index_t i = 0; i < pk.sequences(); ++i) fill_buckets(pk.q.length(i), pk.k.length(i), 0, c.host.data() + pk.block(i), c.by_distance);
    gather_rows(c);
    for (index_t i = 0; i < pk.sequences(); ++i) {
      const index_t n = pk.q.length(i) * pk.k.length(i), r = pk.block(i);
      ops<B>::transpose12(ConstView<B, T>(c.rows.data() + r * heads_, Shape{1, n, heads_, 1}),
                          TensorView<B, T>(bias.data() + r * heads_, Shape{1, heads_, n, 1}));
    }
  }

  // dbias: (H, Tq, Tk) summed over every layer that used the bias; adds into the table's gradient.
  void backward(ConstView<B, T> dbias, Cache& c) const {
    const index_t n = dbias.numel() / heads_;
    ops<B>::transpose12(dbias.reshape(Shape{1, heads_, n, 1}), c.rows.view().reshape(Shape{1, n, heads_, 1}));
    ops<B>::scatter_add(c.buckets.cview(), c.rows.cview(), table_.grad());
  }
  // The same for the packed forward: dbias holds the per-sequence blocks.
  void backward(const AttentionPacking& pk, ConstView<B, T> dbias, Cache& c) const {
    PLM_CHECK(dbias.numel() == heads_ * pk.pairs(), "RelativePositionBias: packed dbias of ", dbias.numel(), " values for ",
              pk.pairs(), " pairs of ", heads_, " heads");
    for (index_t i = 0; i < pk.sequences(); ++i) {
      const index_t n = pk.q.length(i) * pk.k.length(i), r = pk.block(i);
      ops<B>::transpose12(ConstView<B, T>(dbias.data() + r * heads_, Shape{1, heads_, n, 1}),
                          TensorView<B, T>(c.rows.data() + r * heads_, Shape{1, n, heads_, 1}));
    }
    ops<B>::scatter_add(c.buckets.cview(), c.rows.cview(), table_.grad());
  }

 private:
  // Buckets of a (Tq, Tk) block, row-major, into out. The bucket depends only on
  // key - query, so it is computed once per distance.
  void fill_buckets(index_t Tq, index_t Tk, index_t q_offset, std::int32_t* out, std::vector<std::int32_t>& by_distance) const {
    const index_t lo = 0 - (q_offset + Tq - 1), hi = Tk - 1 - q_offset;  // distances j - (q_offset + i)
    by_distance.resize(static_cast<std::size_t>(hi - lo + 1));
    for (index_t d = lo; d <= hi; ++d)
      by_distance[static_cast<std::size_t>(d - lo)] = relative_position_bucket(d, bidirectional_, num_buckets_, max_distance_);
    for (index_t i = 0; i < Tq; ++i) {
      const std::int32_t* row = by_distance.data() + (0 - (q_offset + i) - lo);
      std::copy(row, row + Tk, out + i * Tk);
    }
  }
  // c.host's buckets to the device and their table rows into c.rows (n, H).
  void gather_rows(Cache& c) const {
    const index_t n = static_cast<index_t>(c.host.size());
    c.buckets.resize(Shape{n});
    upload(c.host.data(), c.buckets.view());
    c.rows.resize(Shape{n, heads_});
    ops<B>::gather(ConstView<B, T>(table_.value()), c.buckets.cview(), c.rows.view());
  }

  Param<B, T> table_;
  index_t num_buckets_ = 32, max_distance_ = 128, heads_ = 1;
  bool bidirectional_ = true;
};

}  // namespace plm::nn
