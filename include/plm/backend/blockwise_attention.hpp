#pragma once
// Attention over packed sequences without the probability tensor: the
// arguments shared by every backend's blockwise_attention ops.
//
// For each sequence i and head h the queries (rows [oq_i, oq_i + Lq_i) of head
// h's (Nq, D) matrix) meet the keys of the same sequence in blocks. The forward
// keeps, per query row, a running maximum and sum of the exponentials (an
// online softmax), so only a block of scores exists at a time, and saves the
// row's log-sum-exp. The backward recomputes each block of probabilities from
// it. The results are those of nn::Attention's materialised packed path:
//   logits = scale * q k^T + bias, causal keys j <= r + (Lk - Lq) only,
//   P = softmax(logits), ctx = dropout(P) v,
// where dropout drops element e of the flat probability tensor (the
// per-sequence blocks (H, Lq_i, Lk_i) end to end, AttentionPacking::block)
// with Philox draw e of (seed, stream), as ops<B>::dropout does.
#include <cstdint>

#include "plm/core/error.hpp"
#include "plm/core/packing.hpp"

namespace plm {

template <class T>
struct BlockwiseAttention {
  const AttentionPacking* packing = nullptr;  // on the host
  index_t heads = 0, d_head = 0;
  const T* q = nullptr;     // (H, Nq, D)
  const T* k = nullptr;     // (H, Nk, D)
  const T* v = nullptr;     // (H, Nk, D)
  const T* bias = nullptr;  // H * pairs values (the per-sequence blocks), or none
  bool causal = false;
  T scale = T(1);
  T dropout = T(0);  // drop probability on the probabilities, in [0, 1)
  std::uint64_t seed = 0, stream = 0;
};

namespace detail {

template <class T>
void check_blockwise_attention(const char* op, const BlockwiseAttention<T>& a) {
  PLM_CHECK(a.packing != nullptr, op, ": no packing given");
  PLM_CHECK(a.heads > 0 && a.d_head > 0, op, ": heads (", a.heads, ") and d_head (", a.d_head, ") must be positive");
  PLM_CHECK(a.dropout >= T(0) && a.dropout < T(1), op, ": dropout must be in [0, 1), got ", a.dropout);
  const bool any = a.packing->q.tokens() > 0;
  PLM_CHECK(!any || (a.q && a.k && a.v), op, ": q, k and v must not be null");
}

}  // namespace detail
}  // namespace plm
