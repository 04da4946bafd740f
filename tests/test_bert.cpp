// BERT / ProtBert (nn::BertModel): the layers it adds (learned absolute
// positions, the post-norm encoder block) through finite differences in
// double; parity with transformers' BertForMaskedLM on the fixtures of
// tests/fixtures/make_bert_fixtures.py (logits, masked-LM loss, hidden states
// and every parameter's gradient, in double and in float); the whole model +
// loss through finite differences; configs; checkpoints both ways.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "hf_fixture_support.hpp"
#include "ops_test_support.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/io/bert_checkpoint.hpp"
#include "plm/nn/bert.hpp"
#include "plm/nn/position_embedding.hpp"
#include "plm/objectives/cross_entropy.hpp"

using namespace plm;
using namespace plm::nn;
using namespace plm::test;
using plm::testing::check_gradient;
using plm::testing::dot;
namespace fs = std::filesystem;

namespace {
using D = double;
using DT = Tensor<cpu, D>;

std::string bert_fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / "bert" / name).string(); }

Tensor<cpu, std::uint8_t> to_mask(const Tensor<cpu, std::int32_t>& v) {
  Tensor<cpu, std::uint8_t> m(v.shape());
  for (index_t i = 0; i < m.numel(); ++i) m.data()[i] = static_cast<std::uint8_t>(v.data()[i] != 0);
  return m;
}

// The parameter gradients after ps.zero_grad() and grads(), as a copy.
template <class F>
DT gradients_of(ParameterSet<cpu, D>& ps, F&& grads) {
  ps.zero_grad();
  grads();
  DT g(ps.grads().shape());
  ops<cpu>::copy(ConstView<cpu, D>(ps.grads()), g.view());
  return g;
}

BertConfig small_config() {
  BertConfig c;
  c.vocab_size = 13, c.hidden_size = 8, c.num_hidden_layers = 2, c.num_attention_heads = 2, c.intermediate_size = 12;
  c.max_position_embeddings = 9, c.type_vocab_size = 2, c.layer_norm_eps = 1e-5, c.pad_token_id = 0;
  return c;
}

template <class T>
void check_case(const std::string& name, double tol, double grad_tol) {
  INFO("fixture ", name, " in ", std::string(sizeof(T) == 8 ? "double" : "float"));
  const std::string dir = bert_fixture(name);
  const BertConfig cfg = io::read_bert_config(dir + "/config.json");
  BertModel<cpu, T> m(cfg);
  fixture_hash_parameters(m.params());
  const io::SafetensorsReader ref(dir + "/io.safetensors");
  const auto ids = ref.load<std::int32_t>("ids");
  const auto valid = to_mask(ref.load<std::int32_t>("valid"));
  const auto labels = ref.load<std::int32_t>("labels");
  const index_t Bn = ids.dim(0), Tn = ids.dim(1), L = cfg.num_hidden_layers;

  typename BertModel<cpu, T>::Cache c;
  Tensor<cpu, T> logits(Shape{Bn, Tn, cfg.vocab_size}), dlogits(logits.shape());
  m.forward(ids.cview(), valid.cview(), logits.view(), c);
  const double logits_diff = rel_to_largest<T>(logits.cview(), ref.load<double>("logits").cview());
  CHECK(logits_diff < tol);
  index_t hidden_checked = 0;
  for (const auto& t : ref.tensors()) {
    if (t.name.rfind("hidden.", 0) != 0) continue;
    const index_t k = std::stoll(t.name.substr(7));
    const Tensor<cpu, T>& h = k == L ? c.out : c.hidden[static_cast<std::size_t>(k)];
    INFO("hidden state ", k);
    CHECK(rel_to_largest<T>(h.cview(), ref.load<double>(t.name).cview()) < tol);
    ++hidden_checked;
  }
  CHECK(hidden_checked == L + 1);
  const objectives::CrossEntropy<cpu, T> ce(-100);
  const auto r = ce(logits.cview(), labels.cview(), dlogits.view());
  CHECK(std::abs(r.loss - ref.load<double>("loss").data()[0]) < tol * 10);
  m.params().zero_grad();
  m.backward(dlogits.cview(), c);
  const double worst_grad = check_fixture_gradients(m.params(), ref, grad_tol);
  const std::string what = name + (sizeof(T) == 8 ? " in double" : " in float");
  MESSAGE(what, ": logits within ", logits_diff, " of the largest, gradients within ", worst_grad);
}

}  // namespace

TEST_CASE("gradient: PositionEmbedding, positions 0..T-1 from an offset and explicit ids, into its table and the input") {
  ParameterSet<cpu, D> ps;
  PositionEmbedding<cpu, D> from0(ps, "p0", 6, 4, 1.0), from2(ps, "p2", 7, 4, 1.0, 2);
  ps.allocate();
  ps.init(3);
  const index_t Bn = 2, Tn = 5;
  DT x = random_tensor<D>(Shape{Bn, Tn, 4}, 1), y(x.shape()), z(x.shape()), r = random_tensor<D>(x.shape(), 2);
  Tensor<cpu, std::int32_t> pos(Shape{Bn, Tn});
  const std::int32_t rows[2][5] = {{1, 2, 3, 4, 5}, {1, 2, 3, 1, 1}};  // ESM-1b style: padding at the padding index
  for (index_t b = 0; b < Bn; ++b)
    for (index_t t = 0; t < Tn; ++t) pos.at(b, t) = rows[b][t];
  PositionEmbedding<cpu, D>::Cache c0, c1, c2;
  auto loss = [&] {
    from0.forward(x, y, c0);
    from2.forward(y, z, c1);
    from0.forward(pos, z, z, c2);  // in place
    return dot<D>(z, r);
  };
  DT dx(x.shape());
  const DT g = gradients_of(ps, [&] {
    loss();
    from0.backward(r, c2);
    from2.backward(r, c1);
    from0.backward(r, c0);
    ops<cpu>::copy(r.cview(), dx.view());  // y = x + P: the input's gradient is dy
  });
  expect_ok(check_gradient(ps.values(), g.cview(), loss), "position embeddings: tables");
  expect_ok(check_gradient(x, dx.cview(), loss), "position embeddings: input");
  // rows past the table are refused by name; what the forms read is where they should be
  for (index_t t = 0; t < Tn; ++t) CHECK(y.at(1, t, 3) == doctest::Approx(x.at(1, t, 3) + from0.weight().value().at(t, 3)));
  CHECK(from2.weight().grad().at(1, 0) == 0.0);  // position 0 of from2 is row 2: rows 0 and 1 are never read
  DT long_x(Shape{1, 6, 4}), long_y(long_x.shape());
  check_error([&] { from2.forward(long_x, long_y, c1); }, "PositionEmbedding p2", "6 positions from 2 exceed the table's 7");
  check_error([&] { PositionEmbedding<cpu, D>(ps, "bad", 4, 2, 1.0, 4); }, "offset 4 is outside the table of 4");
}

TEST_CASE("gradient: post-norm encoder layer (BERT), with padding, in eval and with dropout; pre-norm is another function") {
  for (const bool training : {false, true}) {
    ParameterSet<cpu, D> ps;
    EncoderLayerSpec s;
    s.post_norm = true;
    s.norm0 = "l.attention.output.LayerNorm";
    s.attention = "l.attention";
    s.norm1 = "l.output.LayerNorm";
    s.attn = AttentionShape{8, 2, 4, 0.5};
    s.attn.init_std = 0.5;
    s.attn.bias = true;
    s.attn_dropout = training ? 0.2 : 0.0;
    s.ff.wi = "l.intermediate.dense";
    s.ff.wo = "l.output.dense";
    s.ff.in_std = s.ff.out_std = 0.5;
    s.ff.bias = true;
    s.d_model = 8;
    s.d_ff = 12;
    s.eps = 1e-5;
    s.residual_dropout = training ? 0.25 : 0.0;
    EncoderLayer<cpu, D, BertPolicies> post(ps, s);
    EncoderLayerSpec pre_spec = s;
    pre_spec.post_norm = false;
    for (std::string* n : {&pre_spec.norm0, &pre_spec.attention, &pre_spec.norm1, &pre_spec.ff.wi, &pre_spec.ff.wo}) *n = "pre." + *n;
    EncoderLayer<cpu, D, BertPolicies> pre(ps, pre_spec);
    ps.allocate();
    ps.init(5);
    testing::fill_uniform<D>(ps.values(), 6, 7, -0.7, 0.7);
    CHECK(post.post_norm());
    CHECK_FALSE(pre.post_norm());
    const index_t Bn = 2, Tn = 5;
    DT x = random_tensor<D>(Shape{Bn, Tn, 8}, 11), y(x.shape()), r = random_tensor<D>(x.shape(), 12);
    Tensor<cpu, std::uint8_t> valid(Shape{Bn, Tn});
    for (index_t b = 0; b < Bn; ++b)
      for (index_t t = 0; t < Tn; ++t) valid.at(b, t) = t < Tn - 2 * b;
    SoftmaxMask<cpu, D> mask;
    mask.key_valid = valid;
    const DropoutKey key = DropoutKey::of(training ? Pass::train(9) : Pass::eval()).in_stack(DropoutStack::encoder).in_layer(0);
    EncoderLayer<cpu, D, BertPolicies>::Cache c;
    auto loss = [&] {
      post.forward(x, mask, y, c, key);
      return dot<D>(y, r);
    };
    DT dx(x.shape());
    const DT g = gradients_of(ps, [&] {
      loss();
      post.backward(x, r, dx, TensorView<cpu, D>{}, c);
    });
    INFO("training ", training);
    expect_ok(check_gradient(ps.values(), g.cview(), loss), "post-norm layer: parameters");
    expect_ok(check_gradient(x, dx.cview(), loss), "post-norm layer: input");
    // the pre-norm block with the same weights computes something else
    loss();
    DT y_pre(x.shape());
    EncoderLayer<cpu, D, BertPolicies>::Cache cp;
    pre.forward(x, mask, y_pre, cp, key);
    CHECK(max_rel_diff(y.cview(), y_pre.cview()) > 1e-3);
    // the block ends in its norm: with output.LayerNorm's weight 1 and bias 0 every row has mean 0 and variance 1
    for (index_t p = 0; p < ps.size(); ++p) {
      if (ps.entry(p).name == "l.output.LayerNorm.weight") ops<cpu>::fill<D>(ps.value(p), 1.0);
      if (ps.entry(p).name == "l.output.LayerNorm.bias") ops<cpu>::fill<D>(ps.value(p), 0.0);
    }
    loss();
    for (index_t row = 0; row < Bn * Tn; ++row) {
      double mean = 0, sq = 0;
      for (index_t i = 0; i < 8; ++i) mean += y.data()[row * 8 + i] / 8;
      for (index_t i = 0; i < 8; ++i) sq += (y.data()[row * 8 + i] - mean) * (y.data()[row * 8 + i] - mean) / 8;
      CHECK(std::abs(mean) < 1e-12);
      CHECK(sq == doctest::Approx(1.0).epsilon(1e-3));
    }
  }
}

TEST_CASE("BertModel matches transformers BertForMaskedLM: logits, loss, hidden states, every gradient (double)") {
  for (const char* name : {"small_padded", "tiny_untied"}) check_case<double>(name, 1e-12, 1e-12);
}

TEST_CASE("BertModel matches transformers BertForMaskedLM in float") {
  for (const char* name : {"small_padded", "tiny_untied"}) check_case<float>(name, 1e-5, 2e-5);
}

TEST_CASE("BertModel: finite differences of the masked-LM loss in double, padding, tied and untied, eval and dropout") {
  BertConfig cfg = small_config();
  for (const int variant : {0, 1, 2}) {
    cfg.tie_word_embeddings = variant != 1;
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = variant == 2 ? 0.2 : 0.0;
    const Pass pass = variant == 2 ? Pass::train(31) : Pass::eval();
    BertModel<cpu, D> m(cfg, 5);
    testing::fill_uniform<D>(m.params().values(), 3, 9, -0.6, 0.6);
    Tensor<cpu, std::int32_t> ids(Shape{2, 7}), labels(Shape{2, 7});
    Tensor<cpu, std::uint8_t> valid(Shape{2, 7});
    const std::int32_t rows[2][7] = {{2, 5, 4, 7, 9, 11, 3}, {2, 12, 4, 3, 0, 0, 0}};  // [CLS] ... [SEP] [PAD]...
    for (index_t b = 0; b < 2; ++b)
      for (index_t t = 0; t < 7; ++t) {
        ids.at(b, t) = rows[b][t];
        valid.at(b, t) = rows[b][t] != 0;
        labels.at(b, t) = rows[b][t] == 4 ? 6 : (t == 1 ? rows[b][t] : -100);
      }
    typename BertModel<cpu, D>::Cache c;
    DT logits(Shape{2, 7, cfg.vocab_size}), dlogits(logits.shape());
    const objectives::CrossEntropy<cpu, D> ce(-100);
    auto loss = [&] {
      m.forward(ids.cview(), valid.cview(), logits.view(), c, pass);
      return ce(logits.cview(), labels.cview()).loss;
    };
    const DT g = gradients_of(m.params(), [&] {
      m.forward(ids.cview(), valid.cview(), logits.view(), c, pass);
      ce(logits.cview(), labels.cview(), dlogits.view());
      m.backward(dlogits.cview(), c);
    });
    INFO("variant ", variant);
    expect_ok(check_gradient(m.params().values(), g.cview(), loss), "BertModel parameters");
  }
}

TEST_CASE("BertModel: parameter names are BertForMaskedLM's, no pooler; the pad row starts at zero; too many tokens is refused") {
  BertConfig cfg = small_config();
  cfg.tie_word_embeddings = false;
  const BertModel<cpu, float> m(cfg, 3);
  std::set<std::string> names;
  for (index_t p = 0; p < m.params().size(); ++p) names.insert(m.params().entry(p).name);
  for (const char* n : {"bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                        "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                        "bert.encoder.layer.1.attention.self.query.weight", "bert.encoder.layer.1.attention.self.value.bias",
                        "bert.encoder.layer.1.attention.output.dense.weight", "bert.encoder.layer.1.attention.output.LayerNorm.bias",
                        "bert.encoder.layer.1.intermediate.dense.weight", "bert.encoder.layer.1.output.dense.bias",
                        "bert.encoder.layer.1.output.LayerNorm.weight", "cls.predictions.transform.dense.weight",
                        "cls.predictions.transform.LayerNorm.bias", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                        "cls.predictions.bias"}) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }
  CHECK(names.size() == 5 + 2 * 16 + 4 + 3);
  for (const auto& n : names) CHECK(n.find("pooler") == std::string::npos);
  const auto word = m.params().value(0);
  for (index_t i = 0; i < cfg.hidden_size; ++i) CHECK(word.at(cfg.pad_token_id, i) == 0.0f);
  CHECK(ops<cpu>::sum_squares(ConstView<cpu, float>(word)) > 0);
  Tensor<cpu, std::int32_t> ids(Shape{1, 10});
  for (index_t t = 0; t < 10; ++t) ids.at(0, t) = 5;
  Tensor<cpu, float> out(Shape{1, 10, cfg.hidden_size});
  BertModel<cpu, float>::Cache c;
  check_error([&] { m.encode(ids, {}, out, c); }, "10 tokens per row exceed max_position_embeddings 9");
}

TEST_CASE("BERT config.json: transformers' keys and defaults, ProtBert's own file, what plm cannot build is refused by name") {
  const BertConfig c = io::read_bert_config(bert_fixture("small_padded") + "/config.json");
  CHECK(c.hidden_size == 64);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.intermediate_size == 128);
  CHECK(c.max_position_embeddings == 40);
  CHECK(c.vocab_size == 30);
  CHECK(c.tie_word_embeddings);
  CHECK(c.layer_norm_eps == doctest::Approx(1e-12));
  CHECK(io::read_bert_config(bert_fixture("tiny_untied") + "/config.json").tie_word_embeddings == false);
  TempDir tmp;
  const auto write = [&](const nlohmann::json& j) {
    const std::string p = tmp.file("config.json");
    write_file(p, j.dump());
    return p;
  };
  // Rostlab/prot_bert's config.json as published: no model_type, layer_norm_eps or pad_token_id
  const nlohmann::json prot_bert = {{"architectures", {"BertForMaskedLM"}}, {"attention_probs_dropout_prob", 0.0},
                                    {"hidden_act", "gelu"}, {"hidden_dropout_prob", 0.0}, {"hidden_size", 1024},
                                    {"initializer_range", 0.02}, {"intermediate_size", 4096}, {"max_position_embeddings", 40000},
                                    {"num_attention_heads", 16}, {"num_hidden_layers", 30}, {"type_vocab_size", 2},
                                    {"vocab_size", 30}};
  const BertConfig p = io::read_bert_config(write(prot_bert));
  const BertConfig preset = BertConfig::prot_bert();
  CHECK(p.vocab_size == preset.vocab_size);
  CHECK(p.hidden_size == preset.hidden_size);
  CHECK(p.num_hidden_layers == preset.num_hidden_layers);
  CHECK(p.num_attention_heads == preset.num_attention_heads);
  CHECK(p.intermediate_size == preset.intermediate_size);
  CHECK(p.max_position_embeddings == preset.max_position_embeddings);
  CHECK(p.type_vocab_size == preset.type_vocab_size);
  CHECK(p.hidden_dropout_prob == preset.hidden_dropout_prob);
  CHECK(p.attention_probs_dropout_prob == preset.attention_probs_dropout_prob);
  CHECK(p.layer_norm_eps == preset.layer_norm_eps);
  CHECK(p.pad_token_id == preset.pad_token_id);
  CHECK(p.tie_word_embeddings == preset.tie_word_embeddings);
  CHECK(p.hidden_act == "gelu");

  const auto with = [&](const std::string& key, const nlohmann::json& v) {
    nlohmann::json j = nlohmann::json::parse(read_text_file(bert_fixture("small_padded") + "/config.json"));
    if (v.is_discarded()) j.erase(key);
    else j[key] = v;
    return write(j);
  };
  const nlohmann::json erase = nlohmann::json(nlohmann::json::value_t::discarded);
  check_error([&] { io::read_bert_config(with("hidden_act", "gelu_new")); }, "hidden_act 'gelu_new' is not supported", "erf GELU");
  check_error([&] { io::read_bert_config(with("position_embedding_type", "relative_key")); }, "position_embedding_type 'relative_key'");
  check_error([&] { io::read_bert_config(with("model_type", "esm")); }, "'model_type' is 'esm', expected 'bert'");
  check_error([&] { io::read_bert_config(with("num_attention_heads", 7)); }, "not a multiple of num_attention_heads 7");
  check_error([&] { io::read_bert_config(with("hidden_dropout_prob", 1.5)); }, "hidden_dropout_prob = 1.5");
  check_error([&] { io::read_bert_config(with("pad_token_id", 40)); }, "pad_token_id 40 is outside the vocabulary of 30");
  check_error([&] { io::read_bert_config(with("is_decoder", true)); }, "bidirectional encoder only");
  check_error([&] { io::read_bert_config(with("type_vocab_size", 0)); }, "type_vocab_size = 0");
  check_error([&] { io::read_bert_config(with("hidden_size", "64")); }, "'hidden_size' must be an integer");
  nlohmann::json anonymous = prot_bert;
  anonymous.erase("architectures");
  check_error([&] { io::read_bert_config(write(anonymous)); }, "'model_type' is missing", "names no Bert class");
  CHECK(io::read_bert_config(with("pad_token_id", nullptr)).pad_token_id == -1);
  CHECK(io::read_bert_config(with("layer_norm_eps", erase)).layer_norm_eps == doctest::Approx(1e-12));
  // validate() itself names the key
  BertConfig bad = BertConfig::prot_bert();
  bad.max_position_embeddings = 0;
  check_error([&] { bad.validate(); }, "BertConfig: max_position_embeddings = 0");
  bad = BertConfig::prot_bert();
  bad.hidden_act = "relu";
  check_error([&] { bad.validate("here"); }, "here: hidden_act 'relu'");
  bad = BertConfig::prot_bert();
  bad.layer_norm_eps = 0;
  check_error([&] { BertModel<cpu, float>(bad, 1); }, "layer_norm_eps = 0");
}

TEST_CASE("BERT checkpoints: save_bert then load_bert gives the same model; what transformers writes and ProtBert's files hold") {
  TempDir tmp;
  for (const bool tied : {true, false}) {
    INFO("tied ", tied);
    BertConfig cfg = small_config();
    cfg.tie_word_embeddings = tied;
    BertModel<cpu, float> a(cfg, 11);
    testing::fill_uniform<float>(a.params().values(), 4, 5);  // biases and norms too, so a swap of any two would show
    const std::string dir = tmp.file(tied ? "tied" : "untied");
    io::save_bert(a, dir);
    const auto b = io::load_bert<BertModel<cpu, float>>(dir);
    REQUIRE(b.params().size() == a.params().size());
    for (index_t p = 0; p < a.params().size(); ++p) {
      INFO(a.params().entry(p).name);
      CHECK(b.params().entry(p).name == a.params().entry(p).name);
      CHECK(max_rel_diff(a.params().value(p), b.params().value(p)) == 0);
    }
    // the tensors transformers 5's save_pretrained writes for BertForMaskedLM
    std::map<std::string, Tensor<cpu, float>> saved;  // read now: the file is rewritten below
    {
      const io::SafetensorsReader file(dir + "/model.safetensors");
      for (const auto& t : file.tensors()) saved.emplace(t.name, file.load<float>(t.name));
    }
    std::set<std::string> stored;
    for (const auto& [n, t] : saved) stored.insert(n);
    CHECK(stored.count("cls.predictions.bias") == 1);
    CHECK(stored.count("cls.predictions.decoder.weight") == (tied ? 0u : 1u));
    CHECK(stored.count("cls.predictions.decoder.bias") == (tied ? 0u : 1u));
    CHECK(stored.size() == 5 + 2 * 16 + 4 + (tied ? 1 : 3));
    // the config reads back as it was
    const BertConfig back = io::read_bert_config(dir + "/config.json");
    CHECK(back.tie_word_embeddings == tied);
    CHECK(back.layer_norm_eps == cfg.layer_norm_eps);
    CHECK(back.max_position_embeddings == cfg.max_position_embeddings);

    // a file as older or TF-converted ProtBert checkpoints hold it: a pooler, the NSP
    // head, the position_ids buffer, gamma / beta, the decoder stored beside its tie
    io::SafetensorsWriter w;
    std::vector<Tensor<cpu, float>> keep;
    keep.reserve(16);
    const auto add = [&](const std::string& n, Tensor<cpu, float> t) {
      keep.push_back(std::move(t));
      w.add<float>(n, keep.back().cview());
    };
    for (const auto& [name, t] : saved) {
      std::string n = name;
      if (name_ends_with(n, "LayerNorm.weight")) n = n.substr(0, n.size() - 6) + "gamma";
      if (name_ends_with(n, "LayerNorm.bias")) n = n.substr(0, n.size() - 4) + "beta";
      if (!tied && n == "cls.predictions.decoder.bias") continue;  // transformers 4 kept only its tied alias
      w.add<float>(n, t.cview());
    }
    add("bert.pooler.dense.weight", random_tensor<float>(Shape{8, 8}, 1));
    add("bert.pooler.dense.bias", random_tensor<float>(Shape{8}, 2));
    add("cls.seq_relationship.weight", random_tensor<float>(Shape{2, 8}, 3));
    add("bert.embeddings.position_ids", random_tensor<float>(Shape{1, 9}, 4));
    if (tied) add("cls.predictions.decoder.weight", saved.at("bert.embeddings.word_embeddings.weight").clone());
    w.write(dir + "/model.safetensors");
    const auto c = io::load_bert<BertModel<cpu, float>>(dir);
    for (index_t p = 0; p < a.params().size(); ++p) {
      const std::string& n = a.params().entry(p).name;
      INFO(n);
      if (!tied && n == "cls.predictions.decoder.bias")  // read from its alias
        CHECK(max_rel_diff(c.params().value(p), saved.at("cls.predictions.bias").cview()) == 0);
      else
        CHECK(max_rel_diff(a.params().value(p), c.params().value(p)) == 0);
    }
    // a tensor no BERT parameter is named after, or a missing one, is refused by name
    add("bert.encoder.layer.2.output.dense.weight", random_tensor<float>(Shape{8, 12}, 5));
    w.write(dir + "/model.safetensors");
    check_error([&] { io::load_bert<BertModel<cpu, float>>(dir); }, "bert.encoder.layer.2.output.dense.weight", "does not have");
    io::SafetensorsWriter partial;
    for (const auto& [n, t] : saved)
      if (n != "bert.embeddings.token_type_embeddings.weight") partial.add<float>(n, t.cview());
    partial.write(dir + "/model.safetensors");
    check_error([&] { io::load_bert<BertModel<cpu, float>>(dir); }, "lacks 1 tensor", "bert.embeddings.token_type_embeddings.weight");
  }
}

TEST_CASE("BERT config.json written by plm holds what transformers' save_pretrained wrote for the same model") {
  TempDir tmp;
  for (const char* name : {"small_padded", "tiny_untied"}) {
    INFO(name);
    const std::string theirs = bert_fixture(name) + "/config.json";
    const BertConfig c = io::read_bert_config(theirs);
    io::write_bert_config(c, tmp.file("config.json"));
    const nlohmann::json a = nlohmann::json::parse(read_text_file(theirs)), b = nlohmann::json::parse(read_text_file(tmp.file("config.json")));
    for (const char* key : {"model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                            "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "tie_word_embeddings", "is_decoder",
                            "add_cross_attention"}) {
      INFO(key);
      REQUIRE(a.contains(key));
      REQUIRE(b.contains(key));
      CHECK(a.at(key) == b.at(key));
    }
  }
}

TEST_CASE("BERT checkpoints: a directory BertForMaskedLM.save_pretrained wrote loads with every weight in place") {
  const std::string dir = bert_fixture("tiny_untied");
  const auto m = io::load_bert<BertModel<cpu, float>>(dir);
  CHECK_FALSE(m.config().tie_word_embeddings);
  BertModel<cpu, float> want(m.config());
  fixture_hash_parameters(want.params());  // the script saved the hashed weights in float32
  REQUIRE(m.params().size() == want.params().size());
  for (index_t p = 0; p < m.params().size(); ++p) {
    INFO(m.params().entry(p).name);
    CHECK(max_rel_diff(m.params().value(p), want.params().value(p)) == 0);
  }
}

TEST_CASE("BertModel encoder-only in a caller's set: the encoder of a full checkpoint, the same states, no MLM head") {
  const std::string dir = bert_fixture("small_padded");
  const BertConfig cfg = io::read_bert_config(dir + "/config.json");
  BertModel<cpu, double> full(cfg);
  fixture_hash_parameters(full.params());
  TempDir tmp;
  io::save_bert<double>(full, tmp.file("full"));
  ParameterSet<cpu, double> ps;
  Linear<cpu, double> head(ps, "head", cfg.hidden_size, 3, 0.1);  // a caller's layer beside the encoder
  BertModel<cpu, double> enc(ps, cfg, encoder_only);
  ps.allocate();
  CHECK_FALSE(enc.has_lm_head());
  CHECK(enc.param_range().begin == 1);
  CHECK(enc.param_range().size() == 5 + 2 * 16);
  CHECK(enc.num_encoder_layers() == 2);
  CHECK(enc.vocab_size() == 30);
  io::load_bert_weights(enc, tmp.file("full"));
  const io::SafetensorsReader ref(dir + "/io.safetensors");
  const auto ids = ref.load<std::int32_t>("ids");
  const auto valid = to_mask(ref.load<std::int32_t>("valid"));
  DT a(Shape{ids.dim(0), ids.dim(1), cfg.hidden_size}), b(a.shape());
  BertModel<cpu, double>::Cache ca, cb;
  full.encode(ids, valid, a, ca);
  enc.encode(ids, valid, b, cb);
  CHECK(max_rel_diff(a.cview(), b.cview()) == 0);
  CHECK(rel_to_largest<D>(b.cview(), ref.load<double>("hidden.2").cview()) < 1e-12);
  CHECK(max_rel_diff(enc.hidden_state(cb, 1), ref.load<double>("hidden.1").cview()) < 1e-12);
  check_error([&] { (void)enc.hidden_state(cb, 2); }, "hidden_state: 2 outside 0..1");
  DT logits(Shape{ids.dim(0), ids.dim(1), cfg.vocab_size});
  check_error([&] { enc.forward(ids, valid, logits, cb); }, "built encoder-only");
}

TEST_CASE("ProtBert's tokenizer: a BertTokenizer vocab.txt (as published) and its tokenizer.json give transformers' ids") {
  const nlohmann::json cases = nlohmann::json::parse(read_text_file(bert_fixture("tokenizer_ids.json")));
  TempDir tmp;
  const std::string txt = tmp.file("vocab_only"), json = tmp.file("json_only");
  fs::create_directories(txt);
  fs::create_directories(json);
  for (const char* f : {"vocab.txt", "tokenizer_config.json"}) fs::copy_file(bert_fixture("tokenizer") + "/" + f, txt + "/" + f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(bert_fixture("tokenizer") + "/" + f, json + "/" + f);
  for (const std::string& dir : {txt, json}) {
    const auto tok = data::Tokenizer::from_directory(dir);
    for (const auto& c : cases) {
      const std::string seq = c.at("sequence").get<std::string>();
      INFO(dir, ": ", seq);
      const data::Encoding e = tok.encode(seq, data::InputStyle::words);
      CHECK(e.ids == c.at("words").get<std::vector<std::int32_t>>());
      std::size_t held = 0;  // every residue held by exactly one token; [CLS] and [SEP] hold none
      for (std::size_t t = 0; t < e.size(); ++t) held += e.holds_residue(t) ? std::size_t(e.end[t] - e.begin[t]) : 0;
      CHECK(held == seq.size());
    }
  }
  const auto tok = data::Tokenizer::from_directory(txt);
  check_error([&] { (void)tok.encode("MKV", data::InputStyle::string); }, "residues separated by spaces", "--tokenize words");
  write_file(txt + "/tokenizer_config.json", "{\"tokenizer_class\": \"BertTokenizer\"}");
  check_error([&] { (void)data::Tokenizer::from_directory(txt); }, "lower-cases its input", "\"do_lower_case\": false");
}
