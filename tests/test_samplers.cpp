// samplers/: span masks, sentinel encoding, completion splits, task mixing,
// length-bucketed batches and collation.
#include <map>
#include <set>

#include "ops_test_support.hpp"
#include "plm/samplers/ankh3.hpp"
#include "plm/samplers/batching.hpp"
#include "plm/samplers/negatives.hpp"
#include "plm/samplers/span_mask.hpp"

using namespace plm;
using namespace plm::samplers;
using plm::test::check_error;

namespace {
std::vector<std::int32_t> sentinel_ids(int n) {
  std::vector<std::int32_t> s;
  for (int k = 0; k < n; ++k) s.push_back(1000 + k);
  return s;
}
std::vector<std::int32_t> random_residues(index_t n, Philox& rng) {
  std::vector<std::int32_t> r(static_cast<std::size_t>(n));
  for (auto& x : r) x = 3 + static_cast<std::int32_t>(rng.below(20));
  return r;
}
}  // namespace

TEST_CASE("random_spans_noise_mask: rate, span length, T5 layout") {
  for (double L : {1.0, 3.0}) {
    for (double p : {0.1, 0.2, 0.3}) {
      Philox rng(7, static_cast<std::uint64_t>(p * 100 + L));
      index_t total = 0, noise = 0, spans = 0;
      for (int e = 0; e < 1500; ++e) {
        const index_t n = 50 + rng.below(400);
        const auto m = random_spans_noise_mask(n, p, L, rng);
        REQUIRE(static_cast<index_t>(m.size()) == n);
        CHECK(m[0] == 0);  // T5: the sequence starts with a clean run
        for (index_t i = 0; i < n; ++i) {
          noise += m[i];
          spans += m[i] && (i == 0 || !m[i - 1]);
        }
        total += n;
        if (L == 1.0)
          for (index_t i = 1; i < n; ++i) CHECK_FALSE((m[i] && m[i - 1]));  // Ankh3: one residue per sentinel
      }
      INFO("p = ", p, " L = ", L);
      CHECK(std::abs(double(noise) / double(total) - p) < 0.005);
      CHECK(std::abs(double(noise) / double(spans) - L) < 0.05 * L);
    }
  }
  Philox rng(1);
  CHECK(random_spans_noise_mask(1, 0.2, 1, rng) == std::vector<std::uint8_t>{0});
  const auto capped = random_spans_noise_mask(200, 0.3, 1, rng, 4);  // 60 residues under 4 sentinels
  index_t spans = 0, noise = 0;
  for (std::size_t i = 0; i < capped.size(); ++i) noise += capped[i], spans += capped[i] && !capped[i - 1];
  CHECK(noise == 60);
  CHECK(spans == 4);
  check_error([&] { random_spans_noise_mask(10, 1.0, 1, rng); }, "masking probability 1 must be in (0, 1)");
  check_error([&] { random_spans_noise_mask(10, 0.2, 0.5, rng); }, "mean span length 0.5 must be >= 1");
}

TEST_CASE("span_corrupt: T5 sentinel encoding of inputs and targets, and its inverse") {
  const std::vector<std::int32_t> tok = {10, 11, 12, 13, 14, 15, 16, 17};
  const std::vector<std::uint8_t> mask = {0, 1, 1, 0, 0, 1, 0, 1};
  const auto s = sentinel_ids(5);
  const auto c = span_corrupt(tok, mask, s);
  CHECK(c.inputs == std::vector<std::int32_t>{10, 1000, 13, 14, 1001, 16, 1002});
  CHECK(c.targets == std::vector<std::int32_t>{1000, 11, 12, 1001, 15, 1002, 17});
  CHECK(c.spans == 3);
  CHECK(c.masked == 4);
  CHECK(span_restore(c.inputs, c.targets, s) == tok);
  check_error([&] { span_corrupt(tok, mask, sentinel_ids(2)); }, "span 3 needs more than the 2 sentinel tokens");
  check_error([&] { span_restore(c.inputs, {11, 1000}, s); }, "targets start with token 11, not a sentinel");

  Philox rng(3);
  for (int e = 0; e < 300; ++e) {
    const auto r = random_residues(2 + rng.below(300), rng);
    const auto m = random_spans_noise_mask(static_cast<index_t>(r.size()), 0.15 + 0.1 * (e % 3), 1 + e % 4, rng, 100);
    const auto ce = span_corrupt(r, m, sentinel_ids(100));
    CHECK(span_restore(ce.inputs, ce.targets, sentinel_ids(100)) == r);
    CHECK(ce.inputs.size() + ce.targets.size() == r.size() + 2 * static_cast<std::size_t>(ce.spans));
  }
}

TEST_CASE("CompletionSplit: fixed and random split points") {
  Philox rng(5);
  CompletionSplit half;
  CHECK(half.split_point(10, rng) == 5);
  CHECK(half.split_point(7, rng) == 4);  // round(3.5)
  CHECK(half.split_point(2, rng) == 1);
  CompletionSplit range{0.3, 0.7};
  double sum = 0;
  for (int i = 0; i < 4000; ++i) {
    const index_t k = range.split_point(100, rng);
    CHECK(k >= 30);
    CHECK(k <= 70);
    sum += double(k);
  }
  CHECK(std::abs(sum / 4000 - 50) < 1.0);
  check_error([&] { half.split_point(1, rng); }, "a sequence of 1 tokens cannot be split");
  check_error([] { CompletionSplit{0.6, 0.4}.validate(); }, "fraction range [0.6, 0.4]");
}

TEST_CASE("Ankh3Sampler: task mix, prefixes, eos, reconstruction, reproducibility") {
  Ankh3Options o;
  o.mask_probabilities = {0.1, 0.2, 0.3};
  o.nlu_weight = 3;
  o.s2s_weight = 1;
  o.seed = 11;
  Ankh3Tokens t{200, 201, 1, sentinel_ids(128), true};
  Ankh3Sampler sampler(o, t);
  Philox rng(9);
  int nlu = 0, n = 6000;
  std::map<double, int> drawn;
  index_t masked = 0, residues = 0;
  for (int e = 0; e < n; ++e) {
    const auto r = random_residues(20 + rng.below(200), rng);
    const auto ex = sampler.make(r, static_cast<std::uint64_t>(e));
    REQUIRE(ex.inputs.size() >= 2);
    CHECK(ex.inputs.back() == 1);
    CHECK(ex.targets.back() == 1);
    std::vector<std::int32_t> in(ex.inputs.begin() + 1, ex.inputs.end() - 1), out(ex.targets.begin(), ex.targets.end() - 1);
    if (ex.task == Task::nlu) {
      ++nlu;
      CHECK(ex.inputs[0] == 200);
      CHECK(span_restore(in, out, t.sentinels) == r);
      drawn[ex.mask_probability] += 1;
      masked += ex.masked;
      residues += static_cast<index_t>(r.size());
    } else {
      CHECK(ex.inputs[0] == 201);
      in.insert(in.end(), out.begin(), out.end());
      CHECK(in == r);
      CHECK(ex.masked == static_cast<index_t>(out.size()));
      CHECK(std::abs(double(out.size()) - double(r.size()) / 2) <= 0.5);
    }
    // the same key gives the same example
    const auto again = sampler.make(r, static_cast<std::uint64_t>(e));
    CHECK(again.inputs == ex.inputs);
    CHECK(again.targets == ex.targets);
  }
  CHECK(std::abs(double(nlu) / n - 0.75) < 0.02);
  REQUIRE(drawn.size() == 3);
  for (const auto& [p, count] : drawn) CHECK(std::abs(double(count) / nlu - 1.0 / 3) < 0.03);
  CHECK(std::abs(double(masked) / double(residues) - 0.2) < 0.01);

  o.probability_per_batch = true;
  o.nlu_weight = 1;
  o.s2s_weight = 0;
  Ankh3Sampler per_batch(o, t);
  const double p = per_batch.batch_mask_probability(4);
  CHECK(per_batch.batch_mask_probability(4) == p);
  for (int e = 0; e < 20; ++e) CHECK(per_batch.make(random_residues(50, rng), static_cast<std::uint64_t>(e), p).mask_probability == p);

  Ankh3Tokens no_prefix = t;
  no_prefix.nlu = -1;
  check_error([&] { Ankh3Sampler(o, no_prefix); }, "task prefixes need the [NLU] and [S2S] token ids");
  check_error([&] { sampler.make({5}, 3); }, "example 3 has 1 residues");
  o.mask_probabilities = {0.2, 1.5};
  check_error([&] { Ankh3Sampler(o, t); }, "masking probability 1.5 must be in (0, 1)");
}

TEST_CASE("length_bucket_batches: budget, coverage, reproducibility, less padding than random batches") {
  Philox gen(21);
  std::vector<index_t> in, out;
  for (int i = 0; i < 3000; ++i) {
    // targets grow with inputs, as for both Ankh3 tasks
    in.push_back(10 + gen.below(500));
    out.push_back(2 + in.back() * 2 / 5 + gen.below(20));
  }
  BatchOptions o;
  o.token_budget = 8192;
  o.window = 512;
  Philox a(1), b(1);
  const auto batches = length_bucket_batches(in, out, o, a);
  CHECK(batches == length_bucket_batches(in, out, o, b));
  std::vector<int> seen(in.size(), 0);
  index_t padded = 0, real = 0;
  for (const auto& bt : batches) {
    CHECK_FALSE(bt.empty());
    CHECK(padded_tokens(bt, in, out) <= o.token_budget);
    padded += padded_tokens(bt, in, out);
    for (index_t i : bt) seen[static_cast<std::size_t>(i)] += 1, real += in[static_cast<std::size_t>(i)] + out[static_cast<std::size_t>(i)];
  }
  for (int s : seen) CHECK(s == 1);
  // the same budget without sorting pads far more
  BatchOptions unsorted = o;
  unsorted.sort_by_length = false;
  Philox c(1);
  index_t padded_unsorted = 0;
  for (const auto& bt : length_bucket_batches(in, out, unsorted, c)) padded_unsorted += padded_tokens(bt, in, out);
  CHECK(double(real) / double(padded) > 0.9);
  CHECK(padded < padded_unsorted);

  o.max_rows = 8;
  Philox d(2);
  for (const auto& bt : length_bucket_batches(in, out, o, d)) CHECK(bt.size() <= 8);
  o.token_budget = 600;
  Philox e(3);
  check_error([&] { length_bucket_batches({100, 700}, {5, 5}, o, e); }, "example 1 has 700 input + 5 target tokens",
              "token budget 600");
}

TEST_CASE("collate: padding, shifted decoder input, ignored labels") {
  std::vector<Seq2SeqExample> ex(2);
  ex[0] = {Task::nlu, {200, 5, 1000, 1}, {1000, 6, 1}, 0.2, 1};
  ex[1] = {Task::s2s, {201, 7, 1}, {8, 9, 10, 1}, 0, 4};
  Seq2SeqBatch<cpu> b;
  collate<cpu>(ex, {0, 1}, b);
  CHECK(b.enc_ids.shape() == Shape({2, 4}));
  CHECK(b.labels.shape() == Shape({2, 4}));
  const std::vector<std::int32_t> enc(b.enc_ids.data(), b.enc_ids.data() + 8);
  CHECK(enc == std::vector<std::int32_t>{200, 5, 1000, 1, 201, 7, 1, 0});
  const std::vector<std::uint8_t> ev(b.enc_valid.data(), b.enc_valid.data() + 8);
  CHECK(ev == std::vector<std::uint8_t>{1, 1, 1, 1, 1, 1, 1, 0});
  const std::vector<std::int32_t> dec(b.dec_ids.data(), b.dec_ids.data() + 8), lab(b.labels.data(), b.labels.data() + 8);
  CHECK(dec == std::vector<std::int32_t>{0, 1000, 6, 0, 0, 8, 9, 10});
  CHECK(lab == std::vector<std::int32_t>{1000, 6, 1, -100, 8, 9, 10, 1});
  CHECK(b.task == std::vector<std::int32_t>{0, 1});
  CHECK(b.input_tokens == 7);
  CHECK(b.target_tokens == 7);
  check_error([&] { collate<cpu>(ex, {2}, b); }, "row 2 outside the 2 examples");
}

TEST_CASE("negatives by label: other labels only, uniform label choice, seeded, new draws each epoch") {
  // labels 0..3 with 10, 30, 5 and 1 members: label choice must not follow the sizes
  std::vector<std::int32_t> labels;
  for (auto [y, n] : {std::pair{0, 10}, std::pair{1, 30}, std::pair{2, 5}, std::pair{3, 1}})
    for (int i = 0; i < n; ++i) labels.push_back(y);
  const LabelIndex idx(labels);
  NegativeOptions o{3, 17};
  std::map<std::int32_t, int> chosen;
  int draws = 0;
  for (index_t a = 0; a < idx.size(); ++a)
    for (std::uint64_t epoch = 0; epoch < 60; ++epoch) {
      const auto neg = sample_negatives_by_label(idx, a, epoch, o);
      REQUIRE(neg.size() == 3);
      for (index_t n : neg) {
        CHECK(idx.label(n) != idx.label(a));
        if (idx.label(a) == 1) chosen[idx.label(n)] += 1, ++draws;  // anchors of label 1: labels 0, 2, 3 each 1/3
      }
    }
  for (std::int32_t y : {0, 2, 3}) CHECK(std::abs(double(chosen[y]) / draws - 1.0 / 3) < 0.02);
  CHECK(sample_negatives_by_label(idx, 4, 2, o) == sample_negatives_by_label(idx, 4, 2, o));
  int differ = 0;
  for (std::uint64_t e = 0; e < 10; ++e) differ += sample_negatives_by_label(idx, 4, e, o) != sample_negatives_by_label(idx, 4, e + 1, o);
  CHECK(differ >= 8);
  check_error([] { sample_negatives_by_label(LabelIndex({2, 2}), 0, 0, {}); }, "every protein has label 2");

  // positives: same label, never the anchor itself, every other member reachable
  std::set<index_t> seen;
  for (std::uint64_t e = 0; e < 400; ++e) {
    const index_t p = sample_positive(idx, 3, e, 5);
    CHECK(p != 3);
    CHECK(idx.label(p) == 0);
    seen.insert(p);
  }
  CHECK(seen.size() == 9);
  CHECK(sample_positive(idx, 45, 0, 5) == -1);  // the only member of label 3
}

TEST_CASE("negatives by pairs: only listed non-partners") {
  const std::vector<std::vector<index_t>> non_partners = {{2, 3}, {0}, {}};
  NegativeOptions o{4, 1};
  for (std::uint64_t e = 0; e < 20; ++e) {
    for (index_t n : sample_negatives_by_pairs(non_partners, 0, e, o)) CHECK((n == 2 || n == 3));
    for (index_t n : sample_negatives_by_pairs(non_partners, 1, e, o)) CHECK(n == 0);
  }
  check_error([&] { sample_negatives_by_pairs(non_partners, 2, 0, o); }, "protein 2 has no known non-interacting partner");
}

TEST_CASE("hard_negatives: the true nearest proteins of other labels, by brute force") {
  const index_t N = 40, C = 7;
  auto emb = plm::test::random_tensor<float>(Shape{N, C}, 31);
  std::vector<std::int32_t> labels;
  for (index_t i = 0; i < N; ++i) labels.push_back(static_cast<std::int32_t>(i % 4));
  const LabelIndex idx(labels);
  const auto hard = hard_negatives<cpu, float>(emb, idx, 5);
  for (index_t i = 0; i < N; ++i) {
    std::vector<std::pair<double, index_t>> all;
    for (index_t j = 0; j < N; ++j) {
      if (labels[static_cast<std::size_t>(j)] == labels[static_cast<std::size_t>(i)]) continue;
      double d = 0, a = 0, b = 0;
      for (index_t c = 0; c < C; ++c) {
        const double x = emb.data()[i * C + c], y = emb.data()[j * C + c];
        d += x * y, a += x * x, b += y * y;
      }
      all.push_back({-d / std::sqrt(a * b), j});
    }
    std::sort(all.begin(), all.end());
    REQUIRE(hard[static_cast<std::size_t>(i)].size() == 5);
    for (std::size_t r = 0; r < 5; ++r) CHECK(hard[static_cast<std::size_t>(i)][r] == all[r].second);
  }
  Tensor<cpu, float> zero(Shape{2, 3});
  std::fill(zero.data(), zero.data() + 6, 0.0f);
  check_error([&] { hard_negatives<cpu, float>(zero, LabelIndex({0, 1}), 1); }, "embedding of protein 0 has norm 0");
}

TEST_CASE("pad_rows: chosen sequences padded to the longest, validity marks tokens") {
  const std::vector<std::vector<std::int32_t>> seqs = {{5, 6, 7}, {8}, {9, 10}};
  Tensor<cpu, std::int32_t> ids;
  Tensor<cpu, std::uint8_t> valid;
  samplers::pad_rows<cpu>(seqs, {2, 1}, 0, ids, valid);
  REQUIRE(ids.shape() == Shape({2, 2}));
  CHECK(std::vector<std::int32_t>(ids.data(), ids.data() + 4) == std::vector<std::int32_t>{9, 10, 8, 0});
  CHECK(std::vector<int>(valid.data(), valid.data() + 4) == std::vector<int>{1, 1, 1, 0});
  check_error([&] { samplers::pad_rows<cpu>(seqs, {3}, 0, ids, valid); }, "row 3 outside the 3 sequences");
  check_error([&] { samplers::pad_rows<cpu>({{}}, {0}, 0, ids, valid); }, "sequence 0 is empty");
}
