#pragma once
// Negative-mining fine-tuning (arXiv 2405.17902) on an encoder's last hidden
// states: the loss variants, their weighted attention-space loss, and the
// paper's classifier head with both of its losses.
//
//   NegativeMiningLoss        squared (the released code), l1, kl, entropy_hinge;
//                             parse_negative_mining_loss reads the names
//   negative_mining_loss      lambda * the chosen attention loss on the
//                             probabilities of the negatives' (and, for the
//                             hinge, the positives') attention over their
//                             anchors; writes d loss / d probs
//   NegativeMiningClassifier  the paper's head: anchors -> PairAttention (self)
//                             -> MeanPool -> ReadoutHead -> cross-entropy, and
//                             the negatives / positives -> the same PairAttention
//                             (cross over their anchor) -> negative_mining_loss;
//                             backward gives d total / d H for the encoder
//
// A loop: rows = samplers::sample_negative_batch(...); pad and encode the rows
// into H; r = head.forward(H, valid, rows, labels, w, true); head.backward(H,
// dH, w); encoder backward from dH; optimizer step. The losses themselves are
// in attention_contrastive.hpp.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/nn/pair_attention.hpp"
#include "plm/nn/pooling.hpp"
#include "plm/nn/readout.hpp"
#include "plm/objectives/attention_contrastive.hpp"
#include "plm/objectives/cross_entropy.hpp"

namespace plm::objectives {

enum class NegativeMiningLoss {
  squared,        // released code: sum_ij (P_ij - 1/La)^2 / sqrt(Lq La) per pair
  l1,             // sum_ij |P_ij - 1/La| / sqrt(Lq La) per pair
  kl,             // mean_i KL(P_i || uniform) per pair
  entropy_hinge,  // max(0, H(positive) - H(negative) + margin): needs positive rows
};

inline const char* negative_mining_loss_name(NegativeMiningLoss l) {
  switch (l) {
    case NegativeMiningLoss::squared: return "squared";
    case NegativeMiningLoss::l1: return "l1";
    case NegativeMiningLoss::kl: return "kl";
    case NegativeMiningLoss::entropy_hinge: return "entropy-hinge";
  }
  return "?";
}

inline NegativeMiningLoss parse_negative_mining_loss(const std::string& name) {
  for (auto l : {NegativeMiningLoss::squared, NegativeMiningLoss::l1, NegativeMiningLoss::kl, NegativeMiningLoss::entropy_hinge})
    if (name == negative_mining_loss_name(l)) return l;
  PLM_FAIL("negative-mining loss: unknown '", name, "' (squared, l1, kl, entropy-hinge)");
}

// The hinge compares each negative with its anchor's positive.
inline bool needs_positives(NegativeMiningLoss l) { return l == NegativeMiningLoss::entropy_hinge; }

struct NegativeMiningOptions {
  NegativeMiningLoss loss = NegativeMiningLoss::squared;
  double lambda = 0.1;  // weight of the attention loss next to the supervised one (the released default)
  double margin = 0.1;  // entropy_hinge only
};

// Attention probabilities of query / key pairs with their valid masks, and
// where d loss / d probs goes.
template <class B, class T>
struct AttentionPairsRef {
  ConstView<B, T> probs;               // (N, H, Lq, Lk)
  ConstView<B, std::uint8_t> q_valid;  // (N, Lq)
  ConstView<B, std::uint8_t> k_valid;  // (N, Lk)
  TensorView<B, T> d_probs;            // (N, H, Lq, Lk), written when not empty
};

// The pairs of a PairAttention's cross-attention, gradient into their d_probs.
template <class B, class T>
AttentionPairsRef<B, T> pairs_of(typename nn::PairAttention<B, T>::Pairs& p) {
  return {p.probs(), p.q_valid, p.kv_valid.cview(), p.d_probs.view()};
}

// lambda * the attention loss of o.loss. negatives: each negative's attention
// over its anchor. entropy_hinge also reads positives (each anchor's
// positive's attention over it) and positive_of (per negative, the index of
// its anchor's positive among positives); the others ignore both.
template <class B, class T>
double negative_mining_loss(const NegativeMiningOptions& o, const AttentionPairsRef<B, T>& negatives,
                            const AttentionPairsRef<B, T>& positives = {}, const std::vector<index_t>& positive_of = {}) {
  PLM_CHECK(o.lambda >= 0, "negative_mining_loss: lambda ", o.lambda, " must be >= 0");
  const auto& n = negatives;
  switch (o.loss) {
    case NegativeMiningLoss::squared:
    case NegativeMiningLoss::l1:
    case NegativeMiningLoss::kl: {
      const auto d = o.loss == NegativeMiningLoss::squared ? UniformDistance::squared
                     : o.loss == NegativeMiningLoss::l1    ? UniformDistance::l1
                                                           : UniformDistance::kl;
      return attention_to_uniform<B, T>(n.probs, n.q_valid, n.k_valid, d, o.lambda, n.d_probs);
    }
    case NegativeMiningLoss::entropy_hinge: {
      PLM_CHECK(!positives.probs.empty(), "negative_mining_loss: entropy-hinge needs the positives' attention (no positive rows given)");
      for (std::size_t k = 0; k < positive_of.size(); ++k)
        PLM_CHECK(positive_of[k] >= 0, "negative_mining_loss: entropy-hinge: the anchor of negative ", k, " has no positive");
      const auto& p = positives;
      return entropy_hinge<B, T>(p.probs, p.q_valid, p.k_valid, n.probs, n.q_valid, n.k_valid, positive_of, o.margin, o.lambda,
                                 p.d_probs, n.d_probs);
    }
  }
  PLM_FAIL("negative_mining_loss: unknown loss variant");
}

// Sizes and parameter names of the head.
struct NegativeMiningHeadConfig {
  index_t d_model = 0;   // hidden size of the encoder below
  index_t classes = 0;   // K
  index_t readout = 128;  // width of the readout layer (the paper's 128)
  bool scaled = false;   // 1/sqrt(d) on the attention scores (the released code: no)
  std::string attention_name = "nm_attention", classifier_name = "classifier";
};

struct NegativeMiningResult {
  double supervised = 0;  // mean cross-entropy over the anchors
  double attention = 0;   // lambda * attention loss (0 without negative rows)
  std::vector<std::int32_t> predicted;  // argmax class of every anchor
  std::int64_t correct = 0;             // predictions equal to the label
  double total() const { return supervised + attention; }
};

template <class B, class T>
class NegativeMiningClassifier {
 public:
  using Pairs = typename nn::PairAttention<B, T>::Pairs;
  // Working memory of one step, reused across steps.
  struct Work {
    Tensor<B, T> out, d_out, pooled, d_pooled, logits, d_logits;  // (A, S, d), (A, d), (A, K)
    Tensor<B, std::int32_t> labels;                               // (A)
    typename nn::PairAttention<B, T>::Cache self;
    typename nn::MeanPool<B, T>::Cache pool;
    typename nn::ReadoutHead<B, T>::Cache head;
    Pairs negatives, positives;
    bool has_negatives = false, has_positives = false, with_gradient = false;
    std::vector<T> host_logits;
  };

  NegativeMiningClassifier() = default;
  // Registers <attention_name>.{q,k,v}.weight and <classifier_name>.{readout,out}.{weight,bias} into ps.
  NegativeMiningClassifier(nn::ParameterSet<B, T>& ps, const NegativeMiningHeadConfig& c, NegativeMiningOptions o = {})
      : c_(c), o_(o), attention_(ps, c.attention_name, c.d_model, c.scaled), head_(ps, c.classifier_name, c.d_model, c.classes, c.readout) {
    PLM_CHECK(c.classes >= 1 && c.readout >= 1, "NegativeMiningClassifier: classes ", c.classes, " and readout ", c.readout,
              " must be positive");
    PLM_CHECK(o.lambda >= 0, "NegativeMiningClassifier: lambda ", o.lambda, " must be >= 0");
  }

  const NegativeMiningOptions& options() const { return o_; }
  const nn::PairAttention<B, T>& attention() const { return attention_; }
  const nn::ReadoutHead<B, T>& head() const { return head_; }

  // H (R, S, d): encoder states of the batch laid out as rows describes
  // (R = rows.rows()), valid (R, S); labels: the class of every anchor row.
  // Computes both losses; with_gradient keeps what backward() needs.
  NegativeMiningResult forward(ConstView<B, T> H, ConstView<B, std::uint8_t> valid, const nn::PairRows& rows,
                               const std::vector<std::int32_t>& labels, Work& w, bool with_gradient) const {
    rows.check("NegativeMiningClassifier");
    const index_t A = rows.anchors, d = c_.d_model, K = c_.classes;
    PLM_CHECK(H.rank() == 3 && H.dim(0) == rows.rows() && H.dim(2) == d && valid.shape() == Shape({H.dim(0), H.dim(1)}),
              "NegativeMiningClassifier: H ", H.shape(), " and valid ", valid.shape(), " must be (", rows.rows(), ", S, ", d,
              ") and (", rows.rows(), ", S) for ", A, " anchors, ", rows.negatives(), " negatives and ", rows.positives(), " positives");
    PLM_CHECK(static_cast<index_t>(labels.size()) == A, "NegativeMiningClassifier: ", labels.size(), " labels for ", A, " anchors");
    for (std::size_t a = 0; a < labels.size(); ++a)
      PLM_CHECK(labels[a] >= 0 && labels[a] < K, "NegativeMiningClassifier: anchor ", a, " has label ", labels[a], ", outside 0..", K - 1);
    const index_t S = H.dim(1);
    const auto Ha = H.slice(0, A);
    const auto va = valid.slice(0, A);
    w.with_gradient = with_gradient;

    // Supervised path on the anchors.
    w.out.resize(Shape{A, S, d});
    attention_.forward(Ha, Ha, va, w.out.view(), w.self);
    w.pooled.resize(Shape{A, d});
    pool_.forward(w.out.cview(), va, w.pooled.view(), w.pool);
    w.logits.resize(Shape{A, K});
    head_.forward(w.pooled.cview(), w.logits.view(), w.head);
    w.labels.resize(Shape{A});
    upload(labels.data(), w.labels.view());
    w.d_logits.resize(w.logits.shape());
    NegativeMiningResult r;
    r.supervised = ce_(w.logits.cview(), w.labels.cview(), with_gradient ? w.d_logits.view() : TensorView<B, T>{}).loss;
    w.host_logits.resize(static_cast<std::size_t>(A * K));
    download(w.logits.cview(), w.host_logits.data());
    for (index_t a = 0; a < A; ++a) {
      const T* l = w.host_logits.data() + a * K;
      r.predicted.push_back(static_cast<std::int32_t>(std::max_element(l, l + K) - l));
      r.correct += r.predicted.back() == labels[static_cast<std::size_t>(a)];
    }

    // Attention loss: the negatives' (and positives') cross-attention over their anchors.
    w.has_negatives = rows.negatives() > 0 && o_.lambda > 0;
    w.has_positives = w.has_negatives && needs_positives(o_.loss);
    if (!w.has_negatives) return r;
    attention_.forward_pairs(H, valid, rows.first_negative(), rows.negative_anchor, w.negatives);
    AttentionPairsRef<B, T> pos{};
    if (w.has_positives) {
      PLM_CHECK(rows.positives() > 0, "NegativeMiningClassifier: the ", negative_mining_loss_name(o_.loss),
                " loss needs positive rows, the batch has none");
      attention_.forward_pairs(H, valid, rows.first_positive(), rows.positive_anchor, w.positives);
      pos = pairs_of<B, T>(w.positives);
    }
    r.attention = negative_mining_loss<B, T>(o_, pairs_of<B, T>(w.negatives), pos, rows.positive_of_negatives());
    return r;
  }

  // dH (R, S, d) is written with d (supervised + attention loss) / d H, and the
  // head's parameter gradients are added to. Needs forward(..., with_gradient = true).
  void backward(ConstView<B, T> H, TensorView<B, T> dH, Work& w) const {
    PLM_CHECK(w.with_gradient, "NegativeMiningClassifier::backward: the forward pass ran without with_gradient");
    PLM_CHECK(dH.shape() == H.shape(), "NegativeMiningClassifier::backward: dH ", dH.shape(), " must match H ", H.shape());
    const index_t A = w.logits.dim(0);
    w.d_pooled.resize(w.pooled.shape());
    head_.backward(w.pooled.cview(), w.d_logits.cview(), w.d_pooled.view(), w.head);
    w.d_out.resize(w.out.shape());
    pool_.backward(w.d_pooled.cview(), w.d_out.view(), w.pool);
    ops<B>::fill(dH, T(0));  // rows without a gradient path stay 0; the pairs add into theirs
    const auto Ha = H.slice(0, A);
    attention_.backward(Ha, Ha, w.d_out.cview(), dH.slice(0, A), dH.slice(0, A), w.self);
    if (w.has_negatives) attention_.backward_pairs(H, dH, w.negatives);
    if (w.has_positives) attention_.backward_pairs(H, dH, w.positives);
  }

  // The pooled anchor representations of the last forward (A, d): the
  // readout's input, e.g. for hard-negative mining by similarity.
  ConstView<B, T> pooled(const Work& w) const { return w.pooled.cview(); }
  ConstView<B, T> logits(const Work& w) const { return w.logits.cview(); }

 private:
  NegativeMiningHeadConfig c_;
  NegativeMiningOptions o_;
  nn::PairAttention<B, T> attention_;
  nn::MeanPool<B, T> pool_;
  nn::ReadoutHead<B, T> head_;
  CrossEntropy<B, T> ce_;
};

}  // namespace plm::objectives
