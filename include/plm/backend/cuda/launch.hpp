#pragma once
// The entry points of the CUDA kernels, callable from ordinary C++.
//
// ops<cuda> (backend/cuda/ops.hpp) checks shapes on the host and calls these
// with raw device pointers and sizes. They are defined, and instantiated for
// the element types listed in plm_cuda.cu, by the one CUDA translation unit;
// each queues its work on the current CudaContext's stream and checks the
// launch. Functions that return a value (reductions, cross-entropy sums, id
// checks) wait for their result.
#include <cstdint>

#include "plm/core/shape.hpp"

namespace plm {
struct CrossEntropySums;
template <class T> struct BlockwiseAttention;
}

namespace plm::detail::cu {

enum class Binary { add, sub, mul };
enum class RowOp { add, mul, scale };  // scale: out[r, c] = x[r, c] * row[r]
enum class Act { gelu, gelu_erf, silu, relu };
enum class Reduce { sum, sum_squares, finite };

template <class T> void fill(T* x, index_t n, T value);
template <class S, class D> void convert(const S* src, D* dst, index_t n);
template <class T> void binary(Binary op, const T* a, const T* b, T* out, index_t n);
template <class T> void scale(const T* x, T alpha, T* out, index_t n);
template <class T> void axpy(T alpha, const T* x, T* y, index_t n);
template <class T> void row_broadcast(RowOp op, const T* x, const T* row, T* out, index_t rows, index_t cols);
template <class T> void sum_rows(const T* x, T* out, index_t rows, index_t cols, T beta);
template <class T> void transpose12(const T* x, T* out, index_t A, index_t B, index_t C, index_t D);
// x, y (rows, D) with row r at position r % Tn; cos, sin (Tn, D/2).
template <class T> void rotary(const T* x, const T* cos, const T* sin, T* y, index_t rows, index_t Tn, index_t D, bool inverse);

template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, index_t stride_a,
          const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc, index_t stride_c, index_t batch);

// scores/probs (rows = B*H*Tq, Tk); bias (H*Tq or rows, Tk) or null; key_valid (B, Tk) or null.
template <class T>
void masked_softmax(const T* scores, T* probs, index_t B, index_t H, index_t Tq, index_t Tk, const T* bias, bool shared_bias,
                    const std::uint8_t* key_valid, bool causal, T scale);
template <class T>
void masked_softmax_backward(const T* probs, const T* dprobs, T* dscores, index_t B, index_t H, index_t Tq, index_t Tk, T scale,
                             T* dbias, bool shared_bias);

// Packed attention without the probability tensor (backend/blockwise_attention.hpp). offsets, on the
// device, holds for S = a.packing->sequences() the query token offsets, the key token offsets and
// H * AttentionPacking::blocks, S + 1 of each, end to end. The backward also writes drow (H, Nq),
// each query row's dot(dctx, ctx), which its second kernel reads.
constexpr index_t blockwise_attention_max_d_head = 128;  // 4 dimensions per lane of a warp
template <class T> void blockwise_attention(const BlockwiseAttention<T>& a, const index_t* offsets, T* ctx, T* lse);
template <class T>
void blockwise_attention_backward(const BlockwiseAttention<T>& a, const index_t* offsets, const T* ctx, const T* lse, const T* dctx,
                                  T* dq, T* dk, T* dv, T* dbias, T* drow);

template <class T> void rms_norm(const T* x, const T* w, T eps, T* y, T* inv_rms, index_t rows, index_t C);
template <class T>
void rms_norm_backward(const T* x, const T* w, const T* inv_rms, const T* dy, T* dx, T* dw, index_t rows, index_t C);
template <class T>
void layer_norm(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, index_t rows, index_t C);
template <class T>
void layer_norm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx, T* dw, T* db, index_t rows,
                         index_t C);

template <class T> void activation(Act a, const T* x, T* y, index_t n);
template <class T> void activation_backward(Act a, const T* x, const T* dy, T* dx, index_t n);
template <class T> void gated(Act a, const T* h0, const T* h1, T* g, index_t n);
template <class T> void gated_backward(Act a, const T* h0, const T* h1, const T* dg, T* dh0, T* dh1, index_t n);

// Returns the first flat position whose id is outside [0, V), or -1.
index_t find_bad_id(const std::int32_t* ids, index_t n, index_t V);
template <class T> void gather(const T* table, const std::int32_t* ids, T* out, index_t n, index_t C);
template <class T> void scatter_add(const std::int32_t* ids, const T* drows, T* dtable, index_t n, index_t C);

template <class T> double reduce(Reduce kind, const T* x, index_t n);

template <class T> void dropout(const T* x, T* y, index_t n, T p, std::uint64_t seed, std::uint64_t stream);

// Returns the first row whose target is neither ignore_index nor in [0, V), or -1, in bad_row.
template <class T>
CrossEntropySums cross_entropy(const T* logits, const std::int32_t* targets, index_t rows, index_t V, std::int32_t ignore_index,
                               T label_smoothing, T* dlogits, T grad_scale, const T* row_scale, T* row_loss,
                               std::uint8_t* row_correct, index_t& bad_row);

template <class T>
void adamw(T* p, const T* g, T* m, T* v, index_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
           double correction1, double correction2);
// R x C factored moments (row, col), or R = 1 and col null for full moments in row.
template <class T>
void adafactor(T* p, const T* g, T* row, T* col, T* m, T* scratch, index_t R, index_t C, double lr, double beta2t, double eps1,
               double clip_threshold, double beta1, double weight_decay);

}  // namespace plm::detail::cu
