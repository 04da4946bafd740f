// Parity with an independent implementation: small random-weight T5 models
// built, run and differentiated by Hugging Face transformers (PyTorch, float64),
// saved under tests/fixtures/ by tests/fixtures/make_hf_fixtures.py. plm loads
// the same checkpoint through io::load_t5 and must reproduce the logits, loss,
// hidden states, every parameter gradient and greedy generation.
#include <filesystem>
#include <string>

#include "ops_test_support.hpp"
#include "plm/io/t5_checkpoint.hpp"
#include "plm/objectives/cross_entropy.hpp"

#ifndef PLM_FIXTURES_DIR
#error "PLM_FIXTURES_DIR must name tests/fixtures"
#endif

using namespace plm;
using namespace plm::test;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return (fs::path(PLM_FIXTURES_DIR) / name).string(); }

// max |a - b| / max |b|: relative to the reference's scale.
template <class A>
double rel_error(ConstView<cpu, A> a, ConstView<cpu, double> b) {
  REQUIRE(a.shape() == b.shape());
  double num = 0, den = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    num = std::max(num, std::abs(double(a.data()[i]) - b.data()[i]));
    den = std::max(den, std::abs(b.data()[i]));
  }
  return num / std::max(den, 1e-300);
}

struct Inputs {
  Tensor<cpu, std::int32_t> ids, dec_ids, labels;
  Tensor<cpu, std::uint8_t> valid;
};

Inputs read_inputs(const io::SafetensorsReader& ref) {
  Inputs in;
  in.ids = ref.load<std::int32_t>("input_ids");
  in.dec_ids = ref.load<std::int32_t>("decoder_input_ids");
  in.labels = ref.load<std::int32_t>("labels");
  auto mask = ref.load<std::int32_t>("attention_mask");
  in.valid.resize(mask.shape());
  ops<cpu>::convert<std::int32_t, std::uint8_t>(mask, in.valid);
  return in;
}

template <class Model>
void check_fixture(const std::string& name, double tol) {
  using T = typename Model::value_type;
  const std::string dir = fixture(name);
  INFO("fixture ", name, " in ", sizeof(T) == 8 ? "double" : "float");
  Model m = io::load_t5<Model>(dir);
  const io::SafetensorsReader ref((fs::path(dir) / "io.safetensors").string());
  const Inputs in = read_inputs(ref);
  const auto& c = m.config();
  const index_t Bn = in.ids.dim(0), Tn = in.dec_ids.dim(1);

  // forward + loss + backward, as HF computed them (labels -100 ignored, mean over the rest)
  Tensor<cpu, T> logits(Shape{Bn, Tn, c.vocab_size}), dlogits(logits.shape());
  typename Model::Cache cache;
  m.forward(in.ids, in.valid, in.dec_ids, logits, cache);
  objectives::CrossEntropy<cpu, T> ce(-100);
  const auto r = ce(logits, in.labels, dlogits);
  m.params().zero_grad();
  m.backward(dlogits, cache);

  CHECK(rel_error<T>(logits, ref.load<double>("logits")) < tol);
  CHECK(std::abs(r.loss - ref.load<double>("loss").data()[0]) < tol * std::abs(ref.load<double>("loss").data()[0]));
  CHECK(rel_error<T>(cache.enc_out, ref.load<double>("encoder_last_hidden_state")) < tol);
  CHECK(rel_error<T>(cache.dec_out, ref.load<double>("decoder_last_hidden_state")) < tol);
  index_t checked = 0;
  for (const auto& e : m.params().entries()) {
    INFO("gradient of ", e.name);
    CHECK(rel_error<T>(m.params().grad(e.name), ref.load<double>("grad." + e.name)) < tol * 10);
    ++checked;
  }
  CHECK(checked == 66);

  // greedy generation with the key/value cache reproduces HF's generate()
  const auto want = ref.load<std::int32_t>("generated");  // (B, 1 + steps), starting with decoder_start
  const index_t steps = want.dim(1) - 1;
  typename Model::DecodeState st;
  m.begin_decoding(in.ids, in.valid, steps, st);
  Tensor<cpu, std::int32_t> tok(Shape{Bn});
  ops<cpu>::fill<std::int32_t>(tok, c.decoder_start_token_id);
  Tensor<cpu, T> step_logits(Shape{Bn, c.vocab_size});
  for (index_t t = 0; t < steps; ++t) {
    m.decode_step(tok, step_logits, st);
    for (index_t b = 0; b < Bn; ++b) {
      const T* row = step_logits.data() + b * c.vocab_size;
      tok.data()[b] = static_cast<std::int32_t>(std::max_element(row, row + c.vocab_size) - row);
      CHECK(tok.data()[b] == want.at(b, t + 1));
    }
  }
}

}  // namespace

TEST_CASE("HF parity: gated-gelu (Ankh) T5, double and float") {
  check_fixture<nn::AnkhModel<cpu, double>>("t5_gated_gelu", 1e-12);
  check_fixture<nn::AnkhModel<cpu, float>>("t5_gated_gelu", 1e-4);
}

TEST_CASE("HF parity: gated-silu (Ankh3) T5, double and float") {
  check_fixture<nn::Ankh3Model<cpu, double>>("t5_gated_silu", 1e-12);
  check_fixture<nn::Ankh3Model<cpu, float>>("t5_gated_silu", 1e-4);
}

TEST_CASE("checkpoints: save_t5 round trip, and missing / extra / mis-shaped tensors are refused by name") {
  const std::string src = fixture("t5_gated_silu");
  auto m = io::load_t5<nn::Ankh3Model<cpu, float>>(src);
  const fs::path tmp = fs::temp_directory_path() / ("plm_ckpt_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  io::save_t5(m, (tmp / "saved").string());
  auto back = io::load_t5<nn::Ankh3Model<cpu, float>>((tmp / "saved").string());
  CHECK(back.config().num_decoder_layers == 3);
  CHECK(std::memcmp(back.params().values().data(), m.params().values().data(), sizeof(float) * m.params().numel()) == 0);

  // the encoder alone, from the full checkpoint; its states equal the full model's encoder states
  {
    auto enc = io::load_t5_encoder<nn::Ankh3Model<cpu, double>>(src);
    CHECK_FALSE(enc.has_decoder());
    CHECK(enc.params().find("lm_head.weight") < 0);
    const io::SafetensorsReader ref((fs::path(src) / "io.safetensors").string());
    const Inputs in = read_inputs(ref);
    Tensor<cpu, double> states(Shape{in.ids.dim(0), in.ids.dim(1), enc.config().d_model});
    nn::Ankh3Model<cpu, double>::Cache cache;
    enc.encode(in.ids, in.valid, states, cache);
    CHECK(rel_error<double>(states, ref.load<double>("encoder_last_hidden_state")) < 1e-12);
    // saved as a T5EncoderModel checkpoint and loaded back
    io::save_t5(enc, (tmp / "encoder").string());
    auto enc2 = io::load_t5<nn::Ankh3Model<cpu, double>>((tmp / "encoder").string());
    CHECK_FALSE(enc2.has_decoder());
    CHECK(enc2.params().numel() == enc.params().numel());
    // a full model cannot load from an encoder-only checkpoint
    nn::T5Config full = enc.config();
    full.num_decoder_layers = 1;
    nn::Ankh3Model<cpu, double> m_full(full);
    check_error([&] { io::load_parameters(m_full.params(), (tmp / "encoder").string()); }, "lacks", "decoder.block.0");
  }

  // a model of the wrong type
  check_error([&] { io::load_t5<nn::AnkhModel<cpu, float>>(src); }, "feed_forward_proj 'gated-silu'");
  // a backbone and a head in one caller-provided set: the backbone's part loads
  // from the checkpoint, the head keeps its initial values, save_t5 writes the
  // backbone alone
  {
    nn::ParameterSet<cpu, float> ps;
    const nn::T5Config c = io::read_t5_dir_config(src);
    nn::Ankh3Model<cpu, float> bb(ps, c);
    const auto head = nn::add_param(ps, "head.weight", Shape{3, c.d_model}, 0.5);
    ps.allocate();
    ps.init(7);
    CHECK(bb.param_range().begin == 0);
    CHECK(bb.param_range().end == ps.size() - 1);
    std::vector<float> head_before(static_cast<std::size_t>(head.value().numel()));
    std::copy(head.value().data(), head.value().data() + head_before.size(), head_before.begin());
    io::load_t5_weights(bb, src);
    CHECK(std::memcmp(ps.values().data(), m.params().values().data(), sizeof(float) * m.params().numel()) == 0);
    CHECK(std::equal(head_before.begin(), head_before.end(), head.value().data()));
    io::save_t5(bb, (tmp / "shared_set").string());
    auto back2 = io::load_t5<nn::Ankh3Model<cpu, float>>((tmp / "shared_set").string());  // no head tensor in the file
    CHECK(back2.params().numel() == m.params().numel());
    // the model type of a checkpoint directory, chosen from its config
    const std::string chosen = io::with_t5_checkpoint_type<cpu>(src, [](auto tag) {
      using Model = typename decltype(tag)::type;
      return std::string(std::is_same_v<Model, nn::Ankh3Model<cpu, float>> ? "ankh3" : "other");
    });
    CHECK(chosen == "ankh3");
    check_error([&] { io::with_t5_model_type<cpu>("relu", [](auto) { return 0; }, "x/config.json"); }, "x/config.json",
                "feed_forward_proj 'relu'");
  }


  // files derived from the good one, each broken in one way
  const io::SafetensorsReader good((fs::path(src) / "model.safetensors").string());
  std::vector<Tensor<cpu, float>> keep;
  auto write_variant = [&](const std::string& file, const std::string& drop, const std::string& reshape, bool extra) {
    io::SafetensorsWriter w;
    keep.clear();
    keep.reserve(good.tensors().size() + 1);
    for (const auto& info : good.tensors()) {
      if (info.name == drop) continue;
      keep.push_back(good.load<float>(info.name));
      if (info.name == reshape) keep.back().resize(Shape{keep.back().dim(0), keep.back().dim(1) - 1});
      w.add<float>(info.name, keep.back().cview());
    }
    if (extra) {
      keep.emplace_back(Shape{3});
      ops<cpu>::fill(keep.back().view(), 0.f);
      w.add<float>("encoder.block.9.layer.0.SelfAttention.q.weight", keep.back().cview());
    }
    w.write((tmp / file).string());
    return (tmp / file).string();
  };
  const auto missing = write_variant("missing.safetensors", "decoder.block.2.layer.1.EncDecAttention.v.weight", "", false);
  check_error([&] { io::load_parameters(m.params(), missing); }, "missing.safetensors lacks 1 tensor(s)",
              "decoder.block.2.layer.1.EncDecAttention.v.weight");
  const auto extra = write_variant("extra.safetensors", "", "", true);
  check_error([&] { io::load_parameters(m.params(), extra); }, "extra.safetensors has 1 tensor(s) this model does not have",
              "encoder.block.9.layer.0.SelfAttention.q.weight");
  const auto shaped = write_variant("shaped.safetensors", "", "encoder.block.1.layer.1.DenseReluDense.wo.weight", false);
  check_error([&] { io::load_parameters(m.params(), shaped); }, "shaped.safetensors", "encoder.block.1.layer.1.DenseReluDense.wo.weight",
              "(16, 23)", "(16, 24)");
  // shared.weight stored under its tied alias loads too
  {
    io::SafetensorsWriter w;
    keep.clear();
    keep.reserve(good.tensors().size());
    for (const auto& info : good.tensors()) {
      keep.push_back(good.load<float>(info.name));
      w.add<float>(info.name == "shared.weight" ? "encoder.embed_tokens.weight" : info.name, keep.back().cview());
    }
    w.write((tmp / "alias.safetensors").string());
    io::load_parameters(back.params(), (tmp / "alias.safetensors").string());
    CHECK(std::memcmp(back.params().value("shared.weight").data(), m.params().value("shared.weight").data(),
                      sizeof(float) * 24 * 16) == 0);
  }
  fs::remove_all(tmp);
}
