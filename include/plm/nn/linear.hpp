#pragma once
// Linear: y = x W^T (+ b). W is (out, in), Hugging Face's nn.Linear layout.
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::nn {

template <class B, class T>
class Linear {
 public:
  Linear() = default;
  // init_std: the standard deviation of N(0, std^2) for W (T5 uses a different one per matrix).
  Linear(ParameterSet<B, T>& ps, const std::string& name, index_t in, index_t out, double init_std, bool bias = false)
      : in_(in), out_(out) {
    weight_ = add_param(ps, name + ".weight", Shape{out, in}, init_std);
    if (bias) bias_ = add_param(ps, name + ".bias", Shape{out}, 0.0);
  }

  index_t in_features() const { return in_; }
  index_t out_features() const { return out_; }
  const Param<B, T>& weight() const { return weight_; }

  // x: (..., in) -> y: (..., out)
  void forward(ConstView<B, T> x, TensorView<B, T> y) const {
    PLM_CHECK(x.rank() >= 2 && x.dim(-1) == in_, "Linear ", weight_.name(), ": input ", x.shape(), " must be (..., ", in_, ")");
    ops<B>::matmul(as_rows(x, in_), false, ConstView<B, T>(weight_.value()), true, as_rows(y, out_));
    if (bias_.valid()) ops<B>::add_row(ConstView<B, T>(y), ConstView<B, T>(bias_.value()), y);
  }

  // dy: (..., out). Adds dW += dy^T x (and db += sum dy). dx (..., in) is written,
  // or accumulated into when accumulate_dx; skipped when dx is empty.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, bool accumulate_dx = false) const {
    const auto x2 = as_rows(x, in_);
    const auto dy2 = as_rows(dy, out_);
    ops<B>::matmul(dy2, true, x2, false, weight_.grad(), T(1), T(1));
    if (bias_.valid()) ops<B>::sum_rows(dy2, bias_.grad(), T(1));
    if (!dx.empty()) ops<B>::matmul(dy2, false, ConstView<B, T>(weight_.value()), false, as_rows(dx, in_), T(1), accumulate_dx ? T(1) : T(0));
  }

 private:
  template <class V>
  static auto as_rows(const V& v, index_t cols) {
    return v.reshape(Shape{v.numel() / (cols == 0 ? 1 : cols), cols});
  }
  Param<B, T> weight_, bias_;
  index_t in_ = 0, out_ = 0;
};

}  // namespace plm::nn
