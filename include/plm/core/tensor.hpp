#pragma once
// Tensor<Backend, T>: owning, contiguous, row-major, rank 0..4.
// TensorView<Backend, T>: a non-owning (pointer, shape) pair over the same layout.
//
// Views are cheap values. TensorView<B, T> derives from TensorView<B, const T>, so
// a function declared as f(TensorView<B, const T>) deduces T from a mutable view
// or a Tensor without casts. A Tensor is a view of its own storage. As with
// std::span, constness of a view is shallow.
//
// Memory comes from plm::memory<Backend>, which each backend specializes
// (backend/cpu/memory.hpp; the CUDA backend adds its own).
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"
#include "plm/core/shape.hpp"

namespace plm {

// Specialized by each backend: allocate(bytes) / deallocate(ptr) / copy(dst, src, bytes).
template <class Backend> struct memory;

namespace detail {
template <class T, class = void> struct is_complete : std::false_type {};
template <class T> struct is_complete<T, std::void_t<decltype(sizeof(T))>> : std::true_type {};
}  // namespace detail

template <class B, class T> class TensorView;

// Read-only view.
template <class B, class T>
class TensorView<B, const T> {
 public:
  using backend = B;
  using value_type = T;

  TensorView() = default;
  TensorView(const T* data, Shape shape) : data_(const_cast<T*>(data)), shape_(shape) {}

  const T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index_t dim(int i) const { return shape_[i]; }
  index_t numel() const { return shape_.numel(); }
  // A default-constructed view stands for "absent" in optional arguments.
  bool empty() const { return data_ == nullptr; }

  TensorView<B, const T> reshape(Shape s) const {
    check_reshape(s);
    return {data_, s};
  }
  // Rows [begin, end) of the leading dimension.
  TensorView<B, const T> slice(index_t begin, index_t end) const { return {data_ + slice_offset(begin, end), sliced(begin, end)}; }
  // Entry i of the leading dimension, one rank lower.
  TensorView<B, const T> operator[](index_t i) const { return {data_ + select_offset(i), selected()}; }

  // Element access, host memory only.
  template <class... I>
  const T& at(I... idx) const {
    static_assert(std::is_same_v<B, typename B::host_tag>, "plm: at() reads host memory; copy a device tensor to plm::cpu first");
    return data_[offset_of(idx...)];
  }

 protected:
  void check_reshape(const Shape& s) const {
    PLM_CHECK(s.numel() == shape_.numel(), "reshape: ", shape_, " has ", shape_.numel(), " elements, ", s, " needs ", s.numel());
  }
  index_t row_size() const { return shape_.rank() == 0 ? 1 : shape_.numel() / (shape_[0] == 0 ? 1 : shape_[0]); }
  index_t slice_offset(index_t b, index_t e) const {
    PLM_CHECK(shape_.rank() >= 1, "slice: cannot slice a rank-0 tensor");
    PLM_CHECK(0 <= b && b <= e && e <= shape_[0], "slice: rows [", b, ", ", e, ") out of range for ", shape_);
    return b * row_size();
  }
  Shape sliced(index_t b, index_t e) const {
    Shape s = shape_;
    return replace_dim0(s, e - b);
  }
  index_t select_offset(index_t i) const {
    PLM_CHECK(shape_.rank() >= 1, "index: cannot index a rank-0 tensor");
    PLM_CHECK(0 <= i && i < shape_[0], "index: ", i, " out of range for ", shape_);
    return i * row_size();
  }
  Shape selected() const {
    switch (shape_.rank()) {
      case 1: return Shape{};
      case 2: return Shape{shape_[1]};
      case 3: return Shape{shape_[1], shape_[2]};
      default: return Shape{shape_[1], shape_[2], shape_[3]};
    }
  }
  static Shape replace_dim0(const Shape& s, index_t n) {
    switch (s.rank()) {
      case 1: return Shape{n};
      case 2: return Shape{n, s[1]};
      case 3: return Shape{n, s[1], s[2]};
      default: return Shape{n, s[1], s[2], s[3]};
    }
  }
  template <class... I>
  index_t offset_of(I... idx) const {
    PLM_CHECK(static_cast<int>(sizeof...(I)) == shape_.rank(), "at: ", sizeof...(I), " indices for a tensor of shape ", shape_);
    const index_t ids[] = {static_cast<index_t>(idx)..., 0};
    index_t off = 0;
    for (int d = 0; d < shape_.rank(); ++d) {
      PLM_CHECK(0 <= ids[d] && ids[d] < shape_[d], "at: index ", ids[d], " out of range in dimension ", d, " of ", shape_);
      off = off * shape_[d] + ids[d];
    }
    return off;
  }

  T* data_ = nullptr;
  Shape shape_;
};

// Mutable view.
template <class B, class T>
class TensorView : public TensorView<B, const T> {
  using Base = TensorView<B, const T>;

 public:
  TensorView() = default;
  TensorView(T* data, Shape shape) : Base(data, shape) {}

  T* data() const { return this->data_; }
  TensorView reshape(Shape s) const {
    this->check_reshape(s);
    return {this->data_, s};
  }
  TensorView slice(index_t begin, index_t end) const { return {this->data_ + this->slice_offset(begin, end), this->sliced(begin, end)}; }
  TensorView operator[](index_t i) const { return {this->data_ + this->select_offset(i), this->selected()}; }
  template <class... I>
  T& at(I... idx) const {
    static_assert(std::is_same_v<B, typename B::host_tag>, "plm: at() reads host memory; copy a device tensor to plm::cpu first");
    return this->data_[this->offset_of(idx...)];
  }
};

template <class B, class T> using ConstView = TensorView<B, const T>;

// Owning tensor. Move-only: copies are explicit (clone()).
template <class B, class T>
class Tensor : public TensorView<B, T> {
  static_assert(!std::is_const_v<T>, "plm: Tensor owns mutable storage; use ConstView for read-only access");
  static_assert(std::is_trivially_copyable_v<T>, "plm: Tensor elements must be trivially copyable");
  static_assert(detail::is_complete<memory<B>>::value,
                "plm: no memory for this backend; use plm::cpu, or include plm/cuda.hpp for plm::cuda");

 public:
  Tensor() = default;
  explicit Tensor(Shape shape) { resize(shape); }
  Tensor(Tensor&& o) noexcept { swap(o); }
  Tensor& operator=(Tensor&& o) noexcept {
    Tensor tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() { release(); }

  // Changes the shape, reallocating only when the new size exceeds the capacity,
  // so a workspace sized once is reused across steps. Contents are unspecified
  // after a resize that grows.
  void resize(Shape shape) {
    const index_t n = shape.numel();
    if (n > capacity_) {
      release();
      if (n > 0) this->data_ = static_cast<T*>(memory<B>::allocate(static_cast<std::size_t>(n) * sizeof(T)));
      capacity_ = n;
    }
    this->shape_ = shape;
  }
  index_t capacity() const { return capacity_; }

  Tensor clone() const {
    Tensor t(this->shape_);
    if (this->numel() > 0) memory<B>::copy(t.data(), this->data_, static_cast<std::size_t>(this->numel()) * sizeof(T));
    return t;
  }
  TensorView<B, T> view() const { return *this; }
  ConstView<B, T> cview() const { return *this; }

 private:
  void release() {
    if (this->data_) memory<B>::deallocate(this->data_);
    this->data_ = nullptr;
    capacity_ = 0;
  }
  void swap(Tensor& o) noexcept {
    std::swap(this->data_, o.data_);
    std::swap(this->shape_, o.shape_);
    std::swap(capacity_, o.capacity_);
  }
  index_t capacity_ = 0;
};

// Host <-> backend transfers (plain copies on plm::cpu).
template <class B, class T>
void upload(const T* host, TensorView<B, T> dst) {
  if (dst.numel() > 0) memory<B>::copy_from_host(dst.data(), host, static_cast<std::size_t>(dst.numel()) * sizeof(T));
}
template <class B, class T>
void download(TensorView<B, const T> src, T* host) {
  if (src.numel() > 0) memory<B>::copy_to_host(host, src.data(), static_cast<std::size_t>(src.numel()) * sizeof(T));
}

}  // namespace plm
