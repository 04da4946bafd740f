// Backward ops of ops<cpu> against finite differences, in double precision.
// Each case builds a scalar loss L = sum(output * R) for a random R, so the
// gradient flowing into the op's backward is exactly R.
#include "ops_test_support.hpp"

using namespace plm;
using namespace plm::test;
using plm::testing::check_gradient;
using plm::testing::dot;

namespace {
using D = double;
using DT = Tensor<cpu, D>;

}  // namespace

TEST_CASE("gradient: matmul in all transpose forms (the GEMMs of a Linear layer's backward)") {
  for (int flags = 0; flags < 4; ++flags) {
    const bool ta = flags & 1, tb = flags & 2;
    const index_t B = 2, M = 3, K = 5, N = 4;
    DT a = random_tensor<D>(ta ? Shape{B, K, M} : Shape{B, M, K}, 1);
    DT b = random_tensor<D>(tb ? Shape{B, N, K} : Shape{B, K, N}, 2);
    DT r = random_tensor<D>(Shape{B, M, N}, 3), c(Shape{B, M, N});
    auto loss = [&] {
      O::matmul<D>(a, ta, b, tb, c);
      return dot<D>(c, r);
    };
    // dA = R op(B)^T (stored transposed when ta), dB = op(A)^T R (likewise)
    DT da(a.shape()), db(b.shape());
    if (!ta) O::matmul<D>(r, false, b, !tb, da);
    else O::matmul<D>(b, tb, r, true, da);
    if (!tb) O::matmul<D>(a, !ta, r, false, db);
    else O::matmul<D>(r, true, a, ta, db);
    expect_ok(check_gradient(a, da, loss), "dA");
    expect_ok(check_gradient(b, db, loss), "dB");
  }
}

TEST_CASE("gradient: masked_softmax with shared and per-batch bias, padding, causal, scale") {
  const index_t B = 2, H = 2, Tq = 3, Tk = 5;
  DT s = random_tensor<D>(Shape{B, H, Tq, Tk}, 1, -2, 2);
  DT shared = random_tensor<D>(Shape{H, Tq, Tk}, 2);
  DT full = random_tensor<D>(Shape{B, H, Tq, Tk}, 3);
  DT r = random_tensor<D>(s.shape(), 4);
  Tensor<cpu, std::uint8_t> valid(Shape{B, Tk});
  for (index_t b = 0; b < B; ++b)
    for (index_t j = 0; j < Tk; ++j) valid.at(b, j) = j < Tk - 2 * b;
  for (int variant = 0; variant < 4; ++variant) {
    SoftmaxMask<cpu, D> m;
    DT* bias = variant == 2 ? &full : &shared;
    m.bias = *bias;
    m.key_valid = valid;
    m.causal = variant >= 1;
    m.scale = variant == 3 ? 0.3 : 1.0;
    DT p(s.shape());
    auto loss = [&] {
      O::masked_softmax<D>(s, p, m);
      return dot<D>(p, r);
    };
    loss();
    DT ds(s.shape()), dbias(bias->shape());
    O::fill<D>(dbias, 0);
    O::masked_softmax_backward<D>(p, r, ds, m.scale, dbias);
    INFO("variant ", variant);
    expect_ok(check_gradient(s, ds, loss), "dscores");
    expect_ok(check_gradient(*bias, dbias, loss), "dbias");
  }
}

TEST_CASE("gradient: rms_norm and layer_norm (dx, dweight, dbias)") {
  const Shape s{2, 3, 7};
  DT x = random_tensor<D>(s, 1, -2, 2), w = random_tensor<D>(Shape{7}, 2), bias = random_tensor<D>(Shape{7}, 3);
  DT r = random_tensor<D>(s, 4), y(s), stat1(Shape{6}), stat2(Shape{6});
  auto rms_loss = [&] {
    O::rms_norm<D>(x, w, 1e-6, y, stat1);
    return dot<D>(y, r);
  };
  rms_loss();
  DT dx(s), dw(Shape{7});
  O::fill<D>(dw, 0.25);  // backward adds into parameter gradients
  O::rms_norm_backward<D>(x, w, stat1, r, dx, dw);
  // dw now holds 0.25 + the gradient; take the starting value back out.
  for (index_t i = 0; i < 7; ++i) dw.data()[i] -= 0.25;
  expect_ok(check_gradient(x, dx, rms_loss), "rms dx");
  expect_ok(check_gradient(w, dw, rms_loss), "rms dweight");

  auto ln_loss = [&] {
    O::layer_norm<D>(x, w, bias, 1e-5, y, stat1, stat2);
    return dot<D>(y, r);
  };
  ln_loss();
  DT dw2(Shape{7}), db(Shape{7});
  O::fill<D>(dw2, 0);
  O::fill<D>(db, 0);
  O::layer_norm_backward<D>(x, w, stat1, stat2, r, dx, dw2, db);
  expect_ok(check_gradient(x, dx, ln_loss), "ln dx");
  expect_ok(check_gradient(w, dw2, ln_loss), "ln dweight");
  expect_ok(check_gradient(bias, db, ln_loss), "ln dbias");
}

TEST_CASE("gradient: gelu, silu, relu") {
  DT x = random_tensor<D>(Shape{4, 9}, 1, -4, 4);
  // keep relu away from its kink so central differences are valid
  for (index_t i = 0; i < x.numel(); ++i)
    if (std::abs(x.data()[i]) < 1e-3) x.data()[i] = 0.5;
  DT r = random_tensor<D>(x.shape(), 2), y(x.shape()), dx(x.shape());
  using Fwd = void (*)(ConstView<cpu, D>, TensorView<cpu, D>);
  using Bwd = void (*)(ConstView<cpu, D>, ConstView<cpu, D>, TensorView<cpu, D>);
  struct Case {
    const char* name;
    Fwd f;
    Bwd b;
  } cases[] = {{"gelu", &O::gelu<D>, &O::gelu_backward<D>},
               {"silu", &O::silu<D>, &O::silu_backward<D>},
               {"relu", &O::relu<D>, &O::relu_backward<D>}};
  for (auto& c : cases) {
    auto loss = [&] {
      c.f(x, y);
      return dot<D>(y, r);
    };
    c.b(x, r, dx);
    expect_ok(check_gradient(x, dx, loss), c.name);
  }
}

TEST_CASE("gradient: gather via scatter_add, add_row via sum_rows, transpose12") {
  DT table = random_tensor<D>(Shape{6, 4}, 1);
  Tensor<cpu, std::int32_t> ids(Shape{7});
  const std::int32_t v[7] = {5, 0, 2, 2, 5, 5, 1};
  std::copy(v, v + 7, ids.data());
  DT r = random_tensor<D>(Shape{7, 4}, 2), rows(Shape{7, 4});
  auto gl = [&] {
    O::gather<D>(table, ids, rows);
    return dot<D>(rows, r);
  };
  DT dt(Shape{6, 4});
  O::fill<D>(dt, 0);
  O::scatter_add<D>(ids, r, dt);
  expect_ok(check_gradient(table, dt, gl), "gather");

  DT x = random_tensor<D>(Shape{3, 4}, 3), row = random_tensor<D>(Shape{4}, 4), r2 = random_tensor<D>(Shape{3, 4}, 5), y(Shape{3, 4});
  auto al = [&] {
    O::add_row<D>(x, row, y);
    return dot<D>(y, r2);
  };
  DT drow(Shape{4});
  O::sum_rows<D>(r2, drow);
  expect_ok(check_gradient(row, drow, al), "add_row");

  DT q = random_tensor<D>(Shape{2, 3, 4, 2}, 6), qt(Shape{2, 4, 3, 2}), r3 = random_tensor<D>(Shape{2, 4, 3, 2}, 7);
  auto tl = [&] {
    O::transpose12<D>(q, qt);
    return dot<D>(qt, r3);
  };
  DT dq(q.shape());
  O::transpose12<D>(r3, dq);
  expect_ok(check_gradient(q, dq, tl), "transpose12");
}
