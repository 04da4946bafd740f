// The cross-backend harness: every entry of the op table (op_table.hpp) on
// ops<cuda> against ops<cpu> on the same inputs, GEMMs in the TF32 and bf16
// math modes, then layers, objectives, optimizers, samplers and a few training
// steps of a whole model on both backends.
//
// Tolerances (relative to max(1, |cpu|)): double 1e-10; float in CudaMath::fp32
// 1e-5 for elementwise and row ops (each table entry may set its own), 1e-4
// through a whole model; TF32 GEMMs 3e-3; bf16 GEMMs 3e-2. Dropout masks, bf16
// conversions, copies and gathers must be identical.
// main_cuda.cpp runs these only when a CUDA device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "op_table.hpp"
#include "ops_test_support.hpp"
#include "plm/cuda.hpp"
#include "plm/dist/data_parallel.hpp"
#if defined(PLM_NCCL)
#include "plm/dist/nccl.hpp"
#endif
#include "plm/nn/esm.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/attention_contrastive.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/optim/adafactor.hpp"
#include "plm/optim/adamw.hpp"
#include "plm/optim/clip.hpp"
#include "plm/samplers/negatives.hpp"
#include "plm/testing/gradient_check.hpp"

using namespace plm;

namespace {

using C = ops<cpu>;
using G = ops<cuda>;

template <class T> Tensor<cpu, T> host_random(Shape s, std::uint64_t stream, double lo = -1, double hi = 1) {
  Tensor<cpu, T> t(s);
  testing::fill_uniform<T>(t, 99, stream, lo, hi);
  return t;
}
template <class T> Tensor<cuda, T> up(ConstView<cpu, T> h) {
  Tensor<cuda, T> d(h.shape());
  upload(h.data(), d.view());
  return d;
}
template <class T> Tensor<cpu, T> down(ConstView<cuda, T> d) {
  Tensor<cpu, T> h(d.shape());
  download(d, h.data());
  return h;
}

// Largest |gpu - cpu| / max(1, |cpu|).
template <class T> double rel_diff(ConstView<cpu, T> cpu_result, ConstView<cuda, T> gpu_result) {
  return test::max_rel_diff<T, T>(down<T>(gpu_result), cpu_result);
}

#define CHECK_CLOSE(cpu_view, gpu_view, limit)                    \
  do {                                                            \
    const double d_ = rel_diff(cpu_view, gpu_view);              \
    INFO(#gpu_view " differs from the CPU by ", d_);               \
    CHECK(d_ <= (limit));                                         \
  } while (0)

// Sets the GEMM mode for one scope.
struct MathScope {
  CudaMath saved;
  explicit MathScope(CudaMath m) : saved(CudaContext::current().math()) { CudaContext::current().set_math(m); }
  ~MathScope() { CudaContext::current().set_math(saved); }
};

template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cuda: every op-table entry against the CPU, in float and double") {
  // op_table.hpp: forward and backward of each entry on both backends from the
  // same inputs, within the entry's backend tolerance (bit for bit where it is
  // exact: copies, conversions, gather, relu, dropout masks, fills); outputs in
  // the buffer of an input; and every error case raising the CPU's message.
  MathScope fp32(CudaMath::fp32);
  using namespace plm::test::optable;
  Tally t;
  for (const auto& c : op_table<cpu, cuda>()) {
    ++t.entries;
    const Values v = make_values(c);
    check_backend<cuda, float>(t, c, v);
    check_backend<cuda, double>(t, c, v);
  }
  CHECK(t.entries >= 150);
  const std::string line = "op table on cuda: " + std::to_string(t.entries) + " entries, " + std::to_string(t.checks) + " checks";
  MESSAGE(line);
}

TEST_CASE("cuda: TF32 and bf16 GEMMs stay within their precision") {
  auto a = host_random<float>(Shape{64, 256}, 20), b = host_random<float>(Shape{256, 48}, 21);
  Tensor<cpu, float> c(Shape{64, 48});
  C::matmul<float>(a, false, b, false, c);
  auto da = up<float>(a), db = up<float>(b);
  Tensor<cuda, float> dc(Shape{64, 48});
  // |c| is about sqrt(256 / 9) ~ 5; errors are relative to max(1, |c|)
  {
    MathScope m(CudaMath::tf32);
    G::matmul<float>(da, false, db, false, dc);
    CHECK_CLOSE(c.cview(), dc.cview(), 3e-3);
  }
  {
    MathScope m(CudaMath::bf16);
    G::matmul<float>(da, false, db, false, dc);
    const double d = rel_diff<float>(c, dc);
    CHECK(d <= 3e-2);
    CHECK(d > 0);  // bf16 operands really are rounded
  }
}

namespace {

nn::T5Config small_config() {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.vocab_size = 29;
  return c;
}

struct Batch {
  Tensor<cpu, std::int32_t> src{Shape{3, 11}}, dec{Shape{3, 6}}, tgt{Shape{3, 6}};
  Tensor<cpu, std::uint8_t> valid{Shape{3, 11}};
  Batch() {
    Philox rng(8);
    for (index_t i = 0; i < src.numel(); ++i) src.data()[i] = 3 + static_cast<std::int32_t>(rng.below(26));
    for (index_t i = 0; i < dec.numel(); ++i) dec.data()[i] = 3 + static_cast<std::int32_t>(rng.below(26));
    for (index_t i = 0; i < tgt.numel(); ++i) tgt.data()[i] = 3 + static_cast<std::int32_t>(rng.below(26));
    for (index_t b = 0; b < 3; ++b)
      for (index_t t = 0; t < 11; ++t) valid.at(b, t) = t < 11 - 3 * b;
    tgt.at(2, 5) = -100;
  }
};

// Forward + backward of a whole Ankh3 model on backend B; returns the loss and
// leaves logits and gradients in the outputs.
template <class B, class T>
double model_step(nn::Ankh3Model<B, T>& m, const Batch& h, Tensor<cpu, T>& logits_out, std::uint64_t dropout_seed) {
  Tensor<B, std::int32_t> src(h.src.shape()), dec(h.dec.shape()), tgt(h.tgt.shape());
  Tensor<B, std::uint8_t> valid(h.valid.shape());
  upload(h.src.data(), src.view()), upload(h.dec.data(), dec.view()), upload(h.tgt.data(), tgt.view());
  upload(h.valid.data(), valid.view());
  Tensor<B, T> logits(Shape{3, 6, m.config().vocab_size}), dl(Shape{3, 6, m.config().vocab_size});
  typename nn::Ankh3Model<B, T>::Cache cache;
  m.params().zero_grad();
  m.forward(src, valid, dec, logits, cache, nn::Pass::train(dropout_seed));
  objectives::CrossEntropy<B, T> ce(-100);
  const double loss = ce(logits, tgt, dl).loss;
  m.backward(dl, cache);
  logits_out.resize(logits.shape());
  download(logits.cview(), logits_out.data());
  return loss;
}

}  // namespace

TEST_CASE_TEMPLATE("cuda: a whole Ankh3 model's logits and every gradient match the CPU", T, float, double) {
  MathScope fp32(CudaMath::fp32);
  for (double dropout : {0.0, 0.1}) {
    nn::T5Config cfg = small_config();
    cfg.dropout_rate = dropout;
    nn::Ankh3Model<cpu, T> hm(cfg, 5);
    nn::Ankh3Model<cuda, T> gm(cfg, 5);
    const Batch batch;
    Tensor<cpu, T> hl, gl;
    const double hloss = model_step(hm, batch, hl, 42);
    const double gloss = model_step(gm, batch, gl, 42);
    INFO("dropout ", dropout);
    const double lim = std::is_same_v<T, double> ? 1e-10 : 1e-4;
    CHECK(gloss == doctest::Approx(hloss).epsilon(lim));
    CHECK_CLOSE(hl.cview(), up<T>(gl).cview(), lim * 10);
    for (index_t i = 0; i < hm.params().size(); ++i) {
      INFO(hm.params().entry(i).name);
      const ConstView<cpu, T> hg = hm.params().grad(i);
      const ConstView<cuda, T> gg = gm.params().grad(i);
      CHECK_CLOSE(hg, gg, lim);
    }
  }
}

TEST_CASE_TEMPLATE("cuda: a packed batch (Ankh3 and ESM-2) gives the CPU's loss, logits and every gradient", T, float, double) {
  MathScope fp32(CudaMath::fp32);
  // The batch's valid rows end to end: sources 11, 8, 5 tokens, targets 6 each.
  const Batch h;
  const Packing src({11, 8, 5}), dec({6, 6, 6});
  Tensor<cpu, std::int32_t> ids(Shape{1, src.tokens()}), dids(Shape{1, dec.tokens()}), tgt(Shape{1, dec.tokens()});
  for (index_t b = 0; b < 3; ++b) {
    for (index_t t = 0; t < src.length(b); ++t) ids.at(0, src.offset(b) + t) = h.src.at(b, t);
    for (index_t t = 0; t < 6; ++t) dids.at(0, dec.offset(b) + t) = h.dec.at(b, t), tgt.at(0, dec.offset(b) + t) = h.tgt.at(b, t);
  }
  const double lim = std::is_same_v<T, double> ? 1e-10 : 1e-4;
  auto t5_step = [&](auto& m, auto tag) {
    using B = decltype(tag);
    Tensor<B, std::int32_t> gi(ids.shape()), gd(dids.shape()), gt(tgt.shape());
    upload(ids.data(), gi.view()), upload(dids.data(), gd.view()), upload(tgt.data(), gt.view());
    Tensor<B, T> logits(Shape{1, dec.tokens(), m.config().vocab_size}), dl(logits.shape());
    typename nn::Ankh3Model<B, T>::Cache cache;
    m.params().zero_grad();
    m.forward_packed(gi, src, gd, dec, logits, cache, nn::Pass::train(3));
    const double loss = objectives::CrossEntropy<B, T>(-100)(logits, gt, dl).loss;
    m.backward(dl, cache);
    return loss;
  };
  nn::Ankh3Model<cpu, T> hm(small_config(), 5);
  nn::Ankh3Model<cuda, T> gm(small_config(), 5);
  CHECK(t5_step(gm, cuda{}) == doctest::Approx(t5_step(hm, cpu{})).epsilon(lim));
  for (index_t i = 0; i < hm.params().size(); ++i) {
    INFO(hm.params().entry(i).name);
    const ConstView<cpu, T> hg = hm.params().grad(i);
    const ConstView<cuda, T> gg = gm.params().grad(i);
    CHECK_CLOSE(hg, gg, lim);
  }
  // ESM-2: rotary positions restart in every packed sequence.
  nn::EsmConfig ec;
  ec.hidden_size = 16, ec.num_hidden_layers = 2, ec.num_attention_heads = 2, ec.intermediate_size = 24;
  auto esm_step = [&](auto& m, auto tag) {
    using B = decltype(tag);
    Tensor<B, std::int32_t> gi(ids.shape()), gt(ids.shape());
    Tensor<cpu, std::int32_t> lab(ids.shape());
    for (index_t i = 0; i < ids.numel(); ++i) lab.data()[i] = i % 3 == 0 ? ids.data()[i] % 33 : -100;
    Tensor<cpu, std::int32_t> in(ids.shape());
    for (index_t i = 0; i < ids.numel(); ++i) in.data()[i] = i % 3 == 0 ? ec.mask_token_id : ids.data()[i] % 33;
    upload(in.data(), gi.view()), upload(lab.data(), gt.view());
    Tensor<B, T> logits(Shape{1, src.tokens(), ec.vocab_size}), dl(logits.shape());
    typename nn::EsmModel<B, T>::Cache cache;
    m.params().zero_grad();
    m.forward_packed(gi, src, logits, cache);
    const double loss = objectives::CrossEntropy<B, T>(-100)(logits, gt, dl).loss;
    m.backward(dl, cache);
    return loss;
  };
  nn::EsmModel<cpu, T> he(ec, 6);
  nn::EsmModel<cuda, T> ge(ec, 6);
  CHECK(esm_step(ge, cuda{}) == doctest::Approx(esm_step(he, cpu{})).epsilon(lim));
  for (index_t i = 0; i < he.params().size(); ++i) {
    INFO(he.params().entry(i).name);
    const ConstView<cpu, T> hg = he.params().grad(i);
    const ConstView<cuda, T> gg = ge.params().grad(i);
    CHECK_CLOSE(hg, gg, lim);
  }
}

TEST_CASE_TEMPLATE("cuda: blockwise attention gives the CPU's context, log-sum-exp and gradients, the same bits every run", T, float,
                   double) {
  // Self-attention over lengths {5, 1, 9}, and cross-attention of {3, 7, 2} queries on {4, 2, 6} keys,
  // whose causal rule leaves rows of the second sequence no key (ctx 0, lse -inf on both backends).
  const double lim = std::is_same_v<T, double> ? 1e-12 : 1e-5;
  const index_t H = 3, D = 8;
  const AttentionPacking self = AttentionPacking::self(Packing({5, 1, 9}));
  const AttentionPacking cross(Packing({3, 7, 2}), Packing({4, 2, 6}));
  // Largest relative difference, an exact match (-inf lse included) counting as 0.
  auto lse_diff = [](const Tensor<cpu, T>& want, const Tensor<cuda, T>& got) {
    const Tensor<cpu, T> g = down<T>(got);
    double w = 0;
    for (index_t i = 0; i < want.numel(); ++i) {
      const double x = static_cast<double>(g.data()[i]), y = static_cast<double>(want.data()[i]);
      const double d = x == y ? 0.0 : std::abs(x - y) / std::max(1.0, std::abs(y));
      if (!(d <= w)) w = std::isnan(d) ? INFINITY : d;
    }
    return w;
  };
  auto same_bits = [](const Tensor<cuda, T>& a, const Tensor<cuda, T>& b) {
    const Tensor<cpu, T> x = down<T>(a), y = down<T>(b);
    return std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * sizeof(T)) == 0;
  };
  for (const AttentionPacking* pk : {&self, &cross})
    for (bool causal : {false, true})
      for (double p : {0.0, 0.2})
        for (bool with_bias : {true, false}) {
          INFO("cross ", pk == &cross, ", causal ", causal, ", dropout ", p, ", bias ", with_bias);
          const index_t Nq = pk->q.tokens(), Nk = pk->k.tokens(), pairs = H * pk->pairs();
          const auto q = host_random<T>(Shape{H, Nq, D}, 120), k = host_random<T>(Shape{H, Nk, D}, 121);
          const auto v = host_random<T>(Shape{H, Nk, D}, 122), bias = host_random<T>(Shape{pairs}, 123, -2, 2);
          const auto dctx = host_random<T>(Shape{H, Nq, D}, 124), dbias0 = host_random<T>(Shape{pairs}, 125);
          BlockwiseAttention<T> a;
          a.packing = pk;
          a.heads = H, a.d_head = D;
          a.causal = causal;
          a.scale = T(0.4);
          a.dropout = T(p);
          a.seed = 31, a.stream = 7;
          BlockwiseAttention<T> g = a;
          a.q = q.data(), a.k = k.data(), a.v = v.data(), a.bias = with_bias ? bias.data() : nullptr;
          Tensor<cpu, T> ctx(Shape{H, Nq, D}), lse(Shape{H, Nq}), dq(Shape{H, Nq, D}), dk(Shape{H, Nk, D}), dv(Shape{H, Nk, D});
          Tensor<cpu, T> dbias = dbias0.clone();
          C::blockwise_attention<T>(a, ctx.data(), lse.data());
          C::blockwise_attention_backward<T>(a, ctx.data(), lse.data(), dctx.data(), dq.data(), dk.data(), dv.data(),
                                             with_bias ? dbias.data() : nullptr);
          const auto gq = up<T>(q), gk = up<T>(k), gv = up<T>(v), gbias = up<T>(bias), gdctx = up<T>(dctx);
          g.q = gq.data(), g.k = gk.data(), g.v = gv.data(), g.bias = with_bias ? gbias.data() : nullptr;
          auto run = [&](Tensor<cuda, T>& gctx, Tensor<cuda, T>& glse, Tensor<cuda, T>& gdq, Tensor<cuda, T>& gdk,
                         Tensor<cuda, T>& gdv, Tensor<cuda, T>& gdbias) {
            gctx.resize(ctx.shape()), glse.resize(lse.shape()), gdq.resize(dq.shape()), gdk.resize(dk.shape()), gdv.resize(dv.shape());
            gdbias = up<T>(dbias0);
            G::fill<T>(gdq, T(7)), G::fill<T>(gdk, T(7)), G::fill<T>(gdv, T(7));  // written, not added to
            G::blockwise_attention<T>(g, gctx.data(), glse.data());
            G::blockwise_attention_backward<T>(g, gctx.data(), glse.data(), gdctx.data(), gdq.data(), gdk.data(), gdv.data(),
                                               with_bias ? gdbias.data() : nullptr);
          };
          Tensor<cuda, T> gctx, glse, gdq, gdk, gdv, gdbias;
          run(gctx, glse, gdq, gdk, gdv, gdbias);
          CHECK_CLOSE(ctx.cview(), gctx.cview(), lim);
          CHECK(lse_diff(lse, glse) <= lim);
          CHECK_CLOSE(dq.cview(), gdq.cview(), lim);
          CHECK_CLOSE(dk.cview(), gdk.cview(), lim);
          CHECK_CLOSE(dv.cview(), gdv.cview(), lim);
          CHECK_CLOSE(dbias.cview(), gdbias.cview(), lim);
          // No atomics: a second run gives the same bits.
          Tensor<cuda, T> rctx, rlse, rdq, rdk, rdv, rdbias;
          run(rctx, rlse, rdq, rdk, rdv, rdbias);
          CHECK(same_bits(gctx, rctx));
          CHECK(same_bits(glse, rlse));
          CHECK(same_bits(gdq, rdq));
          CHECK(same_bits(gdk, rdk));
          CHECK(same_bits(gdv, rdv));
          CHECK(same_bits(gdbias, rdbias));
        }
  // An empty packing is a no-op; a d_head past what a warp holds is refused by name.
  const AttentionPacking none;
  BlockwiseAttention<T> e;
  e.packing = &none;
  e.heads = 2, e.d_head = 4;
  G::blockwise_attention<T>(e, nullptr, nullptr);
  G::blockwise_attention_backward<T>(e, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  Tensor<cuda, T> big(Shape{2, 1, 129});
  const AttentionPacking one = AttentionPacking::self(Packing({1}));
  e.packing = &one;
  e.d_head = 129;
  e.q = e.k = e.v = big.data();
  CHECK(error_of([&] { G::blockwise_attention<T>(e, big.data(), big.data()); }).find("blockwise_attention: d_head 129 exceeds the 128") !=
        std::string::npos);
}

TEST_CASE("cuda: a few AdamW training steps give the CPU's loss sequence; steady state allocates nothing") {
  MathScope fp32(CudaMath::fp32);
  nn::T5Config cfg = small_config();
  cfg.dropout_rate = 0.1;
  nn::Ankh3Model<cpu, float> hm(cfg, 7);
  nn::Ankh3Model<cuda, float> gm(cfg, 7);
  optim::AdamW<cpu, float> hopt(hm.params());
  optim::AdamW<cuda, float> gopt(gm.params());
  const Batch batch;
  Tensor<cpu, float> scratch;
  std::int64_t allocations_after_warmup = 0;
  for (int step = 0; step < 6; ++step) {
    const double hl = model_step(hm, batch, scratch, 100 + step);
    const double gl = model_step(gm, batch, scratch, 100 + step);
    const double hn = optim::clip_grad_norm(hm.params(), 1.0), gn = optim::clip_grad_norm(gm.params(), 1.0);
    hopt.step(3e-3);
    gopt.step(3e-3);
    INFO("step ", step);
    CHECK(gl == doctest::Approx(hl).epsilon(1e-4));
    CHECK(gn == doctest::Approx(hn).epsilon(1e-4));
    if (step == 1) allocations_after_warmup = CudaContext::current().memory_stats().device_allocations;
  }
  // model_step builds fresh tensors each call: the cache hands the same blocks back
  CHECK(CudaContext::current().memory_stats().device_allocations == allocations_after_warmup);
}

TEST_CASE("cuda: objectives and samplers on device tensors") {
  // MultiTask
  const index_t Bn = 3, Tn = 4, V = 6;
  auto logits = host_random<double>(Shape{Bn, Tn, V}, 80, -2, 2);
  Tensor<cpu, std::int32_t> labels(Shape{Bn, Tn});
  const std::int32_t lv[12] = {3, 5, 1, -100, 4, 4, 2, 1, 5, 3, -100, -100};
  std::copy(lv, lv + 12, labels.data());
  objectives::MultiTask<cpu, double> hmt({{"nlu", 1.0}, {"s2s", 0.5}}, {3, 4, 5});
  objectives::MultiTask<cuda, double> gmt({{"nlu", 1.0}, {"s2s", 0.5}}, {3, 4, 5});
  Tensor<cpu, double> g(logits.shape());
  Tensor<cuda, double> gg(logits.shape());
  const auto hr = hmt(logits, labels, {0, 1, 0}, g);
  const auto gr = gmt(up<double>(logits).cview(), up<std::int32_t>(labels).cview(), {0, 1, 0}, gg);
  CHECK(gr.total == doctest::Approx(hr.total).epsilon(1e-12));
  CHECK(gr.tasks[1].residue_correct == hr.tasks[1].residue_correct);
  CHECK_CLOSE(g.cview(), gg.cview(), 1e-12);

  // attention-space contrastive loss on device probabilities
  const index_t N = 2, H = 2, L = 5;
  auto s = host_random<double>(Shape{N, H, L, L}, 81, -2, 2);
  Tensor<cpu, double> probs(s.shape());
  C::masked_softmax<double>(s, probs);
  Tensor<cpu, std::uint8_t> qv(Shape{N, L}), kv(Shape{N, L});
  C::fill<std::uint8_t>(qv, 1), C::fill<std::uint8_t>(kv, 1);
  qv.at(1, 4) = kv.at(1, 4) = 0;
  Tensor<cpu, double> dp(s.shape());
  Tensor<cuda, double> gdp(s.shape());
  const double hl = objectives::attention_to_uniform<cpu, double>(probs, qv, kv, objectives::UniformDistance::squared, 1.0, dp);
  const double gl = objectives::attention_to_uniform<cuda, double>(up<double>(probs).cview(), up<std::uint8_t>(qv).cview(),
                                                                   up<std::uint8_t>(kv).cview(), objectives::UniformDistance::squared,
                                                                   1.0, gdp);
  CHECK(gl == doctest::Approx(hl).epsilon(1e-12));
  CHECK_CLOSE(dp.cview(), gdp.cview(), 1e-12);

  // hard negatives: the similarity GEMM runs on the device
  const index_t P = 12, E = 8;
  auto emb = host_random<float>(Shape{P, E}, 82);
  std::vector<std::int32_t> labels_of;
  for (index_t i = 0; i < P; ++i) labels_of.push_back(i % 3 ? 0 : 1);
  const samplers::LabelIndex idx(labels_of);
  MathScope fp32(CudaMath::fp32);
  const auto hn = samplers::hard_negatives<cpu, float>(emb, idx, 3);
  const auto gn = samplers::hard_negatives<cuda, float>(up<float>(emb).cview(), idx, 3);
  CHECK(hn == gn);
}

TEST_CASE("cuda: errors name the problem") {
  Tensor<cuda, float> a(Shape{2, 3}), b(Shape{4, 5}), c(Shape{2, 5});
  CHECK(error_of([&] { G::matmul<float>(a, false, b, false, c); }).find("matmul: inner dimensions differ") != std::string::npos);
  CHECK(error_of([] { CudaContext bad(999); }).find("CudaContext: device 999 does not exist") != std::string::npos);
  const CudaMemoryStats s = CudaContext::current().memory_stats();
  CHECK(s.in_use > 0);
  CHECK(s.peak >= s.in_use);
}

#if defined(PLM_NCCL)
TEST_CASE("cuda: the NCCL communicator at world size 1, and DataParallel over it") {
  dist::SingleProcess host;
  dist::NcclCommunicator nccl(host);
  CHECK(nccl.size() == 1);
  CHECK(nccl.device_memory());
  const auto x = host_random<float>(Shape{7}, 90);
  auto d = up<float>(x);
  nccl.reduce_scatter(d.data(), {7}, DType::f32, "test reduce-scatter");
  nccl.all_gather(d.data(), {7}, DType::f32, "test all-gather");
  nccl.broadcast(d.data(), 7 * sizeof(float), 0, "test broadcast");
  Tensor<cuda, float> all(Shape{7}), back(Shape{7});
  nccl.gather(d.data(), all.data(), {7}, DType::f32, 0, "test gather");
  nccl.scatter(all.data(), back.data(), {7}, DType::f32, 0, "test scatter");
  std::vector<float> h(7);
  download(back.cview(), h.data());
  CHECK(std::memcmp(h.data(), x.data(), sizeof(float) * 7) == 0);
  CHECK(error_of([&] { nccl.all_gather(d.data(), {3, 4}, DType::f32, "two segments"); }).find("2 segments for 1 ranks") != std::string::npos);
  // A data-parallel step through it: the gradient of two micro-batches, summed on the device.
  nn::ParameterSet<cuda, float> ps;
  ps.add("w", Shape{3, 2}, 0.5);
  ps.allocate();
  ps.init(1);
  dist::DataParallel<cuda, float> dp(nccl, ps, {true, 2});
  const auto g = host_random<float>(Shape{6}, 91);
  for (int m = 0; m < 2; ++m) {
    upload(g.data(), ps.grads());
    dp.micro_batch_done();
  }
  CHECK(dp.reduce_gradients(0.0) == doctest::Approx(2 * std::sqrt(C::sum_squares<float>(g.cview()))).epsilon(1e-5));
  dp.finish_step();
}
#endif
