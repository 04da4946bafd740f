#pragma once
// Argument checks shared by every backend's ops.
//
// Each op of ops<cpu> and ops<cuda> validates its arguments with the same
// function here before touching memory, so both backends reject the same
// mistakes with the same message. The checks read shapes and pointers only,
// never element values (those may live on a device).
#include <cstdint>
#include <type_traits>
#include <utility>

#include "plm/backend/softmax_mask.hpp"
#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"
#include "plm/core/shape.hpp"

namespace plm::detail {

template <class T>
void require_compute_type(const char* op) {
  static_assert(is_compute_type_v<T>, "plm: this op computes in float or double; convert bf16 with ops::convert first");
  (void)op;
}

inline void check_same_shape(const char* op, const char* na, const Shape& a, const char* nb, const Shape& b) {
  PLM_CHECK(a == b, op, ": ", na, " ", a, " and ", nb, " ", b, " must have the same shape");
}

inline void check_rank_at_least(const char* op, const char* name, const Shape& s, int r) {
  PLM_CHECK(s.rank() >= r, op, ": ", name, " ", s, " needs rank >= ", r);
}

inline void check_vector(const char* op, const char* name, const Shape& s, index_t n) {
  PLM_CHECK(s.rank() == 1 && s[0] == n, op, ": ", name, " has shape ", s, ", expected (", n, ",)");
}

inline void check_not_null(const char* op, const char* name, const void* p, index_t n) {
  PLM_CHECK(p != nullptr || n == 0, op, ": ", name, " is an empty view");
}

// gemm_strided_batched. Returns false when there is nothing to compute.
inline bool check_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const void* a, index_t lda, const void* b,
                       index_t ldb, const void* c, index_t ldc, index_t stride_c, index_t batch) {
  PLM_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "gemm: negative size m=", m, " n=", n, " k=", k, " batch=", batch);
  const index_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  PLM_CHECK(lda >= a_cols && ldb >= b_cols && ldc >= n, "gemm: leading dimensions lda=", lda, " ldb=", ldb, " ldc=", ldc,
            " too small for m=", m, " n=", n, " k=", k, trans_a ? " (A transposed)" : "", trans_b ? " (B transposed)" : "");
  if (m == 0 || n == 0 || batch == 0) return false;
  PLM_CHECK(c != nullptr && (k == 0 || (a != nullptr && b != nullptr)), "gemm: null operand");
  PLM_CHECK(batch == 1 || stride_c >= m * ldc, "gemm: output batch stride ", stride_c, " overlaps matrices of ", m, "x", ldc);
  return true;
}

// Elementwise ops: every operand has the shape of the first.
inline void check_elementwise(const char* op, const Shape& a, const Shape& b, const Shape& out) {
  check_same_shape(op, "a", a, "b", b);
  check_same_shape(op, "a", a, "out", out);
}

// x (..., C) op row (C) -> out (..., C).
inline void check_row_broadcast(const char* op, const Shape& x, const Shape& row, const Shape& out) {
  check_rank_at_least(op, "x", x, 1);
  check_vector(op, "row", row, x[-1]);
  check_same_shape(op, "x", x, "out", out);
}

// scale_rows: x (..., C), factor (rows of x), out like x.
inline void check_scale_rows(const Shape& x, const Shape& factor, const Shape& out) {
  check_rank_at_least("scale_rows", "x", x, 1);
  check_vector("scale_rows", "factor", factor, x.rows());
  check_same_shape("scale_rows", "x", x, "out", out);
}

// rotary: x (..., T, D) with D even, cos and sin (T, D/2), y like x.
inline void check_rotary(const Shape& x, const Shape& cos, const Shape& sin, const Shape& y) {
  check_rank_at_least("rotary", "x", x, 2);
  PLM_CHECK(x[-1] % 2 == 0, "rotary: x ", x, " needs an even last dimension (the rotated pairs)");
  PLM_CHECK(cos.rank() == 2 && cos[0] == x[-2] && cos[1] == x[-1] / 2, "rotary: cos ", cos, " must be (", x[-2], ", ",
            x[-1] / 2, ") for x ", x);
  check_same_shape("rotary", "cos", cos, "sin", sin);
  check_same_shape("rotary", "x", x, "y", y);
}

inline void check_sum_rows(const Shape& x, const Shape& out) {
  check_rank_at_least("sum_rows", "x", x, 1);
  check_vector("sum_rows", "out", out, x[-1]);
}

inline void check_transpose12(const Shape& x, const Shape& out, bool aliased) {
  PLM_CHECK(x.rank() == 4, "transpose12: x ", x, " needs rank 4");
  PLM_CHECK(out == Shape({x[0], x[2], x[1], x[3]}), "transpose12: out ", out, " should be ", Shape({x[0], x[2], x[1], x[3]}),
            " for x ", x);
  PLM_CHECK(!aliased || x.numel() == 0, "transpose12: out must not alias x");
}

// Scores (B, H, Tq, Tk) with an optional bias and key mask.
template <class B, class T>
void check_softmax_mask(const char* op, const Shape& s, const SoftmaxMask<B, T>& m) {
  PLM_CHECK(s.rank() == 4, op, ": scores ", s, " need rank 4 (B, H, Tq, Tk); reshape rows to (1, 1, rows, Tk)");
  PLM_CHECK(m.packed == nullptr, op, ": a packed mask is split per sequence by the attention layer; pass one sequence's block");
  if (!m.bias.empty()) {
    const Shape& bs = m.bias.shape();
    const bool shared = bs == Shape({s[1], s[2], s[3]});
    PLM_CHECK(shared || bs == s, op, ": bias ", bs, " must be (H, Tq, Tk) = ", Shape({s[1], s[2], s[3]}), " or match scores ", s);
  }
  if (!m.key_valid.empty())
    PLM_CHECK(m.key_valid.shape() == Shape({s[0], s[3]}), op, ": key_valid ", m.key_valid.shape(), " must be (B, Tk) = ",
              Shape({s[0], s[3]}), " for scores ", s);
}

// Returns true when dbias is shared by the batch, (H, Tq, Tk).
inline bool check_softmax_backward(const Shape& probs, const Shape& dprobs, const Shape& dscores, const Shape* dbias) {
  const char* op = "masked_softmax_backward";
  PLM_CHECK(probs.rank() == 4, op, ": probs ", probs, " need rank 4 (B, H, Tq, Tk)");
  check_same_shape(op, "probs", probs, "dprobs", dprobs);
  check_same_shape(op, "probs", probs, "dscores", dscores);
  if (!dbias) return false;
  const Shape shared_shape{probs[1], probs[2], probs[3]};
  const bool shared = *dbias == shared_shape;
  PLM_CHECK(shared || *dbias == probs, op, ": dbias ", *dbias, " must be (H, Tq, Tk) = ", shared_shape, " or match probs ", probs);
  return shared;
}

// Norms over the last dimension: x, y (..., C); weight (C); one statistic per row.
inline void check_norm(const char* op, const Shape& x, const Shape& y, const Shape& w, const Shape* stat, const char* stat_name) {
  check_rank_at_least(op, "x", x, 1);
  check_same_shape(op, "x", x, "y", y);
  check_vector(op, "weight", w, x[-1]);
  if (stat) check_vector(op, stat_name, *stat, x.rows());
}

inline void check_rms_norm(const Shape& x, const Shape& w, const Shape& y, const Shape& inv_rms) {
  check_norm("rms_norm", x, y, w, &inv_rms, "inv_rms");
}
inline void check_rms_norm_backward(const Shape& x, const Shape& w, const Shape& inv_rms, const Shape& dy, const Shape& dx,
                                    const Shape& dw) {
  const char* op = "rms_norm_backward";
  check_norm(op, x, dy, w, &inv_rms, "inv_rms");
  check_same_shape(op, "x", x, "dx", dx);
  check_vector(op, "dweight", dw, x[-1]);
}
inline void check_layer_norm(const Shape& x, const Shape& w, const Shape& b, const Shape& y, const Shape& mean, const Shape& rstd) {
  const char* op = "layer_norm";
  check_norm(op, x, y, w, &mean, "mean");
  check_vector(op, "bias", b, x[-1]);
  check_vector(op, "rstd", rstd, x.rows());
}
inline void check_layer_norm_backward(const Shape& x, const Shape& w, const Shape& mean, const Shape& rstd, const Shape& dy,
                                      const Shape& dx, const Shape& dw, const Shape& db) {
  const char* op = "layer_norm_backward";
  check_norm(op, x, dy, w, &mean, "mean");
  check_vector(op, "rstd", rstd, x.rows());
  check_same_shape(op, "x", x, "dx", dx);
  check_vector(op, "dweight", dw, x[-1]);
  check_vector(op, "dbias", db, x[-1]);
}

inline void check_unary(const char* op, const Shape& x, const Shape& y) { check_same_shape(op, "x", x, "y", y); }
inline void check_unary_backward(const char* op, const Shape& x, const Shape& dy, const Shape& dx) {
  check_same_shape(op, "x", x, "dy", dy);
  check_same_shape(op, "x", x, "dx", dx);
}

// The gated activation: h0, h1 and the two others all of one shape.
inline void check_gated(const char* op, const Shape& h0, const Shape& h1, const Shape& a, const Shape& b) {
  check_same_shape(op, "h0", h0, "h1", h1);
  check_same_shape(op, "h0", h0, "output", a);
  check_same_shape(op, "h0", h0, "output", b);
}

// Embedding: table (V, C), ids (...) of rank 1 to 3, rows (..., C).
inline void check_embedding(const char* op, const Shape& table, const Shape& ids, const Shape& rows) {
  PLM_CHECK(table.rank() == 2, op, ": table ", table, " must be (V, C)");
  PLM_CHECK(ids.rank() >= 1 && ids.rank() <= 3, op, ": ids ", ids, " must have rank 1 to 3");
  bool ok = rows.rank() == ids.rank() + 1 && rows[-1] == table[1];
  for (int i = 0; ok && i < ids.rank(); ++i) ok = rows[i] == ids[i];
  PLM_CHECK(ok, op, ": rows ", rows, " must be ids ", ids, " + (", table[1], ",) for table ", table);
}

[[noreturn]] inline void fail_bad_id(const char* op, std::int32_t id, index_t pos, const Shape& ids, index_t vocab) {
  PLM_FAIL(op, ": id ", id, " at flat position ", pos, " of ids ", ids, " is outside the table's ", vocab, " rows");
}

[[noreturn]] inline void fail_bad_target(std::int32_t t, index_t row, index_t V, std::int32_t ignore_index) {
  PLM_FAIL("cross_entropy: target ", t, " at row ", row, " is outside the vocabulary of ", V, " (ignore_index ", ignore_index, ")");
}

// Cross-entropy: logits (..., V), one target per row, optional per-row arrays.
inline void check_cross_entropy(const Shape& logits, const Shape& targets, const Shape* dlogits, double label_smoothing,
                                index_t n_scale, index_t n_loss, index_t n_correct) {
  const char* op = "cross_entropy";
  check_rank_at_least(op, "logits", logits, 1);
  PLM_CHECK(targets.numel() == logits.rows(), op, ": targets ", targets, " need one id per row of logits ", logits);
  if (dlogits) check_same_shape(op, "logits", logits, "dlogits", *dlogits);
  PLM_CHECK(label_smoothing >= 0 && label_smoothing < 1, op, ": label_smoothing ", label_smoothing, " outside [0, 1)");
  const index_t rows = logits.rows();
  for (auto [name, n] : {std::pair{"grad_scale", n_scale}, std::pair{"loss", n_loss}, std::pair{"correct", n_correct}})
    PLM_CHECK(n < 0 || n == rows, op, ": per-row ", name, " has ", n, " elements for ", rows, " rows of logits ", logits);
}

inline void check_dropout(const char* op, const Shape& x, const Shape& y, double p) {
  check_same_shape(op, "x", x, "y", y);
  PLM_CHECK(p >= 0 && p < 1, op, ": probability ", p, " outside [0, 1)");
}

inline void check_adamw(const Shape& param, const Shape& grad, const Shape& m, const Shape& v) {
  const char* op = "adamw_update";
  check_same_shape(op, "param", param, "grad", grad);
  check_same_shape(op, "param", param, "m", m);
  check_same_shape(op, "param", param, "v", v);
}

// Adafactor: returns the (rows, cols) of the factored moments, or (1, n) when
// the moments are not factored (col empty).
inline std::pair<index_t, index_t> check_adafactor(const Shape& param, const Shape& grad, const Shape& row, const Shape& col,
                                                   const Shape& m, const Shape& scratch, bool factored, bool momentum) {
  const char* op = "adafactor_update";
  check_same_shape(op, "param", param, "grad", grad);
  check_same_shape(op, "param", param, "scratch", scratch);
  const index_t n = param.numel();
  const index_t R = factored ? param[0] : 1, C = factored ? n / R : n;
  PLM_CHECK(factored ? (param.rank() == 2 && row.numel() == R && col.numel() == C) : row.numel() == n, op, ": moments row ", row,
            " / col ", col, " do not fit param ", param);
  PLM_CHECK(!momentum || m.numel() == n, op, ": momentum ", m, " does not fit param ", param);
  return {R, C};
}

}  // namespace plm::detail
