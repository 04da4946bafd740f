// One training step (forward, fused cross-entropy, backward) of plm's T5 model
// on the CPU in fp32, next to Hugging Face transformers' T5ForConditionalGeneration
// (PyTorch) with the same config, batch and thread count, measured in the same
// run. Prints time per step, tokens/s, achieved GFLOP/s (train/flops.hpp) and
// the ratio.
//
//   t5_train_step [--config ankh-base-4x2|ankh3-small] [--batch B] [--src S] [--tgt T]
//                 [--threads N] [--reps R] [--peer "python3 benchmarks/t5_train_step_hf.py"] [--no-peer]
#include <plm/nn/t5.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/plm.hpp>
#include <plm/train/flops.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace plm;

namespace {

nn::T5Config config_by_name(const std::string& name) {
  if (name == "ankh-base-4x2") {  // Ankh-base widths, 4 encoder and 2 decoder layers
    nn::T5Config c = nn::T5Config::ankh_base();
    c.num_layers = 4, c.num_decoder_layers = 2;
    return c;
  }
  if (name == "ankh3-small") {
    nn::T5Config c = nn::T5Config::ankh3_small();
    c.feed_forward_proj = "gated-gelu";  // both sides run the Ankh (gated gelu) block
    return c;
  }
  PLM_FAIL("t5_train_step: unknown config '", name, "' (ankh-base-4x2, ankh3-small)");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs the peer command and returns its median_s, or -1 when it fails.
double run_peer(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  const auto k = out.find("\"median_s\":");
  if (rc != 0 || k == std::string::npos) {
    std::fprintf(stderr, "t5_train_step: peer command failed (rc %d): %s\n%s\n", rc, cmd.c_str(), out.c_str());
    return -1;
  }
  auto field = [&](const char* key) {
    const std::string k2 = std::string("\"") + key + "\": \"";
    const auto a = out.find(k2);
    if (a == std::string::npos) return std::string("?");
    const auto b = out.find('"', a + k2.size());
    return out.substr(a + k2.size(), b - a - k2.size());
  };
  std::printf("peer: torch %s, transformers %s\n", field("torch").c_str(), field("transformers").c_str());
  return std::atof(out.c_str() + k + 11);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "ankh-base-4x2", peer = "python3 benchmarks/t5_train_step_hf.py";
  index_t batch = 2, src = 256, tgt = 128;
  int threads = 2, reps = 5;
  bool use_peer = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--config") config = next();
    else if (a == "--batch") batch = std::atoll(next().c_str());
    else if (a == "--src") src = std::atoll(next().c_str());
    else if (a == "--tgt") tgt = std::atoll(next().c_str());
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
    else if (a == "--peer") peer = next();
    else if (a == "--no-peer") use_peer = false;
    else {
      std::fprintf(stderr, "usage: %s [--config NAME] [--batch B] [--src S] [--tgt T] [--threads N] [--reps R] [--peer CMD] [--no-peer]\n", argv[0]);
      return 2;
    }
  }
  try {
    set_num_threads(threads);
    const nn::T5Config c = config_by_name(config);
    nn::AnkhModel<cpu, float> model(c, 1);
    Tensor<cpu, std::int32_t> ids(Shape{batch, src}), dec(Shape{batch, tgt}), labels(Shape{batch, tgt});
    Philox rng(2);
    for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size - 3)));
    for (index_t i = 0; i < labels.numel(); ++i) labels.data()[i] = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size - 3)));
    for (index_t b = 0; b < batch; ++b) {  // decoder input = labels shifted right, as T5 does
      dec.at(b, 0) = c.decoder_start_token_id;
      for (index_t t = 1; t < tgt; ++t) dec.at(b, t) = labels.at(b, t - 1);
    }
    Tensor<cpu, float> logits(Shape{batch, tgt, c.vocab_size});
    nn::AnkhModel<cpu, float>::Cache cache;
    objectives::CrossEntropy<cpu, float> ce;
    auto step = [&] {
      model.params().zero_grad();
      model.forward(ids, {}, dec, logits, cache);
      ce(logits, labels, logits);  // gradient written over the logits
      model.backward(logits, cache);
    };
    step();  // warm-up: sizes every workspace
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double plm_s = median(t);
    const auto flops = train::t5_training_flops(c, double(batch), double(src), double(tgt));
    const double tokens = double(batch) * double(src + tgt);
    std::printf("config %s: d_model %lld, d_ff %lld, heads %lld, layers %lld+%lld, vocab %lld; batch %lld x (%lld src + %lld tgt); %d threads; fp32\n",
                config.c_str(), (long long)c.d_model, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)batch, (long long)src, (long long)tgt, threads);
    std::printf("FLOPs per step: %.1f G (weights %.1f G, attention %.1f G)\n", flops.total() * 1e-9,
                (flops.encoder_weights + flops.decoder_weights) * 1e-9, flops.attention * 1e-9);
    std::printf("| implementation | s/step (median of %d) | tokens/s | GFLOP/s |\n|---|---:|---:|---:|\n", reps);
    std::printf("| plm | %.3f | %.0f | %.1f |\n", plm_s, tokens / plm_s, flops.total() / plm_s * 1e-9);
    if (use_peer) {
      char args[512];
      std::snprintf(args, sizeof args,
                    " --d_model %lld --d_kv %lld --d_ff %lld --num_heads %lld --num_layers %lld --num_decoder_layers %lld"
                    " --vocab_size %lld --num_buckets %lld --max_distance %lld --batch %lld --src_len %lld --tgt_len %lld"
                    " --threads %d --reps %d --warmup 1 --feed_forward_proj %s",
                    (long long)c.d_model, (long long)c.d_kv, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                    (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)c.relative_attention_num_buckets,
                    (long long)c.relative_attention_max_distance, (long long)batch, (long long)src, (long long)tgt, threads,
                    reps, c.feed_forward_proj.c_str());
      const double hf_s = run_peer(peer + args);
      if (hf_s > 0) {
        std::printf("| HF transformers T5 (PyTorch) | %.3f | %.0f | %.1f |\n", hf_s, tokens / hf_s, flops.total() / hf_s * 1e-9);
        std::printf("speed ratio plm / HF: %.2fx\n", hf_s / plm_s);
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
