#pragma once
// BertModel: BERT (Devlin et al. 2019) as Hugging Face's BertForMaskedLM
// computes it, the architecture of ProtBert (Elnaggar et al. 2021), built
// from the same layers as T5 and ESM-2:
//
//   e      = E[ids] + P[t] + S[0]          word, learned absolute position
//                                          (0..T-1 in every row) and token-type
//                                          0 embeddings
//   x0     = Dropout(LN(e))                bert.embeddings.LayerNorm
//   h_L    = EncoderLayer^L(x0)            post-norm blocks: h = LN(x + Attn(x)),
//                                          y = LN(h + FF(h)); biases, attention
//                                          scaled by d_head^-1/2, erf-GELU
//   logits = LN(gelu(h_L Wd + bd)) E^T + b     cls.predictions, E tied to the
//                                               word embeddings
//
// Parameters carry the BertForMaskedLM names (bert.encoder.layer.N.attention.
// self.query.weight, ...), so checkpoints map one to one. With an untied
// decoder the logits' bias is cls.predictions.decoder.bias, and
// cls.predictions.bias is kept (so a directory round-trips) but takes no part,
// as in transformers 5. As torch's padding_idx does, the word embedding of
// pad_token_id gets no gradient from the lookup (a tied decoder still adds its
// own). BertForMaskedLM has no pooler; io::load_bert ignores one in a file.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/nn/embedding.hpp"
#include "plm/nn/layers.hpp"
#include "plm/nn/mlm_head.hpp"
#include "plm/nn/norm.hpp"
#include "plm/nn/position_embedding.hpp"

namespace plm::nn {

// The runtime sizes of a BERT model, named as transformers' BertConfig; the
// defaults are BertConfig's.
struct BertConfig {
  index_t vocab_size = 30522;
  index_t hidden_size = 768;
  index_t num_hidden_layers = 12;
  index_t num_attention_heads = 12;
  index_t intermediate_size = 3072;
  std::string hidden_act = "gelu";  // the exact erf GELU; the only one plm builds
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  index_t max_position_embeddings = 512;
  index_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  std::int32_t pad_token_id = 0;  // -1: none (a null in config.json)
  std::string position_embedding_type = "absolute";
  bool tie_word_embeddings = true;

  static constexpr index_t max_width = index_t(1) << 20, max_vocab = index_t(1) << 24, max_heads = 4096, max_depth = 1024;
  static constexpr index_t max_positions = index_t(1) << 24;

  index_t d_head() const { return hidden_size / num_attention_heads; }

  // Rostlab/prot_bert, the config.json of https://huggingface.co/Rostlab/prot_bert:
  // vocab_size 30, hidden_size 1024, num_hidden_layers 30, num_attention_heads 16,
  // intermediate_size 4096, hidden_act "gelu", hidden_dropout_prob 0.0,
  // attention_probs_dropout_prob 0.0, max_position_embeddings 40000,
  // type_vocab_size 2, initializer_range 0.02. The file leaves layer_norm_eps
  // and pad_token_id out, so BertConfig's defaults apply (1e-12, 0: ProtBert's
  // [PAD] is id 0).
  static BertConfig prot_bert() {
    BertConfig c;
    c.vocab_size = 30;
    c.hidden_size = 1024;
    c.num_hidden_layers = 30;
    c.num_attention_heads = 16;
    c.intermediate_size = 4096;
    c.hidden_act = "gelu";
    c.hidden_dropout_prob = 0.0;
    c.attention_probs_dropout_prob = 0.0;
    c.max_position_embeddings = 40000;
    c.type_vocab_size = 2;
    c.initializer_range = 0.02;
    c.layer_norm_eps = 1e-12;
    c.pad_token_id = 0;
    return c;
  }

  // Refuses what this model cannot build, naming the key.
  void validate(const std::string& where = "BertConfig") const {
    detail::validate_encoder_sizes(*this, where);
    for (const auto& [key, v, hi] : {std::tuple<const char*, index_t, index_t>{"max_position_embeddings", max_position_embeddings, max_positions},
                                     {"type_vocab_size", type_vocab_size, max_vocab}})
      PLM_CHECK(v >= 1 && v <= hi, where, ": ", key, " = ", v, " is outside [1, ", hi, "]");
    PLM_CHECK(hidden_act == "gelu", where, ": hidden_act '", hidden_act,
              "' is not supported (plm builds BERT's exact erf GELU, \"gelu\")");
    PLM_CHECK(position_embedding_type == "absolute", where, ": position_embedding_type '", position_embedding_type,
              "' is not supported (plm builds BERT's learned \"absolute\" positions; relative_key variants are not implemented)");
    PLM_CHECK(pad_token_id >= -1 && pad_token_id < vocab_size, where, ": pad_token_id ", pad_token_id, " is outside the vocabulary of ",
              vocab_size);
  }
};

// BERT's policies: plain erf-GELU feed-forward, LayerNorm, no positions inside
// attention (they are added to the embeddings).
using BertPolicies = ModelPolicies<GeluErf, Plain, LayerNormPolicy, NoPositions>;

template <class B, class T = float, class P = BertPolicies>
class BertModel {
  static_assert(is_backend_v<B>, "plm: BertModel: B must be a backend tag (plm::cpu or plm::cuda)");
  static_assert(std::is_same_v<typename P::norm, LayerNormPolicy>, "plm: BertModel: BERT checkpoints hold LayerNorm weights and biases");
  static_assert(!P::gating::gated, "plm: BertModel: BERT's feed-forward is not gated");
  static_assert(std::is_same_v<typename P::activation, GeluErf>, "plm: BertModel: BERT's hidden_act \"gelu\" is the erf GELU (GeluErf)");
  static_assert(!P::position::relative_bias, "plm: BertModel: BERT's positions are absolute embeddings, not an attention bias");
  using Layer = EncoderLayer<B, T, P>;
  using Norm = LayerNorm<B, T>;

 public:
  using backend = B;
  using value_type = T;
  using policies = P;

  struct Cache {
    ConstView<B, std::int32_t> ids;
    Tensor<B, T> emb;                         // (B, T, C): word + position + token type, before the LayerNorm
    typename PositionEmbedding<B, T>::Cache positions;
    typename Norm::Cache emb_norm;
    DropoutKey key;
    std::vector<Tensor<B, T>> hidden;         // hidden[0] = x0, hidden[i] = output of layer i - 1 (i < L)
    std::vector<typename Layer::Cache> layers;
    Tensor<B, T> out;                         // (B, T, C): the last layer's output (forward)
    typename MaskedLMHead<B, T>::Cache head;
    Tensor<B, T> d_out, d_a, d_b;             // backward workspaces
    std::vector<std::int32_t> host_ids;
    std::vector<T> host_keep;
    Tensor<B, T> keep;                        // (B*T): 0 at pad_token_id, else 1 (the word embedding's gradient)
  };

  // A model that owns its parameters, drawn as transformers draws them:
  // N(0, initializer_range^2) for every matrix and embedding, biases 0, norms 1,
  // and the pad_token_id row of the word embeddings 0.
  explicit BertModel(const BertConfig& cfg, std::uint64_t seed = 0) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg, true);
    owned_->allocate();
    owned_->init(seed);
    if (cfg_.pad_token_id >= 0)
      ops<B>::fill(TensorView<B, T>(word_.weight().value().data() + cfg_.pad_token_id * cfg_.hidden_size, Shape{cfg_.hidden_size}), T(0));
  }
  // Allocated, not drawn: a checkpoint fills every parameter next (io::load_bert).
  BertModel(const BertConfig& cfg, Uninitialized) : owned_(std::make_unique<ParameterSet<B, T>>()) {
    build(*owned_, cfg, true);
    owned_->allocate();
  }
  // In the caller's set, next to the caller's own layers (heads).
  BertModel(ParameterSet<B, T>& ps, const BertConfig& cfg) { build(ps, cfg, true); }
  // The encoder alone in the caller's set: encode() only, no MLM head
  // (io::load_bert_weights then takes the encoder of a full checkpoint).
  BertModel(ParameterSet<B, T>& ps, const BertConfig& cfg, EncoderOnly) { build(ps, cfg, false); }
  BertModel(const BertModel&) = delete;
  BertModel& operator=(const BertModel&) = delete;
  BertModel(BertModel&&) = default;
  BertModel& operator=(BertModel&&) = default;

  const BertConfig& config() const { return cfg_; }
  ParameterSet<B, T>& params() { return *params_; }
  const ParameterSet<B, T>& params() const { return *params_; }
  ParamRange param_range() const { return range_; }
  const std::vector<Layer>& layers() const { return layers_; }
  bool has_lm_head() const { return lm_head_; }

  // The encoder interface shared with T5Model and EsmModel (embedding,
  // fine-tuning heads): width, vocabulary, depth, and transformers'
  // hidden_states[k] for k < L after encode() (hidden_states[L] is its output).
  index_t d_model() const { return cfg_.hidden_size; }
  index_t vocab_size() const { return cfg_.vocab_size; }
  index_t num_encoder_layers() const { return cfg_.num_hidden_layers; }
  ConstView<B, T> hidden_state(const Cache& c, index_t k) const {
    PLM_CHECK(k >= 0 && k < static_cast<index_t>(c.hidden.size()), "BertModel::hidden_state: ", k, " outside 0..",
              static_cast<index_t>(c.hidden.size()) - 1, " (run encode() first)");
    return c.hidden[static_cast<std::size_t>(k)].cview();
  }

  // ids (B, T) -> out (B, T, C): the last layer's output, transformers'
  // last_hidden_state. valid (B, T): 1 = token, 0 = padding (no query attends
  // to it); empty = all tokens. After the call c.hidden[k] holds transformers'
  // hidden_states[k] for k < L (0 = the embeddings after their LayerNorm), and
  // out its hidden_states[L].
  void encode(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> out, Cache& c,
              Pass pass = Pass::eval()) const {
    PLM_CHECK(ids.rank() == 2, "BertModel::encode: ids ", ids.shape(), " must be (B, T)");
    if (!valid.empty()) PLM_CHECK(valid.shape() == ids.shape(), "BertModel::encode: mask ", valid.shape(), " must match ids ", ids.shape());
    const index_t Bn = ids.dim(0), Tn = ids.dim(1), C = cfg_.hidden_size, L = cfg_.num_hidden_layers;
    PLM_CHECK(out.shape() == Shape({Bn, Tn, C}), "BertModel::encode: out ", out.shape(), " must be ", Shape({Bn, Tn, C}));
    PLM_CHECK(Tn <= cfg_.max_position_embeddings, "BertModel::encode: ", Tn, " tokens per row exceed max_position_embeddings ",
              cfg_.max_position_embeddings);
    c.ids = ids;
    c.emb.resize(Shape{Bn, Tn, C});
    word_.forward(ids, c.emb.view());
    ops<B>::add_row(c.emb.cview().reshape(Shape{Bn * Tn, C}), token_type_row(), c.emb.view().reshape(Shape{Bn * Tn, C}));
    positions_.forward(c.emb.cview(), c.emb.view(), c.positions);
    c.hidden.resize(static_cast<std::size_t>(L));
    c.layers.resize(static_cast<std::size_t>(L));
    for (auto& h : c.hidden) h.resize(Shape{Bn, Tn, C});
    emb_norm_.forward(c.emb.cview(), c.hidden[0].view(), c.emb_norm);
    c.key = DropoutKey::of(pass).in_stack(DropoutStack::encoder);
    emb_drop_.forward(c.hidden[0].cview(), c.hidden[0].view(), c.key.at(DropoutSite::embeddings));
    SoftmaxMask<B, T> mask;
    mask.key_valid = valid;
    for (index_t i = 0; i < L; ++i) {
      const TensorView<B, T> y = i + 1 < L ? c.hidden[static_cast<std::size_t>(i + 1)].view() : out;
      layers_[static_cast<std::size_t>(i)].forward(c.hidden[i].cview(), mask, y, c.layers[i], c.key.in_layer(static_cast<std::uint64_t>(i)));
    }
  }

  // Gradient of encode()'s output into the parameters (added).
  void encode_backward(ConstView<B, T> d_out, Cache& c) const {
    const index_t L = cfg_.num_hidden_layers, C = cfg_.hidden_size;
    c.d_a.resize(d_out.shape());
    c.d_b.resize(d_out.shape());
    ConstView<B, T> d = d_out;
    for (index_t i = L - 1; i >= 0; --i) {
      layers_[static_cast<std::size_t>(i)].backward(c.hidden[i].cview(), d, c.d_b.view(), TensorView<B, T>{}, c.layers[i]);
      std::swap(c.d_a, c.d_b);
      d = c.d_a.cview();
    }
    emb_drop_.backward(c.d_a.cview(), c.d_a.view(), c.key.at(DropoutSite::embeddings));
    emb_norm_.backward(c.emb.cview(), c.d_a.cview(), c.d_a.view(), c.emb_norm);  // d e
    positions_.backward(c.d_a.cview(), c.positions);
    ops<B>::sum_rows(c.d_a.cview().reshape(Shape{c.d_a.numel() / C, C}), token_type_grad_row(), T(1));
    if (cfg_.pad_token_id < 0 || !pad_rows(c)) {
      word_.backward(c.ids, c.d_a.cview());
    } else {
      ops<B>::scale_rows(c.d_a.cview(), c.keep.cview(), c.d_b.view());
      word_.backward(c.ids, c.d_b.cview());
    }
  }

  // ids (B, T) -> logits (B, T, V), BertForMaskedLM's prediction_scores.
  void forward(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> logits, Cache& c,
               Pass pass = Pass::eval()) const {
    const index_t Bn = ids.dim(0), Tn = ids.rank() == 2 ? ids.dim(1) : 0, C = cfg_.hidden_size;
    PLM_CHECK(lm_head_, "BertModel::forward: this model was built encoder-only (no MLM head); use encode()");
    PLM_CHECK(logits.shape() == Shape({Bn, Tn, cfg_.vocab_size}), "BertModel::forward: logits ", logits.shape(), " must be ",
              Shape({Bn, Tn, cfg_.vocab_size}));
    c.out.resize(Shape{Bn, Tn, C});
    encode(ids, valid, c.out.view(), c, pass);
    head_.forward(c.out.cview(), decoder_weight(), logits_bias(), logits, c.head);
  }

  // dlogits (B, T, V) -> parameter gradients (added).
  void backward(ConstView<B, T> dlogits, Cache& c) const {
    PLM_CHECK(lm_head_, "BertModel::backward: this model was built encoder-only (no MLM head); use encode_backward()");
    c.d_out.resize(c.out.shape());
    head_.backward(c.out.cview(), dlogits, decoder_weight(), logits_bias(), c.d_out.view(), c.head);
    encode_backward(c.d_out.cview(), c);
  }

 private:
  void build(ParameterSet<B, T>& ps, const BertConfig& cfg, bool lm_head) {
    cfg_ = cfg;
    params_ = &ps;
    lm_head_ = lm_head;
    cfg_.validate();
    range_.begin = ps.size();
    const double r = cfg_.initializer_range;
    const index_t C = cfg_.hidden_size, V = cfg_.vocab_size;
    word_ = Embedding<B, T>(ps, "bert.embeddings.word_embeddings", V, C, r);
    positions_ = PositionEmbedding<B, T>(ps, "bert.embeddings.position_embeddings", cfg_.max_position_embeddings, C, r);
    token_type_ = Embedding<B, T>(ps, "bert.embeddings.token_type_embeddings", cfg_.type_vocab_size, C, r);
    emb_norm_ = Norm(ps, "bert.embeddings.LayerNorm", C, cfg_.layer_norm_eps);
    emb_drop_ = Dropout{cfg_.hidden_dropout_prob};
    for (index_t i = 0; i < cfg_.num_hidden_layers; ++i) layers_.emplace_back(ps, layer_spec(i));
    if (!lm_head_) {
      range_.end = ps.size();
      return;
    }
    head_ = MaskedLMHead<B, T>(ps, "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", C, cfg_.layer_norm_eps, r);
    if (!cfg_.tie_word_embeddings) {
      decoder_weight_ = add_param(ps, "cls.predictions.decoder.weight", Shape{V, C}, r);
      decoder_bias_ = add_param(ps, "cls.predictions.decoder.bias", Shape{V}, 0.0);
    }
    head_bias_ = add_param(ps, "cls.predictions.bias", Shape{V}, 0.0);
    range_.end = ps.size();
  }

  EncoderLayerSpec layer_spec(index_t i) const {
    const std::string p = "bert.encoder.layer." + std::to_string(i);
    EncoderLayerSpec s;
    s.post_norm = true;
    s.norm0 = p + ".attention.output.LayerNorm";  // after the attention's residual add
    s.attention = p + ".attention";
    s.norm1 = p + ".output.LayerNorm";  // after the feed-forward's residual add
    s.attn = AttentionShape{cfg_.hidden_size, cfg_.num_attention_heads, cfg_.d_head(), 1.0 / std::sqrt(static_cast<double>(cfg_.d_head()))};
    s.attn.init_std = cfg_.initializer_range;
    s.attn.bias = true;
    s.attn.q_name = "self.query";
    s.attn.k_name = "self.key";
    s.attn.v_name = "self.value";
    s.attn.o_name = "output.dense";
    s.attn_dropout = cfg_.attention_probs_dropout_prob;
    s.ff.wi = p + ".intermediate.dense";
    s.ff.wo = p + ".output.dense";
    s.ff.in_std = s.ff.out_std = cfg_.initializer_range;
    s.ff.bias = true;
    s.ff.dropout = 0;  // BERT drops only the block's output (BertOutput.dropout: residual_dropout)
    s.d_model = cfg_.hidden_size;
    s.d_ff = cfg_.intermediate_size;
    s.eps = cfg_.layer_norm_eps;
    s.residual_dropout = cfg_.hidden_dropout_prob;
    return s;
  }

  // Token type 0 for every token: the first row of the token-type table.
  ConstView<B, T> token_type_row() const { return ConstView<B, T>(token_type_.weight().value().data(), Shape{cfg_.hidden_size}); }
  TensorView<B, T> token_type_grad_row() const { return TensorView<B, T>(token_type_.weight().grad().data(), Shape{cfg_.hidden_size}); }

  // c.keep: 0 where ids hold pad_token_id, else 1. False when no id does (the
  // lookup's gradient then needs no masking).
  bool pad_rows(Cache& c) const {
    const index_t n = c.ids.numel();
    c.host_ids.resize(static_cast<std::size_t>(n));
    download(c.ids, c.host_ids.data());
    c.host_keep.assign(static_cast<std::size_t>(n), T(1));
    bool any = false;
    for (std::size_t k = 0; k < c.host_ids.size(); ++k)
      if (c.host_ids[k] == cfg_.pad_token_id) c.host_keep[k] = T(0), any = true;
    if (!any) return false;
    c.keep.resize(Shape{n});
    upload(c.host_keep.data(), c.keep.view());
    return true;
  }

  const Param<B, T>& decoder_weight() const { return cfg_.tie_word_embeddings ? word_.weight() : decoder_weight_; }
  const Param<B, T>& logits_bias() const { return cfg_.tie_word_embeddings ? head_bias_ : decoder_bias_; }

  BertConfig cfg_;
  std::unique_ptr<ParameterSet<B, T>> owned_;
  ParameterSet<B, T>* params_ = nullptr;
  ParamRange range_;
  bool lm_head_ = true;
  Embedding<B, T> word_;
  PositionEmbedding<B, T> positions_;
  Embedding<B, T> token_type_;
  Norm emb_norm_;
  Dropout emb_drop_;
  std::vector<Layer> layers_;
  MaskedLMHead<B, T> head_;
  Param<B, T> decoder_weight_, decoder_bias_, head_bias_;
};

}  // namespace plm::nn
