#pragma once
// Compile-time structural policies of a transformer: activation, gating, norm,
// position scheme. They change the generated code, so they are template
// arguments; sizes stay runtime values in the config.
#include <string>

#include "plm/backend/activation_kind.hpp"
#include "plm/backend/ops.hpp"
#include "plm/nn/norm.hpp"

namespace plm::nn {

// --- activations: forward(x, y), backward(x, dy, dx); kind for the fused gated op ---
struct GeluTanh {  // Hugging Face "gelu_new"
  static constexpr const char* name = "gelu_new";
  static constexpr const char* short_name = "gelu";
  static constexpr Activation kind = Activation::gelu;
  template <class B, class T> static void forward(ConstView<B, T> x, TensorView<B, T> y) { ops<B>::gelu(x, y); }
  template <class B, class T> static void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx) { ops<B>::gelu_backward(x, dy, dx); }
};
struct GeluErf {  // the exact GELU: Hugging Face "gelu", ESM's and BERT's
  static constexpr const char* name = "gelu";
  static constexpr const char* short_name = "gelu_erf";
  static constexpr Activation kind = Activation::gelu_erf;
  template <class B, class T> static void forward(ConstView<B, T> x, TensorView<B, T> y) { ops<B>::gelu_erf(x, y); }
  template <class B, class T> static void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx) { ops<B>::gelu_erf_backward(x, dy, dx); }
};
struct Silu {
  static constexpr const char* name = "silu";
  static constexpr const char* short_name = "silu";
  static constexpr Activation kind = Activation::silu;
  template <class B, class T> static void forward(ConstView<B, T> x, TensorView<B, T> y) { ops<B>::silu(x, y); }
  template <class B, class T> static void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx) { ops<B>::silu_backward(x, dy, dx); }
};
struct Relu {
  static constexpr const char* name = "relu";
  static constexpr const char* short_name = "relu";
  static constexpr Activation kind = Activation::relu;
  template <class B, class T> static void forward(ConstView<B, T> x, TensorView<B, T> y) { ops<B>::relu(x, y); }
  template <class B, class T> static void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx) { ops<B>::relu_backward(x, dy, dx); }
};

// --- gating of the feed-forward block ---
struct Gated {  // act(x Wi0) * (x Wi1), T5 v1.1
  static constexpr bool gated = true;
};
struct Plain {  // act(x Wi)
  static constexpr bool gated = false;
};

// --- norms ---
struct RMSNormPolicy {
  template <class B, class T> using type = RMSNorm<B, T>;
};
struct LayerNormPolicy {
  template <class B, class T> using type = LayerNorm<B, T>;
};

// --- position scheme ---
struct RelativeBuckets {  // T5: learned bias per (bucket, head), shared by a stack
  static constexpr bool relative_bias = true;
};
struct NoPositions {  // no position information inside attention
  static constexpr bool relative_bias = false;
};
struct Rotary {  // ESM-2: q and k turned by position inside every attention (AttentionShape::rotary_base)
  static constexpr bool relative_bias = false;
};

// The Hugging Face `feed_forward_proj` string that names an activation + gating
// pair, as transformers maps it back: "gated-gelu" is the tanh GELU (its
// historical exception), while a plain "gelu" is the exact erf GELU, so the
// tanh one ungated is "gelu_new".
template <class Act, class Gate>
std::string feed_forward_proj_name() {
  if (Gate::gated) return std::string("gated-") + Act::short_name;
  return Act::name;
}

// Policies bundled for a model type.
template <class Act, class Gate = Gated, class Norm = RMSNormPolicy, class Pos = RelativeBuckets>
struct ModelPolicies {
  using activation = Act;
  using gating = Gate;
  using norm = Norm;
  using position = Pos;
};

}  // namespace plm::nn
