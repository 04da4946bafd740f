#pragma once
// Attention-space contrastive losses for negative-mining fine-tuning
// (arXiv 2405.17902): a protein's attention over the residues of a protein of
// another category (a negative) should carry no preference, i.e. be uniform.
//
// Inputs are attention probabilities of query residues over key residues,
// probs (N, H, Lq, Lk), with the valid (unpadded) positions of each pair:
// q_valid (N, Lq) and k_valid (N, Lk). For the released formulation the
// queries are the negative's residues and the keys its anchor's. Every loss
// reads only valid (i, j) and writes d loss / d probs (0 on padding), scaled
// by `weight`, so the result goes straight into an attention layer's
// backward as its extra probability gradient (Attention::backward's
// d_probs_extra) of any layer whose attention is exposed.
//
//   squared   released code: per pair sum_ij (P_ij - 1/La)^2 / sqrt(Lq La)
//   l1        per pair sum_ij |P_ij - 1/La| / sqrt(Lq La)
//   kl        per pair mean_i KL(P_i || uniform) = mean_i sum_j P_ij log(P_ij La)
// averaged over heads and pairs, with Lq, La the valid lengths. And
//   entropy_hinge   mean over negatives n of max(0, H(pos of anchor(n)) - H(n) + margin),
// H = mean over valid query rows of -sum_j P_ij log P_ij (averaged over heads):
// attention to a positive should be sharper than to a negative by margin.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/backend/ops.hpp"

namespace plm::objectives {

enum class UniformDistance { squared, l1, kl };

namespace detail {

// log P clamped away from 0: softmax probabilities can underflow to 0, where
// P log P -> 0 but the gradient log P + 1 would be -infinity.
inline double safe_log(double p) { return std::log(std::max(p, 1e-30)); }

// Host copies of probs and masks with their sizes; writes gradients back.
template <class B, class T>
struct AttentionPairs {
  index_t N = 0, H = 0, Lq = 0, Lk = 0;
  std::vector<T> p, dp;
  std::vector<std::uint8_t> qv, kv;
  std::vector<index_t> nq, nk;  // valid lengths per pair

  AttentionPairs(const char* where, ConstView<B, T> probs, ConstView<B, std::uint8_t> q_valid, ConstView<B, std::uint8_t> k_valid) {
    PLM_CHECK(probs.rank() == 4, where, ": probs ", probs.shape(), " must be (N, H, Lq, Lk)");
    N = probs.dim(0), H = probs.dim(1), Lq = probs.dim(2), Lk = probs.dim(3);
    PLM_CHECK(q_valid.shape() == Shape({N, Lq}) && k_valid.shape() == Shape({N, Lk}), where, ": q_valid ", q_valid.shape(),
              " and k_valid ", k_valid.shape(), " must be (N, Lq) = ", Shape({N, Lq}), " and (N, Lk) = ", Shape({N, Lk}));
    p.resize(static_cast<std::size_t>(probs.numel()));
    qv.resize(static_cast<std::size_t>(N * Lq));
    kv.resize(static_cast<std::size_t>(N * Lk));
    download(probs, p.data());
    download(q_valid, qv.data());
    download(k_valid, kv.data());
    dp.assign(p.size(), T(0));
    for (index_t n = 0; n < N; ++n) {
      index_t a = 0, b = 0;
      for (index_t i = 0; i < Lq; ++i) a += qv[static_cast<std::size_t>(n * Lq + i)] != 0;
      for (index_t j = 0; j < Lk; ++j) b += kv[static_cast<std::size_t>(n * Lk + j)] != 0;
      PLM_CHECK(a > 0 && b > 0, where, ": pair ", n, " has ", a, " valid queries and ", b, " valid keys; both must be > 0");
      nq.push_back(a);
      nk.push_back(b);
    }
    for (T x : p) PLM_CHECK(std::isfinite(static_cast<double>(x)), where, ": probabilities contain NaN or infinity");
  }
  bool valid(index_t n, index_t i, index_t j) const {
    return qv[static_cast<std::size_t>(n * Lq + i)] && kv[static_cast<std::size_t>(n * Lk + j)];
  }
  std::size_t at(index_t n, index_t h, index_t i, index_t j) const { return static_cast<std::size_t>(((n * H + h) * Lq + i) * Lk + j); }
  // Mean attention entropy of pair n over its valid rows and the heads; with
  // g != 0 adds g * d entropy / d probs into dp.
  double mean_entropy(index_t n, double g = 0) {
    double total = 0;
    const double rows = double(nq[static_cast<std::size_t>(n)]) * double(H);
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < Lq; ++i)
        for (index_t j = 0; j < Lk; ++j) {
          if (!valid(n, i, j)) continue;
          const std::size_t k = at(n, h, i, j);
          const double x = static_cast<double>(p[k]);
          total -= x * safe_log(x);
          if (g != 0) dp[k] += static_cast<T>(-g * (safe_log(x) + 1) / rows);
        }
    return total / rows;
  }
  void write(TensorView<B, T> dprobs) const {
    if (dprobs.empty()) return;
    PLM_CHECK(dprobs.numel() == static_cast<index_t>(dp.size()), "attention loss: dprobs ", dprobs.shape(), " must match probs");
    upload(dp.data(), dprobs);
  }
};

}  // namespace detail

// Distance of each pair's attention from uniform over the valid keys, averaged
// over heads and pairs, times weight; dprobs (same shape as probs) is written
// with its gradient when given.
template <class B, class T>
double attention_to_uniform(ConstView<B, T> probs, ConstView<B, std::uint8_t> q_valid, ConstView<B, std::uint8_t> k_valid,
                            UniformDistance distance, double weight = 1.0, TensorView<B, T> dprobs = {}) {
  detail::AttentionPairs<B, T> a("attention_to_uniform", probs, q_valid, k_valid);
  const double per = weight / double(a.N * a.H);
  double loss = 0;
  for (index_t n = 0; n < a.N; ++n) {
    const double Lq = double(a.nq[static_cast<std::size_t>(n)]), La = double(a.nk[static_cast<std::size_t>(n)]), u = 1.0 / La;
    const double norm = distance == UniformDistance::kl ? Lq : std::sqrt(Lq * La);
    for (index_t h = 0; h < a.H; ++h)
      for (index_t i = 0; i < a.Lq; ++i)
        for (index_t j = 0; j < a.Lk; ++j) {
          if (!a.valid(n, i, j)) continue;
          const std::size_t k = a.at(n, h, i, j);
          const double p = static_cast<double>(a.p[k]);
          double v = 0, d = 0;
          switch (distance) {
            case UniformDistance::squared: v = (p - u) * (p - u), d = 2 * (p - u); break;
            case UniformDistance::l1: v = std::abs(p - u), d = p > u ? 1.0 : (p < u ? -1.0 : 0.0); break;
            case UniformDistance::kl: v = p * detail::safe_log(p * La), d = detail::safe_log(p * La) + 1; break;
          }
          loss += per * v / norm;
          a.dp[k] = static_cast<T>(per * d / norm);
        }
  }
  PLM_CHECK(std::isfinite(loss), "attention_to_uniform: loss is ", loss);
  a.write(dprobs);
  return loss;
}

// mean over negatives n of max(0, H_pos[anchor_of[n]] - H_neg[n] + margin), times weight.
// pos: (A, H, Lq, Lk) attention of each anchor's positive pair; neg: (N, H, Lq', Lk').
template <class B, class T>
double entropy_hinge(ConstView<B, T> pos, ConstView<B, std::uint8_t> pos_q_valid, ConstView<B, std::uint8_t> pos_k_valid,
                     ConstView<B, T> neg, ConstView<B, std::uint8_t> neg_q_valid, ConstView<B, std::uint8_t> neg_k_valid,
                     const std::vector<index_t>& anchor_of, double margin, double weight = 1.0, TensorView<B, T> dpos = {},
                     TensorView<B, T> dneg = {}) {
  detail::AttentionPairs<B, T> P("entropy_hinge (positives)", pos, pos_q_valid, pos_k_valid);
  detail::AttentionPairs<B, T> Q("entropy_hinge (negatives)", neg, neg_q_valid, neg_k_valid);
  PLM_CHECK(static_cast<index_t>(anchor_of.size()) == Q.N, "entropy_hinge: ", anchor_of.size(), " anchor indices for ", Q.N,
            " negatives");
  std::vector<double> hp(static_cast<std::size_t>(P.N));
  for (index_t a = 0; a < P.N; ++a) hp[static_cast<std::size_t>(a)] = P.mean_entropy(a);
  std::vector<double> gpos(static_cast<std::size_t>(P.N), 0.0);
  double loss = 0;
  const double per = weight / double(Q.N);
  for (index_t n = 0; n < Q.N; ++n) {
    const index_t a = anchor_of[static_cast<std::size_t>(n)];
    PLM_CHECK(a >= 0 && a < P.N, "entropy_hinge: negative ", n, " names anchor ", a, " of ", P.N);
    const double hn = Q.mean_entropy(n);
    const double h = hp[static_cast<std::size_t>(a)] - hn + margin;
    if (h <= 0) continue;
    loss += per * h;
    gpos[static_cast<std::size_t>(a)] += per;  // d loss / d H_pos
    Q.mean_entropy(n, -per);  // d loss / d H_neg = -per
  }
  for (index_t a = 0; a < P.N; ++a)
    if (gpos[static_cast<std::size_t>(a)] != 0) P.mean_entropy(a, gpos[static_cast<std::size_t>(a)]);
  P.write(dpos);
  Q.write(dneg);
  return loss;
}

}  // namespace plm::objectives
