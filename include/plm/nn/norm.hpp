#pragma once
// Normalisation layers over the last dimension. Both have the same interface,
// so a model takes either as its norm policy.
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::nn {

// T5's RMS norm: y = x / sqrt(mean(x^2) + eps) * weight; no mean subtraction, no bias.
template <class B, class T>
class RMSNorm {
 public:
  struct Cache {
    Tensor<B, T> inv_rms;  // (rows)
  };
  RMSNorm() = default;
  RMSNorm(ParameterSet<B, T>& ps, const std::string& name, index_t dim, double eps)
      : weight_(add_param(ps, name + ".weight", Shape{dim}, 0.0, 1.0)), eps_(eps) {}

  // x, y: (..., dim)
  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    c.inv_rms.resize(Shape{x.shape().rows()});
    ops<B>::rms_norm(x, ConstView<B, T>(weight_.value()), static_cast<T>(eps_), y, c.inv_rms.view());
  }
  // dx written (may alias dy); weight gradient accumulated.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, const Cache& c) const {
    ops<B>::rms_norm_backward(x, ConstView<B, T>(weight_.value()), c.inv_rms.cview(), dy, dx, weight_.grad());
  }

 private:
  Param<B, T> weight_;
  double eps_ = 1e-6;
};

// Layer norm with weight and bias (named `<name>.weight`, `<name>.bias`).
template <class B, class T>
class LayerNorm {
 public:
  struct Cache {
    Tensor<B, T> mean, rstd;  // (rows)
  };
  LayerNorm() = default;
  LayerNorm(ParameterSet<B, T>& ps, const std::string& name, index_t dim, double eps)
      : weight_(add_param(ps, name + ".weight", Shape{dim}, 0.0, 1.0)), bias_(add_param(ps, name + ".bias", Shape{dim}, 0.0)), eps_(eps) {}

  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    c.mean.resize(Shape{x.shape().rows()});
    c.rstd.resize(Shape{x.shape().rows()});
    ops<B>::layer_norm(x, ConstView<B, T>(weight_.value()), ConstView<B, T>(bias_.value()), static_cast<T>(eps_), y,
                       c.mean.view(), c.rstd.view());
  }
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, const Cache& c) const {
    ops<B>::layer_norm_backward(x, ConstView<B, T>(weight_.value()), c.mean.cview(), c.rstd.cview(), dy, dx, weight_.grad(),
                                bias_.grad());
  }

 private:
  Param<B, T> weight_, bias_;
  double eps_ = 1e-5;
};

}  // namespace plm::nn
