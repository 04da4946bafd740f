#pragma once
// The negative-mining recipe (arXiv 2405.17902) as one model a loop drives:
// an encoder and objectives::NegativeMiningClassifier in one ParameterSet (so
// one optimizer, one clip and one checkpoint cover both), with the steps every
// such loop repeats:
//
//   step        pads and encodes a batch's rows (samplers::NegativeBatch),
//               computes cross-entropy + lambda * attention loss, and with a
//               gradient runs the head's and the encoder's backward (the
//               encoder's unless frozen); the loop then clips and steps
//   evaluate    supervised loss and confusion matrix over proteins, in
//               length-sorted batches of anchors
//   embed       pooled representations (the readout's input), e.g. for
//               samplers::hard_negatives
//
// Encoder: a model with the encoder interface (d_model(), a Cache,
// encode(ids, valid, out, c, pass) and encode_backward(d_out, c)) that
// registers into a caller's set: nn::Ankh3Model built with
// num_decoder_layers = 0, or nn::EsmModel (built nn::encoder_only, without its
// LM head). io::read_backbone_config / io::load_backbone_weights read either
// from a checkpoint directory. The loop, the optimizer and checkpoints stay
// with the caller.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "plm/nn/parameters.hpp"
#include "plm/objectives/negative_mining.hpp"
#include "plm/samplers/batching.hpp"
#include "plm/samplers/negative_batch.hpp"
#include "plm/train/classification.hpp"
#include "plm/train/task_model.hpp"

namespace plm::train {


template <class Encoder>
class NegativeMiningModel : public EncoderWithHead<Encoder, objectives::NegativeMiningClassifier<typename Encoder::backend,
                                                                                                typename Encoder::value_type>> {
  using Base = EncoderWithHead<Encoder, objectives::NegativeMiningClassifier<typename Encoder::backend, typename Encoder::value_type>>;

 public:
  using typename Base::B;
  using typename Base::T;
  using Head = objectives::NegativeMiningClassifier<B, T>;

  // Builds the encoder from its config and the head on its hidden size (hc.d_model
  // is taken from the encoder), allocates the set and draws every parameter from
  // seed; load pretrained encoder weights afterwards (io::load_backbone_weights(encoder(), dir)).
  // freeze_encoder: step() leaves the encoder's gradients at 0 and skips its backward.
  template <class Config>
  NegativeMiningModel(const Config& c, objectives::NegativeMiningHeadConfig hc, objectives::NegativeMiningOptions o, std::uint64_t seed,
                      bool freeze_encoder = false)
      : Base(c, seed, freeze_encoder, hc, o) {}

  // tokens, labels: per item (nb.items index them); pad: the padding id.
  // with_gradient: a training step, the encoder in a training pass (the
  // config's dropout, keyed by dropout_seed: give each step its own); without,
  // an eval pass.
  objectives::NegativeMiningResult step(const std::vector<std::vector<std::int32_t>>& tokens, const std::vector<std::int32_t>& labels,
                                        const samplers::NegativeBatch& nb, std::int32_t pad, bool with_gradient,
                                        std::uint64_t dropout_seed = 0) {
    samplers::pad_rows<B>(tokens, nb.items, pad, ids_, valid_);
    anchor_labels_.clear();
    for (index_t a = 0; a < nb.rows.anchors; ++a) {
      const index_t item = nb.items[static_cast<std::size_t>(a)];
      PLM_CHECK(item >= 0 && item < static_cast<index_t>(labels.size()), "NegativeMiningModel::step: anchor item ", item, " outside the ",
                labels.size(), " labels");
      anchor_labels_.push_back(labels[static_cast<std::size_t>(item)]);
    }
    return this->run(ids_.cview(), valid_.cview(), with_gradient, dropout_seed,
                     [&](ConstView<B, T> H, typename Head::Work& w, bool grad) {
                       return this->head_.forward(H, valid_.cview(), nb.rows, anchor_labels_, w, grad);
                     });
  }

  // Over proteins (items of tokens / labels) in batches of `batch`, shortest first.
  // Shared by `world` ranks: this one evaluates batches rank, rank + world, ...
  // and its loss is its share; train::sum_over_ranks puts the ranks' shares
  // together into what one process evaluating every batch gets.
  ClassifierEvaluation evaluate(const std::vector<std::vector<std::int32_t>>& tokens, const std::vector<std::int32_t>& labels,
                                std::vector<index_t> proteins, index_t batch, std::int32_t pad, int rank = 0, int world = 1) {
    PLM_CHECK(batch > 0, "NegativeMiningModel: batch ", batch, " must be positive");
    PLM_CHECK(world >= 1 && rank >= 0 && rank < world, "NegativeMiningModel::evaluate: rank ", rank, " of ", world);
    std::stable_sort(proteins.begin(), proteins.end(), [&](index_t a, index_t b) {
      return tokens.at(static_cast<std::size_t>(a)).size() < tokens.at(static_cast<std::size_t>(b)).size();
    });
    const auto B = static_cast<std::size_t>(batch);
    ClassifierEvaluation e{0, ConfusionMatrix(head_classes()), std::vector<double>((proteins.size() + B - 1) / B, 0.0), proteins.size()};
    for (std::size_t k = static_cast<std::size_t>(rank); k < e.batch_losses.size(); k += static_cast<std::size_t>(world)) {
      const auto first = proteins.begin() + static_cast<long>(k * B);
      const std::vector<index_t> rows(first, first + static_cast<long>(std::min(B, proteins.size() - k * B)));
      for_batches(tokens, labels, rows, batch, pad, [&](const samplers::NegativeBatch& nb, const objectives::NegativeMiningResult& r) {
        e.batch_losses[k] = r.supervised * double(nb.items.size());
        for (std::size_t i = 0; i < nb.items.size(); ++i) e.cm.add(labels[static_cast<std::size_t>(nb.items[i])], r.predicted[i]);
      });
    }
    for (double l : e.batch_losses) e.loss += l;
    e.loss /= double(std::max<std::size_t>(proteins.size(), 1));
    return e;
  }

  // Pooled representations (proteins.size(), d_model) of proteins, in their order.
  Tensor<cpu, T> embed(const std::vector<std::vector<std::int32_t>>& tokens, const std::vector<std::int32_t>& labels,
                       const std::vector<index_t>& proteins, index_t batch, std::int32_t pad) {
    Tensor<cpu, T> out(Shape{static_cast<index_t>(proteins.size()), this->d_model()});
    index_t row = 0;
    for_batches(tokens, labels, proteins, batch, pad, [&](const samplers::NegativeBatch& nb, const objectives::NegativeMiningResult&) {
      download(this->head_.pooled(this->work_), out.data() + row * this->d_model());
      row += nb.rows.anchors;
    });
    return out;
  }

 private:
  std::int32_t head_classes() const { return static_cast<std::int32_t>(this->head_.head().out_features()); }
  // Forward passes without gradient over proteins cut into anchor-only batches.
  template <class F>
  void for_batches(const std::vector<std::vector<std::int32_t>>& tokens, const std::vector<std::int32_t>& labels,
                   const std::vector<index_t>& proteins, index_t batch, std::int32_t pad, F&& f) {
    PLM_CHECK(batch > 0, "NegativeMiningModel: batch ", batch, " must be positive");
    for (std::size_t s = 0; s < proteins.size(); s += static_cast<std::size_t>(batch)) {
      const auto first = proteins.begin() + static_cast<long>(s);
      const auto nb = samplers::make_negative_batch({first, first + static_cast<long>(std::min(proteins.size() - s, std::size_t(batch)))});
      f(nb, step(tokens, labels, nb, pad, false));
    }
  }

  Tensor<B, std::int32_t> ids_;
  Tensor<B, std::uint8_t> valid_;
  std::vector<std::int32_t> anchor_labels_;
};

}  // namespace plm::train
