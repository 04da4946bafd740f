// Results of the CPU backend do not depend on the number of threads: every op
// at the shapes of a small T5 (d_model 128, 4 heads of 32, d_ff 320, 16
// sequences of about 100 tokens), then a whole Ankh3 model's logits, loss and
// gradients, run with 1, 2 and 3 threads and compared bit for bit. A training
// run is then reproducible whatever --threads says.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/cross_entropy.hpp"

using namespace plm;
using namespace plm::test;

namespace {

using F = float;
using FT = Tensor<cpu, F>;

// The bytes a run produced: named buffers, compared with memcmp.
struct Snapshot {
  std::vector<std::string> names;
  std::vector<std::vector<unsigned char>> bytes;
  template <class T>
  void add(const std::string& name, const T* p, index_t n) {
    names.push_back(name);
    const auto* b = reinterpret_cast<const unsigned char*>(p);
    bytes.emplace_back(b, b + static_cast<std::size_t>(n) * sizeof(T));
  }
  template <class T> void add(const std::string& name, const Tensor<cpu, T>& t) { add(name, t.data(), t.numel()); }
  template <class T> void add(const std::string& name, TensorView<cpu, T> t) { add(name, t.data(), t.numel()); }
  void add(const std::string& name, double v) { add(name, &v, 1); }
};

// Restores the thread count a test found.
struct ThreadGuard {
  int saved = num_threads();
  ~ThreadGuard() { set_num_threads(saved); }
};

// Runs `run` (which fills a Snapshot from fresh inputs) with 1, 2 and 3
// threads and expects the same bytes each time, naming the first buffer and
// element that differ.
void same_bits(const std::string& what, const std::function<void(Snapshot&)>& run) {
  ThreadGuard guard;
  Snapshot ref;
  set_num_threads(1);
  run(ref);
  for (int n : {2, 3}) {
    Snapshot s;
    set_num_threads(n);
    run(s);
    REQUIRE(s.names == ref.names);
    for (std::size_t i = 0; i < s.bytes.size(); ++i) {
      const auto& a = ref.bytes[i];
      const auto& b = s.bytes[i];
      REQUIRE(a.size() == b.size());
      const bool same = std::memcmp(a.data(), b.data(), a.size()) == 0;
      std::size_t first = 0;
      while (!same && first < a.size() && a[first] == b[first]) ++first;
      INFO(what, ": ", ref.names[i], ", ", n, " threads against 1: first different byte ", first, " of ", a.size());
      CHECK(same);
    }
  }
}

// The sizes of the model these checks stand for.
constexpr index_t Bn = 16, S = 100, C = 128, H = 4, Dk = 32, Dff = 320, V = 256;

}  // namespace

TEST_CASE("threads: cross-entropy loss sums and gradient") {
  for (const index_t vocab : {index_t{32}, V}) {
    for (const F smoothing : {F(0), F(0.1)}) {
      same_bits("cross_entropy V " + std::to_string(vocab), [&](Snapshot& s) {
        const FT logits = random_tensor<F>(Shape{Bn, S, vocab}, 1, -6, 6);
        Tensor<cpu, std::int32_t> targets(Shape{Bn, S});
        for (index_t i = 0; i < targets.numel(); ++i) targets.data()[i] = i % 7 == 0 ? -100 : static_cast<std::int32_t>((i * 37) % vocab);
        FT grad(logits.shape());
        const auto r = O::cross_entropy<F>(logits.cview(), targets.cview(), -100, smoothing, grad.view(), F(1) / F(1000));
        s.add("loss", r.loss);
        s.add("nll", r.nll);
        s.add("count", static_cast<double>(r.count));
        s.add("correct", static_cast<double>(r.correct));
        s.add("dlogits", grad);
      });
    }
  }
}

TEST_CASE("threads: GEMMs at the shapes of a small T5's linear layers and attention") {
  struct Case {
    const char* what;
    bool ta, tb;
    index_t m, n, k, batch;
    bool broadcast_b;  // one b for the whole batch (stride 0)
  };
  const index_t rows = Bn * S;
  const Case cases[] = {
      {"q/k/v/o forward", false, true, rows, C, C, 1, false},
      {"wi forward", false, true, rows, Dff, C, 1, false},
      {"wo forward", false, true, rows, C, Dff, 1, false},
      {"lm head forward", false, true, rows, V, C, 1, false},
      {"weight gradient (C x C)", true, false, C, C, rows, 1, false},
      {"weight gradient (Dff x C)", true, false, Dff, C, rows, 1, false},
      {"weight gradient (C x Dff)", true, false, C, Dff, rows, 1, false},
      {"weight gradient (V x C)", true, false, V, C, rows, 1, false},
      {"weight gradient, 1000 rows", true, false, C, C, 1000, 1, false},
      {"weight gradient, 1234 rows", true, false, C, Dff, 1234, 1, false},
      {"weight gradient, 1777 rows", true, false, Dff, C, 1777, 1, false},
      {"input gradient", false, false, rows, C, Dff, 1, false},
      {"input gradient of the lm head", false, false, rows, C, V, 1, false},
      {"scores Q K^T", false, true, S, S, Dk, Bn * H, false},
      {"context P V", false, false, S, Dk, S, Bn * H, false},
      {"dP = dctx V^T", false, true, S, S, Dk, Bn * H, false},
      {"dV = P^T dctx", true, false, S, Dk, S, Bn * H, false},
      {"dK = dS^T Q", true, false, S, Dk, S, Bn * H, false},
      {"long sequences (T = 300)", false, true, 300, 300, Dk, 2 * H, false},
      {"few large products", false, false, 600, 256, 256, 3, false},
      {"two row tiles over a long inner dimension", true, false, 520, 120, 1200, 1, false},
      {"row vector times matrix (pooling)", false, false, 1, C, S, Bn, false},
      {"matrix times column", false, false, 512, 1, 512, 2, false},
      {"one vector, one large matrix", false, true, 1, 4096, 512, 1, false},
      {"broadcast weight", false, true, S, C, C, Bn, true},
  };
  for (const Case& c : cases) {
    for (const F beta : {F(0), F(1)}) {
      same_bits(std::string("gemm ") + c.what + (beta != 0 ? ", accumulating" : ""), [&](Snapshot& s) {
        const index_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k, br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
        const FT a = random_tensor<F>(Shape{c.batch, ar, ac}, 2);
        const FT b = random_tensor<F>(Shape{c.broadcast_b ? 1 : c.batch, br, bc}, 3);
        FT out = random_tensor<F>(Shape{c.batch, c.m, c.n}, 4);
        O::gemm_strided_batched<F>(c.ta, c.tb, c.m, c.n, c.k, F(0.5), a.data(), ac, ar * ac, b.data(), bc,
                                   c.broadcast_b ? 0 : br * bc, beta, out.data(), c.n, c.m * c.n, c.batch);
        s.add("c", out);
      });
    }
  }
}

TEST_CASE("threads: GEMMs cut in tiles and inner chunks equal a plain product") {
  // Shapes whose plan (gemm_plan) has row tiles, column tiles, 2 x 2 tiles,
  // two inner-dimension chunks (the second ragged; one a vector times a
  // matrix) and a single piece, with every transpose and beta.
  struct Shape3 {
    index_t m, n, k;
  };
  const Shape3 shapes[] = {{1600, 72, 40}, {1040, 1100, 30}, {2100, 2100, 16}, {96, 80, 1700}, {1, 600, 4000}, {3, 5, 7}};
  for (const Shape3& sh : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const index_t m = sh.m, n = sh.n, k = sh.k;
        const index_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        const FT a = random_tensor<F>(Shape{ar, ac}, 31), b = random_tensor<F>(Shape{br, bc}, 32);
        // op(A) op(B) in double, and the sum of |terms| each element's rounding scales with.
        std::vector<double> dot(static_cast<std::size_t>(m * n)), mag(dot.size());
        for (index_t i = 0; i < m; ++i)
          for (index_t l = 0; l < k; ++l) {
            const double x = a.data()[ta ? l * ac + i : i * ac + l];
            for (index_t j = 0; j < n; ++j) {
              const double t = x * b.data()[tb ? j * bc + l : l * bc + j];
              dot[static_cast<std::size_t>(i * n + j)] += t, mag[static_cast<std::size_t>(i * n + j)] += std::abs(t);
            }
          }
        for (const double beta : {0.0, 1.0, -0.5}) {
          const FT c0 = random_tensor<F>(Shape{m, n}, 33);
          FT c = random_tensor<F>(Shape{m, n}, 33);
          const double alpha = 0.75;
          O::gemm_strided_batched<F>(ta, tb, m, n, k, F(alpha), a.data(), ac, 0, b.data(), bc, 0, F(beta), c.data(), n, 0, 1);
          double worst = 0;
          for (std::size_t e = 0; e < dot.size(); ++e) {
            const double before = c0.data()[e], want = alpha * dot[e] + beta * before;
            worst = std::max(worst, std::abs(c.data()[e] - want) / (alpha * mag[e] + std::abs(beta * before) + 1e-30));
          }
          const std::string what = "gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
                                   (ta ? " A^T" : "") + (tb ? " B^T" : "") + " beta " + std::to_string(beta);
          INFO(what, ": worst error ", worst);
          CHECK(worst < 1e-5);
        }
      }
}

TEST_CASE("threads: rms norm and layer norm, forward and backward") {
  for (const index_t width : {C, Dff}) {
    same_bits("rms_norm width " + std::to_string(width), [&](Snapshot& s) {
      const FT x = random_tensor<F>(Shape{Bn, S, width}, 5, -2, 2), w = random_tensor<F>(Shape{width}, 6, 0.5, 1.5);
      const FT dy = random_tensor<F>(x.shape(), 7);
      FT y(x.shape()), inv(Shape{Bn * S}), dx(x.shape());
      FT dw = random_tensor<F>(Shape{width}, 8);
      O::rms_norm<F>(x.cview(), w.cview(), F(1e-6), y.view(), inv.view());
      O::rms_norm_backward<F>(x.cview(), w.cview(), inv.cview(), dy.cview(), dx.view(), dw.view());
      s.add("y", y), s.add("inv_rms", inv), s.add("dx", dx), s.add("dweight", dw);
    });
    same_bits("layer_norm width " + std::to_string(width), [&](Snapshot& s) {
      const FT x = random_tensor<F>(Shape{Bn, S, width}, 9, -2, 2), w = random_tensor<F>(Shape{width}, 10, 0.5, 1.5);
      const FT b = random_tensor<F>(Shape{width}, 11), dy = random_tensor<F>(x.shape(), 12);
      FT y(x.shape()), mean(Shape{Bn * S}), rstd(Shape{Bn * S}), dx(x.shape());
      FT dw = random_tensor<F>(Shape{width}, 13), db = random_tensor<F>(Shape{width}, 14);
      O::layer_norm<F>(x.cview(), w.cview(), b.cview(), F(1e-5), y.view(), mean.view(), rstd.view());
      O::layer_norm_backward<F>(x.cview(), w.cview(), mean.cview(), rstd.cview(), dy.cview(), dx.view(), dw.view(), db.view());
      s.add("y", y), s.add("mean", mean), s.add("rstd", rstd), s.add("dx", dx), s.add("dweight", dw), s.add("dbias", db);
    });
  }
}

TEST_CASE("threads: sum_rows and whole-tensor reductions") {
  for (const index_t width : {index_t{1}, index_t{7}, C, Dff, index_t{4099}}) {
    same_bits("sum_rows width " + std::to_string(width), [&](Snapshot& s) {
      const FT x = random_tensor<F>(Shape{Bn * S, width}, 15);
      FT out = random_tensor<F>(Shape{width}, 16);
      O::sum_rows<F>(x.cview(), out.view(), F(1));
      s.add("out", out);
    });
  }
  for (const index_t n : {index_t{1000}, index_t{1} << 16, (index_t{1} << 20) + 77}) {
    same_bits("reductions of " + std::to_string(n) + " elements", [&](Snapshot& s) {
      const FT x = random_tensor<F>(Shape{n}, 17, -3, 3);
      s.add("sum", O::sum<F>(x.cview()));
      s.add("sum_squares", O::sum_squares<F>(x.cview()));
      s.add("all_finite", O::all_finite<F>(x.cview()) ? 1.0 : 0.0);
    });
  }
}

TEST_CASE("threads: masked softmax with a shared position bias, forward and backward") {
  for (const bool causal : {false, true}) {
    same_bits(std::string("masked_softmax") + (causal ? ", causal" : ""), [&](Snapshot& s) {
      const FT scores = random_tensor<F>(Shape{Bn, H, S, S}, 18, -4, 4), bias = random_tensor<F>(Shape{H, S, S}, 19);
      const FT dprobs = random_tensor<F>(scores.shape(), 20);
      Tensor<cpu, std::uint8_t> valid(Shape{Bn, S});
      for (index_t b = 0; b < Bn; ++b)
        for (index_t t = 0; t < S; ++t) valid.at(b, t) = t < S - 3 * b;
      FT probs(scores.shape()), dscores(scores.shape());
      FT dbias = random_tensor<F>(bias.shape(), 21);
      SoftmaxMask<cpu, F> mask;
      mask.key_valid = valid.cview(), mask.bias = bias.cview(), mask.causal = causal, mask.scale = F(1);
      O::masked_softmax<F>(scores.cview(), probs.view(), mask);
      O::masked_softmax_backward<F>(probs.cview(), dprobs.cview(), dscores.view(), F(1), dbias.view());
      s.add("probs", probs), s.add("dscores", dscores), s.add("dbias", dbias);
    });
  }
}

TEST_CASE("threads: activations, dropout, embeddings and the elementwise ops") {
  // Sizes that do not divide evenly by threads or by vector widths.
  for (const index_t n : {Bn * S * Dff, Bn * S * Dff + 13, index_t{70001}}) {
    same_bits("activations of " + std::to_string(n) + " elements", [&](Snapshot& s) {
      const FT x = random_tensor<F>(Shape{n}, 22, -5, 5), dy = random_tensor<F>(Shape{n}, 23);
      FT y(x.shape()), dx(x.shape());
      O::gelu<F>(x.cview(), y.view()), O::gelu_backward<F>(x.cview(), dy.cview(), dx.view());
      s.add("gelu", y), s.add("gelu backward", dx);
      O::gelu_erf<F>(x.cview(), y.view()), O::gelu_erf_backward<F>(x.cview(), dy.cview(), dx.view());
      s.add("gelu_erf", y), s.add("gelu_erf backward", dx);
      O::silu<F>(x.cview(), y.view()), O::silu_backward<F>(x.cview(), dy.cview(), dx.view());
      s.add("silu", y), s.add("silu backward", dx);
      O::relu<F>(x.cview(), y.view()), O::relu_backward<F>(x.cview(), dy.cview(), dx.view());
      s.add("relu", y), s.add("relu backward", dx);
      O::dropout<F>(x.cview(), y.view(), F(0.1), 7, 3), O::dropout_backward<F>(dy.cview(), dx.view(), F(0.1), 7, 3);
      s.add("dropout", y), s.add("dropout backward", dx);
      FT z(x.shape());
      O::add<F>(x.cview(), dy.cview(), z.view()), s.add("add", z);
      O::mul<F>(x.cview(), dy.cview(), z.view()), s.add("mul", z);
      O::axpy<F>(F(0.3), x.cview(), z.view()), s.add("axpy", z);
      O::scale<F>(x.cview(), F(1.7), z.view()), s.add("scale", z);
    });
  }
  same_bits("embedding gather and scatter_add", [&](Snapshot& s) {
    const FT table = random_tensor<F>(Shape{V, C}, 24), drows = random_tensor<F>(Shape{Bn, S, C}, 25);
    Tensor<cpu, std::int32_t> ids(Shape{Bn, S});
    for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = static_cast<std::int32_t>((i * i + 3) % 40);  // many repeats
    FT rows(Shape{Bn, S, C});
    FT dtable = random_tensor<F>(table.shape(), 26);
    O::gather<F>(table.cview(), ids.cview(), rows.view());
    O::scatter_add<F>(ids.cview(), drows.cview(), dtable.view());
    s.add("rows", rows), s.add("dtable", dtable);
  });
  same_bits("adamw_update", [&](Snapshot& s) {
    FT p = random_tensor<F>(Shape{Bn * S * 40 + 5}, 27), m = random_tensor<F>(p.shape(), 28), v = random_tensor<F>(p.shape(), 29, 0, 1);
    const FT g = random_tensor<F>(p.shape(), 30);
    O::adamw_update<F>(p.view(), g.cview(), m.view(), v.view(), 1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001);
    s.add("param", p), s.add("m", m), s.add("v", v);
  });
}

TEST_CASE("threads: a whole Ankh3 model's logits, loss and gradients") {
  nn::T5Config c = nn::T5Config::ankh3_small();
  c.d_model = C, c.d_kv = Dk, c.num_heads = H, c.d_ff = Dff, c.num_layers = 2, c.num_decoder_layers = 2;
  c.vocab_size = V, c.feed_forward_proj = "gated-silu", c.dropout_rate = 0.1;
  // 7 x 93 encoder and 7 x 45 decoder rows: weight gradients summed over row
  // counts that are not multiples of anything, as a token budget gives.
  const index_t Bm = 7, Sm = 93, Tm = 45;
  same_bits("Ankh3 model", [&](Snapshot& s) {
    nn::Ankh3Model<cpu, F> model(c, 3);
    Tensor<cpu, std::int32_t> src(Shape{Bm, Sm}), dec(Shape{Bm, Tm}), tgt(Shape{Bm, Tm});
    Tensor<cpu, std::uint8_t> valid(Shape{Bm, Sm});
    Philox rng(9);
    for (index_t b = 0; b < Bm; ++b) {
      const index_t len = Sm - 9 * b;  // padded rows of different lengths
      for (index_t t = 0; t < Sm; ++t) {
        valid.at(b, t) = t < len;
        src.at(b, t) = t < len ? 5 + static_cast<std::int32_t>(rng.below(25)) : 0;
      }
      for (index_t t = 0; t < Tm; ++t) {
        dec.at(b, t) = 5 + static_cast<std::int32_t>(rng.below(25));
        tgt.at(b, t) = t >= Tm - b ? -100 : 5 + static_cast<std::int32_t>(rng.below(25));
      }
    }
    FT logits(Shape{Bm, Tm, V}), dlogits(logits.shape());
    nn::Ankh3Model<cpu, F>::Cache cache;
    objectives::CrossEntropy<cpu, F> ce(-100);
    model.params().zero_grad();
    model.forward(src.cview(), valid.cview(), dec.cview(), logits.view(), cache, nn::Pass::train(4));
    const auto r = ce(logits, tgt, dlogits);
    model.backward(dlogits.cview(), cache);
    s.add("logits", logits);
    s.add("loss", static_cast<double>(r.loss));
    s.add("gradients", model.params().grads());
  });
}
