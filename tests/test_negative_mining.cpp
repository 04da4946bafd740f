// Negative mining end to end: nn/pair_attention.hpp (self- and in-batch
// cross-attention with gather / scatter-add), objectives/negative_mining.hpp
// (loss variants, the classifier head with both losses),
// samplers/negative_batch.hpp (the batch rows) and train/negative_mining.hpp
// (encoder + head), checked by finite differences in double from the encoder
// states H (and the encoder's parameters) and every parameter to
// cross-entropy + lambda * attention loss, and for their errors on bad input.
#include "ops_test_support.hpp"
#include "plm/nn/esm.hpp"
#include "plm/nn/pair_attention.hpp"
#include "plm/nn/t5.hpp"
#include "plm/objectives/negative_mining.hpp"
#include "plm/samplers/negative_batch.hpp"
#include "plm/train/negative_mining.hpp"

using namespace plm;
using namespace plm::objectives;
using namespace plm::test;

namespace {
using DT = Tensor<cpu, double>;

Tensor<cpu, std::uint8_t> lengths_mask(index_t S, const std::vector<index_t>& lengths) {
  const auto R = static_cast<index_t>(lengths.size());
  Tensor<cpu, std::uint8_t> m(Shape{R, S});
  for (index_t r = 0; r < R; ++r)
    for (index_t i = 0; i < S; ++i) m.data()[r * S + i] = i < lengths[static_cast<std::size_t>(r)];
  return m;
}

// Largest |x| over rows [first, last) of a (R, S, C) tensor.
double max_abs_rows(const DT& t, index_t first, index_t last) {
  double m = 0;
  const index_t row = t.dim(1) * t.dim(2);
  for (index_t i = first * row; i < last * row; ++i) m = std::max(m, std::abs(t.data()[i]));
  return m;
}

// Three anchors: anchor 0 has two negatives, anchor 1 none, anchor 2 one; every
// anchor has a positive. Rows: anchors 0-2, negatives 3-5, positives 6-8, each
// with its own valid length.
struct Batch {
  static constexpr index_t S = 5, C = 4, K = 3;
  nn::PairRows rows;
  DT H;
  Tensor<cpu, std::uint8_t> valid;
  std::vector<std::int32_t> labels = {2, 0, 1};
  Batch() {
    rows.anchors = 3;
    rows.negative_anchor = {0, 0, 2};
    rows.positive_anchor = {0, 1, 2};
    H = random_tensor<double>(Shape{rows.rows(), S, C}, 301);
    valid = lengths_mask(S, {5, 3, 4, 2, 5, 3, 4, 1, 5});
  }
};
}  // namespace

TEST_CASE("negative mining end to end: finite differences from H and every parameter, every loss variant") {
  Batch b;
  for (auto loss : {NegativeMiningLoss::squared, NegativeMiningLoss::l1, NegativeMiningLoss::kl, NegativeMiningLoss::entropy_hinge})
    for (bool scaled : {false, true}) {
      const std::string what = std::string(negative_mining_loss_name(loss)) + (scaled ? ", scaled" : "");
      INFO(what);
      nn::ParameterSet<cpu, double> ps;
      NegativeMiningHeadConfig hc;
      hc.d_model = Batch::C, hc.classes = Batch::K, hc.readout = 3, hc.scaled = scaled;
      const NegativeMiningClassifier<cpu, double> head(ps, hc, {loss, /*lambda=*/0.7, /*margin=*/0.5});
      ps.allocate();
      testing::fill_uniform<double>(ps.values(), 5, 88, -0.9, 0.9);
      NegativeMiningClassifier<cpu, double>::Work w;
      auto total = [&] { return head.forward(b.H, b.valid, b.rows, b.labels, w, false).total(); };

      ps.zero_grad();
      const auto r = head.forward(b.H, b.valid, b.rows, b.labels, w, true);
      CHECK(r.supervised > 0);
      CHECK(r.attention > 0);  // the hinge's margin keeps its pairs active
      CHECK(r.predicted.size() == 3);
      DT dH(b.H.shape());
      head.backward(b.H, dH.view(), w);
      expect_ok(testing::check_gradient(b.H.view(), dH.cview(), total), what + ": d / d H");
      expect_ok(testing::check_gradient(ps.values(), ps.grads(), total), what + ": d / d parameters");
      // The positive rows feed only the hinge.
      if (needs_positives(loss))
        CHECK(max_abs_rows(dH, 6, 9) > 0);
      else
        CHECK(max_abs_rows(dH, 6, 9) == 0.0);
      CHECK(max_abs_rows(dH, 3, 6) > 0);  // the negatives' own rows
    }
}

TEST_CASE("PairAttention: pairs equal the layer on gathered rows; d_out and the probability gradient reach H (finite differences)") {
  Batch b;
  nn::ParameterSet<cpu, double> ps;
  const nn::PairAttention<cpu, double> attn(ps, "pa", Batch::C, /*scaled=*/true);
  ps.allocate();
  testing::fill_uniform<double>(ps.values(), 6, 3, -0.9, 0.9);
  // Only the q, k, v projections, Hugging Face style names.
  REQUIRE(ps.size() == 3);
  CHECK(ps.entry(0).name == "pa.q.weight");
  CHECK(ps.entry(1).name == "pa.k.weight");
  CHECK(ps.entry(2).name == "pa.v.weight");
  nn::PairAttention<cpu, double>::Pairs p;
  const std::vector<index_t> anchor_of = {0, 0, 2, 1};  // query rows 3..6, anchor 0 twice
  attn.forward_pairs(b.H, b.valid, 3, anchor_of, p);
  for (index_t k = 0; k < 4; ++k) {  // row 3 + k over row anchor_of[k], computed on its own
    nn::PairAttention<cpu, double>::Cache c;
    const index_t a = anchor_of[static_cast<std::size_t>(k)];
    DT out(Shape{1, Batch::S, Batch::C});
    attn.forward(b.H.cview().slice(3 + k, 4 + k), b.H.cview().slice(a, a + 1), b.valid.cview().slice(a, a + 1), out.view(), c);
    CHECK(max_rel_diff<double, double>(p.out.cview().slice(k, k + 1), out.cview()) < 1e-14);
    CHECK(max_rel_diff<double, double>(p.probs().slice(k, k + 1), c.probs.cview()) < 1e-14);
  }
  const auto r = random_tensor<double>(Shape{4, Batch::S, Batch::C}, 302);
  const NegativeMiningOptions o{NegativeMiningLoss::kl, 0.4};
  auto loss = [&] {
    attn.forward_pairs(b.H, b.valid, 3, anchor_of, p);
    return testing::dot<double>(p.out, r) + negative_mining_loss<cpu, double>(o, {p.probs(), p.q_valid, p.kv_valid.cview(), {}});
  };
  ps.zero_grad();
  loss();
  negative_mining_loss<cpu, double>(o, pairs_of<cpu, double>(p));
  DT dH(b.H.shape());
  O::fill<double>(dH.view(), 0.0);
  attn.backward_pairs(b.H, dH.view(), p, r.cview());
  expect_ok(testing::check_gradient(b.H.view(), dH.cview(), loss), "pairs: d / d H");
  expect_ok(testing::check_gradient(ps.values(), ps.grads(), loss), "pairs: d / d parameters");
  CHECK(max_abs_rows(dH, 7, 9) == 0.0);  // rows that are neither queries nor anchors
}

TEST_CASE("PairAttention: initialisation N(0, 1/d) for q, k and v") {
  nn::ParameterSet<cpu, float> ps;
  const index_t d = 64;
  nn::PairAttention<cpu, float> attn(ps, "nm_attention", d);
  ps.allocate();
  ps.init(11);
  CHECK_FALSE(attn.scaled());
  for (index_t i = 0; i < 3; ++i) {
    const auto v = ps.value(i);
    double s = 0;
    for (index_t j = 0; j < v.numel(); ++j) s += double(v.data()[j]) * double(v.data()[j]);
    CHECK(std::sqrt(s / double(v.numel())) == doctest::Approx(1.0 / 8.0).epsilon(0.05));
  }
}

TEST_CASE("negative mining: without negative rows the attention loss is 0 and only the anchors get a gradient") {
  Batch b;
  nn::ParameterSet<cpu, double> ps;
  NegativeMiningHeadConfig hc;
  hc.d_model = Batch::C, hc.classes = Batch::K, hc.readout = 3;
  const NegativeMiningClassifier<cpu, double> head(ps, hc);
  ps.allocate();
  ps.init(4);
  const auto batch = samplers::make_negative_batch({0, 1, 2});
  NegativeMiningClassifier<cpu, double>::Work w;
  const DT H = random_tensor<double>(Shape{3, Batch::S, Batch::C}, 303);
  const auto valid = lengths_mask(Batch::S, {5, 2, 4});
  const auto r = head.forward(H, valid, batch.rows, b.labels, w, true);
  CHECK(r.attention == 0.0);
  CHECK(r.total() == r.supervised);
  DT dH(H.shape());
  head.backward(H, dH.view(), w);
  CHECK(max_abs_rows(dH, 0, 3) > 0);
  CHECK(head.pooled(w).shape() == Shape({3, Batch::C}));
}

TEST_CASE("negative mining: loss names, shapes, anchor indices and labels are checked with clear messages") {
  CHECK(parse_negative_mining_loss("squared") == NegativeMiningLoss::squared);
  CHECK(parse_negative_mining_loss("entropy-hinge") == NegativeMiningLoss::entropy_hinge);
  check_error([] { parse_negative_mining_loss("cosine"); }, "unknown 'cosine' (squared, l1, kl, entropy-hinge)");

  Batch b;
  nn::ParameterSet<cpu, double> ps;
  NegativeMiningHeadConfig hc;
  hc.d_model = Batch::C, hc.classes = Batch::K, hc.readout = 3;
  const NegativeMiningClassifier<cpu, double> head(ps, hc, {NegativeMiningLoss::entropy_hinge});
  ps.allocate();
  ps.init(5);
  NegativeMiningClassifier<cpu, double>::Work w;
  // H with fewer rows than the batch has
  const DT H8 = random_tensor<double>(Shape{8, Batch::S, Batch::C}, 304);
  check_error([&] { head.forward(H8, b.valid, b.rows, b.labels, w, false); }, "H (8, 5, 4)", "must be (9, S, 4)", "3 anchors, 3 negatives");
  // valid of another length
  check_error([&] { head.forward(b.H, lengths_mask(4, std::vector<index_t>(9, 2)), b.rows, b.labels, w, false); }, "valid (9, 4)");
  // an anchor index outside the anchor rows
  nn::PairRows bad = b.rows;
  bad.negative_anchor[1] = 3;
  check_error([&] { head.forward(b.H, b.valid, bad, b.labels, w, false); }, "negative 1 (row 4) names anchor row 3, outside the 3 anchor rows");
  bad = b.rows;
  bad.positive_anchor = {0, 0, 2};
  check_error([&] { head.forward(b.H, b.valid, bad, b.labels, w, false); }, "anchor row 0 has more than one positive");
  // labels
  check_error([&] { head.forward(b.H, b.valid, b.rows, {0, 1}, w, false); }, "2 labels for 3 anchors");
  check_error([&] { head.forward(b.H, b.valid, b.rows, {0, 3, 1}, w, false); }, "anchor 1 has label 3, outside 0..2");
  // the hinge without positives, or with a negative whose anchor has none
  bad = b.rows;
  bad.positive_anchor.clear();
  const DT H6 = random_tensor<double>(Shape{6, Batch::S, Batch::C}, 305);
  const auto v6 = lengths_mask(Batch::S, {5, 3, 4, 2, 5, 3});
  check_error([&] { head.forward(H6, v6, bad, b.labels, w, false); }, "entropy-hinge loss needs positive rows");
  bad.positive_anchor = {1, 2};
  check_error([&] { head.forward(b.H.cview().slice(0, 8), b.valid.cview().slice(0, 8), bad, b.labels, w, false); },
              "the anchor of negative 0 has no positive");
  // backward without a gradient forward
  head.forward(b.H, b.valid, b.rows, b.labels, w, false);
  DT dH(b.H.shape());
  check_error([&] { head.backward(b.H, dH.view(), w); }, "ran without with_gradient");

  // the layer on its own
  nn::ParameterSet<cpu, double> ps2;
  const nn::PairAttention<cpu, double> attn(ps2, "pa", Batch::C);
  ps2.allocate();
  nn::PairAttention<cpu, double>::Pairs p;
  check_error([&] { attn.forward_pairs(b.H, b.valid, 3, {0, 12}, p); }, "query row 4 names anchor row 12, outside the batch's 9 rows");
  check_error([&] { attn.forward_pairs(b.H, b.valid, 8, {0, 1}, p); }, "query rows [8, 10) must be a non-empty range of the batch's 9 rows");
  check_error([&] { attn.forward_pairs(H8.cview().reshape(Shape{8, 10, 2}), b.valid, 3, {0}, p); }, "H (8, 10, 2)", "must be (R, S, 4)");
  // an attention without output projection must keep the width
  nn::ParameterSet<cpu, double> ps3;
  nn::AttentionShape s{8, 2, 3};
  s.output_projection = false;
  check_error([&] { nn::Attention<cpu, double>(ps3, "a", s); }, "heads * d_head (6) must equal d_model (8)");
}

TEST_CASE("negative batch rows: anchors, then negatives, then positives; the hinge's anchors without a positive get no negatives") {
  // labels: 0 0 1 1 1 2 (protein 5 is alone in label 2)
  const samplers::LabelIndex idx({0, 0, 1, 1, 1, 2});
  samplers::NegativeBatchOptions o;
  o.negatives = 2, o.seed = 9;
  const auto nb = samplers::sample_negative_batch(idx, {0, 3, 5}, 1, o);
  CHECK(nb.rows.anchors == 3);
  CHECK(nb.rows.negatives() == 6);
  CHECK(nb.rows.positives() == 0);
  REQUIRE(nb.items.size() == 9);
  CHECK(std::vector<index_t>(nb.items.begin(), nb.items.begin() + 3) == std::vector<index_t>{0, 3, 5});
  CHECK(nb.rows.negative_anchor == std::vector<index_t>{0, 0, 1, 1, 2, 2});
  for (index_t k = 0; k < 6; ++k)  // every negative has another label than its anchor
    CHECK(idx.label(nb.items[static_cast<std::size_t>(3 + k)]) !=
          idx.label(nb.items[static_cast<std::size_t>(nb.rows.negative_anchor[static_cast<std::size_t>(k)])]));
  // the same (seed, epoch, anchor) gives the same rows; another epoch other draws somewhere
  CHECK(samplers::sample_negative_batch(idx, {0, 3, 5}, 1, o).items == nb.items);

  o.positives = true;
  const auto hb = samplers::sample_negative_batch(idx, {0, 3, 5}, 1, o);
  CHECK(hb.rows.negative_anchor == std::vector<index_t>{0, 0, 1, 1});  // anchor 5 has no positive, so no negatives
  CHECK(hb.rows.positive_anchor == std::vector<index_t>{0, 1});
  REQUIRE(hb.items.size() == 9);
  CHECK(idx.label(hb.items[7]) == 0);
  CHECK(hb.items[7] != 0);
  CHECK(idx.label(hb.items[8]) == 1);
  CHECK(hb.rows.positive_of_negatives() == std::vector<index_t>{0, 0, 1, 1});

  // candidate lists (hard negatives): drawn from the anchor's own list
  const std::vector<std::vector<index_t>> cand = {{5}, {5}, {0}, {1}, {0}, {2}};
  o.positives = false;
  const auto cb = samplers::sample_negative_batch(idx, {2, 5}, 0, o, cand);
  CHECK(std::vector<index_t>(cb.items.begin() + 2, cb.items.end()) == std::vector<index_t>{0, 0, 2, 2});
  check_error([&] { samplers::sample_negative_batch(idx, {0}, 0, o, {{1}}); }, "1 candidate lists for 6 proteins");
  check_error([] { samplers::make_negative_batch({0, 1}, {{2}}); }, "1 negative lists for 2 anchors");
  check_error([] { samplers::make_negative_batch({}); }, "no anchors");
}

TEST_CASE("NegativeMiningModel: step's gradients through the encoder equal finite differences; a frozen encoder gets none") {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.d_model = 8, c.d_kv = 4, c.num_heads = 2, c.d_ff = 8, c.num_layers = 1, c.num_decoder_layers = 0, c.vocab_size = 12;
  const std::vector<std::vector<std::int32_t>> tokens = {{3, 4, 5, 6, 1}, {7, 8, 1}, {9, 3, 11, 1}, {5, 5, 1}, {10, 4, 6, 8, 9, 1}, {2, 1}};
  const std::vector<std::int32_t> labels = {0, 1, 2, 0, 1, 2};
  // anchors 0, 1, 2; anchor 0 has negatives 4 and 5, anchor 2 has 1; positives 3 (of 0) and 5 (of 2)
  const auto nb = samplers::make_negative_batch({0, 1, 2}, {{4, 5}, {}, {1}}, {3, -1, 5});
  using Model = train::NegativeMiningModel<nn::Ankh3Model<cpu, double>>;
  for (auto loss : {NegativeMiningLoss::squared, NegativeMiningLoss::entropy_hinge}) {
    INFO(negative_mining_loss_name(loss));
    Model m(c, {0, 3, 3}, {loss, 0.7, 0.5}, 5);
    auto& ps = m.params();
    CHECK(ps.find("nm_attention.q.weight") >= 0);
    CHECK(ps.find("classifier.out.bias") >= 0);
    CHECK(ps.find("encoder.block.0.layer.0.SelfAttention.q.weight") >= 0);
    ps.zero_grad();
    const auto r = m.step(tokens, labels, nb, 0, true);
    CHECK(r.attention > 0);
    expect_ok(testing::check_gradient(ps.values(), ps.grads(), [&] { return m.step(tokens, labels, nb, 0, false).total(); }),
              "NegativeMiningModel: every parameter");
  }
  Model frozen(c, {0, 3, 3}, {}, 5, /*freeze_encoder=*/true);
  auto& ps = frozen.params();
  ps.zero_grad();
  frozen.step(tokens, labels, nb, 0, true);
  const auto range = frozen.encoder().param_range();
  double encoder = 0, head = 0;
  for (index_t i = 0; i < ps.size(); ++i) {
    const auto g = ps.grad(i);
    for (index_t j = 0; j < g.numel(); ++j) (range.contains(i) ? encoder : head) += std::abs(g.data()[j]);
  }
  CHECK(encoder == 0.0);
  CHECK(head > 0);
  // evaluate: every protein once, in batches; embed keeps the order asked for
  const auto e = frozen.evaluate(tokens, labels, {0, 1, 2, 3, 4, 5}, 4, 0);
  CHECK(e.cm.total() == 6);
  CHECK(e.loss > 0);
  // Shared by 2 ranks (batches {0..3} and {4, 5}): the shares put together are the whole, bit for bit.
  const auto e0 = frozen.evaluate(tokens, labels, {0, 1, 2, 3, 4, 5}, 4, 0, 0, 2), e1 = frozen.evaluate(tokens, labels, {0, 1, 2, 3, 4, 5}, 4, 0, 1, 2);
  CHECK(e0.cm.total() == 4);
  CHECK(e1.cm.total() == 2);
  REQUIRE(e0.batch_losses.size() == 2);
  CHECK(e0.batch_losses[1] == 0.0);
  CHECK(e1.batch_losses[0] == 0.0);
  CHECK((e0.batch_losses[0] + e1.batch_losses[1]) / 6 == e.loss);
  for (std::int32_t t = 0; t < 3; ++t)
    for (std::int32_t p = 0; p < 3; ++p) CHECK(e0.cm.count(t, p) + e1.cm.count(t, p) == e.cm.count(t, p));
  check_error([&] { frozen.evaluate(tokens, labels, {0, 1}, 4, 0, 2, 2); }, "evaluate: rank 2 of 2");
  const auto a = frozen.embed(tokens, labels, {2, 0, 4}, 2, 0), b = frozen.embed(tokens, labels, {0}, 1, 0);
  CHECK(a.shape() == Shape({3, 8}));
  CHECK(max_rel_diff<double, double>(a.cview().slice(1, 2), b.cview()) < 1e-12);
  check_error([&] { frozen.step(tokens, {0, 1}, nb, 0, false); }, "anchor item 2 outside the 2 labels");
}

TEST_CASE("NegativeMiningModel on an ESM-2 backbone: encoder-only, gradients through rotary attention and token factors") {
  nn::EsmConfig c;
  c.hidden_size = 8, c.num_attention_heads = 2, c.intermediate_size = 12, c.num_hidden_layers = 1;
  // ESM-style rows: <cls> residues <eos>, padded with <pad> = 1; one <mask> so token dropout rescales a row
  const std::vector<std::vector<std::int32_t>> tokens = {{0, 5, 6, 7, 2}, {0, 8, 32, 2}, {0, 9, 10, 11, 4, 2}, {0, 5, 2},
                                                         {0, 12, 13, 14, 15, 16, 2}, {0, 17, 2}};
  const std::vector<std::int32_t> labels = {0, 1, 2, 0, 1, 2};
  const auto nb = samplers::make_negative_batch({0, 1, 2}, {{4, 5}, {}, {1}}, {3, -1, 5});
  using Model = train::NegativeMiningModel<nn::EsmModel<cpu, double>>;
  Model m(c, {0, 3, 3}, {NegativeMiningLoss::squared, 0.7, 0.5}, 5);
  auto& ps = m.params();
  CHECK(m.d_model() == 8);
  CHECK(ps.find("esm.encoder.layer.0.attention.self.query.weight") >= 0);
  CHECK(ps.find("lm_head.dense.weight") < 0);  // no LM head: nothing the optimizer would decay for nothing
  ps.zero_grad();
  const auto r = m.step(tokens, labels, nb, c.pad_token_id, true);
  CHECK(r.attention > 0);
  expect_ok(testing::check_gradient(ps.values(), ps.grads(), [&] { return m.step(tokens, labels, nb, c.pad_token_id, false).total(); }),
            "NegativeMiningModel<EsmModel>: every parameter");
}
