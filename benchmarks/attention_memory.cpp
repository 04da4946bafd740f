// Peak memory of one Ankh3 training step (forward, loss gradient, backward) at
// source length 1024 (by default), next to transformers at the same shapes in
// the same run: plm packed with blockwise attention (the default), plm packed
// with every layer's probabilities kept (as an attention loss would ask), plm
// padded (which always keeps them), and T5ForConditionalGeneration eager and
// SDPA (attention_memory_hf.py).
//
// Each measurement runs in a process of its own, so its peak resident set is
// its own: the figure is the peak during the step above the resident set
// just before it (the model, its gradients and the batch already there).
//
//   OPENBLAS_CORETYPE=SkylakeX build/benchmarks/attention_memory [--width 256|768] [--length 1024]
//       [--target 256] [--batch 2] [--threads 2] [--peer CMD] [--no-peer]
#include <plm/data/vocabulary.hpp>
#include <plm/nn/t5.hpp>
#include <plm/objectives/multitask.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/batching.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "peer.hpp"
#include "real_batches.hpp"

using namespace plm;

namespace {

struct Args {
  int width = 768, threads = 2;
  index_t length = 1024, target = 256, batch = 2;
  std::string peer = "python3 benchmarks/attention_memory_hf.py";
  bool use_peer = true;
};

double rss_mib() {  // the resident set now
  std::ifstream f("/proc/self/statm");
  long long pages = 0, resident = 0;
  f >> pages >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / double(1 << 20);
}
double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

enum class Mode { blockwise, kept, padded };

// One step's peak above the resident set before it, in this process.
double step_peak(const Args& a, const nn::T5Config& c, Mode mode) {
  nn::Ankh3Model<cpu, float> model(c, 1);
  objectives::MultiTask<cpu, float> loss({{"nlu", 1.0}, {"s2s", 1.0}}, data::Vocabulary::ankh3().residue_ids());
  std::vector<samplers::Seq2SeqExample> ex(static_cast<std::size_t>(a.batch));
  Philox rng(3);
  std::vector<index_t> rows;
  for (auto& e : ex) {
    e.task = rows.size() % 2 ? samplers::Task::s2s : samplers::Task::nlu;
    for (index_t t = 0; t < a.length; ++t) e.inputs.push_back(5 + static_cast<std::int32_t>(rng.below(20)));
    for (index_t t = 0; t < a.target; ++t) e.targets.push_back(5 + static_cast<std::int32_t>(rng.below(20)));
    rows.push_back(static_cast<index_t>(rows.size()));
  }
  nn::Ankh3Model<cpu, float>::Cache cache;
  if (mode == Mode::kept) {  // every attention layer keeps its probabilities
    cache.enc.layers.resize(static_cast<std::size_t>(c.num_layers));
    cache.dec.layers.resize(static_cast<std::size_t>(c.num_decoder_layers));
    for (auto& l : cache.enc.layers) l.attn.keep_probs = true;
    for (auto& l : cache.dec.layers) l.self_attn.keep_probs = l.cross_attn.keep_probs = true;
  }
  samplers::PackedSeq2SeqBatch<cpu> pk;
  samplers::Seq2SeqBatch<cpu> pd;
  Tensor<cpu, float> logits;
  if (mode == Mode::padded) {
    samplers::collate<cpu>(ex, rows, pd);
    logits.resize(Shape{pd.rows(), pd.dec_ids.dim(1), c.vocab_size});
  } else {
    samplers::collate_packed<cpu>(ex, rows, pk);
    logits.resize(Shape{1, pk.dec.tokens(), c.vocab_size});
  }
  model.params().zero_grad();
  const double before = rss_mib();
  if (mode == Mode::padded) {
    model.forward(pd.enc_ids, pd.enc_valid, pd.dec_ids, logits, cache, nn::Pass::train(1), pd.dec_valid);
    loss(logits, pd.labels, pd.task, logits);
  } else {
    model.forward_packed(pk.enc_ids, pk.enc, pk.dec_ids, pk.dec, logits, cache, nn::Pass::train(1));
    loss(logits, pk.labels, pk.dec, pk.task, logits);
  }
  model.backward(logits, cache);
  return peak_rss_mib() - before;
}

// step_peak in a child process; -1 when it fails.
double in_child(const Args& a, const nn::T5Config& c, Mode mode) {
  int fd[2];
  PLM_CHECK(pipe(fd) == 0, "attention_memory: pipe failed");
  const pid_t pid = fork();
  PLM_CHECK(pid >= 0, "attention_memory: fork failed");
  if (pid == 0) {
    close(fd[0]);
    double v = -1;
    try {
      v = step_peak(a, c, mode);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "attention_memory: %s\n", e.what());
    }
    const bool ok = write(fd[1], &v, sizeof v) == static_cast<ssize_t>(sizeof v);
    _exit(ok ? 0 : 1);
  }
  close(fd[1]);
  double v = -1;
  const bool got = read(fd[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v);
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return got && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? v : -1;
}

// The peer's step peak above its resident set before the step (MiB), or -1.
double peer_peak(const Args& a, const nn::T5Config& c, const char* attn) {
  char args[768];
  std::snprintf(args, sizeof args,
                " --d_model %lld --d_kv %lld --d_ff %lld --num_heads %lld --num_layers %lld --num_decoder_layers %lld"
                " --vocab_size %lld --num_buckets %lld --max_distance %lld --feed_forward_proj %s --threads %d"
                " --batch %lld --length %lld --target %lld --attn %s",
                (long long)c.d_model, (long long)c.d_kv, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)c.relative_attention_num_buckets,
                (long long)c.relative_attention_max_distance, c.feed_forward_proj.c_str(), a.threads, (long long)a.batch,
                (long long)a.length, (long long)a.target, attn);
  const std::string out = bench_peer::peer_output(a.peer + args, "attention_memory");
  const auto k = out.find("\"step_peak_mib\":");
  return k == std::string::npos ? -1 : std::atof(out.c_str() + k + 16);
}

int bench(const Args& a) {
  const nn::T5Config c = bench_real::ankh3_config(a.width, data::Vocabulary::ankh3().size());
  // What the kept probabilities hold: every layer's (H, L, L) blocks per sequence, in fp32.
  const double L = double(a.length), Tt = double(a.target), H = double(c.num_heads), n = double(a.batch);
  const double probs_mib = 4.0 * H * n * (double(c.num_layers) * L * L + double(c.num_decoder_layers) * (Tt * Tt + Tt * L)) / double(1 << 20);
  std::printf("attention_memory: d_model %lld, %lld heads, %lld+%lld layers; %lld sequences, source %lld, target %lld tokens; "
              "%d threads, fp32\nthe probabilities of every layer: %.1f MiB\n",
              (long long)c.d_model, (long long)c.num_heads, (long long)c.num_layers, (long long)c.num_decoder_layers,
              (long long)a.batch, (long long)a.length, (long long)a.target, a.threads, probs_mib);
  std::printf("| implementation | step peak above the model (MiB) | vs plm blockwise |\n|---|---:|---:|\n");
  std::fflush(stdout);
  double first = 0;
  const auto row = [&](const char* name, double v) {
    if (v < 0) return (void)std::printf("| %s | failed | |\n", name);
    if (first == 0) first = v;
    std::printf("| %s | %.1f | %.2fx |\n", name, v, v / first);
    std::fflush(stdout);
  };
  row("plm packed, blockwise attention", in_child(a, c, Mode::blockwise));
  row("plm packed, probabilities kept", in_child(a, c, Mode::kept));
  row("plm padded (probabilities kept)", in_child(a, c, Mode::padded));
  if (a.use_peer) {
    row("transformers eager", peer_peak(a, c, "eager"));
    row("transformers sdpa", peer_peak(a, c, "sdpa"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--width") a.width = std::atoi(next().c_str());
    else if (arg == "--threads") a.threads = std::atoi(next().c_str());
    else if (arg == "--length") a.length = std::atoll(next().c_str());
    else if (arg == "--target") a.target = std::atoll(next().c_str());
    else if (arg == "--batch") a.batch = std::atoll(next().c_str());
    else if (arg == "--peer") a.peer = next();
    else if (arg == "--no-peer") a.use_peer = false;
    else {
      std::fprintf(stderr, "usage: %s [--width 256|768] [--length L] [--target T] [--batch N] [--threads N] [--peer CMD] [--no-peer]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    PLM_CHECK(a.threads > 0 && a.length > 1 && a.target > 1 && a.batch > 0, argv[0],
              ": --threads and --batch must be positive, --length and --target at least 2");
    set_num_threads(a.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    return bench(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
