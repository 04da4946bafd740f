// One training step (forward, fused cross-entropy, backward, optionally the
// AdamW update) of plm's T5 model, next to Hugging Face transformers'
// T5ForConditionalGeneration (PyTorch) with the same config, batch and device,
// measured in the same run. Prints time per step, tokens/s, achieved FLOP/s
// (train/flops.hpp), on a GPU the model FLOP utilisation against --peak-tflops,
// and the ratio.
//
// CPU (fp32):  t5_train_step [--config ankh-base-4x2|ankh3-small] [--threads N]
// GPU:         t5_train_step --device cuda --gpu-math bf16|tf32|fp32 --config ankh3-large-4x2 --src 512 --tgt 512 --adamw
//              (PyTorch runs the same math: autocast bf16, TF32 or fp32 matmuls)
// Common:      [--batch B] [--src S] [--tgt T] [--reps R] [--peer "python3 benchmarks/t5_train_step_hf.py"] [--no-peer]
//              [--peak-tflops P]  (default 989: H100/H200 SXM dense bf16; TF32 is half of it)
#include <plm/nn/t5.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/train/device.hpp>

#include "peer.hpp"
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
  if (name == "ankh3-large-4x2") {  // Ankh3-large widths (d_model 1536, d_ff 3840, 16 heads), 4 encoder and 2 decoder layers
    nn::T5Config c = nn::T5Config::ankh3_large();
    c.num_layers = 4, c.num_decoder_layers = 2;
    c.feed_forward_proj = "gated-gelu";
    return c;
  }
  PLM_FAIL("t5_train_step: unknown config '", name, "' (ankh-base-4x2, ankh3-small, ankh3-large-4x2)");
}



struct Args {
  std::string config = "ankh-base-4x2", peer = "python3 benchmarks/t5_train_step_hf.py";
  index_t batch = 2, src = 256, tgt = 128;
  int threads = 2, reps = 5;
  bool use_peer = true, adamw = false;
  double peak_tflops = 989.0;
  train::DeviceOptions device;
};

template <class B>
void sync() {
#if defined(PLM_HAS_CUDA)
  if constexpr (std::is_same_v<B, cuda>) CudaContext::current().synchronize();
#endif
}

template <class B>
int bench(const Args& a) {
  const bool gpu = !std::is_same_v<B, cpu>;
  const nn::T5Config c = config_by_name(a.config);
  const index_t batch = a.batch, src = a.src, tgt = a.tgt;
  nn::AnkhModel<B, float> model(c, 1);
  Tensor<cpu, std::int32_t> hids(Shape{batch, src}), hdec(Shape{batch, tgt}), hlabels(Shape{batch, tgt});
  Philox rng(2);
  for (index_t i = 0; i < hids.numel(); ++i) hids.data()[i] = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size - 3)));
  for (index_t i = 0; i < hlabels.numel(); ++i) hlabels.data()[i] = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(c.vocab_size - 3)));
  for (index_t b = 0; b < batch; ++b) {  // decoder input = labels shifted right, as T5 does
    hdec.at(b, 0) = c.decoder_start_token_id;
    for (index_t t = 1; t < tgt; ++t) hdec.at(b, t) = hlabels.at(b, t - 1);
  }
  Tensor<B, std::int32_t> ids(hids.shape()), dec(hdec.shape()), labels(hlabels.shape());
  upload(hids.data(), ids.view()), upload(hdec.data(), dec.view()), upload(hlabels.data(), labels.view());
  Tensor<B, float> logits(Shape{batch, tgt, c.vocab_size});
  typename nn::AnkhModel<B, float>::Cache cache;
  objectives::CrossEntropy<B, float> ce;
  optim::AdamW<B, float> opt(model.params());
  auto step = [&] {
    model.params().zero_grad();
    model.forward(ids, {}, dec, logits, cache);
    ce(logits, labels, logits);  // gradient written over the logits
    model.backward(logits, cache);
    if (a.adamw) opt.step(1e-4);
    sync<B>();
  };
  step();  // warm-up: sizes every workspace
  std::vector<double> t;
  for (int r = 0; r < a.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double plm_s = bench_peer::median(t);
  const auto flops = train::t5_training_flops(c, double(batch), double(src), double(tgt));
  const double tokens = double(batch) * double(src + tgt);
  const std::string math = gpu ? a.device.math : "fp32";
  std::printf("config %s: d_model %lld, d_ff %lld, heads %lld, layers %lld+%lld, vocab %lld; batch %lld x (%lld src + %lld tgt); %s, %s%s\n",
              a.config.c_str(), (long long)c.d_model, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
              (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)batch, (long long)src, (long long)tgt,
              gpu ? "cuda" : (std::to_string(a.threads) + " threads").c_str(), math.c_str(), a.adamw ? ", with the AdamW update" : "");
  std::printf("FLOPs per step: %.1f G (weights %.1f G, attention %.1f G)\n", flops.total() * 1e-9,
              (flops.encoder_weights + flops.decoder_weights) * 1e-9, flops.attention * 1e-9);
  const double peak = (math == "bf16" ? a.peak_tflops : math == "tf32" ? a.peak_tflops / 2 : a.peak_tflops / 16) * 1e12;
  auto row = [&](const char* name, double s) {
    std::printf("| %s | %.4f | %.0f | %.1f |", name, s, tokens / s, flops.total() / s * 1e-9);
    if (gpu) std::printf(" %.1f%% |", 100.0 * flops.total() / s / peak);
    std::printf("\n");
  };
  std::printf("| implementation | s/step (median of %d) | tokens/s | GFLOP/s |%s\n|---|---:|---:|---:|%s\n", a.reps,
              gpu ? " MFU |" : "", gpu ? "---:|" : "");
  row("plm", plm_s);
  if (a.use_peer) {
    char args[768];
    std::snprintf(args, sizeof args,
                  " --d_model %lld --d_kv %lld --d_ff %lld --num_heads %lld --num_layers %lld --num_decoder_layers %lld"
                  " --vocab_size %lld --num_buckets %lld --max_distance %lld --batch %lld --src_len %lld --tgt_len %lld"
                  " --threads %d --reps %d --warmup 1 --feed_forward_proj %s --device %s --math %s%s",
                  (long long)c.d_model, (long long)c.d_kv, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                  (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)c.relative_attention_num_buckets,
                  (long long)c.relative_attention_max_distance, (long long)batch, (long long)src, (long long)tgt, a.threads,
                  a.reps, c.feed_forward_proj.c_str(), gpu ? "cuda" : "cpu", math.c_str(), a.adamw ? " --adamw" : "");
    const double hf_s = bench_peer::run_peer(a.peer + args, "t5_train_step");
    if (hf_s > 0) {
      row("HF transformers T5 (PyTorch)", hf_s);
      std::printf("speed ratio plm / HF: %.2fx\n", hf_s / plm_s);
    }
  }
  if (gpu) std::printf("MFU against %.0f TFLOP/s (%s peak given by --peak-tflops %.0f)\n", peak * 1e-12, math.c_str(), a.peak_tflops);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--config") a.config = next();
    else if (arg == "--batch") a.batch = std::atoll(next().c_str());
    else if (arg == "--src") a.src = std::atoll(next().c_str());
    else if (arg == "--tgt") a.tgt = std::atoll(next().c_str());
    else if (arg == "--threads") a.threads = std::atoi(next().c_str());
    else if (arg == "--reps") a.reps = std::max(1, std::atoi(next().c_str()));
    else if (arg == "--peer") a.peer = next();
    else if (arg == "--no-peer") a.use_peer = false;
    else if (arg == "--adamw") a.adamw = true;
    else if (arg == "--device") a.device.device = next();
    else if (arg == "--gpu-math") a.device.math = next();
    else if (arg == "--peak-tflops") a.peak_tflops = std::atof(next().c_str());
    else {
      std::fprintf(stderr,
                   "usage: %s [--config NAME] [--batch B] [--src S] [--tgt T] [--threads N] [--reps R] [--peer CMD] [--no-peer]\n"
                   "          [--adamw] [--device cpu|cuda] [--gpu-math bf16|tf32|fp32] [--peak-tflops P]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    set_num_threads(a.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    return train::run_on_device(a.device, [&](auto backend) { return bench<decltype(backend)>(a); });
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
