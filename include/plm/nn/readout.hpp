#pragma once
// ReadoutHead: Linear(C -> R) + ReLU + Linear(R -> K) on pooled representations,
// K class logits or K = 1 for a regression (objectives/regression.hpp); the
// negative-mining paper's readout uses R = 128.
#include <cmath>
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/linear.hpp"

namespace plm::nn {

template <class B, class T>
class ReadoutHead {
 public:
  struct Cache {
    Tensor<B, T> h, a, da;  // (N, R)
  };
  ReadoutHead() = default;
  // Parameters <name>.readout.{weight,bias} (R, C), (R) and <name>.out.{weight,bias} (K, R), (K);
  // weights N(0, 1/fan_in), biases 0.
  ReadoutHead(ParameterSet<B, T>& ps, const std::string& name, index_t in, index_t out, index_t readout = 128)
      : readout_(ps, name + ".readout", in, readout, 1.0 / std::sqrt(double(in)), true),
        out_(ps, name + ".out", readout, out, 1.0 / std::sqrt(double(readout)), true) {}

  index_t in_features() const { return readout_.in_features(); }
  index_t out_features() const { return out_.out_features(); }

  // x (N, C) -> y (N, K)
  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    c.h.resize(Shape{x.dim(0), readout_.out_features()});
    c.a.resize(c.h.shape());
    readout_.forward(x, c.h.view());
    ops<B>::relu(c.h.cview(), c.a.view());
    out_.forward(c.a.cview(), y);
  }
  // dy (N, K) -> dx (N, C) written (skipped when empty); parameter gradients added.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, Cache& c) const {
    c.da.resize(c.a.shape());
    out_.backward(c.a.cview(), dy, c.da.view());
    ops<B>::relu_backward(c.h.cview(), c.da.cview(), c.da.view());
    readout_.backward(x, c.da.cview(), dx);
  }

 private:
  Linear<B, T> readout_, out_;
};

}  // namespace plm::nn
