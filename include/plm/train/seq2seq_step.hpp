#pragma once
// One seq2seq micro-batch of a pre-training loop: examples collated (packed end
// to end, or padded to the longest), through a T5Model and the multi-task loss.
// The loop keeps its own order of steps, accumulation and updates:
//
//   train::Seq2SeqStep<B, float, Model> micro(packed);
//   const auto r = micro.run(model, loss, examples, rows, pass, true);  // logits now d loss / d logits
//   model.backward(micro.logits(), micro.cache());
#include <vector>

#include "plm/nn/dropout.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/samplers/batching.hpp"

namespace plm::train {

template <class B, class T, class Model>
class Seq2SeqStep {
 public:
  explicit Seq2SeqStep(bool packed) : packed_(packed) {}

  bool packed() const { return packed_; }
  // Rows `rows` of `examples` through the model and the loss; with `backward`
  // the logits are overwritten with d loss / d logits, ready for Model::backward.
  objectives::MultiTaskResult run(const Model& model, const objectives::MultiTask<B, T>& loss,
                                  const std::vector<samplers::Seq2SeqExample>& examples, const std::vector<index_t>& rows,
                                  nn::Pass pass, bool backward) {
    const index_t V = model.config().vocab_size;
    if (packed_) {
      samplers::collate_packed<B>(examples, rows, packed_batch_);
      const auto& b = packed_batch_;
      logits_.resize(Shape{1, b.dec.tokens(), V});
      model.forward_packed(b.enc_ids.cview(), b.enc, b.dec_ids.cview(), b.dec, logits_.view(), cache_, pass);
      tokens_ = b.input_tokens + b.target_tokens;
      return loss(logits_.cview(), b.labels.cview(), b.dec, b.task, backward ? logits_.view() : TensorView<B, T>{});
    }
    samplers::collate<B>(examples, rows, batch_);
    const auto& b = batch_;
    logits_.resize(Shape{b.dec_ids.dim(0), b.dec_ids.dim(1), V});
    model.forward(b.enc_ids.cview(), b.enc_valid.cview(), b.dec_ids.cview(), logits_.view(), cache_, pass, b.dec_valid.cview());
    tokens_ = b.input_tokens + b.target_tokens;
    return loss(logits_.cview(), b.labels.cview(), b.task, backward ? logits_.view() : TensorView<B, T>{});
  }

  // The last run's logits (d loss / d logits after a run with backward), its cache, and its real input + target tokens.
  Tensor<B, T>& logits() { return logits_; }
  typename Model::Cache& cache() { return cache_; }
  index_t tokens() const { return tokens_; }

 private:
  bool packed_;
  samplers::Seq2SeqBatch<B> batch_;
  samplers::PackedSeq2SeqBatch<B> packed_batch_;
  typename Model::Cache cache_;
  Tensor<B, T> logits_;
  index_t tokens_ = 0;
};

}  // namespace plm::train
