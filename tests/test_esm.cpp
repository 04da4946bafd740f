// ESM-2 (nn::EsmModel): parity with transformers' EsmForMaskedLM on the
// fixtures of tests/fixtures/make_esm_fixtures.py (logits, masked-LM loss,
// hidden states and every parameter's gradient, in double and in float),
// finite differences of the whole model + loss in double, configs, and the
// checkpoint round trip with the names transformers writes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hf_fixture_support.hpp"
#include "ops_test_support.hpp"
#include "plm/io/backbone.hpp"
#include "plm/io/esm_checkpoint.hpp"
#include "plm/nn/esm.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/samplers/mlm.hpp"
#include "plm/train/embed.hpp"
#include "plm/train/variant_effects.hpp"

using namespace plm;
using namespace plm::nn;
using namespace plm::test;
namespace fs = std::filesystem;

namespace {

std::string esm_fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / "esm" / name).string(); }

double max_abs_diff(ConstView<cpu, float> a, ConstView<cpu, float> b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (index_t i = 0; i < a.numel(); ++i) d = std::max(d, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return d;
}

template <class T>
void check_case(const std::string& name, double tol, double grad_tol) {
  INFO("fixture ", name, " in ", std::string(sizeof(T) == 8 ? "double" : "float"));
  const std::string dir = esm_fixture(name);
  const EsmConfig cfg = io::read_esm_config(dir + "/config.json");
  EsmModel<cpu, T> m(cfg);
  fixture_hash_parameters(m.params());
  const io::SafetensorsReader ref(dir + "/io.safetensors");
  const auto ids = ref.load<std::int32_t>("ids");
  const auto valid32 = ref.load<std::int32_t>("valid");
  Tensor<cpu, std::uint8_t> valid(valid32.shape());
  for (index_t i = 0; i < valid.numel(); ++i) valid.data()[i] = static_cast<std::uint8_t>(valid32.data()[i]);
  const auto labels = ref.load<std::int32_t>("labels");
  const index_t Bn = ids.dim(0), Tn = ids.dim(1);

  typename EsmModel<cpu, T>::Cache c;
  Tensor<cpu, T> logits(Shape{Bn, Tn, cfg.vocab_size}), dlogits(logits.shape());
  m.forward(ids.cview(), valid.cview(), logits.view(), c);
  const double logits_diff = rel_to_largest<T>(logits.cview(), ref.load<double>("logits").cview());
  CHECK(logits_diff < tol);
  double worst_grad = 0;
  for (const auto& t : ref.tensors()) {
    if (t.name.rfind("hidden.", 0) != 0) continue;
    const index_t k = std::stoll(t.name.substr(7));
    const Tensor<cpu, T>& h = k == cfg.num_hidden_layers ? c.out : c.hidden[static_cast<std::size_t>(k)];
    INFO("hidden state ", k);
    CHECK(rel_to_largest<T>(h.cview(), ref.load<double>(t.name).cview()) < tol);
  }
  const objectives::CrossEntropy<cpu, T> ce(-100);
  const auto r = ce(logits.cview(), labels.cview(), dlogits.view());
  CHECK(std::abs(r.loss - ref.load<double>("loss").data()[0]) < tol * 10);
  m.params().zero_grad();
  m.backward(dlogits.cview(), c);
  // every parameter's gradient (full or projected), relative to its own scale floored at
  // 1e-3 of the model's: without rotary (ESM-1b) a key bias's gradient is zero but for rounding
  worst_grad = check_fixture_gradients(m.params(), ref, grad_tol);
  const std::string what = name + (sizeof(T) == 8 ? " in double" : " in float");
  MESSAGE(what, ": logits within ", logits_diff, " of the largest, gradients within ", worst_grad);
}

}  // namespace

TEST_CASE("EsmModel matches transformers EsmForMaskedLM: logits, loss, hidden states, every gradient (double)") {
  for (const char* name : {"esm2_8m_shape", "small_padded", "small_untied_no_token_dropout", "esm1b_small"})
    check_case<double>(name, 1e-13, 1e-13);
}

TEST_CASE("EsmModel matches transformers EsmForMaskedLM in float") {
  for (const char* name : {"esm2_8m_shape", "small_padded", "small_untied_no_token_dropout", "esm1b_small"})
    check_case<float>(name, 1e-5, 2e-5);
}

TEST_CASE("EsmModel: finite differences of the masked-LM loss in double, token dropout and padding") {
  EsmConfig cfg;
  cfg.hidden_size = 8, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 12;
  for (const bool tied : {true, false}) {
    cfg.tie_word_embeddings = tied;
    EsmModel<cpu, double> m(cfg, 5);
    testing::fill_uniform<double>(m.params().values(), 3, 9, -0.6, 0.6);
    Tensor<cpu, std::int32_t> ids(Shape{2, 6}), labels(Shape{2, 6});
    Tensor<cpu, std::uint8_t> valid(Shape{2, 6});
    const std::int32_t rows[2][6] = {{0, 5, 32, 7, 9, 2}, {0, 12, 32, 2, 1, 1}};
    for (index_t b = 0; b < 2; ++b)
      for (index_t t = 0; t < 6; ++t) {
        ids.at(b, t) = rows[b][t];
        valid.at(b, t) = rows[b][t] != 1;
        labels.at(b, t) = rows[b][t] == 32 ? 6 : (t == 1 ? rows[b][t] : -100);
      }
    typename EsmModel<cpu, double>::Cache c;
    Tensor<cpu, double> logits(Shape{2, 6, cfg.vocab_size}), dlogits(logits.shape());
    const objectives::CrossEntropy<cpu, double> ce(-100);
    auto loss = [&] {
      m.forward(ids.cview(), valid.cview(), logits.view(), c);
      return ce(logits.cview(), labels.cview()).loss;
    };
    m.forward(ids.cview(), valid.cview(), logits.view(), c);
    ce(logits.cview(), labels.cview(), dlogits.view());
    m.params().zero_grad();
    m.backward(dlogits.cview(), c);
    const Tensor<cpu, double> g = [&] {
      Tensor<cpu, double> t(m.params().grads().shape());
      ops<cpu>::copy(ConstView<cpu, double>(m.params().grads()), t.view());
      return t;
    }();
    INFO("tied ", tied);
    expect_ok(testing::check_gradient(m.params().values(), g.cview(), loss), "EsmModel parameters");
  }
}

TEST_CASE("ESM config.json: transformers' keys and defaults, what plm cannot build is refused by name") {
  const EsmConfig c = io::read_esm_config(esm_fixture("esm2_8m_shape") + "/config.json");
  CHECK(c.hidden_size == 320);
  CHECK(c.num_hidden_layers == 6);
  CHECK(c.num_attention_heads == 20);
  CHECK(c.intermediate_size == 1280);
  CHECK(c.token_dropout);
  CHECK(c.mask_token_id == 32);
  CHECK(c.layer_norm_eps == doctest::Approx(1e-5));
  TempDir tmp;
  const auto with = [&](const std::string& key, const nlohmann::json& v) {
    nlohmann::json j = nlohmann::json::parse(read_text_file(esm_fixture("esm2_8m_shape") + "/config.json"));
    if (v.is_null()) j.erase(key);
    else j[key] = v;
    const std::string p = tmp.file("config.json");
    write_file(p, j.dump());
    return p;
  };
  check_error([&] { io::read_esm_config(with("position_embedding_type", "relative_key")); }, "position_embedding_type 'relative_key'");
  EsmConfig esm1b = io::read_esm_config(esm_fixture("esm1b_small") + "/config.json");  // ESM-1b's embeddings are read
  CHECK(esm1b.position_embedding_type == "absolute");
  CHECK(esm1b.emb_layer_norm_before);
  esm1b.max_position_embeddings = 2;
  check_error([&] { esm1b.validate(); }, "absolute positions count from pad_token_id + 1 = 2");
  check_error([&] { io::read_esm_config(with("model_type", "t5")); }, "'model_type' is 't5', expected 'esm'");
  check_error([&] { io::read_esm_config(with("is_folding_model", true)); }, "ESMFold");
  check_error([&] { io::read_esm_config(with("num_attention_heads", 7)); }, "not a multiple of num_attention_heads 7");
  check_error([&] { io::read_esm_config(with("vocab_size", nullptr)); }, "'vocab_size' is missing");
  check_error([&] { io::read_esm_config(with("mask_token_id", 40)); }, "mask_token_id 40 is outside the vocabulary of 33");
  check_error([&] { io::read_esm_config(with("hidden_dropout_prob", 1.5)); }, "hidden_dropout_prob = 1.5");
}

TEST_CASE("ESM checkpoints: save_esm then load_esm gives the same model; gamma / beta and inv_freq as transformers 5 writes them") {
  TempDir tmp;
  EsmConfig cfg;
  cfg.hidden_size = 8, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 12;
  const EsmModel<cpu, float> a(cfg, 11);
  const std::string dir = tmp.file("esm");
  io::save_esm(a, dir);
  const auto b = io::load_esm<EsmModel<cpu, float>>(dir);
  for (index_t p = 0; p < a.params().size(); ++p) {
    INFO(a.params().entry(p).name);
    CHECK(max_abs_diff(a.params().value(p), b.params().value(p)) == 0);
  }
  // the names transformers 5 writes: LayerNorm.gamma / beta, a '*' inv_freq key
  const io::SafetensorsReader saved(dir + "/model.safetensors");
  io::SafetensorsWriter renamed;
  std::vector<Tensor<cpu, float>> keep;
  keep.reserve(saved.tensors().size());
  for (const auto& t : saved.tensors()) {
    std::string n = t.name;
    if (name_ends_with(n, "LayerNorm.weight")) n = n.substr(0, n.size() - 6) + "gamma";
    if (name_ends_with(n, "LayerNorm.bias")) n = n.substr(0, n.size() - 4) + "beta";
    keep.push_back(saved.load<float>(t.name));
    renamed.add<float>(n, keep.back().cview());
  }
  Tensor<cpu, float> inv(Shape{2});
  renamed.add<float>("esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq", inv.cview());
  renamed.write(dir + "/model.safetensors");
  const auto c = io::load_esm<EsmModel<cpu, float>>(dir);
  for (index_t p = 0; p < a.params().size(); ++p) CHECK(max_abs_diff(a.params().value(p), c.params().value(p)) == 0);
  // a tensor no ESM parameter is named after is refused
  renamed.add<float>("esm.embeddings.position_embeddings.weight", inv.cview());
  renamed.write(dir + "/model.safetensors");
  check_error([&] { io::load_esm<EsmModel<cpu, float>>(dir); }, "esm.embeddings.position_embeddings.weight", "does not have");
}

TEST_CASE("EsmTokenizer's vocab.txt: the ids transformers gives, in both call styles, and where each token came from") {
  const auto tok = data::Tokenizer::from_directory(esm_fixture("tokenizer"));
  CHECK(tok.is_pretrained());
  const nlohmann::json cases = nlohmann::json::parse(read_text_file(esm_fixture("tokenizer_ids.json")));
  REQUIRE(cases.size() >= 6);
  for (const auto& c : cases) {
    const std::string seq = c.at("sequence").get<std::string>();
    INFO(seq);
    CHECK(tok.encode(seq, data::InputStyle::string).ids == c.at("string").get<std::vector<std::int32_t>>());
    CHECK(tok.encode(seq, data::InputStyle::words).ids == c.at("words").get<std::vector<std::int32_t>>());
  }
  // <cls> and <eos> hold no residue; an unknown run holds all its characters
  const data::Encoding e = tok.encode("MKjjT", data::InputStyle::string);
  REQUIRE(e.size() == 6);
  CHECK(!e.holds_residue(0));
  CHECK(e.begin[3] == 2);
  CHECK(e.end[3] == 4);
  CHECK(!e.holds_residue(5));
  // a vocab.txt of another tokenizer class is refused by name
  TempDir tmp;
  const std::string other = tmp.file("other");
  fs::create_directories(other);
  fs::copy_file(esm_fixture("tokenizer") + "/vocab.txt", other + "/vocab.txt");
  write_file(other + "/tokenizer_config.json", "{\"tokenizer_class\": \"XLNetTokenizer\"}");
  check_error([&] { (void)data::Tokenizer::from_directory(other); }, "vocab.txt of a XLNetTokenizer");
}

TEST_CASE("masked-marginal scores of 20 ubiquitin mutations equal transformers', batched or not") {
  const std::string dir = esm_fixture("small_padded");
  const EsmConfig cfg = io::read_esm_config(dir + "/config.json");
  EsmModel<cpu, double> m(cfg);
  fixture_hash_parameters(m.params());
  const auto tok = data::Tokenizer::from_directory(esm_fixture("tokenizer"));
  const nlohmann::json spec = nlohmann::json::parse(read_text_file(esm_fixture("mutations.json")));
  std::vector<train::Mutation> muts;
  for (const auto& s : spec.at("muts")) muts.push_back(train::Mutation::parse(s.get<std::string>()));
  const std::string seq = spec.at("seq").get<std::string>();
  const auto want = io::SafetensorsReader(dir + "/io.safetensors").load<double>("mutation_scores");
  REQUIRE(want.numel() == static_cast<index_t>(muts.size()));
  for (const index_t batch : {1, 7, 32}) {
    train::VariantScoreOptions o;
    o.batch = batch;
    const auto got = train::masked_marginal_scores(m, tok, seq, muts, o);
    for (std::size_t i = 0; i < muts.size(); ++i) {
      INFO(muts[i].str(), " batch ", batch);
      CHECK(got[i] == doctest::Approx(want.data()[i]).epsilon(1e-11));
    }
  }
  check_error([&] { (void)train::masked_marginal_scores(m, tok, seq, {train::Mutation::parse("A1G")}); }, "residue 1", "is M, not A");
  check_error([&] { (void)train::masked_marginal_scores(m, tok, seq, {train::Mutation::parse("M99A")}); }, "position 99 is beyond");
  check_error([&] { (void)train::Mutation::parse("M1"); }, "wrong length");
  check_error([&] { (void)train::Mutation::parse("MxA"); }, "position must be a number");
  check_error([&] { (void)train::masked_marginal_scores(m, tok, seq, {train::Mutation::parse("M1J")}); }, "'J' is not a token");
}

TEST_CASE("train::embed on an ESM model: transformers' mean over residue tokens, final and inner layers, padded batches") {
  const std::string dir = esm_fixture("small_padded");
  const EsmConfig cfg = io::read_esm_config(dir + "/config.json");
  EsmModel<cpu, double> m(cfg);
  fixture_hash_parameters(m.params());
  const auto tok = data::Tokenizer::from_directory(esm_fixture("tokenizer"));
  const nlohmann::json spec = nlohmann::json::parse(read_text_file(esm_fixture("embed.json")));
  std::vector<std::string> seqs;
  for (const auto& s : spec.at("seqs")) seqs.push_back(s.get<std::string>());
  const io::SafetensorsReader fixture(dir + "/io.safetensors");
  for (const long budget : {1L, 200L}) {  // one protein per batch, or all three padded together
    train::EmbedOptions o;
    o.layers = spec.at("layers").get<std::vector<int>>();
    o.style = data::InputStyle::string;
    o.token_budget = budget;
    const train::Embeddings e = train::embed(m, tok, seqs, o);
    for (std::size_t li = 0; li < o.layers.size(); ++li) {
      const auto want = fixture.load<double>("embed.mean." + std::to_string(o.layers[li]));
      const auto& got = e.layers[li].mean;
      REQUIRE(got.shape() == want.shape());
      double worst = 0;
      for (index_t i = 0; i < got.numel(); ++i)
        worst = std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]) / (std::abs(want.data()[i]) + 1e-3));
      INFO("layer ", o.layers[li], " budget ", budget);
      CHECK(worst < 1e-6);  // train::embed stores float32
    }
  }
}

TEST_CASE("EsmModel encoder-only: no LM or contact head, loads the encoder of a full checkpoint, refuses forward()") {
  TempDir tmp;
  const EsmConfig cfg = io::read_esm_config(esm_fixture("small_padded") + "/config.json");
  EsmModel<cpu, double> full(cfg, 5);
  const std::string dir = tmp.file("esm");
  io::save_esm<double>(full, dir);
  ParameterSet<cpu, double> ps;
  EsmModel<cpu, double> enc(ps, cfg, nn::encoder_only);
  ps.allocate();
  CHECK_FALSE(enc.has_lm_head());
  for (const auto& e : ps.entries()) {
    INFO(e.name);
    CHECK(e.name.rfind("esm.", 0) == 0);
    CHECK(e.name.find("contact_head") == std::string::npos);
  }
  io::load_esm_weights(enc, dir);
  Tensor<cpu, std::int32_t> ids(Shape{1, 6});
  for (index_t t = 0; t < 6; ++t) ids.data()[t] = static_cast<std::int32_t>(t == 0 ? 0 : t == 5 ? 2 : 4 + t);
  EsmModel<cpu, double>::Cache ca, cb;
  Tensor<cpu, double> a(Shape{1, 6, cfg.hidden_size}), b(a.shape());
  full.encode(ids.cview(), {}, a.view(), ca);
  enc.encode(ids.cview(), {}, b.view(), cb);
  for (index_t i = 0; i < a.numel(); ++i) CHECK(a.data()[i] == b.data()[i]);
  Tensor<cpu, double> logits(Shape{1, 6, cfg.vocab_size});
  check_error([&] { enc.forward(ids.cview(), {}, logits.view(), cb); }, "encoder-only");
  // The encoder interface shared with T5Model.
  CHECK(enc.d_model() == cfg.hidden_size);
  CHECK(enc.num_encoder_layers() == cfg.num_hidden_layers);
  CHECK(enc.hidden_state(cb, 0).shape() == a.shape());
  check_error([&] { (void)enc.hidden_state(cb, cfg.num_hidden_layers + 1); }, "outside 0..");
  // A directory's family, as programs pick the loader.
  CHECK(io::read_model_type(dir) == "esm");
}

TEST_CASE("masked-LM examples: 15% of residues selected, 80/10/10, never a special token, the same for the same key") {
  const auto tok = data::Tokenizer::from_directory(esm_fixture("tokenizer"));
  std::string protein;
  for (int i = 0; i < 400; ++i) protein += "LAGVSERTIDPKQNFYMHWC"[(i * 7) % 20];
  const data::Encoding e = tok.encode(protein, data::InputStyle::string);
  std::vector<std::int32_t> residues;
  for (const char* r : {"L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C"})
    residues.push_back(tok.vocabulary().id_of(r));
  const std::int32_t mask = tok.vocabulary().id_of("<mask>");
  samplers::MlmOptions o;
  o.seed = 3;
  double selected = 0, masked = 0, replaced = 0, kept = 0;
  for (std::uint64_t key = 0; key < 50; ++key) {
    const auto x = samplers::mask_for_mlm(e, mask, residues, o, key);
    REQUIRE(x.ids.size() == e.size());
    CHECK(x.labels.front() == -100);  // <cls>
    CHECK(x.labels.back() == -100);   // <eos>
    CHECK(x.ids.front() == e.ids.front());
    for (std::size_t t = 0; t < e.size(); ++t) {
      if (x.labels[t] == -100) {
        CHECK(x.ids[t] == e.ids[t]);
        continue;
      }
      CHECK(x.labels[t] == e.ids[t]);
      ++selected;
      if (x.ids[t] == mask) ++masked;
      else if (x.ids[t] == e.ids[t]) ++kept;
      else ++replaced;
    }
    const auto again = samplers::mask_for_mlm(e, mask, residues, o, key);
    CHECK(again.ids == x.ids);
    CHECK(again.labels == x.labels);
  }
  // 50 x 400 residues: 3,000 selected expected; these seeds give fixed counts, so the bounds are not a timing or chance matter
  CHECK(selected / (50.0 * 400) == doctest::Approx(0.15).epsilon(0.1));
  CHECK(masked / selected == doctest::Approx(0.8).epsilon(0.05));
  CHECK(replaced / selected > 0.05);  // 10% minus the 1/20 random draws that hit the same residue
  CHECK(kept / selected > 0.08);
  // a short sequence still counts one residue; the batch pads ids and labels
  const auto one = samplers::mask_for_mlm(tok.encode("M", data::InputStyle::string), mask, residues, o, 1);
  CHECK(std::count_if(one.labels.begin(), one.labels.end(), [](std::int32_t l) { return l != -100; }) == 1);
  samplers::MlmBatch<cpu> b;
  samplers::collate_mlm<cpu>({one, samplers::mask_for_mlm(e, mask, residues, o, 2)}, {0, 1}, tok.vocabulary().pad_id(), b);
  CHECK(b.ids.shape() == Shape({2, static_cast<index_t>(e.size())}));
  CHECK(b.labels.at(0, 5) == -100);
  CHECK(b.valid.at(0, 3) == 0);
  CHECK(b.tokens == static_cast<index_t>(3 + e.size()));
  o.select_probability = 0;
  check_error([&] { (void)samplers::mask_for_mlm(e, mask, residues, o, 0); }, "select_probability 0");
}

TEST_CASE("EsmModel with ESM-1b's embeddings: finite differences of the masked-LM loss in double, positions from the padding index") {
  EsmConfig cfg;
  cfg.hidden_size = 8, cfg.num_hidden_layers = 2, cfg.num_attention_heads = 2, cfg.intermediate_size = 12;
  cfg.position_embedding_type = "absolute", cfg.emb_layer_norm_before = true, cfg.max_position_embeddings = 9;
  EsmModel<cpu, double> m(cfg, 5);
  testing::fill_uniform<double>(m.params().values(), 3, 9, -0.6, 0.6);
  Tensor<cpu, std::int32_t> ids(Shape{2, 6}), labels(Shape{2, 6});
  Tensor<cpu, std::uint8_t> valid(Shape{2, 6});
  const std::int32_t rows[2][6] = {{0, 5, 32, 7, 9, 2}, {0, 12, 32, 2, 1, 1}};
  for (index_t b = 0; b < 2; ++b)
    for (index_t t = 0; t < 6; ++t) {
      ids.at(b, t) = rows[b][t];
      valid.at(b, t) = rows[b][t] != 1;
      labels.at(b, t) = rows[b][t] == 32 ? 6 : (t == 1 ? rows[b][t] : -100);
    }
  typename EsmModel<cpu, double>::Cache c;
  Tensor<cpu, double> logits(Shape{2, 6, cfg.vocab_size}), dlogits(logits.shape());
  const objectives::CrossEntropy<cpu, double> ce(-100);
  auto loss = [&] {
    m.forward(ids.cview(), valid.cview(), logits.view(), c);
    return ce(logits.cview(), labels.cview()).loss;
  };
  m.forward(ids.cview(), valid.cview(), logits.view(), c);
  ce(logits.cview(), labels.cview(), dlogits.view());
  m.params().zero_grad();
  m.backward(dlogits.cview(), c);
  Tensor<cpu, double> g(m.params().grads().shape());
  ops<cpu>::copy(ConstView<cpu, double>(m.params().grads()), g.view());
  expect_ok(testing::check_gradient(m.params().values(), g.cview(), loss), "EsmModel (ESM-1b) parameters");
  // positions 2, 3, ... along the tokens, the padding index (1) at padding
  const std::int32_t want[2][6] = {{2, 3, 4, 5, 6, 7}, {2, 3, 4, 5, 1, 1}};
  for (index_t b = 0; b < 2; ++b)
    for (index_t t = 0; t < 6; ++t) CHECK(c.position_ids.at(b, t) == want[b][t]);
  Tensor<cpu, std::int32_t> long_ids(Shape{1, 8});
  for (index_t t = 0; t < 8; ++t) long_ids.at(0, t) = 5;
  Tensor<cpu, double> long_logits(Shape{1, 8, cfg.vocab_size});
  check_error([&] { m.forward(long_ids, {}, long_logits, c); }, "row 0 holds more than 7 tokens");
}
