#pragma once
// What the real-batch benchmarks share (ankh3_real_step, esm_real_step): their
// options, timed passes over the batches, the table of rows relative to plm's
// packed pass, and the Python peer (eager and torch.compile) run on the
// batches file the program writes.
#include <plm/nn/config.hpp>
#include <plm/plm.hpp>

#include <nlohmann/json.hpp>

#include "peer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

namespace plm::bench_real {

struct Options {
  int width = 0, threads = 2, passes = 3;
  index_t batches = 6, budget = 4096, max_length = 512;
  std::string peer, keep;
  bool use_peer = true, compile = true, padded = true;
};

struct Timing {
  double median = 0, min = 0, max = 0;
};

// The Ankh3 blocks of the T5 benchmarks (gated silu, RMS norm, relative
// buckets, untied head) at d_model 256 or 768, 4 encoder and 2 decoder layers.
inline nn::T5Config ankh3_config(int width, std::int32_t vocab) {
  nn::T5Config c = nn::T5Config::ankh3_small();
  if (width == 256) c.d_model = 256, c.d_kv = 64, c.num_heads = 4, c.d_ff = 1024;
  else if (width == 768) c.d_model = 768, c.d_kv = 64, c.num_heads = 12, c.d_ff = 3072;
  else PLM_FAIL("--width must be 256 or 768, not ", width);
  c.num_layers = 4, c.num_decoder_layers = 2, c.vocab_size = vocab, c.feed_forward_proj = "gated-silu", c.dropout_rate = 0;
  c.tie_word_embeddings = false;
  return c;
}

// A warm-up pass (it sizes every workspace), then `passes` timed passes of
// step(k) for every batch k: the median pass and the extremes.
template <class Step>
Timing time_passes(int passes, std::size_t batches, Step&& step) {
  std::vector<double> t;
  for (int p = -1; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < batches; ++k) step(k);
    if (p >= 0) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return {bench_peer::median(t), t.front(), t.back()};
}

// The markdown table; the first row (plm packed) is the one the others are compared with.
class Table {
 public:
  Table(double real_tokens, double flops, int passes) : real_(real_tokens), flops_(flops) {
    std::printf("model FLOPs per pass on the real tokens: %.1f G\n", flops * 1e-9);
    std::printf("| implementation | s/pass median (min-max), %d passes | real tokens/s | GFLOP/s (real tokens) | plm packed speed-up |\n"
                "|---|---:|---:|---:|---:|\n",
                passes);
    std::fflush(stdout);
  }
  void row(const char* name, const Timing& t) {
    if (first_.median == 0) first_ = t;
    std::printf("| %s | %.3f (%.3f-%.3f) | %.0f | %.1f | %.2fx |\n", name, t.median, t.min, t.max, real_ / t.median,
                flops_ / t.median * 1e-9, t.median / first_.median);
    std::fflush(stdout);
  }

 private:
  double real_, flops_;
  Timing first_;
};

// A writer of the batches file: one JSON line per batch, {k1: [first(e) for
// each example e], k2: [second(e) ...]}, the id lists unpadded.
template <class Batches, class First, class Second>
std::function<void(std::ostream&)> json_lines(const Batches& batches, const char* k1, First first, const char* k2, Second second) {
  return [&batches, k1, k2, first, second](std::ostream& f) {
    for (const auto& b : batches) {
      nlohmann::json j = {{k1, nlohmann::json::array()}, {k2, nlohmann::json::array()}};
      for (const auto& e : b.examples) j[k1].push_back(first(e)), j[k2].push_back(second(e));
      f << j.dump() << '\n';
    }
  };
}

// Writes the batches file (write() puts one JSON line per batch), runs the peer
// command with `args` eager and under torch.compile (unless --no-compile), adds
// their rows, and removes the file unless --keep named it.
inline void run_peers(const Options& a, const char* program, const std::string& args, const std::function<void(std::ostream&)>& write,
                      Table& table) {
  const std::string file = a.keep.empty() ? (std::filesystem::temp_directory_path() /
                                             (std::string(program) + "." + std::to_string(getpid()) + ".jsonl")).string()
                                          : a.keep;
  {
    std::ofstream f(file);
    PLM_CHECK(f.good(), program, ": cannot write ", file);
    write(f);
    f.close();
    PLM_CHECK(f.good(), program, ": writing ", file, " failed");
  }
  for (const bool compiled : {false, true}) {
    if (compiled && !a.compile) break;
    const std::string out = bench_peer::peer_output(a.peer + args + " --batches '" + file + "'" + (compiled ? " --compile" : ""), program);
    if (out.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')));
    table.row(compiled ? "HF transformers, torch.compile, padded" : "HF transformers, eager, padded",
              {j.at("median_s").get<double>(), j.at("min_s").get<double>(), j.at("max_s").get<double>()});
    if (!compiled)
      std::printf("peer: torch %s, transformers %s, attention %s\n", j.value("torch", "?").c_str(), j.value("transformers", "?").c_str(),
                  j.value("attention", "?").c_str());
    if (j.contains("first_loss"))
      std::fprintf(stderr, "%s: HF %s, step 1 loss %.4f\n", program, compiled ? "compiled" : "eager", j.at("first_loss").get<double>());
    std::fflush(stdout);
  }
  if (a.keep.empty()) std::filesystem::remove(file);
}

// main(): the shared options (defaults in `a`), the thread count, then bench(a);
// errors as one line and exit 1, an unknown option as the usage and exit 2.
inline int run_main(int argc, char** argv, Options a, const char* widths, const std::function<int(const Options&)>& bench) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--width") a.width = std::atoi(next().c_str());
    else if (arg == "--threads") a.threads = std::atoi(next().c_str());
    else if (arg == "--batches") a.batches = std::atoll(next().c_str());
    else if (arg == "--budget") a.budget = std::atoll(next().c_str());
    else if (arg == "--max-length") a.max_length = std::atoll(next().c_str());
    else if (arg == "--passes") a.passes = std::atoi(next().c_str());
    else if (arg == "--peer") a.peer = next();
    else if (arg == "--no-peer") a.use_peer = false;
    else if (arg == "--no-compile") a.compile = false;
    else if (arg == "--no-padded") a.padded = false;
    else if (arg == "--keep") a.keep = next();
    else {
      std::fprintf(stderr,
                   "usage: %s [--width %s] [--threads N] [--batches K] [--budget TOKENS] [--max-length L] [--passes P]\n"
                   "          [--peer CMD] [--no-peer] [--no-compile] [--no-padded] [--keep FILE]\n",
                   argv[0], widths);
      return 2;
    }
  }
  try {
    PLM_CHECK(a.threads > 0 && a.batches > 0 && a.budget > 0 && a.max_length > 0 && a.passes > 0, argv[0],
              ": --threads, --batches, --budget, --max-length and --passes must be positive");
    set_num_threads(a.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    return bench(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

}  // namespace plm::bench_real
