#pragma once
// The masked-LM head of BERT and ESM (transformers' BertLMPredictionHead /
// EsmLMHead):
//   logits = LayerNorm(gelu(x Wd + bd)) W^T + b
// with W (V, C) the tied word embeddings or a decoder of the model's own, and
// b (V) the model's logits bias; the model passes both, since which parameters
// they are (and their names) is the model's business.
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/linear.hpp"
#include "plm/nn/norm.hpp"

namespace plm::nn {

template <class B, class T>
class MaskedLMHead {
 public:
  struct Cache {
    Tensor<B, T> hd, ha, hn, d_h;  // dense, gelu, norm outputs and the backward workspace (B, T, C)
    typename LayerNorm<B, T>::Cache norm;
  };

  MaskedLMHead() = default;
  // Parameters <dense>.{weight,bias} (C, C) and <norm>.{weight,bias}.
  MaskedLMHead(ParameterSet<B, T>& ps, const std::string& dense, const std::string& norm, index_t C, double eps, double init_std)
      : dense_(ps, dense, C, C, init_std, true), norm_(ps, norm, C, eps) {}

  // x (B, T, C) -> logits (B, T, V).
  void forward(ConstView<B, T> x, const Param<B, T>& W, const Param<B, T>& b, TensorView<B, T> logits, Cache& c) const {
    const index_t C = x.dim(x.rank() - 1), V = W.value().dim(0);
    for (Tensor<B, T>* t : {&c.hd, &c.ha, &c.hn}) t->resize(x.shape());
    dense_.forward(x, c.hd.view());
    ops<B>::gelu_erf(c.hd.cview(), c.ha.view());
    norm_.forward(c.ha.cview(), c.hn.view(), c.norm);
    ops<B>::matmul(c.hn.cview().reshape(Shape{c.hn.numel() / C, C}), false, ConstView<B, T>(W.value()), true,
                   logits.reshape(Shape{logits.numel() / V, V}));
    ops<B>::add_row(ConstView<B, T>(logits), ConstView<B, T>(b.value()), logits);
  }

  // dlogits (B, T, V) -> dx (B, T, C) written; the gradients of the head, W and b added.
  void backward(ConstView<B, T> x, ConstView<B, T> dlogits, const Param<B, T>& W, const Param<B, T>& b, TensorView<B, T> dx,
                Cache& c) const {
    const index_t C = x.dim(x.rank() - 1), V = W.value().dim(0);
    const auto g = dlogits.reshape(Shape{dlogits.numel() / V, V});
    const auto hn = c.hn.cview().reshape(Shape{c.hn.numel() / C, C});
    ops<B>::sum_rows(g, b.grad(), T(1));
    ops<B>::matmul(g, true, hn, false, W.grad(), T(1), T(1));
    c.d_h.resize(c.hn.shape());
    ops<B>::matmul(g, false, ConstView<B, T>(W.value()), false, c.d_h.view().reshape(Shape{hn.dim(0), C}));
    norm_.backward(c.ha.cview(), c.d_h.cview(), c.d_h.view(), c.norm);
    ops<B>::gelu_erf_backward(c.hd.cview(), c.d_h.cview(), c.d_h.view());
    dense_.backward(x, c.d_h.cview(), dx);
  }

 private:
  Linear<B, T> dense_;
  LayerNorm<B, T> norm_;
};

}  // namespace plm::nn
