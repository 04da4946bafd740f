// ops<cpu> forward ops against naive references, on random shapes with odd
// sizes, in float and double; and the shape errors each op raises.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops_test_support.hpp"

using namespace plm;
using namespace plm::test;

namespace {

// C_b = alpha op(A_b) op(B_b) + beta C_b, with the same raw strided layout as gemm_strided_batched.
template <class T>
void naive_gemm(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, index_t sa,
                const T* b, index_t ldb, index_t sb, T beta, T* c, index_t ldc, index_t sc, index_t batch) {
  for (index_t q = 0; q < batch; ++q)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        long double s = 0;
        for (index_t p = 0; p < k; ++p) {
          const T av = ta ? a[q * sa + p * lda + i] : a[q * sa + i * lda + p];
          const T bv = tb ? b[q * sb + j * ldb + p] : b[q * sb + p * ldb + j];
          s += static_cast<long double>(av) * bv;
        }
        T& cv = c[q * sc + i * ldc + j];
        cv = static_cast<T>(alpha * s + (beta == T(0) ? 0.0L : static_cast<long double>(beta) * cv));
      }
}

}  // namespace

TEST_CASE_TEMPLATE("gemm_strided_batched: transposes, alpha/beta, padding, broadcast", T, float, double) {
  const index_t sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 48, 96}, {130, 3, 9}, {5, 129, 1}};
  std::uint64_t stream = 1;
  for (auto& sz : sizes)
    for (int flags = 0; flags < 4; ++flags) {
      const bool ta = flags & 1, tb = flags & 2;
      const index_t m = sz[0], n = sz[1], k = sz[2], batch = 3;
      const index_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      const index_t sa = (ta ? k : m) * lda, sb = 0 /* broadcast B */, sc = m * ldc + 5;
      auto a = random_tensor<T>(Shape{batch * sa}, stream++);
      auto b = random_tensor<T>(Shape{(tb ? n : k) * ldb}, stream++);
      auto c = random_tensor<T>(Shape{batch * sc}, stream++);
      auto ref = c.clone();
      const T alpha = T(0.75), beta = flags == 3 ? T(0) : T(-0.5);
      O::gemm_strided_batched<T>(ta, tb, m, n, k, alpha, a.data(), lda, sa, b.data(), ldb, sb, beta, c.data(), ldc, sc, batch);
      naive_gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, sa, b.data(), ldb, sb, beta, ref.data(), ldc, sc, batch);
      INFO("m=", m, " n=", n, " k=", k, " ta=", ta, " tb=", tb);
      CHECK(max_rel_diff<T, T>(c, ref) < tol<T>() * double(k + 1));
    }
}

TEST_CASE_TEMPLATE("matmul: batched, broadcast weights, flattened rows", T, float, double) {
  // (B, T, C) x W^T (O, C) -> (B, T, O): the Linear layer's product
  auto x = random_tensor<T>(Shape{3, 7, 10}, 1);
  auto w = random_tensor<T>(Shape{6, 10}, 2);
  Tensor<cpu, T> y(Shape{3, 7, 6}), ref(Shape{3, 7, 6});
  O::matmul<T>(x, false, w, true, y);
  naive_gemm<T>(false, true, 21, 6, 10, T(1), x.data(), 10, 0, w.data(), 10, 0, T(0), ref.data(), 6, 0, 1);
  CHECK(max_rel_diff<T, T>(y, ref) < tol<T>() * 11);

  // (B, H, T, D) x (B, H, T, D)^T -> (B, H, T, T): attention scores
  auto q = random_tensor<T>(Shape{2, 3, 5, 4}, 3);
  auto k = random_tensor<T>(Shape{2, 3, 9, 4}, 4);
  Tensor<cpu, T> s(Shape{2, 3, 5, 9}), sref(Shape{2, 3, 5, 9});
  O::matmul<T>(q, false, k, true, s, T(0.5));
  naive_gemm<T>(false, true, 5, 9, 4, T(0.5), q.data(), 4, 20, k.data(), 4, 36, T(0), sref.data(), 9, 45, 6);
  CHECK(max_rel_diff<T, T>(s, sref) < tol<T>() * 5);

  // dW (O, C) += dy^T x over flattened rows, beta = 1 accumulates
  auto dy = random_tensor<T>(Shape{21, 6}, 5);
  auto dw = random_tensor<T>(Shape{6, 10}, 6);
  auto dwref = dw.clone();
  O::matmul<T>(dy, true, x.reshape(Shape{21, 10}), false, dw, T(1), T(1));
  naive_gemm<T>(true, false, 6, 10, 21, T(1), dy.data(), 6, 0, x.data(), 10, 0, T(1), dwref.data(), 10, 0, 1);
  CHECK(max_rel_diff<T, T>(dw, dwref) < tol<T>() * 22);

  // rank-2 a broadcast against batched b
  auto a2 = random_tensor<T>(Shape{4, 5}, 7);
  auto b3 = random_tensor<T>(Shape{3, 5, 2}, 8);
  Tensor<cpu, T> c3(Shape{3, 4, 2}), c3ref(Shape{3, 4, 2});
  O::matmul<T>(a2, false, b3, false, c3);
  naive_gemm<T>(false, false, 4, 2, 5, T(1), a2.data(), 5, 0, b3.data(), 2, 10, T(0), c3ref.data(), 2, 8, 3);
  CHECK(max_rel_diff<T, T>(c3, c3ref) < tol<T>() * 6);
}

TEST_CASE("matmul and gemm report bad shapes with the op and the shapes") {
  Tensor<cpu, float> a(Shape{2, 3}), b(Shape{4, 5}), c(Shape{2, 5});
  check_error([&] { O::matmul<float>(a, false, b, false, c); }, "matmul: inner dimensions differ", "(2, 3)", "(4, 5)");
  Tensor<cpu, float> b2(Shape{3, 5}), c2(Shape{2, 4});
  check_error([&] { O::matmul<float>(a, false, b2, false, c2); }, "matmul: output shape", "(2, 4)");
  Tensor<cpu, float> x(Shape{2, 3, 3}), y(Shape{4, 3, 3}), z(Shape{2, 3, 3});
  check_error([&] { O::matmul<float>(x, false, y, false, z); }, "matmul: batch dimensions of b and c differ", "(4, 3, 3)");
  Tensor<cpu, float> v(Shape{3});
  check_error([&] { O::matmul<float>(v, false, b2, false, c); }, "matmul: operands need rank >= 2", "(3,)");
  check_error([&] { O::gemm_strided_batched<float>(false, false, 4, 4, 4, 1.f, a.data(), 2, 0, a.data(), 4, 0, 0.f, c.data(), 4, 0, 1); },
              "gemm: leading dimensions lda=2");
}

TEST_CASE_TEMPLATE("elementwise arithmetic, row broadcasts, reductions", T, float, double) {
  const Shape s{3, 5, 7};
  auto a = random_tensor<T>(s, 1), b = random_tensor<T>(s, 2);
  Tensor<cpu, T> out(s);
  auto each = [&](auto f) {
    double w = 0;
    for (index_t i = 0; i < s.numel(); ++i) w = std::max(w, std::abs(double(out.data()[i]) - f(i)));
    return w;
  };
  O::add<T>(a, b, out);
  CHECK(each([&](index_t i) { return double(a.data()[i]) + b.data()[i]; }) < tol<T>());
  O::sub<T>(a, b, out);
  CHECK(each([&](index_t i) { return double(a.data()[i]) - b.data()[i]; }) < tol<T>());
  O::mul<T>(a, b, out);
  CHECK(each([&](index_t i) { return double(a.data()[i]) * b.data()[i]; }) < tol<T>());
  O::scale<T>(a, T(-3), out);
  CHECK(each([&](index_t i) { return -3.0 * a.data()[i]; }) < tol<T>());
  O::copy<T>(b, out);
  O::axpy<T>(T(2), a, out);
  CHECK(each([&](index_t i) { return double(b.data()[i]) + 2.0 * a.data()[i]; }) < tol<T>());
  O::fill<T>(out, T(1.5));
  CHECK(each([](index_t) { return 1.5; }) == 0);

  auto row = random_tensor<T>(Shape{7}, 3);
  O::add_row<T>(a, row, out);
  CHECK(each([&](index_t i) { return double(a.data()[i]) + row.data()[i % 7]; }) < tol<T>());
  O::mul_row<T>(a, row, out);
  CHECK(each([&](index_t i) { return double(a.data()[i]) * row.data()[i % 7]; }) < tol<T>());

  Tensor<cpu, T> cs(Shape{7});
  O::fill<T>(cs, T(1));
  O::sum_rows<T>(a, cs, T(2));  // 2 * 1 + column sums
  for (index_t c = 0; c < 7; ++c) {
    double want = 2;
    for (index_t r = 0; r < 15; ++r) want += a.data()[r * 7 + c];
    CHECK(std::abs(cs.data()[c] - want) < tol<T>() * 16);
  }

  double sum = 0, sq = 0;
  for (index_t i = 0; i < s.numel(); ++i) {
    sum += a.data()[i];
    sq += double(a.data()[i]) * a.data()[i];
  }
  CHECK(O::sum<T>(a) == doctest::Approx(sum).epsilon(1e-12));
  CHECK(O::sum_squares<T>(a) == doctest::Approx(sq).epsilon(1e-12));
  CHECK(O::all_finite<T>(a));
  out.at(1, 2, 3) = std::numeric_limits<T>::quiet_NaN();
  CHECK_FALSE(O::all_finite<T>(out));
  out.at(1, 2, 3) = -std::numeric_limits<T>::infinity();
  CHECK_FALSE(O::all_finite<T>(out));

  // in-place use: out aliases an input
  auto c = a.clone();
  O::add<T>(c, b, c);
  O::sub<T>(c, b, c);
  CHECK(max_rel_diff<T, T>(c, a) < tol<T>());

  // large enough to run threaded: the result must not depend on the split
  auto big = random_tensor<T>(Shape{301, 257}, 9);
  Tensor<cpu, T> colsum(Shape{257});
  O::sum_rows<T>(big, colsum);
  set_num_threads(1);
  Tensor<cpu, T> colsum1(Shape{257});
  O::sum_rows<T>(big, colsum1);
  const double s1 = O::sum<T>(big);
  set_num_threads(2);
  CHECK(O::sum<T>(big) == s1);
  CHECK(std::memcmp(colsum.data(), colsum1.data(), 257 * sizeof(T)) == 0);
}

TEST_CASE("elementwise ops report bad shapes") {
  Tensor<cpu, float> a(Shape{2, 3}), b(Shape{3, 2}), r(Shape{2});
  check_error([&] { O::add<float>(a, b, a); }, "add: a (2, 3) and b (3, 2) must have the same shape");
  check_error([&] { O::mul<float>(a, a, b); }, "mul: a (2, 3) and out (3, 2)");
  check_error([&] { O::axpy<float>(1.f, a, b); }, "axpy:", "(2, 3)", "(3, 2)");
  check_error([&] { O::add_row<float>(a, r, a); }, "add_row: row has shape (2,), expected (3,)");
  check_error([&] { O::sum_rows<float>(a, r); }, "sum_rows: out has shape (2,), expected (3,)");
  check_error([&] { O::copy<float>(a, b); }, "copy: src (2, 3) and dst (3, 2)");
  Tensor<cpu, float> x4(Shape{1, 2, 3, 4}), y4(Shape{1, 2, 3, 4});
  check_error([&] { O::transpose12<float>(x4, y4); }, "transpose12: out (1, 2, 3, 4) should be (1, 3, 2, 4)");
}

TEST_CASE("transpose12 and convert") {
  auto x = random_tensor<float>(Shape{2, 3, 5, 4}, 1);
  Tensor<cpu, float> y(Shape{2, 5, 3, 4}), back(Shape{2, 3, 5, 4});
  O::transpose12<float>(x, y);
  for (index_t a = 0; a < 2; ++a)
    for (index_t b = 0; b < 3; ++b)
      for (index_t c = 0; c < 5; ++c)
        for (index_t d = 0; d < 4; ++d) CHECK(y.at(a, c, b, d) == x.at(a, b, c, d));
  O::transpose12<float>(y, back);
  CHECK(std::memcmp(back.data(), x.data(), x.numel() * sizeof(float)) == 0);

  Tensor<cpu, bf16> h(x.shape());
  Tensor<cpu, double> d(x.shape());
  O::convert<float, bf16>(x, h);
  O::convert<bf16, double>(h, d);
  for (index_t i = 0; i < x.numel(); ++i) {
    CHECK(h.data()[i] == bf16(x.data()[i]));
    CHECK(std::abs(d.data()[i] - x.data()[i]) <= std::abs(x.data()[i]) / 256);
  }
}

namespace {
template <class T>
void naive_masked_softmax(const Tensor<cpu, T>& s, const SoftmaxMask<cpu, T>& m, Tensor<cpu, T>& p) {
  const index_t B = s.dim(0), H = s.dim(1), Tq = s.dim(2), Tk = s.dim(3);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < Tq; ++i) {
        std::vector<double> l(Tk);
        std::vector<bool> vis(Tk);
        double mx = -INFINITY;
        for (index_t j = 0; j < Tk; ++j) {
          vis[j] = (m.key_valid.empty() || m.key_valid.at(b, j)) && (!m.causal || j <= i + Tk - Tq);
          double bias = 0;
          if (!m.bias.empty()) bias = m.bias.rank() == 3 ? m.bias.at(h, i, j) : m.bias.at(b, h, i, j);
          l[j] = double(m.scale) * s.at(b, h, i, j) + bias;
          if (vis[j]) mx = std::max(mx, l[j]);
        }
        double z = 0;
        for (index_t j = 0; j < Tk; ++j) z += vis[j] ? std::exp(l[j] - mx) : 0;
        for (index_t j = 0; j < Tk; ++j) p.at(b, h, i, j) = static_cast<T>(vis[j] ? std::exp(l[j] - mx) / z : 0);
      }
}
}  // namespace

TEST_CASE_TEMPLATE("masked_softmax: bias, padding, causal, fully masked rows", T, float, double) {
  const index_t B = 3, H = 2;
  for (auto [Tq, Tk] : {std::pair<index_t, index_t>{5, 5}, {1, 7}, {3, 8}, {17, 33}}) {
    auto s = random_tensor<T>(Shape{B, H, Tq, Tk}, 1, -4, 4);
    auto shared_bias = random_tensor<T>(Shape{H, Tq, Tk}, 2);
    auto full_bias = random_tensor<T>(Shape{B, H, Tq, Tk}, 3);
    Tensor<cpu, std::uint8_t> valid(Shape{B, Tk});
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < Tk; ++j) valid.at(b, j) = j < Tk - b;  // batch b has b padding keys
    for (int variant = 0; variant < 6; ++variant) {
      SoftmaxMask<cpu, T> m;
      if (variant & 1) m.bias = shared_bias;
      if (variant == 4) m.bias = full_bias;
      if (variant >= 2) m.key_valid = valid;
      m.causal = variant == 3 || variant == 5;
      m.scale = variant == 5 ? T(0.125) : T(1);
      Tensor<cpu, T> p(s.shape()), ref(s.shape());
      O::masked_softmax<T>(s, p, m);
      naive_masked_softmax<T>(s, m, ref);
      INFO("Tq=", Tq, " Tk=", Tk, " variant=", variant);
      CHECK(max_rel_diff<T, T>(p, ref) < tol<T>());
    }
  }
  // a row whose keys are all padding gives zeros, not NaN
  auto s = random_tensor<T>(Shape{1, 1, 2, 3}, 4);
  Tensor<cpu, std::uint8_t> none(Shape{1, 3});
  O::fill<std::uint8_t>(none, 0);
  Tensor<cpu, T> p(s.shape());
  SoftmaxMask<cpu, T> m;
  m.key_valid = none;
  O::masked_softmax<T>(s, p, m);
  for (index_t i = 0; i < 6; ++i) CHECK(p.data()[i] == T(0));
  // in place
  auto s2 = random_tensor<T>(Shape{2, 2, 3, 4}, 5);
  Tensor<cpu, T> ref(s2.shape());
  naive_masked_softmax<T>(s2, {}, ref);
  O::masked_softmax<T>(s2, s2);
  CHECK(max_rel_diff<T, T>(s2, ref) < tol<T>());
}

TEST_CASE("masked_softmax reports bad shapes") {
  Tensor<cpu, float> s(Shape{2, 3, 4, 5}), p(Shape{2, 3, 4, 5}), bad_bias(Shape{3, 5, 4});
  Tensor<cpu, std::uint8_t> bad_valid(Shape{2, 4});
  SoftmaxMask<cpu, float> m;
  m.bias = bad_bias;
  check_error([&] { O::masked_softmax<float>(s, p, m); }, "masked_softmax: bias (3, 5, 4) must be (H, Tq, Tk) = (3, 4, 5)");
  m = {};
  m.key_valid = bad_valid;
  check_error([&] { O::masked_softmax<float>(s, p, m); }, "masked_softmax: key_valid (2, 4) must be (B, Tk) = (2, 5)");
  Tensor<cpu, float> s3(Shape{4, 5});
  check_error([&] { O::masked_softmax<float>(s3, s3); }, "masked_softmax: scores (4, 5) need rank 4");
  Tensor<cpu, float> db(Shape{3, 4, 4});
  check_error([&] { O::masked_softmax_backward<float>(p, p, p, 1.f, db); }, "masked_softmax_backward: dbias (3, 4, 4)");
}

TEST_CASE_TEMPLATE("rms_norm and layer_norm against the definitions", T, float, double) {
  for (auto s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 33}, Shape{4, 130}}) {
    const index_t rows = s.rows(), C = s[-1];
    auto x = random_tensor<T>(s, 1, -2, 3);
    auto w = random_tensor<T>(Shape{C}, 2);
    auto bias = random_tensor<T>(Shape{C}, 3);
    Tensor<cpu, T> y(s), inv(Shape{rows}), mean(Shape{rows}), rstd(Shape{rows});
    O::rms_norm<T>(x, w, T(1e-6), y, inv);
    for (index_t r = 0; r < rows; ++r) {
      double ms = 0;
      for (index_t c = 0; c < C; ++c) ms += double(x.data()[r * C + c]) * x.data()[r * C + c];
      const double iv = 1 / std::sqrt(ms / C + 1e-6);
      CHECK(std::abs(inv.data()[r] - iv) <= tol<T>() * iv);
      for (index_t c = 0; c < C; ++c) CHECK(std::abs(y.data()[r * C + c] - x.data()[r * C + c] * iv * w.data()[c]) < tol<T>() * 4);
    }
    O::layer_norm<T>(x, w, bias, T(1e-5), y, mean, rstd);
    for (index_t r = 0; r < rows; ++r) {
      double mu = 0, var = 0;
      for (index_t c = 0; c < C; ++c) mu += x.data()[r * C + c];
      mu /= C;
      for (index_t c = 0; c < C; ++c) var += (x.data()[r * C + c] - mu) * (x.data()[r * C + c] - mu);
      const double rs = 1 / std::sqrt(var / C + 1e-5);
      CHECK(std::abs(mean.data()[r] - mu) < tol<T>() * 4);
      for (index_t c = 0; c < C; ++c)
        CHECK(std::abs(y.data()[r * C + c] - ((x.data()[r * C + c] - mu) * rs * w.data()[c] + bias.data()[c])) < tol<T>() * 8 * std::max(1.0, rs));
    }
  }
}

TEST_CASE("norms report bad shapes") {
  Tensor<cpu, float> x(Shape{4, 6}), y(Shape{4, 6}), w(Shape{5}), inv(Shape{4}), inv_bad(Shape{3});
  Tensor<cpu, float> w6(Shape{6});
  check_error([&] { O::rms_norm<float>(x, w, 1e-6f, y, inv); }, "rms_norm: weight has shape (5,), expected (6,)");
  check_error([&] { O::rms_norm<float>(x, w6, 1e-6f, y, inv_bad); }, "rms_norm: inv_rms has shape (3,), expected (4,)");
  check_error([&] { O::layer_norm<float>(x, w6, w, 1e-5f, y, inv, inv); }, "layer_norm: bias has shape (5,), expected (6,)");
}

TEST_CASE_TEMPLATE("activations against their formulas", T, float, double) {
  auto x = random_tensor<T>(Shape{3, 4099}, 1, -6, 6);  // crosses the 4096-element piece boundary
  Tensor<cpu, T> y(x.shape());
  const double t = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  O::gelu<T>(x, y);
  for (index_t i = 0; i < x.numel(); ++i) {
    const double v = x.data()[i];
    CHECK(std::abs(y.data()[i] - 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))) < t * std::max(1.0, std::abs(v)));
  }
  O::silu<T>(x, y);
  for (index_t i = 0; i < x.numel(); ++i) {
    const double v = x.data()[i];
    CHECK(std::abs(y.data()[i] - v / (1 + std::exp(-v))) < t * std::max(1.0, std::abs(v)));
  }
  O::relu<T>(x, y);
  for (index_t i = 0; i < x.numel(); ++i) CHECK(y.data()[i] == std::max(T(0), x.data()[i]));
  Tensor<cpu, T> bad(Shape{3, 4098});
  check_error([&] { O::gelu<T>(x, bad); }, "gelu: x (3, 4099) and y (3, 4098)");
}

TEST_CASE_TEMPLATE("gather and scatter_add", T, float, double) {
  auto table = random_tensor<T>(Shape{11, 9}, 1);
  Tensor<cpu, std::int32_t> ids(Shape{2, 5});
  const std::int32_t vals[10] = {0, 3, 3, 10, 7, 3, 1, 0, 9, 3};  // repeats accumulate
  std::copy(vals, vals + 10, ids.data());
  Tensor<cpu, T> rows(Shape{2, 5, 9});
  O::gather<T>(table, ids, rows);
  for (index_t n = 0; n < 10; ++n)
    for (index_t c = 0; c < 9; ++c) CHECK(rows.data()[n * 9 + c] == table.data()[vals[n] * 9 + c]);

  auto drows = random_tensor<T>(Shape{2, 5, 9}, 2);
  auto dtable = random_tensor<T>(Shape{11, 9}, 3);
  auto want = dtable.clone();
  for (index_t n = 0; n < 10; ++n)
    for (index_t c = 0; c < 9; ++c) want.data()[vals[n] * 9 + c] += drows.data()[n * 9 + c];
  O::scatter_add<T>(ids, drows, dtable);
  CHECK(max_rel_diff<T, T>(dtable, want) < tol<T>());

  ids.at(1, 2) = 11;
  check_error([&] { O::gather<T>(table, ids, rows); }, "gather: id 11 at flat position 7 of ids (2, 5) is outside the table's 11 rows");
  ids.at(1, 2) = -1;
  check_error([&] { O::scatter_add<T>(ids, drows, dtable); }, "scatter_add: id -1 at flat position 7");
  Tensor<cpu, T> bad(Shape{2, 5, 8});
  ids.at(1, 2) = 0;
  check_error([&] { O::gather<T>(table, ids, bad); }, "gather: rows (2, 5, 8) must be ids (2, 5) + (9,)");
}

TEST_CASE("backward ops and conversions report bad shapes") {
  Tensor<cpu, float> x(Shape{4, 6}), dy(Shape{4, 6}), dx(Shape{4, 5}), w(Shape{6}), inv(Shape{4}), dw_bad(Shape{7});
  check_error([&] { O::gelu_backward<float>(x, dy, dx); }, "gelu_backward: x (4, 6) and dx (4, 5)");
  check_error([&] { O::silu_backward<float>(x, dx, dy); }, "silu_backward: x (4, 6) and dy (4, 5)");
  check_error([&] { O::relu_backward<float>(x, dy, dx); }, "relu_backward:", "(4, 5)");
  check_error([&] { O::rms_norm_backward<float>(x, w, inv, dy, dy, dw_bad); }, "rms_norm_backward: dweight has shape (7,), expected (6,)");
  check_error([&] { O::rms_norm_backward<float>(x, w, inv, dy, dx, w); }, "rms_norm_backward: x (4, 6) and dx (4, 5)");
  check_error([&] { O::layer_norm_backward<float>(x, w, inv, inv, dy, dy, w, dw_bad); }, "layer_norm_backward: dbias has shape (7,), expected (6,)");
  Tensor<cpu, bf16> h(Shape{4, 5});
  check_error([&] { O::convert<float, bf16>(x, h); }, "convert: src (4, 6) and dst (4, 5)");
  check_error([&] { O::scale<float>(x, 2.f, dx); }, "scale: x (4, 6) and out (4, 5)");
  Tensor<cpu, std::int32_t> ids(Shape{4});
  Tensor<cpu, float> rows_bad(Shape{3, 6});
  check_error([&] { O::scatter_add<float>(ids, rows_bad, x); }, "scatter_add: rows (3, 6) must be ids (4,) + (6,)");
}
