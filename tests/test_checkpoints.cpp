// Published-checkpoint semantics: tying and output scaling as transformers 4
// and 5 write them, sharded and half-precision weights, pickles refused,
// train / eval passes.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "ops_test_support.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/io/tokenizer_files.hpp"
#include "plm/objectives/cross_entropy.hpp"

#ifndef PLM_FIXTURES_DIR
#error "PLM_FIXTURES_DIR must name tests/fixtures"
#endif

using namespace plm;
using plm::test::check_error;
using plm::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / name).string(); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}
void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2);
  REQUIRE(out.good());
}

// Copies a checkpoint directory's config.json and model.safetensors.
void copy_checkpoint(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(from) / f, fs::path(to) / f);
}

// A fixed batch for a model of vocabulary V: ids 3..V-1, second row padded.
struct Batch {
  Tensor<cpu, std::int32_t> src{Shape{2, 9}}, dec{Shape{2, 6}}, tgt{Shape{2, 6}};
  Tensor<cpu, std::uint8_t> valid{Shape{2, 9}};
  explicit Batch(std::int32_t V, std::uint64_t seed = 3) {
    Philox rng(seed);
    for (auto* t : {&src, &dec, &tgt})
      for (index_t i = 0; i < t->numel(); ++i) t->data()[i] = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(V - 3)));
    for (index_t t = 0; t < 9; ++t) valid.at(0, t) = 1, valid.at(1, t) = t < 6;
  }
};

template <class Model>
Tensor<cpu, float> logits_of(const Model& m, const Batch& b, nn::Pass pass = nn::Pass::eval()) {
  Tensor<cpu, float> logits(Shape{2, 6, m.config().vocab_size});
  typename Model::Cache cache;
  m.forward(b.src, b.valid, b.dec, logits, cache, pass);
  return logits;
}

double max_abs_diff(ConstView<cpu, float> a, ConstView<cpu, float> b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (index_t i = 0; i < a.numel(); ++i) d = std::max(d, double(std::abs(a.data()[i] - b.data()[i])));
  return d;
}

}  // namespace

TEST_CASE("tying and output scaling: both transformers conventions read and written") {
  using M = nn::Ankh3Model<cpu, float>;
  TempDir tmp;
  const std::string src = fixture("t5_gated_silu");  // untied, unscaled, with lm_head.weight
  const M ref = io::load_t5<M>(src);
  CHECK_FALSE(ref.config().tie_word_embeddings);
  CHECK_FALSE(ref.config().scales_decoder_outputs());
  const Batch b(ref.config().vocab_size);
  const auto want = logits_of(ref, b);

  // transformers 5 writes every T5 as tied and says whether to scale: the weights decide tying
  const std::string v5 = tmp.file("v5");
  copy_checkpoint(src, v5);
  nlohmann::json j = read_json(v5 + "/config.json");
  j["tie_word_embeddings"] = true;
  j["scale_decoder_outputs"] = false;
  write_json(v5 + "/config.json", j);
  const M from_v5 = io::load_t5<M>(v5);
  CHECK_FALSE(from_v5.config().tie_word_embeddings);  // lm_head.weight differs from shared.weight
  CHECK_FALSE(from_v5.config().scales_decoder_outputs());
  CHECK(max_abs_diff(logits_of(from_v5, b), want) == 0);

  // transformers 4, untied: no scale key, tie false
  j.erase("scale_decoder_outputs");
  j["tie_word_embeddings"] = false;
  write_json(v5 + "/config.json", j);
  CHECK(max_abs_diff(logits_of(io::load_t5<M>(v5), b), want) == 0);

  // an explicit scale on an untied head: logits scale by d_model^-0.5
  j["scale_decoder_outputs"] = true;
  write_json(v5 + "/config.json", j);
  const M scaled = io::load_t5<M>(v5);
  CHECK(scaled.config().scales_decoder_outputs());
  const auto got = logits_of(scaled, b);
  const float s = 1.0f / std::sqrt(float(ref.config().d_model));
  double worst = 0;
  for (index_t i = 0; i < got.numel(); ++i) worst = std::max(worst, double(std::abs(got.data()[i] - s * want.data()[i])));
  CHECK(worst < 1e-5);

  // what plm writes reads back the same, and says both keys
  io::save_t5(scaled, tmp.file("saved"));
  const nlohmann::json w = read_json(tmp.file("saved/config.json"));
  CHECK(w.at("tie_word_embeddings") == false);
  CHECK(w.at("scale_decoder_outputs") == true);
  CHECK(max_abs_diff(logits_of(io::load_t5<M>(tmp.file("saved")), b), got) == 0);

  // a tied model saves no lm_head.weight; read back (any convention) it is tied and scaled
  nn::T5Config tc = ref.config();
  tc.tie_word_embeddings = true;
  tc.scale_decoder_outputs.reset();
  const M tied(tc, 5);
  CHECK(tied.params().find("lm_head.weight") < 0);
  io::save_t5(tied, tmp.file("tied"));
  CHECK_FALSE(io::SafetensorsReader(tmp.file("tied/model.safetensors")).contains("lm_head.weight"));
  const M tied_back = io::load_t5<M>(tmp.file("tied"));
  CHECK(tied_back.config().tie_word_embeddings);
  CHECK(tied_back.config().scales_decoder_outputs());
  CHECK(max_abs_diff(logits_of(tied_back, b), logits_of(tied, b)) == 0);

  // a transformers 4 config that says untied for weights without lm_head.weight is refused
  nlohmann::json tj = read_json(tmp.file("tied/config.json"));
  tj["tie_word_embeddings"] = false;
  tj.erase("scale_decoder_outputs");
  write_json(tmp.file("tied/config.json"), tj);
  check_error([&] { io::load_t5<M>(tmp.file("tied")); }, tmp.file("tied/config.json"), "\"tie_word_embeddings\": false",
              "has no lm_head.weight");
}

TEST_CASE("weights: sharded model.safetensors.index.json in bf16 loads like its unsharded float twin") {
  using M = nn::Ankh3Model<cpu, float>;
  TempDir tmp;
  const std::string src = fixture("t5_gated_silu");
  const io::SafetensorsReader whole(src + "/model.safetensors");

  // bf16 shards of the fixture's weights, and an fp32 twin holding the same (bf16-rounded) values
  const std::string sharded = tmp.file("sharded"), twin = tmp.file("twin");
  fs::create_directories(sharded);
  fs::create_directories(twin);
  fs::copy_file(src + "/config.json", sharded + "/config.json");
  fs::copy_file(src + "/config.json", twin + "/config.json");
  nlohmann::json map = nlohmann::json::object();
  std::vector<Tensor<cpu, bf16>> halves;
  std::vector<Tensor<cpu, float>> rounded;
  halves.reserve(whole.tensors().size());
  rounded.reserve(whole.tensors().size());
  io::SafetensorsWriter shard[3], single;
  for (std::size_t i = 0; i < whole.tensors().size(); ++i) {
    const std::string& name = whole.tensors()[i].name;
    const auto f = whole.load<float>(name);
    halves.emplace_back(f.shape());
    ops<cpu>::convert<float, bf16>(f.cview(), halves.back().view());
    rounded.emplace_back(f.shape());
    ops<cpu>::convert<bf16, float>(halves.back().cview(), rounded.back().view());
    const std::string file = "model-0000" + std::to_string(i % 3 + 1) + "-of-00003.safetensors";
    shard[i % 3].add<bf16>(name, halves.back().cview());
    single.add<float>(name, rounded.back().cview());
    map[name] = file;
  }
  for (int k = 0; k < 3; ++k) shard[k].write(sharded + "/model-0000" + std::to_string(k + 1) + "-of-00003.safetensors");
  single.write(twin + "/model.safetensors");
  write_json(sharded + "/model.safetensors.index.json", {{"metadata", {{"total_size", 1}}}, {"weight_map", map}});

  const io::ModelWeights w(sharded);
  CHECK(w.sharded());
  CHECK(w.num_files() == 3);
  CHECK(w.tensors().size() == whole.tensors().size());
  const M a = io::load_t5<M>(sharded), b = io::load_t5<M>(twin);
  CHECK(std::memcmp(a.params().values().data(), b.params().values().data(), sizeof(float) * a.params().numel()) == 0);
  const Batch batch(a.config().vocab_size);
  CHECK(max_abs_diff(logits_of(a, batch), logits_of(b, batch)) == 0);

  // an index that disagrees with its shards, or names a shard outside the directory
  const std::string index = sharded + "/model.safetensors.index.json";
  const std::string first = whole.tensors()[0].name, second = whole.tensors()[1].name;
  auto broken = [&](auto edit, auto... parts) {
    nlohmann::json j = {{"weight_map", map}};
    edit(j["weight_map"]);
    write_json(index, j);
    check_error([&] { io::ModelWeights x(sharded); }, index, parts...);
  };
  broken([&](nlohmann::json& m) { m[first] = "model-00002-of-00003.safetensors"; }, first, "is listed in model-00002-of-00003.safetensors");
  broken([&](nlohmann::json& m) { m.erase(second); }, "holds tensor '" + second + "', which the index does not list");
  broken([&](nlohmann::json& m) { m["extra.weight"] = "model-00001-of-00003.safetensors"; }, "'extra.weight'", "does not hold it");
  broken([&](nlohmann::json& m) { m[first] = "../elsewhere.safetensors"; }, "not a plain file name");
  broken([&](nlohmann::json& m) { m[first] = 7; }, "must be a string");
  // an index that drops every tensor of one shard would load a partial model
  broken(
      [&](nlohmann::json& m) {
        for (auto it = m.begin(); it != m.end();) it = it.value() == "model-00002-of-00003.safetensors" ? m.erase(it) : std::next(it);
      },
      "numbered \"of 00003\" but the index names 2", "not listed: 2");
  broken([&](nlohmann::json& m) { m[first] = "model-00004-of-00003.safetensors"; }, "is numbered 4 of 3");
  write_json(index, {{"metadata", {}}});
  check_error([&] { io::ModelWeights x(sharded); }, index, "\"weight_map\"");
  fs::remove(sharded + "/model-00003-of-00003.safetensors");
  write_json(index, {{"weight_map", map}});
  check_error([&] { io::ModelWeights x(sharded); }, "model-00003-of-00003.safetensors", "cannot open");
}

TEST_CASE("weights: PyTorch pickles are refused with the conversion, and an empty directory is named") {
  TempDir tmp;
  const std::string dir = tmp.file("torch_only");
  fs::create_directories(dir);
  fs::copy_file(fixture("t5_gated_silu") + "/config.json", dir + "/config.json");
  check_error([&] { io::ModelWeights w(dir); }, dir, "has neither model.safetensors nor model.safetensors.index.json");
  plm::test::write_file(dir + "/pytorch_model.bin", "PK\x03\x04 not really a pickle");
  check_error([&] { io::load_t5<nn::Ankh3Model<cpu, float>>(dir); }, dir, "pytorch_model.bin", "can run code", "save_pretrained");
  check_error([&] { io::ModelWeights w(dir + "/pytorch_model.bin"); }, "pytorch_model.bin", "is a PyTorch pickle");
}

TEST_CASE("passes: dropout only in a training pass; eval (the default) equals a model without dropout") {
  using M = nn::Ankh3Model<cpu, float>;
  nn::T5Config c = nn::T5Config::ankh3_tiny();
  c.dropout_rate = 0.3;
  nn::T5Config none = c;
  none.dropout_rate = 0;
  const M m(c, 9), plain(none, 9);  // same seed: same weights
  const Batch b(c.vocab_size);
  const auto eval = logits_of(m, b);
  CHECK(max_abs_diff(eval, logits_of(plain, b)) == 0);
  CHECK(max_abs_diff(logits_of(m, b, nn::Pass::eval()), eval) == 0);
  const auto t1 = logits_of(m, b, nn::Pass::train(1));
  CHECK(max_abs_diff(t1, eval) > 1e-3);
  CHECK(max_abs_diff(logits_of(m, b, nn::Pass::train(1)), t1) == 0);  // a seed gives the same masks
  CHECK(max_abs_diff(logits_of(m, b, nn::Pass::train(2)), t1) > 1e-3);
  CHECK(max_abs_diff(logits_of(plain, b, nn::Pass::train(1)), eval) == 0);  // rate 0: nothing to drop

  // encode and incremental decoding are eval passes too
  Tensor<cpu, float> h(Shape{2, 9, c.d_model}), h0(h.shape());
  M::Cache cache, cache0;
  m.encode(b.src, b.valid, h, cache);
  plain.encode(b.src, b.valid, h0, cache0);
  CHECK(max_abs_diff(h, h0) == 0);
  M::DecodeState st, st0;
  m.begin_decoding(b.src, b.valid, 3, st);
  plain.begin_decoding(b.src, b.valid, 3, st0);
  Tensor<cpu, std::int32_t> tok(Shape{2});
  ops<cpu>::fill<std::int32_t>(tok, 0);
  Tensor<cpu, float> l(Shape{2, c.vocab_size}), l0(l.shape());
  m.decode_step(tok, l, st);
  plain.decode_step(tok, l0, st0);
  CHECK(max_abs_diff(l, l0) == 0);
}

TEST_CASE("transformers 5 directories as saved: untied with dropout, tied and scaled, sharded bf16, all in eval mode") {
  // tests/fixtures/t5_conventions, written by stock save_pretrained (make_hf_fixtures.py --conventions):
  // config.json says what transformers 5 writes; io.safetensors holds its float64 eval-mode outputs.
  struct Case {
    const char* dir;
    bool tied;
  };
  for (const Case k : {Case{"untied_dropout", false}, Case{"tied", true}, Case{"sharded_bf16", false}}) {
    const std::string dir = fixture(std::string("t5_conventions/") + k.dir);
    INFO(dir);
    const io::SafetensorsReader ref(dir + "/io.safetensors");
    const auto ids = ref.load<std::int32_t>("input_ids"), labels = ref.load<std::int32_t>("labels");
    const auto mask = ref.load<std::int32_t>("attention_mask");
    Tensor<cpu, std::uint8_t> valid(mask.shape());
    ops<cpu>::convert<std::int32_t, std::uint8_t>(mask, valid);
    Tensor<cpu, std::int32_t> dec(labels.shape());  // shift right: start 0, -100 -> pad 0
    for (index_t b = 0; b < labels.dim(0); ++b)
      for (index_t t = 0; t < labels.dim(1); ++t) dec.at(b, t) = t == 0 ? 0 : std::max<std::int32_t>(labels.at(b, t - 1), 0);
    auto run = [&](auto tag) {
      using Model = typename decltype(tag)::type;
      const Model m = io::load_t5<Model>(dir);
      CHECK(m.config().dropout_rate == doctest::Approx(0.1));
      CHECK(m.config().tie_word_embeddings == k.tied);
      CHECK(m.config().scales_decoder_outputs() == k.tied);
      Tensor<cpu, double> logits(Shape{dec.dim(0), dec.dim(1), m.config().vocab_size}), h(Shape{ids.dim(0), ids.dim(1), m.config().d_model});
      typename Model::Cache cache;
      m.forward(ids, valid, dec, logits, cache);
      m.encode(ids, valid, h, cache);
      auto rel = [](const Tensor<cpu, double>& a, const Tensor<cpu, double>& b) {
        double num = 0, den = 0;
        for (index_t i = 0; i < a.numel(); ++i) num = std::max(num, std::abs(a.data()[i] - b.data()[i])), den = std::max(den, std::abs(b.data()[i]));
        return num / den;
      };
      CHECK(rel(logits, ref.load<double>("logits")) < 1e-12);
      CHECK(rel(h, ref.load<double>("encoder_last_hidden_state")) < 1e-12);
    };
    if (std::string(k.dir) == "tied") run(type_tag<nn::AnkhModel<cpu, double>>{});
    else run(type_tag<nn::Ankh3Model<cpu, double>>{});
  }
}

// plm saves -> transformers loads, computes and saves -> plm loads. The model is
// built here from a config and a seed, as tests/fixtures/roundtrip/ was made
// from it: PLM_ROUNDTRIP_EXPORT=<dir> writes plm's directories there for
// make_hf_fixtures.py --roundtrip <dir>, which runs transformers on them.
TEST_CASE("round trip: plm -> save -> transformers -> save -> plm gives the same logits and ids, tied and untied") {
  struct Kind {
    const char* name;
    bool tied;
  };
  const data::Tokenizer tok = data::Tokenizer::load("ankh3");
  TempDir tmp;
  const auto config_of = [](const Kind& k) {
    nn::T5Config c;
    c.vocab_size = 256, c.d_model = 16, c.d_kv = 8, c.num_heads = 2, c.d_ff = 24, c.num_layers = 2, c.num_decoder_layers = 2;
    c.relative_attention_num_buckets = 8, c.relative_attention_max_distance = 12, c.tie_word_embeddings = k.tied;
    c.feed_forward_proj = k.tied ? "gated-gelu" : "gated-silu";
    return c;
  };
  const std::vector<Kind> kinds = {Kind{"untied", false}, Kind{"tied", true}};
  for (const Kind& k : kinds) {  // plm saves (and exports, for the fixture script) both before any check
    const std::string saved = tmp.file(k.name);
    auto save = [&](auto tag) {
      using M = typename decltype(tag)::type;
      const M model(config_of(k), /*seed=*/k.tied ? 41 : 42);
      io::save_t5(model, saved);
      io::save_tokenizer(tok, saved);
      io::save_generation_config(model.config(), saved);
    };
    if (k.tied) save(type_tag<nn::AnkhModel<cpu, float>>{});
    else save(type_tag<nn::Ankh3Model<cpu, float>>{});
    if (const char* out = std::getenv("PLM_ROUNDTRIP_EXPORT")) {
      fs::create_directories(out);
      fs::copy(saved, fs::path(out) / k.name, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    }
  }
  for (const Kind& k : kinds) {
    INFO(std::string(k.name));
    const std::string saved = tmp.file(k.name);
    const std::string dir = fixture(std::string("roundtrip/") + k.name);
    const io::SafetensorsReader ref(dir + "/io.safetensors");
    const auto ids = ref.load<std::int32_t>("input_ids"), dec = ref.load<std::int32_t>("decoder_input_ids");
    const auto mask = ref.load<std::int32_t>("attention_mask");
    Tensor<cpu, std::uint8_t> valid(mask.shape());
    ops<cpu>::convert<std::int32_t, std::uint8_t>(mask, valid);
    const auto want = ref.load<double>("logits");
    auto logits_of = [&](auto tag, const std::string& from) {
      using M = typename decltype(tag)::type;
      const M m = io::load_t5<M>(from);
      CHECK(m.config().tie_word_embeddings == k.tied);
      Tensor<cpu, double> logits(want.shape());
      typename M::Cache cache;
      m.forward(ids, valid, dec, logits, cache);
      return logits;
    };
    auto rel = [](const Tensor<cpu, double>& a, const Tensor<cpu, double>& b) {
      double num = 0, den = 0;
      for (index_t i = 0; i < a.numel(); ++i) num = std::max(num, std::abs(a.data()[i] - b.data()[i])), den = std::max(den, std::abs(b.data()[i]));
      return num / den;
    };
    // What plm saved is what transformers computed with (float64 from the float32 weights).
    const auto mine = k.tied ? logits_of(type_tag<nn::AnkhModel<cpu, double>>{}, saved) : logits_of(type_tag<nn::Ankh3Model<cpu, double>>{}, saved);
    CHECK(rel(mine, want) < 1e-12);
    // What transformers saved again loads back to the same function.
    const std::string back = dir + "/hf";
    const auto again = k.tied ? logits_of(type_tag<nn::AnkhModel<cpu, double>>{}, back) : logits_of(type_tag<nn::Ankh3Model<cpu, double>>{}, back);
    CHECK(rel(again, want) < 1e-12);
    CHECK(rel(again, mine) < 1e-12);
    // Its tokenizer files give transformers' ids, which are plm's.
    const data::Tokenizer hf = data::Tokenizer::from_directory(back);
    const auto words = ref.load<std::int32_t>("words_ids");
    const auto sequences = nlohmann::json::parse(ref.metadata().at("sequences")).get<std::vector<std::string>>();
    REQUIRE(static_cast<index_t>(sequences.size()) == words.dim(0));
    for (std::size_t i = 0; i < sequences.size(); ++i) {
      const data::Encoding e = hf.encode(sequences[i], data::InputStyle::words);
      const data::Encoding own = tok.encode(sequences[i], data::InputStyle::words);
      CHECK(e.ids == own.ids);
      for (std::size_t t = 0; t < e.size(); ++t) CHECK(e.ids[t] == words.at(static_cast<index_t>(i), static_cast<index_t>(t)));
    }
    CHECK(fs::exists(back + "/generation_config.json"));
  }
}
