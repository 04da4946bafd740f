// Ankh3 pre-training steps on real protein batches, next to Hugging Face
// transformers in the same run.
//
// The batches are those of the library's pre-training stream on the bundled
// Swiss-Prot sample: both tasks ([NLU] span masking at the sampler's default
// probability, [S2S] completion), sequences cropped to --max-length, grouped by
// length within windows and cut under a token budget of real tokens. plm runs
// them packed (no padding anywhere) and, for reference, padded to the longest
// in each batch. The peer (ankh3_real_step_hf.py) runs the very same batches
// the way Hugging Face users do: padded to the longest in each batch (the
// batches are already length-grouped, as group_by_length makes them), eager and
// under torch.compile. One step = forward, loss, backward and the AdamW update;
// a pass = one step per batch. Figures: median pass time over --passes (min-max),
// real tokens per second, and the ratios.
//
//   ankh3_real_step [--width 256|768] [--threads N] [--batches K] [--budget TOKENS] [--max-length L]
//                   [--passes P] [--peer CMD] [--no-peer] [--no-compile] [--no-padded] [--keep FILE]
#include <plm/nn/t5.hpp>
#include <plm/objectives/multitask.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/pretrain_stream.hpp>
#include <plm/train/flops.hpp>

#include "peer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;

namespace {

struct Args {
  int width = 256, threads = 2, passes = 3;
  index_t batches = 6, budget = 4096, max_length = 512;
  std::string peer = "python3 benchmarks/ankh3_real_step_hf.py", keep;
  bool use_peer = true, compile = true, padded = true;
};

// Ankh3 blocks (gated silu, RMS norm, relative buckets), 4 encoder and 2 decoder layers.
nn::T5Config config_of(int width, std::int32_t vocab) {
  nn::T5Config c = nn::T5Config::ankh3_small();
  if (width == 256) c.d_model = 256, c.d_kv = 64, c.num_heads = 4, c.d_ff = 1024;
  else if (width == 768) c.d_model = 768, c.d_kv = 64, c.num_heads = 12, c.d_ff = 3072;
  else PLM_FAIL("ankh3_real_step: --width must be 256 or 768, not ", width);
  c.num_layers = 4, c.num_decoder_layers = 2, c.vocab_size = vocab, c.feed_forward_proj = "gated-silu", c.dropout_rate = 0;
  c.tie_word_embeddings = false;
  return c;
}

struct Batch {
  std::vector<samplers::Seq2SeqExample> examples;
  index_t real = 0, padded = 0;  // input + target tokens, without and with padding to the longest
};

// The model FLOPs of a step on the real tokens: each sequence's own count (train/flops.hpp).
double real_flops(const nn::T5Config& c, const std::vector<Batch>& batches) {
  double f = 0;
  for (const auto& b : batches)
    for (const auto& e : b.examples)
      f += train::t5_training_flops(c, 1, double(e.inputs.size()), double(e.targets.size())).total();
  return f;
}

// The first k training batches of the pre-training stream.
std::vector<Batch> real_batches(const Args& a, const data::Vocabulary& vocab) {
  samplers::PretrainStreamOptions so;
  so.train = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_families.fasta.gz";
  so.fasta.min_length = 20, so.fasta.max_length = a.max_length;
  so.fasta.too_long = data::TooLongPolicy::crop_random;
  so.batching.token_budget = a.budget, so.batching.packed = true;
  so.seed = so.fasta.seed = 1;
  samplers::Ankh3Options ao;  // the sampler's defaults: masking probability 0.2, span 1, split 0.5, both tasks alike
  ao.seed = 1;
  samplers::PretrainStream stream(so, vocab, samplers::Ankh3Sampler(ao, samplers::ankh3_tokens(vocab)));
  std::vector<Batch> out;
  for (index_t k = 0; k < a.batches; ++k) {
    const auto& rows = stream.next();
    Batch b;
    index_t max_in = 0, max_out = 0;
    for (index_t r : rows) {
      const auto& e = stream.pool().examples[static_cast<std::size_t>(r)];
      b.examples.push_back(e);
      b.real += static_cast<index_t>(e.inputs.size() + e.targets.size());
      max_in = std::max(max_in, static_cast<index_t>(e.inputs.size()));
      max_out = std::max(max_out, static_cast<index_t>(e.targets.size()));
    }
    b.padded = static_cast<index_t>(rows.size()) * (max_in + max_out);
    out.push_back(std::move(b));
  }
  return out;
}

// The batches as JSON Lines for the peer: {"inputs": [[...], ...], "targets": [[...], ...]} per batch.
void write_batches(const std::vector<Batch>& batches, const std::string& path) {
  std::ofstream f(path);
  PLM_CHECK(f.good(), "ankh3_real_step: cannot write ", path);
  for (const auto& b : batches) {
    nlohmann::json j = {{"inputs", nlohmann::json::array()}, {"targets", nlohmann::json::array()}};
    for (const auto& e : b.examples) j["inputs"].push_back(e.inputs), j["targets"].push_back(e.targets);
    f << j.dump() << '\n';
  }
  f.close();
  PLM_CHECK(f.good(), "ankh3_real_step: writing ", path, " failed");
}

struct Timing {
  double median = 0, min = 0, max = 0;
};

Timing time_passes(const std::vector<double>& t) {
  std::vector<double> s = t;
  std::sort(s.begin(), s.end());
  return {bench_peer::median(s), s.front(), s.back()};
}

// Median (min, max) seconds of one pass of plm over the batches, packed or padded.
Timing plm_passes(const Args& a, const nn::T5Config& c, const std::vector<Batch>& batches, const std::vector<std::int32_t>& residues,
                  bool packed) {
  nn::Ankh3Model<cpu, float> model(c, 1);
  optim::AdamW<cpu, float> opt(model.params());
  objectives::MultiTask<cpu, float> loss({{"nlu", 1.0}, {"s2s", 1.0}}, residues);
  nn::Ankh3Model<cpu, float>::Cache cache;
  Tensor<cpu, float> logits;
  std::vector<samplers::PackedSeq2SeqBatch<cpu>> pk(batches.size());
  std::vector<samplers::Seq2SeqBatch<cpu>> pd(batches.size());
  for (std::size_t k = 0; k < batches.size(); ++k) {  // collated once, outside the timing (the peer does the same)
    std::vector<index_t> rows(batches[k].examples.size());
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<index_t>(i);
    if (packed) samplers::collate_packed<cpu>(batches[k].examples, rows, pk[k]);
    else samplers::collate<cpu>(batches[k].examples, rows, pd[k]);
  }
  auto step = [&](std::size_t k) {
    model.params().zero_grad();
    if (packed) {
      const auto& b = pk[k];
      logits.resize(Shape{1, b.dec.tokens(), c.vocab_size});
      model.forward_packed(b.enc_ids, b.enc, b.dec_ids, b.dec, logits, cache, nn::Pass::train(1));
      loss(logits, b.labels, b.dec, b.task, logits);
    } else {
      const auto& b = pd[k];
      logits.resize(Shape{b.rows(), b.dec_ids.dim(1), c.vocab_size});
      model.forward(b.enc_ids, b.enc_valid, b.dec_ids, logits, cache, nn::Pass::train(1), b.dec_valid);
      loss(logits, b.labels, b.task, logits);
    }
    model.backward(logits, cache);
    opt.step(1e-4);
  };
  std::vector<double> t;
  for (int p = -1; p < a.passes; ++p) {  // pass -1 warms up: sizes every workspace
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < batches.size(); ++k) step(k);
    if (p >= 0) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return time_passes(t);
}

int bench(const Args& a) {
  const data::Vocabulary vocab = data::Vocabulary::ankh3();
  const nn::T5Config c = config_of(a.width, vocab.size());
  const auto batches = real_batches(a, vocab);
  index_t real = 0, padded = 0, rows = 0;
  for (const auto& b : batches) real += b.real, padded += b.padded, rows += static_cast<index_t>(b.examples.size());
  std::printf("ankh3_real_step: d_model %lld, d_ff %lld, %lld heads, %lld+%lld layers, vocab %lld; %d threads, fp32, AdamW\n",
              (long long)c.d_model, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers, (long long)c.num_decoder_layers,
              (long long)c.vocab_size, a.threads);
  std::printf("data: %lld batches of Swiss-Prot sample (crop %lld, real-token budget %lld): %lld sequences, %lld real tokens, "
              "%lld padded (%.1f%% padding when padded to the longest)\n",
              (long long)batches.size(), (long long)a.max_length, (long long)a.budget, (long long)rows, (long long)real,
              (long long)padded, 100.0 * double(padded - real) / double(padded));
  const double flops = real_flops(c, batches);
  std::printf("model FLOPs per pass on the real tokens: %.1f G\n", flops * 1e-9);
  std::printf("| implementation | s/pass median (min-max), %d passes | real tokens/s | GFLOP/s (real tokens) | plm packed speed-up |\n"
              "|---|---:|---:|---:|---:|\n",
              a.passes);
  const Timing mine = plm_passes(a, c, batches, vocab.residue_ids(), true);
  auto row = [&](const char* name, const Timing& t) {
    std::printf("| %s | %.3f (%.3f-%.3f) | %.0f | %.1f | %.2fx |\n", name, t.median, t.min, t.max, double(real) / t.median,
                flops / t.median * 1e-9, t.median / mine.median);
    std::fflush(stdout);
  };
  row("plm, packed", mine);
  if (a.padded) row("plm, padded to the longest", plm_passes(a, c, batches, vocab.residue_ids(), false));
  if (!a.use_peer) return 0;
  const std::string file = a.keep.empty() ? (std::filesystem::temp_directory_path() / ("ankh3_real_step." + std::to_string(getpid()) + ".jsonl")).string() : a.keep;
  write_batches(batches, file);
  char args[1024];
  std::snprintf(args, sizeof args,
                " --d_model %lld --d_kv %lld --d_ff %lld --num_heads %lld --num_layers %lld --num_decoder_layers %lld"
                " --vocab_size %lld --num_buckets %lld --max_distance %lld --threads %d --passes %d --warmup_passes 1"
                " --feed_forward_proj %s --batches '%s'",
                (long long)c.d_model, (long long)c.d_kv, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)c.relative_attention_num_buckets,
                (long long)c.relative_attention_max_distance, a.threads, a.passes, c.feed_forward_proj.c_str(), file.c_str());
  for (const bool compiled : {false, true}) {
    if (compiled && !a.compile) break;
    const std::string out = bench_peer::peer_output(a.peer + args + (compiled ? " --compile" : ""), "ankh3_real_step");
    if (out.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')));
    const Timing t{j.at("median_s").get<double>(), j.at("min_s").get<double>(), j.at("max_s").get<double>()};
    row(compiled ? "HF transformers, torch.compile, padded" : "HF transformers, eager, padded", t);
    if (!compiled)
      std::printf("peer: torch %s, transformers %s, attention %s\n", j.value("torch", "?").c_str(), j.value("transformers", "?").c_str(),
                  j.value("attention", "?").c_str());
  }
  if (a.keep.empty()) std::filesystem::remove(file);
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
                   "usage: %s [--width 256|768] [--threads N] [--batches K] [--budget TOKENS] [--max-length L] [--passes P]\n"
                   "          [--peer CMD] [--no-peer] [--no-compile] [--no-padded] [--keep FILE]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    PLM_CHECK(a.threads > 0 && a.batches > 0 && a.budget > 0 && a.max_length > 0 && a.passes > 0,
              "ankh3_real_step: --threads, --batches, --budget, --max-length and --passes must be positive");
    set_num_threads(a.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    return bench(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
