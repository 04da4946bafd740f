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

#include "ops_test_support.hpp"
#include "plm/io/esm_checkpoint.hpp"
#include "plm/nn/esm.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/samplers/mlm.hpp"
#include "plm/train/variant_effects.hpp"

using namespace plm;
using namespace plm::nn;
using namespace plm::test;
namespace fs = std::filesystem;

namespace {

std::string esm_fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / "esm" / name).string(); }

// The hash the fixture script draws weights from: splitmix64 of fnv1a(name) + i.
double hash_uniform(const std::string& name, std::uint64_t i) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001B3ull;
  std::uint64_t z = h + i + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return 2.0 * (static_cast<double>(z >> 11) * 0x1.0p-53) - 1.0;
}
std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  REQUIRE(f.good());
}
double max_abs_diff(ConstView<cpu, float> a, ConstView<cpu, float> b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (index_t i = 0; i < a.numel(); ++i) d = std::max(d, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return d;
}
bool ends_with(const std::string& s, const std::string& e) { return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0; }

template <class T>
void hash_parameters(ParameterSet<cpu, T>& ps) {
  for (index_t p = 0; p < ps.size(); ++p) {
    const std::string& name = ps.entry(p).name;
    const bool norm = ends_with(name, "LayerNorm.weight") || ends_with(name, "layer_norm.weight") || ends_with(name, "emb_layer_norm_after.weight");
    auto v = ps.value(p);
    for (index_t i = 0; i < v.numel(); ++i) {
      const double u = hash_uniform(name, static_cast<std::uint64_t>(i));
      v.data()[i] = static_cast<T>(norm ? 1.0 + 0.2 * u : 0.1 * u);
    }
  }
}

// max |a - b| / max |b|
template <class T>
double rel_diff(ConstView<cpu, T> a, ConstView<cpu, double> b) {
  REQUIRE(a.shape() == b.shape());
  double num = 0, den = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
    den = std::max(den, std::abs(b.data()[i]));
  }
  return den > 0 ? num / den : num;
}

template <class T>
void check_case(const std::string& name, double tol, double grad_tol) {
  INFO("fixture ", name, " in ", std::string(sizeof(T) == 8 ? "double" : "float"));
  const std::string dir = esm_fixture(name);
  const EsmConfig cfg = io::read_esm_config(dir + "/config.json");
  EsmModel<cpu, T> m(cfg);
  hash_parameters(m.params());
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
  const double logits_diff = rel_diff<T>(logits.cview(), ref.load<double>("logits").cview());
  CHECK(logits_diff < tol);
  double worst_grad = 0;
  for (const auto& t : ref.tensors()) {
    if (t.name.rfind("hidden.", 0) != 0) continue;
    const index_t k = std::stoll(t.name.substr(7));
    const Tensor<cpu, T>& h = k == cfg.num_hidden_layers ? c.out : c.hidden[static_cast<std::size_t>(k)];
    INFO("hidden state ", k);
    CHECK(rel_diff<T>(h.cview(), ref.load<double>(t.name).cview()) < tol);
  }
  const objectives::CrossEntropy<cpu, T> ce(-100);
  const auto r = ce(logits.cview(), labels.cview(), dlogits.view());
  CHECK(std::abs(r.loss - ref.load<double>("loss").data()[0]) < tol * 10);
  m.params().zero_grad();
  m.backward(dlogits.cview(), c);
  index_t checked = 0;
  for (index_t p = 0; p < m.params().size(); ++p) {
    const std::string& pname = m.params().entry(p).name;
    INFO("gradient of ", pname);
    const ConstView<cpu, T> g = m.params().grad(p);
    if (ref.contains("grad." + pname)) {
      const double d = rel_diff<T>(g, ref.load<double>("grad." + pname).cview());
      worst_grad = std::max(worst_grad, d);
      CHECK(d < grad_tol);
      ++checked;
    } else if (ref.contains("probe." + pname)) {
      double proj = 0;
      for (index_t i = 0; i < g.numel(); ++i) proj += static_cast<double>(g.data()[i]) * hash_uniform(pname + "#probe", static_cast<std::uint64_t>(i));
      const double want = ref.load<double>("probe." + pname).data()[0], scale = ref.load<double>("probe_abs." + pname).data()[0];
      worst_grad = std::max(worst_grad, std::abs(proj - want) / scale);
      CHECK(std::abs(proj - want) <= grad_tol * scale + 1e-300);
      ++checked;
    }
  }
  CHECK(checked == m.params().size());
  const std::string what = name + (sizeof(T) == 8 ? " in double" : " in float");
  MESSAGE(what, ": logits within ", logits_diff, " of the largest, gradients within ", worst_grad);
}

}  // namespace

TEST_CASE("EsmModel matches transformers EsmForMaskedLM: logits, loss, hidden states, every gradient (double)") {
  for (const char* name : {"esm2_8m_shape", "small_padded", "small_untied_no_token_dropout"}) check_case<double>(name, 1e-13, 1e-13);
}

TEST_CASE("EsmModel matches transformers EsmForMaskedLM in float") {
  for (const char* name : {"esm2_8m_shape", "small_padded", "small_untied_no_token_dropout"}) check_case<float>(name, 1e-5, 2e-5);
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
    nlohmann::json j = nlohmann::json::parse(read_text(esm_fixture("esm2_8m_shape") + "/config.json"));
    if (v.is_null()) j.erase(key);
    else j[key] = v;
    const std::string p = tmp.file("config.json");
    write_text(p, j.dump());
    return p;
  };
  check_error([&] { io::read_esm_config(with("position_embedding_type", "absolute")); }, "position_embedding_type 'absolute'");
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
    if (ends_with(n, "LayerNorm.weight")) n = n.substr(0, n.size() - 6) + "gamma";
    if (ends_with(n, "LayerNorm.bias")) n = n.substr(0, n.size() - 4) + "beta";
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
  const nlohmann::json cases = nlohmann::json::parse(read_text(esm_fixture("tokenizer_ids.json")));
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
  const std::string bert = tmp.file("bert");
  fs::create_directories(bert);
  fs::copy_file(esm_fixture("tokenizer") + "/vocab.txt", bert + "/vocab.txt");
  write_text(bert + "/tokenizer_config.json", "{\"tokenizer_class\": \"BertTokenizer\"}");
  check_error([&] { (void)data::Tokenizer::from_directory(bert); }, "vocab.txt of a BertTokenizer");
}

TEST_CASE("masked-marginal scores of 20 ubiquitin mutations equal transformers', batched or not") {
  const std::string dir = esm_fixture("small_padded");
  const EsmConfig cfg = io::read_esm_config(dir + "/config.json");
  EsmModel<cpu, double> m(cfg);
  hash_parameters(m.params());
  const auto tok = data::Tokenizer::from_directory(esm_fixture("tokenizer"));
  const nlohmann::json spec = nlohmann::json::parse(read_text(esm_fixture("mutations.json")));
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
