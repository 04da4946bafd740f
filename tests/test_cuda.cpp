// The cross-backend harness: every op of ops<cuda> against ops<cpu> on the same
// inputs, then layers, objectives, optimizers, samplers and a few training
// steps of a whole model on both backends.
//
// Tolerances (relative to max(1, |cpu|)): double 1e-10; float in CudaMath::fp32
// 1e-5 for elementwise and row ops, 1e-4 through a whole model; TF32 GEMMs
// 3e-3; bf16 GEMMs 3e-2. Dropout masks and bf16 conversions must be identical.
// main_cuda.cpp runs these only when a CUDA device is present.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/cuda.hpp"
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
template <class T> Tensor<cpu, T> clone_host(ConstView<cpu, T> x) {
  Tensor<cpu, T> t(x.shape());
  if (x.numel()) std::copy(x.data(), x.data() + x.numel(), t.data());
  return t;
}

// Largest |gpu - cpu| / max(1, |cpu|).
template <class T> double rel_diff(ConstView<cpu, T> cpu_result, ConstView<cuda, T> gpu_result) {
  return test::max_rel_diff<T, T>(down<T>(gpu_result), cpu_result);
}
template <class T> constexpr double gpu_tol() { return std::is_same_v<T, double> ? 1e-10 : 1e-5; }

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

TEST_CASE_TEMPLATE("cuda: elementwise, broadcasts, sums, transpose", T, float, double) {
  MathScope fp32(CudaMath::fp32);
  auto a = host_random<T>(Shape{3, 5, 7}, 1), b = host_random<T>(Shape{3, 5, 7}, 2);
  auto row = host_random<T>(Shape{7}, 3);
  auto da = up<T>(a), db = up<T>(b), drow = up<T>(row);
  Tensor<cpu, T> out(a.shape());
  Tensor<cuda, T> dout(a.shape());
  C::add<T>(a, b, out), G::add<T>(da, db, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::sub<T>(a, b, out), G::sub<T>(da, db, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::mul<T>(a, b, out), G::mul<T>(da, db, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::scale<T>(a, T(-1.5), out), G::scale<T>(da, T(-1.5), dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::axpy<T>(T(0.25), b, out), G::axpy<T>(T(0.25), db, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::add_row<T>(a, row, out), G::add_row<T>(da, drow, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  C::mul_row<T>(a, row, out), G::mul_row<T>(da, drow, dout);
  CHECK_CLOSE(out.cview(), dout.cview(), gpu_tol<T>());
  auto acc = clone_host<T>(row);
  auto dacc = up<T>(row);
  C::sum_rows<T>(a, acc, T(0.5)), G::sum_rows<T>(da, dacc, T(0.5));
  CHECK_CLOSE(acc.cview(), dacc.cview(), gpu_tol<T>());
  C::fill<T>(out, T(2.5)), G::fill<T>(dout, T(2.5));
  CHECK_CLOSE(out.cview(), dout.cview(), 0.0);
  auto x4 = host_random<T>(Shape{2, 3, 4, 5}, 4);
  Tensor<cpu, T> t4(Shape{2, 4, 3, 5});
  Tensor<cuda, T> dt4(Shape{2, 4, 3, 5});
  C::transpose12<T>(x4, t4), G::transpose12<T>(up<T>(x4).cview(), dt4);
  CHECK_CLOSE(t4.cview(), dt4.cview(), 0.0);
  Tensor<cuda, T> dcopy(a.shape());
  G::copy<T>(da, dcopy);
  CHECK_CLOSE(a.cview(), dcopy.cview(), 0.0);
  // the same shape errors as the CPU
  CHECK(error_of([&] { G::add<T>(da, drow.cview().reshape(Shape{7}), dout); }).find("add: a (3, 5, 7) and b (7) must have the same shape") !=
        std::string::npos);
}

TEST_CASE("cuda: conversions to and from bf16 are bit-identical to the host") {
  auto x = host_random<float>(Shape{1000}, 5, -300, 300);
  x.data()[0] = std::numeric_limits<float>::quiet_NaN();
  x.data()[1] = std::numeric_limits<float>::infinity();
  x.data()[2] = 1.00390625f;  // a tie: rounds to even
  Tensor<cpu, bf16> h(x.shape());
  C::convert<float, bf16>(x, h);
  Tensor<cuda, bf16> d(x.shape());
  G::convert<float, bf16>(up<float>(x).cview(), d);
  const Tensor<cpu, bf16> back = down<bf16>(d);
  int same = 0;
  for (index_t i = 0; i < x.numel(); ++i) same += back.data()[i] == h.data()[i];
  CHECK(same == x.numel());
  Tensor<cuda, float> f(x.shape());
  G::convert<bf16, float>(d.cview(), f);
  Tensor<cpu, float> hf(x.shape());
  C::convert<bf16, float>(h, hf);
  const auto gf = down<float>(f);
  CHECK(std::memcmp(gf.data(), hf.data(), sizeof(float) * 1000) == 0);
}

TEST_CASE_TEMPLATE("cuda: GEMM in every transpose, batched and broadcast", T, float, double) {
  MathScope fp32(CudaMath::fp32);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const index_t Bn = 3, M = 17, K = 33, N = 9;
      auto a = host_random<T>(ta ? Shape{Bn, K, M} : Shape{Bn, M, K}, 10 + ta);
      auto b = host_random<T>(tb ? Shape{Bn, N, K} : Shape{Bn, K, N}, 12 + tb);
      auto c = host_random<T>(Shape{Bn, M, N}, 14);
      auto dc = up<T>(c);
      C::matmul<T>(a, ta, b, tb, c, T(0.5), T(2));
      G::matmul<T>(up<T>(a).cview(), ta, up<T>(b).cview(), tb, dc, T(0.5), T(2));
      INFO("trans_a ", ta, " trans_b ", tb);
      CHECK_CLOSE(c.cview(), dc.cview(), gpu_tol<T>() * 10);
      // rank-2 b broadcast over the batch
      auto w = host_random<T>(tb ? Shape{N, K} : Shape{K, N}, 16);
      C::matmul<T>(a, ta, w, tb, c);
      G::matmul<T>(up<T>(a).cview(), ta, up<T>(w).cview(), tb, dc);
      CHECK_CLOSE(c.cview(), dc.cview(), gpu_tol<T>() * 10);
    }
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

TEST_CASE_TEMPLATE("cuda: masked softmax with bias, padding and causal rule, and its backward", T, float, double) {
  const index_t Bn = 2, H = 3, Tq = 5, Tk = 7;
  auto s = host_random<T>(Shape{Bn, H, Tq, Tk}, 30, -3, 3);
  auto shared_bias = host_random<T>(Shape{H, Tq, Tk}, 31);
  auto full_bias = host_random<T>(Shape{Bn, H, Tq, Tk}, 32);
  Tensor<cpu, std::uint8_t> valid(Shape{Bn, Tk});
  for (index_t b = 0; b < Bn; ++b)
    for (index_t j = 0; j < Tk; ++j) valid.at(b, j) = j < Tk - 2 * b;
  valid.at(0, 0) = 0;
  auto ds = up<T>(s), dsb = up<T>(shared_bias), dfb = up<T>(full_bias);
  auto dvalid = up<std::uint8_t>(valid);
  for (int variant = 0; variant < 4; ++variant) {
    SoftmaxMask<cpu, T> hm;
    SoftmaxMask<cuda, T> gm;
    hm.scale = gm.scale = T(0.7);
    if (variant == 0 || variant == 2) hm.bias = shared_bias, gm.bias = dsb;
    if (variant == 1) hm.bias = full_bias, gm.bias = dfb;
    if (variant >= 1) hm.key_valid = valid, gm.key_valid = dvalid;
    if (variant >= 2) hm.causal = gm.causal = true;
    Tensor<cpu, T> p(s.shape());
    Tensor<cuda, T> dp(s.shape());
    C::masked_softmax<T>(s, p, hm);
    G::masked_softmax<T>(ds, dp, gm);
    INFO("variant ", variant);
    CHECK_CLOSE(p.cview(), dp.cview(), gpu_tol<T>());
    auto dy = host_random<T>(s.shape(), 33);
    Tensor<cpu, T> g(s.shape()), gb(Shape{H, Tq, Tk}), gbf(s.shape());
    Tensor<cuda, T> dg(s.shape());
    auto dgb = up<T>(clone_host<T>(shared_bias)), dgbf = up<T>(clone_host<T>(full_bias));
    gb = clone_host<T>(shared_bias), gbf = clone_host<T>(full_bias);  // backward adds into dbias
    C::masked_softmax_backward<T>(p, dy, g, T(0.7), variant == 1 ? gbf.view() : gb.view());
    G::masked_softmax_backward<T>(dp, up<T>(dy).cview(), dg, T(0.7), variant == 1 ? dgbf.view() : dgb.view());
    CHECK_CLOSE(g.cview(), dg.cview(), gpu_tol<T>());
    CHECK_CLOSE(gb.cview(), dgb.cview(), gpu_tol<T>());
    CHECK_CLOSE(gbf.cview(), dgbf.cview(), gpu_tol<T>());
  }
}

TEST_CASE_TEMPLATE("cuda: RMS norm, layer norm, activations and their backward", T, float, double) {
  const index_t R = 6, Cn = 40;
  auto x = host_random<T>(Shape{2, 3, Cn}, 40), w = host_random<T>(Shape{Cn}, 41), bias = host_random<T>(Shape{Cn}, 42);
  auto dy = host_random<T>(x.shape(), 43);
  auto dx_ = up<T>(x), dw_ = up<T>(w), db_ = up<T>(bias), ddy = up<T>(dy);
  Tensor<cpu, T> y(x.shape()), inv(Shape{R}), mean(Shape{R}), dx(x.shape());
  Tensor<cuda, T> gy(x.shape()), ginv(Shape{R}), gmean(Shape{R}), gdx(x.shape());
  C::rms_norm<T>(x, w, T(1e-6), y, inv);
  G::rms_norm<T>(dx_, dw_, T(1e-6), gy, ginv);
  CHECK_CLOSE(y.cview(), gy.cview(), gpu_tol<T>());
  CHECK_CLOSE(inv.cview(), ginv.cview(), gpu_tol<T>());
  auto gw = clone_host<T>(w);
  auto dgw = up<T>(w);
  C::rms_norm_backward<T>(x, w, inv, dy, dx, gw);
  G::rms_norm_backward<T>(dx_, dw_, ginv, ddy, gdx, dgw);
  CHECK_CLOSE(dx.cview(), gdx.cview(), gpu_tol<T>());
  CHECK_CLOSE(gw.cview(), dgw.cview(), gpu_tol<T>());
  C::layer_norm<T>(x, w, bias, T(1e-5), y, mean, inv);
  G::layer_norm<T>(dx_, dw_, db_, T(1e-5), gy, gmean, ginv);
  CHECK_CLOSE(y.cview(), gy.cview(), gpu_tol<T>());
  CHECK_CLOSE(mean.cview(), gmean.cview(), gpu_tol<T>());
  auto gbias = clone_host<T>(bias);
  auto dgbias = up<T>(bias);
  C::layer_norm_backward<T>(x, w, mean, inv, dy, dx, gw, gbias);
  G::layer_norm_backward<T>(dx_, dw_, gmean, ginv, ddy, gdx, dgw, dgbias);
  CHECK_CLOSE(dx.cview(), gdx.cview(), gpu_tol<T>());
  CHECK_CLOSE(gw.cview(), dgw.cview(), gpu_tol<T>());
  CHECK_CLOSE(gbias.cview(), dgbias.cview(), gpu_tol<T>());
  auto xa = host_random<T>(Shape{1000}, 44, -6, 6);
  xa.data()[0] = T(0);
  auto dya = host_random<T>(Shape{1000}, 45);
  auto gxa = up<T>(xa), gdya = up<T>(dya);
  Tensor<cpu, T> ya(Shape{1000});
  Tensor<cuda, T> gya(Shape{1000});
  C::gelu<T>(xa, ya), G::gelu<T>(gxa, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), gpu_tol<T>());
  C::gelu_backward<T>(xa, dya, ya), G::gelu_backward<T>(gxa, gdya, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), gpu_tol<T>());
  C::silu<T>(xa, ya), G::silu<T>(gxa, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), gpu_tol<T>());
  C::silu_backward<T>(xa, dya, ya), G::silu_backward<T>(gxa, gdya, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), gpu_tol<T>());
  C::relu<T>(xa, ya), G::relu<T>(gxa, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), 0.0);
  C::relu_backward<T>(xa, dya, ya), G::relu_backward<T>(gxa, gdya, gya);
  CHECK_CLOSE(ya.cview(), gya.cview(), 0.0);
}

TEST_CASE_TEMPLATE("cuda: embedding gather and scatter-add, with the CPU's id errors", T, float, double) {
  const index_t V = 9, Cn = 6;
  auto table = host_random<T>(Shape{V, Cn}, 50);
  Tensor<cpu, std::int32_t> ids(Shape{4, 5});
  Philox rng(3);
  for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = static_cast<std::int32_t>(rng.below(V));
  ids.data()[7] = ids.data()[3];  // repeated ids accumulate
  auto gtable = up<T>(table);
  auto gids = up<std::int32_t>(ids);
  Tensor<cpu, T> rows(Shape{4, 5, Cn});
  Tensor<cuda, T> grows(Shape{4, 5, Cn});
  C::gather<T>(table, ids, rows), G::gather<T>(gtable, gids, grows);
  CHECK_CLOSE(rows.cview(), grows.cview(), 0.0);
  auto drows = host_random<T>(rows.shape(), 51);
  auto dtable = clone_host<T>(table);
  auto gdtable = up<T>(table);
  C::scatter_add<T>(ids, drows, dtable), G::scatter_add<T>(gids, up<T>(drows).cview(), gdtable);
  CHECK_CLOSE(dtable.cview(), gdtable.cview(), gpu_tol<T>());
  ids.data()[13] = 12;
  auto bad = up<std::int32_t>(ids);
  const std::string ec = error_of([&] { C::gather<T>(table, ids, rows); });
  const std::string eg = error_of([&] { G::gather<T>(gtable, bad, grows); });
  CHECK(eg.find("gather: id 12 at flat position 13 of ids (4, 5) is outside the table's 9 rows") != std::string::npos);
  CHECK(ec.substr(0, ec.find('[')) == eg.substr(0, eg.find('[')));
}

TEST_CASE_TEMPLATE("cuda: reductions, dropout masks, cross-entropy", T, float, double) {
  auto x = host_random<T>(Shape{100003}, 60);
  auto gx = up<T>(x);
  CHECK(G::sum<T>(gx) == doctest::Approx(C::sum<T>(x)).epsilon(1e-9));
  CHECK(G::sum_squares<T>(gx) == doctest::Approx(C::sum_squares<T>(x)).epsilon(1e-9));
  CHECK(G::all_finite<T>(gx));
  x.data()[777] = std::numeric_limits<T>::quiet_NaN();
  CHECK_FALSE(G::all_finite<T>(up<T>(x).cview()));
  x.data()[777] = T(0);

  // dropout: exactly the elements the CPU drops
  Tensor<cpu, T> y(x.shape());
  Tensor<cuda, T> gy(x.shape());
  C::dropout<T>(x, y, T(0.3), 1234, 77);
  G::dropout<T>(up<T>(x).cview(), gy, T(0.3), 1234, 77);
  CHECK_CLOSE(y.cview(), gy.cview(), 0.0);
  C::dropout_backward<T>(x, y, T(0.3), 1234, 77);
  G::dropout_backward<T>(up<T>(x).cview(), gy, T(0.3), 1234, 77);
  CHECK_CLOSE(y.cview(), gy.cview(), 0.0);

  // cross-entropy: sums, per-row outputs and the fused gradient
  const index_t R = 37, V = 300;
  auto logits = host_random<T>(Shape{R, V}, 61, -4, 4);
  Tensor<cpu, std::int32_t> tg(Shape{R});
  for (index_t r = 0; r < R; ++r) tg.data()[r] = r % 5 == 0 ? -100 : static_cast<std::int32_t>((r * 37) % V);
  auto scale = host_random<T>(Shape{R}, 62, 0.5, 2);
  Tensor<cpu, T> g(logits.shape()), rl(Shape{R});
  Tensor<cpu, std::uint8_t> rc(Shape{R});
  Tensor<cuda, T> gg(logits.shape()), grl(Shape{R});
  Tensor<cuda, std::uint8_t> grc(Shape{R});
  auto gscale = up<T>(scale);
  auto glogits = up<T>(logits);
  auto gtg = up<std::int32_t>(tg);
  for (double smoothing : {0.0, 0.1}) {
    CrossEntropyRows<cpu, T> hr{scale, rl, rc};
    CrossEntropyRows<cuda, T> gr{gscale, grl, grc};
    const auto hs = C::cross_entropy<T>(logits, tg, -100, T(smoothing), g, T(1), hr);
    const auto gs = G::cross_entropy<T>(glogits, gtg, -100, T(smoothing), gg, T(1), gr);
    CHECK(gs.count == hs.count);
    CHECK(gs.correct == hs.correct);
    CHECK(gs.loss == doctest::Approx(hs.loss).epsilon(1e-6));
    CHECK(gs.nll == doctest::Approx(hs.nll).epsilon(1e-6));
    CHECK_CLOSE(g.cview(), gg.cview(), gpu_tol<T>());
    CHECK_CLOSE(rl.cview(), grl.cview(), gpu_tol<T>());
    CHECK_CLOSE(rc.cview(), grc.cview(), 0.0);
  }
  tg.data()[4] = V + 3;
  const std::string eg = error_of([&] { G::cross_entropy<T>(glogits, up<std::int32_t>(tg).cview(), -100); });
  CHECK(eg.find("cross_entropy: target 303 at row 4 is outside the vocabulary of 300") != std::string::npos);
}

TEST_CASE_TEMPLATE("cuda: AdamW and Adafactor steps", T, float, double) {
  auto p = host_random<T>(Shape{12, 20}, 70), g = host_random<T>(Shape{12, 20}, 71);
  auto m = host_random<T>(Shape{12, 20}, 72, 0, 0.1), v = host_random<T>(Shape{12, 20}, 73, 0, 0.1);
  auto gp = up<T>(p), gg = up<T>(g), gm = up<T>(m), gv = up<T>(v);
  C::adamw_update<T>(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.19, 0.002);
  G::adamw_update<T>(gp, gg, gm, gv, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.19, 0.002);
  CHECK_CLOSE(p.cview(), gp.cview(), gpu_tol<T>());
  CHECK_CLOSE(m.cview(), gm.cview(), gpu_tol<T>());
  CHECK_CLOSE(v.cview(), gv.cview(), gpu_tol<T>());
  for (int factored = 0; factored < 2; ++factored) {
    Tensor<cpu, T> row(factored ? Shape{12} : Shape{240}), col(Shape{20}), mom(Shape{12, 20}), scratch(Shape{12, 20});
    C::fill<T>(row, T(0)), C::fill<T>(col, T(0)), C::fill<T>(mom, T(0));
    auto grow = up<T>(row), gcol = up<T>(col), gmom = up<T>(mom);
    Tensor<cuda, T> gscratch(Shape{12, 20});
    for (int step = 0; step < 3; ++step) {
      C::adafactor_update<T>(p, g, row, factored ? col.view() : TensorView<cpu, T>{},
                             mom, scratch, 1e-2, 0.8, 1e-30, 1.0, 0.9, 0.01);
      G::adafactor_update<T>(gp, gg, grow, factored ? gcol.view() : TensorView<cuda, T>{}, gmom, gscratch, 1e-2, 0.8, 1e-30, 1.0, 0.9,
                             0.01);
    }
    INFO("factored ", factored);
    CHECK_CLOSE(p.cview(), gp.cview(), gpu_tol<T>() * 10);
    CHECK_CLOSE(row.cview(), grow.cview(), gpu_tol<T>() * 10);
    CHECK_CLOSE(mom.cview(), gmom.cview(), gpu_tol<T>() * 10);
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
  m.forward(src, valid, dec, logits, cache, dropout_seed);
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
