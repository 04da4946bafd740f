#pragma once
// Multi-head attention, T5 style: q, k, v, o projections without bias, no
// 1/sqrt(d) scaling by default (T5 folds it into the initialisation), an
// additive bias (relative positions) and masks applied by the masked softmax.
// The shape also selects the BERT / ESM variant: projections with biases,
// scale 1/sqrt(d_head), rotary positions on q and k (ESM-2), other names.
//
// Self-attention: forward(x, x, ...). Cross-attention: forward(x_dec, enc_out, ...).
// Packed input (core/packing.hpp): x_q (1, Nq, C) and x_kv (1, Nk, C) hold
// sequences end to end and mask.packed says where; the projections run over
// all tokens at once, the scores, softmax and context per sequence and head,
// and the probabilities are the per-sequence blocks (H, Lq_i, Lk_i) end to end
// (a flat tensor of H * pairs values).
// Padded input keeps the attention probabilities in the cache, so a caller can
// read them (attention-space losses) and hand an extra gradient on them to
// backward(). Packed input runs blockwise instead (backend/blockwise_attention.hpp):
// scores exist one block at a time, the backward recomputes them from each
// query's saved log-sum-exp, and no (H, Lq_i, Lk_i) tensor is kept, unless the
// cache asks for the probabilities (Cache::keep_probs).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/blockwise_attention.hpp"
#include "plm/backend/ops.hpp"
#include "plm/backend/softmax_mask.hpp"
#include "plm/nn/dropout.hpp"
#include "plm/nn/linear.hpp"

namespace plm::nn {

struct AttentionShape {
  index_t d_model = 0, heads = 1, d_head = 0;
  double scale = 1.0;  // multiplies q k^T; T5 uses 1
  // false: no output projection, the concatenated heads are the output (needs
  // heads * d_head == d_model): the negative-mining layer, nn/pair_attention.hpp
  bool output_projection = true;
  // > 0: every projection drawn from N(0, init_std^2) instead of T5's initialisation
  double init_std = 0;
  bool bias = false;  // projections with biases (BERT, ESM)
  // > 0: rotary position embedding with this base (ESM-2: 10000) turns q and k
  // by position before the scores; positions count from 0 in every sequence.
  double rotary_base = 0;
  // The projections' names under the layer's name: T5's q, k, v, o, or
  // ESM / BERT's self.query, self.key, self.value, output.dense.
  std::string q_name = "q", k_name = "k", v_name = "v", o_name = "o";
  index_t inner() const { return heads * d_head; }
};

template <class B, class T>
class Attention {
 public:
  struct Cache {
    Tensor<B, T> q_lin, k_lin, v_lin;  // (B, Tq|Tk, H*D)
    Tensor<B, T> q, k, v;              // (B, H, Tq|Tk, D)
    Tensor<B, T> probs;                // (B, H, Tq, Tk), before dropout
    Tensor<B, T> probs_dropped;        // (B, H, Tq, Tk), when attention dropout is on
    Tensor<B, T> ctx_h;                // (B, H, Tq, D)
    Tensor<B, T> ctx;                  // (B, Tq, H*D)
    Tensor<B, T> cos, sin;             // (rows, D/2): the rotary table for rotary_len positions
    index_t rotary_len = 0;
    // Packed input: the packing of the last forward (owned by the caller's
    // cache), and the rotary tables of the query and key tokens (N, D/2).
    const AttentionPacking* packed = nullptr;
    Tensor<B, T> cos_q, sin_q, cos_k, sin_k;  // cos_k, sin_k: only when the keys are packed otherwise
    DropoutKey key;
    // Packed input: true keeps the probabilities (a loss reads them, or adds a
    // gradient on them); false (the default) runs blockwise and keeps only
    // lse (H, Nq), each query row's log-sum-exp.
    bool keep_probs = false;
    bool blockwise = false;  // how the last forward ran
    Tensor<B, T> lse;
    const T* bias_seen = nullptr;  // the blockwise forward's bias (the caller keeps it until backward) and causal rule
    bool causal_seen = false;
    // backward workspaces
    Tensor<B, T> d_ctx, d_ctx_h, d_probs, d_q, d_k, d_v, d_lin;
  };

  Attention() = default;
  // Initialisation as T5: q ~ N(0, (d_model d_head)^-1), k, v ~ N(0, d_model^-1), o ~ N(0, (H d_head)^-1), times factor.
  Attention(ParameterSet<B, T>& ps, const std::string& name, AttentionShape s, double factor = 1.0, double dropout = 0.0)
      : s_(s), dropout_{dropout} {
    const double dm = static_cast<double>(s.d_model), inner = static_cast<double>(s.inner());
    const auto std_or = [&](double t5) { return s.init_std > 0 ? s.init_std : t5; };
    PLM_CHECK(s.rotary_base >= 0 && (s.rotary_base == 0 || s.d_head % 2 == 0), "Attention ", name,
              ": rotary positions need an even d_head (got ", s.d_head, ") and a positive base (got ", s.rotary_base, ")");
    const auto at = [&](const std::string& n) { return name + "." + n; };
    q_ = Linear<B, T>(ps, at(s.q_name), s.d_model, s.inner(), std_or(factor / std::sqrt(dm * static_cast<double>(s.d_head))), s.bias);
    k_ = Linear<B, T>(ps, at(s.k_name), s.d_model, s.inner(), std_or(factor / std::sqrt(dm)), s.bias);
    v_ = Linear<B, T>(ps, at(s.v_name), s.d_model, s.inner(), std_or(factor / std::sqrt(dm)), s.bias);
    if (s.output_projection)
      o_ = Linear<B, T>(ps, at(s.o_name), s.inner(), s.d_model, std_or(factor / std::sqrt(inner)), s.bias);
    else
      PLM_CHECK(s.inner() == s.d_model, "Attention ", name, ": without an output projection heads * d_head (", s.inner(),
                ") must equal d_model (", s.d_model, ")");
  }

  const AttentionShape& shape() const { return s_; }

  // x_q: (B, Tq, C); x_kv: (B, Tk, C); out: (B, Tq, C). mask.bias: (H, Tq, Tk) or empty;
  // mask.key_valid: (B, Tk) or empty; mask.causal for decoder self-attention.
  // mask.scale is ignored: the layer's own scale applies.
  void forward(ConstView<B, T> x_q, ConstView<B, T> x_kv, SoftmaxMask<B, T> mask, TensorView<B, T> out, Cache& c,
               DropoutKey key = {}) const {
    PLM_CHECK(x_q.rank() == 3 && x_kv.rank() == 3 && x_q.dim(0) == x_kv.dim(0) && x_q.dim(2) == s_.d_model &&
                  x_kv.dim(2) == s_.d_model,
              "Attention: x_q ", x_q.shape(), " and x_kv ", x_kv.shape(), " must be (B, T, ", s_.d_model, ") with equal B");
    PLM_CHECK(out.shape() == x_q.shape(), "Attention: out ", out.shape(), " must match x_q ", x_q.shape());
    const index_t Bn = x_q.dim(0), Tq = x_q.dim(1), Tk = x_kv.dim(1), H = s_.heads, D = s_.d_head, I = s_.inner();
    c.key = key;
    c.q_lin.resize(Shape{Bn, Tq, I});
    c.k_lin.resize(Shape{Bn, Tk, I});
    c.v_lin.resize(Shape{Bn, Tk, I});
    q_.forward(x_q, c.q_lin.view());
    k_.forward(x_kv, c.k_lin.view());
    v_.forward(x_kv, c.v_lin.view());
    split_heads(c.q_lin, c.q, Tq);
    split_heads(c.k_lin, c.k, Tk);
    split_heads(c.v_lin, c.v, Tk);
    c.packed = mask.packed;
    c.blockwise = false;
    if (mask.packed) return forward_packed(mask, out, c, key);
    if (s_.rotary_base > 0) {  // q and k turned in place; the scores use the turned ones
      rotary_table(std::max(Tq, Tk), c);
      ops<B>::rotary(c.q.cview(), rotary_rows(c.cos, Tq), rotary_rows(c.sin, Tq), c.q.view());
      ops<B>::rotary(c.k.cview(), rotary_rows(c.cos, Tk), rotary_rows(c.sin, Tk), c.k.view());
    }
    c.probs.resize(Shape{Bn, H, Tq, Tk});
    ops<B>::matmul(c.q.cview(), false, c.k.cview(), true, c.probs.view());  // scores
    mask.scale = static_cast<T>(s_.scale);
    ops<B>::masked_softmax(c.probs.cview(), c.probs.view(), mask);
    const Tensor<B, T>* p = &c.probs;
    if (dropout_.active(key)) {
      c.probs_dropped.resize(c.probs.shape());
      dropout_.forward(c.probs.cview(), c.probs_dropped.view(), key);
      p = &c.probs_dropped;
    }
    c.ctx_h.resize(Shape{Bn, H, Tq, D});
    ops<B>::matmul(p->cview(), false, c.v.cview(), false, c.ctx_h.view());
    project_out(out, c);
  }

  // dout: (B, Tq, C). dx_q is WRITTEN; dx_kv is ADDED to (pass the same view as
  // dx_q for self-attention). dbias (H, Tq, Tk) is added to when not empty.
  // d_probs_extra (B, H, Tq, Tk), optional, is an extra gradient on the probabilities.
  void backward(ConstView<B, T> x_q, ConstView<B, T> x_kv, ConstView<B, T> dout, TensorView<B, T> dx_q,
                TensorView<B, T> dx_kv, TensorView<B, T> dbias, Cache& c, ConstView<B, T> d_probs_extra = {}) const {
    const index_t Bn = x_q.dim(0), Tq = x_q.dim(1), Tk = x_kv.dim(1), H = s_.heads, D = s_.d_head, I = s_.inner();
    ConstView<B, T> d_ctx = dout;  // without an output projection dout is the context's gradient
    if (s_.output_projection) {
      c.d_ctx.resize(Shape{Bn, Tq, I});
      o_.backward(c.ctx.cview(), dout, c.d_ctx.view());
      d_ctx = c.d_ctx.cview();
    }
    c.d_ctx_h.resize(Shape{Bn, H, Tq, D});
    ops<B>::transpose12(d_ctx.reshape(Shape{Bn, Tq, H, D}), c.d_ctx_h.view());
    if (c.packed) {
      backward_packed(dbias, c, d_probs_extra);
    } else {
      backward_scores(dbias, c, d_probs_extra, Bn, Tq, Tk);
    }
    c.d_lin.resize(Shape{Bn, Tq, I});
    merge_heads(c.d_q, c.d_lin, Tq);
    q_.backward(x_q, c.d_lin.cview(), dx_q, false);
    c.d_lin.resize(Shape{Bn, Tk, I});
    merge_heads(c.d_k, c.d_lin, Tk);
    k_.backward(x_kv, c.d_lin.cview(), dx_kv, true);
    merge_heads(c.d_v, c.d_lin, Tk);
    v_.backward(x_kv, c.d_lin.cview(), dx_kv, true);
  }

 private:
  // Padded input: from d_ctx_h to d_q, d_k, d_v through the full (B, H, Tq, Tk) scores.
  void backward_scores(TensorView<B, T> dbias, Cache& c, ConstView<B, T> d_probs_extra, index_t Bn, index_t Tq, index_t Tk) const {
    const index_t H = s_.heads, D = s_.d_head;
    const Tensor<B, T>& p = dropout_.active(c.key) ? c.probs_dropped : c.probs;
    c.d_probs.resize(Shape{Bn, H, Tq, Tk});
    ops<B>::matmul(c.d_ctx_h.cview(), false, c.v.cview(), true, c.d_probs.view());  // dP = dctx V^T
    c.d_v.resize(Shape{Bn, H, Tk, D});
    ops<B>::matmul(p.cview(), true, c.d_ctx_h.cview(), false, c.d_v.view());  // dV = P^T dctx
    if (dropout_.active(c.key)) dropout_.backward(c.d_probs.cview(), c.d_probs.view(), c.key);
    if (!d_probs_extra.empty()) {
      PLM_CHECK(d_probs_extra.shape() == c.probs.shape(), "Attention: extra probability gradient ", d_probs_extra.shape(),
                " must match the probabilities ", c.probs.shape());
      ops<B>::axpy(T(1), d_probs_extra, c.d_probs.view());
    }
    ops<B>::masked_softmax_backward(c.probs.cview(), c.d_probs.cview(), c.d_probs.view(), static_cast<T>(s_.scale), dbias);
    c.d_q.resize(Shape{Bn, H, Tq, D});
    c.d_k.resize(Shape{Bn, H, Tk, D});
    ops<B>::matmul(c.d_probs.cview(), false, c.k.cview(), false, c.d_q.view());  // dQ = dS K
    ops<B>::matmul(c.d_probs.cview(), true, c.q.cview(), false, c.d_k.view());   // dK = dS^T Q
    if (s_.rotary_base > 0) {  // back through the turn: the inverse rotation
      ops<B>::rotary(c.d_q.cview(), rotary_rows(c.cos, Tq), rotary_rows(c.sin, Tq), c.d_q.view(), true);
      ops<B>::rotary(c.d_k.cview(), rotary_rows(c.cos, Tk), rotary_rows(c.sin, Tk), c.d_k.view(), true);
    }
  }

  // --- packed input -----------------------------------------------------------
  // q, k, v are (1, H, N, D): sequence i of head h is the contiguous rows
  // [offset_i, offset_i + L_i) of head h's (N, D) matrix, so each product is one
  // strided batched GEMM over the heads per sequence.
  struct Block {
    index_t lq, lk, oq, ok, p;  // lengths, token offsets, offset of the (H, lq, lk) block
  };
  static Block block_of(const AttentionPacking& pk, index_t i, index_t H) {
    return {pk.q.length(i), pk.k.length(i), pk.q.offset(i), pk.k.offset(i), H * pk.block(i)};
  }

  void forward_packed(const SoftmaxMask<B, T>& mask, TensorView<B, T> out, Cache& c, DropoutKey key) const {
    const AttentionPacking& pk = *mask.packed;
    const index_t Nq = c.q.dim(2), Nk = c.k.dim(2), H = s_.heads, D = s_.d_head;
    PLM_CHECK(c.q.dim(0) == 1 && pk.q.tokens() == Nq && pk.k.tokens() == Nk, "Attention: packed input of ", c.q.dim(0), " rows, ", Nq,
              " query and ", Nk, " key tokens, but the packing holds ", pk.q.tokens(), " and ", pk.k.tokens(),
              " tokens (packed input is (1, N, C))");
    PLM_CHECK(mask.key_valid.empty(), "Attention: packed input has no padding; key_valid must be empty");
    if (!mask.bias.empty())
      PLM_CHECK(mask.bias.numel() == H * pk.pairs(), "Attention: packed bias of ", mask.bias.numel(), " values, but ", H,
                " heads over ", pk.pairs(), " (query, key) pairs need ", H * pk.pairs());
    if (s_.rotary_base > 0) {
      packed_rotary_table(pk.q, c.cos_q, c.sin_q, c);
      if (pk.k != pk.q) packed_rotary_table(pk.k, c.cos_k, c.sin_k, c);  // self-attention: the keys use the queries' table
      ops<B>::rotary(c.q.cview(), c.cos_q.cview(), c.sin_q.cview(), c.q.view());
      ops<B>::rotary(c.k.cview(), key_table(c.cos_q, c.cos_k, pk), key_table(c.sin_q, c.sin_k, pk), c.k.view());
    }
    if (!c.keep_probs) {  // blockwise: no probability tensor
      c.blockwise = true;
      c.probs = Tensor<B, T>();
      c.probs_dropped = Tensor<B, T>();
      c.ctx_h.resize(Shape{1, H, Nq, D});
      c.lse.resize(Shape{H, Nq});
      c.bias_seen = mask.bias.data();
      c.causal_seen = mask.causal;
      ops<B>::blockwise_attention(blockwise_args(c), c.ctx_h.data(), c.lse.data());
      return project_out(out, c);
    }
    c.probs.resize(Shape{H * pk.pairs()});
    const T *q = c.q.data(), *k = c.k.data(), *v = c.v.data();
    T* probs = c.probs.data();
    for (index_t i = 0; i < pk.sequences(); ++i) {
      const Block b = block_of(pk, i, H);
      ops<B>::gemm_strided_batched(false, true, b.lq, b.lk, D, T(1), q + b.oq * D, D, Nq * D, k + b.ok * D, D, Nk * D, T(0),
                                   probs + b.p, b.lk, b.lq * b.lk, H);
      SoftmaxMask<B, T> m;
      m.causal = mask.causal;
      m.scale = static_cast<T>(s_.scale);
      if (!mask.bias.empty()) m.bias = ConstView<B, T>(mask.bias.data() + b.p, Shape{H, b.lq, b.lk});
      const TensorView<B, T> blk(probs + b.p, Shape{1, H, b.lq, b.lk});
      ops<B>::masked_softmax(ConstView<B, T>(blk), blk, m);
    }
    const Tensor<B, T>* p = &c.probs;
    if (dropout_.active(key)) {
      c.probs_dropped.resize(c.probs.shape());
      dropout_.forward(c.probs.cview(), c.probs_dropped.view(), key);
      p = &c.probs_dropped;
    }
    c.ctx_h.resize(Shape{1, H, Nq, D});
    for (index_t i = 0; i < pk.sequences(); ++i) {
      const Block b = block_of(pk, i, H);
      ops<B>::gemm_strided_batched(false, false, b.lq, D, b.lk, T(1), p->data() + b.p, b.lk, b.lq * b.lk, v + b.ok * D, D, Nk * D,
                                   T(0), c.ctx_h.data() + b.oq * D, D, Nq * D, H);
    }
    project_out(out, c);
  }

  // From d_ctx_h to d_q, d_k, d_v per sequence; dbias holds the per-sequence blocks.
  void backward_packed(TensorView<B, T> dbias, Cache& c, ConstView<B, T> d_probs_extra) const {
    const AttentionPacking& pk = *c.packed;
    const index_t Nq = c.q.dim(2), Nk = c.k.dim(2), H = s_.heads, D = s_.d_head;
    c.d_v.resize(Shape{1, H, Nk, D});
    c.d_q.resize(Shape{1, H, Nq, D});
    c.d_k.resize(Shape{1, H, Nk, D});
    if (!dbias.empty())
      PLM_CHECK(dbias.numel() == H * pk.pairs(), "Attention: packed dbias of ", dbias.numel(), " values must match the ", H,
                " heads over ", pk.pairs(), " (query, key) pairs (", H * pk.pairs(), ")");
    if (c.blockwise) {
      PLM_CHECK(d_probs_extra.empty(), "Attention: a gradient on the probabilities was given, but the packed forward ran blockwise "
                "and kept none; set Cache::keep_probs on this layer's cache before the forward");
      ops<B>::blockwise_attention_backward(blockwise_args(c), c.ctx_h.data(), c.lse.data(),
                                           c.d_ctx_h.data(), c.d_q.data(), c.d_k.data(), c.d_v.data(), dbias.data());
      return rotate_back_packed(c, pk);
    }
    const Tensor<B, T>& p = dropout_.active(c.key) ? c.probs_dropped : c.probs;
    c.d_probs.resize(c.probs.shape());
    const T *q = c.q.data(), *k = c.k.data(), *v = c.v.data(), *dctx = c.d_ctx_h.data();
    T* dp = c.d_probs.data();
    for (index_t i = 0; i < pk.sequences(); ++i) {  // dP = dctx V^T, dV = P^T dctx
      const Block b = block_of(pk, i, H);
      ops<B>::gemm_strided_batched(false, true, b.lq, b.lk, D, T(1), dctx + b.oq * D, D, Nq * D, v + b.ok * D, D, Nk * D, T(0),
                                   dp + b.p, b.lk, b.lq * b.lk, H);
      ops<B>::gemm_strided_batched(true, false, b.lk, D, b.lq, T(1), p.data() + b.p, b.lk, b.lq * b.lk, dctx + b.oq * D, D, Nq * D,
                                   T(0), c.d_v.data() + b.ok * D, D, Nk * D, H);
    }
    if (dropout_.active(c.key)) dropout_.backward(c.d_probs.cview(), c.d_probs.view(), c.key);
    if (!d_probs_extra.empty()) {
      PLM_CHECK(d_probs_extra.numel() == c.probs.numel(), "Attention: extra probability gradient of ", d_probs_extra.numel(),
                " values must match the packed probabilities' ", c.probs.numel());
      ops<B>::axpy(T(1), d_probs_extra.reshape(c.probs.shape()), c.d_probs.view());
    }
    for (index_t i = 0; i < pk.sequences(); ++i) {  // dS, then dQ = dS K, dK = dS^T Q
      const Block b = block_of(pk, i, H);
      const Shape blk{1, H, b.lq, b.lk};
      const TensorView<B, T> ds(dp + b.p, blk);
      ops<B>::masked_softmax_backward(ConstView<B, T>(c.probs.data() + b.p, blk), ConstView<B, T>(ds), ds, static_cast<T>(s_.scale),
                                      dbias.empty() ? TensorView<B, T>{} : TensorView<B, T>(dbias.data() + b.p, Shape{H, b.lq, b.lk}));
      ops<B>::gemm_strided_batched(false, false, b.lq, D, b.lk, T(1), dp + b.p, b.lk, b.lq * b.lk, k + b.ok * D, D, Nk * D, T(0),
                                   c.d_q.data() + b.oq * D, D, Nq * D, H);
      ops<B>::gemm_strided_batched(true, false, b.lk, D, b.lq, T(1), dp + b.p, b.lk, b.lq * b.lk, q + b.oq * D, D, Nq * D, T(0),
                                   c.d_k.data() + b.ok * D, D, Nk * D, H);
    }
    rotate_back_packed(c, pk);
  }

  // Back through the rotary turn of packed q and k: the inverse rotation.
  void rotate_back_packed(Cache& c, const AttentionPacking& pk) const {
    if (s_.rotary_base <= 0) return;
    ops<B>::rotary(c.d_q.cview(), c.cos_q.cview(), c.sin_q.cview(), c.d_q.view(), true);
    ops<B>::rotary(c.d_k.cview(), key_table(c.cos_q, c.cos_k, pk), key_table(c.sin_q, c.sin_k, pk), c.d_k.view(), true);
  }

  // The blockwise op's arguments for the cache's (turned) q, k, v, bias and causal rule.
  BlockwiseAttention<T> blockwise_args(const Cache& c) const {
    BlockwiseAttention<T> a;
    a.packing = c.packed;
    a.heads = s_.heads;
    a.d_head = s_.d_head;
    a.q = c.q.data();
    a.k = c.k.data();
    a.v = c.v.data();
    a.bias = c.bias_seen;
    a.causal = c.causal_seen;
    a.scale = static_cast<T>(s_.scale);
    if (dropout_.active(c.key)) {
      a.dropout = static_cast<T>(dropout_.p);
      a.seed = c.key.seed;
      a.stream = c.key.stream();
    }
    return a;
  }

  // The keys' rotary table: the queries' one when both are the same packing.
  static ConstView<B, T> key_table(const Tensor<B, T>& q_table, const Tensor<B, T>& k_table, const AttentionPacking& pk) {
    return pk.k == pk.q ? q_table.cview() : k_table.cview();
  }

  // The rotary table row of each packed token: its position within its sequence.
  void packed_rotary_table(const Packing& p, Tensor<B, T>& cos, Tensor<B, T>& sin, Cache& c) const {
    rotary_table(p.max_length(), c);
    const index_t half = s_.d_head / 2;
    const std::vector<std::int32_t> pos = p.positions();
    Tensor<B, std::int32_t> rows(Shape{p.tokens()});
    upload(pos.data(), rows.view());
    cos.resize(Shape{p.tokens(), half});
    sin.resize(Shape{p.tokens(), half});
    ops<B>::gather(rotary_rows(c.cos, p.max_length()), rows.cview(), cos.view());
    ops<B>::gather(rotary_rows(c.sin, p.max_length()), rows.cview(), sin.view());
  }

  // ctx_h (B, H, Tq, D) -> out (B, Tq, C): merged heads through the output projection.
  void project_out(TensorView<B, T> out, Cache& c) const {
    const index_t Bn = c.ctx_h.dim(0), H = s_.heads, Tq = c.ctx_h.dim(2), D = s_.d_head;
    if (!s_.output_projection) {  // the heads' context is the output
      ops<B>::transpose12(c.ctx_h.cview(), out.reshape(Shape{Bn, Tq, H, D}));
      return;
    }
    c.ctx.resize(Shape{Bn, Tq, H * D});
    ops<B>::transpose12(c.ctx_h.cview(), c.ctx.view().reshape(Shape{Bn, Tq, H, D}));
    o_.forward(c.ctx.cview(), out);
  }

 public:

  // --- incremental decoding -------------------------------------------------
  // Keys and values of a sequence, laid out (B, H, capacity, D); the first
  // `length` positions are filled.
  struct KVCache {
    Tensor<B, T> k, v;
    index_t length = 0;
  };

  // Projects x_kv (B, Tk, C) into a full cache (cross-attention: once per source).
  void precompute_kv(ConstView<B, T> x_kv, KVCache& kv, Cache& c) const {
    const index_t Bn = x_kv.dim(0), Tk = x_kv.dim(1), I = s_.inner();
    c.k_lin.resize(Shape{Bn, Tk, I});
    c.v_lin.resize(Shape{Bn, Tk, I});
    k_.forward(x_kv, c.k_lin.view());
    v_.forward(x_kv, c.v_lin.view());
    split_heads(c.k_lin, kv.k, Tk);
    split_heads(c.v_lin, kv.v, Tk);
    kv.length = Tk;
  }

  // One new query position x (B, 1, C) attending to a cache. With append, x's
  // own key and value are first written at position kv.length (self-attention,
  // cache allocated with capacity by reserve()). mask.bias: (H, 1, Tk) or empty;
  // mask.key_valid: (B, Tk) or empty, Tk = keys after the append.
  void forward_step(ConstView<B, T> x, KVCache& kv, bool append, SoftmaxMask<B, T> mask, TensorView<B, T> out, Cache& c) const {
    const index_t Bn = x.dim(0), H = s_.heads, D = s_.d_head, I = s_.inner();
    PLM_CHECK(x.rank() == 3 && x.dim(1) == 1 && x.dim(2) == s_.d_model, "Attention::forward_step: x ", x.shape(),
              " must be (B, 1, ", s_.d_model, ")");
    PLM_CHECK(s_.rotary_base == 0, "Attention::forward_step: incremental decoding with rotary positions is not implemented");
    const index_t cap = kv.k.dim(2);
    c.q_lin.resize(Shape{Bn, 1, I});
    q_.forward(x, c.q_lin.view());
    if (append) {
      PLM_CHECK(kv.length < cap, "Attention::forward_step: key/value cache full (", cap, " positions)");
      c.k_lin.resize(Shape{Bn, 1, I});
      c.v_lin.resize(Shape{Bn, 1, I});
      k_.forward(x, c.k_lin.view());
      v_.forward(x, c.v_lin.view());
      for (index_t b = 0; b < Bn; ++b)
        for (index_t h = 0; h < H; ++h) {
          ops<B>::copy(c.k_lin.cview()[b].reshape(Shape{H, D})[h], kv.k.view()[b][h][kv.length]);
          ops<B>::copy(c.v_lin.cview()[b].reshape(Shape{H, D})[h], kv.v.view()[b][h][kv.length]);
        }
      kv.length += 1;
    }
    const index_t Tk = kv.length;
    // scores (B*H, 1, Tk) = q (B*H, 1, D) x K[:, :, :Tk]^T; the cache's batch stride is cap * D.
    c.probs.resize(Shape{Bn, H, 1, Tk});
    ops<B>::gemm_strided_batched(false, true, 1, Tk, D, T(1), c.q_lin.data(), D, D, kv.k.data(), D, cap * D, T(0),
                                 c.probs.data(), Tk, Tk, Bn * H);
    mask.scale = static_cast<T>(s_.scale);
    ops<B>::masked_softmax(c.probs.cview(), c.probs.view(), mask);
    c.ctx_h.resize(Shape{Bn, H, 1, D});
    ops<B>::gemm_strided_batched(false, false, 1, D, Tk, T(1), c.probs.data(), Tk, Tk, kv.v.data(), D, cap * D, T(0),
                                 c.ctx_h.data(), D, D, Bn * H);
    // (B, H, 1, D) is already (B, 1, H*D) in memory.
    if (s_.output_projection)
      o_.forward(c.ctx_h.cview().reshape(Shape{Bn, 1, I}), out);
    else
      ops<B>::copy(c.ctx_h.cview().reshape(Shape{Bn, 1, I}), out);
  }

  // Allocates an empty self-attention cache for `capacity` positions.
  void reserve(KVCache& kv, index_t batch, index_t capacity) const {
    kv.k.resize(Shape{batch, s_.heads, capacity, s_.d_head});
    kv.v.resize(Shape{batch, s_.heads, capacity, s_.d_head});
    kv.length = 0;
  }

 private:
  // cos and sin of position t times base^(-2i / D), i < D/2, for t < n (HF's
  // EsmRotaryEmbedding, computed in double); kept while n does not change.
  void rotary_table(index_t n, Cache& c) const {
    if (c.rotary_len == n && c.cos.numel() == n * (s_.d_head / 2)) return;
    const index_t half = s_.d_head / 2;
    std::vector<T> cs(static_cast<std::size_t>(n * half)), sn(cs.size());
    std::vector<double> inv_freq(static_cast<std::size_t>(half));
    for (index_t i = 0; i < half; ++i)
      inv_freq[static_cast<std::size_t>(i)] = 1.0 / std::pow(s_.rotary_base, static_cast<double>(2 * i) / static_cast<double>(s_.d_head));
    for (index_t t = 0; t < n; ++t)
      for (index_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(t) * inv_freq[static_cast<std::size_t>(i)];
        cs[static_cast<std::size_t>(t * half + i)] = static_cast<T>(std::cos(a));
        sn[static_cast<std::size_t>(t * half + i)] = static_cast<T>(std::sin(a));
      }
    c.cos.resize(Shape{n, half});
    c.sin.resize(Shape{n, half});
    upload(cs.data(), c.cos.view());
    upload(sn.data(), c.sin.view());
    c.rotary_len = n;
  }
  // The first n rows of a table.
  static ConstView<B, T> rotary_rows(const Tensor<B, T>& table, index_t n) {
    return ConstView<B, T>(table.data(), Shape{n, table.dim(1)});
  }

  // (B, T, H*D) -> (B, H, T, D)
  void split_heads(const Tensor<B, T>& lin, Tensor<B, T>& heads, index_t Tn) const {
    const index_t Bn = lin.dim(0);
    heads.resize(Shape{Bn, s_.heads, Tn, s_.d_head});
    ops<B>::transpose12(lin.cview().reshape(Shape{Bn, Tn, s_.heads, s_.d_head}), heads.view());
  }
  // (B, H, T, D) -> (B, T, H*D)
  void merge_heads(const Tensor<B, T>& heads, Tensor<B, T>& lin, index_t Tn) const {
    const index_t Bn = heads.dim(0);
    ops<B>::transpose12(heads.cview(), lin.view().reshape(Shape{Bn, Tn, s_.heads, s_.d_head}));
  }

  AttentionShape s_;
  Linear<B, T> q_, k_, v_, o_;
  Dropout dropout_;
};

}  // namespace plm::nn
