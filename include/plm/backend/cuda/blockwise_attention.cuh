#pragma once
// Packed attention without the probability tensor (backend/blockwise_attention.hpp).
//
// Every kernel gives one warp to one row: a (head, query token) in the forward
// and in the first backward kernel, a (head, key token) in the second. The
// warp finds the row's sequence by a binary search over the uploaded token
// offsets, so the grid covers exactly H * N rows whatever the lengths are.
// The other side of the row is walked in chunks of 32: lane l scores element
// l of the chunk (a dot product of length D, always in the order d = 0, 1, ...),
// then the warp adds the chunk's 32 contributions to the row's output in
// chunk order, lane l holding dimensions l, l + 32, l + 64, l + 96. Sums and
// maxima over the lanes are xor butterflies, which leave the same bits in
// every lane. Nothing is accumulated with atomics and every sum runs in a
// fixed order, so the results are the same on every run.
//
// Forward: an online softmax. Per chunk the running maximum m moves to
// m' = max(m, chunk max), the running sum and the context accumulator are
// scaled by exp(m - m'), and the chunk's exp(s - m') are added (dropped
// elements count in the sum, not in the context). At the end ctx = acc / sum
// (times 1 / (1 - p) with dropout) and lse = m + log(sum).
// Backward: P = exp(s - lse) is recomputed from the scores. The query kernel
// writes drow = dot(dctx, ctx), dq and adds to dbias; the key kernel reads
// drow and writes dk and dv. Both compute a pair's dS from the same operands
// with the same operations in the same order (bwa_pair_grad).
#include "plm/backend/blockwise_attention.hpp"
#include "plm/backend/cuda/common.cuh"
#include "plm/core/philox.hpp"

namespace plm::detail::cu {

constexpr int bwa_warps = 4;  // warps (rows) per block
constexpr int bwa_dims = static_cast<int>(blockwise_attention_max_d_head / 32);  // dimensions per lane
constexpr unsigned bwa_full = 0xffffffffu;

// What the kernels read of BlockwiseAttention, by value.
template <class T>
struct BwaArgs {
  const index_t *q_off, *k_off, *p_off;  // S + 1 each; p_off[i] = H * blocks[i]
  index_t S, H, Nq, Nk, D;
  const T *q, *k, *v, *bias;
  bool causal, dropout;
  T scale;
  float p;       // drop probability, compared with the draw in float as ops<B>::dropout does
  T keep_scale;  // 1 / (1 - p)
  std::uint64_t seed, stream;
};

template <class T>
BwaArgs<T> bwa_args(const BlockwiseAttention<T>& a, const index_t* offsets) {
  const index_t S = a.packing->sequences();
  BwaArgs<T> r;
  r.q_off = offsets;
  r.k_off = offsets + (S + 1);
  r.p_off = offsets + 2 * (S + 1);
  r.S = S;
  r.H = a.heads;
  r.Nq = a.packing->q.tokens();
  r.Nk = a.packing->k.tokens();
  r.D = a.d_head;
  r.q = a.q, r.k = a.k, r.v = a.v, r.bias = a.bias;
  r.causal = a.causal;
  r.dropout = a.dropout > T(0);
  r.scale = a.scale;
  r.p = static_cast<float>(a.dropout);
  r.keep_scale = T(1) / (T(1) - a.dropout);
  r.seed = a.seed, r.stream = a.stream;
  return r;
}

// The sequence i with off[i] <= t < off[i + 1] (offsets strictly increase: no sequence is empty).
__device__ inline index_t bwa_sequence(const index_t* off, index_t S, index_t t) {
  index_t lo = 0, hi = S;
  while (hi - lo > 1) {
    const index_t mid = lo + (hi - lo) / 2;
    if (off[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

template <class T> __device__ inline T bwa_warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(bwa_full, v, o);
  return v;
}
template <class T> __device__ inline T bwa_warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(bwa_full, v, o);
    v = w > v ? w : v;
  }
  return v;
}
__device__ inline float bwa_log(float x) { return logf(x); }
__device__ inline double bwa_log(double x) { return log(x); }

// Whether element e of the flat probability tensor survives dropout: draw e of
// (seed, stream), indexed as dropout_kernel indexes it.
template <class T> __device__ inline bool bwa_kept(const BwaArgs<T>& a, index_t e) {
  if (!a.dropout) return true;
  const PhiloxBlock r = philox_block(a.seed, a.stream, static_cast<std::uint64_t>(e) / 4);
  return u32_to_uniform(r.v[e % 4]) > a.p;
}

// dot(x[0, D), y[0, D)) in the order d = 0, 1, ...
template <class T> __device__ inline T bwa_dot(const T* x, const T* y, index_t D) {
  T s = 0;
  for (index_t d = 0; d < D; ++d) s += x[d] * y[d];
  return s;
}

// The sequence of a row and where its blocks lie.
struct BwaRow {
  index_t i, oq, ok, Lq, Lk, p0;
};
template <class T> __device__ inline BwaRow bwa_row(const BwaArgs<T>& a, const index_t* off, index_t t) {
  const index_t i = bwa_sequence(off, a.S, t);
  BwaRow r;
  r.i = i;
  r.oq = a.q_off[i];
  r.ok = a.k_off[i];
  r.Lq = a.q_off[i + 1] - r.oq;
  r.Lk = a.k_off[i + 1] - r.ok;
  r.p0 = a.p_off[i];
  return r;
}

// One warp per (head, query token): ctx row and lse.
template <class T>
__global__ void __launch_bounds__(bwa_warps * 32) blockwise_attention_kernel(BwaArgs<T> a, T* ctx, T* lse) {
  __shared__ T qs[bwa_warps][blockwise_attention_max_d_head];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const index_t rows = a.H * a.Nq, D = a.D, stride = static_cast<index_t>(gridDim.x) * bwa_warps;
  for (index_t row = static_cast<index_t>(blockIdx.x) * bwa_warps + w; row < rows; row += stride) {
    const index_t h = row / a.Nq, t = row % a.Nq;
    const BwaRow s = bwa_row(a, a.q_off, t);
    const index_t r = t - s.oq;
    const index_t end = a.causal ? min(s.Lk, r + (s.Lk - s.Lq) + 1) : s.Lk;  // keys [0, end) are visible
    const T* kh = a.k + (h * a.Nk + s.ok) * D;
    const T* vh = a.v + (h * a.Nk + s.ok) * D;
    const index_t e0 = s.p0 + (h * s.Lq + r) * s.Lk;  // flat index of (r, key 0)
    __syncwarp();  // the previous row's reads of qs are done
    for (index_t d = lane; d < D; d += 32) qs[w][d] = a.q[row * D + d];
    __syncwarp();
    T m = neg_inf<T>(), l = 0, acc[bwa_dims] = {};
    for (index_t j0 = 0; j0 < end; j0 += 32) {
      const index_t j = j0 + lane;
      T sc = neg_inf<T>();
      if (j < end) sc = a.scale * bwa_dot(qs[w], kh + j * D, D) + (a.bias ? a.bias[e0 + j] : T(0));
      const T mx = bwa_warp_max(sc);
      const T m_new = mx > m ? mx : m;
      // All scores so far -inf (a -inf bias): nothing to rescale, nothing to add.
      const T alpha = m_new == neg_inf<T>() ? T(1) : dexp(m - m_new);
      T pj = sc == neg_inf<T>() ? T(0) : dexp(sc - m_new);
      l = l * alpha + bwa_warp_sum(pj);
      if (j < end && !bwa_kept(a, e0 + j)) pj = T(0);
#pragma unroll
      for (int c = 0; c < bwa_dims; ++c) acc[c] *= alpha;
      const int n = static_cast<int>(min(end - j0, index_t{32}));
      for (int jj = 0; jj < n; ++jj) {
        const T pv = __shfl_sync(bwa_full, pj, jj);
        const T* vj = vh + (j0 + jj) * D;
#pragma unroll
        for (int c = 0; c < bwa_dims; ++c) {
          const index_t d = lane + 32 * c;
          if (d < D) acc[c] += pv * vj[d];
        }
      }
      m = m_new;
    }
    // No visible key (or only -inf scores): the row's probabilities are all 0, as masked_softmax gives.
    const T inv = l > T(0) ? a.keep_scale / l : T(0);
#pragma unroll
    for (int c = 0; c < bwa_dims; ++c) {
      const index_t d = lane + 32 * c;
      if (d < D) ctx[row * D + d] = acc[c] * inv;
    }
    if (lane == 0) lse[row] = l > T(0) ? m + bwa_log(l) : neg_inf<T>();
  }
}

// The gradient of a pair's logit, dS = P (dP - drow), and the dropped probability Pd, from its score
// sc (logit), the row's lse and drow, dPd = dot(dctx_r, v_j) and element index e. Both backward
// kernels go through it, so they recompute a pair the same way.
template <class T>
__device__ inline void bwa_pair_grad(const BwaArgs<T>& a, T sc, T lse, T drow, T dpd, index_t e, T& ds, T& pd) {
  const T P = sc == neg_inf<T>() ? T(0) : dexp(sc - lse);
  T dp = dpd;
  pd = P;
  if (a.dropout) {
    const bool keep = bwa_kept(a, e);
    dp = keep ? dpd * a.keep_scale : T(0);
    pd = keep ? P * a.keep_scale : T(0);
  }
  ds = P * (dp - drow);
}

// One warp per (head, query token): drow, dq, and dS added to dbias.
template <class T>
__global__ void __launch_bounds__(bwa_warps * 32)
    blockwise_attention_dq_kernel(BwaArgs<T> a, const T* ctx, const T* lse, const T* dctx, T* dq, T* dbias, T* drow) {
  __shared__ T qs[bwa_warps][blockwise_attention_max_d_head];
  __shared__ T gs[bwa_warps][blockwise_attention_max_d_head];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const index_t rows = a.H * a.Nq, D = a.D, stride = static_cast<index_t>(gridDim.x) * bwa_warps;
  for (index_t row = static_cast<index_t>(blockIdx.x) * bwa_warps + w; row < rows; row += stride) {
    const index_t h = row / a.Nq, t = row % a.Nq;
    const BwaRow s = bwa_row(a, a.q_off, t);
    const index_t r = t - s.oq;
    const index_t end = a.causal ? min(s.Lk, r + (s.Lk - s.Lq) + 1) : s.Lk;
    const T* kh = a.k + (h * a.Nk + s.ok) * D;
    const T* vh = a.v + (h * a.Nk + s.ok) * D;
    const index_t e0 = s.p0 + (h * s.Lq + r) * s.Lk;
    __syncwarp();
    T part = 0;  // this lane's share of dot(dctx, ctx), over d = lane, lane + 32, ...
    for (index_t d = lane; d < D; d += 32) {
      qs[w][d] = a.q[row * D + d];
      gs[w][d] = dctx[row * D + d];
      part += gs[w][d] * ctx[row * D + d];
    }
    __syncwarp();
    const T dr = bwa_warp_sum(part);
    if (lane == 0) drow[row] = dr;
    const T L = lse[row];
    T acc[bwa_dims] = {};
    for (index_t j0 = 0; j0 < end; j0 += 32) {
      const index_t j = j0 + lane;
      T ds = 0;
      if (j < end) {
        const T sc = a.scale * bwa_dot(qs[w], kh + j * D, D) + (a.bias ? a.bias[e0 + j] : T(0));
        T pd;
        bwa_pair_grad(a, sc, L, dr, bwa_dot(gs[w], vh + j * D, D), e0 + j, ds, pd);
        if (dbias) dbias[e0 + j] += ds;  // element e0 + j belongs to this lane alone
      }
      const int n = static_cast<int>(min(end - j0, index_t{32}));
      for (int jj = 0; jj < n; ++jj) {
        const T g = __shfl_sync(bwa_full, ds, jj);
        const T* kj = kh + (j0 + jj) * D;
#pragma unroll
        for (int c = 0; c < bwa_dims; ++c) {
          const index_t d = lane + 32 * c;
          if (d < D) acc[c] += g * kj[d];
        }
      }
    }
#pragma unroll
    for (int c = 0; c < bwa_dims; ++c) {
      const index_t d = lane + 32 * c;
      if (d < D) dq[row * D + d] = a.scale * acc[c];
    }
  }
}

// One warp per (head, key token): dk and dv over the queries that see the key.
template <class T>
__global__ void __launch_bounds__(bwa_warps * 32)
    blockwise_attention_dkv_kernel(BwaArgs<T> a, const T* lse, const T* dctx, const T* drow, T* dk, T* dv) {
  __shared__ T ks[bwa_warps][blockwise_attention_max_d_head];
  __shared__ T vs[bwa_warps][blockwise_attention_max_d_head];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const index_t rows = a.H * a.Nk, D = a.D, stride = static_cast<index_t>(gridDim.x) * bwa_warps;
  for (index_t row = static_cast<index_t>(blockIdx.x) * bwa_warps + w; row < rows; row += stride) {
    const index_t h = row / a.Nk, t = row % a.Nk;
    const BwaRow s = bwa_row(a, a.k_off, t);
    const index_t j = t - s.ok;
    // Query r sees key j when j <= r + (Lk - Lq).
    const index_t start = a.causal ? max(index_t{0}, j - (s.Lk - s.Lq)) : 0;
    const index_t qrow0 = h * a.Nq + s.oq;  // row of query 0 in the (H, Nq) rows
    const index_t e0 = s.p0 + h * s.Lq * s.Lk + j;  // flat index of (query 0, j); query r adds r * Lk
    __syncwarp();
    for (index_t d = lane; d < D; d += 32) {
      ks[w][d] = a.k[row * D + d];
      vs[w][d] = a.v[row * D + d];
    }
    __syncwarp();
    T acc_k[bwa_dims] = {}, acc_v[bwa_dims] = {};
    for (index_t r0 = start; r0 < s.Lq; r0 += 32) {
      const index_t r = r0 + lane;
      T ds = 0, pd = 0;
      if (r < s.Lq) {
        const index_t qr = qrow0 + r, e = e0 + r * s.Lk;
        // The same operands in the same order as the query kernel: dot(q_r, k_j), dot(dctx_r, v_j).
        const T sc = a.scale * bwa_dot(a.q + qr * D, ks[w], D) + (a.bias ? a.bias[e] : T(0));
        bwa_pair_grad(a, sc, lse[qr], drow[qr], bwa_dot(dctx + qr * D, vs[w], D), e, ds, pd);
      }
      const int n = static_cast<int>(min(s.Lq - r0, index_t{32}));
      for (int rr = 0; rr < n; ++rr) {
        const T g = __shfl_sync(bwa_full, ds, rr), p = __shfl_sync(bwa_full, pd, rr);
        const T* qv = a.q + (qrow0 + r0 + rr) * D;
        const T* gv = dctx + (qrow0 + r0 + rr) * D;
#pragma unroll
        for (int c = 0; c < bwa_dims; ++c) {
          const index_t d = lane + 32 * c;
          if (d < D) {
            acc_k[c] += g * qv[d];
            acc_v[c] += p * gv[d];
          }
        }
      }
    }
#pragma unroll
    for (int c = 0; c < bwa_dims; ++c) {
      const index_t d = lane + 32 * c;
      if (d < D) {
        dk[row * D + d] = a.scale * acc_k[c];
        dv[row * D + d] = acc_v[c];
      }
    }
  }
}

template <class T>
void blockwise_attention(const BlockwiseAttention<T>& a, const index_t* offsets, T* ctx, T* lse) {
  const BwaArgs<T> args = bwa_args(a, offsets);
  if (args.Nq == 0) return;
  blockwise_attention_kernel<<<blocks_for(args.H * args.Nq, bwa_warps), bwa_warps * 32, 0, stream()>>>(args, ctx, lse);
  check_launch("blockwise_attention");
}

template <class T>
void blockwise_attention_backward(const BlockwiseAttention<T>& a, const index_t* offsets, const T* ctx, const T* lse, const T* dctx,
                                  T* dq, T* dk, T* dv, T* dbias, T* drow) {
  const BwaArgs<T> args = bwa_args(a, offsets);
  if (args.Nq == 0) return;
  // drow is written by the first kernel and read by the second, queued after it on the same stream.
  blockwise_attention_dq_kernel<<<blocks_for(args.H * args.Nq, bwa_warps), bwa_warps * 32, 0, stream()>>>(args, ctx, lse, dctx, dq,
                                                                                                           dbias, drow);
  check_launch("blockwise_attention_backward (queries)");
  blockwise_attention_dkv_kernel<<<blocks_for(args.H * args.Nk, bwa_warps), bwa_warps * 32, 0, stream()>>>(args, lse, dctx, drow, dk,
                                                                                                            dv);
  check_launch("blockwise_attention_backward (keys)");
}

}  // namespace plm::detail::cu
