// samplers/mlm_stream.hpp: the masked-LM pre-training stream (the example
// stream of example_stream.hpp with masked-LM examples) and its resume
// contract; the ESM-2 alphabet preset and its saved tokenizer files; and, run
// by tests/esm2_matches_transformers.sh only, the check that a model
// esm2_pretrain wrote gives transformers' logits.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/io/esm_checkpoint.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/io/tokenizer_files.hpp"
#include "plm/nn/esm.hpp"
#include "plm/samplers/mlm_stream.hpp"
#include "plm/samplers/pretrain_stream.hpp"

using namespace plm;
using namespace plm::samplers;
using plm::test::check_error;
using plm::test::TempDir;
using plm::test::write_file;

namespace {

// n records of 3..60 random residues (Philox: the same every run), record i named "m<i>".
std::string random_fasta(int n, std::uint64_t seed) {
  const std::string residues = "ACDEFGHIKLMNPQRSTVWY";
  Philox rng(seed, 0);
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += ">m" + std::to_string(i) + "\n";
    const std::uint32_t len = 3 + rng.below(58);
    for (std::uint32_t k = 0; k < len; ++k) s += residues[rng.below(20)];
    s += "\n";
  }
  return s;
}

const data::Vocabulary& esm_vocab() {
  static const data::Tokenizer t = data::Tokenizer::esm2();
  return t.vocabulary();
}

MlmExamples make_maker(double select = 0.15) {
  MlmOptions m;
  m.select_probability = select;
  m.seed = 21;
  return MlmExamples(m, mlm_tokens(esm_vocab()));
}

PretrainStreamOptions make_options(const std::string& train) {
  PretrainStreamOptions o;
  o.train = train;
  o.valid_fraction = 0.2;
  o.pool = 9;
  o.fasta.min_length = 4;
  o.fasta.max_length = 40;
  o.fasta.too_long = data::TooLongPolicy::crop_random;
  o.fasta.seed = 3;
  o.batching.token_budget = 150;
  o.batching.window = 0;
  o.seed = 17;
  return o;
}

MlmStream make_stream(const PretrainStreamOptions& o, double select = 0.15) { return MlmStream(o, esm_vocab(), make_maker(select)); }

// A batch as what it holds: per row, the record and its example.
using Row = std::tuple<std::uint64_t, std::vector<std::int32_t>, std::vector<std::int32_t>>;
std::vector<Row> describe(const MlmStream& s, const std::vector<index_t>& rows) {
  std::vector<Row> d;
  for (index_t i : rows) {
    const auto& ex = s.pool().examples[static_cast<std::size_t>(i)];
    d.emplace_back(s.pool().records[static_cast<std::size_t>(i)], ex.ids, ex.labels);
  }
  return d;
}

// The residue tokens of record `index` as the stream reads them.
std::vector<std::int32_t> tokens_of(const PretrainStreamOptions& o, std::uint64_t index) {
  for (const auto& r : data::read_fasta(o.train, o.fasta))
    if (r.index == index) {
      data::EncodeOptions eo;
      eo.append_eos = false;
      return esm_vocab().encode(r.sequence, eo);
    }
  FAIL("no record ", index);
  return {};
}

}  // namespace

TEST_CASE("mlm stream: a restored cursor gives exactly the uninterrupted batches, across pools and epochs") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(45, 1));
  const auto o = make_options(path);
  auto a = make_stream(o);
  const int n = 60;
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
  REQUIRE(a.cursor().epoch >= 2);  // pool moves and epoch wrap-arounds are both covered
  REQUIRE(pools.size() >= 3);
  int checked = 0;
  for (int i = 0; i < n - 1; ++i) {
    CAPTURE(i);
    auto b = make_stream(o);
    b.restore(states[static_cast<std::size_t>(i)]);
    bool same = true;
    for (int k = i + 1; k < n; ++k) same = same && describe(b, b.next()) == batches[static_cast<std::size_t>(k)];
    CHECK(same);
    ++checked;
  }
  CHECK(checked == n - 1);
}

TEST_CASE("mlm stream: every example is <cls> residues <eos> masked by its own key, the same whenever it is rebuilt") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(40, 2));
  const auto o = make_options(path);
  auto s = make_stream(o);
  const auto& v = esm_vocab();
  const std::int32_t cls = *v.find("<cls>"), mask = *v.find("<mask>");
  while (s.cursor().epoch == 0) s.next();  // now in epoch 1: keys differ from epoch 0's
  const auto& p = s.pool();
  REQUIRE(p.examples.size() >= 5);
  std::int64_t selected = 0, residues = 0, masked = 0;
  for (std::size_t i = 0; i < p.examples.size(); ++i) {
    const auto& ex = p.examples[i];
    const auto tokens = tokens_of(o, p.records[i]);
    REQUIRE(ex.ids.size() == tokens.size() + 2);
    CHECK(ex.ids.front() == cls);
    CHECK(ex.ids.back() == v.eos_id());
    CHECK(ex.labels.front() == -100);
    CHECK(ex.labels.back() == -100);
    std::int64_t here = 0;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const std::int32_t label = ex.labels[t + 1], id = ex.ids[t + 1];
      if (label == -100) {
        CHECK(id == tokens[t]);  // not selected: unchanged
        continue;
      }
      CHECK(label == tokens[t]);
      ++here, masked += id == mask;
    }
    CHECK(here >= 1);  // every sequence has at least one selected residue
    selected += here, residues += static_cast<std::int64_t>(tokens.size());
    // The same example from the maker and the key of (epoch 1, record).
    const auto again = s.maker().make(tokens, pretrain_keys::example(1, p.records[i]));
    CHECK(again.ids == ex.ids);
    CHECK(again.labels == ex.labels);
    // Another epoch masks the record differently (for a record long enough to tell).
    if (tokens.size() >= 30) CHECK(s.maker().make(tokens, pretrain_keys::example(0, p.records[i])).labels != ex.labels);
  }
  CHECK(double(selected) / double(residues) == doctest::Approx(0.15).epsilon(0.5));
  CHECK(masked > 0);
  CHECK(masked < selected);
  // A stream over the same file with the same settings builds the same pool.
  auto t = make_stream(o);
  while (t.cursor().epoch == 0) t.next();
  CHECK(t.pool().records == p.records);
  CHECK(t.pool().batches == p.batches);
}

TEST_CASE("mlm stream: held-out and training records are disjoint, every training record is used once per epoch") {
  TempDir tmp;
  const std::string path = tmp.file("train.fasta");
  write_file(path, random_fasta(70, 3));
  auto o = make_options(path);
  o.valid_max = 1000;
  auto s = make_stream(o);
  const auto held = s.held_out();
  const std::set<std::uint64_t> held_ids(held.records.begin(), held.records.end());
  REQUIRE(!held_ids.empty());
  std::set<std::uint64_t> usable;
  for (const auto& r : data::read_fasta(path, o.fasta)) usable.insert(r.index);
  std::set<std::uint64_t> training_part;
  for (std::uint64_t id : usable)
    if (!held_ids.count(id)) training_part.insert(id);
  // The records of the batches handed out, epoch by epoch.
  std::map<std::uint64_t, std::map<std::uint64_t, int>> used;  // epoch -> record -> times
  while (s.cursor().epoch < 3) {
    const auto& rows = s.next();
    if (s.cursor().epoch >= 3) break;
    for (index_t i : rows) used[s.cursor().epoch][s.pool().records[static_cast<std::size_t>(i)]] += 1;
  }
  REQUIRE(used.size() == 3);
  for (const auto& [epoch, times] : used) {
    CAPTURE(epoch);
    std::set<std::uint64_t> ids;
    bool once = true;
    for (const auto& [id, k] : times) ids.insert(id), once = once && k == 1;
    CHECK(once);
    CHECK(ids == training_part);  // all of the training part, none of the held-out records
  }
  // The held-out set: batches in order, each example once, the same from a stream with another pool size.
  std::vector<index_t> covered;
  for (const auto& b : held.batches) covered.insert(covered.end(), b.begin(), b.end());
  std::sort(covered.begin(), covered.end());
  CHECK(covered.size() == held.examples.size());
  CHECK(std::adjacent_find(covered.begin(), covered.end()) == covered.end());
  auto o2 = o;
  o2.pool = 23;
  const auto again = make_stream(o2).held_out();
  CHECK(again.records == held.records);
  bool same = again.examples.size() == held.examples.size();
  for (std::size_t i = 0; same && i < held.examples.size(); ++i)
    same = again.examples[i].ids == held.examples[i].ids && again.examples[i].labels == held.examples[i].labels;
  CHECK(same);
  // Batches respect the token budget (padded rows x longest).
  for (const auto& b : held.batches) {
    std::size_t longest = 0;
    for (index_t i : b) longest = std::max(longest, held.examples[static_cast<std::size_t>(i)].ids.size());
    CHECK(index_t(longest * b.size()) <= o.batching.token_budget);
  }
}

TEST_CASE("mlm stream: collated batches are padded with <pad>, labels -100 off the selected positions") {
  TempDir tmp;
  write_file(tmp.file("t.fasta"), random_fasta(30, 4));
  auto s = make_stream(make_options(tmp.file("t.fasta")));
  MlmBatch<cpu> b;
  s.next(b);
  const auto& rows = s.cursor().batch ? s.pool().batches[static_cast<std::size_t>(s.cursor().batch - 1)] : std::vector<index_t>{};
  REQUIRE(!rows.empty());
  REQUIRE(b.ids.dim(0) == index_t(rows.size()));
  const index_t S = b.ids.dim(1);
  index_t tokens = 0;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& ex = s.pool().examples[static_cast<std::size_t>(rows[r])];
    for (index_t t = 0; t < S; ++t) {
      const auto k = static_cast<index_t>(r) * S + t;
      if (t < index_t(ex.ids.size())) {
        CHECK(b.ids.data()[k] == ex.ids[static_cast<std::size_t>(t)]);
        CHECK(b.labels.data()[k] == ex.labels[static_cast<std::size_t>(t)]);
        CHECK(b.valid.data()[k] == 1);
      } else {
        CHECK(b.ids.data()[k] == esm_vocab().pad_id());
        CHECK(b.labels.data()[k] == -100);
        CHECK(b.valid.data()[k] == 0);
      }
    }
    tokens += index_t(ex.ids.size());
  }
  CHECK(b.tokens == tokens);
}

TEST_CASE("mlm stream: cursors of another file, other settings or another recipe are refused") {
  TempDir tmp;
  write_file(tmp.file("a.fasta"), random_fasta(40, 5));
  write_file(tmp.file("b.fasta"), random_fasta(41, 6));
  const auto o = make_options(tmp.file("a.fasta"));
  auto a = make_stream(o);
  for (int i = 0; i < 7; ++i) a.next();
  io::TrainingState ts;
  a.save(ts);
  REQUIRE(ts.extra["pretrain_stream"]["pool_position"].get<std::uint64_t>() > 0);

  check_error([&] { make_stream(o, 0.3).restore(ts); }, "MlmStream::restore", "saved with select_probability = 0.15", "this stream has 0.3");
  auto other_pool = o;
  other_pool.pool = 10;
  check_error([&] { make_stream(other_pool).restore(ts); }, "saved with pool = 9", "another file or other settings");
  check_error([&] { make_stream(make_options(tmp.file("b.fasta"))).restore(ts); }, "saved with train = ", "b.fasta");
  check_error([&] { make_stream(o).restore(io::TrainingState{}); }, "no data cursor");
  // An Ankh3 stream's cursor over the same file: another recipe.
  {
    Ankh3Options ao;
    auto ao_stream = o;
    PretrainStream ankh(ao_stream, data::Vocabulary::ankh3(), Ankh3Sampler(ao, ankh3_tokens(data::Vocabulary::ankh3())));
    ankh.next();
    io::TrainingState t2;
    ankh.save(t2);
    check_error([&] { make_stream(o).restore(t2); }, "saved with examples = null");
  }
  // Positions that are not where a pool starts; a refused cursor leaves the stream where it was.
  auto s = make_stream(o), reference = make_stream(o);
  for (int i = 0; i < 3; ++i) s.next(), reference.next();
  check_error([&] { s.seek({0, 2, 0}); }, "MlmStream: cursor", "a.fasta", "no pool of 9 training records starts there");
  check_error([&] { s.seek({0, 1000, 0}); }, "the file ends at record 40");
  check_error([&] { s.seek({0, 0, 1000}); }, "that pool has only");
  check_error([&] { s.seek({pretrain_keys::held_out_epoch, 0, 0}); }, "beyond the training range");
  CHECK(s.cursor() == reference.cursor());
  bool same = true;
  for (int i = 0; i < 12; ++i) same = same && describe(s, s.next()) == describe(reference, reference.next());
  CHECK(same);
}

TEST_CASE("mlm stream: a file without usable records is an error naming it") {
  TempDir tmp;
  write_file(tmp.file("short.fasta"), ">a\nMKV\n>b\nMK\n");
  auto o = make_options(tmp.file("short.fasta"));  // min_length 4: everything is skipped
  check_error([&] { make_stream(o); }, "MlmStream: ", "short.fasta", "yields no training records", "2 were skipped");
  MlmOptions bad;
  bad.mask_fraction = 0.9, bad.random_fraction = 0.2;
  check_error([&] { MlmExamples(bad, mlm_tokens(esm_vocab())); }, "mask_fraction 0.9 and random_fraction 0.2");
  check_error([&] { mlm_tokens(data::Vocabulary::ankh3()); }, "no <cls> token");
}

TEST_CASE("mlm stream: the frequency baseline counts the training targets and scores the held-out ones") {
  const auto& v = esm_vocab();
  const std::int32_t L = *v.residue_id('L'), A = *v.residue_id('A'), G = *v.residue_id('G');
  MlmExample t1, t2, h1, h2;
  t1.labels = {-100, L, -100, A, -100};  // L twice, A once, G never among the targets (it is only an input)
  t1.ids = {0, L, G, A, 2};
  t2.labels = {-100, L, -100};
  h1.labels = {-100, L, A, -100};
  h2.labels = {G, -100, L, L};
  const auto b = mlm_frequency_baseline({t1, t2}, {h1, h2});
  CHECK(b.token == L);
  CHECK(b.positions == 5);
  CHECK(b.accuracy == doctest::Approx(3.0 / 5.0));
  check_error([&] { mlm_frequency_baseline({h1}, {MlmExample{{0, 2}, {-100, -100}}}); }, "held-out examples have no masked targets");
  check_error([&] { mlm_frequency_baseline({MlmExample{{0, 2}, {-100, -100}}}, {h1}); }, "training examples have no masked targets");
}

TEST_CASE("ESM-2 alphabet preset: the published vocab.txt, EsmTokenizer's ids, and saved files that read back the same") {
  const data::Tokenizer preset = data::Tokenizer::esm2();
  const data::Tokenizer published = data::Tokenizer::from_directory((std::filesystem::path(PLM_FIXTURES_DIR) / "esm" / "tokenizer").string());
  const auto& a = preset.vocabulary();
  const auto& b = published.vocabulary();
  REQUIRE(a.size() == 33);
  REQUIRE(b.size() == 33);
  for (std::int32_t i = 0; i < 33; ++i) CHECK(a.token(i) == b.token(i));
  CHECK(preset.is_esm());
  CHECK(data::Tokenizer::load("esm2").vocabulary().size() == 33);
  for (const char* seq : {"MKTAYIAKQRQISFVKSHFSRQ", "MKjjT*A", "XBUZO.-LAG"})
    for (auto style : {data::InputStyle::string, data::InputStyle::words}) CHECK(preset.encode(seq, style).ids == published.encode(seq, style).ids);
  TempDir tmp;
  io::save_tokenizer(preset, tmp.dir.string());
  std::vector<std::string> files = tmp.entries();
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"special_tokens_map.json", "tokenizer_config.json", "vocab.txt"});
  const data::Tokenizer back = data::Tokenizer::from_directory(tmp.dir.string());
  CHECK(back.is_esm());
  for (std::int32_t i = 0; i < 33; ++i) CHECK(back.vocabulary().token(i) == a.token(i));
  CHECK(back.encode("MKTAYIAKQ", data::InputStyle::string).ids == preset.encode("MKTAYIAKQ", data::InputStyle::string).ids);
}

// Run by tests/esm2_matches_transformers.sh: PLM_ESM2_MODEL is a directory
// esm2_pretrain wrote, PLM_ESM2_REFERENCE what transformers computed from it
// (EsmForMaskedLM.from_pretrained, AutoTokenizer): ids of a few sequences and
// their float64 logits.
TEST_CASE("esm2_pretrain's model gives transformers' logits" * doctest::skip()) {
  const char* dir = std::getenv("PLM_ESM2_MODEL");
  const char* ref_path = std::getenv("PLM_ESM2_REFERENCE");
  REQUIRE_MESSAGE((dir != nullptr && ref_path != nullptr), "set PLM_ESM2_MODEL and PLM_ESM2_REFERENCE");
  const io::SafetensorsReader ref(ref_path);
  const auto sequences = nlohmann::json::parse(ref.metadata().at("sequences")).get<std::vector<std::string>>();
  const auto ids = ref.load<std::int32_t>("input_ids");  // (B, T), padded with <pad>
  const auto want = ref.load<double>("logits");          // (B, T, V)
  const auto valid = ref.load<std::int32_t>("attention_mask");
  const data::Tokenizer tok = data::Tokenizer::from_directory(dir);
  const auto model = io::load_esm<nn::EsmModel<cpu, float>>(dir);
  const index_t Bn = ids.dim(0), Tn = ids.dim(1), V = want.dim(2);
  REQUIRE(index_t(sequences.size()) == Bn);
  REQUIRE(V == model.config().vocab_size);
  // The tokenizer files give the ids AutoTokenizer gave.
  for (index_t r = 0; r < Bn; ++r) {
    const auto e = tok.encode(sequences[static_cast<std::size_t>(r)], data::InputStyle::string);
    std::vector<std::int32_t> row;
    for (index_t t = 0; t < Tn; ++t)
      if (valid.data()[r * Tn + t]) row.push_back(ids.data()[r * Tn + t]);
    CHECK(e.ids == row);
  }
  Tensor<cpu, std::int32_t> x(Shape{Bn, Tn});
  Tensor<cpu, std::uint8_t> m(Shape{Bn, Tn});
  for (index_t k = 0; k < Bn * Tn; ++k) x.data()[k] = ids.data()[k], m.data()[k] = static_cast<std::uint8_t>(valid.data()[k]);
  Tensor<cpu, float> logits(Shape{Bn, Tn, V});
  nn::EsmModel<cpu, float>::Cache cache;
  model.forward(x.cview(), m.cview(), logits.view(), cache);
  double worst = 0, scale = 0;
  for (index_t k = 0; k < Bn * Tn; ++k) {
    if (!valid.data()[k]) continue;
    for (index_t c = 0; c < V; ++c) {
      const double y = want.data()[k * V + c];
      worst = std::max(worst, std::abs(double(logits.data()[k * V + c]) - y));
      scale = std::max(scale, std::abs(y));
    }
  }
  MESSAGE("esm2_pretrain model against transformers: max abs logit difference ", worst, " (largest logit ", scale, ")");
  CHECK(scale > 0);
  CHECK(worst <= 1e-4 * std::max(1.0, scale));
}
