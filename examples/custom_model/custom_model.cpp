// custom_model: extending plm from a downstream project, without touching its headers.
//
// 1. Compile-time policies other than Ankh's: plain (ungated) relu feed-forward
//    and layer norm, with T5's relative position buckets.
// 2. A user-written layer, LayerScaleEncoderLayer, that wraps plm's encoder
//    layer and learns a per-channel scale of its residual update (LayerScale,
//    Touvron et al. 2021), plugged into plm's EncoderStack.
// 3. A sequence classifier on top (mean pooling + linear head), trained for a
//    few steps with plm's fused cross-entropy on a toy task: is a random
//    protein's net charge (K + R - D - E) positive?
// The new layer's gradient is checked by finite differences in tests/test_nn.cpp
// style before training, the way every plm layer is.
//
//   custom_model [--steps N] [--seed S]
#include <plm/nn/t5.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/plm.hpp>
#include <plm/testing/gradient_check.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace plm;
using namespace plm::nn;

using MyPolicies = ModelPolicies<Relu, Plain, LayerNormPolicy, RelativeBuckets>;

// y = x + scale * (EncoderLayer(x) - x): the wrapped layer's residual update, scaled per channel.
template <class B, class T>
class LayerScaleEncoderLayer {
  using Inner = EncoderLayer<B, T, MyPolicies>;

 public:
  struct Cache {
    typename Inner::Cache inner;
    Tensor<B, T> y_inner, update, d_update, d_inner;
  };

  LayerScaleEncoderLayer(ParameterSet<B, T>& ps, const std::string& prefix, const T5Config& c)
      : inner_(ps, prefix, c), scale_(add_param(ps, prefix + ".layer_scale", Shape{c.d_model}, 0.0, 0.1)) {}

  void forward(ConstView<B, T> x, const SoftmaxMask<B, T>& mask, TensorView<B, T> y, Cache& c, DropoutKey key = {}) const {
    c.y_inner.resize(x.shape());
    c.update.resize(x.shape());
    inner_.forward(x, mask, c.y_inner.view(), c.inner, key);
    ops<B>::sub(c.y_inner.cview(), x, c.update.view());                                    // u = f(x) - x
    ops<B>::mul_row(c.update.cview(), ConstView<B, T>(scale_.value()), y);                // s * u
    ops<B>::add(ConstView<B, T>(y), x, y);                                                // x + s * u
  }

  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, TensorView<B, T> dbias, Cache& c,
                ConstView<B, T> d_probs_extra = {}) const {
    c.d_update.resize(x.shape());
    c.d_inner.resize(x.shape());
    // d scale += sum over rows of dy * u
    ops<B>::mul(dy, c.update.cview(), c.d_update.view());
    ops<B>::sum_rows(c.d_update.cview(), scale_.grad(), T(1));
    // du = dy * s; dy reaches f(x) as du and x as dy - du
    ops<B>::mul_row(dy, ConstView<B, T>(scale_.value()), c.d_update.view());
    inner_.backward(x, c.d_update.cview(), c.d_inner.view(), dbias, c.inner, d_probs_extra);
    ops<B>::sub(dy, c.d_update.cview(), dx);
    ops<B>::add(ConstView<B, T>(dx), c.d_inner.cview(), dx);
  }

 private:
  Inner inner_;
  Param<B, T> scale_;
};

// Embedding -> encoder stack of user layers -> mean over valid tokens -> linear head.
template <class B, class T>
class ChargeClassifier {
  using Stack = EncoderStack<B, T, MyPolicies, LayerScaleEncoderLayer<B, T>>;

 public:
  struct Cache {
    typename Stack::Cache stack;
    Tensor<B, T> x, h, pooled, dpooled, dh, dx, pool_w;
  };

  ChargeClassifier(const T5Config& c, std::uint64_t seed) : c_(c) {
    embed_ = Embedding<B, T>(ps_, "shared", c.vocab_size, c.d_model, 1.0);
    stack_ = Stack(ps_, "encoder", c);
    head_ = Linear<B, T>(ps_, "classifier", c.d_model, 2, 1.0 / std::sqrt(double(c.d_model)));
    ps_.allocate();
    ps_.init(seed);
  }
  ParameterSet<B, T>& params() { return ps_; }

  // ids (N, L) -> logits (N, 2). Pooling weights: 1/len on valid tokens (a (N, 1, L) row per sequence).
  void forward(ConstView<B, std::int32_t> ids, ConstView<B, std::uint8_t> valid, TensorView<B, T> logits, Cache& k) const {
    const index_t N = ids.dim(0), L = ids.dim(1), C = c_.d_model;
    k.x.resize(Shape{N, L, C});
    k.h.resize(Shape{N, L, C});
    k.pooled.resize(Shape{N, 1, C});
    k.pool_w.resize(Shape{N, 1, L});
    for (index_t n = 0; n < N; ++n) {
      index_t len = 0;
      for (index_t t = 0; t < L; ++t) len += valid.data()[n * L + t];
      for (index_t t = 0; t < L; ++t) k.pool_w.data()[n * L + t] = valid.data()[n * L + t] ? T(1) / T(len) : T(0);
    }
    embed_.forward(ids, k.x.view());
    stack_.forward(k.x.cview(), valid, k.h.view(), k.stack);
    ops<B>::matmul(k.pool_w.cview(), false, k.h.cview(), false, k.pooled.view());  // (N,1,L) x (N,L,C)
    head_.forward(k.pooled.cview(), logits.reshape(Shape{N, 1, 2}));
  }

  void backward(ConstView<B, std::int32_t> ids, ConstView<B, T> dlogits, Cache& k) const {
    const index_t N = ids.dim(0);
    k.dpooled.resize(k.pooled.shape());
    k.dh.resize(k.h.shape());
    k.dx.resize(k.x.shape());
    head_.backward(k.pooled.cview(), dlogits.reshape(Shape{N, 1, 2}), k.dpooled.view());
    ops<B>::matmul(k.pool_w.cview(), true, k.dpooled.cview(), false, k.dh.view());  // (N,L,1) x (N,1,C)
    stack_.backward(k.dh.cview(), k.dx.view(), k.stack);
    embed_.backward(ids, k.dx.cview());
  }

 private:
  T5Config c_;
  ParameterSet<B, T> ps_;
  Embedding<B, T> embed_;
  Stack stack_;
  Linear<B, T> head_;
};

namespace {
// Random proteins over the 20 residues (ids 3..22 as in the Ankh tokenizer) and their charge labels.
struct Batch {
  Tensor<cpu, std::int32_t> ids, labels;
  Tensor<cpu, std::uint8_t> valid;
};
Batch make_batch(index_t n, index_t max_len, Philox& rng) {
  const char* residues = "ALGVSREDTIPKFQNYMHWC";  // Ankh ids 3..22 in this order
  Batch b;
  b.ids.resize(Shape{n, max_len});
  b.valid.resize(Shape{n, max_len});
  b.labels.resize(Shape{n});
  for (index_t i = 0; i < n; ++i) {
    const index_t len = max_len / 2 + rng.below(static_cast<std::uint32_t>(max_len / 2 + 1));
    int charge = 0;
    for (index_t t = 0; t < max_len; ++t) {
      const bool real = t < len;
      const std::uint32_t r = rng.below(20);
      b.ids.at(i, t) = real ? static_cast<std::int32_t>(3 + r) : 0;
      b.valid.at(i, t) = real;
      if (real) charge += (residues[r] == 'K' || residues[r] == 'R') - (residues[r] == 'D' || residues[r] == 'E');
    }
    b.labels.at(i) = charge > 0;
  }
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  int steps = 150;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: %s [--steps N] [--seed S]\n", argv[0]);
      return 2;
    }
  }
  try {
    T5Config c = T5Config::ankh3_tiny();
    c.vocab_size = 23, c.feed_forward_proj = "relu";  // must match MyPolicies (plain relu)
    c.d_model = 32, c.d_ff = 64, c.num_layers = 2, c.num_decoder_layers = 0;

    // 1. gradient check of the user-written layer stack in double precision
    {
      T5Config g = c;
      g.d_model = 8, g.d_kv = 4, g.num_heads = 2, g.d_ff = 8, g.num_layers = 1;
      ChargeClassifier<cpu, double> m(g, seed);
      testing::fill_uniform<double>(m.params().values(), seed, 9, -0.5, 0.5);
      Philox rng(seed, 3);
      Batch b = make_batch(3, 6, rng);
      Tensor<cpu, double> logits(Shape{3, 2}), dl(Shape{3, 2});
      ChargeClassifier<cpu, double>::Cache k;
      objectives::CrossEntropy<cpu, double> ce;
      auto loss = [&] {
        m.forward(b.ids, b.valid, logits, k);
        return ce(logits, b.labels).loss;
      };
      m.params().zero_grad();
      m.forward(b.ids, b.valid, logits, k);
      ce(logits, b.labels, dl);
      m.backward(b.ids, dl, k);
      const auto r = testing::check_gradient(m.params().values(), m.params().grads(), loss);
      std::printf("gradient check of the custom model (%lld parameters): %s\n", static_cast<long long>(m.params().numel()),
                  r.ok() ? "ok" : r.report("FAILED").c_str());
      if (!r.ok()) return 1;
    }

    // 2. a few training steps in float with plain SGD + momentum
    ChargeClassifier<cpu, float> model(c, seed);
    auto& ps = model.params();
    Tensor<cpu, float> velocity(Shape{ps.numel()}), logits(Shape{64, 2}), dl(Shape{64, 2});
    ops<cpu>::fill(velocity, 0.f);
    ChargeClassifier<cpu, float>::Cache k;
    objectives::CrossEntropy<cpu, float> ce;
    Philox rng(seed, 1), eval_rng(seed, 2);
    const Batch eval = make_batch(64, 24, eval_rng);
    auto evaluate = [&] {
      model.forward(eval.ids, eval.valid, logits, k);
      return ce(logits, eval.labels);
    };
    const auto before = evaluate();
    std::printf("held-out before training: loss %.3f accuracy %.3f\n", before.loss, before.accuracy());
    for (int s = 1; s <= steps; ++s) {
      const Batch b = make_batch(64, 24, rng);
      ps.zero_grad();
      model.forward(b.ids, b.valid, logits, k);
      const auto r = ce(logits, b.labels, dl);
      model.backward(b.ids, dl, k);
      ops<cpu>::scale(ConstView<cpu, float>(velocity), 0.9f, velocity);
      ops<cpu>::axpy(1.f, ps.grads(), velocity);
      ops<cpu>::axpy(-0.05f, ConstView<cpu, float>(velocity), ps.values());
      if (s % 25 == 0) std::printf("step %4d  train loss %.3f  accuracy %.3f\n", s, r.loss, r.accuracy());
    }
    const auto after = evaluate();
    std::printf("held-out after %d steps: loss %.3f accuracy %.3f\n", steps, after.loss, after.accuracy());
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
