#pragma once
// T5Model: the T5 / Ankh encoder-decoder.
//
//   logits = LMHead(DecoderStack(Embed(dec_ids), EncoderStack(Embed(enc_ids))))
//
// One ParameterSet holds every parameter under its Hugging Face name. Each
// stack computes its relative position bias once (the table lives in its first
// layer, `*.block.0.layer.0.SelfAttention.relative_attention_bias.weight`) and
// shares it with all its layers; the gradients of every layer's bias are summed
// before they reach the table. With tie_word_embeddings the LM head reuses
// `shared`; with scale_decoder_outputs (by default: when tied, as original T5)
// the decoder output is scaled by d_model^-0.5 before the head.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plm/nn/config.hpp"
#include "plm/nn/embedding.hpp"
#include "plm/nn/layers.hpp"
#include "plm/nn/position_bias.hpp"

namespace plm::nn {

namespace detail {
template <class B, class T, class P>
struct StackCommon {
  using Norm = typename P::norm::template type<B, T>;
  T5Config cfg;
  bool has_bias = P::position::relative_bias;
  RelativePositionBias<B, T> bias;
  Norm final_norm;
  Dropout drop;

  StackCommon() = default;

  // Shared ends of both stacks' backward: through the output dropout and final
  // norm into c.d_a, and a zeroed dbias every layer adds into (empty without a bias).
  template <class Cache>
  TensorView<B, T> begin_backward(ConstView<B, T> d_out, Cache& c) const {
    c.d_a.resize(d_out.shape());
    c.d_b.resize(d_out.shape());
    drop.backward(d_out, c.d_a.view(), c.key.at(DropoutSite::output));
    final_norm.backward(c.hidden.back().cview(), c.d_a.cview(), c.d_a.view(), c.final_norm);
    if (!has_bias) return {};
    c.d_bias.resize(c.bias.shape());
    ops<B>::fill(c.d_bias.view(), T(0));
    return c.d_bias.view();
  }
  // The summed dbias into the table, and c.d_a through the embedding dropout into dx.
  template <class Cache>
  void end_backward(TensorView<B, T> dx, Cache& c) const {
    if (has_bias && c.packed) bias.backward(c.packing, c.d_bias.cview(), c.bias_cache);
    if (has_bias && !c.packed) bias.backward(c.d_bias.cview(), c.bias_cache);
    drop.backward(c.d_a.cview(), dx, c.key.at(DropoutSite::embeddings));
  }

  StackCommon(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c, bool bidirectional) : cfg(c), drop{c.dropout_rate} {
    if (has_bias)
      bias = RelativePositionBias<B, T>(ps, prefix + ".block.0.layer.0.SelfAttention", c.relative_attention_num_buckets,
                                        c.relative_attention_max_distance, c.num_heads, bidirectional,
                                        c.initializer_factor / std::sqrt(static_cast<double>(c.d_model)));
  }
};
}  // namespace detail

// The encoder: embeddings in, final-normed hidden states out.
//
// Layer is any type with EncoderLayer's interface: a constructor
// (ParameterSet&, prefix, const T5Config&), a Cache type, and
//   forward(x, const SoftmaxMask&, y, Cache&, DropoutKey)
//   backward(x, dy, dx, dbias, Cache&, d_probs_extra)
// so a user-written layer plugs into a stack without changing plm
// (examples/custom_model does this).
template <class B, class T, class P, class Layer = EncoderLayer<B, T, P>>
class EncoderStack {
 public:
  struct Cache {
    std::vector<typename Layer::Cache> layers;
    std::vector<Tensor<B, T>> hidden;  // input of layer i; hidden[L] = last layer output
    typename RelativePositionBias<B, T>::Cache bias_cache;
    typename detail::StackCommon<B, T, P>::Norm::Cache final_norm;
    Tensor<B, T> bias, d_bias, d_a, d_b;
    TensorView<B, const std::uint8_t> key_valid;
    DropoutKey key;
    bool packed = false;
    AttentionPacking packing;  // packed input: self-attention within each sequence
  };

  EncoderStack() = default;
  EncoderStack(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c)
      : common_(ps, prefix, c, /*bidirectional=*/true) {
    for (index_t i = 0; i < c.num_layers; ++i) layers_.emplace_back(ps, prefix + ".block." + std::to_string(i), c);
    common_.final_norm = typename detail::StackCommon<B, T, P>::Norm(ps, prefix + ".final_layer_norm", c.d_model, c.layer_norm_epsilon);
  }

  const std::vector<Layer>& layers() const { return layers_; }

  // x: (B, S, C) embeddings; key_valid: (B, S) or empty; out: (B, S, C).
  void forward(ConstView<B, T> x, ConstView<B, std::uint8_t> key_valid, TensorView<B, T> out, Cache& c, DropoutKey key = {}) const {
    const index_t S = x.dim(1);
    c.key_valid = key_valid;
    c.packed = false;
    SoftmaxMask<B, T> mask;
    mask.key_valid = key_valid;
    if (common_.has_bias) {
      c.bias.resize(Shape{common_.cfg.num_heads, S, S});
      common_.bias.forward(S, S, 0, c.bias.view(), c.bias_cache);
      mask.bias = c.bias.cview();
    }
    run(x, mask, out, c, key);
  }
  // Packed input: x (1, N, C) holds the sequences of `packing` end to end; out (1, N, C).
  void forward_packed(ConstView<B, T> x, const Packing& packing, TensorView<B, T> out, Cache& c, DropoutKey key = {}) const {
    PLM_CHECK(x.rank() == 3 && x.dim(0) == 1 && x.dim(1) == packing.tokens(), "EncoderStack::forward_packed: input ", x.shape(),
              " must be (1, ", packing.tokens(), ", C) for its ", packing.sequences(), " sequences");
    c.key_valid = {};
    c.packed = true;
    c.packing = AttentionPacking::self(packing);
    SoftmaxMask<B, T> mask;
    mask.packed = &c.packing;
    if (common_.has_bias) {
      c.bias.resize(Shape{common_.cfg.num_heads * c.packing.pairs()});
      common_.bias.forward(c.packing, c.bias.view(), c.bias_cache);
      mask.bias = c.bias.cview();
    }
    run(x, mask, out, c, key);
  }

 private:
  void run(ConstView<B, T> x, const SoftmaxMask<B, T>& mask, TensorView<B, T> out, Cache& c, DropoutKey key) const {
    const index_t L = static_cast<index_t>(layers_.size());
    c.layers.resize(layers_.size());
    c.hidden.resize(layers_.size() + 1);
    c.key = key;
    for (auto& h : c.hidden) h.resize(x.shape());
    common_.drop.forward(x, c.hidden[0].view(), key.at(DropoutSite::embeddings));
    for (index_t i = 0; i < L; ++i)
      layers_[static_cast<std::size_t>(i)].forward(c.hidden[i].cview(), mask, c.hidden[i + 1].view(), c.layers[i], key.in_layer(static_cast<std::uint64_t>(i)));
    common_.final_norm.forward(c.hidden[L].cview(), out, c.final_norm);
    common_.drop.forward(ConstView<B, T>(out), out, key.at(DropoutSite::output));
  }

 public:
  // d_out: (B, S, C) -> dx (B, S, C) written. extra: optional per-layer gradients on attention probabilities.
  void backward(ConstView<B, T> d_out, TensorView<B, T> dx, Cache& c,
                const std::vector<TensorView<B, const T>>* d_probs_extra = nullptr) const {
    const index_t L = static_cast<index_t>(layers_.size());
    const TensorView<B, T> dbias = common_.begin_backward(d_out, c);
    for (index_t i = L - 1; i >= 0; --i) {
      ConstView<B, T> extra = d_probs_extra && static_cast<index_t>(d_probs_extra->size()) > i ? (*d_probs_extra)[i] : ConstView<B, T>{};
      layers_[i].backward(c.hidden[i].cview(), c.d_a.cview(), c.d_b.view(), dbias, c.layers[i], extra);
      std::swap(c.d_a, c.d_b);
    }
    common_.end_backward(dx, c);
  }

 private:
  detail::StackCommon<B, T, P> common_;
  std::vector<Layer> layers_;
};

// The decoder: causal self-attention with a causal position bias, cross-attention to the encoder.
template <class B, class T, class P>
class DecoderStack {
  using Layer = DecoderLayer<B, T, P>;

 public:
  struct Cache {
    std::vector<typename Layer::Cache> layers;
    std::vector<Tensor<B, T>> hidden;
    typename RelativePositionBias<B, T>::Cache bias_cache;
    typename detail::StackCommon<B, T, P>::Norm::Cache final_norm;
    Tensor<B, T> bias, d_bias, d_a, d_b;
    DropoutKey key;
    bool packed = false;
    AttentionPacking packing, cross_packing;  // packed input: self- and cross-attention per sequence
  };
  struct StepState {
    std::vector<typename Layer::StepState> layers;
    typename RelativePositionBias<B, T>::Cache bias_cache;
    typename detail::StackCommon<B, T, P>::Norm::Cache final_norm;
    Tensor<B, T> bias, a, b, scratch;
    Tensor<B, std::uint8_t> enc_valid, valid_scratch;  // owned: reordering permutes it
    bool has_enc_valid = false;
    index_t position = 0, capacity = 0;
  };

  DecoderStack() = default;
  DecoderStack(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c)
      : common_(ps, prefix, c, /*bidirectional=*/false) {
    for (index_t i = 0; i < c.num_decoder_layers; ++i) layers_.emplace_back(ps, prefix + ".block." + std::to_string(i), c);
    common_.final_norm = typename detail::StackCommon<B, T, P>::Norm(ps, prefix + ".final_layer_norm", c.d_model, c.layer_norm_epsilon);
  }

  const std::vector<Layer>& layers() const { return layers_; }

  // x: (B, T, C) embeddings; dec_valid: (B, T) or empty (causal only, as HF by default);
  // enc: (B, S, C); enc_valid: (B, S) or empty; out: (B, T, C).
  void forward(ConstView<B, T> x, ConstView<B, std::uint8_t> dec_valid, ConstView<B, T> enc, ConstView<B, std::uint8_t> enc_valid,
               TensorView<B, T> out, Cache& c, DropoutKey key = {}) const {
    const index_t Tn = x.dim(1);
    c.packed = false;
    SoftmaxMask<B, T> self_mask, cross_mask;
    self_mask.causal = true;
    self_mask.key_valid = dec_valid;
    cross_mask.key_valid = enc_valid;
    if (common_.has_bias) {
      c.bias.resize(Shape{common_.cfg.num_heads, Tn, Tn});
      common_.bias.forward(Tn, Tn, 0, c.bias.view(), c.bias_cache);
      self_mask.bias = c.bias.cview();
    }
    run(x, enc, self_mask, cross_mask, out, c, key);
  }
  // Packed input: x (1, T, C) holds the target sequences of `packing` end to
  // end, enc (1, S, C) the encoder's output for the sources of `enc_packing`
  // (sequence i of each belong together); out (1, T, C).
  void forward_packed(ConstView<B, T> x, const Packing& packing, ConstView<B, T> enc, const Packing& enc_packing,
                      TensorView<B, T> out, Cache& c, DropoutKey key = {}) const {
    PLM_CHECK(x.rank() == 3 && x.dim(0) == 1 && x.dim(1) == packing.tokens(), "DecoderStack::forward_packed: input ", x.shape(),
              " must be (1, ", packing.tokens(), ", C) for its ", packing.sequences(), " sequences");
    PLM_CHECK(enc.rank() == 3 && enc.dim(0) == 1 && enc.dim(1) == enc_packing.tokens(), "DecoderStack::forward_packed: encoder output ",
              enc.shape(), " must be (1, ", enc_packing.tokens(), ", C)");
    c.packed = true;
    c.packing = AttentionPacking::self(packing);
    c.cross_packing = AttentionPacking(packing, enc_packing);
    SoftmaxMask<B, T> self_mask, cross_mask;
    self_mask.causal = true;
    self_mask.packed = &c.packing;
    cross_mask.packed = &c.cross_packing;
    if (common_.has_bias) {
      c.bias.resize(Shape{common_.cfg.num_heads * c.packing.pairs()});
      common_.bias.forward(c.packing, c.bias.view(), c.bias_cache);
      self_mask.bias = c.bias.cview();
    }
    run(x, enc, self_mask, cross_mask, out, c, key);
  }

 private:
  void run(ConstView<B, T> x, ConstView<B, T> enc, const SoftmaxMask<B, T>& self_mask, const SoftmaxMask<B, T>& cross_mask,
           TensorView<B, T> out, Cache& c, DropoutKey key) const {
    const index_t L = static_cast<index_t>(layers_.size());
    c.layers.resize(layers_.size());
    c.hidden.resize(layers_.size() + 1);
    c.key = key;
    for (auto& h : c.hidden) h.resize(x.shape());
    common_.drop.forward(x, c.hidden[0].view(), key.at(DropoutSite::embeddings));
    for (index_t i = 0; i < L; ++i)
      layers_[i].forward(c.hidden[i].cview(), enc, self_mask, cross_mask, c.hidden[i + 1].view(), c.layers[i], key.in_layer(static_cast<std::uint64_t>(i)));
    common_.final_norm.forward(c.hidden[L].cview(), out, c.final_norm);
    common_.drop.forward(ConstView<B, T>(out), out, key.at(DropoutSite::output));
  }

 public:
  // dx written; d_enc (B, S, C) ADDED to.
  void backward(ConstView<B, T> enc, ConstView<B, T> d_out, TensorView<B, T> dx, TensorView<B, T> d_enc, Cache& c) const {
    const index_t L = static_cast<index_t>(layers_.size());
    const TensorView<B, T> dbias = common_.begin_backward(d_out, c);
    for (index_t i = L - 1; i >= 0; --i) {
      layers_[i].backward(c.hidden[i].cview(), enc, c.d_a.cview(), c.d_b.view(), d_enc, dbias, c.layers[i]);
      std::swap(c.d_a, c.d_b);
    }
    common_.end_backward(dx, c);
  }

  // Incremental decoding: keys and values of past positions are kept, so each
  // new position costs O(t) attention work instead of re-running the prefix.
  void begin_step(ConstView<B, T> enc, ConstView<B, std::uint8_t> enc_valid, index_t capacity, StepState& st) const {
    st.layers.resize(layers_.size());
    for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i].begin_step(enc, capacity, st.layers[i]);
    st.has_enc_valid = !enc_valid.empty();
    if (st.has_enc_valid) {
      st.enc_valid.resize(enc_valid.shape());
      ops<B>::copy(enc_valid, st.enc_valid.view());
    }
    st.position = 0;
    st.capacity = capacity;
  }
  // x: (B, 1, C) embedding of the token at position st.position; out: (B, 1, C).
  void step(ConstView<B, T> x, TensorView<B, T> out, StepState& st) const {
    PLM_CHECK(st.position < st.capacity, "DecoderStack::step: position ", st.position, " beyond the reserved ", st.capacity);
    const index_t t = st.position;
    SoftmaxMask<B, T> self_mask, cross_mask;
    if (st.has_enc_valid) cross_mask.key_valid = st.enc_valid.cview();
    if (common_.has_bias) {
      st.bias.resize(Shape{common_.cfg.num_heads, 1, t + 1});
      common_.bias.forward(1, t + 1, t, st.bias.view(), st.bias_cache);
      self_mask.bias = st.bias.cview();
    }
    st.a.resize(x.shape());
    st.b.resize(x.shape());
    ops<B>::copy(x, st.a.view());
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      layers_[i].step(st.a.cview(), self_mask, cross_mask, st.b.view(), st.layers[i]);
      std::swap(st.a, st.b);
    }
    common_.final_norm.forward(st.a.cview(), out, st.final_norm);
    st.position += 1;
  }

  // Makes row b of every cache a copy of row rows[b] (beam search: keep the
  // surviving hypotheses). rows: (B) indices into the current batch.
  void reorder(ConstView<B, std::int32_t> rows, StepState& st) const {
    auto permute = [&](Tensor<B, T>& t) {
      if (t.numel() == 0) return;
      const index_t Bn = t.dim(0), row = t.numel() / Bn;
      PLM_CHECK(rows.numel() == Bn, "DecoderStack::reorder: ", rows.numel(), " rows for a batch of ", Bn);
      st.scratch.resize(Shape{Bn, row});
      ops<B>::gather(t.cview().reshape(Shape{Bn, row}), rows, st.scratch.view());
      ops<B>::copy(st.scratch.cview(), t.view().reshape(Shape{Bn, row}));
    };
    for (auto& l : st.layers) {
      permute(l.self_kv.k);
      permute(l.self_kv.v);
      permute(l.cross_kv.k);
      permute(l.cross_kv.v);
    }
    if (st.has_enc_valid) {
      const index_t Bn = st.enc_valid.dim(0), S = st.enc_valid.dim(1);
      st.valid_scratch.resize(Shape{Bn, S});
      ops<B>::gather(st.enc_valid.cview(), rows, st.valid_scratch.view());
      ops<B>::copy(st.valid_scratch.cview(), st.enc_valid.view());
    }
  }

 private:
  detail::StackCommon<B, T, P> common_;
  std::vector<Layer> layers_;
};

template <class B, class T = float, class P = ModelPolicies<GeluTanh>>
class T5Model {
  static_assert(is_backend_v<B>, "plm: T5Model<B, T, P> needs a backend tag: plm::cpu or plm::cuda");
  static_assert(is_compute_type_v<T>, "plm: T5Model computes in float or double");

 public:
  using backend = B;
  using value_type = T;
  using policies = P;
  using Encoder = EncoderStack<B, T, P>;
  using Decoder = DecoderStack<B, T, P>;

  struct Cache {
    typename Encoder::Cache enc;
    typename Decoder::Cache dec;
    Tensor<B, T> enc_x, enc_out, dec_x, dec_out, d_enc_out, d_dec_out, d_x;
    TensorView<B, const std::int32_t> enc_ids, dec_ids;
    TensorView<B, const std::uint8_t> enc_valid, dec_valid;
  };
  struct DecodeState {
    typename Decoder::StepState dec;
    typename Encoder::Cache enc;
    Tensor<B, T> enc_x, enc_out, x, out;
    Tensor<B, std::int32_t> ids;
  };

  // A model that owns its parameters: allocated and drawn from `seed`.
  explicit T5Model(const T5Config& cfg, std::uint64_t seed = 0) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg);
    owned_->allocate();
    owned_->init(seed);
  }
  // A model whose every parameter a checkpoint fills next (io::load_t5): allocated, not drawn.
  T5Model(const T5Config& cfg, Uninitialized) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg);
    owned_->allocate();
  }
  // A model in the caller's set: registers its parameters (Hugging Face names,
  // no prefix) into ps; the caller adds its own layers (heads) and then calls
  // ps.allocate() and ps.init(seed). io::load_t5_weights fills this model's
  // part from a checkpoint afterwards.
  T5Model(ParameterSet<B, T>& ps, const T5Config& cfg) { build(ps, cfg); }
  T5Model(const T5Model&) = delete;
  T5Model& operator=(const T5Model&) = delete;
  T5Model(T5Model&&) = default;
  T5Model& operator=(T5Model&&) = default;

  const T5Config& config() const { return cfg_; }
  // The set the model lives in (its own, or the caller's, shared with other layers).
  ParameterSet<B, T>& params() { return *params_; }
  const ParameterSet<B, T>& params() const { return *params_; }
  // The ids of this model's own parameters within params().
  ParamRange param_range() const { return range_; }
  bool has_decoder() const { return cfg_.num_decoder_layers > 0; }
  const Encoder& encoder() const { return encoder_; }

  // The encoder interface shared with EsmModel (embedding, fine-tuning heads):
  // width, vocabulary, depth, and transformers' encoder hidden_states[k] for
  // k < L after encode() (hidden_states[L] is encode()'s output).
  index_t d_model() const { return cfg_.d_model; }
  index_t vocab_size() const { return cfg_.vocab_size; }
  index_t num_encoder_layers() const { return cfg_.num_layers; }
  ConstView<B, T> hidden_state(const Cache& c, index_t k) const {
    PLM_CHECK(k >= 0 && k < static_cast<index_t>(c.enc.hidden.size()), "T5Model::hidden_state: ", k, " outside 0..",
              static_cast<index_t>(c.enc.hidden.size()) - 1, " (run encode() first)");
    return c.enc.hidden[static_cast<std::size_t>(k)].cview();
  }
  const Decoder& decoder() const { return decoder_; }

  // Encoder only: ids (B, S) -> out (B, S, C), the final-normed hidden states
  // (the embeddings of downstream tasks). valid: (B, S), 1 = token, 0 = padding; empty = all tokens.
  // pass: Pass::eval() (the default: no dropout, transformers' model.eval()) or
  // Pass::train(seed) (the config's dropout_rate at every site, keyed by seed).
  void encode(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> out, Cache& c,
              Pass pass = Pass::eval()) const {
    check_ids("encode", ids, valid);
    PLM_CHECK(out.shape() == Shape({ids.dim(0), ids.dim(1), cfg_.d_model}), "T5Model::encode: out ", out.shape(), " must be ",
              Shape({ids.dim(0), ids.dim(1), cfg_.d_model}));
    c.enc_ids = ids;
    c.enc_valid = valid;
    c.enc_x.resize(out.shape());
    shared_.forward(ids, c.enc_x.view());
    encoder_.forward(c.enc_x.cview(), valid, out, c.enc, DropoutKey::of(pass).in_stack(DropoutStack::encoder));
  }
  // Packed sources (core/packing.hpp): ids (1, N) hold the sequences of `packing`
  // end to end, out (1, N, C). No padding is computed on.
  void encode_packed(ConstView<B, std::int32_t> ids, const Packing& packing, TensorView<B, T> out, Cache& c,
                     Pass pass = Pass::eval()) const {
    check_packed("encode_packed", ids, packing);
    PLM_CHECK(out.shape() == Shape({1, ids.dim(1), cfg_.d_model}), "T5Model::encode_packed: out ", out.shape(), " must be ",
              Shape({1, ids.dim(1), cfg_.d_model}));
    c.enc_ids = ids;
    c.enc_valid = {};
    c.enc_x.resize(out.shape());
    shared_.forward(ids, c.enc_x.view());
    encoder_.forward_packed(c.enc_x.cview(), packing, out, c.enc, DropoutKey::of(pass).in_stack(DropoutStack::encoder));
  }
  // Gradient of encode()'s output into the parameters.
  void encode_backward(ConstView<B, T> d_out, Cache& c,
                       const std::vector<TensorView<B, const T>>* d_probs_extra = nullptr) const {
    c.d_x.resize(d_out.shape());
    encoder_.backward(d_out, c.d_x.view(), c.enc, d_probs_extra);
    shared_.backward(c.enc_ids, c.d_x.cview());
  }

  // Full model: enc_ids (B, S), dec_ids (B, T) (the shifted targets) -> logits (B, T, V).
  // pass as for encode().
  void forward(ConstView<B, std::int32_t> enc_ids, ConstView<B, std::uint8_t> enc_valid, ConstView<B, std::int32_t> dec_ids,
               TensorView<B, T> logits, Cache& c, Pass pass = Pass::eval(), ConstView<B, std::uint8_t> dec_valid = {}) const {
    PLM_CHECK(has_decoder(), "T5Model::forward: this model has no decoder (num_decoder_layers = 0); use encode()");
    check_ids("forward (decoder)", dec_ids, dec_valid);
    PLM_CHECK(dec_ids.dim(0) == enc_ids.dim(0), "T5Model::forward: encoder batch ", enc_ids.dim(0), " != decoder batch ", dec_ids.dim(0));
    const index_t Bn = enc_ids.dim(0), S = enc_ids.dim(1), Tn = dec_ids.dim(1), C = cfg_.d_model;
    PLM_CHECK(logits.shape() == Shape({Bn, Tn, cfg_.vocab_size}), "T5Model::forward: logits ", logits.shape(), " must be ",
              Shape({Bn, Tn, cfg_.vocab_size}));
    c.enc_out.resize(Shape{Bn, S, C});
    encode(enc_ids, enc_valid, c.enc_out.view(), c, pass);
    c.dec_ids = dec_ids;
    c.dec_valid = dec_valid;
    c.dec_x.resize(Shape{Bn, Tn, C});
    c.dec_out.resize(Shape{Bn, Tn, C});
    shared_.forward(dec_ids, c.dec_x.view());
    decoder_.forward(c.dec_x.cview(), dec_valid, c.enc_out.cview(), enc_valid, c.dec_out.view(), c.dec, DropoutKey::of(pass).in_stack(DropoutStack::decoder));
    head_forward(c.dec_out.cview(), logits);
  }

  // Packed batch: enc_ids (1, S) and dec_ids (1, T) hold sequence i of the sources
  // and of the (shifted) targets at the offsets of enc and dec; logits (1, T, V).
  // backward() then takes dlogits (1, T, V).
  void forward_packed(ConstView<B, std::int32_t> enc_ids, const Packing& enc, ConstView<B, std::int32_t> dec_ids, const Packing& dec,
                      TensorView<B, T> logits, Cache& c, Pass pass = Pass::eval()) const {
    PLM_CHECK(has_decoder(), "T5Model::forward: this model has no decoder (num_decoder_layers = 0); use encode()");
    check_packed("forward_packed (decoder)", dec_ids, dec);
    PLM_CHECK(enc.sequences() == dec.sequences(), "T5Model::forward_packed: ", enc.sequences(), " packed sources but ", dec.sequences(),
              " packed targets");
    const index_t S = enc_ids.dim(1), Tn = dec_ids.dim(1), C = cfg_.d_model;
    PLM_CHECK(logits.shape() == Shape({1, Tn, cfg_.vocab_size}), "T5Model::forward_packed: logits ", logits.shape(), " must be ",
              Shape({1, Tn, cfg_.vocab_size}));
    c.enc_out.resize(Shape{1, S, C});
    encode_packed(enc_ids, enc, c.enc_out.view(), c, pass);
    c.dec_ids = dec_ids;
    c.dec_valid = {};
    c.dec_x.resize(Shape{1, Tn, C});
    c.dec_out.resize(Shape{1, Tn, C});
    shared_.forward(dec_ids, c.dec_x.view());
    decoder_.forward_packed(c.dec_x.cview(), dec, c.enc_out.cview(), enc, c.dec_out.view(), c.dec,
                            DropoutKey::of(pass).in_stack(DropoutStack::decoder));
    head_forward(c.dec_out.cview(), logits);
  }

  // dlogits (B, T, V) -> parameter gradients (added).
  void backward(ConstView<B, T> dlogits, Cache& c) const {
    c.d_dec_out.resize(c.dec_out.shape());
    head_backward(c.dec_out.cview(), dlogits, c.d_dec_out.view());
    c.d_enc_out.resize(c.enc_out.shape());
    ops<B>::fill(c.d_enc_out.view(), T(0));
    c.d_x.resize(c.dec_x.shape());
    decoder_.backward(c.enc_out.cview(), c.d_dec_out.cview(), c.d_x.view(), c.d_enc_out.view(), c.dec);
    shared_.backward(c.dec_ids, c.d_x.cview());
    encode_backward(c.d_enc_out.cview(), c);
  }

  // --- incremental decoding ---------------------------------------------------
  // Encodes the source once and prepares per-layer key/value caches for up to
  // max_len decoder positions.
  void begin_decoding(ConstView<B, std::int32_t> enc_ids, ConstView<B, std::uint8_t> enc_valid, index_t max_len, DecodeState& st) const {
    PLM_CHECK(has_decoder(), "T5Model::begin_decoding: this model has no decoder");
    check_ids("begin_decoding", enc_ids, enc_valid);
    const index_t Bn = enc_ids.dim(0), S = enc_ids.dim(1), C = cfg_.d_model;
    st.enc_x.resize(Shape{Bn, S, C});
    st.enc_out.resize(Shape{Bn, S, C});
    shared_.forward(enc_ids, st.enc_x.view());
    encoder_.forward(st.enc_x.cview(), enc_valid, st.enc_out.view(), st.enc);
    decoder_.begin_step(st.enc_out.cview(), enc_valid, max_len, st.dec);
  }
  // Beam search: row b of the decoding state becomes a copy of row rows[b].
  void reorder_decoding(ConstView<B, std::int32_t> rows, DecodeState& st) const { decoder_.reorder(rows, st.dec); }

  // Feeds one token per sequence (B) at the next position; logits: (B, V) for the position after it.
  void decode_step(ConstView<B, std::int32_t> tokens, TensorView<B, T> logits, DecodeState& st) const {
    const index_t Bn = tokens.numel(), C = cfg_.d_model;
    PLM_CHECK(logits.shape() == Shape({Bn, cfg_.vocab_size}), "T5Model::decode_step: logits ", logits.shape(), " must be ",
              Shape({Bn, cfg_.vocab_size}));
    st.x.resize(Shape{Bn, 1, C});
    st.out.resize(Shape{Bn, 1, C});
    shared_.forward(tokens.reshape(Shape{Bn, 1}), st.x.view());
    decoder_.step(st.x.cview(), st.out.view(), st.dec);
    head_forward(st.out.cview(), logits.reshape(Shape{Bn, 1, cfg_.vocab_size}));
  }

 private:
  void build(ParameterSet<B, T>& ps, const T5Config& cfg) {
    cfg_ = cfg;
    params_ = &ps;
    cfg_.validate();
    const std::string want = feed_forward_proj_name<typename P::activation, typename P::gating>();
    PLM_CHECK(cfg_.feed_forward_proj == want, "T5Model: config has feed_forward_proj '", cfg_.feed_forward_proj,
              "' but this model type is built for '", want, "'; use the matching alias (AnkhModel = gated-gelu, Ankh3Model = gated-silu)");
    range_.begin = ps.size();
    const double f = cfg_.initializer_factor;
    const double d = static_cast<double>(cfg_.d_model);
    // A model built from a config must start near a uniform prediction (first
    // loss near ln(V)); a checkpoint's weights replace all of this on loading.
    // - Untied: transformers draws the LM head with std 1, so the first logits
    //   are O(sqrt(d_model)) and the first loss several times ln(V); std
    //   d_model^-1/2 still leaves logits of std ~1 (+11-12% over ln(V)
    //   measured). std 0.5 d_model^-1/2 gives logits of std ~0.5 (a loss
    //   ~0.125 over ln(V)); much smaller (1/d_model) slowed [S2S] learning of
    //   the default pre-training run by half.
    // - Tied: the head is `shared` scaled by d_model^-1/2, and the decoder
    //   output still carries its input token's embedding, so with std-1
    //   embeddings that token's logit is ~sqrt(d_model) (first loss ~1.6x
    //   ln(V)); embeddings of std d_model^-1/2 bring it to ~1.
    const bool tied_head = cfg_.tie_word_embeddings && cfg_.num_decoder_layers > 0;
    shared_ = Embedding<B, T>(ps, "shared", cfg_.vocab_size, cfg_.d_model, tied_head ? f / std::sqrt(d) : f * 1.0);
    encoder_ = Encoder(ps, "encoder", cfg_);
    if (cfg_.num_decoder_layers > 0) {
      decoder_ = Decoder(ps, "decoder", cfg_);
      if (!cfg_.tie_word_embeddings) lm_head_ = Linear<B, T>(ps, "lm_head", cfg_.d_model, cfg_.vocab_size, 0.5 * f / std::sqrt(d));
    }
    range_.end = ps.size();
  }
  void check_ids(const char* where, ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid) const {
    PLM_CHECK(ids.rank() == 2, "T5Model::", where, ": ids ", ids.shape(), " must be (B, T)");
    if (!valid.empty())
      PLM_CHECK(valid.shape() == ids.shape(), "T5Model::", where, ": mask ", valid.shape(), " must match ids ", ids.shape());
  }
  void check_packed(const char* where, ConstView<B, std::int32_t> ids, const Packing& p) const {
    PLM_CHECK(ids.rank() == 2 && ids.dim(0) == 1 && ids.dim(1) == p.tokens(), "T5Model::", where, ": packed ids ", ids.shape(),
              " must be (1, ", p.tokens(), ") for ", p.sequences(), " sequences");
  }
  double head_scale() const { return cfg_.scales_decoder_outputs() ? 1.0 / std::sqrt(static_cast<double>(cfg_.d_model)) : 1.0; }
  // The head's weight (V, C): `shared` when tied, lm_head otherwise.
  const Param<B, T>& head_weight() const { return cfg_.tie_word_embeddings ? shared_.weight() : lm_head_.weight(); }
  // logits = s h W^T, s = head_scale().
  void head_forward(ConstView<B, T> h, TensorView<B, T> logits) const {
    ops<B>::matmul(h.reshape(Shape{h.shape().rows(), cfg_.d_model}), false, ConstView<B, T>(head_weight().value()), true,
                   logits.reshape(Shape{logits.shape().rows(), cfg_.vocab_size}), static_cast<T>(head_scale()));
  }
  void head_backward(ConstView<B, T> h, ConstView<B, T> dlogits, TensorView<B, T> dh) const {
    const auto h2 = h.reshape(Shape{h.shape().rows(), cfg_.d_model});
    const auto g2 = dlogits.reshape(Shape{dlogits.shape().rows(), cfg_.vocab_size});
    const T s = static_cast<T>(head_scale());
    ops<B>::matmul(g2, true, h2, false, head_weight().grad(), s, T(1));
    ops<B>::matmul(g2, false, ConstView<B, T>(head_weight().value()), false, dh.reshape(Shape{dh.shape().rows(), cfg_.d_model}), s);
  }

  T5Config cfg_;
  std::unique_ptr<ParameterSet<B, T>> owned_;  // empty when the model lives in a caller's set
  ParameterSet<B, T>* params_ = nullptr;
  ParamRange range_;
  Embedding<B, T> shared_;
  Encoder encoder_;
  Decoder decoder_;
  Linear<B, T> lm_head_;
};

// The Ankh family: gated gelu (tanh) FFN, RMS norm, relative position buckets.
using AnkhPolicies = ModelPolicies<GeluTanh, Gated, RMSNormPolicy, RelativeBuckets>;
// Ankh2 / Ankh3: gated silu.
using Ankh3Policies = ModelPolicies<Silu, Gated, RMSNormPolicy, RelativeBuckets>;
template <class B, class T = float> using AnkhModel = T5Model<B, T, AnkhPolicies>;
template <class B, class T = float> using Ankh3Model = T5Model<B, T, Ankh3Policies>;

}  // namespace plm::nn

// With PLM_PRECOMPILED the common aliases come from one compiled unit.
#if defined(PLM_PRECOMPILED)
#include "plm/precompiled.hpp"
#endif
