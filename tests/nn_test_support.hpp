#pragma once
// What the layer and model gradient tests share (test_nn.cpp, test_packing.cpp):
// random parameters, a small T5 config, and one finite-difference check of every
// parameter and listed input.
#include <string>
#include <utility>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/nn/config.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::test {

// Every parameter of ps from U(-0.8, 0.8), keyed by seed.
inline void randomize(nn::ParameterSet<cpu, double>& ps, std::uint64_t seed) {
  testing::fill_uniform<double>(ps.values(), seed, 77, -0.8, 0.8);
}

// Checks every parameter of ps and each listed (input, its gradient) against
// central differences. loss() runs the forward and returns the scalar; grads()
// zeroes the parameter gradients, runs forward + backward and fills the input gradients.
template <class Loss, class Grads>
void check_all(nn::ParameterSet<cpu, double>& ps, Loss&& loss, Grads&& grads,
               std::vector<std::pair<Tensor<cpu, double>*, Tensor<cpu, double>*>> inputs, const std::string& what) {
  grads();
  expect_ok(testing::check_gradient(ps.values(), ps.grads(), loss), what + ": parameters");
  for (std::size_t i = 0; i < inputs.size(); ++i)
    expect_ok(testing::check_gradient(*inputs[i].first, *inputs[i].second, loss), what + ": input " + std::to_string(i));
}

// A T5 / Ankh3 config small enough for finite differences over every parameter.
inline nn::T5Config grad_config() {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.vocab_size = 11, c.d_model = 8, c.d_kv = 4, c.num_heads = 2, c.d_ff = 12;
  c.num_layers = 2, c.num_decoder_layers = 2;
  c.relative_attention_num_buckets = 6, c.relative_attention_max_distance = 8;
  return c;
}

}  // namespace plm::test
