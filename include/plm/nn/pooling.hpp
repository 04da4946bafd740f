#pragma once
// MeanPool: the mean of the hidden states over each sequence's valid tokens,
// the protein-level representation of fine-tuning heads (negative mining,
// classification and regression on encoder outputs).
#include <cstdint>
#include <vector>

#include "plm/backend/ops.hpp"

namespace plm::nn {

// x (B, T, C), valid (B, T) -> out (B, C): one batched GEMM with weights
// valid / count, so padding contributes nothing and the backward is its transpose.
template <class B, class T>
class MeanPool {
 public:
  struct Cache {
    Tensor<B, T> w;  // (B, 1, T)
  };
  void forward(ConstView<B, T> x, ConstView<B, std::uint8_t> valid, TensorView<B, T> out, Cache& c) const {
    PLM_CHECK(x.rank() == 3 && valid.shape() == Shape({x.dim(0), x.dim(1)}) && out.shape() == Shape({x.dim(0), x.dim(2)}),
              "MeanPool: x ", x.shape(), ", valid ", valid.shape(), " and out ", out.shape(), " must be (B, T, C), (B, T), (B, C)");
    const index_t Bn = x.dim(0), Tn = x.dim(1);
    std::vector<std::uint8_t> v(static_cast<std::size_t>(Bn * Tn));
    download(valid, v.data());
    std::vector<T> w(v.size());
    for (index_t b = 0; b < Bn; ++b) {
      index_t n = 0;
      for (index_t t = 0; t < Tn; ++t) n += v[static_cast<std::size_t>(b * Tn + t)] != 0;
      PLM_CHECK(n > 0, "MeanPool: sequence ", b, " has no valid token");
      for (index_t t = 0; t < Tn; ++t) w[static_cast<std::size_t>(b * Tn + t)] = v[static_cast<std::size_t>(b * Tn + t)] ? T(1) / T(n) : T(0);
    }
    c.w.resize(Shape{Bn, 1, Tn});
    upload(w.data(), c.w.view());
    ops<B>::matmul(c.w.cview(), false, x, false, out.reshape(Shape{Bn, 1, x.dim(2)}));
  }
  // d_out (B, C) -> dx (B, T, C), written.
  void backward(ConstView<B, T> d_out, TensorView<B, T> dx, Cache& c) const {
    const index_t Bn = dx.dim(0), C = dx.dim(2);
    ops<B>::matmul(c.w.cview(), true, d_out.reshape(Shape{Bn, 1, C}), false, dx);
  }
};

}  // namespace plm::nn
