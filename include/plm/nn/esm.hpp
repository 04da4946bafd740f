#pragma once
// EsmModel: ESM-2 (Lin et al. 2023), Hugging Face's EsmForMaskedLM, built from
// the same layers as T5:
//
//   x0     = Embed(ids) * s            token dropout: s = 0 at <mask> and at
//                                      padding, else (1 - 0.15 * 0.8) / (1 - r_b),
//                                      r_b = <mask> share of sequence b's tokens
//   h_L    = EncoderLayer^L(x0)        pre-norm LayerNorm blocks, rotary
//                                      attention scaled by d_head^-1/2, biases,
//                                      erf-GELU feed-forward (EncoderLayerSpec)
//   out    = LayerNorm(h_L)            esm.encoder.emb_layer_norm_after
//   logits = LN(gelu(out Wd + bd)) E^T + b     the LM head, E tied to Embed
//
// Without token dropout s is 1 at tokens and 0 at padding (transformers
// multiplies the embeddings by the attention mask). ESM-1b
// (position_embedding_type "absolute", emb_layer_norm_before) instead has
//   x0 = LN(Embed(ids) * s + P[pos]) * valid    pos = pad_token_id + 1, + 2, ...
//                                              along a row's non-pad tokens,
//                                              pad_token_id at pad tokens
// and no rotary turn inside attention. Parameters carry the
// EsmForMaskedLM names (esm.encoder.layer.N.attention.self.query.weight, ...)
// so checkpoints map one to one; the contact head's regression is kept so a
// directory round-trips, but takes no part in the masked-LM forward.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/nn/embedding.hpp"
#include "plm/nn/layers.hpp"
#include "plm/nn/mlm_head.hpp"
#include "plm/nn/norm.hpp"
#include "plm/nn/position_embedding.hpp"

namespace plm::nn {

// The runtime sizes of an ESM model, named as transformers' EsmConfig.
struct EsmConfig {
  index_t vocab_size = 33;
  index_t hidden_size = 320;
  index_t num_hidden_layers = 6;
  index_t num_attention_heads = 20;
  index_t intermediate_size = 1280;
  double hidden_dropout_prob = 0.0;
  double attention_probs_dropout_prob = 0.0;
  index_t max_position_embeddings = 1026;
  double rope_theta = 10000.0;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-5;
  std::string position_embedding_type = "rotary";
  bool emb_layer_norm_before = false;
  bool token_dropout = true;
  std::int32_t mask_token_id = 32;
  std::int32_t pad_token_id = 1;
  bool tie_word_embeddings = true;

  static constexpr index_t max_width = index_t(1) << 20, max_vocab = index_t(1) << 24, max_heads = 4096, max_depth = 1024;

  index_t d_head() const { return hidden_size / num_attention_heads; }

  // ESM-2 8M (6 layers, d 320, 20 heads) and 35M (12 layers, d 480, 20 heads).
  static EsmConfig esm2_8m() { return EsmConfig{}; }
  static EsmConfig esm2_35m() {
    EsmConfig c;
    c.hidden_size = 480;
    c.num_hidden_layers = 12;
    c.intermediate_size = 1920;
    return c;
  }

  // Refuses what this model cannot build, naming the key.
  void validate(const std::string& where = "EsmConfig") const {
    detail::validate_encoder_sizes(*this, where);
    PLM_CHECK(position_embedding_type == "rotary" || position_embedding_type == "absolute", where, ": position_embedding_type '",
              position_embedding_type,
              "' is not supported (plm builds ESM-2's \"rotary\" and ESM-1b's learned \"absolute\" positions; relative_key variants are not implemented)");
    PLM_CHECK(position_embedding_type != "rotary" || d_head() % 2 == 0, where,
              ": rotary positions need an even head width, hidden_size / num_attention_heads = ", d_head());
    PLM_CHECK(position_embedding_type != "absolute" || (pad_token_id + 1 < max_position_embeddings), where,
              ": absolute positions count from pad_token_id + 1 = ", pad_token_id + 1, ", outside max_position_embeddings ",
              max_position_embeddings);
    PLM_CHECK(std::isfinite(rope_theta) && rope_theta > 0, where, ": rope_theta = ", rope_theta, " must be positive");
    PLM_CHECK(mask_token_id >= 0 && mask_token_id < vocab_size, where, ": mask_token_id ", mask_token_id, " is outside the vocabulary of ",
              vocab_size);
    PLM_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, where, ": pad_token_id ", pad_token_id, " is outside the vocabulary of ",
              vocab_size);
  }
};

// ESM-2's policies: plain erf-GELU feed-forward, LayerNorm, rotary positions.
using EsmPolicies = ModelPolicies<GeluErf, Plain, LayerNormPolicy, Rotary>;

template <class B, class T = float, class P = EsmPolicies>
class EsmModel {
  static_assert(std::is_same_v<typename P::norm, LayerNormPolicy>, "plm: EsmModel: ESM checkpoints hold LayerNorm weights and biases");
  static_assert(!P::gating::gated, "plm: EsmModel: ESM's feed-forward is not gated");
  using Layer = EncoderLayer<B, T, P>;
  using Norm = LayerNorm<B, T>;

 public:
  using backend = B;
  using value_type = T;
  using policies = P;

  struct Cache {
    ConstView<B, std::int32_t> ids;
    std::vector<std::int32_t> host_ids;
    std::vector<T> host_factor;
    Tensor<B, T> emb, factor;                 // (B, T, C), (B*T)
    // ESM-1b's embeddings: position ids, the sum before emb_layer_norm_before, 1 at tokens / 0 at padding
    std::vector<std::int32_t> host_positions;
    std::vector<T> host_valid;
    Tensor<B, std::int32_t> position_ids;     // (B, T)
    Tensor<B, T> pre_norm, valid_factor;      // (B, T, C), (B*T)
    typename PositionEmbedding<B, T>::Cache positions;
    typename Norm::Cache emb_norm;
    std::vector<Tensor<B, T>> hidden;         // hidden[0] = x0, hidden[i + 1] = output of layer i
    std::vector<typename Layer::Cache> layers;
    typename Norm::Cache final_norm;
    Tensor<B, T> out;                         // (B, T, C): the final-normed states
    typename MaskedLMHead<B, T>::Cache head;
    Tensor<B, T> d_out, d_a, d_b;             // backward workspaces
    AttentionPacking packing;                 // packed input: self-attention within each sequence
  };

  // A model that owns its parameters, drawn as transformers draws them:
  // N(0, initializer_range^2) for every matrix and embedding, biases 0, norms 1.
  explicit EsmModel(const EsmConfig& cfg, std::uint64_t seed = 0) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg, true);
    owned_->allocate();
    owned_->init(seed);
  }
  // Allocated, not drawn: a checkpoint fills every parameter next (io::load_esm).
  EsmModel(const EsmConfig& cfg, Uninitialized) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg, true);
    owned_->allocate();
  }
  // In the caller's set, next to the caller's own layers (heads).
  EsmModel(ParameterSet<B, T>& ps, const EsmConfig& cfg) { build(ps, cfg, true); }
  // The encoder alone in the caller's set: encode() only, no LM or contact head
  // (io::load_esm_weights then takes the encoder half of a full checkpoint).
  EsmModel(ParameterSet<B, T>& ps, const EsmConfig& cfg, EncoderOnly) { build(ps, cfg, false); }
  EsmModel(const EsmModel&) = delete;
  EsmModel& operator=(const EsmModel&) = delete;
  EsmModel(EsmModel&&) = default;
  EsmModel& operator=(EsmModel&&) = default;

  const EsmConfig& config() const { return cfg_; }
  ParameterSet<B, T>& params() { return *params_; }
  const ParameterSet<B, T>& params() const { return *params_; }
  ParamRange param_range() const { return range_; }
  const std::vector<Layer>& layers() const { return layers_; }
  bool has_lm_head() const { return lm_head_; }

  // The encoder interface shared with T5Model (embedding, fine-tuning heads):
  // width, vocabulary, depth, and transformers' hidden_states[k] for k < L
  // after encode() (hidden_states[L] is encode()'s output).
  index_t d_model() const { return cfg_.hidden_size; }
  index_t vocab_size() const { return cfg_.vocab_size; }
  index_t num_encoder_layers() const { return cfg_.num_hidden_layers; }
  ConstView<B, T> hidden_state(const Cache& c, index_t k) const {
    PLM_CHECK(k >= 0 && k < static_cast<index_t>(c.hidden.size()), "EsmModel::hidden_state: ", k, " outside 0..",
              static_cast<index_t>(c.hidden.size()) - 1, " (run encode() first)");
    return c.hidden[static_cast<std::size_t>(k)].cview();
  }

  // ids (B, T) -> out (B, T, C): the final-normed states, transformers'
  // last_hidden_state. valid (B, T): 1 = token, 0 = padding; empty = all tokens.
  // After the call, c.hidden[k] holds transformers' hidden_states[k] for k < L
  // (0 = the embeddings after token dropout), and out its hidden_states[L].
  void encode(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> out, Cache& c,
              Pass pass = Pass::eval()) const {
    PLM_CHECK(ids.rank() == 2, "EsmModel::encode: ids ", ids.shape(), " must be (B, T)");
    if (!valid.empty()) PLM_CHECK(valid.shape() == ids.shape(), "EsmModel::encode: mask ", valid.shape(), " must match ids ", ids.shape());
    const index_t Bn = ids.dim(0), Tn = ids.dim(1), C = cfg_.hidden_size;
    PLM_CHECK(out.shape() == Shape({Bn, Tn, C}), "EsmModel::encode: out ", out.shape(), " must be ", Shape({Bn, Tn, C}));
    std::vector<index_t> rows(static_cast<std::size_t>(Bn) + 1);
    for (index_t b = 0; b <= Bn; ++b) rows[static_cast<std::size_t>(b)] = b * Tn;
    SoftmaxMask<B, T> mask;
    mask.key_valid = valid;
    run_encode(ids, valid, rows, mask, out, c, pass);
  }
  // Packed input (core/packing.hpp): ids (1, N) hold the sequences of `packing`
  // end to end, out (1, N, C). Token dropout's rescaling, positions and attention
  // are per sequence, so every sequence's states equal its padded row's.
  void encode_packed(ConstView<B, std::int32_t> ids, const Packing& packing, TensorView<B, T> out, Cache& c,
                     Pass pass = Pass::eval()) const {
    PLM_CHECK(ids.rank() == 2 && ids.dim(0) == 1 && ids.dim(1) == packing.tokens(), "EsmModel::encode_packed: ids ", ids.shape(),
              " must be (1, ", packing.tokens(), ") for ", packing.sequences(), " sequences");
    PLM_CHECK(out.shape() == Shape({1, packing.tokens(), cfg_.hidden_size}), "EsmModel::encode_packed: out ", out.shape(), " must be ",
              Shape({1, packing.tokens(), cfg_.hidden_size}));
    c.packing = AttentionPacking::self(packing);
    SoftmaxMask<B, T> mask;
    mask.packed = &c.packing;
    run_encode(ids, {}, packing.offsets(), mask, out, c, pass);
  }

 private:
  // Sequence b holds the flat rows [rows[b], rows[b + 1]) of ids (padding included when valid says so).
  void run_encode(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, const std::vector<index_t>& rows,
                  const SoftmaxMask<B, T>& mask, TensorView<B, T> out, Cache& c, Pass pass) const {
    const index_t Bn = ids.dim(0), Tn = ids.dim(1), C = cfg_.hidden_size, L = cfg_.num_hidden_layers;
    c.ids = ids;
    c.emb.resize(Shape{Bn, Tn, C});
    word_.forward(ids, c.emb.view());
    token_factors(ids, valid, rows, c);
    c.hidden.resize(static_cast<std::size_t>(L + 1));
    c.layers.resize(static_cast<std::size_t>(L));
    for (auto& h : c.hidden) h.resize(Shape{Bn, Tn, C});
    TensorView<B, T> x0 = c.hidden[0].view();  // ESM-1b: the sum before emb_layer_norm_before
    if (cfg_.emb_layer_norm_before) {
      c.pre_norm.resize(Shape{Bn, Tn, C});
      x0 = c.pre_norm.view();
    }
    ops<B>::scale_rows(c.emb.cview(), c.factor.cview(), x0);
    if (absolute_positions()) positions_.forward(c.position_ids.cview(), ConstView<B, T>(x0), x0, c.positions);
    if (cfg_.emb_layer_norm_before) emb_norm_.forward(c.pre_norm.cview(), c.hidden[0].view(), c.emb_norm);
    if (esm1b_embeddings()) ops<B>::scale_rows(c.hidden[0].cview(), c.valid_factor.cview(), c.hidden[0].view());
    const DropoutKey key = DropoutKey::of(pass).in_stack(DropoutStack::encoder);
    for (index_t i = 0; i < L; ++i)
      layers_[static_cast<std::size_t>(i)].forward(c.hidden[i].cview(), mask, c.hidden[i + 1].view(), c.layers[i],
                                                   key.in_layer(static_cast<std::uint64_t>(i)));
    final_norm_.forward(c.hidden[L].cview(), out, c.final_norm);
  }

 public:
  // Gradient of encode()'s output into the parameters (added).
  void encode_backward(ConstView<B, T> d_out, Cache& c) const {
    const index_t L = cfg_.num_hidden_layers;
    c.d_a.resize(d_out.shape());
    c.d_b.resize(d_out.shape());
    final_norm_.backward(c.hidden[L].cview(), d_out, c.d_a.view(), c.final_norm);
    for (index_t i = L - 1; i >= 0; --i) {
      layers_[static_cast<std::size_t>(i)].backward(c.hidden[i].cview(), c.d_a.cview(), c.d_b.view(), TensorView<B, T>{}, c.layers[i]);
      std::swap(c.d_a, c.d_b);
    }
    if (esm1b_embeddings()) {
      ops<B>::scale_rows(c.d_a.cview(), c.valid_factor.cview(), c.d_a.view());
      if (cfg_.emb_layer_norm_before) emb_norm_.backward(c.pre_norm.cview(), c.d_a.cview(), c.d_a.view(), c.emb_norm);
      if (absolute_positions()) positions_.backward(c.d_a.cview(), c.positions);
    }
    ops<B>::scale_rows(c.d_a.cview(), c.factor.cview(), c.d_a.view());
    word_.backward(c.ids, c.d_a.cview());
  }

  // ids (B, T) -> logits (B, T, V), EsmForMaskedLM's prediction_scores.
  void forward(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> logits, Cache& c,
               Pass pass = Pass::eval()) const {
    const index_t Bn = ids.dim(0), Tn = ids.rank() == 2 ? ids.dim(1) : 0, C = cfg_.hidden_size;
    PLM_CHECK(lm_head_, "EsmModel::forward: this model was built encoder-only (no LM head); use encode()");
    PLM_CHECK(logits.shape() == Shape({Bn, Tn, cfg_.vocab_size}), "EsmModel::forward: logits ", logits.shape(), " must be ",
              Shape({Bn, Tn, cfg_.vocab_size}));
    c.out.resize(Shape{Bn, Tn, C});
    encode(ids, valid, c.out.view(), c, pass);
    head_.forward(c.out.cview(), decoder_weight(), head_bias_, logits, c.head);
  }

  // Packed input: ids (1, N) laid out by `packing` -> logits (1, N, V); backward() as padded.
  void forward_packed(ConstView<B, std::int32_t> ids, const Packing& packing, TensorView<B, T> logits, Cache& c,
                      Pass pass = Pass::eval()) const {
    PLM_CHECK(lm_head_, "EsmModel::forward_packed: this model was built encoder-only (no LM head); use encode_packed()");
    PLM_CHECK(logits.shape() == Shape({1, packing.tokens(), cfg_.vocab_size}), "EsmModel::forward_packed: logits ", logits.shape(),
              " must be ", Shape({1, packing.tokens(), cfg_.vocab_size}));
    c.out.resize(Shape{1, packing.tokens(), cfg_.hidden_size});
    encode_packed(ids, packing, c.out.view(), c, pass);
    head_.forward(c.out.cview(), decoder_weight(), head_bias_, logits, c.head);
  }

  // dlogits (B, T, V) -> parameter gradients (added).
  void backward(ConstView<B, T> dlogits, Cache& c) const {
    PLM_CHECK(lm_head_, "EsmModel::backward: this model was built encoder-only (no LM head); use encode_backward()");
    c.d_out.resize(c.out.shape());
    head_.backward(c.out.cview(), dlogits, decoder_weight(), head_bias_, c.d_out.view(), c.head);
    encode_backward(c.d_out.cview(), c);
  }

 private:
  void build(ParameterSet<B, T>& ps, const EsmConfig& cfg, bool lm_head) {
    cfg_ = cfg;
    params_ = &ps;
    lm_head_ = lm_head;
    cfg_.validate();
    range_.begin = ps.size();
    const double r = cfg_.initializer_range;
    const index_t C = cfg_.hidden_size;
    word_ = Embedding<B, T>(ps, "esm.embeddings.word_embeddings", cfg_.vocab_size, C, r);
    if (absolute_positions())
      positions_ = PositionEmbedding<B, T>(ps, "esm.embeddings.position_embeddings", cfg_.max_position_embeddings, C, r);
    if (cfg_.emb_layer_norm_before) emb_norm_ = Norm(ps, "esm.embeddings.layer_norm", C, cfg_.layer_norm_eps);
    for (index_t i = 0; i < cfg_.num_hidden_layers; ++i) layers_.emplace_back(ps, layer_spec(i));
    final_norm_ = Norm(ps, "esm.encoder.emb_layer_norm_after", C, cfg_.layer_norm_eps);
    if (!lm_head) {
      range_.end = ps.size();
      return;
    }
    contact_ = Linear<B, T>(ps, "esm.contact_head.regression", cfg_.num_hidden_layers * cfg_.num_attention_heads, 1, r, true);
    head_ = MaskedLMHead<B, T>(ps, "lm_head.dense", "lm_head.layer_norm", C, cfg_.layer_norm_eps, r);
    if (!cfg_.tie_word_embeddings) decoder_ = Linear<B, T>(ps, "lm_head.decoder", C, cfg_.vocab_size, r);
    head_bias_ = add_param(ps, "lm_head.bias", Shape{cfg_.vocab_size}, 0.0);
    range_.end = ps.size();
  }

  EncoderLayerSpec layer_spec(index_t i) const {
    const std::string p = "esm.encoder.layer." + std::to_string(i);
    EncoderLayerSpec s;
    s.norm0 = p + ".attention.LayerNorm";
    s.attention = p + ".attention";
    s.norm1 = p + ".LayerNorm";
    s.attn = AttentionShape{cfg_.hidden_size, cfg_.num_attention_heads, cfg_.d_head(), 1.0 / std::sqrt(static_cast<double>(cfg_.d_head()))};
    s.attn.init_std = cfg_.initializer_range;
    s.attn.bias = true;
    s.attn.rotary_base = absolute_positions() ? 0.0 : cfg_.rope_theta;
    s.attn.q_name = "self.query";
    s.attn.k_name = "self.key";
    s.attn.v_name = "self.value";
    s.attn.o_name = "output.dense";
    s.attn_dropout = cfg_.attention_probs_dropout_prob;
    s.ff.wi = p + ".intermediate.dense";
    s.ff.wo = p + ".output.dense";
    s.ff.in_std = s.ff.out_std = cfg_.initializer_range;
    s.ff.bias = true;
    s.ff.dropout = 0;  // ESM has none inside the feed-forward block
    s.d_model = cfg_.hidden_size;
    s.d_ff = cfg_.intermediate_size;
    s.eps = cfg_.layer_norm_eps;
    s.residual_dropout = cfg_.hidden_dropout_prob;
    return s;
  }

  // The per-token scale of the embeddings (token dropout and padding), on the host.
  void token_factors(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, const std::vector<index_t>& rows, Cache& c) const {
    const index_t Bn = static_cast<index_t>(rows.size()) - 1, n = ids.numel();
    c.host_ids.resize(static_cast<std::size_t>(n));
    download(ids, c.host_ids.data());
    std::vector<std::uint8_t> v(static_cast<std::size_t>(n), 1);
    if (!valid.empty()) download(valid, v.data());
    c.host_factor.assign(static_cast<std::size_t>(n), T(1));
    const auto row = [&](index_t b) { return rows[static_cast<std::size_t>(b)]; };
    for (index_t b = 0; b < Bn; ++b) {
      index_t tokens = 0, masked = 0;
      for (index_t k0 = row(b); k0 < row(b + 1); ++k0) {
        const std::size_t k = static_cast<std::size_t>(k0);
        tokens += v[k] != 0;
        masked += c.host_ids[k] == cfg_.mask_token_id;
      }
      // The observed ratio in float32, as transformers computes it whatever the
      // model's dtype (so double runs agree with it to rounding); the token
      // count is the attention mask's (the row length without one).
      const float denom = 1.0f - static_cast<float>(masked) / static_cast<float>(tokens);
      const double keep = cfg_.token_dropout && tokens > 0 ? (1.0 - 0.15 * 0.8) / static_cast<double>(denom) : 1.0;
      for (index_t k0 = row(b); k0 < row(b + 1); ++k0) {
        const std::size_t k = static_cast<std::size_t>(k0);
        const bool dropped = cfg_.token_dropout && c.host_ids[k] == cfg_.mask_token_id;
        c.host_factor[k] = v[k] == 0 || dropped ? T(0) : static_cast<T>(keep);
      }
    }
    c.factor.resize(Shape{n});
    upload(c.host_factor.data(), c.factor.view());
    if (esm1b_embeddings()) {  // transformers multiplies by the attention mask after the positions and the norm
      c.host_valid.assign(v.begin(), v.end());
      for (T& x : c.host_valid) x = x != T(0) ? T(1) : T(0);
      c.valid_factor.resize(Shape{n});
      upload(c.host_valid.data(), c.valid_factor.view());
    }
    if (absolute_positions()) {  // fairseq's make_positions: pad_token_id + running count of non-pad tokens
      c.host_positions.resize(static_cast<std::size_t>(n));
      for (index_t b = 0; b < Bn; ++b) {
        std::int32_t count = 0;
        for (index_t k0 = row(b); k0 < row(b + 1); ++k0) {
          const std::size_t k = static_cast<std::size_t>(k0);
          const bool pad = c.host_ids[k] == cfg_.pad_token_id;
          count += !pad;
          c.host_positions[k] = pad ? cfg_.pad_token_id : cfg_.pad_token_id + count;
          PLM_CHECK(c.host_positions[k] < cfg_.max_position_embeddings, "EsmModel::encode: row ", b, " holds more than ",
                    cfg_.max_position_embeddings - cfg_.pad_token_id - 1, " tokens, the positions max_position_embeddings ",
                    cfg_.max_position_embeddings, " allows");
        }
      }
      c.position_ids.resize(ids.shape());
      upload(c.host_positions.data(), c.position_ids.view());
    }
  }

  bool absolute_positions() const { return cfg_.position_embedding_type == "absolute"; }
  bool esm1b_embeddings() const { return absolute_positions() || cfg_.emb_layer_norm_before; }

  const Param<B, T>& decoder_weight() const { return cfg_.tie_word_embeddings ? word_.weight() : decoder_.weight(); }

  EsmConfig cfg_;
  bool lm_head_ = true;
  std::unique_ptr<ParameterSet<B, T>> owned_;
  ParameterSet<B, T>* params_ = nullptr;
  ParamRange range_;
  Embedding<B, T> word_;
  PositionEmbedding<B, T> positions_;  // ESM-1b
  Norm emb_norm_;                      // ESM-1b: emb_layer_norm_before
  std::vector<Layer> layers_;
  Norm final_norm_;
  Linear<B, T> contact_;
  MaskedLMHead<B, T> head_;
  Linear<B, T> decoder_;
  Param<B, T> head_bias_;
};

}  // namespace plm::nn
