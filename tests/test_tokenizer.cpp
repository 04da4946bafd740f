// data/tokenizer.hpp: the ids of a protein equal what transformers'
// AutoTokenizer gives for the same tokenizer directory, for both call styles
// (tests/fixtures/tokenizers/, made by tests/fixtures/make_tokenizer_fixtures.py),
// and tokenizers plm cannot reproduce are refused with the reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ops_test_support.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/io/tokenizer_files.hpp"
#include "plm/nn/t5.hpp"
#include "plm/train/embed.hpp"

#ifndef PLM_FIXTURES_DIR
#error "PLM_FIXTURES_DIR must name tests/fixtures"
#endif

using namespace plm;
using namespace plm::data;
using plm::test::check_error;
using plm::test::TempDir;
using plm::test::write_file;
namespace fs = std::filesystem;

namespace {

std::string tokenizer_fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / "tokenizers" / name).string(); }

std::vector<FastaRecord> fixture_sequences() {
  return read_fasta(tokenizer_fixture("sequences.fasta"));  // as written: lowercase and '*' kept
}

nlohmann::json expected(const std::string& shape) {
  std::ifstream in(tokenizer_fixture(shape) + "/expected.json");
  return nlohmann::json::parse(in);
}

// Every sequence in both styles, and where each token's characters are.
void check_shape(const std::string& shape) {
  const Tokenizer tok = Tokenizer::from_directory(tokenizer_fixture(shape));
  CHECK(tok.is_pretrained());
  const nlohmann::json want = expected(shape);
  const auto records = fixture_sequences();
  REQUIRE(records.size() == 200);
  REQUIRE(want.at("string").size() == records.size());
  CHECK(tok.vocabulary().size() == want.at("vocab_size").get<int>());
  for (const auto& [name, id] : want.at("token_ids").items()) {
    INFO(shape, ": token ", name);
    CHECK(tok.vocabulary().id_of(name) == id.get<int>());
  }
  for (const InputStyle style : {InputStyle::string, InputStyle::words}) {
    const auto& rows = want.at(style_name(style));
    for (std::size_t i = 0; i < records.size(); ++i) {
      const Encoding e = tok.encode(records[i].sequence, style, records[i].id);
      const std::vector<std::int32_t> ids = rows[i].get<std::vector<std::int32_t>>();
      INFO(shape, " ", style_name(style), " record ", i, " ", records[i].id, ": ", records[i].sequence);
      REQUIRE(e.ids == ids);
      // Every input character is held by exactly one token, in order.
      std::int32_t next = 0;
      for (std::size_t t = 0; t < e.size(); ++t) {
        CHECK(e.begin[t] <= e.end[t]);
        if (e.holds_residue(t)) {
          CHECK(e.begin[t] == next);
          next = e.end[t];
        }
      }
      CHECK(next == static_cast<std::int32_t>(records[i].sequence.size()));
    }
  }
}

}  // namespace

TEST_CASE("Tokenizer: Unigram with \"\u2581\"-prefixed residue pieces gives transformers' ids") { check_shape("unigram_prefixed"); }
TEST_CASE("Tokenizer: Unigram with a separate \"\u2581\" piece gives transformers' ids") { check_shape("unigram_space"); }
TEST_CASE("Tokenizer: WordPiece gives transformers' ids") { check_shape("wordpiece"); }
TEST_CASE("Tokenizer: character WordLevel gives transformers' ids") { check_shape("wordlevel_chars"); }
TEST_CASE("Tokenizer: a converted SentencePiece tokenizer.json (Precompiled character map) gives transformers' ids") {
  check_shape("spiece_converted");
}
TEST_CASE("Tokenizer: the precompiled character map maps what NFKC maps, and leaves residues alone") {
  std::ifstream in(tokenizer_fixture("spiece_converted") + "/tokenizer.json");
  const auto j = nlohmann::json::parse(in);
  const data::detail::Charsmap map(data::detail::base64_decode(j.at("normalizer").at("precompiled_charsmap").get<std::string>()));
  CHECK(map.lookup("\xEF\xBC\xA1") == std::optional<std::string_view>("A"));  // U+FF21 FULLWIDTH A
  CHECK(map.lookup("\xEF\xBD\x8D") == std::optional<std::string_view>("m"));  // U+FF4D FULLWIDTH m
  CHECK(!map.lookup("A"));
  CHECK(!map.lookup("*"));
  check_error([] { (void)data::detail::Charsmap(std::string("\x10\0\0\0abcd", 8)); }, "damaged");
  check_error([] { (void)data::detail::Charsmap(std::string("\x04\0\0\0\xFF\xFF\xFF\xFF", 8)).lookup("A"); }, "damaged");
}
#ifdef PLM_SENTENCEPIECE
TEST_CASE("Tokenizer: spiece.model through SentencePiece gives transformers' ids") { check_shape("spiece"); }
#else
TEST_CASE("Tokenizer: spiece.model without SentencePiece is refused with the fix") {
  check_error([] { (void)Tokenizer::from_directory(tokenizer_fixture("spiece")); }, "spiece.model", "libsentencepiece-dev");
}
#endif

TEST_CASE("Tokenizer: the words style puts a lone \"\u2581\" before every residue, holding none") {
  const Tokenizer tok = Tokenizer::from_directory(tokenizer_fixture("unigram_space"));
  const Vocabulary& v = tok.vocabulary();
  const Encoding e = tok.encode("MKV", InputStyle::words);
  const std::int32_t space = v.id_of("\u2581");
  REQUIRE(e.ids == std::vector<std::int32_t>{space, v.id_of("M"), space, v.id_of("K"), space, v.id_of("V"), v.eos_id()});
  CHECK(!e.holds_residue(0));
  CHECK((e.begin[1] == 0 && e.end[1] == 1));
  CHECK((e.begin[5] == 2 && e.end[5] == 3));
  CHECK(!e.holds_residue(6));
  const Encoding s = tok.encode("MKV", InputStyle::string);
  CHECK(s.ids == std::vector<std::int32_t>{space, v.id_of("M"), v.id_of("K"), v.id_of("V"), v.eos_id()});
}

TEST_CASE("Tokenizer: plm's own vocabulary holds one residue per token") {
  const Tokenizer tok = Tokenizer::load("ankh3");
  CHECK(!tok.is_pretrained());
  const Encoding e = tok.encode("MKVx*", InputStyle::words);
  const Vocabulary& v = tok.vocabulary();
  CHECK(e.ids == std::vector<std::int32_t>{v.id_of("M"), v.id_of("K"), v.id_of("V"), v.id_of("X"), v.eos_id()});
  CHECK(!e.holds_residue(4));
}

TEST_CASE("Tokenizer: what plm cannot reproduce is refused with the file and the reason") {
  TempDir dir;
  const auto write_tokenizer = [&](const std::string& name, const std::string& model, const std::string& pre = "null",
                                   const std::string& post = "null") {
    const std::string d = dir.file(name);
    fs::create_directories(d);
    write_file(d + "/tokenizer.json", "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": " + pre +
                                          ", \"post_processor\": " + post + ", \"model\": " + model + "}");
    return d;
  };
  const std::string unigram_vocab = "[[\"<pad>\", 0], [\"</s>\", 0], [\"<unk>\", 0], [\"A\", -1], ";
  const std::string merged = write_tokenizer("merged", "{\"type\": \"Unigram\", \"unk_id\": 2, \"vocab\": " + unigram_vocab + "[\"\u2581AL\", -2]]}");
  check_error([&] { (void)Tokenizer::from_directory(merged); }, merged + "/tokenizer.json", "merges residues", "\u2581AL");
  const std::string bpe = write_tokenizer("bpe", "{\"type\": \"BPE\", \"vocab\": {\"<pad>\": 0, \"</s>\": 1, \"<unk>\": 2}, \"merges\": []}");
  check_error([&] { (void)Tokenizer::from_directory(bpe); }, bpe + "/tokenizer.json", "BPE");
  const std::string bytes = write_tokenizer("bytelevel", "{\"type\": \"Unigram\", \"unk_id\": 2, \"vocab\": " + unigram_vocab + "[\"L\", -2]]}",
                                            "{\"type\": \"ByteLevel\"}");
  check_error([&] { (void)Tokenizer::from_directory(bytes); }, "ByteLevel");
  const std::string fallback = write_tokenizer(
      "fallback", "{\"type\": \"Unigram\", \"unk_id\": 2, \"byte_fallback\": true, \"vocab\": " + unigram_vocab + "[\"L\", -2]]}");
  check_error([&] { (void)Tokenizer::from_directory(fallback); }, "byte_fallback");
  // a single-sequence template that repeats the residues (found by fuzzing)
  const std::string word_level = "{\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<pad>\": 0, \"</s>\": 1, \"<unk>\": 2, \"A\": 3}}";
  const std::string twice = write_tokenizer(
      "twice", word_level, "null",
      "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
      "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}");
  check_error([&] { (void)Tokenizer::from_directory(twice); }, twice + "/tokenizer.json", "holds the sequence twice");
  const std::string b = write_tokenizer("b", word_level, "null",
                                        "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
                                        "\"special_tokens\": {}}");
  check_error([&] { (void)Tokenizer::from_directory(b); }, "sequence must be A");
  const std::string empty = dir.file("empty");
  fs::create_directories(empty);
  check_error([&] { (void)Tokenizer::from_directory(empty); }, empty, "no tokenizer.json");
}

TEST_CASE("Tokenizer: input that is not a protein is refused with its column") {
  const Tokenizer tok = Tokenizer::from_directory(tokenizer_fixture("unigram_space"));
  check_error([&] { (void)tok.encode("MK V", InputStyle::words, "P1"); }, "column 2", "P1");
  check_error([&] { (void)tok.encode("MK<extra_id_0>", InputStyle::string, "P2"); }, "column 2", "P2");
}

TEST_CASE("embed: a directory with its own tokenizer embeds as transformers' eval-mode encoder") {
  // embed_model/: dropout_rate 0.1, the unigram_space tokenizer ("▁" before every residue in the words style).
  const std::string dir = tokenizer_fixture("embed_model");
  const Tokenizer tok = Tokenizer::from_directory(dir);
  const io::SafetensorsReader ref(tokenizer_fixture("embed_expected.safetensors"));
  const auto want = ref.load<float>("mean");
  const auto ids = nlohmann::json::parse(ref.metadata().at("ids")).get<std::vector<std::string>>();
  const auto records = fixture_sequences();
  std::vector<std::string> sequences;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    REQUIRE(records[i].id == ids[i]);
    sequences.push_back(records[i].sequence);
  }
  using M = nn::AnkhModel<cpu, float>;  // gated-gelu
  const M model = io::load_t5_encoder<M>(dir);
  CHECK(model.config().dropout_rate == doctest::Approx(0.1));
  train::EmbedOptions o;
  o.prefix = tok.vocabulary().nlu_id();
  o.token_budget = 300;  // several batches
  o.layers = {-1, 0, 2};
  o.per_residue = o.eos = true;
  const train::Embeddings e = train::embed(model, tok, sequences, o, ids);
  REQUIRE(e.layers.size() == 3);
  REQUIRE(e.mean().shape() == want.shape());
  // Per protein, the relative difference of the embedding vectors (float here, float64 in transformers).
  double worst = 0, largest = 0;
  const index_t C = want.dim(1);
  for (index_t i = 0; i < want.dim(0); ++i) {
    double diff = 0, norm = 0;
    for (index_t c = 0; c < C; ++c) {
      const double a = e.mean().data()[i * C + c], b = want.data()[i * C + c];
      diff += (a - b) * (a - b);
      norm += b * b;
      largest = std::max(largest, std::abs(a - b));
    }
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  MESSAGE("embeddings against transformers: worst relative difference ", worst, ", largest absolute ", largest);
  CHECK(worst <= 1e-5);
  // Layer 2 of 2 is the last one: the same states. Layer 0 is the embedding table's rows.
  CHECK(e.layers[2].mean.shape() == e.layers[0].mean.shape());
  for (index_t i = 0; i < e.mean().numel(); ++i) REQUIRE(e.layers[2].mean.data()[i] == e.layers[0].mean.data()[i]);
  const auto table = model.params().value("shared.weight");
  for (std::size_t p = 0; p < 3; ++p) {
    const Encoding enc = tok.encode(sequences[p], InputStyle::words);
    REQUIRE(e.layers[0].per_residue[p].dim(0) == static_cast<index_t>(sequences[p].size()));
    index_t row = 0;
    for (std::size_t t = 0; t < enc.size(); ++t) {
      if (!enc.holds_residue(t)) continue;
      for (index_t c = 0; c < C; ++c) REQUIRE(e.layers[1].per_residue[p].data()[row * C + c] == table.data()[enc.ids[t] * C + c]);
      ++row;
    }
  }
  // An id outside the model's embedding table (a larger vocabulary) is refused.
  const Tokenizer bigger = Tokenizer::load("ankh3");  // 256 ids, the model has 47
  train::EmbedOptions big;
  big.prefix = bigger.vocabulary().sentinel_id(0);  // id 255
  check_error([&] { (void)train::embed(model, bigger, {"MKW"}, big, {"P9"}); }, "P9", "token id 255", "outside the model's vocabulary of 47");
}

TEST_CASE("embed: long proteins are refused, truncated or embedded in overlapping windows") {
  const std::string dir = tokenizer_fixture("embed_model");
  const Tokenizer tok = Tokenizer::from_directory(dir);
  const nn::AnkhModel<cpu, float> model = io::load_t5_encoder<nn::AnkhModel<cpu, float>>(dir);
  std::string protein;
  for (const auto& r : fixture_sequences())
    if (r.sequence.size() >= 60 && r.sequence.find_first_not_of("ACDEFGHIKLMNPQRSTVWY") == std::string::npos) {
      protein = r.sequence.substr(0, 60);
      break;
    }
  REQUIRE(protein.size() == 60);
  const std::string short_one = "MKVLAAG";
  train::EmbedOptions o;
  o.per_residue = o.eos = true;
  const auto whole = train::embed(model, tok, {protein, short_one}, o);
  o.max_length = 24;
  check_error([&] { (void)train::embed(model, tok, {short_one, protein}, o, {"short", "long"}); }, "long", "60 residues",
              "max_length 24");
  o.long_policy = train::LongPolicy::truncate;
  const auto cut = train::embed(model, tok, {protein, short_one}, o);
  CHECK(cut.truncated == 1);
  CHECK(cut.layers[0].per_residue[0].dim(0) == 24);
  const auto first24 = train::embed(model, tok, {protein.substr(0, 24)}, train::EmbedOptions{});
  // Other batches, other GEMM shapes: equal to float rounding.
  const auto near = [](float a, float b) { return std::abs(a - b) <= 1e-5f * (1.0f + std::abs(b)); };
  for (index_t c = 0; c < first24.mean().numel(); ++c) CHECK(near(cut.mean().data()[c], first24.mean().data()[c]));
  o.long_policy = train::LongPolicy::windows;
  o.overlap = 8;  // windows [0,24) [16,40) [32,56) [36,60)
  CHECK(train::detail::residue_windows(60, 24, 8) ==
        std::vector<std::pair<std::size_t, std::size_t>>{{0, 24}, {16, 40}, {32, 56}, {36, 60}});
  const auto win = train::embed(model, tok, {protein, short_one}, o);
  CHECK(win.windowed == 1);
  REQUIRE(win.layers[0].per_residue[0].dim(0) == 60);
  // The short protein is untouched; residue 3 is seen by the first window only, as in a pass over [0, 24).
  const index_t C = model.config().d_model;
  for (index_t c = 0; c < C; ++c) CHECK(near(win.mean().data()[C + c], whole.mean().data()[C + c]));
  const auto head = [&] {
    train::EmbedOptions h;
    h.per_residue = true;
    return train::embed(model, tok, {protein.substr(0, 24)}, h);
  }();
  for (index_t c = 0; c < C; ++c) CHECK(near(win.layers[0].per_residue[0].data()[3 * C + c], head.layers[0].per_residue[0].data()[3 * C + c]));
  // Windows see less context than the whole protein: close, not equal.
  double diff = 0, norm = 0;
  for (index_t c = 0; c < C; ++c) {
    diff += std::pow(double(win.mean().data()[c]) - whole.mean().data()[c], 2);
    norm += std::pow(double(whole.mean().data()[c]), 2);
  }
  CHECK(std::sqrt(diff / norm) < 0.5);
  o.overlap = 24;
  check_error([&] { (void)train::embed(model, tok, {protein}, o); }, "overlap 24", "smaller than max_length 24");
}

TEST_CASE("save_tokenizer: plm's vocabulary and copied Hugging Face files read back to the same ids") {
  TempDir dir;
  const auto records = fixture_sequences();
  {  // plm's preset: a WordLevel tokenizer.json that gives Vocabulary::encode's ids for upper-case residues
    const Tokenizer own = Tokenizer::load("ankh3");
    const std::string d = dir.file("own");
    fs::create_directories(d);
    io::save_tokenizer(own, d);
    const Tokenizer back = Tokenizer::from_directory(d);
    CHECK(back.is_pretrained());
    CHECK(back.vocabulary().tokens() == own.vocabulary().tokens());
    CHECK(back.vocabulary().nlu_id() == own.vocabulary().nlu_id());
    CHECK(back.vocabulary().sentinel_id(7) == own.vocabulary().sentinel_id(7));
    for (const auto& r : records) {
      std::string upper = r.sequence;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (upper.find('*') != std::string::npos) continue;
      for (const InputStyle style : {InputStyle::words, InputStyle::string}) {
        INFO(r.id, " ", style_name(style));
        CHECK(back.encode(upper, style).ids == own.encode(upper, style).ids);
      }
    }
  }
  {  // Hugging Face files: copied byte for byte
    const Tokenizer hf = Tokenizer::from_directory(tokenizer_fixture("unigram_space"));
    const std::string d = dir.file("copied");
    fs::create_directories(d);
    io::save_tokenizer(hf, d);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      std::ifstream a(tokenizer_fixture("unigram_space") + "/" + name, std::ios::binary), b(d + "/" + name, std::ios::binary);
      CHECK(std::string(std::istreambuf_iterator<char>(a), {}) == std::string(std::istreambuf_iterator<char>(b), {}));
    }
    CHECK(Tokenizer::from_directory(d).encode("MKVL", InputStyle::words).ids == hf.encode("MKVL", InputStyle::words).ids);
  }
}

// Run only by the ctest entry ankh3_embed_matches_transformers
// (tests/embed_matches_transformers.sh), which writes the file first.
TEST_CASE("ankh3_embed output equals transformers' embeddings" * doctest::skip()) {
  const char* path = std::getenv("PLM_EMBED_OUTPUT");
  REQUIRE_MESSAGE(path != nullptr, "set PLM_EMBED_OUTPUT to the file ankh3_embed wrote");
  const io::SafetensorsReader got(path), ref(tokenizer_fixture("embed_expected.safetensors"));
  CHECK(nlohmann::json::parse(got.metadata().at("ids")) == nlohmann::json::parse(ref.metadata().at("ids")));
  const auto a = got.load<float>("mean"), b = ref.load<float>("mean");
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  const index_t C = b.dim(1);
  for (index_t i = 0; i < b.dim(0); ++i) {
    double diff = 0, norm = 0;
    for (index_t c = 0; c < C; ++c) {
      const double x = a.data()[i * C + c], y = b.data()[i * C + c];
      diff += (x - y) * (x - y);
      norm += y * y;
    }
    worst = std::max(worst, std::sqrt(diff / norm));
  }
  MESSAGE("ankh3_embed against transformers: worst relative difference ", worst);
  CHECK(worst <= 1e-5);
}
