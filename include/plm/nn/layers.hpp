#pragma once
// Transformer blocks, pre-norm with residuals:
//   EncoderLayer: h = x + Attn(Norm(x));             y = h + FF(Norm(h))
//   DecoderLayer: h = x + SelfAttn(Norm(x), causal); h2 = h + CrossAttn(Norm(h), enc); y = h2 + FF(Norm(h2))
// Dropout (the config's rate) sits on every residual branch, as in T5.
// Hugging Face names: <prefix>.layer.0.SelfAttention, .layer.0.layer_norm,
// then .layer.1.EncDecAttention / .layer.1.layer_norm (decoder), and the
// feed-forward block as the last .layer.N.DenseReluDense with its layer_norm.
// An EncoderLayerSpec builds the same block with other names, biases and
// scaling: ESM-2's layer is this block with LayerNorm, rotary attention and a
// plain erf-GELU feed-forward (nn/esm.hpp). With EncoderLayerSpec::post_norm
// the norms follow the residual adds instead (BERT, nn/bert.hpp):
//   h = Norm0(x + Attn(x));                           y = Norm1(h + FF(h))
#include <cmath>
#include <string>

#include "plm/nn/attention.hpp"
#include "plm/nn/config.hpp"
#include "plm/nn/feed_forward.hpp"
#include "plm/nn/policies.hpp"

namespace plm::nn {

namespace detail {
inline AttentionShape attention_shape(const T5Config& c) { return AttentionShape{c.d_model, c.num_heads, c.d_kv, 1.0}; }

// x + branch, where the branch passes through dropout first (in place).
template <class B, class T>
void residual_add(const Dropout& d, ConstView<B, T> x, TensorView<B, T> branch, TensorView<B, T> out, DropoutKey key) {
  if (d.active(key)) d.forward(ConstView<B, T>(branch), branch, key);
  ops<B>::add(x, ConstView<B, T>(branch), out);
}
}  // namespace detail

// An encoder block's parts by full name, with their shapes and dropout rates.
struct EncoderLayerSpec {
  std::string norm0, attention, norm1;  // pre-attention norm, attention, pre-feed-forward norm
  AttentionShape attn;
  double attn_factor = 1.0;  // T5's initialisation factor (when attn.init_std == 0)
  double attn_dropout = 0;   // on the attention probabilities
  FeedForwardSpec ff;
  index_t d_model = 0, d_ff = 0;
  double eps = 1e-6;
  double residual_dropout = 0;  // on both branches before the residual add
  // false: pre-norm (T5, ESM-2); true: post-norm (BERT), where norm0 follows
  // the attention's residual add and norm1 the feed-forward's.
  bool post_norm = false;

  // T5's block: <prefix>.layer.0.{layer_norm, SelfAttention}, .layer.1.{layer_norm, DenseReluDense}.
  template <class Gate>
  static EncoderLayerSpec t5(const std::string& prefix, const T5Config& c) {
    EncoderLayerSpec s;
    s.norm0 = prefix + ".layer.0.layer_norm";
    s.attention = prefix + ".layer.0.SelfAttention";
    s.norm1 = prefix + ".layer.1.layer_norm";
    s.attn = detail::attention_shape(c);
    s.attn_factor = c.initializer_factor;
    s.attn_dropout = c.dropout_rate;
    const std::string ff = prefix + ".layer.1.DenseReluDense";
    s.ff.wi = Gate::gated ? ff + ".wi_0" : ff + ".wi";
    s.ff.wi_1 = ff + ".wi_1";
    s.ff.wo = ff + ".wo";
    s.ff.in_std = c.initializer_factor / std::sqrt(static_cast<double>(c.d_model));
    s.ff.out_std = c.initializer_factor / std::sqrt(static_cast<double>(c.d_ff));
    s.ff.dropout = c.dropout_rate;
    s.d_model = c.d_model;
    s.d_ff = c.d_ff;
    s.eps = c.layer_norm_epsilon;
    s.residual_dropout = c.dropout_rate;
    return s;
  }
};

template <class B, class T, class P>
class EncoderLayer {
  using Norm = typename P::norm::template type<B, T>;
  using FF = FeedForward<B, T, typename P::activation, typename P::gating>;

 public:
  struct Cache {
    typename Norm::Cache norm0, norm1;
    typename Attention<B, T>::Cache attn;
    typename FF::Cache ff;
    Tensor<B, T> n0, a, h, n1, f;  // (B, T, C)
    Tensor<B, T> d_branch, d_norm, d_h;
    DropoutKey key;
  };

  EncoderLayer() = default;
  EncoderLayer(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c)
      : EncoderLayer(ps, EncoderLayerSpec::t5<typename P::gating>(prefix, c)) {}
  EncoderLayer(ParameterSet<B, T>& ps, const EncoderLayerSpec& s)
      : norm0_(ps, s.norm0, s.d_model, s.eps),
        attn_(ps, s.attention, s.attn, s.attn_factor, s.attn_dropout),
        norm1_(ps, s.norm1, s.d_model, s.eps),
        ff_(ps, s.ff, s.d_model, s.d_ff),
        drop_{s.residual_dropout},
        post_norm_(s.post_norm) {}

  const Attention<B, T>& self_attention() const { return attn_; }
  bool post_norm() const { return post_norm_; }

  // x, y: (B, T, C). mask: the stack's shared position bias and key padding.
  void forward(ConstView<B, T> x, const SoftmaxMask<B, T>& mask, TensorView<B, T> y, Cache& c, DropoutKey key = {}) const {
    if (post_norm_) return forward_post_norm(x, mask, y, c, key);
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.n0, &c.a, &c.h, &c.n1, &c.f}) t->resize(s);
    c.key = key;
    norm0_.forward(x, c.n0.view(), c.norm0);
    attn_.forward(c.n0.cview(), c.n0.cview(), mask, c.a.view(), c.attn, key.in_block(DropoutBlock::self_attention));
    detail::residual_add(drop_, x, c.a.view(), c.h.view(), key.in_block(DropoutBlock::self_attention_residual));
    norm1_.forward(c.h.cview(), c.n1.view(), c.norm1);
    ff_.forward(c.n1.cview(), c.f.view(), c.ff, key.in_block(DropoutBlock::feed_forward));
    detail::residual_add(drop_, c.h.cview(), c.f.view(), y, key.in_block(DropoutBlock::feed_forward_residual));
  }

  // dx written; dbias (H, T, T) added to when not empty.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, TensorView<B, T> dbias, Cache& c,
                ConstView<B, T> d_probs_extra = {}) const {
    if (post_norm_) return backward_post_norm(x, dy, dx, dbias, c, d_probs_extra);
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.d_branch, &c.d_norm, &c.d_h}) t->resize(s);
    drop_.backward(dy, c.d_branch.view(), c.key.in_block(DropoutBlock::feed_forward_residual));
    ff_.backward(c.n1.cview(), c.d_branch.cview(), c.d_norm.view(), c.ff);
    norm1_.backward(c.h.cview(), c.d_norm.cview(), c.d_norm.view(), c.norm1);
    ops<B>::add(dy, c.d_norm.cview(), c.d_h.view());
    drop_.backward(c.d_h.cview(), c.d_branch.view(), c.key.in_block(DropoutBlock::self_attention_residual));
    attn_.backward(c.n0.cview(), c.n0.cview(), c.d_branch.cview(), c.d_norm.view(), c.d_norm.view(), dbias, c.attn, d_probs_extra);
    norm0_.backward(x, c.d_norm.cview(), c.d_norm.view(), c.norm0);
    ops<B>::add(c.d_h.cview(), c.d_norm.cview(), dx);
  }

 private:
  // Post-norm (BERT). The cache's tensors hold: a = Attn(x), n0 = x + a (norm0's
  // input), h = Norm0(n0), f = FF(h), n1 = h + f (norm1's input).
  void forward_post_norm(ConstView<B, T> x, const SoftmaxMask<B, T>& mask, TensorView<B, T> y, Cache& c, DropoutKey key) const {
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.n0, &c.a, &c.h, &c.n1, &c.f}) t->resize(s);
    c.key = key;
    attn_.forward(x, x, mask, c.a.view(), c.attn, key.in_block(DropoutBlock::self_attention));
    detail::residual_add(drop_, x, c.a.view(), c.n0.view(), key.in_block(DropoutBlock::self_attention_residual));
    norm0_.forward(c.n0.cview(), c.h.view(), c.norm0);
    ff_.forward(c.h.cview(), c.f.view(), c.ff, key.in_block(DropoutBlock::feed_forward));
    detail::residual_add(drop_, c.h.cview(), c.f.view(), c.n1.view(), key.in_block(DropoutBlock::feed_forward_residual));
    norm1_.forward(c.n1.cview(), y, c.norm1);
  }

  void backward_post_norm(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, TensorView<B, T> dbias, Cache& c,
                          ConstView<B, T> d_probs_extra) const {
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.d_branch, &c.d_norm, &c.d_h}) t->resize(s);
    norm1_.backward(c.n1.cview(), dy, c.d_norm.view(), c.norm1);  // d(h + f)
    drop_.backward(c.d_norm.cview(), c.d_branch.view(), c.key.in_block(DropoutBlock::feed_forward_residual));
    ff_.backward(c.h.cview(), c.d_branch.cview(), c.d_h.view(), c.ff);
    ops<B>::add(c.d_h.cview(), c.d_norm.cview(), c.d_h.view());  // dh: through the feed-forward and the residual
    norm0_.backward(c.n0.cview(), c.d_h.cview(), c.d_norm.view(), c.norm0);  // d(x + a)
    drop_.backward(c.d_norm.cview(), c.d_branch.view(), c.key.in_block(DropoutBlock::self_attention_residual));
    attn_.backward(x, x, c.d_branch.cview(), dx, dx, dbias, c.attn, d_probs_extra);
    ops<B>::add(ConstView<B, T>(dx), c.d_norm.cview(), dx);
  }

  Norm norm0_;
  Attention<B, T> attn_;
  Norm norm1_;
  FF ff_;
  Dropout drop_;
  bool post_norm_ = false;
};

template <class B, class T, class P>
class DecoderLayer {
  using Norm = typename P::norm::template type<B, T>;
  using FF = FeedForward<B, T, typename P::activation, typename P::gating>;
  using Attn = Attention<B, T>;

 public:
  struct Cache {
    typename Norm::Cache norm0, norm1, norm2;
    typename Attn::Cache self_attn, cross_attn;
    typename FF::Cache ff;
    Tensor<B, T> n0, a, h, n1, x_attn, h2, n2, f;  // (B, T, C)
    Tensor<B, T> d_branch, d_norm, d_h, d_h2;
    DropoutKey key;
  };
  // Incremental decoding state of one layer.
  struct StepState {
    typename Attn::KVCache self_kv, cross_kv;
    Cache ws;
  };

  DecoderLayer() = default;
  DecoderLayer(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c)
      : norm0_(ps, prefix + ".layer.0.layer_norm", c.d_model, c.layer_norm_epsilon),
        self_(ps, prefix + ".layer.0.SelfAttention", detail::attention_shape(c), c.initializer_factor, c.dropout_rate),
        norm1_(ps, prefix + ".layer.1.layer_norm", c.d_model, c.layer_norm_epsilon),
        cross_(ps, prefix + ".layer.1.EncDecAttention", detail::attention_shape(c), c.initializer_factor, c.dropout_rate),
        norm2_(ps, prefix + ".layer.2.layer_norm", c.d_model, c.layer_norm_epsilon),
        ff_(ps, prefix + ".layer.2.DenseReluDense", c.d_model, c.d_ff, c.initializer_factor, c.dropout_rate),
        drop_{c.dropout_rate} {}

  const Attn& self_attention() const { return self_; }
  const Attn& cross_attention() const { return cross_; }

  // x, y: (B, T, C); enc: (B, S, C). self_mask: causal + shared bias; cross_mask: encoder padding.
  void forward(ConstView<B, T> x, ConstView<B, T> enc, const SoftmaxMask<B, T>& self_mask, const SoftmaxMask<B, T>& cross_mask,
               TensorView<B, T> y, Cache& c, DropoutKey key = {}) const {
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.n0, &c.a, &c.h, &c.n1, &c.x_attn, &c.h2, &c.n2, &c.f}) t->resize(s);
    c.key = key;
    norm0_.forward(x, c.n0.view(), c.norm0);
    self_.forward(c.n0.cview(), c.n0.cview(), self_mask, c.a.view(), c.self_attn, key.in_block(DropoutBlock::self_attention));
    detail::residual_add(drop_, x, c.a.view(), c.h.view(), key.in_block(DropoutBlock::self_attention_residual));
    norm1_.forward(c.h.cview(), c.n1.view(), c.norm1);
    cross_.forward(c.n1.cview(), enc, cross_mask, c.x_attn.view(), c.cross_attn, key.in_block(DropoutBlock::cross_attention));
    detail::residual_add(drop_, c.h.cview(), c.x_attn.view(), c.h2.view(), key.in_block(DropoutBlock::cross_attention_residual));
    norm2_.forward(c.h2.cview(), c.n2.view(), c.norm2);
    ff_.forward(c.n2.cview(), c.f.view(), c.ff, key.in_block(DropoutBlock::feed_forward));
    detail::residual_add(drop_, c.h2.cview(), c.f.view(), y, key.in_block(DropoutBlock::feed_forward_residual));
  }

  // dx written; d_enc (B, S, C) ADDED to; dbias (H, T, T) added to when not empty.
  void backward(ConstView<B, T> x, ConstView<B, T> enc, ConstView<B, T> dy, TensorView<B, T> dx, TensorView<B, T> d_enc,
                TensorView<B, T> dbias, Cache& c, ConstView<B, T> d_self_probs_extra = {},
                ConstView<B, T> d_cross_probs_extra = {}) const {
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.d_branch, &c.d_norm, &c.d_h, &c.d_h2}) t->resize(s);
    drop_.backward(dy, c.d_branch.view(), c.key.in_block(DropoutBlock::feed_forward_residual));
    ff_.backward(c.n2.cview(), c.d_branch.cview(), c.d_norm.view(), c.ff);
    norm2_.backward(c.h2.cview(), c.d_norm.cview(), c.d_norm.view(), c.norm2);
    ops<B>::add(dy, c.d_norm.cview(), c.d_h2.view());
    drop_.backward(c.d_h2.cview(), c.d_branch.view(), c.key.in_block(DropoutBlock::cross_attention_residual));
    cross_.backward(c.n1.cview(), enc, c.d_branch.cview(), c.d_norm.view(), d_enc, TensorView<B, T>{}, c.cross_attn,
                    d_cross_probs_extra);
    norm1_.backward(c.h.cview(), c.d_norm.cview(), c.d_norm.view(), c.norm1);
    ops<B>::add(c.d_h2.cview(), c.d_norm.cview(), c.d_h.view());
    drop_.backward(c.d_h.cview(), c.d_branch.view(), c.key.in_block(DropoutBlock::self_attention_residual));
    self_.backward(c.n0.cview(), c.n0.cview(), c.d_branch.cview(), c.d_norm.view(), c.d_norm.view(), dbias, c.self_attn,
                   d_self_probs_extra);
    norm0_.backward(x, c.d_norm.cview(), c.d_norm.view(), c.norm0);
    ops<B>::add(c.d_h.cview(), c.d_norm.cview(), dx);
  }

  // Incremental decoding (inference, no dropout) ------------------------------
  void begin_step(ConstView<B, T> enc, index_t capacity, StepState& st) const {
    self_.reserve(st.self_kv, enc.dim(0), capacity);
    cross_.precompute_kv(enc, st.cross_kv, st.ws.cross_attn);
  }
  // x, y: (B, 1, C). self_mask.bias: (H, 1, t+1) for the new position t.
  void step(ConstView<B, T> x, const SoftmaxMask<B, T>& self_mask, const SoftmaxMask<B, T>& cross_mask, TensorView<B, T> y,
            StepState& st) const {
    Cache& c = st.ws;
    const Shape s = x.shape();
    for (Tensor<B, T>* t : {&c.n0, &c.a, &c.h, &c.n1, &c.x_attn, &c.h2, &c.n2, &c.f}) t->resize(s);
    norm0_.forward(x, c.n0.view(), c.norm0);
    self_.forward_step(c.n0.cview(), st.self_kv, true, self_mask, c.a.view(), c.self_attn);
    ops<B>::add(x, c.a.cview(), c.h.view());
    norm1_.forward(c.h.cview(), c.n1.view(), c.norm1);
    cross_.forward_step(c.n1.cview(), st.cross_kv, false, cross_mask, c.x_attn.view(), c.cross_attn);
    ops<B>::add(c.h.cview(), c.x_attn.cview(), c.h2.view());
    norm2_.forward(c.h2.cview(), c.n2.view(), c.norm2);
    ff_.forward(c.n2.cview(), c.f.view(), c.ff);
    ops<B>::add(c.h2.cview(), c.f.cview(), y);
  }

 private:
  Norm norm0_;
  Attn self_;
  Norm norm1_;
  Attn cross_;
  Norm norm2_;
  FF ff_;
  Dropout drop_;
};

}  // namespace plm::nn
