#pragma once
// Attention over packed sequences without the probability tensor, on the CPU
// (arguments and semantics: backend/blockwise_attention.hpp).
//
// The work is one task per (sequence, head), handed out to the threads of one
// parallel region as they free up: a batch of short proteins makes thousands
// of small tasks, and one region for all of them costs a single fork where a
// call per sequence paid one each. Inside a task, query blocks of qb rows meet
// key blocks of kb keys; a score block (qb x kb) is one single-threaded GEMM
// and stays in cache. A task's result does not depend on which thread runs it,
// so the bits are the same at every thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "plm/backend/blockwise_attention.hpp"
#include "plm/backend/cpu/common.hpp"
#include "plm/backend/cpu/gemm.hpp"
#include "plm/core/philox.hpp"

namespace plm::detail {

struct cpu_blockwise_attention {
  static constexpr index_t query_block = 64, key_block = 256;

  // ctx (H, Nq, D) and lse (H, Nq) are written.
  template <class T>
  static void blockwise_attention(const BlockwiseAttention<T>& a, T* ctx, T* lse) {
    require_compute_type<T>("blockwise_attention");
    check_blockwise_attention("blockwise_attention", a);
    for_each_task(a, [&](const Task& t) {
      thread_local std::vector<T> scratch;
      scratch.resize(static_cast<std::size_t>(query_block * (key_block + 2)));
      T* const s = scratch.data();           // (qb, kb) scores, then probabilities
      T* const m = s + query_block * key_block;  // running row maxima
      T* const l = m + query_block;              // running row sums
      const index_t D = a.d_head;
      T* const c = ctx + t.qrow * D;
      const T* const v = a.v + t.krow * D;
      for (index_t r0 = 0; r0 < t.lq; r0 += query_block) {
        const index_t qb = std::min(query_block, t.lq - r0), kend = t.key_end(a.causal, r0 + qb);
        std::fill(m, m + qb, -std::numeric_limits<T>::infinity());
        std::fill(l, l + qb, T(0));
        std::fill(c + r0 * D, c + (r0 + qb) * D, T(0));
        for (index_t j0 = 0; j0 < kend; j0 += key_block) {
          const index_t kb = std::min(key_block, kend - j0);
          t.scores(a, r0, qb, j0, kb, s);
          for (index_t r = 0; r < qb; ++r) {
            T* const row = s + r * kb;
            const index_t vis = t.visible(a.causal, r0 + r, j0, kb);
            ArrMap<T> x(row, vis);  // Eigen's vectorised exp: the exponentials are a large part of a short head's time
            const T mx = vis > 0 ? std::max(m[r], x.maxCoeff()) : m[r];
            if (mx == -std::numeric_limits<T>::infinity()) {  // nothing visible yet
              std::fill(row, row + kb, T(0));
              continue;
            }
            const T rescale = std::exp(m[r] - mx);  // 0 for the first visible block
            x = (x - mx).exp();
            const T sum = x.sum();
            std::fill(row + vis, row + kb, T(0));
            l[r] = l[r] * rescale + sum;
            m[r] = mx;
            if (rescale != T(1))
              for (T *x = c + (r0 + r) * D, *e = x + D; x != e; ++x) *x *= rescale;
            if (a.dropout > T(0)) t.drop(a, r0 + r, j0, row, vis, row);
          }
          cpu_gemm::gemm_strided_batched(false, false, qb, D, kb, T(1), s, kb, 0, v + j0 * D, D, 0, T(1), c + r0 * D, D, 0, 1);
        }
        for (index_t r = 0; r < qb; ++r) {
          T* const x = c + (r0 + r) * D;
          const bool none = l[r] == T(0);  // no visible key: probabilities 0, as the materialised softmax
          const T inv = none ? T(0) : T(1) / l[r];
          for (index_t d = 0; d < D; ++d) x[d] *= inv;
          lse[t.head * t.nq + t.oq + r0 + r] = none ? -std::numeric_limits<T>::infinity() : m[r] + std::log(l[r]);
        }
      }
    });
  }

  // dq (H, Nq, D), dk, dv (H, Nk, D) are written; dbias (H * pairs), when
  // given, is added to. One task owns its sequence's rows of every output.
  template <class T>
  static void blockwise_attention_backward(const BlockwiseAttention<T>& a, const T* ctx, const T* lse, const T* dctx, T* dq, T* dk,
                                           T* dv, T* dbias) {
    require_compute_type<T>("blockwise_attention_backward");
    check_blockwise_attention("blockwise_attention_backward", a);
    for_each_task(a, [&](const Task& t) {
      thread_local std::vector<T> scratch;
      const index_t tile = query_block * key_block;
      scratch.resize(static_cast<std::size_t>(3 * tile + query_block));
      T* const p = scratch.data();  // probabilities
      T* const pd = p + tile;       // after dropout
      T* const ds = pd + tile;      // gradient of the scores
      T* const drow = ds + tile;    // dot(dctx, ctx) per row
      const index_t D = a.d_head;
      const T *o = ctx + t.qrow * D, *dout = dctx + t.qrow * D, *q = a.q + t.qrow * D, *k = a.k + t.krow * D, *v = a.v + t.krow * D;
      const T* const lse_h = lse + t.head * t.nq + t.oq;
      T *dqt = dq + t.qrow * D, *dkt = dk + t.krow * D, *dvt = dv + t.krow * D;
      std::fill(dqt, dqt + t.lq * D, T(0));
      std::fill(dkt, dkt + t.lk * D, T(0));
      std::fill(dvt, dvt + t.lk * D, T(0));
      const bool dropping = a.dropout > T(0);
      for (index_t r0 = 0; r0 < t.lq; r0 += query_block) {
        const index_t qb = std::min(query_block, t.lq - r0), kend = t.key_end(a.causal, r0 + qb);
        for (index_t r = 0; r < qb; ++r) {
          T dot = 0;
          for (index_t d = 0; d < D; ++d) dot += dout[(r0 + r) * D + d] * o[(r0 + r) * D + d];
          drow[r] = dot;
        }
        for (index_t j0 = 0; j0 < kend; j0 += key_block) {
          const index_t kb = std::min(key_block, kend - j0);
          t.scores(a, r0, qb, j0, kb, p);
          for (index_t r = 0; r < qb; ++r) {
            T* const row = p + r * kb;
            const T ls = lse_h[r0 + r];
            const index_t vis = ls == -std::numeric_limits<T>::infinity() ? 0 : t.visible(a.causal, r0 + r, j0, kb);
            ArrMap<T> x(row, vis);
            x = (x - ls).exp();
            std::fill(row + vis, row + kb, T(0));
            if (dropping) t.drop(a, r0 + r, j0, row, kb, pd + r * kb);
          }
          const T* const pv = dropping ? pd : p;
          // dV += Pd^T dctx, dPd = dctx V^T
          cpu_gemm::gemm_strided_batched(true, false, kb, D, qb, T(1), pv, kb, 0, dout + r0 * D, D, 0, T(1), dvt + j0 * D, D, 0, 1);
          cpu_gemm::gemm_strided_batched(false, true, qb, kb, D, T(1), dout + r0 * D, D, 0, v + j0 * D, D, 0, T(0), ds, kb, 0, 1);
          for (index_t r = 0; r < qb; ++r) {
            T* const g = ds + r * kb;
            const T* const pr = p + r * kb;
            if (dropping) t.drop(a, r0 + r, j0, g, kb, g);
            ArrMap<T> dl(g, kb);
            dl = CArrMap<T>(pr, kb) * (dl - drow[r]);
            if (dbias) ArrMap<T>(dbias + t.element(r0 + r, j0), kb) += dl;
            dl *= a.scale;
          }
          // dQ += dS K, dK += dS^T Q
          cpu_gemm::gemm_strided_batched(false, false, qb, D, kb, T(1), ds, kb, 0, k + j0 * D, D, 0, T(1), dqt + r0 * D, D, 0, 1);
          cpu_gemm::gemm_strided_batched(true, false, kb, D, qb, T(1), ds, kb, 0, q + r0 * D, D, 0, T(1), dkt + j0 * D, D, 0, 1);
        }
      }
    });
  }

 private:
  // One (sequence, head): lengths, token offsets, and where its rows start.
  struct Task {
    index_t lq, lk, oq, ok, head, nq, qrow, krow, block;  // block: the flat index of its probability (0, 0)

    // Keys past this one are hidden from every query before row `r_end`.
    index_t key_end(bool causal, index_t r_end) const { return causal ? std::clamp<index_t>(r_end + lk - lq, 0, lk) : lk; }
    // How many of the kb keys from j0 query r sees.
    index_t visible(bool causal, index_t r, index_t j0, index_t kb) const {
      return causal ? std::clamp<index_t>(r + (lk - lq) + 1 - j0, 0, kb) : kb;
    }
    index_t element(index_t r, index_t j) const { return block + r * lk + j; }

    // s (qb, kb) = scale * q[r0:] k[j0:]^T + bias.
    template <class T>
    void scores(const BlockwiseAttention<T>& a, index_t r0, index_t qb, index_t j0, index_t kb, T* s) const {
      const index_t D = a.d_head;
      cpu_gemm::gemm_strided_batched(false, true, qb, kb, D, a.scale, a.q + (qrow + r0) * D, D, 0, a.k + (krow + j0) * D, D, 0, T(0), s,
                                     kb, 0, 1);
      if (!a.bias) return;
      for (index_t r = 0; r < qb; ++r) ArrMap<T>(s + r * kb, kb) += CArrMap<T>(a.bias + element(r0 + r, j0), kb);
    }
    // out[j] = x[j] kept / (1 - p), or 0, for the n keys from j0 of query r:
    // the draw of each element's flat index, four to a Philox block.
    template <class T>
    void drop(const BlockwiseAttention<T>& a, index_t r, index_t j0, const T* x, index_t n, T* out) const {
      const float pf = static_cast<float>(a.dropout);
      const T scale = T(1) / (T(1) - a.dropout);
      const index_t e0 = element(r, j0);
      std::uint64_t have = ~std::uint64_t(0);
      PhiloxBlock blk{};
      for (index_t j = 0; j < n; ++j) {
        const auto e = static_cast<std::uint64_t>(e0 + j);
        if (e / 4 != have) blk = philox_block(a.seed, a.stream, have = e / 4);
        out[j] = u32_to_uniform(blk.v[e % 4]) > pf ? x[j] * scale : T(0);
      }
    }
  };

  // Runs f(task) for every (sequence, head), longest sequences first, each
  // task whole on one thread.
  template <class T, class F>
  static void for_each_task(const BlockwiseAttention<T>& a, F&& f) {
    const AttentionPacking& pk = *a.packing;
    const index_t S = pk.sequences(), H = a.heads, Nq = pk.q.tokens(), Nk = pk.k.tokens();
    std::vector<index_t> order(static_cast<std::size_t>(S));
    for (index_t i = 0; i < S; ++i) order[static_cast<std::size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) {
      return pk.q.length(x) * pk.k.length(x) > pk.q.length(y) * pk.k.length(y);
    });
    const index_t tasks = S * H;
    auto run = [&](index_t u) {
      const index_t i = order[static_cast<std::size_t>(u / H)], h = u % H;
      const index_t lq = pk.q.length(i), lk = pk.k.length(i), oq = pk.q.offset(i), ok = pk.k.offset(i);
      f(Task{lq, lk, oq, ok, h, Nq, h * Nq + oq, h * Nk + ok, H * pk.block(i) + h * lq * lk});
    };
#if defined(_OPENMP)
    const index_t work = H * pk.pairs() * a.d_head;
    if (tasks > 1 && work >= parallel_grain && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 1)
      for (index_t u = 0; u < tasks; ++u) run(u);
      return;
    }
#endif
    for (index_t u = 0; u < tasks; ++u) run(u);
  }
};

}  // namespace plm::detail
