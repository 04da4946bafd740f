#pragma once
// The activations a fused op can apply (ops<B>::gated, gated_backward).
namespace plm {

enum class Activation {
  gelu,      // tanh approximation (Hugging Face "gelu_new")
  gelu_erf,  // exact (Hugging Face "gelu")
  silu,
  relu,
};

}  // namespace plm
