// optim/: AdamW against hand-computed steps, schedules, clipping, accumulation.
#include "ops_test_support.hpp"
#include "plm/nn/linear.hpp"
#include "plm/optim/adafactor.hpp"
#include "plm/optim/adamw.hpp"
#include "plm/optim/clip.hpp"
#include "plm/optim/optimizer.hpp"
#include "plm/optim/schedule.hpp"

using namespace plm;
using namespace plm::test;

TEST_CASE("AdamW: two hand-computed steps, decoupled decay, group multiplier, no decay on vectors") {
  nn::ParameterSet<cpu, double> ps;
  ps.add("w", Shape{1, 1}, 0.0, 1.0);  // matrix: decayed
  ps.add("norm.weight", Shape{1}, 0.0, 1.0);  // vector: not decayed by default
  ps.add("head.weight", Shape{1, 1}, 0.0, 1.0);  // group: lr x 2, no decay
  ps.allocate();
  ps.init(0);
  optim::ParamGroups groups;
  groups.add("head.", {2.0, false});
  optim::AdamW<cpu, double> opt(ps, {0.9, 0.999, 1e-8, 0.01}, groups);
  const double lr = 0.1;
  for (int s = 0; s < 2; ++s) {
    ps.grad("w").data()[0] = 0.5;
    ps.grad("norm.weight").data()[0] = 0.5;
    ps.grad("head.weight").data()[0] = -1.0;
    opt.step(lr);
  }
  // With a constant gradient the bias-corrected m/sqrt(v) is g/|g| at every step,
  // so each step moves by lr * 1 / (1 + eps / |g|) after the decay p *= 1 - lr wd.
  const double u = lr * 0.5 / (0.5 + 1e-8);
  CHECK(ps.value("w").data()[0] == doctest::Approx((1 * (1 - lr * 0.01) - u) * (1 - lr * 0.01) - u).epsilon(1e-14));
  CHECK(ps.value("norm.weight").data()[0] == doctest::Approx(1 - 2 * u).epsilon(1e-14));
  const double uh = 2 * lr * 1.0 / (1.0 + 1e-8);
  CHECK(ps.value("head.weight").data()[0] == doctest::Approx(1 + 2 * uh).epsilon(1e-14));
  CHECK(opt.steps() == 2);
  // m after two steps of g = 0.5: 0.9 * 0.05 + 0.1 * 0.5
  CHECK(opt.state()[0].second.data()[0] == doctest::Approx(0.095).epsilon(1e-14));
  check_error([&] { optim::AdamW<cpu, double>(ps, {1.0, 0.999, 1e-8, 0.0}); }, "AdamW: betas (1, 0.999) outside [0, 1)");
}

TEST_CASE("AdamW minimises a quadratic") {
  nn::ParameterSet<cpu, double> ps;
  ps.add("x", Shape{5}, 0.0, 3.0);
  ps.allocate();
  ps.init(0);
  optim::AdamW<cpu, double> opt(ps, {0.9, 0.999, 1e-8, 0.0});
  auto loss = [&] {
    double s = 0;
    for (index_t i = 0; i < 5; ++i) s += (i + 1) * std::pow(ps.value(0).data()[i] - i, 2);
    return s;
  };
  const double first = loss();
  for (int s = 0; s < 500; ++s) {
    for (index_t i = 0; i < 5; ++i) ps.grad(0).data()[i] = 2.0 * (i + 1) * (ps.value(0).data()[i] - i);
    opt.step(0.05);
  }
  CHECK(loss() < first * 1e-4);
}

TEST_CASE("LR schedules at key steps") {
  optim::LRSchedule s{1.0, 10, 110, optim::LRSchedule::Kind::linear, 0.0};
  CHECK(s.at(1) == doctest::Approx(0.1));
  CHECK(s.at(10) == doctest::Approx(1.0));
  CHECK(s.at(60) == doctest::Approx(0.5));
  CHECK(s.at(110) == doctest::Approx(0.0));
  s.kind = optim::LRSchedule::parse("cosine");
  s.final_fraction = 0.1;
  CHECK(s.at(60) == doctest::Approx(0.55));
  CHECK(s.at(110) == doctest::Approx(0.1));
  s.kind = optim::LRSchedule::parse("inverse-sqrt");
  CHECK(s.at(40) == doctest::Approx(0.5));
  s.kind = optim::LRSchedule::parse("constant");
  CHECK(s.at(100) == 1.0);
  check_error([] { optim::LRSchedule::parse("step"); }, "unknown schedule 'step'");
}

TEST_CASE("clip_grad_norm: norm, scaling, no-op below the limit, NaN names the parameter") {
  nn::ParameterSet<cpu, double> ps;
  ps.add("a", Shape{2}, 0.0);
  ps.add("b.weight", Shape{1, 2}, 0.0);
  ps.allocate();
  const double g[4] = {3, 0, 0, 4};
  std::copy(g, g + 4, ps.grads().data());
  CHECK(optim::clip_grad_norm(ps, 10.0) == doctest::Approx(5.0));
  CHECK(ps.grads().data()[0] == 3.0);
  CHECK(optim::clip_grad_norm(ps, 1.0) == doctest::Approx(5.0));
  CHECK(ps.grads().data()[0] == doctest::Approx(0.6));
  CHECK(std::sqrt(ops<cpu>::sum_squares<double>(ps.grads())) == doctest::Approx(1.0));
  ps.grad("b.weight").data()[1] = NAN;
  check_error([&] { optim::clip_grad_norm(ps, 1.0); }, "the gradient of 'b.weight' contains NaN or infinity");
}

TEST_CASE("gradient accumulation: two half-weight micro-batches equal one full batch") {
  nn::ParameterSet<cpu, double> ps;
  nn::Linear<cpu, double> lin(ps, "lin", 4, 3, 0.5);
  ps.allocate();
  ps.init(3);
  auto x = random_tensor<double>(Shape{6, 4}, 1), r = random_tensor<double>(Shape{6, 3}, 2);
  // loss = mean over rows of dot(y_row, r_row): d loss / d y = r / rows
  auto grad_of = [&](index_t b, index_t e, double weight) {
    Tensor<cpu, double> dy(Shape{e - b, 3});
    for (index_t i = 0; i < dy.numel(); ++i) dy.data()[i] = r.data()[b * 3 + i] * weight / double(e - b);
    lin.backward(x.slice(b, e), dy, TensorView<cpu, double>{});
  };
  ps.zero_grad();
  grad_of(0, 6, 1.0);
  Tensor<cpu, double> full(ps.grad(0).shape());
  ops<cpu>::copy<double>(ps.grad(0), full.view());
  ps.zero_grad();
  optim::GradientAccumulation acc{2};
  grad_of(0, 3, acc.loss_weight());
  CHECK_FALSE(acc.boundary(0));
  grad_of(3, 6, acc.loss_weight());
  CHECK(acc.boundary(1));
  CHECK(max_rel_diff<double, double>(ps.grad(0), full) < 1e-14);
}

namespace {
// Three Adafactor steps on a 2x3 matrix (factored moments) and a 2-vector,
// with gradients g_s = G sqrt(s) and h / s; returns the parameters after them.
std::vector<double> adafactor_run(optim::Adafactor<cpu, double>::Options o, int steps) {
  nn::ParameterSet<cpu, double> ps;
  ps.add("w", Shape{2, 3}, 0.0);
  ps.add("v", Shape{2}, 0.0);
  ps.allocate();
  const double w0[6] = {0.5, -1.0, 2.0, 1.5, 0.25, -0.75}, v0[2] = {0.3, -0.2};
  std::copy(w0, w0 + 6, ps.value("w").data());
  std::copy(v0, v0 + 2, ps.value("v").data());
  optim::ParamGroups groups;
  groups.decay_vectors = true;  // as torch, which decays every parameter it is given
  optim::Adafactor<cpu, double> opt(ps, o, groups);
  const double G[6] = {1.0, 2.0, -3.0, 0.5, -4.0, 6.0}, h[2] = {2.0, -0.1};
  for (int s = 1; s <= steps; ++s) {
    for (int i = 0; i < 6; ++i) ps.grad("w").data()[i] = G[i] * std::sqrt(double(s));
    for (int i = 0; i < 2; ++i) ps.grad("v").data()[i] = h[i] / s;
    opt.step(0.05);
  }
  std::vector<double> out(ps.values().data(), ps.values().data() + 8);
  return out;
}
}  // namespace

TEST_CASE("Adafactor: hand-computed first step and three steps equal to transformers.Adafactor") {
  // Step 1, vector: beta2_1 = 0 so v = g^2 + eps1 and u = sign(g) with RMS 1 (no clipping);
  // lr = min(1e-2, 1) * RMS(p) = 0.01 * sqrt((0.09 + 0.04) / 2).
  const auto one = adafactor_run({}, 1);
  const double rms_v = std::sqrt((0.09 + 0.04) / 2);
  CHECK(one[6] == doctest::Approx(0.3 - 0.01 * rms_v).epsilon(1e-12));
  CHECK(one[7] == doctest::Approx(-0.2 + 0.01 * rms_v).epsilon(1e-12));
  // Reference values printed by transformers 5.23 / torch 2.15 (float64):
  //   Adafactor([W, v], **kw) with the same parameters and gradients, three opt.step() calls.
  const std::vector<double> relative = {0.44086480134338385, -1.029567599328308,  2.029567599328308,  1.4846948730980685,
                                        0.2806102538038633,  -0.7806102538038633, 0.2944194548336685, -0.19441945483366851};
  const auto a = adafactor_run({}, 3);
  for (int i = 0; i < 8; ++i) CHECK(a[i] == doctest::Approx(relative[i]).epsilon(1e-12));
  // kw = lr=0.05, relative_step=False, scale_parameter=False, beta1=0.9, weight_decay=0.1
  const std::vector<double> scheduled = {0.4453211401924456, -1.0086830236537772, 1.9937578986537772,  1.4653919862214375,
                                         0.2707093713071247, -0.7632468088071246, 0.27305842622382726, -0.17455093872382726};
  optim::Adafactor<cpu, double>::Options o;
  o.relative_step = false;
  o.scale_parameter = false;
  o.beta1 = 0.9;
  o.weight_decay = 0.1;
  const auto b = adafactor_run(o, 3);
  for (int i = 0; i < 8; ++i) CHECK(b[i] == doctest::Approx(scheduled[i]).epsilon(1e-12));
  o.decay_rate = 0.5;
  check_error([&] { adafactor_run(o, 1); }, "Adafactor: decay_rate 0.5 must be negative");
}

TEST_CASE("Adafactor keeps factored moments: rows + cols numbers for a matrix") {
  nn::ParameterSet<cpu, float> ps;
  ps.add("w", Shape{64, 32}, 0.1);
  ps.add("b", Shape{32}, 0.0);
  ps.allocate();
  optim::Adafactor<cpu, float> opt(ps);
  CHECK(opt.state().size() == 1);
  CHECK(opt.state()[0].second.numel() == 64 + 32 + 32);
}

TEST_CASE("grad_norm: the global norm without clipping; NaN names the parameter") {
  nn::ParameterSet<cpu, double> ps;
  ps.add("a", Shape{2}, 0.0);
  ps.add("b.weight", Shape{1, 2}, 0.0);
  ps.allocate();
  const double g[4] = {3, 0, 0, 4};
  std::copy(g, g + 4, ps.grads().data());
  CHECK(optim::grad_norm(ps) == doctest::Approx(5.0));
  CHECK(ps.grads().data()[3] == 4.0);  // unchanged
  ps.grad("a").data()[0] = INFINITY;
  check_error([&] { optim::grad_norm(ps); }, "grad_norm: the gradient of 'a' contains NaN or infinity");
}

TEST_CASE("Optimizer: AdamW and Adafactor behind one type step exactly as the classes themselves") {
  auto make = [](nn::ParameterSet<cpu, double>& ps) {
    ps.add("w", Shape{3, 2}, 0.5);
    ps.add("norm.weight", Shape{2}, 0.0, 1.0);
    ps.allocate();
    ps.init(11);
  };
  auto grads = [](nn::ParameterSet<cpu, double>& ps, int s) {
    for (index_t i = 0; i < ps.numel(); ++i) ps.grads().data()[i] = std::sin(double(i + 1) * (s + 1));
  };
  optim::ParamGroups groups;
  groups.add("norm.", {3.0, false});
  for (const std::string name : {"adamw", "adafactor", "adafactor-relative"}) {
    INFO(name);
    nn::ParameterSet<cpu, double> a, b;
    make(a);
    make(b);
    auto opt = optim::make_optimizer<cpu, double>(name, a, {0.02}, groups);
    CHECK(std::string(opt.name()) == name);
    optim::AdamW<cpu, double> adamw(b, {0.9, 0.999, 1e-8, 0.02}, groups);
    optim::Adafactor<cpu, double>::Options fo;
    fo.weight_decay = 0.02;
    fo.relative_step = fo.scale_parameter = name == "adafactor-relative";
    optim::Adafactor<cpu, double> adafactor(b, fo, groups);
    for (int s = 0; s < 3; ++s) {
      grads(a, s);
      grads(b, s);
      opt.step(0.05);
      if (name == "adamw") adamw.step(0.05);
      else adafactor.step(0.05);
    }
    CHECK(opt.steps() == 3);
    for (index_t i = 0; i < a.numel(); ++i) CHECK(a.values().data()[i] == b.values().data()[i]);
    const auto st = opt.named_state();
    REQUIRE_FALSE(st.empty());
    CHECK(st[0].name == (name == "adamw" ? "adamw.m" : "adafactor.v"));
    opt.set_steps(10);
    CHECK(opt.steps() == 10);
  }
  nn::ParameterSet<cpu, double> ps;
  make(ps);
  check_error([&] { optim::make_optimizer<cpu, double>("sgd", ps); }, "optimizer: unknown 'sgd'", "adamw, adafactor, adafactor-relative");
  nn::ParameterSet<cpu, double> empty;
  empty.add("w", Shape{2}, 0.1);
  check_error([&] { optim::make_optimizer<cpu, double>("adamw", empty); }, "must be allocated");
}

TEST_CASE("ParamGroups: a matching rule sets the lr multiplier but never decays a vector") {
  nn::ParameterSet<cpu, double> ps;
  ps.add("encoder.w", Shape{2, 2}, 0.0);
  ps.add("encoder.norm.weight", Shape{2}, 0.0);
  ps.add("head.w", Shape{2, 2}, 0.0);
  ps.allocate();
  optim::ParamGroups groups;
  groups.add("encoder.", {0.1});  // weight_decay defaults to true in the rule
  const auto g = groups.resolve(ps);
  CHECK(g[0].lr_multiplier == 0.1);
  CHECK(g[0].weight_decay);
  CHECK(g[1].lr_multiplier == 0.1);
  CHECK_FALSE(g[1].weight_decay);  // the norm scale keeps its value
  CHECK(g[2].lr_multiplier == 1.0);
  groups.decay_vectors = true;
  CHECK(groups.resolve(ps)[1].weight_decay);
}
