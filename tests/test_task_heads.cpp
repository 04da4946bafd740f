// Downstream heads on either encoder family (objectives/task_heads.hpp,
// train/task_model.hpp): per-protein classification, multi-label BCE and
// regression, per-residue classification; every parameter's gradient through
// head and encoder against finite differences in double, a frozen encoder,
// missing targets, and the errors.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/nn/esm.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/task_heads.hpp"
#include "plm/testing/gradient_check.hpp"
#include "plm/train/task_model.hpp"

using namespace plm;
using namespace plm::objectives;
using namespace plm::test;

namespace {

constexpr double missing = std::numeric_limits<double>::quiet_NaN();

nn::EsmConfig tiny_esm() {
  nn::EsmConfig c;
  c.hidden_size = 8, c.num_attention_heads = 2, c.intermediate_size = 12, c.num_hidden_layers = 1;
  return c;
}
nn::T5Config tiny_t5() {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.d_model = 8, c.d_kv = 4, c.num_heads = 2, c.d_ff = 8, c.num_layers = 1, c.num_decoder_layers = 0, c.vocab_size = 12;
  return c;
}

// Three proteins of 5, 3 and 4 tokens, padded to 5 (pad id 1: ESM's; a T5 id as good as any).
struct Batch {
  Tensor<cpu, std::int32_t> ids{Shape{3, 5}};
  Tensor<cpu, std::uint8_t> valid{Shape{3, 5}};
  Batch() {
    const std::int32_t v[3][5] = {{0, 5, 6, 7, 2}, {0, 8, 2, 1, 1}, {0, 9, 10, 2, 1}};
    const int len[3] = {5, 3, 4};
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < 5; ++t) ids.data()[b * 5 + t] = v[b][t], valid.data()[b * 5 + t] = t < len[b];
  }
};

template <class Model, class Targets>
void check_all_gradients(Model& m, const Batch& x, const Targets& targets, const std::string& what) {
  auto& ps = m.params();
  ps.zero_grad();
  const auto r = m.step(x.ids.cview(), x.valid.cview(), targets, true);
  CHECK(r.loss > 0);
  expect_ok(testing::check_gradient(ps.values(), ps.grads(),
                                    [&] { return m.step(x.ids.cview(), x.valid.cview(), targets, false).loss; }),
            what);
}

}  // namespace

TEST_CASE("ProteinHead on an ESM-2 and a T5 encoder: classification, multi-label BCE, regression; finite differences of every parameter") {
  const Batch x;
  using Esm = nn::EsmModel<cpu, double>;
  using T5 = nn::Ankh3Model<cpu, double>;
  using Head = ProteinHead<cpu, double>;
  {
    train::TaskModel<Esm, Head> m(tiny_esm(), 3, false, ProteinTask::classification, TaskHeadConfig{0, 3, 4});
    CHECK(m.params().find("lm_head.dense.weight") < 0);
    CHECK(m.params().find("task_head.out.weight") >= 0);
    check_all_gradients(m, x, std::vector<double>{2, 0, 1}, "ESM + classification");
  }
  {
    train::TaskModel<Esm, Head> m(tiny_esm(), 4, false, ProteinTask::multilabel, TaskHeadConfig{0, 2, 4});
    check_all_gradients(m, x, std::vector<double>{1, 0, missing, 1, 0, 0}, "ESM + multilabel, one target missing");
  }
  {
    train::TaskModel<T5, Head> m(tiny_t5(), 5, false, ProteinTask::regression, TaskHeadConfig{0, 2, 4});
    check_all_gradients(m, x, std::vector<double>{0.5, -1.0, missing, 2.0, 0.25, 0.0}, "T5 + regression, one target missing");
  }
  {
    train::TaskModel<T5, Head> m(tiny_t5(), 6, false, ProteinTask::classification, TaskHeadConfig{0, 2, 4});
    check_all_gradients(m, x, std::vector<double>{1, 0, 1}, "T5 + classification");
  }
}

TEST_CASE("ResidueHead on either family: per-token cross-entropy where the label is not -100; finite differences") {
  const Batch x;
  // labels: -100 at <cls>, <eos> and padding
  const std::vector<std::int32_t> labels = {-100, 0, 2, 1, -100, -100, 1, -100, -100, -100, -100, 2, 0, -100, -100};
  using Head = ResidueHead<cpu, double>;
  train::TaskModel<nn::EsmModel<cpu, double>, Head> esm(tiny_esm(), 7, false, TaskHeadConfig{0, 3, 4});
  check_all_gradients(esm, x, labels, "ESM + residue classes");
  train::TaskModel<nn::Ankh3Model<cpu, double>, Head> t5(tiny_t5(), 8, false, TaskHeadConfig{0, 3, 4});
  check_all_gradients(t5, x, labels, "T5 + residue classes");
  const auto r = t5.step(x.ids.cview(), x.valid.cview(), labels, false);
  CHECK(r.count == 6);
  CHECK(r.predictions.size() == 15u * 3u);
  auto bad = labels;
  bad[3] = 3;
  check_error([&] { t5.step(x.ids.cview(), x.valid.cview(), bad, false); }, "token 3 of row 0 has class 3, outside 0..2");
  check_error([&] { t5.step(x.ids.cview(), x.valid.cview(), std::vector<std::int32_t>(4, 0), false); }, "4 token labels for H");
}

TEST_CASE("TaskModel: a frozen encoder gets no gradient and stays as it was; the head still learns") {
  const Batch x;
  train::TaskModel<nn::EsmModel<cpu, double>, ProteinHead<cpu, double>> m(tiny_esm(), 9, true, ProteinTask::classification,
                                                                          TaskHeadConfig{0, 2, 4});
  auto& ps = m.params();
  ps.zero_grad();
  m.step(x.ids.cview(), x.valid.cview(), std::vector<double>{1, 0, 1}, true);
  const auto range = m.encoder().param_range();
  double encoder = 0, head = 0;
  for (index_t i = 0; i < ps.size(); ++i) {
    const auto g = ps.grad(i);
    for (index_t j = 0; j < g.numel(); ++j) (range.contains(i) ? encoder : head) += std::abs(g.data()[j]);
  }
  CHECK(encoder == 0.0);
  CHECK(head > 0);
}

TEST_CASE("task heads: BCE values, missing targets, and errors that name the row") {
  Tensor<cpu, double> logits(Shape{2, 2});
  const double l[4] = {2.0, -1.0, 0.0, 3.0};
  for (int i = 0; i < 4; ++i) logits.data()[i] = l[i];
  Tensor<cpu, double> d(logits.shape());
  const auto r = binary_cross_entropy<cpu, double>(logits.cview(), {1, 0, missing, 0}, d.view());
  const auto bce = [](double x, double t) { return -t * std::log(1 / (1 + std::exp(-x))) - (1 - t) * std::log(1 - 1 / (1 + std::exp(-x))); };
  CHECK(r.count == 3);
  CHECK(r.loss == doctest::Approx((bce(2, 1) + bce(-1, 0) + bce(3, 0)) / 3).epsilon(1e-12));
  CHECK(r.correct == 2);  // 3 > 0 predicts 1 against target 0
  CHECK(d.data()[2] == 0.0);  // missing: no gradient
  CHECK(d.data()[0] == doctest::Approx((1 / (1 + std::exp(-2.0)) - 1) / 3).epsilon(1e-12));
  check_error([&] { binary_cross_entropy<cpu, double>(logits.cview(), {1, 0, 2, 0}); }, "target (1, 0) is 2, outside [0, 1]");
  logits.data()[1] = missing;
  check_error([&] { binary_cross_entropy<cpu, double>(logits.cview(), {1, 0, 1, 0}); }, "logit (0, 1) is nan");

  const Batch x;
  train::TaskModel<nn::EsmModel<cpu, double>, ProteinHead<cpu, double>> m(tiny_esm(), 1, false, ProteinTask::classification,
                                                                          TaskHeadConfig{0, 3, 4});
  check_error([&] { m.step(x.ids.cview(), x.valid.cview(), std::vector<double>{0, 3, 1}, false); }, "protein 1 has class 3, outside 0..2");
  check_error([&] { m.step(x.ids.cview(), x.valid.cview(), std::vector<double>{0, 1}, false); }, "2 class ids for 3 proteins");
  nn::ParameterSet<cpu, double> ps;
  check_error([&] { ProteinHead<cpu, double>(ps, ProteinTask::classification, TaskHeadConfig{8, 1, 4}); }, "at least 2 classes");
  CHECK(parse_protein_task("multilabel") == ProteinTask::multilabel);
  check_error([] { parse_protein_task("ordinal"); }, "'ordinal' is not one of");
}
