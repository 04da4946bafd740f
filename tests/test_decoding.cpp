// samplers/decoding.hpp: token choice (greedy, temperature / top-k / top-p
// sampling), generate() and beam_search() on a tiny random T5, each checked
// against a hand-written reference that recomputes the whole model with
// teacher-forced forwards.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/nn/t5.hpp"
#include "plm/samplers/decoding.hpp"

using namespace plm;
using namespace plm::test;
using namespace plm::samplers;

namespace {

using Tokens = std::vector<std::int32_t>;
template <class T> using Model = nn::Ankh3Model<cpu, T>;

nn::T5Config tiny_config(index_t vocab) {
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.vocab_size = vocab;
  return c;
}

// A random model whose next-token distributions are peaked (LM head std 1, as
// transformers initialises it, instead of plm's 0.5 d_model^-1/2): beams then
// finish at different lengths and strategies disagree, which the tests need.
template <class T>
Model<T> peaked_model(index_t vocab, std::uint64_t seed) {
  Model<T> m(tiny_config(vocab), seed);
  auto w = m.params().value("lm_head.weight");
  ops<cpu>::scale(ConstView<cpu, T>(w), static_cast<T>(2.0 * std::sqrt(static_cast<double>(m.config().d_model))), w);
  return m;
}

struct Source {
  Tensor<cpu, std::int32_t> ids;  // (B, S)
  Tensor<cpu, std::uint8_t> valid;  // (B, S); row b ends in b padding positions
};

Source make_source(index_t Bn, index_t S, index_t V, std::uint64_t seed) {
  Source s{Tensor<cpu, std::int32_t>(Shape{Bn, S}), Tensor<cpu, std::uint8_t>(Shape{Bn, S})};
  Philox rng(seed);
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < S; ++t) {
      s.valid.at(b, t) = t < S - b;
      s.ids.at(b, t) = s.valid.at(b, t) ? 2 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(V - 2))) : 0;
    }
  return s;
}

// Rows `order` of a source, in that order.
Source pick_rows(const Source& s, const std::vector<index_t>& order) {
  const index_t S = s.ids.dim(1), n = static_cast<index_t>(order.size());
  Source o{Tensor<cpu, std::int32_t>(Shape{n, S}), Tensor<cpu, std::uint8_t>(Shape{n, S})};
  for (index_t j = 0; j < n; ++j)
    for (index_t t = 0; t < S; ++t) o.ids.at(j, t) = s.ids.at(order[j], t), o.valid.at(j, t) = s.valid.at(order[j], t);
  return o;
}

// Full teacher-forced forward of row b: (len(prefix) + 1, V) logits for dec input [start, prefix...].
template <class T>
Tensor<cpu, T> full_logits(const Model<T>& m, const Source& s, index_t b, const Tokens& prefix, std::int32_t start = 0) {
  const index_t n = static_cast<index_t>(prefix.size()) + 1, V = m.config().vocab_size;
  Tensor<cpu, std::int32_t> dec(Shape{1, n});
  dec.data()[0] = start;
  std::copy(prefix.begin(), prefix.end(), dec.data() + 1);
  Tensor<cpu, T> logits(Shape{1, n, V});
  typename Model<T>::Cache cache;
  m.forward(s.ids.cview().slice(b, b + 1), s.valid.cview().slice(b, b + 1), dec, logits, cache);
  return logits;
}

// sum_t log softmax(logits_t)[tokens[t]], recomputed from scratch, in double.
template <class T>
double teacher_logprob(const Model<T>& m, const Source& s, index_t b, const Tokens& tokens) {
  const index_t V = m.config().vocab_size;
  const auto logits = full_logits(m, s, b, Tokens(tokens.begin(), tokens.end() - 1));
  double sum = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const T* row = logits.data() + static_cast<index_t>(t) * V;
    double mx = -INFINITY, z = 0;
    for (index_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (index_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    sum += double(row[tokens[t]]) - mx - std::log(z);
  }
  return sum;
}

// Greedy by hand: at every step rerun the whole model on the prefix and take the
// argmax, eos forbidden before min_new tokens, stop after eos.
template <class T>
Tokens reference_greedy(const Model<T>& m, const Source& s, index_t b, index_t max_new, std::int32_t eos, index_t min_new = 0) {
  const index_t V = m.config().vocab_size;
  Tokens out;
  for (index_t t = 0; t < max_new; ++t) {
    const auto logits = full_logits(m, s, b, out);
    const T* row = logits.data() + t * V;
    std::int32_t best = -1;
    for (index_t v = 0; v < V; ++v) {
      if (v == eos && t < min_new) continue;
      if (best < 0 || row[v] > row[best]) best = static_cast<std::int32_t>(v);
    }
    out.push_back(best);
    if (best == eos) break;
  }
  return out;
}

template <class T> constexpr double score_tol() { return std::is_same_v<T, double> ? 1e-9 : 2e-4; }

// An eos the model really emits: the first token greedy decoding of row 0
// produces at a step >= `from` that it never produced before, so decoding
// with it stops early and the eos paths run. Returns (eos, that step).
template <class T>
std::pair<std::int32_t, index_t> emitted_eos(const Model<T>& m, const Source& s, index_t from) {
  const Tokens free_run = reference_greedy(m, s, 0, from + 6, -1);
  for (index_t t = from; t < static_cast<index_t>(free_run.size()); ++t)
    if (std::find(free_run.begin(), free_run.begin() + t, free_run[static_cast<std::size_t>(t)]) == free_run.begin() + t)
      return {free_run[static_cast<std::size_t>(t)], t};
  FAIL("row 0 repeats itself from step ", from, ": pick another model seed");
  return {-1, 0};
}

}  // namespace

TEST_CASE("greedy_token and sample_token on one row: masks, ties, u mapping") {
  const std::vector<double> lg = {1.0, 3.0, 3.0, -2.0};
  CHECK(greedy_token(lg) == 1);  // tie -> lower id
  std::vector<float> masked = {1.0f, 3.0f, 3.0f, -2.0f};
  ban_tokens(masked.data(), 4, {1, 2});
  CHECK(greedy_token(masked) == 0);
  // u walks the kept tokens most likely first: p = softmax(1, 3, 3, -2) over {1, 2, 0, 3}
  SamplingOptions o;
  const auto p = sampling_distribution(lg.data(), 4, o);
  CHECK(sample_token(lg, o, 0.0) == 1);
  CHECK(sample_token(lg, o, p[1] - 1e-12) == 1);
  CHECK(sample_token(lg, o, p[1] + 1e-12) == 2);
  CHECK(sample_token(lg, o, p[1] + p[2] + 1e-12) == 0);
  CHECK(sample_token(lg, o, 1 - 1e-15) == 3);
  CHECK(sample_token(masked, o, 0.999) == 3);  // banned tokens are never drawn
  std::vector<double> all_masked(3, -INFINITY);
  check_error([&] { greedy_token(all_masked); }, "greedy_token", "every one of the 3 tokens is masked");
  check_error([&] { sample_token(all_masked, o, 0.5); }, "sample_token", "every one of the 3 tokens is masked");
  check_error([&] { sample_token(lg, o, 1.0); }, "sample_token: u must be", "got 1");
  std::vector<double> nan_row = {0.0, NAN};
  check_error([&] { greedy_token(nan_row); }, "greedy_token: logit of token 1 is nan");
  check_error([&] { ban_tokens(masked.data(), 4, {4}); }, "ban_tokens: banned token 4 outside the vocabulary of 4");
}

TEST_CASE("sample_token frequencies converge to the renormalised softmax of the kept set") {
  const std::vector<double> lg = {1.0, 2.0, 0.5, -1.0, 1.5, 0.0};  // order by likelihood: 1, 4, 0, 2, 5, 3
  struct Case {
    SamplingOptions o;
    std::vector<std::int32_t> kept;  // worked out by hand from the probabilities
  };
  auto opts = [](double temp, index_t k, double p) {
    SamplingOptions o;
    o.temperature = temp, o.top_k = k, o.top_p = p;
    return o;
  };
  // p(T=1) = .420 .255 .154 .094 .057 .021 (sorted): mass before token 2 is .829
  // p(T=0.5) = .635 .234 .086 ...: mass before token 0 is .869
  const Case cases[] = {
      {opts(1.0, 3, 1.0), {1, 4, 0}},              // top-k 3
      {opts(1.0, 0, 0.8), {1, 4, 0}},              // nucleus: .420 + .255 < .8 <= + .154
      {opts(1.0, 0, 0.9), {1, 4, 0, 2}},           // .829 < .9 <= .923
      {opts(0.5, 0, 1.0), {0, 1, 2, 3, 4, 5}},     // temperature only: sharpened
      {opts(0.5, 0, 0.8), {1, 4}},                 // temperature, then nucleus
      {opts(1.0, 2, 0.99), {1, 4}},                // top-k first, then top-p on the renormalised pair
      {opts(2.0, 4, 0.5), {1, 4}},                 // flattened: .357 < .5 <= .357 + .278 (over the top 4)
  };
  int case_no = 0;
  for (const Case& c : cases) {
    INFO("case ", case_no++);
    std::vector<double> want(6, 0.0);
    double z = 0;
    for (std::int32_t v : c.kept) z += std::exp(lg[static_cast<std::size_t>(v)] / c.o.temperature);
    for (std::int32_t v : c.kept) want[static_cast<std::size_t>(v)] = std::exp(lg[static_cast<std::size_t>(v)] / c.o.temperature) / z;
    const auto dist = sampling_distribution(lg.data(), 6, c.o);
    for (int v = 0; v < 6; ++v) CHECK(dist[static_cast<std::size_t>(v)] == doctest::Approx(want[static_cast<std::size_t>(v)]).epsilon(1e-12));
    Philox rng(1234, static_cast<std::uint64_t>(case_no));
    const int draws = 20000;
    std::vector<int> count(6, 0);
    for (int i = 0; i < draws; ++i) ++count[static_cast<std::size_t>(sample_token(lg, c.o, rng))];
    for (int v = 0; v < 6; ++v) {
      INFO("token ", v, ": ", count[static_cast<std::size_t>(v)], " of ", draws, ", p = ", want[static_cast<std::size_t>(v)]);
      CHECK(std::abs(double(count[static_cast<std::size_t>(v)]) / draws - want[static_cast<std::size_t>(v)]) < 0.02);
      if (want[static_cast<std::size_t>(v)] == 0) CHECK(count[static_cast<std::size_t>(v)] == 0);
    }
  }
}

TEST_CASE_TEMPLATE("generate(greedy) equals argmax over full teacher-forced forwards; eos and min_new_tokens", T, double, float) {
  const index_t V = 30, Bn = 3, S = 7;
  Model<T> m = peaked_model<T>(V, 11);
  const Source src = make_source(Bn, S, V, 5);
  GenerateOptions o;
  o.max_new_tokens = 10;
  const auto [eos, eos_step] = emitted_eos(m, src, 2);
  o.eos_id = eos;
  const auto got = generate(m, src.ids, src.valid, o);
  REQUIRE(got.size() == 3);
  for (index_t b = 0; b < Bn; ++b) {
    INFO("row ", b);
    CHECK(got[static_cast<std::size_t>(b)] == reference_greedy(m, src, b, o.max_new_tokens, o.eos_id));
  }
  CHECK(got[0].size() == static_cast<std::size_t>(eos_step + 1));  // stopped at the eos, which is included
  CHECK(got[0].back() == o.eos_id);
  std::set<std::int32_t> distinct;
  for (const auto& r : got) distinct.insert(r.begin(), r.end());
  CHECK(distinct.size() > 3);  // not a degenerate model

  // min_new_tokens: eos masked past the step where row 0 produced it
  o.min_new_tokens = eos_step + 2;
  const auto late = generate(m, src.ids, src.valid, o);
  for (index_t b = 0; b < Bn; ++b) {
    const Tokens& r = late[static_cast<std::size_t>(b)];
    CHECK(r == reference_greedy(m, src, b, o.max_new_tokens, o.eos_id, o.min_new_tokens));
    CHECK(static_cast<index_t>(r.size()) >= o.min_new_tokens);
    for (std::size_t t = 0; t + 1 < r.size(); ++t) CHECK(r[t] != o.eos_id);  // nothing after an eos
  }
  CHECK(late[0] != got[0]);

  // without an eos every row runs to max_new_tokens
  o.eos_id = -1;
  o.min_new_tokens = 0;
  for (const auto& r : generate(m, src.ids, src.valid, o)) CHECK(r.size() == 10);
  // banned tokens never appear
  o.banned = {got[1][0], got[2][0]};
  for (const auto& r : generate(m, src.ids, src.valid, o))
    for (std::int32_t tok : r) CHECK((tok != o.banned[0] && tok != o.banned[1]));
}

TEST_CASE_TEMPLATE("generate(sample): top_k 1 and a tiny top_p are greedy; seeds and streams", T, double, float) {
  const index_t V = 30, Bn = 3, S = 7;
  Model<T> m = peaked_model<T>(V, 12);
  const Source src = make_source(Bn, S, V, 6);
  GenerateOptions g;
  g.max_new_tokens = 9;
  g.eos_id = emitted_eos(m, src, 2).first;
  const auto greedy = generate(m, src.ids, src.valid, g);

  GenerateOptions s = g;
  s.strategy = Strategy::sample;
  s.sampling.temperature = 1.7;
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    s.seed = seed;
    s.sampling.top_k = 1, s.sampling.top_p = 1;
    CHECK(generate(m, src.ids, src.valid, s) == greedy);
    s.sampling.top_k = 0, s.sampling.top_p = 1e-6;
    CHECK(generate(m, src.ids, src.valid, s) == greedy);
  }

  // unrestricted sampling: reproducible, seed-dependent, and per row independent of the batch
  s.sampling = SamplingOptions{};
  s.eos_id = -1;
  s.max_new_tokens = 12;
  s.seed = 77;
  const auto a = generate(m, src.ids, src.valid, s);
  CHECK(generate(m, src.ids, src.valid, s) == a);
  s.seed = 78;
  CHECK(generate(m, src.ids, src.valid, s) != a);
  s.seed = 77;
  CHECK(a != generate(m, src.ids, src.valid, g));  // sampling really departs from greedy
  const std::vector<index_t> perm = {2, 0, 1};
  const Source shuffled = pick_rows(src, perm);
  s.streams = {2, 0, 1};  // each row keeps its stream
  const auto b = generate(m, shuffled.ids, shuffled.valid, s);
  for (std::size_t j = 0; j < 3; ++j) CHECK(b[j] == a[static_cast<std::size_t>(perm[j])]);
  const Source alone = pick_rows(src, {1});
  s.streams = {1};
  CHECK(generate(m, alone.ids, alone.valid, s)[0] == a[1]);
  // the draw stream is keyed by the row's stream, so different streams give different rows
  s.streams = {5, 6, 7};
  CHECK(generate(m, src.ids, src.valid, s) != a);
}

TEST_CASE_TEMPLATE("beam_search: width 1 is greedy; a beam as wide as the sequence space is exhaustive", T, double, float) {
  // width 1, summed log-prob (length_penalty 0): HF's beam search reduces to greedy
  {
    const index_t V = 30, Bn = 3;
    Model<T> m = peaked_model<T>(V, 13);
    const Source src = make_source(Bn, 6, V, 7);
    GenerateOptions g;
    g.max_new_tokens = 8;
    g.eos_id = emitted_eos(m, src, 2).first;
    const auto greedy = generate(m, src.ids, src.valid, g);
    BeamOptions o;
    o.beam_width = 1, o.max_new_tokens = 8, o.length_penalty = 0, o.eos_id = g.eos_id;
    const auto beams = beam_search(m, src.ids, src.valid, o);
    REQUIRE(beams.size() == 3);
    for (index_t b = 0; b < Bn; ++b) {
      const Hypothesis& h = beams[static_cast<std::size_t>(b)].at(0);
      CHECK(h.tokens == greedy[static_cast<std::size_t>(b)]);
      CHECK(h.finished == (h.tokens.back() == o.eos_id));
      CHECK(std::abs(h.sum_logprob - teacher_logprob(m, src, b, h.tokens)) < score_tol<T>());
    }
    CHECK(beams[0][0].finished);
  }

  // vocabulary 5, eos 1, 3 new tokens: 1 + 4 + 16 * 5 = 85 sequences (nothing after an eos)
  const index_t V = 5, Bn = 2, L = 3;
  Model<T> m = peaked_model<T>(V, 14);
  const Source src = make_source(Bn, 5, V, 8);
  std::vector<Tokens> all;
  for (std::int32_t a = 0; a < V; ++a) {
    if (a == 1) { all.push_back({a}); continue; }
    for (std::int32_t b = 0; b < V; ++b) {
      if (b == 1) { all.push_back({a, b}); continue; }
      for (std::int32_t c = 0; c < V; ++c) all.push_back({a, b, c});
    }
  }
  REQUIRE(all.size() == 85);
  for (double alpha : {0.0, 1.0, -0.5}) {
    BeamOptions o;
    o.beam_width = 125, o.num_return = 125, o.max_new_tokens = L, o.length_penalty = alpha, o.eos_id = 1;
    const auto beams = beam_search(m, src.ids, src.valid, o);
    for (index_t b = 0; b < Bn; ++b) {
      INFO("row ", b, ", length_penalty ", alpha);
      std::map<Tokens, double> exact;  // sequence -> teacher-forced sum log-prob
      for (const Tokens& t : all) exact[t] = teacher_logprob(m, src, b, t);
      auto score = [&](const Tokens& t) { return exact[t] / std::pow(double(t.size()), alpha); };
      const Tokens best = *std::max_element(all.begin(), all.end(), [&](const Tokens& x, const Tokens& y) { return score(x) < score(y); });
      const auto& hs = beams[static_cast<std::size_t>(b)];
      REQUIRE(hs.size() == 85);  // every sequence, once
      CHECK(hs[0].tokens == best);
      std::set<Tokens> seen;
      for (std::size_t i = 0; i < hs.size(); ++i) {
        const Hypothesis& h = hs[i];
        seen.insert(h.tokens);
        REQUIRE(exact.count(h.tokens) == 1);
        CHECK(std::abs(h.sum_logprob - exact[h.tokens]) < score_tol<T>());
        CHECK(h.score == doctest::Approx(h.sum_logprob / std::pow(double(h.tokens.size()), alpha)).epsilon(1e-12));
        CHECK(h.finished == (h.tokens.back() == 1));
        if (i > 0) CHECK(hs[i - 1].score >= h.score);
      }
      CHECK(seen.size() == 85);
    }
  }
  // min_new_tokens 2 leaves exactly the 4 * 4 * 5 sequences with no eos among their first two tokens
  BeamOptions o;
  o.beam_width = 125, o.num_return = 125, o.max_new_tokens = L, o.length_penalty = 0, o.eos_id = 1, o.min_new_tokens = 2;
  const auto late = beam_search(m, src.ids, src.valid, o);
  for (index_t b = 0; b < Bn; ++b) {
    const auto& hs = late[static_cast<std::size_t>(b)];
    CHECK(hs.size() == 80);
    std::set<Tokens> seen;
    for (const Hypothesis& h : hs) {
      seen.insert(h.tokens);
      CHECK(h.tokens.size() == 3);
      CHECK((h.tokens[0] != 1 && h.tokens[1] != 1));
      CHECK(std::abs(h.sum_logprob - teacher_logprob(m, src, b, h.tokens)) < score_tol<T>());
    }
    CHECK(seen.size() == 80);
  }
}

TEST_CASE("beam_search with pruning: scores are the model's log-probabilities; min_new_tokens; num_return") {
  const index_t V = 30, Bn = 2;
  Model<double> m = peaked_model<double>(V, 15);
  const Source src = make_source(Bn, 6, V, 9);
  BeamOptions o;
  o.beam_width = 4, o.num_return = 4, o.max_new_tokens = 7, o.length_penalty = 1.0;
  o.eos_id = emitted_eos(m, src, 2).first;
  auto check_hyps = [&](const std::vector<std::vector<Hypothesis>>& beams, index_t min_new) {
    REQUIRE(beams.size() == 2);
    for (index_t b = 0; b < Bn; ++b) {
      const auto& hs = beams[static_cast<std::size_t>(b)];
      CHECK(hs.size() == 4);
      std::set<Tokens> distinct;
      for (std::size_t i = 0; i < hs.size(); ++i) {
        const Hypothesis& h = hs[i];
        distinct.insert(h.tokens);
        CHECK(std::abs(h.sum_logprob - teacher_logprob(m, src, b, h.tokens)) < 1e-9);
        CHECK(h.score == doctest::Approx(h.sum_logprob / double(h.tokens.size())).epsilon(1e-12));
        for (std::size_t t = 0; t + 1 < h.tokens.size(); ++t) CHECK(h.tokens[t] != o.eos_id);
        CHECK(h.finished == (h.tokens.back() == o.eos_id));
        if (h.finished) CHECK(static_cast<index_t>(h.tokens.size()) > min_new);
        else CHECK(static_cast<index_t>(h.tokens.size()) == o.max_new_tokens);
        if (i > 0) CHECK(hs[i - 1].score >= h.score);
      }
      CHECK(distinct.size() == hs.size());
    }
  };
  const auto first = beam_search(m, src.ids, src.valid, o);
  check_hyps(first, 0);
  bool any_finished = false;
  for (const auto& hs : first)
    for (const auto& h : hs) any_finished |= h.finished;
  CHECK(any_finished);
  o.min_new_tokens = 4;
  check_hyps(beam_search(m, src.ids, src.valid, o), 4);
  // num_return keeps the best ones, and a batch gives each row what it gives alone
  o.num_return = 2;
  const auto two = beam_search(m, src.ids, src.valid, o);
  const Source row1 = pick_rows(src, {1});
  const auto alone = beam_search(m, row1.ids, row1.valid, o);
  REQUIRE(two[1].size() == 2);
  REQUIRE(alone[0].size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(alone[0][i].tokens == two[1][i].tokens);
    CHECK(std::abs(alone[0][i].sum_logprob - two[1][i].sum_logprob) < 1e-9);
  }
}

TEST_CASE("decoding options are validated by name") {
  Model<double> m = peaked_model<double>(12, 16);
  const Source src = make_source(2, 4, 12, 3);
  BeamOptions b;
  b.beam_width = 0;
  check_error([&] { beam_search(m, src.ids, src.valid, b); }, "beam_search: beam_width must be positive, got 0");
  b.beam_width = 2, b.num_return = 3;
  check_error([&] { beam_search(m, src.ids, src.valid, b); }, "beam_search: num_return 3", "beam_width = 2");
  b.num_return = 1, b.max_new_tokens = 0;
  check_error([&] { beam_search(m, src.ids, src.valid, b); }, "beam_search: max_new_tokens must be positive, got 0");
  b.max_new_tokens = 3, b.eos_id = 12;
  check_error([&] { beam_search(m, src.ids, src.valid, b); }, "beam_search: eos_id 12 outside the vocabulary of 12");

  GenerateOptions g;
  g.strategy = Strategy::sample;
  g.sampling.top_p = 1.5;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: top_p must be in (0, 1], got 1.5");
  g.sampling.top_p = 0;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "top_p must be in (0, 1], got 0");
  g.sampling.top_p = 1, g.sampling.temperature = 0;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: temperature must be positive", "got 0", "Strategy::greedy");
  g.sampling.temperature = 1, g.sampling.top_k = -1;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: top_k must be >= 0", "got -1");
  g.sampling.top_k = 0, g.min_new_tokens = 100;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: min_new_tokens 100", "max_new_tokens = 64");
  g.min_new_tokens = 0, g.streams = {1, 2, 3};
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: 3 streams for a batch of 2 rows");
  g.streams.clear(), g.decoder_start_id = -1;
  check_error([&] { generate(m, src.ids, src.valid, g); }, "generate: decoder_start_id -1 outside the vocabulary of 12");
  const std::vector<double> lg = {0.0, 1.0};
  SamplingOptions so;
  so.temperature = -1;
  check_error([&] { sample_token(lg, so, 0.5); }, "sample_token: temperature must be positive", "got -1");
}
