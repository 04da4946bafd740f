// Loading a Hugging Face T5 directory: wall time and peak resident memory, set
// against the model's float32 size. The weights may be one model.safetensors
// or shards (model.safetensors.index.json), in fp32, fp16 or bf16; plm converts
// them tensor by tensor into its one parameter buffer and does not allocate
// the gradient buffer of a model that only runs forward.
//
//   load_checkpoint <model dir> [<another dir whose logits must match>]
//
// benchmarks/load_checkpoint.py makes a sharded bf16 checkpoint and its fp32
// twin and runs this program on both, next to transformers' from_pretrained.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <plm/io/t5_checkpoint.hpp>
#include <plm/plm.hpp>

using namespace plm;

namespace {

// VmHWM of /proc/self/status: this process's own peak (getrusage's ru_maxrss
// also counts the parent's peak at fork, which a launcher such as Python inflates).
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1;
}

template <class Model>
Tensor<cpu, float> logits_of(const Model& m) {
  // A fixed input: ids 3.. cycling through the vocabulary.
  const index_t S = 16, Tn = 8;
  Tensor<cpu, std::int32_t> ids(Shape{1, S}), dec(Shape{1, Tn});
  for (index_t i = 0; i < S; ++i) ids.data()[i] = static_cast<std::int32_t>(3 + i % (m.config().vocab_size - 3));
  for (index_t i = 0; i < Tn; ++i) dec.data()[i] = static_cast<std::int32_t>(i == 0 ? 0 : 3 + (5 * i) % (m.config().vocab_size - 3));
  Tensor<cpu, float> logits(Shape{1, Tn, m.config().vocab_size});
  typename Model::Cache cache;
  m.forward(ids, {}, dec, logits, cache);
  return logits;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s <model dir> [<twin dir>]\n", argv[0]);
    return 2;
  }
  try {
    return io::with_t5_checkpoint_type<cpu>(argv[1], [&](auto tag) {
      using Model = typename decltype(tag)::type;
      const auto t0 = std::chrono::steady_clock::now();
      const Model m = io::load_t5<Model>(argv[1]);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double fp32_mib = static_cast<double>(m.params().numel()) * 4.0 / (1024.0 * 1024.0);
      const double rss = peak_rss_mib();
      std::printf("plm load %s: %.2f M parameters (%.1f MiB in fp32), %.2f s, peak RSS %.1f MiB = %.2fx the fp32 size\n", argv[1],
                  double(m.params().numel()) / 1e6, fp32_mib, seconds, rss, rss / fp32_mib);
      if (argc == 3) {
        const Tensor<cpu, float> a = logits_of(m);
        const Model twin = io::load_t5<Model>(argv[2]);
        const Tensor<cpu, float> b = logits_of(twin);
        double worst = 0, scale = 0;
        for (index_t i = 0; i < a.numel(); ++i) {
          worst = std::max(worst, std::abs(double(a.data()[i]) - b.data()[i]));
          scale = std::max(scale, std::abs(double(b.data()[i])));
        }
        std::printf("logits against %s: max |difference| %.3g (largest logit %.3g)\n", argv[2], worst, scale);
      }
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_checkpoint: %s\n", e.what());
    return 1;
  }
}
