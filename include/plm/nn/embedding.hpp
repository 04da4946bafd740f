#pragma once
// Embedding: rows of a (vocab, dim) table by token id.
#include <cstdint>
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::nn {

template <class B, class T>
class Embedding {
 public:
  Embedding() = default;
  Embedding(ParameterSet<B, T>& ps, const std::string& name, index_t vocab, index_t dim, double init_std)
      : weight_(add_param(ps, name + ".weight", Shape{vocab, dim}, init_std)) {}

  const Param<B, T>& weight() const { return weight_; }

  // ids: (...) -> y: (..., dim)
  void forward(ConstView<B, std::int32_t> ids, TensorView<B, T> y) const { ops<B>::gather(ConstView<B, T>(weight_.value()), ids, y); }
  // Adds dy's rows into the table's gradient.
  void backward(ConstView<B, std::int32_t> ids, ConstView<B, T> dy) const { ops<B>::scatter_add(ids, dy, weight_.grad()); }

 private:
  Param<B, T> weight_;
};

}  // namespace plm::nn
