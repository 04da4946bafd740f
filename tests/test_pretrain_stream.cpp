// samplers/pretrain_stream.hpp: the Ankh3 pre-training stream (pools, held-out
// split, epochs, per-batch masking probability) and its resume contract, plus
// the policy names of data/ that its command lines parse.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/vocabulary.hpp"
#include "plm/samplers/pretrain_stream.hpp"

using namespace plm;
using namespace plm::samplers;
using plm::test::check_error;
using plm::test::write_file;
using plm::test::write_gzip;
using plm::test::TempDir;

namespace {

// n records of 3..40 random residues (Philox, so the same every run), record i named "p<i>".
std::string random_fasta(int n, std::uint64_t seed) {
  const std::string residues = "ACDEFGHIKLMNPQRSTVWY";
  Philox rng(seed, 0);
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += ">p" + std::to_string(i) + " test record\n";
    const std::uint32_t len = 3 + rng.below(38);
    for (std::uint32_t k = 0; k < len; ++k) s += residues[rng.below(20)];
    s += "\n";
  }
  return s;
}



Ankh3Sampler make_sampler(bool per_batch) {
  Ankh3Options so;
  so.mask_probabilities = {0.15, 0.3, 0.45};
  so.probability_per_batch = per_batch;
  so.split = {0.3, 0.7};
  so.seed = 11;
  return Ankh3Sampler(so, ankh3_tokens(data::Vocabulary::ankh3()));
}

PretrainStreamOptions make_options(const std::string& train) {
  PretrainStreamOptions o;
  o.train = train;
  o.valid_fraction = 0.2;
  o.pool = 7;
  o.fasta.min_length = 5;
  o.fasta.max_length = 30;
  o.fasta.too_long = data::TooLongPolicy::crop_random;
  o.fasta.seed = 4;
  o.batching.token_budget = 160;
  o.batching.window = 0;
  o.seed = 9;
  return o;
}

PretrainStream make_stream(const PretrainStreamOptions& o, bool per_batch = false) {
  return PretrainStream(o, data::Vocabulary::ankh3(), make_sampler(per_batch));
}

// What a batch is: for each row, the record it came from and the example.
using Row = std::tuple<std::uint64_t, int, std::vector<std::int32_t>, std::vector<std::int32_t>, double>;
std::vector<Row> describe(const PretrainStream& s, const std::vector<index_t>& rows) {
  std::vector<Row> d;
  for (index_t i : rows) {
    const auto& ex = s.pool().examples[static_cast<std::size_t>(i)];
    d.emplace_back(s.pool().records[static_cast<std::size_t>(i)], static_cast<int>(ex.task), ex.inputs, ex.targets, ex.mask_probability);
  }
  return d;
}

std::set<std::uint64_t> ids(const ExamplePool& p) { return {p.records.begin(), p.records.end()}; }

}  // namespace

TEST_CASE("pretrain stream: a restored cursor gives exactly the uninterrupted batches, across pools and epochs") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(40, 1));
  for (bool per_batch : {false, true}) {
    CAPTURE(per_batch);
    const auto o = make_options(path);
    auto a = make_stream(o, per_batch);
    const int n = 45;
    std::vector<std::vector<Row>> batches;
    std::vector<io::TrainingState> states;  // saved after each batch
    std::set<std::uint64_t> pools;
    for (int i = 0; i < n; ++i) {
      batches.push_back(describe(a, a.next()));
      pools.insert(a.cursor().pool_position);
      io::TrainingState ts;
      a.save(ts);
      states.push_back(ts);
    }
    // The run crossed several pools and two epoch boundaries, so both kinds of move are covered.
    REQUIRE(a.cursor().epoch >= 2);
    REQUIRE(pools.size() >= 3);
    for (int i = 0; i < n - 1; ++i) {
      CAPTURE(i);
      auto b = make_stream(o, per_batch);
      b.restore(states[static_cast<std::size_t>(i)]);
      CHECK(b.cursor() == PretrainCursor{states[static_cast<std::size_t>(i)].epoch,
                                         states[static_cast<std::size_t>(i)].extra["pretrain_stream"]["pool_position"].get<std::uint64_t>(),
                                         states[static_cast<std::size_t>(i)].cursor});
      bool same = true;
      for (int k = i + 1; k < n; ++k) same = same && describe(b, b.next()) == batches[static_cast<std::size_t>(k)];
      CHECK(same);
    }
  }
}

TEST_CASE("pretrain stream: a gzip file streams the same batches as the plain one") {
  TempDir tmp;
  const std::string text = random_fasta(30, 2);
  write_file(tmp.file("a.fasta"), text);
  write_gzip(tmp.file("a.fasta.gz"), text);
  auto plain = make_stream(make_options(tmp.file("a.fasta")));
  auto gz = make_stream(make_options(tmp.file("a.fasta.gz")));
  for (int i = 0; i < 20; ++i) CHECK(describe(plain, plain.next()) == describe(gz, gz.next()));
}

TEST_CASE("pretrain stream: held-out and training records are disjoint, the held-out set is fixed") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(60, 3));
  auto o = make_options(path);
  o.valid_max = 1000;
  auto s = make_stream(o);
  const ExamplePool held = s.held_out();
  const auto held_ids = ids(held);
  REQUIRE(!held_ids.empty());
  // One epoch of training records.
  std::set<std::uint64_t> train_ids;
  while (s.cursor().epoch == 0) {
    s.next();
    const auto p = ids(s.pool());
    if (s.cursor().epoch == 0) train_ids.insert(p.begin(), p.end());
  }
  for (std::uint64_t id : held_ids) CHECK(train_ids.count(id) == 0);
  // Together they are every record that passes the length filter.
  std::set<std::uint64_t> usable;
  for (const auto& r : data::read_fasta(path, o.fasta)) usable.insert(r.index);
  std::set<std::uint64_t> both = train_ids;
  both.insert(held_ids.begin(), held_ids.end());
  CHECK(both == usable);
  // Fixed: the same examples again, also from a stream with another pool size and
  // in another epoch; batches are in order (not shuffled) and cover every example once.
  for (std::size_t pool : {std::size_t{7}, std::size_t{13}}) {
    auto o2 = o;
    o2.pool = pool;
    const ExamplePool again = make_stream(o2).held_out();
    CHECK(again.records == held.records);
    bool same = again.examples.size() == held.examples.size() && again.batches == held.batches;
    for (std::size_t i = 0; same && i < held.examples.size(); ++i)
      same = again.examples[i].inputs == held.examples[i].inputs && again.examples[i].targets == held.examples[i].targets;
    CHECK(same);
  }
  std::vector<index_t> covered;
  for (const auto& b : held.batches) covered.insert(covered.end(), b.begin(), b.end());
  std::sort(covered.begin(), covered.end());
  CHECK(covered.size() == held.examples.size());
  CHECK(std::adjacent_find(covered.begin(), covered.end()) == covered.end());
  // valid_max caps it to the first held-out records.
  auto o3 = o;
  o3.valid_max = 3;
  const auto few = make_stream(o3).held_out();
  REQUIRE(few.records.size() == 3);
  CHECK(std::equal(few.records.begin(), few.records.end(), held.records.begin()));
}

TEST_CASE("pretrain stream: a validation file leaves every training record to training") {
  TempDir tmp;
  write_file(tmp.file("train.fasta"), random_fasta(20, 4));
  write_file(tmp.file("valid.fasta"), random_fasta(6, 5));
  auto o = make_options(tmp.file("train.fasta"));
  o.valid = tmp.file("valid.fasta");
  auto s = make_stream(o);
  std::set<std::uint64_t> train_ids;
  while (s.cursor().epoch == 0) {
    s.next();
    if (s.cursor().epoch == 0) train_ids.insert(s.pool().records.begin(), s.pool().records.end());
  }
  CHECK(train_ids.size() == data::read_fasta(o.train, o.fasta).size());
  const auto held = s.held_out();
  CHECK(held.records.size() == data::read_fasta(o.valid, o.fasta).size());
}

TEST_CASE("pretrain stream: one masking probability per batch, every example built once with it") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(80, 6));
  auto o = make_options(path);
  o.pool = 30;
  auto s = make_stream(o, true);
  const auto tokens_of = [&](std::uint64_t index) {
    for (const auto& r : data::read_fasta(path, o.fasta))
      if (r.index == index) return data::Vocabulary::ankh3().encode(r.sequence, {false});
    FAIL("no record ", index);
    return std::vector<std::int32_t>{};
  };
  std::set<double> probabilities;
  std::uint64_t built = 0, last_pool = ~std::uint64_t{0};
  int nlu_rows = 0;
  while (s.cursor().epoch == 0) {
    const auto& rows = s.next();
    if (s.cursor().epoch != 0) break;
    if (s.cursor().pool_position != last_pool) built += s.pool().examples.size(), last_pool = s.cursor().pool_position;
    double p = -1;
    for (index_t i : rows) {
      const auto& ex = s.pool().examples[static_cast<std::size_t>(i)];
      if (ex.task != Task::nlu) continue;
      ++nlu_rows;
      if (p < 0) p = ex.mask_probability;
      CHECK(ex.mask_probability == p);
    }
    if (p > 0) probabilities.insert(p);
    // The batch was sized with the examples it holds: its padded cost is within budget.
    std::vector<index_t> in, out;
    for (const auto& ex : s.pool().examples) in.push_back(index_t(ex.inputs.size())), out.push_back(index_t(ex.targets.size()));
    CHECK(padded_tokens(rows, in, out) <= o.batching.token_budget);
  }
  REQUIRE(nlu_rows > 20);
  CHECK(probabilities.size() >= 2);  // the probability varies between batches
  // One example per training record read: nothing was built twice (the stream
  // is now one pool into epoch 1, which it also built).
  CHECK(s.examples_built() == built + s.pool().examples.size());
  // Each example is what the sampler makes from its record with that probability.
  const auto& p = s.pool();
  for (std::size_t i = 0; i < p.examples.size(); i += 5) {
    const auto& ex = p.examples[i];
    const auto again = s.sampler().make(tokens_of(p.records[i]), pretrain_keys::example(1, p.records[i]),
                                        s.sampler().batch_mask_probability(pretrain_keys::example(1, p.records[i])));
    CHECK(again.inputs == ex.inputs);
    CHECK(again.targets == ex.targets);
  }
}

TEST_CASE("pretrain stream: cursors of another file or other settings are refused") {
  TempDir tmp;
  write_file(tmp.file("a.fasta"), random_fasta(40, 7));
  write_file(tmp.file("b.fasta"), random_fasta(41, 8));
  const auto o = make_options(tmp.file("a.fasta"));
  auto a = make_stream(o);
  for (int i = 0; i < 9; ++i) a.next();
  io::TrainingState ts;
  a.save(ts);
  REQUIRE(ts.extra["pretrain_stream"]["pool_position"].get<std::uint64_t>() > 0);

  auto other_pool = o;
  other_pool.pool = 8;
  check_error([&] { make_stream(other_pool).restore(ts); }, "saved with pool = 7", "this stream has 8", "another file or other settings");
  check_error([&] { make_stream(o, true).restore(ts); }, "probability_per_batch");
  check_error([&] { make_stream(make_options(tmp.file("b.fasta"))).restore(ts); }, "saved with train = ", "b.fasta");
  // The same path, rewritten with other content.
  {
    TempDir tmp2;
    write_file(tmp2.file("a.fasta"), random_fasta(40, 7));
    auto s = make_stream(make_options(tmp2.file("a.fasta")));
    io::TrainingState t2;
    s.next(), s.next(), s.save(t2);
    write_file(tmp2.file("a.fasta"), random_fasta(52, 9));
    check_error([&] { make_stream(make_options(tmp2.file("a.fasta"))).restore(t2); }, "train_bytes");
  }
  check_error([&] { make_stream(o).restore(io::TrainingState{}); }, "no data cursor");

  auto s = make_stream(o), reference = make_stream(o);
  for (int i = 0; i < 3; ++i) s.next(), reference.next();
  check_error([&] { s.seek({0, 3, 0}); }, "a.fasta", "no pool of 7 training records starts there");
  check_error([&] { s.seek({0, 1000, 0}); }, "the file ends at record 40");
  check_error([&] { s.seek({0, ts.extra["pretrain_stream"]["pool_position"].get<std::uint64_t>(), 1000}); }, "that pool has only");
  check_error([&] { s.seek({pretrain_keys::held_out_epoch, 0, 0}); }, "beyond the training range");
  // A refused cursor leaves the stream where it was, across the next pools too.
  CHECK(s.cursor() == reference.cursor());
  bool same = true;
  for (int i = 0; i < 15; ++i) same = same && describe(s, s.next()) == describe(reference, reference.next());
  CHECK(same);
  const PretrainCursor good{2, ts.extra["pretrain_stream"]["pool_position"].get<std::uint64_t>(), 1};
  s.seek(good);
  CHECK(s.cursor() == good);
}

TEST_CASE("pretrain stream: a file without training records is an error naming it") {
  TempDir tmp;
  write_file(tmp.file("short.fasta"), ">a\nMKV\n>b\nMK\n");
  auto o = make_options(tmp.file("short.fasta"));  // min_length 5: everything is skipped
  check_error([&] { make_stream(o); }, "short.fasta", "yields no training records", "2 were skipped");
  o.train = tmp.file("missing.fasta");
  check_error([&] { make_stream(o); }, "missing.fasta", "no such file");
  // No held-out record: an error naming the file and what to change.
  write_file(tmp.file("one.fasta"), ">a\nMKVLAAGLLLAV\n");
  auto o2 = make_options(tmp.file("one.fasta"));
  o2.valid_fraction = 1e-9;
  check_error([&] { make_stream(o2).held_out(); }, "no held-out records in", "one.fasta", "valid_fraction");
  o2.valid_fraction = 1.5;
  check_error([&] { make_stream(o2); }, "valid_fraction 1.5 must be in (0, 1)");
}

TEST_CASE("pretrain stream: the residue-frequency baseline") {
  const auto v = data::Vocabulary::ankh3();
  const std::int32_t L = v.id_of("L"), A = v.id_of("A"), eos = v.eos_id();
  const std::vector<PretrainRecord> train = {{0, {L, L, A}}, {1, {A, L, L}}};  // L 4 times, A twice
  Seq2SeqExample nlu, s2s;
  nlu.task = Task::nlu, nlu.targets = {v.sentinel_id(0), L, v.sentinel_id(1), A, eos};  // residue targets L, A
  s2s.task = Task::s2s, s2s.targets = {L, L, L, A, eos};
  const auto b = residue_frequency_baseline(train, {nlu, s2s}, v);
  CHECK(b.token == L);
  CHECK(b.accuracy.at("nlu") == doctest::Approx(0.5));
  CHECK(b.accuracy.at("s2s") == doctest::Approx(0.75));
  check_error([&] { residue_frequency_baseline({}, {nlu}, v); }, "no residue tokens");
}

TEST_CASE("data policies: names round-trip, unknown names are listed") {
  for (auto p : {data::TooLongPolicy::skip, data::TooLongPolicy::crop_random, data::TooLongPolicy::crop_start, data::TooLongPolicy::error})
    CHECK(data::parse_too_long_policy(data::policy_name(p)) == p);
  CHECK(std::string(data::policy_name(data::TooLongPolicy::crop_random)) == "crop-random");
  check_error([] { data::parse_too_long_policy("crop_random"); }, "'crop_random'", "skip, crop-random, crop-start, error");
  for (auto p : {data::RarePolicy::keep, data::RarePolicy::unk, data::RarePolicy::error})
    CHECK(data::parse_rare_policy(data::policy_name(p)) == p);
  check_error([] { data::parse_rare_policy("drop"); }, "'drop'", "keep, unk, error");
}
