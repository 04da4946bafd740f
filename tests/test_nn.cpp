// nn/ layers and the T5 model: finite-difference gradient checks in double for
// every layer, both stacks and the whole model + loss; position buckets;
// incremental decoding against full recomputation; config checks.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "nn_test_support.hpp"
#include "plm/core/type_tag.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/objectives/multitask.hpp"

using namespace plm;
using namespace plm::nn;
using namespace plm::test;
using plm::testing::check_gradient;
using plm::testing::dot;

namespace {
using D = double;
using DT = Tensor<cpu, D>;
using PS = ParameterSet<cpu, D>;

Tensor<cpu, std::uint8_t> padding_mask(index_t Bn, index_t Tn) {
  Tensor<cpu, std::uint8_t> m(Shape{Bn, Tn});
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < Tn; ++t) m.at(b, t) = t < Tn - 2 * b;  // row b has 2b padding positions
  return m;
}

}  // namespace

TEST_CASE("gradient: Linear (with bias), Embedding, RMSNorm, LayerNorm") {
  PS ps;
  Linear<cpu, D> lin(ps, "lin", 5, 3, 0.5, /*bias=*/true);
  Embedding<cpu, D> emb(ps, "emb", 7, 5, 1.0);
  RMSNorm<cpu, D> rms(ps, "rms", 5, 1e-6);
  LayerNorm<cpu, D> ln(ps, "ln", 5, 1e-5);
  ps.allocate();
  ps.init(1);
  randomize(ps, 2);
  Tensor<cpu, std::int32_t> ids(Shape{2, 3});
  const std::int32_t v[6] = {1, 6, 1, 0, 3, 6};
  std::copy(v, v + 6, ids.data());
  DT e(Shape{2, 3, 5}), n1(Shape{2, 3, 5}), n2(Shape{2, 3, 5}), y(Shape{2, 3, 3}), r = random_tensor<D>(Shape{2, 3, 3}, 5);
  RMSNorm<cpu, D>::Cache rc;
  LayerNorm<cpu, D>::Cache lc;
  auto loss = [&] {
    emb.forward(ids, e);
    rms.forward(e, n1, rc);
    ln.forward(n1, n2, lc);
    lin.forward(n2, y);
    return dot<D>(y, r);
  };
  auto grads = [&] {
    ps.zero_grad();
    loss();
    DT d2(n2.shape()), d1(n1.shape()), d0(e.shape());
    lin.backward(n2, r, d2);
    ln.backward(n1, d2, d1, lc);
    rms.backward(e, d1, d0, rc);
    emb.backward(ids, d0);
  };
  check_all(ps, loss, grads, {}, "embedding -> rms -> layer norm -> linear");
}

TEST_CASE("gradient: self-attention with shared bias, padding, causal mask and an extra probability gradient") {
  AttentionShape s{6, 2, 3, 1.0};
  for (int variant = 0; variant < 3; ++variant) {
    PS ps;
    Attention<cpu, D> attn(ps, "attn", s);
    ps.allocate();
    ps.init(3);
    randomize(ps, 4);
    const index_t Bn = 2, Tn = 5;
    DT x = random_tensor<D>(Shape{Bn, Tn, 6}, 1), bias = random_tensor<D>(Shape{2, Tn, Tn}, 2);
    DT out(x.shape()), r = random_tensor<D>(x.shape(), 3), rp = random_tensor<D>(Shape{Bn, 2, Tn, Tn}, 6);
    auto valid = padding_mask(Bn, Tn);
    SoftmaxMask<cpu, D> m;
    m.bias = bias;
    m.key_valid = valid;
    m.causal = variant >= 1;
    Attention<cpu, D>::Cache c;
    const bool extra = variant == 2;  // loss also reads the probabilities
    auto loss = [&] {
      attn.forward(x, x, m, out, c);
      return dot<D>(out, r) + (extra ? dot<D>(c.probs, rp) : 0.0);
    };
    DT dx(x.shape()), dbias(bias.shape());
    auto grads = [&] {
      ps.zero_grad();
      loss();
      ops<cpu>::fill<D>(dbias, 0);
      attn.backward(x, x, r, dx, dx, dbias, c, extra ? ConstView<cpu, D>(rp) : ConstView<cpu, D>{});
    };
    check_all(ps, loss, grads, {{&x, &dx}, {&bias, &dbias}}, "self-attention variant " + std::to_string(variant));
  }
}

TEST_CASE("gradient: cross-attention (query and key/value inputs separately)") {
  AttentionShape s{4, 2, 3, 0.5};
  PS ps;
  Attention<cpu, D> attn(ps, "cross", s);
  ps.allocate();
  randomize(ps, 5);
  DT xq = random_tensor<D>(Shape{2, 3, 4}, 1), xkv = random_tensor<D>(Shape{2, 6, 4}, 2);
  DT out(xq.shape()), r = random_tensor<D>(xq.shape(), 3);
  auto valid = padding_mask(2, 6);
  SoftmaxMask<cpu, D> m;
  m.key_valid = valid;
  Attention<cpu, D>::Cache c;
  auto loss = [&] {
    attn.forward(xq, xkv, m, out, c);
    return dot<D>(out, r);
  };
  DT dq(xq.shape()), dkv(xkv.shape());
  auto grads = [&] {
    ps.zero_grad();
    loss();
    ops<cpu>::fill<D>(dkv, 0);  // dx_kv accumulates
    attn.backward(xq, xkv, r, dq, dkv, {}, c);
  };
  check_all(ps, loss, grads, {{&xq, &dq}, {&xkv, &dkv}}, "cross-attention");
}

TEST_CASE("gradient: feed-forward blocks (gated gelu, gated silu, plain relu) and dropout") {
  auto run = [](auto tag, const char* name, double p) {
    using FF = typename decltype(tag)::type;
    PS ps;
    FF ff(ps, "ff", 5, 7, 1.0, p);
    ps.allocate();
    randomize(ps, 6);
    DT x = random_tensor<D>(Shape{2, 3, 5}, 1), y(x.shape()), r = random_tensor<D>(x.shape(), 2), dx(x.shape());
    typename FF::Cache c;
    const DropoutKey key = DropoutKey::of(Pass::train(42)).in_stack(DropoutStack::encoder).in_layer(3).in_block(DropoutBlock::feed_forward);
    auto loss = [&] {
      ff.forward(x, y, c, key);
      return dot<D>(y, r);
    };
    auto grads = [&] {
      ps.zero_grad();
      loss();
      ff.backward(x, r, dx, c);
    };
    check_all(ps, loss, grads, {{&x, &dx}}, name);
  };
  struct G { using type = FeedForward<cpu, D, GeluTanh, Gated>; };
  struct S { using type = FeedForward<cpu, D, Silu, Gated>; };
  struct R { using type = FeedForward<cpu, D, Relu, Plain>; };
  run(G{}, "gated gelu", 0.0);
  run(S{}, "gated silu", 0.0);
  run(R{}, "plain relu", 0.0);
  run(S{}, "gated silu with dropout 0.3", 0.3);
}

TEST_CASE("dropout: rate, scaling, reproducible masks, backward uses the forward's mask") {
  DT x(Shape{100000}), y(x.shape()), g(x.shape());
  ops<cpu>::fill<D>(x, 1.0);
  ops<cpu>::dropout<D>(x, y, 0.25, 9, 4);
  index_t kept = 0;
  for (index_t i = 0; i < x.numel(); ++i) {
    CHECK((y.data()[i] == 0.0 || std::abs(y.data()[i] - 1 / 0.75) < 1e-12));
    kept += y.data()[i] != 0;
  }
  CHECK(std::abs(double(kept) / 100000 - 0.75) < 0.006);
  ops<cpu>::dropout_backward<D>(x, g, 0.25, 9, 4);
  CHECK(std::memcmp(y.data(), g.data(), sizeof(D) * 100000) == 0);
  ops<cpu>::dropout<D>(x, g, 0.25, 9, 5);  // another stream: another mask
  CHECK(std::memcmp(y.data(), g.data(), sizeof(D) * 100000) != 0);
}

TEST_CASE("gradient: encoder and decoder layers") {
  const T5Config c = grad_config();
  PS ps;
  EncoderLayer<cpu, D, Ankh3Policies> enc(ps, "encoder.block.0", c);
  DecoderLayer<cpu, D, AnkhPolicies> dec(ps, "decoder.block.0", c);
  ps.allocate();
  ps.init(7);
  randomize(ps, 8);
  const index_t Bn = 2, S = 6, Tn = 4;
  DT x = random_tensor<D>(Shape{Bn, S, 8}, 1), xd = random_tensor<D>(Shape{Bn, Tn, 8}, 2);
  DT bias_e = random_tensor<D>(Shape{2, S, S}, 3), bias_d = random_tensor<D>(Shape{2, Tn, Tn}, 4);
  DT h(x.shape()), y(xd.shape()), r = random_tensor<D>(xd.shape(), 5);
  auto valid = padding_mask(Bn, S);
  SoftmaxMask<cpu, D> me, md, mc;
  me.bias = bias_e;
  me.key_valid = valid;
  md.bias = bias_d;
  md.causal = true;
  mc.key_valid = valid;
  EncoderLayer<cpu, D, Ankh3Policies>::Cache ec;
  DecoderLayer<cpu, D, AnkhPolicies>::Cache dc;
  auto loss = [&] {
    enc.forward(x, me, h, ec);
    dec.forward(xd, h, md, mc, y, dc);
    return dot<D>(y, r);
  };
  DT dx(x.shape()), dxd(xd.shape()), dh(h.shape()), dbe(bias_e.shape()), dbd(bias_d.shape());
  auto grads = [&] {
    ps.zero_grad();
    loss();
    ops<cpu>::fill<D>(dh, 0);
    ops<cpu>::fill<D>(dbe, 0);
    ops<cpu>::fill<D>(dbd, 0);
    dec.backward(xd, h, r, dxd, dh, dbd, dc);
    enc.backward(x, dh, dx, dbe, ec);
  };
  check_all(ps, loss, grads, {{&x, &dx}, {&xd, &dxd}, {&bias_e, &dbe}, {&bias_d, &dbd}}, "encoder layer -> decoder layer");
}

TEST_CASE("gradient: whole T5 model + cross-entropy, padding, both bias directions, untied and tied heads, dropout") {
  // variants: 0 untied, 1 tied and scaled, 2 gated-gelu with label smoothing,
  // 3 untied but scaled, 4 tied unscaled, 5 a training pass with dropout 0.2
  for (int variant = 0; variant < 6; ++variant) {
    T5Config c = grad_config();
    c.tie_word_embeddings = variant == 1 || variant == 4;
    if (variant == 3) c.scale_decoder_outputs = true;
    if (variant == 4) c.scale_decoder_outputs = false;
    if (variant == 5) c.dropout_rate = 0.2;
    const Pass pass = variant == 5 ? Pass::train(77) : Pass::eval();
    if (variant == 2) c.feed_forward_proj = "gated-gelu";
    auto run = [&](auto model_tag) {
      using Model = typename decltype(model_tag)::type;
      Model m(c, 11);
      randomize(m.params(), 12 + variant);
      const index_t Bn = 2, S = 7, Tn = 5;
      Tensor<cpu, std::int32_t> src(Shape{Bn, S}), dec_in(Shape{Bn, Tn}), tgt(Shape{Bn, Tn});
      Philox rng(5);
      for (index_t i = 0; i < src.numel(); ++i) src.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
      for (index_t i = 0; i < dec_in.numel(); ++i) dec_in.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
      for (index_t i = 0; i < tgt.numel(); ++i) tgt.data()[i] = 3 + static_cast<std::int32_t>(rng.below(8));
      tgt.at(1, 3) = tgt.at(1, 4) = -100;  // padded targets are ignored
      auto valid = padding_mask(Bn, S);
      for (index_t t = 0; t < S; ++t)
        if (!valid.at(1, t)) src.at(1, t) = 0;
      DT logits(Shape{Bn, Tn, c.vocab_size});
      typename Model::Cache cache;
      objectives::CrossEntropy<cpu, D> ce(-100, variant == 2 ? 0.1 : 0.0);
      auto loss = [&] {
        m.forward(src, valid, dec_in, logits, cache, pass);
        return ce(logits, tgt).loss;
      };
      auto grads = [&] {
        m.params().zero_grad();
        m.forward(src, valid, dec_in, logits, cache, pass);
        DT dl(logits.shape());
        ce(logits, tgt, dl);
        m.backward(dl, cache);
      };
      check_all(m.params(), loss, grads, {}, "T5 model variant " + std::to_string(variant));
    };
    struct A3 { using type = Ankh3Model<cpu, D>; };
    struct A { using type = AnkhModel<cpu, D>; };
    if (variant == 2) run(A{});
    else run(A3{});
  }
}

TEST_CASE("cross-entropy: ignore index, label smoothing, accuracy, errors") {
  DT logits(Shape{3, 4});
  const D v[12] = {2, 0, 0, 0, 0, 1, 3, 0, 1, 1, 1, 1};
  std::copy(v, v + 12, logits.data());
  Tensor<cpu, std::int32_t> t(Shape{3});
  t.data()[0] = 0, t.data()[1] = 1, t.data()[2] = -100;
  objectives::CrossEntropy<cpu, D> ce;
  DT g(logits.shape());
  const auto r = ce(logits, t, g);
  const double l0 = std::log(std::exp(2.0) + 3) - 2, l1 = std::log(1 + std::exp(1.0) + std::exp(3.0) + 1) - 1;
  CHECK(r.tokens == 2);
  CHECK(r.correct == 1);
  CHECK(r.loss == doctest::Approx((l0 + l1) / 2).epsilon(1e-12));
  for (index_t j = 0; j < 4; ++j) CHECK(g.at(2, j) == 0.0);
  // label smoothing: (1 - s) nll + s * mean_j(-log p_j)
  objectives::CrossEntropy<cpu, D> smooth(-100, 0.2);
  const auto rs = smooth(logits, t);
  const double lse0 = std::log(std::exp(2.0) + 3), lse1 = std::log(2 + std::exp(1.0) + std::exp(3.0));
  const double s0 = lse0 - 0.5, s1 = lse1 - 1.0;
  CHECK(rs.loss == doctest::Approx((0.8 * l0 + 0.2 * s0 + 0.8 * l1 + 0.2 * s1) / 2).epsilon(1e-12));
  t.data()[2] = 4;
  check_error([&] { ce(logits, t); }, "cross_entropy: target 4 at row 2 is outside the vocabulary of 4");
  t.data()[2] = 1;
  logits.at(1, 2) = NAN;
  check_error([&] { ce(logits, t); }, "CrossEntropy: loss is nan", "contain NaN");
}

TEST_CASE("relative position buckets match T5's bucketing") {
  // Bidirectional, 32 buckets, max distance 128 (T5 defaults): 16 per direction,
  // exact below 8, then logarithmic, clipped at 15.
  CHECK(relative_position_bucket(0, true, 32, 128) == 0);
  CHECK(relative_position_bucket(-3, true, 32, 128) == 3);
  CHECK(relative_position_bucket(3, true, 32, 128) == 19);
  CHECK(relative_position_bucket(-8, true, 32, 128) == 8);
  // 8 + floor(log(20/8) / log(128/8) * 8) = 8 + floor(2.643) = 10
  CHECK(relative_position_bucket(-20, true, 32, 128) == 10);
  CHECK(relative_position_bucket(-127, true, 32, 128) == 15);
  CHECK(relative_position_bucket(-1000, true, 32, 128) == 15);
  CHECK(relative_position_bucket(1000, true, 32, 128) == 31);
  // Causal: keys after the query share bucket 0; 32 buckets for the past.
  CHECK(relative_position_bucket(5, false, 32, 128) == 0);
  CHECK(relative_position_bucket(-5, false, 32, 128) == 5);
  // 16 + floor(log(40/16) / log(128/16) * 16) = 16 + floor(7.05) = 23
  CHECK(relative_position_bucket(-40, false, 32, 128) == 23);
  CHECK(relative_position_bucket(-500, false, 32, 128) == 31);
}

TEST_CASE("incremental decoding with the key/value cache equals recomputing the decoder") {
  T5Config c = T5Config::ankh3_tiny();
  c.vocab_size = 30;
  Ankh3Model<cpu, D> m(c, 21);
  const index_t Bn = 2, S = 9, steps = 10;
  Tensor<cpu, std::int32_t> src(Shape{Bn, S});
  Philox rng(8);
  for (index_t i = 0; i < src.numel(); ++i) src.data()[i] = 3 + static_cast<std::int32_t>(rng.below(27));
  auto valid = padding_mask(Bn, S);
  // cached greedy decoding
  Ankh3Model<cpu, D>::DecodeState st;
  m.begin_decoding(src, valid, steps, st);
  Tensor<cpu, std::int32_t> tok(Shape{Bn});
  ops<cpu>::fill<std::int32_t>(tok, c.decoder_start_token_id);
  std::vector<std::vector<std::int32_t>> cached(Bn, std::vector<std::int32_t>{c.decoder_start_token_id});
  DT step_logits(Shape{Bn, c.vocab_size});
  std::vector<DT> per_step;
  for (index_t t = 0; t < steps; ++t) {
    m.decode_step(tok, step_logits, st);
    per_step.push_back(step_logits.clone());
    for (index_t b = 0; b < Bn; ++b) {
      const D* row = step_logits.data() + b * c.vocab_size;
      tok.data()[b] = static_cast<std::int32_t>(std::max_element(row, row + c.vocab_size) - row);
      cached[b].push_back(tok.data()[b]);
    }
  }
  // the same greedy loop, recomputing the whole decoder at every step
  std::vector<std::vector<std::int32_t>> full(Bn, std::vector<std::int32_t>{c.decoder_start_token_id});
  Ankh3Model<cpu, D>::Cache cache;
  for (index_t t = 0; t < steps; ++t) {
    Tensor<cpu, std::int32_t> dec(Shape{Bn, t + 1});
    for (index_t b = 0; b < Bn; ++b) std::copy(full[b].begin(), full[b].end(), dec.data() + b * (t + 1));
    DT logits(Shape{Bn, t + 1, c.vocab_size});
    m.forward(src, valid, dec, logits, cache);
    for (index_t b = 0; b < Bn; ++b) {
      const D* row = logits.data() + (b * (t + 1) + t) * c.vocab_size;
      for (index_t v = 0; v < c.vocab_size; ++v) CHECK(std::abs(row[v] - per_step[t].at(b, v)) < 1e-10);
      full[b].push_back(static_cast<std::int32_t>(std::max_element(row, row + c.vocab_size) - row));
    }
  }
  CHECK(cached == full);
  std::set<std::int32_t> distinct(cached[0].begin(), cached[0].end());
  CHECK(distinct.size() > 2);  // a non-degenerate sequence, so the comparison means something
}

TEST_CASE("T5Config: sizes beyond sane bounds and size products are refused by name") {
  auto bad = [](auto edit, const std::string& part) {
    T5Config c = T5Config::ankh3_tiny();
    edit(c);
    check_error([&] { c.validate(); }, part);
  };
  bad([](T5Config& c) { c.d_ff = 1000000000000; }, "T5Config: d_ff = 1000000000000 is out of range [1, 1048576]");
  bad([](T5Config& c) { c.d_model = index_t(1) << 62; }, "T5Config: d_model = 4611686018427387904 is out of range [1, 1048576]");
  bad([](T5Config& c) { c.num_heads = 5000; }, "T5Config: num_heads = 5000 is out of range [1, 4096]");
  bad([](T5Config& c) { c.num_layers = 1025; }, "T5Config: num_layers = 1025 is out of range [1, 1024]");
  bad([](T5Config& c) { c.num_decoder_layers = -1; }, "T5Config: num_decoder_layers = -1 is out of range [0, 1024]");
  bad([](T5Config& c) { c.vocab_size = (index_t(1) << 24) + 1; }, "T5Config: vocab_size = 16777217 is out of range [1, 16777216]");
  bad([](T5Config& c) { c.relative_attention_num_buckets = 2; }, "relative_attention_num_buckets = 2 is out of range [4, 65536]");
  bad([](T5Config& c) { c.relative_attention_num_buckets = 32, c.relative_attention_max_distance = 16; },
      "relative_attention_max_distance 16 must exceed relative_attention_num_buckets / 2 (16)");
  // every field within bounds, their products not
  bad([](T5Config& c) { c.d_kv = 1024, c.num_heads = 4096; }, "T5Config: d_kv * num_heads = 1024 * 4096 = 4194304 exceeds 1048576");
  bad([](T5Config& c) { c.vocab_size = index_t(1) << 24, c.d_model = index_t(1) << 20; },
      "T5Config: vocab_size * d_model = 17592186044416 exceeds 1099511627776 (2^40)");
  bad([](T5Config& c) { c.d_model = index_t(1) << 20, c.d_ff = index_t(1) << 20; }, "parameters exceed 2^40 (vocab_size 256, d_model 1048576");
  bad([](T5Config& c) { c.initializer_factor = std::nan(""); }, "T5Config: initializer_factor must be positive and finite");
  bad([](T5Config& c) { c.layer_norm_epsilon = HUGE_VAL; }, "T5Config: layer_norm_epsilon must be positive");
  // the published models are far inside the bounds; T5-11B's shape too
  for (const char* name : {"ankh-base", "ankh-large", "ankh3-large", "ankh3-small", "ankh3-tiny"}) CHECK_NOTHROW(T5Config::preset(name).validate());
  CHECK_NOTHROW(T5Config::ankh3_xl(10240).validate());
  T5Config t5_11b = T5Config::ankh_base();
  t5_11b.vocab_size = 32128, t5_11b.d_model = 1024, t5_11b.d_ff = 65536, t5_11b.num_heads = 128, t5_11b.d_kv = 128;
  t5_11b.num_layers = t5_11b.num_decoder_layers = 24, t5_11b.feed_forward_proj = "relu", t5_11b.tie_word_embeddings = true;
  CHECK_NOTHROW(t5_11b.validate());
  CHECK(t5_11b.parameter_count() == doctest::Approx(11.3e9).epsilon(0.02));  // "t5-11b": 11.3 billion parameters
  // parameter_count() is what the model registers: with and without a decoder, tied or not
  for (index_t decoder : {0, 2})
    for (bool tied : {false, true}) {
      T5Config c = T5Config::ankh3_tiny();
      c.num_decoder_layers = decoder, c.tie_word_embeddings = tied;
      CHECK(Ankh3Model<cpu, float>(c, 1).params().numel() == c.parameter_count());
    }
}

TEST_CASE("T5Model: presets, config checks, initialisation, names") {
  CHECK(T5Config::preset("ankh-base").d_model == 768);
  CHECK(T5Config::preset("ankh3-large").feed_forward_proj == "gated-silu");
  check_error([] { T5Config::preset("ankh3-xl"); }, "needs its d_ff");
  check_error([] { T5Config::preset("nope"); }, "unknown preset 'nope'");
  T5Config bad = T5Config::ankh3_tiny();
  bad.d_kv = 0;
  check_error([&] { bad.validate(); }, "T5Config: d_kv must be positive, got 0");
  // policies and config must agree
  check_error([] { AnkhModel<cpu, float> m(T5Config::ankh3_tiny()); }, "feed_forward_proj 'gated-silu'", "built for 'gated-gelu'");

  T5Config c = T5Config::ankh3_tiny();
  c.d_model = 64, c.d_kv = 16, c.d_ff = 96;
  Ankh3Model<cpu, float> m(c, 3);
  const auto& ps = m.params();
  CHECK(ps.find("shared.weight") >= 0);
  CHECK(ps.find("lm_head.weight") >= 0);
  CHECK(ps.find("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight") >= 0);
  CHECK(ps.find("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight") < 0);  // shared from block 0
  CHECK(ps.find("decoder.block.1.layer.1.EncDecAttention.k.weight") >= 0);
  CHECK(ps.find("decoder.block.1.layer.2.DenseReluDense.wi_1.weight") >= 0);
  CHECK(ps.find("encoder.final_layer_norm.weight") >= 0);
  auto std_of = [&](const std::string& name) {
    auto v = ps.value(name);
    double s = 0;
    for (index_t i = 0; i < v.numel(); ++i) s += double(v.data()[i]) * v.data()[i];
    return std::sqrt(s / double(v.numel()));
  };
  CHECK(std_of("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") == doctest::Approx(1 / std::sqrt(64.0)).epsilon(0.05));
  CHECK(std_of("encoder.block.0.layer.1.DenseReluDense.wo.weight") == doctest::Approx(1 / std::sqrt(96.0)).epsilon(0.05));
  CHECK(std_of("encoder.block.0.layer.0.SelfAttention.q.weight") == doctest::Approx(1 / std::sqrt(64.0 * 16)).epsilon(0.05));
  CHECK(std_of("shared.weight") == doctest::Approx(1.0).epsilon(0.05));
  CHECK(ps.value("decoder.final_layer_norm.weight").data()[5] == 1.0f);
  // same seed, same weights
  Ankh3Model<cpu, float> m2(c, 3);
  CHECK(std::memcmp(m.params().values().data(), m2.params().values().data(), sizeof(float) * ps.numel()) == 0);
}

TEST_CASE("reorder_decoding permutes every cache row (beam search support)") {
  T5Config c = T5Config::ankh3_tiny();
  c.vocab_size = 30;
  Ankh3Model<cpu, D> m(c, 4);
  Tensor<cpu, std::int32_t> src(Shape{3, 6});
  Philox rng(2);
  for (index_t i = 0; i < src.numel(); ++i) src.data()[i] = 3 + static_cast<std::int32_t>(rng.below(27));
  auto valid = padding_mask(3, 6);
  Ankh3Model<cpu, D>::DecodeState a, b;
  m.begin_decoding(src, valid, 5, a);
  Tensor<cpu, std::int32_t> tok(Shape{3});
  for (index_t i = 0; i < 3; ++i) tok.data()[i] = static_cast<std::int32_t>(5 + i);
  DT la(Shape{3, c.vocab_size});
  m.decode_step(tok, la, a);
  // reorder rows (2, 0, 0), then step: must equal decoding the permuted batch from the start
  Tensor<cpu, std::int32_t> rows(Shape{3});
  rows.data()[0] = 2, rows.data()[1] = 0, rows.data()[2] = 0;
  m.reorder_decoding(rows, a);
  Tensor<cpu, std::int32_t> src2(Shape{3, 6}), tok2(Shape{3}), next(Shape{3});
  Tensor<cpu, std::uint8_t> valid2(Shape{3, 6});
  for (index_t i = 0; i < 3; ++i) {
    const index_t r = rows.data()[i];
    for (index_t t = 0; t < 6; ++t) src2.at(i, t) = src.at(r, t), valid2.at(i, t) = valid.at(r, t);
    tok2.data()[i] = tok.data()[r];
  }
  m.begin_decoding(src2, valid2, 5, b);
  DT lb(Shape{3, c.vocab_size});
  m.decode_step(tok2, lb, b);
  for (index_t i = 0; i < 3; ++i) next.data()[i] = 7;
  m.decode_step(next, la, a);
  m.decode_step(next, lb, b);
  CHECK(max_rel_diff<D, D>(la, lb) < 1e-12);
}

TEST_CASE("MultiTask objective: per-task means, weights, residue accuracy, fused gradient") {
  const index_t Bn = 3, Tn = 4, V = 6;
  DT logits = random_tensor<D>(Shape{Bn, Tn, V}, 31, -2, 2);
  Tensor<cpu, std::int32_t> labels(Shape{Bn, Tn});
  const std::int32_t lv[12] = {3, 5, 1, -100, 4, 4, 2, 1, 5, 3, -100, -100};
  std::copy(lv, lv + 12, labels.data());
  const std::vector<std::int32_t> task = {0, 1, 0};
  objectives::MultiTask<cpu, D> mt({{"nlu", 1.0}, {"s2s", 0.5}}, {3, 4, 5});
  DT g(logits.shape());
  const auto r = mt(logits, labels, task, g);
  // reference: plain cross-entropy on each task's rows
  auto task_loss = [&](std::int32_t k) {
    Tensor<cpu, std::int32_t> only(labels.shape());
    for (index_t b = 0; b < Bn; ++b)
      for (index_t t = 0; t < Tn; ++t) only.at(b, t) = task[b] == k ? labels.at(b, t) : -100;
    return objectives::CrossEntropy<cpu, D>(-100)(logits, only);
  };
  const auto l0 = task_loss(0), l1 = task_loss(1);
  CHECK(r.tasks[0].tokens == 5);
  CHECK(r.tasks[1].tokens == 4);
  CHECK(r.tasks[0].loss == doctest::Approx(l0.loss).epsilon(1e-12));
  CHECK(r.tasks[1].loss == doctest::Approx(l1.loss).epsilon(1e-12));
  CHECK(r.tasks[0].correct == l0.correct);
  CHECK(r.total == doctest::Approx(l0.loss + 0.5 * l1.loss).epsilon(1e-12));
  // residue accuracy counts only targets 3, 4, 5 (not eos 1 or 2)
  CHECK(r.tasks[0].residue_tokens == 4);
  CHECK(r.tasks[1].residue_tokens == 2);
  auto loss = [&] { return mt(logits, labels, task).total; };
  expect_ok(check_gradient(logits, g, loss), "MultiTask dlogits");
  // single-task forms
  objectives::SpanMLM<cpu, D> mlm({3, 4, 5});
  const auto s = mlm(logits, labels);
  CHECK(s.tokens == 9);
  CHECK(s.residue_tokens == 6);
  check_error([&] { mt(logits, labels, {0, 2, 0}); }, "MultiTask: sequence 1 has task id 2 of 2 tasks");
  // MultiTaskResult::add: rows 0-1 and row 2 folded together equal the whole batch
  objectives::MultiTaskResult parts;
  parts.add(mt(logits.view().slice(0, 2), labels.view().slice(0, 2), {0, 1}));
  parts.add(mt(logits.view().slice(2, 3), labels.view().slice(2, 3), {0}));
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(parts.tasks[k].tokens == r.tasks[k].tokens);
    CHECK(parts.tasks[k].correct == r.tasks[k].correct);
    CHECK(parts.tasks[k].residue_correct == r.tasks[k].residue_correct);
    CHECK(parts.tasks[k].loss == doctest::Approx(r.tasks[k].loss).epsilon(1e-12));
  }
  CHECK(parts.total == doctest::Approx(r.total).epsilon(1e-12));
}

TEST_CASE("dropout streams: every site of every layer has its own stream, at any depth") {
  std::set<std::uint64_t> seen;
  std::size_t sites = 0;
  const DropoutKey root{5};
  for (auto stack : {DropoutStack::encoder, DropoutStack::decoder}) {
    const DropoutKey s = root.in_stack(stack);
    for (auto site : {DropoutSite::embeddings, DropoutSite::output}) seen.insert(s.at(site).stream()), ++sites;
    // layers 0..199 cover the old scheme's collision (encoder layer 64 vs decoder layer 0), and a very deep one
    std::vector<std::uint64_t> layers;
    for (std::uint64_t i = 0; i < 200; ++i) layers.push_back(i);
    layers.push_back(DropoutKey::max_layers - 1);
    for (std::uint64_t i : layers)
      for (auto block : {DropoutBlock::self_attention, DropoutBlock::self_attention_residual, DropoutBlock::cross_attention,
                         DropoutBlock::cross_attention_residual, DropoutBlock::feed_forward, DropoutBlock::feed_forward_residual})
        seen.insert(s.in_layer(i).in_block(block).stream()), ++sites;
  }
  CHECK(seen.size() == sites);
  check_error([&] { root.in_layer(DropoutKey::max_layers); }, "DropoutKey: layer");
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.num_layers = nn::T5Config::max_layers;
  check_error([&] { c.validate(); }, "T5Config: num_layers");
}

TEST_CASE("T5Model in a caller's set: same initial weights as an owned model, heads after it") {
  const nn::T5Config c = nn::T5Config::ankh3_tiny();
  nn::Ankh3Model<cpu, float> owned(c, 9);
  nn::ParameterSet<cpu, float> ps;
  nn::Ankh3Model<cpu, float> shared(ps, c);
  nn::Linear<cpu, float> head(ps, "head", c.d_model, 3, 0.1);
  ps.allocate();
  ps.init(9);
  CHECK(shared.param_range().end == owned.params().size());
  CHECK(ps.size() == owned.params().size() + 1);
  CHECK(std::memcmp(ps.values().data(), owned.params().values().data(), sizeof(float) * owned.params().numel()) == 0);
  // the untied LM head starts at std 0.5 d_model^-1/2: logits of std ~0.5 (the first loss is tested below)
  const auto w = owned.params().value("lm_head.weight");
  double ss = 0;
  for (index_t i = 0; i < w.numel(); ++i) ss += double(w.data()[i]) * w.data()[i];
  const double ratio = std::sqrt(ss / double(w.numel())) / (0.5 / std::sqrt(double(c.d_model)));
  INFO("head std / (0.5 d_model^-1/2) = ", ratio);
  CHECK(std::abs(ratio - 1.0) < 0.1);
}

TEST_CASE("T5Model from a config starts near a uniform prediction: first loss within 10% of ln(vocab)") {
  // Random targets over the whole vocabulary: a model that predicts uniformly
  // scores ln(V); transformers' std-1 untied LM head would start several times higher.
  const auto check = [](auto tag, nn::T5Config c, bool tied) {
    using M = typename decltype(tag)::type;
    c.tie_word_embeddings = tied;
    c.scale_decoder_outputs.reset();
    const M model(c, /*seed=*/11);
    const index_t Bn = 4, S = 24, Tn = 20;
    Tensor<cpu, std::int32_t> ids(Shape{Bn, S}), dec(Shape{Bn, Tn}), targets(Shape{Bn, Tn});
    Philox rng(5, 0);
    for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size)));
    for (index_t i = 0; i < dec.numel(); ++i) dec.data()[i] = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size)));
    for (index_t i = 0; i < targets.numel(); ++i)
      targets.data()[i] = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size)));
    Tensor<cpu, float> logits(Shape{Bn, Tn, c.vocab_size});
    typename M::Cache cache;
    model.forward(ids, {}, dec, logits, cache);
    const double loss = objectives::CrossEntropy<cpu, float>(-100)(logits, targets).loss;
    const double uniform = std::log(static_cast<double>(c.vocab_size));
    INFO(c.feed_forward_proj, " vocab ", c.vocab_size, " d_model ", c.d_model, std::string(tied ? " tied" : " untied"), ": first loss ", loss,
         ", ln(V) ", uniform);
    CHECK(std::abs(loss - uniform) <= 0.1 * uniform);
  };
  for (const bool tied : {false, true}) {
    nn::T5Config ankh3 = nn::T5Config::ankh3_small();  // vocab 256, gated-silu
    check(type_tag<nn::Ankh3Model<cpu, float>>{}, ankh3, tied);
    nn::T5Config ankh = nn::T5Config::ankh_base();  // vocab 144, gated-gelu, at a small size
    ankh.d_model = 192, ankh.d_kv = 32, ankh.num_heads = 6, ankh.d_ff = 384, ankh.num_layers = 3, ankh.num_decoder_layers = 2;
    check(type_tag<nn::AnkhModel<cpu, float>>{}, ankh, tied);
    nn::T5Config wide = nn::T5Config::ankh_base();  // Ankh-base's width (768, 12 heads), two layers each side
    wide.num_layers = 2, wide.num_decoder_layers = 2;
    check(type_tag<nn::AnkhModel<cpu, float>>{}, wide, tied);
  }
}
