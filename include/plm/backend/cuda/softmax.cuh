#pragma once
// Masked softmax with additive bias over the last dimension of attention
// scores, and its backward: one block per row, fixed-order block reductions.
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

template <class T>
__global__ void masked_softmax_kernel(const T* scores, T* probs, index_t H, index_t Tq, index_t Tk, const T* bias, bool shared_bias,
                                      const std::uint8_t* valid, bool causal, T scale) {
  const index_t r = blockIdx.x;
  const index_t b = r / (H * Tq), i = r % Tq;
  const T* s = scores + r * Tk;
  const T* bs = bias ? bias + (shared_bias ? r % (H * Tq) : r) * Tk : nullptr;
  const std::uint8_t* v = valid ? valid + b * Tk : nullptr;
  const index_t visible_end = causal ? min(Tk, i + (Tk - Tq) + 1) : Tk;
  T* p = probs + r * Tk;
  T mx = neg_inf<T>();
  for (index_t j = threadIdx.x; j < Tk; j += blockDim.x) {
    if (j >= visible_end || (v && !v[j])) continue;
    const T l = scale * s[j] + (bs ? bs[j] : T(0));
    p[j] = l;  // probs may alias scores: each j is read and written by one thread
    mx = l > mx ? l : mx;
  }
  mx = block_reduce(mx, MaxOp{}, neg_inf<T>());
  if (mx == neg_inf<T>()) {  // nothing visible
    for (index_t j = threadIdx.x; j < Tk; j += blockDim.x) p[j] = T(0);
    return;
  }
  T sum = 0;
  for (index_t j = threadIdx.x; j < Tk; j += blockDim.x) {
    if (j >= visible_end || (v && !v[j])) {
      p[j] = T(0);
      continue;
    }
    p[j] = dexp(p[j] - mx);
    sum += p[j];
  }
  sum = block_reduce(sum, SumOp{}, T(0));
  const T inv = T(1) / sum;
  for (index_t j = threadIdx.x; j < visible_end; j += blockDim.x) p[j] *= inv;
}

template <class T>
void masked_softmax(const T* scores, T* probs, index_t B, index_t H, index_t Tq, index_t Tk, const T* bias, bool shared_bias,
                    const std::uint8_t* key_valid, bool causal, T scale) {
  const index_t rows = B * H * Tq;
  PLM_CHECK(rows <= INT_MAX, "masked_softmax: ", rows, " rows exceed one launch");
  masked_softmax_kernel<<<static_cast<unsigned>(rows), row_threads(Tk), 0, stream()>>>(scores, probs, H, Tq, Tk, bias, shared_bias,
                                                                                       key_valid, causal, scale);
  check_launch("masked_softmax");
}

// One block per (h, i); the batch is walked in order inside it, so a shared
// dbias row sums the batch without atomics and in a fixed order.
template <class T>
__global__ void masked_softmax_backward_kernel(const T* probs, const T* dprobs, T* dscores, index_t B, index_t H, index_t Tq,
                                               index_t Tk, T scale, T* dbias, bool shared) {
  const index_t hr = blockIdx.x;
  for (index_t b = 0; b < B; ++b) {
    const index_t r = b * H * Tq + hr;
    const T* p = probs + r * Tk;
    const T* d = dprobs + r * Tk;
    T* g = dscores + r * Tk;
    T dot = 0;
    for (index_t j = threadIdx.x; j < Tk; j += blockDim.x) dot += p[j] * d[j];
    dot = block_reduce(dot, SumOp{}, T(0));
    T* db = dbias ? dbias + (shared ? hr : r) * Tk : nullptr;
    for (index_t j = threadIdx.x; j < Tk; j += blockDim.x) {
      const T dl = p[j] * (d[j] - dot);
      if (db) db[j] += dl;
      g[j] = scale * dl;
    }
  }
}

template <class T>
void masked_softmax_backward(const T* probs, const T* dprobs, T* dscores, index_t B, index_t H, index_t Tq, index_t Tk, T scale,
                             T* dbias, bool shared_bias) {
  masked_softmax_backward_kernel<<<static_cast<unsigned>(H * Tq), row_threads(Tk), 0, stream()>>>(probs, dprobs, dscores, B, H, Tq, Tk,
                                                                                                  scale, dbias, shared_bias);
  check_launch("masked_softmax_backward");
}

}  // namespace plm::detail::cu
