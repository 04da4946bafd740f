#pragma once
// Shape: up to four dimensions, row-major. Value type, cheap to copy.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <string>

#include "plm/core/error.hpp"

namespace plm {

using index_t = std::int64_t;

class Shape {
 public:
  static constexpr int max_rank = 4;

  Shape() = default;
  Shape(std::initializer_list<index_t> dims) {
    PLM_CHECK(dims.size() <= max_rank, "Shape: rank ", dims.size(), " exceeds the maximum of ", max_rank);
    for (index_t d : dims) {
      PLM_CHECK(d >= 0, "Shape: negative dimension ", d);
      dims_[rank_++] = d;
    }
    // numel() and rows() multiply dimensions: their product (of the non-zero ones,
    // which bounds both) must fit in index_t.
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) {
      if (dims_[i] == 0) continue;
      PLM_CHECK(n <= std::numeric_limits<index_t>::max() / dims_[i], "Shape: ", *this,
                " has more than 2^63 - 1 elements (the product of its dimensions overflows)");
      n *= dims_[i];
    }
  }

  int rank() const { return rank_; }
  index_t operator[](int i) const {
    PLM_CHECK(i >= -rank_ && i < rank_, "Shape: dimension ", i, " out of range for ", *this);
    return dims_[i < 0 ? i + rank_ : i];
  }
  index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  // Product of all dimensions but the last (rows of the matrix view).
  index_t rows() const {
    index_t n = 1;
    for (int i = 0; i + 1 < rank_; ++i) n *= dims_[i];
    return n;
  }
  index_t cols() const { return rank_ == 0 ? 1 : dims_[rank_ - 1]; }

  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[i] != o.dims_[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
    return s + (rank_ == 1 ? ",)" : ")");
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  std::array<index_t, max_rank> dims_{};
  int rank_ = 0;
};

}  // namespace plm
