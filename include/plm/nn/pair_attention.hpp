#pragma once
// PairAttention: the single-head attention layer of negative-mining
// fine-tuning (arXiv 2405.17902) on an encoder's last hidden states: Wq, Wk, Wv
// of (d, d) without bias and without output projection, scores not scaled by
// 1/sqrt(d) unless asked (the released code does not scale). It is
// nn::Attention with one head of width d and no output projection, so the
// q / k / v code exists once; this file adds how the recipe uses the layer
// inside one batch whose rows are anchors, negatives and positives (PairRows):
//
//   self-attention over the anchors      forward(x, x, valid, out, c): the
//                                        supervised path (pool, readout)
//   cross-attention of query rows over   forward_pairs: each query row
//   their anchors' states                (a negative or a positive) attends over
//                                        its anchor's row, gathered by index with
//                                        its valid mask; backward_pairs
//                                        scatter-adds the keys' gradient back
//                                        onto the anchor rows of dH
//
// The probabilities (N, 1, Tq, Tk) stay in the cache for the attention-space
// losses (objectives/negative_mining.hpp), whose gradient comes back as the
// extra probability gradient. Parameters: <name>.q.weight, <name>.k.weight,
// <name>.v.weight, each (d, d) drawn from N(0, 1/d).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/nn/attention.hpp"

namespace plm::nn {

// How the rows of one batch pair up: anchors first, then the negatives, then
// the positives, each of the latter naming its anchor's row. Encoding all of
// them in one padded batch runs the shared encoder once per step.
// samplers/negative_batch.hpp builds it together with every row's item.
struct PairRows {
  index_t anchors = 0;                   // rows [0, anchors)
  std::vector<index_t> negative_anchor;  // row anchors + k: a negative of anchor row negative_anchor[k]
  std::vector<index_t> positive_anchor;  // row first_positive() + k: a positive of anchor row positive_anchor[k]

  index_t negatives() const { return static_cast<index_t>(negative_anchor.size()); }
  index_t positives() const { return static_cast<index_t>(positive_anchor.size()); }
  index_t rows() const { return anchors + negatives() + positives(); }
  index_t first_negative() const { return anchors; }
  index_t first_positive() const { return anchors + negatives(); }

  // Every anchor index names an anchor row; at most one positive per anchor.
  void check(const char* where) const {
    PLM_CHECK(anchors > 0, where, ": a batch needs at least one anchor row");
    for (std::size_t k = 0; k < negative_anchor.size(); ++k)
      PLM_CHECK(negative_anchor[k] >= 0 && negative_anchor[k] < anchors, where, ": negative ", k, " (row ", anchors + index_t(k),
                ") names anchor row ", negative_anchor[k], ", outside the ", anchors, " anchor rows");
    std::vector<std::uint8_t> seen(static_cast<std::size_t>(anchors), 0);
    for (std::size_t k = 0; k < positive_anchor.size(); ++k) {
      const index_t a = positive_anchor[k];
      PLM_CHECK(a >= 0 && a < anchors, where, ": positive ", k, " (row ", first_positive() + index_t(k), ") names anchor row ", a,
                ", outside the ", anchors, " anchor rows");
      PLM_CHECK(!seen[static_cast<std::size_t>(a)], where, ": anchor row ", a, " has more than one positive");
      seen[static_cast<std::size_t>(a)] = 1;
    }
  }
  // For each negative, the index among the positives of its anchor's positive; -1 when that anchor has none.
  std::vector<index_t> positive_of_negatives() const {
    std::vector<index_t> of_anchor(static_cast<std::size_t>(anchors), -1), out;
    for (std::size_t k = 0; k < positive_anchor.size(); ++k) of_anchor[static_cast<std::size_t>(positive_anchor[k])] = static_cast<index_t>(k);
    for (index_t a : negative_anchor) out.push_back(of_anchor[static_cast<std::size_t>(a)]);
    return out;
  }
};

template <class B, class T>
class PairAttention {
 public:
  using Cache = typename Attention<B, T>::Cache;

  // Query rows [first, first + size()) of a batch attending over their anchors' rows.
  struct Pairs {
    index_t first = 0;
    Tensor<B, std::int32_t> anchor;      // (n): the anchor row of each query row
    Tensor<B, T> kv;                     // (n, S, d): the anchors' states, gathered
    Tensor<B, std::uint8_t> kv_valid;    // (n, S): their valid masks, gathered
    ConstView<B, std::uint8_t> q_valid;  // (n, S): the query rows' masks (a view of the batch's)
    Tensor<B, T> out;                    // (n, S, d)
    // (n, 1, S, S): d loss / d probs(), zero after forward_pairs; a loss writes or adds into it
    Tensor<B, T> d_probs;
    Tensor<B, T> d_out, d_q, d_kv;       // backward workspaces
    Cache attn;

    index_t size() const { return anchor.numel(); }
    ConstView<B, T> probs() const { return attn.probs.cview(); }  // (n, 1, S, S)
  };

  PairAttention() = default;
  // d: hidden size of the encoder below; scaled = true divides scores by sqrt(d).
  PairAttention(ParameterSet<B, T>& ps, const std::string& name, index_t d, bool scaled = false)
      : attn_(ps, name, shape(d, scaled)), scaled_(scaled) {}

  index_t dim() const { return attn_.shape().d_model; }
  bool scaled() const { return scaled_; }

  // x_q (N, Tq, d) attends over x_kv (N, Tk, d) with key_valid (N, Tk) -> out (N, Tq, d);
  // the probabilities (N, 1, Tq, Tk) stay in c.probs.
  void forward(ConstView<B, T> x_q, ConstView<B, T> x_kv, ConstView<B, std::uint8_t> key_valid, TensorView<B, T> out, Cache& c) const {
    PLM_CHECK(key_valid.shape() == Shape({x_kv.dim(0), x_kv.dim(1)}), "PairAttention: key_valid ", key_valid.shape(),
              " must be (N, Tk) = ", Shape({x_kv.dim(0), x_kv.dim(1)}));
    attn_.forward(x_q, x_kv, SoftmaxMask<B, T>{{}, key_valid, false}, out, c);
  }
  // dout (N, Tq, d); d_probs_extra (N, 1, Tq, Tk) or empty. dx_q is written and
  // dx_kv added to (pass the same view for self-attention); parameter gradients added.
  void backward(ConstView<B, T> x_q, ConstView<B, T> x_kv, ConstView<B, T> dout, TensorView<B, T> dx_q, TensorView<B, T> dx_kv,
                Cache& c, ConstView<B, T> d_probs_extra = {}) const {
    attn_.backward(x_q, x_kv, dout, dx_q, dx_kv, TensorView<B, T>{}, c, d_probs_extra);
  }

  // H (R, S, d) with valid (R, S): rows [first, first + n) attend over rows
  // anchor_of[k] (n = anchor_of.size() > 0) of the same batch.
  void forward_pairs(ConstView<B, T> H, ConstView<B, std::uint8_t> valid, index_t first, const std::vector<index_t>& anchor_of,
                     Pairs& p) const {
    const index_t n = static_cast<index_t>(anchor_of.size()), d = dim();
    PLM_CHECK(H.rank() == 3 && H.dim(2) == d && valid.shape() == Shape({H.dim(0), H.dim(1)}), "PairAttention::forward_pairs: H ",
              H.shape(), " and valid ", valid.shape(), " must be (R, S, ", d, ") and (R, S)");
    const index_t R = H.dim(0), S = H.dim(1);
    PLM_CHECK(n > 0 && first >= 0 && first + n <= R, "PairAttention::forward_pairs: query rows [", first, ", ", first + n,
              ") must be a non-empty range of the batch's ", R, " rows");
    std::vector<std::int32_t> host(static_cast<std::size_t>(n));
    for (index_t k = 0; k < n; ++k) {
      const index_t a = anchor_of[static_cast<std::size_t>(k)];
      PLM_CHECK(a >= 0 && a < R, "PairAttention::forward_pairs: query row ", first + k, " names anchor row ", a,
                ", outside the batch's ", R, " rows");
      host[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(a);
    }
    p.first = first;
    p.anchor.resize(Shape{n});
    upload(host.data(), p.anchor.view());
    p.kv.resize(Shape{n, S, d});
    ops<B>::gather(H.reshape(Shape{R, S * d}), p.anchor.cview(), p.kv.view().reshape(Shape{n, S * d}));
    p.kv_valid.resize(Shape{n, S});
    ops<B>::gather(valid, p.anchor.cview(), p.kv_valid.view());
    p.q_valid = valid.slice(first, first + n);
    p.out.resize(Shape{n, S, d});
    forward(H.slice(first, first + n), p.kv.cview(), p.kv_valid.cview(), p.out.view(), p.attn);
    p.d_probs.resize(p.attn.probs.shape());
    ops<B>::fill(p.d_probs.view(), T(0));
  }

  // Adds d loss / d H into dH (R, S, d): the query rows, and the anchor rows
  // by scatter-add (an anchor with several query rows sums them). The loss's
  // gradient is p.d_probs; d_out (n, S, d) is the gradient on p.out, or empty
  // when the pairs' outputs feed nothing but the attention loss.
  void backward_pairs(ConstView<B, T> H, TensorView<B, T> dH, Pairs& p, ConstView<B, T> d_out = {}) const {
    const index_t n = p.size(), S = p.kv.dim(1), d = dim(), R = H.dim(0);
    PLM_CHECK(dH.shape() == H.shape(), "PairAttention::backward_pairs: dH ", dH.shape(), " must match H ", H.shape());
    if (d_out.empty()) {
      p.d_out.resize(p.out.shape());
      ops<B>::fill(p.d_out.view(), T(0));
      d_out = p.d_out.cview();
    }
    PLM_CHECK(d_out.shape() == p.out.shape(), "PairAttention::backward_pairs: d_out ", d_out.shape(), " must be ", p.out.shape());
    p.d_q.resize(Shape{n, S, d});
    p.d_kv.resize(Shape{n, S, d});
    ops<B>::fill(p.d_kv.view(), T(0));
    backward(H.slice(p.first, p.first + n), p.kv.cview(), d_out, p.d_q.view(), p.d_kv.view(), p.attn, p.d_probs.cview());
    ops<B>::axpy(T(1), p.d_q.cview(), dH.slice(p.first, p.first + n));
    ops<B>::scatter_add(p.anchor.cview(), p.d_kv.cview().reshape(Shape{n, S * d}), dH.reshape(Shape{R, S * d}));
  }

 private:
  static AttentionShape shape(index_t d, bool scaled) {
    PLM_CHECK(d > 0, "PairAttention: hidden size ", d, " must be positive");
    AttentionShape s{d, 1, d, scaled ? 1.0 / std::sqrt(double(d)) : 1.0};
    s.output_projection = false;
    s.init_std = 1.0 / std::sqrt(double(d));
    return s;
  }
  Attention<B, T> attn_;
  bool scaled_ = false;
};

}  // namespace plm::nn
