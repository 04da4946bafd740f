#pragma once
// An encoder backbone and a downstream head (objectives/task_heads.hpp) as one
// model a fine-tuning loop drives: both in one ParameterSet, so one optimizer,
// one clip and one checkpoint cover them.
//
//   TaskModel<nn::EsmModel<cpu, float>, objectives::ProteinHead<cpu, float>>
//       m(io::read_backbone_config<Esm>(dir), objectives::ProteinTask::multilabel, {0, labels, 128}, seed);
//   io::load_backbone_weights(m.encoder(), dir);
//   r = m.step(ids, valid, targets, /*with_gradient=*/true, step);  then clip, optimizer step, zero_grad
//
// Encoder: a model with the encoder interface (nn::T5Model with
// num_decoder_layers = 0, nn::EsmModel built nn::encoder_only); a frozen
// encoder runs forward only and its gradients stay 0 (give it learning rate 0
// in the optimizer so weight decay leaves it alone too).
#include <cstdint>
#include <type_traits>
#include <utility>

#include "plm/nn/parameters.hpp"
#include "plm/objectives/task_heads.hpp"

namespace plm::train {

template <class Encoder, class Head>
class TaskModel {
 public:
  using B = typename Encoder::backend;
  using T = typename Encoder::value_type;

  // Head arguments after the set, with the head config's d_model taken from the
  // encoder: (ProteinTask, TaskHeadConfig) for ProteinHead, (TaskHeadConfig)
  // for ResidueHead. Every parameter is drawn from seed; load pretrained
  // encoder weights afterwards (io::load_backbone_weights(encoder(), dir)).
  template <class Config, class... HeadArgs>
  TaskModel(const Config& c, std::uint64_t seed, bool freeze_encoder, HeadArgs&&... head)
      : encoder_(nn::make_encoder_in<Encoder>(ps_, c)), head_(ps_, with_width(std::forward<HeadArgs>(head))...), freeze_(freeze_encoder) {
    ps_.allocate();
    ps_.init(seed);
  }
  TaskModel(const TaskModel&) = delete;
  TaskModel& operator=(const TaskModel&) = delete;

  nn::ParameterSet<B, T>& params() { return ps_; }
  Encoder& encoder() { return encoder_; }
  const Head& head() const { return head_; }
  bool frozen() const { return freeze_; }

  // ids, valid (N, S) padded; targets as the head takes them. with_gradient: a
  // training pass (the encoder's dropout keyed by dropout_seed) and the backward
  // into every parameter gradient (added); without: eval mode, no gradient.
  template <class Targets>
  objectives::TaskResult step(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, const Targets& targets,
                              bool with_gradient, std::uint64_t dropout_seed = 0) {
    PLM_CHECK(ids.rank() == 2, "TaskModel::step: ids ", ids.shape(), " must be (N, S)");
    H_.resize(Shape{ids.dim(0), ids.dim(1), encoder_.d_model()});
    encoder_.encode(ids, valid, H_.view(), enc_, with_gradient ? nn::Pass::train(dropout_seed) : nn::Pass::eval());
    const objectives::TaskResult r = head_.forward(H_.cview(), valid, targets, work_, with_gradient);
    if (!with_gradient) return r;
    dH_.resize(H_.shape());
    head_.backward(H_.cview(), dH_.view(), work_);
    if (!freeze_) encoder_.encode_backward(dH_.cview(), enc_);
    return r;
  }

 private:
  template <class A>
  decltype(auto) with_width(A&& a) const {
    if constexpr (std::is_same_v<std::decay_t<A>, objectives::TaskHeadConfig>) {
      objectives::TaskHeadConfig c = a;
      c.d_model = encoder_.d_model();
      return c;
    } else {
      return std::forward<A>(a);
    }
  }

  nn::ParameterSet<B, T> ps_;  // declared first: the layers below register into it
  Encoder encoder_;
  Head head_;
  bool freeze_ = false;
  typename Encoder::Cache enc_;
  typename Head::Work work_;
  Tensor<B, T> H_, dH_;
};

}  // namespace plm::train
