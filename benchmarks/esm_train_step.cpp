// One masked-LM training step (forward with token dropout, fused
// cross-entropy on the masked positions, backward, optionally AdamW) of plm's
// ESM-2 model next to transformers' EsmForMaskedLM (PyTorch) with the same
// config, batch and thread count, measured in the same run.
//
//   esm_train_step [--config esm2-8m|esm2-35m] [--batch B] [--len T] [--threads N] [--reps R] [--adamw]
//                  [--device cpu|cuda] [--gpu-math bf16|tf32|fp32]
//                  [--peer "python3 benchmarks/esm_train_step_hf.py"] [--no-peer]
//
// The batch is B sequences of T tokens (<cls>, T - 2 residues, <eos>), 15% of
// the residues selected, of those 80% <mask>, 10% random, 10% kept; both sides
// get the same ids and labels.
#include <plm/nn/esm.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/train/device.hpp>

#include "peer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

using namespace plm;

namespace {

struct Args {
  std::string config = "esm2-8m", peer = "python3 benchmarks/esm_train_step_hf.py";
  index_t batch = 8, len = 256;
  int threads = 2, reps = 5;
  bool use_peer = true, adamw = false;
  train::DeviceOptions device;
};

nn::EsmConfig config_by_name(const std::string& name) {
  if (name == "esm2-8m") return nn::EsmConfig::esm2_8m();
  if (name == "esm2-35m") return nn::EsmConfig::esm2_35m();
  PLM_FAIL("esm_train_step: unknown config '", name, "' (esm2-8m, esm2-35m)");
}

// Writes ids and labels (-100 = not counted) of the masked-LM batch to a file the peer reads.
void make_batch(const nn::EsmConfig& c, index_t B, index_t T, std::vector<std::int32_t>& ids, std::vector<std::int32_t>& labels) {
  Philox rng(7);
  ids.assign(static_cast<std::size_t>(B * T), 0);
  labels.assign(ids.size(), -100);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) {
      const std::size_t k = static_cast<std::size_t>(b * T + t);
      if (t == 0) continue;  // <cls> = 0
      if (t == T - 1) {
        ids[k] = 2;  // <eos>
        continue;
      }
      ids[k] = 4 + static_cast<std::int32_t>(rng.below(20));  // the 20 standard residues
      if (rng.uniform() < 0.15) {
        labels[k] = ids[k];
        const double r = rng.uniform();
        if (r < 0.8) ids[k] = c.mask_token_id;
        else if (r < 0.9) ids[k] = 4 + static_cast<std::int32_t>(rng.below(20));
      }
    }
}


template <class B>
void sync() {
#if defined(PLM_HAS_CUDA)
  if constexpr (std::is_same_v<B, cuda>) CudaContext::current().synchronize();
#endif
}

template <class B>
int bench(const Args& a) {
  const bool gpu = !std::is_same_v<B, cpu>;
  const nn::EsmConfig c = config_by_name(a.config);
  const index_t Bn = a.batch, Tn = a.len;
  PLM_CHECK(Tn >= 3 && Bn >= 1, "esm_train_step: --len must be at least 3 and --batch at least 1");
  nn::EsmModel<B, float> model(c, 1);
  std::vector<std::int32_t> hids, hlabels;
  make_batch(c, Bn, Tn, hids, hlabels);
  Tensor<B, std::int32_t> ids(Shape{Bn, Tn}), labels(Shape{Bn, Tn});
  upload(hids.data(), ids.view());
  upload(hlabels.data(), labels.view());
  Tensor<B, float> logits(Shape{Bn, Tn, c.vocab_size});
  typename nn::EsmModel<B, float>::Cache cache;
  objectives::CrossEntropy<B, float> ce(-100);
  optim::AdamW<B, float> opt(model.params());
  auto step = [&] {
    model.params().zero_grad();
    model.forward(ids.cview(), {}, logits.view(), cache, nn::Pass::train(1));
    ce(logits.cview(), labels.cview(), logits.view());
    model.backward(logits.cview(), cache);
    if (a.adamw) opt.step(1e-4);
    sync<B>();
  };
  step();
  std::vector<double> t;
  for (int r = 0; r < a.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double plm_s = bench_peer::median(t);
  // 6 x (weights each token passes through) + the attention products (QK^T and PV, forward and backward)
  const double d = double(c.hidden_size), f = double(c.intermediate_size), L = double(c.num_hidden_layers), V = double(c.vocab_size);
  const double tokens = double(Bn) * double(Tn);
  const double flops = 6 * tokens * (L * (4 * d * d + 2 * d * f) + d * d + d * V) + 12 * L * double(Bn) * double(Tn) * double(Tn) * d;
  std::printf("config %s: %lld layers, d %lld, %lld heads, ffn %lld, vocab %lld; batch %lld x %lld tokens; %s, %s%s\n",
              a.config.c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size, (long long)c.num_attention_heads,
              (long long)c.intermediate_size, (long long)c.vocab_size, (long long)Bn, (long long)Tn,
              gpu ? "cuda" : (std::to_string(a.threads) + " threads").c_str(), gpu ? a.device.math.c_str() : "fp32",
              a.adamw ? ", with the AdamW update" : "");
  std::printf("FLOPs per step: %.1f G\n", flops * 1e-9);
  std::printf("| implementation | s/step (median of %d) | tokens/s | GFLOP/s |\n|---|---:|---:|---:|\n", a.reps);
  const auto row = [&](const char* name, double s) { std::printf("| %s | %.4f | %.0f | %.1f |\n", name, s, tokens / s, flops / s * 1e-9); };
  row("plm", plm_s);
  if (a.use_peer) {
    const std::string batch_file =
        (std::filesystem::temp_directory_path() / ("plm_esm_bench_batch." + std::to_string(static_cast<long long>(getpid())) + ".bin")).string();
    {
      FILE* fb = std::fopen(batch_file.c_str(), "wb");
      PLM_CHECK(fb, "esm_train_step: cannot write ", batch_file);
      const bool ok = std::fwrite(hids.data(), sizeof(std::int32_t), hids.size(), fb) == hids.size() &&
                      std::fwrite(hlabels.data(), sizeof(std::int32_t), hlabels.size(), fb) == hlabels.size();
      PLM_CHECK(std::fclose(fb) == 0 && ok, "esm_train_step: cannot write ", batch_file);
    }
    char args[512];
    std::snprintf(args, sizeof args,
                  " --hidden_size %lld --layers %lld --heads %lld --ffn %lld --vocab %lld --batch %lld --len %lld --threads %d"
                  " --reps %d --warmup 1 --device %s --math %s --batch_file %s%s",
                  (long long)c.hidden_size, (long long)c.num_hidden_layers, (long long)c.num_attention_heads,
                  (long long)c.intermediate_size, (long long)c.vocab_size, (long long)Bn, (long long)Tn, a.threads, a.reps,
                  gpu ? "cuda" : "cpu", gpu ? a.device.math.c_str() : "fp32", batch_file.c_str(), a.adamw ? " --adamw" : "");
    const double hf_s = bench_peer::run_peer(a.peer + args, "esm_train_step");
    std::remove(batch_file.c_str());
    if (hf_s > 0) {
      row("HF transformers EsmForMaskedLM (PyTorch)", hf_s);
      std::printf("speed ratio plm / HF: %.2fx\n", hf_s / plm_s);
    }
  }
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
    else if (arg == "--len") a.len = std::atoll(next().c_str());
    else if (arg == "--threads") a.threads = std::atoi(next().c_str());
    else if (arg == "--reps") a.reps = std::max(1, std::atoi(next().c_str()));
    else if (arg == "--peer") a.peer = next();
    else if (arg == "--no-peer") a.use_peer = false;
    else if (arg == "--adamw") a.adamw = true;
    else if (arg == "--device") a.device.device = next();
    else if (arg == "--gpu-math") a.device.math = next();
    else {
      std::fprintf(stderr,
                   "usage: %s [--config esm2-8m|esm2-35m] [--batch B] [--len T] [--threads N] [--reps R] [--adamw]\n"
                   "          [--device cpu|cuda] [--gpu-math bf16|tf32|fp32] [--peer CMD] [--no-peer]\n",
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
