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

// An encoder and a head in one ParameterSet, and the pass every such model
// runs: encode, the head's forward (given by the caller), and with a gradient
// the head's backward into d H and the encoder's (skipped when frozen). The
// head's config gets the encoder's width in its d_model. TaskModel below and
// train::NegativeMiningModel are this with their heads.
template <class Encoder, class Head>
class EncoderWithHead {
 public:
  using B = typename Encoder::backend;
  using T = typename Encoder::value_type;

  template <class Config, class... HeadArgs>
  EncoderWithHead(const Config& c, std::uint64_t seed, bool freeze_encoder, HeadArgs&&... head)
      : encoder_(nn::make_encoder_in<Encoder>(ps_, c)), head_(ps_, with_width(std::forward<HeadArgs>(head))...), freeze_(freeze_encoder) {
    ps_.allocate();
    ps_.init(seed);
  }
  EncoderWithHead(const EncoderWithHead&) = delete;
  EncoderWithHead& operator=(const EncoderWithHead&) = delete;

  nn::ParameterSet<B, T>& params() { return ps_; }
  Encoder& encoder() { return encoder_; }
  const Head& head() const { return head_; }
  bool frozen() const { return freeze_; }
  index_t d_model() const { return encoder_.d_model(); }

 protected:
  // forward(H, work, with_gradient) -> the head's result.
  template <class Forward>
  auto run(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, bool with_gradient, std::uint64_t dropout_seed,
           Forward&& forward) {
    PLM_CHECK(ids.rank() == 2, "encoder ids ", ids.shape(), " must be (N, S)");
    H_.resize(Shape{ids.dim(0), ids.dim(1), encoder_.d_model()});
    encoder_.encode(ids, valid, H_.view(), enc_, with_gradient ? nn::Pass::train(dropout_seed) : nn::Pass::eval());
    const auto r = forward(H_.cview(), work_, with_gradient);
    if (!with_gradient) return r;
    dH_.resize(H_.shape());
    head_.backward(H_.cview(), dH_.view(), work_);
    if (!freeze_) encoder_.encode_backward(dH_.cview(), enc_);
    return r;
  }

  nn::ParameterSet<B, T> ps_;  // declared first: the layers below register into it
  Encoder encoder_;
  Head head_;
  typename Head::Work work_;  // the head's working memory of the last run()

 private:
  template <class A>
  decltype(auto) with_width(A&& a) const {
    if constexpr (has_d_model<std::decay_t<A>>::value) {
      std::decay_t<A> c = a;
      c.d_model = encoder_.d_model();
      return c;
    } else {
      return std::forward<A>(a);
    }
  }
  template <class A, class = void>
  struct has_d_model : std::false_type {};
  template <class A>
  struct has_d_model<A, std::void_t<decltype(std::declval<A&>().d_model = index_t{})>> : std::true_type {};

  bool freeze_ = false;
  typename Encoder::Cache enc_;
  Tensor<B, T> H_, dH_;
};

template <class Encoder, class Head>
class TaskModel : public EncoderWithHead<Encoder, Head> {
  using Base = EncoderWithHead<Encoder, Head>;

 public:
  using typename Base::B;
  using typename Base::T;

  // Head arguments after the set: (ProteinTask, TaskHeadConfig) for
  // ProteinHead, (TaskHeadConfig) for ResidueHead. Every parameter is drawn
  // from seed; load pretrained encoder weights afterwards
  // (io::load_backbone_weights(encoder(), dir)).
  using Base::Base;

  // ids, valid (N, S) padded; targets as the head takes them. with_gradient: a
  // training pass (the encoder's dropout keyed by dropout_seed) and the backward
  // into every parameter gradient (added); without: eval mode, no gradient.
  template <class Targets>
  objectives::TaskResult step(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, const Targets& targets,
                              bool with_gradient, std::uint64_t dropout_seed = 0) {
    return this->run(ids, valid, with_gradient, dropout_seed, [&](ConstView<B, T> H, typename Head::Work& w, bool grad) {
      return this->head_.forward(H, valid, targets, w, grad);
    });
  }
};

}  // namespace plm::train
