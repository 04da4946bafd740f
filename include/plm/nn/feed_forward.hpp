#pragma once
// The position-wise feed-forward block.
//   gated (T5 v1.1, Ankh): y = (act(x Wi0^T) * (x Wi1^T)) Wo^T
//   plain:                 y = act(x Wi^T) Wo^T
// Hugging Face names: DenseReluDense.wi_0 / wi_1 / wo (gated), DenseReluDense.wi / wo (plain);
// FeedForwardSpec gives others (ESM / BERT: intermediate.dense, output.dense, with biases).
#include <cmath>
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/dropout.hpp"
#include "plm/nn/linear.hpp"

namespace plm::nn {

// The block's parameters by full name, their initialisation, biases and the
// dropout on the hidden activation.
struct FeedForwardSpec {
  std::string wi, wi_1, wo;  // wi_1 only when gated (wi is then wi_0)
  double in_std = 0, out_std = 0;
  bool bias = false;
  double dropout = 0;
};

template <class B, class T, class Act, class Gate>
class FeedForward {
 public:
  struct Cache {
    Tensor<B, T> h0, h1, g;  // (..., d_ff): pre-activation, linear branch (gated), hidden after dropout
    Tensor<B, T> dg, dh0, dh1;  // backward workspaces
    DropoutKey key;
  };

  FeedForward() = default;
  // T5 init: Wi ~ N(0, d_model^-1), Wo ~ N(0, d_ff^-1), times factor.
  FeedForward(ParameterSet<B, T>& ps, const std::string& name, index_t d_model, index_t d_ff, double factor = 1.0,
              double dropout = 0.0)
      : FeedForward(ps, t5_spec(name, d_model, d_ff, factor, dropout), d_model, d_ff) {}

  FeedForward(ParameterSet<B, T>& ps, const FeedForwardSpec& s, index_t d_model, index_t d_ff) : d_ff_(d_ff), dropout_{s.dropout} {
    wi0_ = Linear<B, T>(ps, s.wi, d_model, d_ff, s.in_std, s.bias);
    if constexpr (Gate::gated) wi1_ = Linear<B, T>(ps, s.wi_1, d_model, d_ff, s.in_std, s.bias);
    wo_ = Linear<B, T>(ps, s.wo, d_ff, d_model, s.out_std, s.bias);
  }

  // T5's names and initialisation: Wi ~ N(0, d_model^-1), Wo ~ N(0, d_ff^-1), times factor.
  static FeedForwardSpec t5_spec(const std::string& name, index_t d_model, index_t d_ff, double factor, double dropout) {
    FeedForwardSpec s;
    s.wi = Gate::gated ? name + ".wi_0" : name + ".wi";
    s.wi_1 = name + ".wi_1";
    s.wo = name + ".wo";
    s.in_std = factor / std::sqrt(static_cast<double>(d_model));
    s.out_std = factor / std::sqrt(static_cast<double>(d_ff));
    s.dropout = dropout;
    return s;
  }

  // x, y: (B, T, d_model)
  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c, DropoutKey key = {}) const {
    const Shape hs = hidden_shape(x.shape());
    c.key = key;
    c.h0.resize(hs);
    c.g.resize(hs);
    wi0_.forward(x, c.h0.view());
    if constexpr (Gate::gated) {  // act(h0) * h1 in one pass; the backward recomputes act(h0)
      c.h1.resize(hs);
      wi1_.forward(x, c.h1.view());
      ops<B>::gated(Act::kind, c.h0.cview(), c.h1.cview(), c.g.view());
    } else {
      Act::forward(c.h0.cview(), c.g.view());
    }
    if (dropout_.active(key)) dropout_.forward(c.g.cview(), c.g.view(), key);
    wo_.forward(c.g.cview(), y);
  }

  // dx written.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, Cache& c) const {
    const Shape hs = hidden_shape(x.shape());
    c.dg.resize(hs);
    c.dh0.resize(hs);
    wo_.backward(c.g.cview(), dy, c.dg.view());
    if (dropout_.active(c.key)) dropout_.backward(c.dg.cview(), c.dg.view(), c.key);
    if constexpr (Gate::gated) {
      c.dh1.resize(hs);  // d(x Wi1) = dg * act(h0), d(x Wi0) = dg * h1 * act'(h0)
      ops<B>::gated_backward(Act::kind, c.h0.cview(), c.h1.cview(), c.dg.cview(), c.dh0.view(), c.dh1.view());
      wi0_.backward(x, c.dh0.cview(), dx, false);
      wi1_.backward(x, c.dh1.cview(), dx, true);
    } else {
      Act::backward(c.h0.cview(), c.dg.cview(), c.dh0.view());
      wi0_.backward(x, c.dh0.cview(), dx, false);
    }
  }

 private:
  Shape hidden_shape(const Shape& x) const {
    PLM_CHECK(x.rank() == 3, "FeedForward: x ", x, " must be (B, T, d_model)");
    return Shape{x[0], x[1], d_ff_};
  }
  index_t d_ff_ = 0;
  Linear<B, T> wi0_, wi1_, wo_;
  Dropout dropout_;
};

}  // namespace plm::nn
