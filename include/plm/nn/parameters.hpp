#pragma once
// ParameterSet: every parameter of a model in one flat buffer, and every
// gradient in a second one of the same layout, as named views.
//
// Optimizers, gradient clipping, checkpoints and (later) gradient all-reduce
// work on the two flat buffers; layers reach their own tensors through Param
// handles. Names follow Hugging Face (`encoder.block.0.layer.0.SelfAttention.q.weight`)
// so checkpoints map one to one.
//
// Two phases: layers add() their parameters while the model is built, then the
// owner calls allocate() once. Param handles stay valid for the set's lifetime
// (the set must not move: models hold it by unique_ptr, or by reference when
// a caller puts a backbone and its heads into one set, so that one optimizer,
// one clip and one checkpoint cover them all). A model records the ids it
// registered as a ParamRange, so its own weights can be loaded or saved alone.
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "plm/backend/tags.hpp"
#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/tensor.hpp"

namespace plm::nn {

// Tag for a model whose parameters will be filled from a checkpoint: allocated
// (zero) but not drawn, so loading does not first spend the time of a random init.
struct Uninitialized {};
inline constexpr Uninitialized uninitialized{};

// Constructor tag: a model without its language-model head (e.g. ESM's LM and
// contact heads), the backbone of a downstream head (fine-tuning, negative
// mining), whose optimizer should not carry parameters no loss reaches.
struct EncoderOnly {};
inline constexpr EncoderOnly encoder_only{};

// The parameters [begin, end) of a set, in registration order.
struct ParamRange {
  index_t begin = 0, end = 0;
  index_t size() const { return end - begin; }
  bool contains(index_t id) const { return id >= begin && id < end; }
};

template <class B, class T>
class ParameterSet {
 public:
  using backend_type = B;
  using value_type = T;
  struct Entry {
    std::string name;
    Shape shape;
    index_t offset = 0;
    double init_std = 0;  // N(0, init_std^2) at init(); 0 with init_value for constants
    double init_value = 0;
  };

  ParameterSet() = default;
  ParameterSet(const ParameterSet&) = delete;
  ParameterSet& operator=(const ParameterSet&) = delete;

  // Registers a parameter initialised from N(0, std^2), or to `value` when std == 0.
  index_t add(const std::string& name, Shape shape, double init_std, double init_value = 0) {
    PLM_CHECK(!allocated(), "ParameterSet: cannot add '", name, "' after allocate()");
    PLM_CHECK(index_.count(name) == 0, "ParameterSet: duplicate parameter name '", name, "'");
    entries_.push_back(Entry{name, shape, total_, init_std, init_value});
    index_[name] = static_cast<index_t>(entries_.size() - 1);
    total_ += shape.numel();
    return static_cast<index_t>(entries_.size() - 1);
  }

  // The gradient buffer is allocated (zeroed) on first use: a model that only
  // runs forward (embedding, generation, a checkpoint being loaded) holds one
  // copy of its parameters, not two.
  void allocate() {
    PLM_CHECK(!allocated(), "ParameterSet: allocate() called twice");
    values_.resize(Shape{total_});
    ops<B>::fill(values_.view(), T(0));
    allocated_ = true;
  }
  bool allocated() const { return allocated_; }

  // Draws every parameter from its registered distribution. Each parameter has
  // its own Philox stream (its index), so one tensor's values do not depend on
  // the sizes of the others.
  void init(std::uint64_t seed) {
    check_allocated("init");
    std::vector<T> host;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      host.assign(static_cast<std::size_t>(e.shape.numel()), static_cast<T>(e.init_value));
      if (e.init_std > 0) {
        Philox rng(seed, i);
        for (T& v : host) v = static_cast<T>(e.init_std * rng.normal());
      }
      upload(host.data(), value(static_cast<index_t>(i)));
    }
  }

  void zero_grad() {
    check_allocated("zero_grad");
    ops<B>::fill(gradient_buffer().view(), T(0));
  }

  index_t size() const { return static_cast<index_t>(entries_.size()); }
  ParamRange all() const { return ParamRange{0, size()}; }
  index_t numel() const { return total_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const Entry& entry(index_t id) const { return entries_.at(static_cast<std::size_t>(id)); }
  // -1 when absent.
  index_t find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? -1 : it->second;
  }
  index_t id(const std::string& name) const {
    const index_t i = find(name);
    PLM_CHECK(i >= 0, "ParameterSet: no parameter named '", name, "'");
    return i;
  }

  TensorView<B, T> value(index_t id) const { return slice(values_, id, "value"); }
  TensorView<B, T> grad(index_t id) const { return slice(gradient_buffer(), id, "grad"); }
  TensorView<B, T> value(const std::string& name) const { return value(id(name)); }
  TensorView<B, T> grad(const std::string& name) const { return grad(id(name)); }
  // The flat buffers.
  TensorView<B, T> values() const { return values_.view(); }
  TensorView<B, T> grads() const { return gradient_buffer().view(); }
  // Whether the gradient buffer exists yet (it is made by the first grad(), grads() or zero_grad()).
  bool has_gradients() const { return grads_allocated_; }

 private:
  void check_allocated(const char* what) const {
    PLM_CHECK(allocated(), "ParameterSet: ", what, " before allocate()");
  }
  TensorView<B, T> slice(const Tensor<B, T>& buf, index_t id, const char* what) const {
    check_allocated(what);
    PLM_CHECK(id >= 0 && id < size(), "ParameterSet: parameter id ", id, " out of range (", size(), " parameters)");
    const Entry& e = entries_[static_cast<std::size_t>(id)];
    return TensorView<B, T>(buf.data() + e.offset, e.shape);
  }

  const Tensor<B, T>& gradient_buffer() const {
    check_allocated("grad");
    if (!grads_allocated_) {
      grads_.resize(Shape{total_});
      ops<B>::fill(grads_.view(), T(0));
      grads_allocated_ = true;
    }
    return grads_;
  }

  std::vector<Entry> entries_;
  std::map<std::string, index_t> index_;
  index_t total_ = 0;
  Tensor<B, T> values_;
  mutable Tensor<B, T> grads_;  // made on first use (gradient_buffer)
  mutable bool grads_allocated_ = false;
  bool allocated_ = false;
};

// A layer's handle on one parameter of a set.
template <class B, class T>
struct Param {
  const ParameterSet<B, T>* set = nullptr;
  index_t id = -1;
  bool valid() const { return set != nullptr; }
  TensorView<B, T> value() const { return set->value(id); }
  TensorView<B, T> grad() const { return set->grad(id); }
  const std::string& name() const { return set->entry(id).name; }
};

template <class B, class T>
Param<B, T> add_param(ParameterSet<B, T>& ps, const std::string& name, Shape shape, double init_std, double init_value = 0) {
  return Param<B, T>{&ps, ps.add(name, shape, init_std, init_value)};
}

// An encoder registered into a caller's set, without a language-model head
// where the model type offers that (EsmModel); a T5 config says so itself
// (num_decoder_layers = 0). For models that hold an encoder next to a head.
template <class Encoder, class B, class T, class Config>
Encoder make_encoder_in(ParameterSet<B, T>& ps, const Config& c) {
  if constexpr (std::is_constructible_v<Encoder, ParameterSet<B, T>&, const Config&, EncoderOnly>)
    return Encoder(ps, c, encoder_only);
  else
    return Encoder(ps, c);
}

}  // namespace plm::nn
