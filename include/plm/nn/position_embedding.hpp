#pragma once
// PositionEmbedding: learned absolute positions, a (max_positions, dim) table
// whose row p is added to the states at position p (BERT, ESM-1b).
//
//   forward(x, y):          y[b, t] = x[b, t] + P[offset + t]     positions 0..T-1 in
//                                                                   every row, as BERT
//   forward(pos, x, y):     y[b, t] = x[b, t] + P[pos[b, t]]        explicit position ids
//                                                                   (ESM-1b counts from
//                                                                   its padding index)
//
// The backward adds dy into the rows it read. In the first form the rows are
// one contiguous slice of the table, so forward and backward are a row
// broadcast and a column sum over the batch; the second is a gather and a
// scatter-add.
#include <cstdint>
#include <string>

#include "plm/backend/ops.hpp"
#include "plm/core/error.hpp"
#include "plm/nn/embedding.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::nn {

template <class B, class T>
class PositionEmbedding {
 public:
  struct Cache {
    ConstView<B, std::int32_t> positions;  // explicit ids of the last forward; empty = 0..T-1 (+ offset)
    Tensor<B, T> rows;                     // (B, T, C): the gathered rows (explicit ids)
  };

  PositionEmbedding() = default;
  // `<name>.weight` (max_positions, dim) ~ N(0, init_std^2). offset: the
  // table row of position 0 in the first form.
  PositionEmbedding(ParameterSet<B, T>& ps, const std::string& name, index_t max_positions, index_t dim, double init_std,
                    index_t offset = 0)
      : name_(name), max_positions_(max_positions), dim_(dim), offset_(offset) {
    PLM_CHECK(offset >= 0 && offset < max_positions, "PositionEmbedding ", name, ": offset ", offset, " is outside the table of ",
              max_positions, " positions");
    table_ = Embedding<B, T>(ps, name, max_positions, dim, init_std);
  }

  const Param<B, T>& weight() const { return table_.weight(); }
  index_t max_positions() const { return max_positions_; }
  index_t offset() const { return offset_; }

  // x, y: (B, T, C), y may alias x. Adds P[offset + t] at position t of every row.
  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    check(x, y);
    PLM_CHECK(offset_ + x.dim(1) <= max_positions_, "PositionEmbedding ", name_, ": ", x.dim(1), " positions",
              offset_ ? " from " + std::to_string(offset_) : std::string(), " exceed the table's ", max_positions_,
              " (max_position_embeddings)");
    c.positions = {};
    ops<B>::add_row(flat(x), slice(x.dim(1)), flat(y));
  }

  // positions: (B, T) table rows; x, y: (B, T, C), y may alias x.
  void forward(ConstView<B, std::int32_t> positions, ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    check(x, y);
    PLM_CHECK(positions.shape() == Shape({x.dim(0), x.dim(1)}), "PositionEmbedding ", name_, ": position ids ", positions.shape(),
              " must be (B, T) = ", Shape({x.dim(0), x.dim(1)}));
    c.positions = positions;
    c.rows.resize(x.shape());
    table_.forward(positions, c.rows.view());
    ops<B>::add(x, c.rows.cview(), y);
  }

  // dy: (B, T, C), the gradient of y (x's gradient is dy itself). Adds into the table's gradient.
  void backward(ConstView<B, T> dy, const Cache& c) const {
    if (!c.positions.empty()) {
      table_.backward(c.positions, dy);
      return;
    }
    const index_t Tn = dy.dim(1);
    ops<B>::sum_rows(flat(dy), TensorView<B, T>(weight().grad().data() + offset_ * dim_, Shape{Tn * dim_}), T(1));
  }

 private:
  void check(ConstView<B, T> x, ConstView<B, T> y) const {
    PLM_CHECK(x.rank() == 3 && x.dim(2) == dim_, "PositionEmbedding ", name_, ": x ", x.shape(), " must be (B, T, ", dim_, ")");
    PLM_CHECK(y.shape() == x.shape(), "PositionEmbedding ", name_, ": y ", y.shape(), " must match x ", x.shape());
  }
  // (B, T, C) as (B, T*C): a batch row against the T*C values of the table slice.
  template <class V>
  static auto flat(const V& v) {
    return v.reshape(Shape{v.dim(0), v.numel() / (v.dim(0) == 0 ? 1 : v.dim(0))});
  }
  ConstView<B, T> slice(index_t Tn) const { return ConstView<B, T>(weight().value().data() + offset_ * dim_, Shape{Tn * dim_}); }

  Embedding<B, T> table_;
  std::string name_;
  index_t max_positions_ = 0, dim_ = 0, offset_ = 0;
};

}  // namespace plm::nn
