#pragma once
// ops<cuda>: the primitives of ops<cpu> on an NVIDIA GPU, same names, same
// arguments, same checks (backend/checks.hpp), so every layer, objective and
// optimizer written against ops<B> runs unchanged with B = plm::cuda.
//
// Each op checks shapes here, on the host, then queues a kernel or a cuBLAS
// call on the current CudaContext's stream (backend/cuda/launch.hpp). Ops are
// instantiated for float and double (double for parity and gradient checks);
// fill, copy, convert and gather also take bf16.
#include <cstdint>
#include <cstring>
#include <vector>

#include "plm/backend/activation_kind.hpp"
#include "plm/backend/blockwise_attention.hpp"
#include "plm/backend/checks.hpp"
#include "plm/backend/cross_entropy_sums.hpp"
#include "plm/backend/cuda/launch.hpp"
#include "plm/backend/cuda/memory.hpp"
#include "plm/backend/matmul.hpp"
#include "plm/backend/softmax_mask.hpp"
#include "plm/backend/tags.hpp"

namespace plm {

template <>
struct ops<cuda> : detail::matmul_op<cuda> {
  template <class T> using View = TensorView<cuda, T>;
  template <class T> using CView = TensorView<cuda, const T>;

  // ---- elementwise -------------------------------------------------------
  template <class T>
  static void fill(View<T> x, T value) {
    detail::check_not_null("fill", "x", x.data(), x.numel());
    detail::cu::fill<T>(x.data(), x.numel(), value);
  }
  template <class T>
  static void copy(CView<T> src, View<T> dst) {
    detail::check_same_shape("copy", "src", src.shape(), "dst", dst.shape());
    detail::check_not_null("copy", "src", src.data(), src.numel());
    detail::check_not_null("copy", "dst", dst.data(), dst.numel());
    if (src.data() != dst.data() && src.numel() > 0)
      memory<cuda>::copy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * sizeof(T));
  }
  template <class S, class D>
  static void convert(CView<S> src, View<D> dst) {
    detail::check_same_shape("convert", "src", src.shape(), "dst", dst.shape());
    detail::cu::convert<S, D>(src.data(), dst.data(), src.numel());
  }
  template <class T> static void add(CView<T> a, CView<T> b, View<T> out) { binary("add", detail::cu::Binary::add, a, b, out); }
  template <class T> static void sub(CView<T> a, CView<T> b, View<T> out) { binary("sub", detail::cu::Binary::sub, a, b, out); }
  template <class T> static void mul(CView<T> a, CView<T> b, View<T> out) { binary("mul", detail::cu::Binary::mul, a, b, out); }
  template <class T>
  static void scale(CView<T> x, T alpha, View<T> out) {
    detail::require_compute_type<T>("scale");
    detail::check_same_shape("scale", "x", x.shape(), "out", out.shape());
    detail::cu::scale<T>(x.data(), alpha, out.data(), x.numel());
  }
  template <class T>
  static void axpy(T alpha, CView<T> x, View<T> y) {
    detail::require_compute_type<T>("axpy");
    detail::check_same_shape("axpy", "x", x.shape(), "y", y.shape());
    detail::cu::axpy<T>(alpha, x.data(), y.data(), x.numel());
  }
  template <class T> static void add_row(CView<T> x, CView<T> row, View<T> out) { row_op("add_row", detail::cu::RowOp::add, x, row, out); }
  template <class T> static void mul_row(CView<T> x, CView<T> row, View<T> out) { row_op("mul_row", detail::cu::RowOp::mul, x, row, out); }
  template <class T>
  static void sum_rows(CView<T> x, View<T> out, T beta = T(0)) {
    detail::require_compute_type<T>("sum_rows");
    detail::check_sum_rows(x.shape(), out.shape());
    detail::cu::sum_rows<T>(x.data(), out.data(), x.shape().rows(), x.dim(-1), beta);
  }
  template <class T>
  static void scale_rows(CView<T> x, CView<T> factor, View<T> out) {
    detail::require_compute_type<T>("scale_rows");
    detail::check_scale_rows(x.shape(), factor.shape(), out.shape());
    detail::cu::row_broadcast<T>(detail::cu::RowOp::scale, x.data(), factor.data(), out.data(), x.shape().rows(), x.dim(-1));
  }
  template <class T>
  static void rotary(CView<T> x, CView<T> cos, CView<T> sin, View<T> y, bool inverse = false) {
    detail::require_compute_type<T>("rotary");
    detail::check_rotary(x.shape(), cos.shape(), sin.shape(), y.shape());
    detail::cu::rotary<T>(x.data(), cos.data(), sin.data(), y.data(), x.shape().rows(), x.dim(-2), x.dim(-1), inverse);
  }
  template <class T>
  static void transpose12(CView<T> x, View<T> out) {
    detail::check_transpose12(x.shape(), out.shape(), x.data() == out.data());
    if (x.numel() > 0) detail::cu::transpose12<T>(x.data(), out.data(), x.dim(0), x.dim(1), x.dim(2), x.dim(3));
  }

  // ---- matrix products (matmul comes from detail::matmul_op) ---------------
  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                                   index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc,
                                   index_t stride_c, index_t batch) {
    detail::require_compute_type<T>("gemm");
    if (!detail::check_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, stride_c, batch)) return;
    detail::cu::gemm<T>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch);
  }

  // ---- attention softmax ---------------------------------------------------
  template <class T>
  static void masked_softmax(CView<T> scores, View<T> probs, const SoftmaxMask<cuda, T>& mask = {}) {
    detail::require_compute_type<T>("masked_softmax");
    detail::check_softmax_mask("masked_softmax", scores.shape(), mask);
    detail::check_same_shape("masked_softmax", "scores", scores.shape(), "probs", probs.shape());
    if (scores.numel() == 0) return;
    detail::cu::masked_softmax<T>(scores.data(), probs.data(), scores.dim(0), scores.dim(1), scores.dim(2), scores.dim(3),
                                  mask.bias.data(), !mask.bias.empty() && mask.bias.rank() == 3, mask.key_valid.data(),
                                  mask.causal, mask.scale);
  }
  template <class T>
  static void masked_softmax_backward(CView<T> probs, CView<T> dprobs, View<T> dscores, T scale = T(1), View<T> dbias = {}) {
    detail::require_compute_type<T>("masked_softmax_backward");
    const Shape db = dbias.shape();
    const bool shared =
        detail::check_softmax_backward(probs.shape(), dprobs.shape(), dscores.shape(), dbias.empty() ? nullptr : &db);
    if (probs.numel() == 0) return;
    detail::cu::masked_softmax_backward<T>(probs.data(), dprobs.data(), dscores.data(), probs.dim(0), probs.dim(1), probs.dim(2),
                                           probs.dim(3), scale, dbias.data(), shared);
  }

  // Packed attention without the probability tensor (backend/blockwise_attention.hpp).
  // ctx (H, Nq, D) and lse (H, Nq), the log-sum-exp of each query row's logits, are written.
  // A query row that sees no key gets ctx 0 and lse -inf.
  template <class T>
  static void blockwise_attention(const BlockwiseAttention<T>& a, T* ctx, T* lse) {
    detail::require_compute_type<T>("blockwise_attention");
    detail::check_blockwise_attention("blockwise_attention", a);
    if (a.packing->q.tokens() == 0) return;
    check_blockwise_d_head("blockwise_attention", a.d_head);
    PLM_CHECK(ctx && lse, "blockwise_attention: ctx and lse must not be null");
    const Tensor<cuda, index_t> offsets = blockwise_offsets(a);
    detail::cu::blockwise_attention<T>(a, offsets.data(), ctx, lse);
  }
  // From dctx (H, Nq, D): dq (H, Nq, D), dk, dv (H, Nk, D) are WRITTEN; dbias (H * pairs values),
  // when not null, is ADDED to (the gradient of the logits, before the scale).
  template <class T>
  static void blockwise_attention_backward(const BlockwiseAttention<T>& a, const T* ctx, const T* lse, const T* dctx, T* dq, T* dk,
                                           T* dv, T* dbias) {
    detail::require_compute_type<T>("blockwise_attention_backward");
    detail::check_blockwise_attention("blockwise_attention_backward", a);
    if (a.packing->q.tokens() == 0) return;
    check_blockwise_d_head("blockwise_attention_backward", a.d_head);
    PLM_CHECK(ctx && lse && dctx, "blockwise_attention_backward: ctx, lse and dctx must not be null");
    PLM_CHECK(dq && dk && dv, "blockwise_attention_backward: dq, dk and dv must not be null");
    const Tensor<cuda, index_t> offsets = blockwise_offsets(a);
    Tensor<cuda, T> drow(Shape{a.heads * a.packing->q.tokens()});  // dot(dctx, ctx) per query row, between the two kernels
    detail::cu::blockwise_attention_backward<T>(a, offsets.data(), ctx, lse, dctx, dq, dk, dv, dbias, drow.data());
  }

  // ---- norms -----------------------------------------------------------------
  template <class T>
  static void rms_norm(CView<T> x, CView<T> weight, T eps, View<T> y, View<T> inv_rms) {
    detail::require_compute_type<T>("rms_norm");
    detail::check_rms_norm(x.shape(), weight.shape(), y.shape(), inv_rms.shape());
    detail::cu::rms_norm<T>(x.data(), weight.data(), eps, y.data(), inv_rms.data(), x.shape().rows(), x.dim(-1));
  }
  template <class T>
  static void rms_norm_backward(CView<T> x, CView<T> weight, CView<T> inv_rms, CView<T> dy, View<T> dx, View<T> dweight) {
    detail::require_compute_type<T>("rms_norm_backward");
    detail::check_rms_norm_backward(x.shape(), weight.shape(), inv_rms.shape(), dy.shape(), dx.shape(), dweight.shape());
    detail::cu::rms_norm_backward<T>(x.data(), weight.data(), inv_rms.data(), dy.data(), dx.data(), dweight.data(),
                                     x.shape().rows(), x.dim(-1));
  }
  template <class T>
  static void layer_norm(CView<T> x, CView<T> weight, CView<T> bias, T eps, View<T> y, View<T> mean, View<T> rstd) {
    detail::require_compute_type<T>("layer_norm");
    detail::check_layer_norm(x.shape(), weight.shape(), bias.shape(), y.shape(), mean.shape(), rstd.shape());
    detail::cu::layer_norm<T>(x.data(), weight.data(), bias.data(), eps, y.data(), mean.data(), rstd.data(), x.shape().rows(),
                              x.dim(-1));
  }
  template <class T>
  static void layer_norm_backward(CView<T> x, CView<T> weight, CView<T> mean, CView<T> rstd, CView<T> dy, View<T> dx,
                                  View<T> dweight, View<T> dbias) {
    detail::require_compute_type<T>("layer_norm_backward");
    detail::check_layer_norm_backward(x.shape(), weight.shape(), mean.shape(), rstd.shape(), dy.shape(), dx.shape(),
                                      dweight.shape(), dbias.shape());
    detail::cu::layer_norm_backward<T>(x.data(), weight.data(), mean.data(), rstd.data(), dy.data(), dx.data(), dweight.data(),
                                       dbias.data(), x.shape().rows(), x.dim(-1));
  }

  // ---- activations -----------------------------------------------------------
  template <class T> static void gelu(CView<T> x, View<T> y) { act("gelu", detail::cu::Act::gelu, x, y); }
  template <class T> static void gelu_erf(CView<T> x, View<T> y) { act("gelu_erf", detail::cu::Act::gelu_erf, x, y); }
  template <class T> static void silu(CView<T> x, View<T> y) { act("silu", detail::cu::Act::silu, x, y); }
  template <class T> static void relu(CView<T> x, View<T> y) { act("relu", detail::cu::Act::relu, x, y); }
  template <class T> static void gelu_backward(CView<T> x, CView<T> dy, View<T> dx) { act_bw("gelu_backward", detail::cu::Act::gelu, x, dy, dx); }
  template <class T> static void gelu_erf_backward(CView<T> x, CView<T> dy, View<T> dx) { act_bw("gelu_erf_backward", detail::cu::Act::gelu_erf, x, dy, dx); }
  template <class T> static void silu_backward(CView<T> x, CView<T> dy, View<T> dx) { act_bw("silu_backward", detail::cu::Act::silu, x, dy, dx); }
  template <class T> static void relu_backward(CView<T> x, CView<T> dy, View<T> dx) { act_bw("relu_backward", detail::cu::Act::relu, x, dy, dx); }
  // The gated feed-forward's activation in one pass (ops<cpu>::gated).
  template <class T>
  static void gated(Activation kind, CView<T> h0, CView<T> h1, View<T> g) {
    detail::require_compute_type<T>("gated");
    detail::check_gated("gated", h0.shape(), h1.shape(), g.shape(), g.shape());
    detail::cu::gated<T>(act_of(kind), h0.data(), h1.data(), g.data(), h0.numel());
  }
  template <class T>
  static void gated_backward(Activation kind, CView<T> h0, CView<T> h1, CView<T> dg, View<T> dh0, View<T> dh1) {
    detail::require_compute_type<T>("gated_backward");
    detail::check_gated("gated_backward", h0.shape(), h1.shape(), dg.shape(), dh0.shape());
    detail::check_gated("gated_backward", h0.shape(), h1.shape(), dg.shape(), dh1.shape());
    detail::cu::gated_backward<T>(act_of(kind), h0.data(), h1.data(), dg.data(), dh0.data(), dh1.data(), h0.numel());
  }

  // ---- embeddings --------------------------------------------------------------
  template <class T>
  static void gather(CView<T> table, CView<std::int32_t> ids, View<T> out) {
    detail::check_embedding("gather", table.shape(), ids.shape(), out.shape());
    check_ids("gather", ids, table.dim(0));
    detail::cu::gather<T>(table.data(), ids.data(), out.data(), ids.numel(), table.dim(1));
  }
  template <class T>
  static void scatter_add(CView<std::int32_t> ids, CView<T> drows, View<T> dtable) {
    detail::require_compute_type<T>("scatter_add");
    detail::check_embedding("scatter_add", dtable.shape(), ids.shape(), drows.shape());
    check_ids("scatter_add", ids, dtable.dim(0));
    detail::cu::scatter_add<T>(ids.data(), drows.data(), dtable.data(), ids.numel(), dtable.dim(1));
  }

  // ---- reductions (accumulated in double; the result is read back) --------------
  template <class T> static double sum(CView<T> x) { return detail::cu::reduce<T>(detail::cu::Reduce::sum, x.data(), x.numel()); }
  template <class T> static double sum_squares(CView<T> x) { return detail::cu::reduce<T>(detail::cu::Reduce::sum_squares, x.data(), x.numel()); }
  template <class T> static bool all_finite(CView<T> x) { return detail::cu::reduce<T>(detail::cu::Reduce::finite, x.data(), x.numel()) == 0; }

  // ---- dropout: the same Philox draws as ops<cpu>, so the same elements drop ------
  template <class T>
  static void dropout(CView<T> x, View<T> y, T p, std::uint64_t seed, std::uint64_t stream) {
    detail::require_compute_type<T>("dropout");
    detail::check_dropout("dropout", x.shape(), y.shape(), static_cast<double>(p));
    detail::cu::dropout<T>(x.data(), y.data(), x.numel(), p, seed, stream);
  }
  template <class T>
  static void dropout_backward(CView<T> dy, View<T> dx, T p, std::uint64_t seed, std::uint64_t stream) {
    detail::require_compute_type<T>("dropout_backward");
    detail::check_dropout("dropout_backward", dy.shape(), dx.shape(), static_cast<double>(p));
    detail::cu::dropout<T>(dy.data(), dx.data(), dy.numel(), p, seed, stream);
  }

  // ---- fused cross-entropy -------------------------------------------------------
  template <class T>
  static CrossEntropySums cross_entropy(CView<T> logits, CView<std::int32_t> targets, std::int32_t ignore_index,
                                        T label_smoothing = T(0), View<T> dlogits = {}, T grad_scale = T(1),
                                        const CrossEntropyRows<cuda, T>& per_row = {}) {
    detail::require_compute_type<T>("cross_entropy");
    const Shape dl = dlogits.shape();
    detail::check_cross_entropy(logits.shape(), targets.shape(), dlogits.empty() ? nullptr : &dl,
                                static_cast<double>(label_smoothing), per_row.grad_scale.empty() ? -1 : per_row.grad_scale.numel(),
                                per_row.loss.empty() ? -1 : per_row.loss.numel(),
                                per_row.correct.empty() ? -1 : per_row.correct.numel());
    const index_t rows = logits.shape().rows(), V = logits.dim(-1);
    index_t bad = -1;
    const CrossEntropySums s = detail::cu::cross_entropy<T>(logits.data(), targets.data(), rows, V, ignore_index, label_smoothing,
                                                            dlogits.data(), grad_scale, per_row.grad_scale.data(),
                                                            per_row.loss.data(), per_row.correct.data(), bad);
    if (bad >= 0) {
      std::int32_t t = 0;
      memory<cuda>::copy_to_host(&t, targets.data() + bad, sizeof t);
      detail::fail_bad_target(t, bad, V, ignore_index);
    }
    return s;
  }

  // ---- optimizer steps -------------------------------------------------------------
  template <class T>
  static void adamw_update(View<T> param, CView<T> grad, View<T> m, View<T> v, double lr, double beta1, double beta2, double eps,
                           double weight_decay, double correction1, double correction2) {
    detail::require_compute_type<T>("adamw_update");
    detail::check_adamw(param.shape(), grad.shape(), m.shape(), v.shape());
    detail::cu::adamw<T>(param.data(), grad.data(), m.data(), v.data(), param.numel(), lr, beta1, beta2, eps, weight_decay,
                         correction1, correction2);
  }
  template <class T>
  static void adafactor_update(View<T> param, CView<T> grad, View<T> row, View<T> col, View<T> m, View<T> scratch, double lr,
                               double beta2t, double eps1, double clip_threshold, double beta1, double weight_decay) {
    detail::require_compute_type<T>("adafactor_update");
    const bool factored = !col.empty();
    const auto [R, C] = detail::check_adafactor(param.shape(), grad.shape(), row.shape(), col.shape(), m.shape(), scratch.shape(),
                                                factored, !m.empty());
    if (param.numel() == 0) return;
    detail::cu::adafactor<T>(param.data(), grad.data(), row.data(), col.data(), m.data(), scratch.data(), R, C, lr, beta2t, eps1,
                             clip_threshold, beta1, weight_decay);
  }

 private:
  template <class T>
  static void binary(const char* op, detail::cu::Binary kind, CView<T> a, CView<T> b, View<T> out) {
    detail::require_compute_type<T>(op);
    detail::check_elementwise(op, a.shape(), b.shape(), out.shape());
    detail::cu::binary<T>(kind, a.data(), b.data(), out.data(), a.numel());
  }
  template <class T>
  static void row_op(const char* op, detail::cu::RowOp kind, CView<T> x, CView<T> row, View<T> out) {
    detail::require_compute_type<T>(op);
    detail::check_row_broadcast(op, x.shape(), row.shape(), out.shape());
    detail::cu::row_broadcast<T>(kind, x.data(), row.data(), out.data(), x.shape().rows(), x.dim(-1));
  }
  static detail::cu::Act act_of(Activation kind) {
    switch (kind) {
      case Activation::gelu: return detail::cu::Act::gelu;
      case Activation::gelu_erf: return detail::cu::Act::gelu_erf;
      case Activation::silu: return detail::cu::Act::silu;
      case Activation::relu: return detail::cu::Act::relu;
    }
    PLM_FAIL("activation: unknown kind ", static_cast<int>(kind));
  }
  template <class T>
  static void act(const char* op, detail::cu::Act kind, CView<T> x, View<T> y) {
    detail::require_compute_type<T>(op);
    detail::check_unary(op, x.shape(), y.shape());
    detail::cu::activation<T>(kind, x.data(), y.data(), x.numel());
  }
  template <class T>
  static void act_bw(const char* op, detail::cu::Act kind, CView<T> x, CView<T> dy, View<T> dx) {
    detail::require_compute_type<T>(op);
    detail::check_unary_backward(op, x.shape(), dy.shape(), dx.shape());
    detail::cu::activation_backward<T>(kind, x.data(), dy.data(), dx.data(), x.numel());
  }
  // A warp holds a row of d_head values, 32 lanes by 4.
  static void check_blockwise_d_head(const char* op, index_t d_head) {
    PLM_CHECK(d_head <= detail::cu::blockwise_attention_max_d_head, op, ": d_head ", d_head, " exceeds the ",
              detail::cu::blockwise_attention_max_d_head, " the CUDA kernels support");
  }
  // The packing's query offsets, key offsets and H * blocks (S + 1 each) on the device. The upload
  // waits for the copy; the buffer goes back to the allocator's cache when the op returns, which is
  // safe with the kernels still queued: the cache hands it out only to later work on the same stream.
  template <class T>
  static Tensor<cuda, index_t> blockwise_offsets(const BlockwiseAttention<T>& a) {
    const AttentionPacking& pk = *a.packing;
    const std::size_t n = static_cast<std::size_t>(pk.sequences()) + 1;
    std::vector<index_t> h(3 * n);
    for (std::size_t i = 0; i < n; ++i) {
      h[i] = pk.q.offsets()[i];
      h[n + i] = pk.k.offsets()[i];
      h[2 * n + i] = a.heads * pk.blocks[i];
    }
    Tensor<cuda, index_t> d(Shape{static_cast<index_t>(3 * n)});
    upload(h.data(), d.view());
    return d;
  }
  static void check_ids(const char* op, CView<std::int32_t> ids, index_t vocab) {
    const index_t bad = detail::cu::find_bad_id(ids.data(), ids.numel(), vocab);
    if (bad < 0) return;
    std::int32_t id = 0;
    memory<cuda>::copy_to_host(&id, ids.data() + bad, sizeof id);
    detail::fail_bad_id(op, id, bad, ids.shape(), vocab);
  }
};

}  // namespace plm
