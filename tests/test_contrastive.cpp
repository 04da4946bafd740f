// Negative mining: objectives/attention_contrastive.hpp (the released
// formulation by hand, zero at uniform attention, finite differences of every
// variant with padding, the extra probability gradient through an attention
// layer) and the layers around them (mean pooling, readout head, the
// negative-mining pair attention), each checked by finite differences in double.
#include "ops_test_support.hpp"
#include "plm/nn/attention.hpp"
#include "plm/nn/pair_attention.hpp"
#include "plm/nn/pooling.hpp"
#include "plm/nn/readout.hpp"
#include "plm/objectives/attention_contrastive.hpp"
#include "plm/objectives/regression.hpp"

using namespace plm;
using namespace plm::objectives;
using namespace plm::test;

namespace {
// Attention rows from random logits, softmax over each pair's valid keys (0 on padded keys).
Tensor<cpu, double> random_probs(index_t N, index_t H, index_t Lq, index_t Lk, const std::vector<std::uint8_t>& kv, std::uint64_t stream) {
  auto t = random_tensor<double>(Shape{N, H, Lq, Lk}, stream, -2, 2);
  for (index_t n = 0; n < N; ++n)
    for (index_t r = 0; r < H * Lq; ++r) {
      double* row = t.data() + (n * H * Lq + r) * Lk;
      double z = 0;
      for (index_t j = 0; j < Lk; ++j) z += kv[static_cast<std::size_t>(n * Lk + j)] ? std::exp(row[j]) : 0.0;
      for (index_t j = 0; j < Lk; ++j) row[j] = kv[static_cast<std::size_t>(n * Lk + j)] ? std::exp(row[j]) / z : 0.0;
    }
  return t;
}
Tensor<cpu, std::uint8_t> mask(index_t N, index_t L, const std::vector<index_t>& lengths) {
  Tensor<cpu, std::uint8_t> m(Shape{N, L});
  for (index_t n = 0; n < N; ++n)
    for (index_t i = 0; i < L; ++i) m.data()[n * L + i] = i < lengths[static_cast<std::size_t>(n)];
  return m;
}
std::vector<std::uint8_t> host(const Tensor<cpu, std::uint8_t>& m) { return {m.data(), m.data() + m.numel()}; }
}  // namespace

TEST_CASE("attention_to_uniform: the released formula by hand, zero at uniform, padding ignored") {
  // One pair, 2 valid queries of 3, 2 valid keys of 3: U = 1/2, norm sqrt(2 * 2) = 2.
  Tensor<cpu, double> p(Shape{1, 1, 3, 3});
  const double v[9] = {0.9, 0.1, 0.0, 0.3, 0.7, 0.0, 0.5, 0.5, 0.0};  // third row is a padded query
  std::copy(v, v + 9, p.data());
  auto q = mask(1, 3, {2}), k = mask(1, 3, {2});
  const double sq = (0.16 + 0.16 + 0.04 + 0.04) / 2;
  CHECK(attention_to_uniform<cpu, double>(p, q, k, UniformDistance::squared) == doctest::Approx(sq).epsilon(1e-14));
  CHECK(attention_to_uniform<cpu, double>(p, q, k, UniformDistance::l1) == doctest::Approx((0.4 + 0.4 + 0.2 + 0.2) / 2).epsilon(1e-14));
  const double kl = (0.9 * std::log(1.8) + 0.1 * std::log(0.2) + 0.3 * std::log(0.6) + 0.7 * std::log(1.4)) / 2;
  CHECK(attention_to_uniform<cpu, double>(p, q, k, UniformDistance::kl) == doctest::Approx(kl).epsilon(1e-14));
  CHECK(attention_to_uniform<cpu, double>(p, q, k, UniformDistance::squared, 0.1) == doctest::Approx(0.1 * sq).epsilon(1e-14));
  const double u[9] = {0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.9};  // uniform over valid keys; padding arbitrary
  std::copy(u, u + 9, p.data());
  for (auto d : {UniformDistance::squared, UniformDistance::l1, UniformDistance::kl})
    CHECK(std::abs(attention_to_uniform<cpu, double>(p, q, k, d)) < 1e-15);
  check_error([&] { attention_to_uniform<cpu, double>(p, mask(1, 3, {0}), k, UniformDistance::squared); },
              "pair 0 has 0 valid queries");
  check_error([&] { attention_to_uniform<cpu, double>(p, mask(1, 2, {2}), k, UniformDistance::squared); }, "q_valid (1, 2)");
}

TEST_CASE("attention_to_uniform: finite differences for every distance, with padding and heads") {
  const index_t N = 3, H = 2, Lq = 5, Lk = 4;
  auto q = mask(N, Lq, {5, 3, 2}), k = mask(N, Lk, {4, 2, 3});
  auto p = random_probs(N, H, Lq, Lk, host(k), 7);
  for (auto d : {UniformDistance::squared, UniformDistance::kl}) {
    Tensor<cpu, double> g(p.shape());
    attention_to_uniform<cpu, double>(p, q, k, d, 0.3, g.view());
    const auto r = testing::check_gradient(p.view(), g.cview(), [&] { return attention_to_uniform<cpu, double>(p, q, k, d, 0.3); });
    expect_ok(r, d == UniformDistance::squared ? "squared" : "kl");
    // padded entries get no gradient
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < H; ++h)
        for (index_t i = 0; i < Lq; ++i)
          for (index_t j = 0; j < Lk; ++j)
            if (!q.data()[n * Lq + i] || !k.data()[n * Lk + j]) CHECK(g.data()[((n * H + h) * Lq + i) * Lk + j] == 0.0);
  }
  // l1 is piecewise linear: random probabilities are never exactly 1/L, so the check holds away from the kinks
  Tensor<cpu, double> g(p.shape());
  attention_to_uniform<cpu, double>(p, q, k, UniformDistance::l1, 1.0, g.view());
  expect_ok(testing::check_gradient(p.view(), g.cview(), [&] { return attention_to_uniform<cpu, double>(p, q, k, UniformDistance::l1); }),
            "l1");
}

TEST_CASE("entropy_hinge: value, inactive pairs, finite differences") {
  const index_t A = 2, N = 4, H = 1, Lq = 4, Lk = 5;
  auto pq = mask(A, Lq, {4, 3}), pk = mask(A, Lk, {5, 4});
  auto nq = mask(N, Lq, {2, 4, 3, 4}), nk = mask(N, Lk, {5, 3, 4, 2});
  auto pos = random_probs(A, H, Lq, Lk, host(pk), 11);
  auto neg = random_probs(N, H, Lq, Lk, host(nk), 12);
  const std::vector<index_t> anchor_of = {0, 0, 1, 1};
  // a margin that leaves some pairs active and some not
  const double margin = 0.3;
  Tensor<cpu, double> gp(pos.shape()), gn(neg.shape());
  auto loss = [&] { return entropy_hinge<cpu, double>(pos, pq, pk, neg, nq, nk, anchor_of, margin, 0.5); };
  const double l = entropy_hinge<cpu, double>(pos, pq, pk, neg, nq, nk, anchor_of, margin, 0.5, gp.view(), gn.view());
  CHECK(l > 0);
  expect_ok(testing::check_gradient(pos.view(), gp.cview(), loss), "entropy hinge, positives");
  expect_ok(testing::check_gradient(neg.view(), gn.cview(), loss), "entropy hinge, negatives");
  // a uniform negative has the largest entropy: with margin 0 and a sharp positive the hinge is 0
  Tensor<cpu, double> sharp(Shape{1, 1, 1, 2}), flat(Shape{1, 1, 1, 2});
  sharp.data()[0] = 0.99, sharp.data()[1] = 0.01, flat.data()[0] = flat.data()[1] = 0.5;
  auto m1 = mask(1, 1, {1}), m2 = mask(1, 2, {2});
  CHECK(entropy_hinge<cpu, double>(sharp, m1, m2, flat, m1, m2, {0}, 0.0) == 0.0);
  CHECK(entropy_hinge<cpu, double>(flat, m1, m2, sharp, m1, m2, {0}, 0.0) > 0.0);
  check_error([&] { entropy_hinge<cpu, double>(sharp, m1, m2, flat, m1, m2, {3}, 0.0); }, "negative 0 names anchor 3 of 1");
}

TEST_CASE("attention_to_uniform through an attention layer: d_probs_extra reaches the inputs (finite differences)") {
  // The negative's residues (queries) attend over the anchor's residues (keys)
  // with one head and no 1/sqrt(d) scaling, as in the released code.
  nn::ParameterSet<cpu, double> ps;
  nn::Attention<cpu, double> attn(ps, "nm", nn::AttentionShape{6, 1, 6, 1.0});
  ps.allocate();
  ps.init(3);
  const index_t N = 2, Lq = 4, Lk = 5;
  auto xq = random_tensor<double>(Shape{N, Lq, 6}, 21), xk = random_tensor<double>(Shape{N, Lk, 6}, 22);
  auto q = mask(N, Lq, {4, 2}), k = mask(N, Lk, {3, 5});
  nn::Attention<cpu, double>::Cache c;
  Tensor<cpu, double> out(xq.shape()), dq(xq.shape()), dk(xk.shape()), dp(Shape{N, 1, Lq, Lk}), zero(xq.shape());
  auto loss = [&] {
    attn.forward(xq, xk, SoftmaxMask<cpu, double>{{}, k.cview(), false}, out.view(), c);
    return attention_to_uniform<cpu, double>(c.probs, q, k, UniformDistance::squared);
  };
  loss();
  attention_to_uniform<cpu, double>(c.probs, q, k, UniformDistance::squared, 1.0, dp.view());
  O::fill<double>(zero.view(), 0.0);
  O::fill<double>(dq.view(), 0.0);
  O::fill<double>(dk.view(), 0.0);
  attn.backward(xq, xk, zero.cview(), dq.view(), dk.view(), TensorView<cpu, double>{}, c, dp.cview());
  expect_ok(testing::check_gradient(xq.view(), dq.cview(), loss), "d loss / d negative states");
  expect_ok(testing::check_gradient(xk.view(), dk.cview(), loss), "d loss / d anchor states");
}

TEST_CASE("MeanPool, ReadoutHead, PairAttention: finite differences with padding") {
  using DT = Tensor<cpu, double>;
  nn::ParameterSet<cpu, double> ps;
  const index_t N = 3, Tq = 4, Tk = 5, d = 6, K = 3;
  nn::PairAttention<cpu, double> nm(ps, "nm", d);
  nn::PairAttention<cpu, double> nm_scaled(ps, "nm_scaled", d, /*scaled=*/true);
  nn::ReadoutHead<cpu, double> head(ps, "head", d, K, 4);
  ps.allocate();
  testing::fill_uniform<double>(ps.values(), 5, 77, -0.8, 0.8);
  auto xq = random_tensor<double>(Shape{N, Tq, d}, 41), xk = random_tensor<double>(Shape{N, Tk, d}, 42);
  auto qv = mask(N, Tq, {4, 2, 3}), kv = mask(N, Tk, {5, 3, 1});
  auto r = random_tensor<double>(Shape{N, K}, 43);
  nn::PairAttention<cpu, double>::Cache c, cs, cself;
  nn::MeanPool<cpu, double>::Cache pc;
  nn::ReadoutHead<cpu, double>::Cache hc;
  DT ctx(xq.shape()), ctx2(xq.shape()), self(xk.shape()), pooled(Shape{N, d}), y(Shape{N, K});
  // loss = <head(mean_pool(cross(xq, xk)) + mean_pool(self(xk))), r> + 0.5 * uniform(cross probs) + 0.2 * uniform(scaled probs)
  auto loss = [&] {
    nm.forward(xq, xk, kv, ctx.view(), c);
    nm_scaled.forward(xq, xk, kv, ctx2.view(), cs);
    nm.forward(xk, xk, kv, self.view(), cself);
    DT p1(Shape{N, d}), p2(Shape{N, d});
    nn::MeanPool<cpu, double>::Cache a, b;
    nn::MeanPool<cpu, double>().forward(ctx, qv, p1.view(), a);
    nn::MeanPool<cpu, double>().forward(self, kv, p2.view(), b);
    O::add<double>(p1, p2, pooled.view());
    head.forward(pooled, y.view(), hc);
    return testing::dot<double>(y, r) + attention_to_uniform<cpu, double>(c.probs, qv, kv, UniformDistance::squared, 0.5) +
           attention_to_uniform<cpu, double>(cs.probs, qv, kv, UniformDistance::kl, 0.2);
  };
  DT dxq(xq.shape()), dxk(xk.shape());
  auto grads = [&] {
    ps.zero_grad();
    loss();
    DT dpooled(Shape{N, d}), dctx(xq.shape()), dself(xk.shape()), dp(c.probs.shape()), dp2(cs.probs.shape()), zero(xq.shape());
    head.backward(pooled, r, dpooled.view(), hc);
    nn::MeanPool<cpu, double>::Cache a, b;
    DT tmp(Shape{N, d});
    nn::MeanPool<cpu, double>().forward(ctx, qv, tmp.view(), a);  // caches of the two pools
    nn::MeanPool<cpu, double>().forward(self, kv, tmp.view(), b);
    nn::MeanPool<cpu, double>().backward(dpooled, dctx.view(), a);
    nn::MeanPool<cpu, double>().backward(dpooled, dself.view(), b);
    attention_to_uniform<cpu, double>(c.probs, qv, kv, UniformDistance::squared, 0.5, dp.view());
    attention_to_uniform<cpu, double>(cs.probs, qv, kv, UniformDistance::kl, 0.2, dp2.view());
    O::fill<double>(dxk.view(), 0.0);
    O::fill<double>(zero.view(), 0.0);
    nm.backward(xk, xk, dself, dxk.view(), dxk.view(), cself);
    DT dxq2(xq.shape());
    nm.backward(xq, xk, dctx, dxq.view(), dxk.view(), c, dp.cview());
    nm_scaled.backward(xq, xk, zero, dxq2.view(), dxk.view(), cs, dp2.cview());
    O::add<double>(dxq, dxq2, dxq.view());
  };
  grads();
  expect_ok(testing::check_gradient(ps.values(), ps.grads(), loss), "negative mining: parameters");
  expect_ok(testing::check_gradient(xq.view(), dxq.cview(), loss), "negative mining: queries");
  expect_ok(testing::check_gradient(xk.view(), dxk.cview(), loss), "negative mining: keys");
  check_error([&] { nn::MeanPool<cpu, double>().forward(ctx, mask(N, Tq, {4, 0, 3}), pooled.view(), pc); },
              "sequence 1 has no valid token");
}

TEST_CASE("regression head: squared error and Huber through ReadoutHead (K = 1 and 2), missing targets skipped") {
  using DT = Tensor<cpu, double>;
  const index_t N = 5, d = 4;
  for (index_t K : {index_t(1), index_t(2)})
    for (double delta : {0.0, 0.3}) {
      nn::ParameterSet<cpu, double> ps;
      nn::ReadoutHead<cpu, double> head(ps, "reg", d, K, 3);
      ps.allocate();
      testing::fill_uniform<double>(ps.values(), 9, 1, -0.9, 0.9);
      auto x = random_tensor<double>(Shape{N, d}, 51);
      auto t = random_tensor<double>(Shape{N, K}, 52);
      t.data()[1] = std::nan("");  // a missing value
      nn::ReadoutHead<cpu, double>::Cache c;
      DT y(Shape{N, K}), dy(y.shape()), dx(x.shape());
      auto loss = [&] {
        head.forward(x, y.view(), c);
        return regression_loss<cpu, double>(y, t, delta, 0.7).loss * 0.7;
      };
      ps.zero_grad();
      loss();
      const auto r = regression_loss<cpu, double>(y, t, delta, 0.7, dy.view());
      CHECK(r.count == N * K - 1);
      CHECK(dy.data()[1] == 0.0);
      head.backward(x, dy, dx.view(), c);
      expect_ok(testing::check_gradient(ps.values(), ps.grads(), loss), "regression: parameters");
      expect_ok(testing::check_gradient(x.view(), dx.cview(), loss), "regression: inputs");
    }
  // by hand: errors 1 and -3, Huber delta 2 -> 0.5 and 2 * (3 - 1) = 4
  DT p(Shape{2, 1}), q(Shape{2, 1});
  p.data()[0] = 1, p.data()[1] = 0, q.data()[0] = 0, q.data()[1] = 3;
  CHECK(regression_loss<cpu, double>(p, q).loss == doctest::Approx(5.0));
  CHECK(regression_loss<cpu, double>(p, q, 2.0).loss == doctest::Approx(2.25));
  CHECK(regression_loss<cpu, double>(p, q).mae == doctest::Approx(2.0));
  p.data()[1] = std::nan("");
  check_error([&] { regression_loss<cpu, double>(p, q); }, "prediction (1, 0) is nan");
}
