// Embedding throughput of plm's ESM-2 (train::embed: tokenize, sort by length,
// batch under a token budget, encode in eval mode, mean over the residue
// tokens of the final layer) next to transformers' EsmModel (PyTorch) with the
// same config, weights, proteins, batching and thread count, measured in the
// same run.
//
//   esm_embed [--config esm2-8m|esm2-35m] [--fasta FILE] [--proteins N] [--max-length R]
//             [--token-budget T] [--threads N] [--reps R] [--fixed-batch B] [--attn sdpa|eager]
//             [--peer "python3 benchmarks/esm_embed_hf.py"] [--no-peer]
//
// The proteins are the first N records of the FASTA file (by default the
// bundled Swiss-Prot sample), so the lengths are a real distribution; those
// longer than R residues are cut to their first R. The model is randomly
// initialised (the throughput does not depend on the weights); plm saves it
// with io::save_esm and the peer loads that checkpoint, so both compute the
// same embeddings and the program prints how far apart they are.
#include <plm/data/fasta.hpp>
#include <plm/data/tokenizer.hpp>
#include <plm/io/esm_checkpoint.hpp>
#include <plm/nn/esm.hpp>
#include <plm/plm.hpp>
#include <plm/train/embed.hpp>

#include <nlohmann/json.hpp>

#include "peer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
namespace fs = std::filesystem;

namespace {

struct Args {
  std::string config = "esm2-8m", fasta = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample.fasta.gz";
  std::string peer = "python3 benchmarks/esm_embed_hf.py", attn = "sdpa";
  std::size_t proteins = 256, max_length = 1022;
  long token_budget = 8192, fixed_batch = 0;
  int threads = 2, reps = 3;
  bool use_peer = true;
};

nn::EsmConfig config_by_name(const std::string& name) {
  if (name == "esm2-8m") return nn::EsmConfig::esm2_8m();
  if (name == "esm2-35m") return nn::EsmConfig::esm2_35m();
  PLM_FAIL("esm_embed: unknown config '", name, "' (esm2-8m, esm2-35m)");
}

// ESM-2's vocab.txt (the alphabet of EsmTokenizer: <cls> 0, <pad> 1, <eos> 2, <unk> 3, ..., <mask> 32).
void write_esm2_vocab(const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  for (const char* t : {"<cls>", "<pad>", "<eos>", "<unk>"}) f << t << '\n';
  for (const char c : std::string("LAGVSERTIDPKQNFYMHWCXBUZO.-")) f << c << '\n';
  f << "<null_1>\n<mask>\n";
  PLM_CHECK(f.good(), "esm_embed: cannot write ", path);
}

// The batches train::embed forms: rows sorted by token count (stable), each
// batch grown while (rows x its longest row) stays within the budget.
struct Batching {
  std::size_t batches = 0;
  double padded_tokens = 0;
};
Batching budget_batches(const std::vector<std::size_t>& tokens, long budget) {
  std::vector<std::size_t> order(tokens.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return tokens[a] < tokens[b]; });
  Batching r;
  for (std::size_t s = 0; s < order.size();) {
    std::size_t e = s + 1;
    while (e < order.size() && static_cast<long>((e - s + 1) * tokens[order[e]]) <= budget) ++e;
    ++r.batches;
    r.padded_tokens += static_cast<double>((e - s) * tokens[order[e - 1]]);
    s = e;
  }
  return r;
}

struct Timing {
  double median = 0, min = 0, max = 0;
};
// Peak resident memory of this process so far, in MiB.
double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

Timing summarize(const std::vector<double>& t) {
  return {bench_peer::median(t), *std::min_element(t.begin(), t.end()), *std::max_element(t.begin(), t.end())};
}

int bench(const Args& a) {
  const nn::EsmConfig c = config_by_name(a.config);
  PLM_CHECK(a.proteins >= 1 && a.max_length >= 1 && a.token_budget >= 1, "esm_embed: --proteins, --max-length and --token-budget must be positive");

  // The proteins: the first N records, cut to max_length residues.
  std::vector<std::string> seqs;
  std::vector<std::size_t> lengths;
  std::size_t truncated = 0;
  {
    data::FastaReader reader(a.fasta);
    data::FastaRecord r;
    while (seqs.size() < a.proteins && reader.next(r)) {
      lengths.push_back(r.sequence.size());
      if (r.sequence.size() > a.max_length) {
        r.sequence.resize(a.max_length);
        ++truncated;
      }
      seqs.push_back(r.sequence);
    }
  }
  PLM_CHECK(!seqs.empty(), "esm_embed: no protein in ", a.fasta);
  const std::size_t N = seqs.size();
  std::vector<std::size_t> sorted = lengths, tokens;
  std::sort(sorted.begin(), sorted.end());
  double residues = 0;
  for (const auto& s : seqs) {
    residues += static_cast<double>(s.size());
    tokens.push_back(s.size() + 2);  // <cls> residues <eos>
  }
  const Batching batching = budget_batches(tokens, a.token_budget);

  const fs::path dir = fs::temp_directory_path() / ("plm_esm_embed." + std::to_string(static_cast<long long>(getpid())));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};
  const std::string vocab = (dir / "vocab.txt").string();
  write_esm2_vocab(vocab);
  const data::Tokenizer tok = data::Tokenizer::from_esm_vocab(vocab);

  nn::EsmModel<cpu, float> model(c, 1);
  train::EmbedOptions o;
  o.token_budget = a.token_budget;
  o.layers = {-1};
  train::Embeddings emb = train::embed(model, tok, seqs, o);  // warm-up
  std::vector<double> t;
  for (int r = 0; r < a.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    emb = train::embed(model, tok, seqs, o);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const Timing plm_t = summarize(t);
  const double plm_rss = peak_rss_mib();

  std::printf("config %s: %lld layers, d %lld, %lld heads, ffn %lld; %d threads, fp32, random weights\n", a.config.c_str(),
              (long long)c.num_hidden_layers, (long long)c.hidden_size, (long long)c.num_attention_heads, (long long)c.intermediate_size,
              a.threads);
  std::printf("proteins: the first %zu of %s; residues min %zu, median %zu, max %zu; %zu cut to %zu residues; %.0f residues in all\n", N,
              fs::path(a.fasta).filename().string().c_str(), sorted.front(), sorted[sorted.size() / 2], sorted.back(), truncated, a.max_length,
              residues);
  std::printf("batches: %zu, sorted by length, at most %ld padded tokens each; %.0f padded tokens (%.1f%% of them <cls>/residue/<eos>)\n",
              batching.batches, a.token_budget, batching.padded_tokens,
              100.0 * (residues + 2.0 * static_cast<double>(N)) / batching.padded_tokens);
  std::printf("| implementation | s per pass (median of %d) | min-max s | sequences/s | residues/s |\n|---|---:|---:|---:|---:|\n", a.reps);
  const auto row = [&](const std::string& name, const Timing& m) {
    std::printf("| %s | %.3f | %.3f-%.3f | %.1f | %.0f |\n", name.c_str(), m.median, m.min, m.max, double(N) / m.median, residues / m.median);
  };
  row("plm train::embed", plm_t);
  if (!a.use_peer) {
    std::printf("peak resident memory: plm %.0f MiB\n", plm_rss);
    return 0;
  }

  // The peer: the same checkpoint, proteins (after the cut) and budget.
  const fs::path model_dir = dir / "model";
  io::save_esm(model, model_dir.string());
  fs::copy_file(vocab, model_dir / "vocab.txt");
  const std::string seq_file = (dir / "sequences.txt").string(), emb_file = (dir / "plm_mean.f32").string();
  {
    std::ofstream f(seq_file, std::ios::binary);
    for (const auto& s : seqs) f << s << '\n';
    PLM_CHECK(f.good(), "esm_embed: cannot write ", seq_file);
    std::ofstream e(emb_file, std::ios::binary);
    const Tensor<cpu, float>& m = emb.mean();
    e.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.numel() * sizeof(float)));
    PLM_CHECK(e.good(), "esm_embed: cannot write ", emb_file);
  }
  const std::string cmd = a.peer + " --model " + model_dir.string() + " --sequences " + seq_file + " --plm_embeddings " + emb_file +
                          " --token_budget " + std::to_string(a.token_budget) + " --threads " + std::to_string(a.threads) + " --reps " +
                          std::to_string(a.reps) + " --warmup 1 --fixed_batch " + std::to_string(a.fixed_batch) + " --attn " + a.attn;
  const std::string out = bench_peer::peer_output(cmd, "esm_embed");
  if (out.empty()) return 1;
  const auto line = out.rfind("{\"median_s\"");
  const nlohmann::json j = nlohmann::json::parse(out.substr(line == std::string::npos ? 0 : line));
  const auto timing = [&](const char* key) {
    const auto v = j.at(key).get<std::vector<double>>();
    return summarize(v);
  };
  const Timing hf_t = timing("times");
  const std::string attn = j.value("attn", std::string("?"));
  std::printf("| HF transformers EsmModel (PyTorch, %s attention), the same batches | %.3f | %.3f-%.3f | %.1f | %.0f |\n", attn.c_str(),
              hf_t.median, hf_t.min, hf_t.max, double(N) / hf_t.median, residues / hf_t.median);
  if (a.fixed_batch > 0 && j.contains("fixed_times"))
    row("HF, fixed batches of " + std::to_string(a.fixed_batch) + " in file order, padded to the longest", timing("fixed_times"));
  std::printf("peer: torch %s, transformers %s; its tokenizer (EsmTokenizer) took %.3f s of its pass\n",
              j.value("torch", std::string("?")).c_str(), j.value("transformers", std::string("?")).c_str(), j.value("tokenize_s", 0.0));
  std::printf("speed ratio plm / HF (sequences/s): %.2fx\n", hf_t.median / plm_t.median);
  std::printf("peak resident memory: plm %.0f MiB, HF process %.0f MiB\n", plm_rss, j.value("peak_rss_mib", 0.0));
  if (j.contains("max_rel_diff"))
    std::printf("mean embeddings, plm vs HF: max over proteins of max|plm - HF| / max|HF| = %.2e\n", j.at("max_rel_diff").get<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--config") a.config = next();
    else if (arg == "--fasta") a.fasta = next();
    else if (arg == "--proteins") a.proteins = static_cast<std::size_t>(std::max(1LL, std::atoll(next().c_str())));
    else if (arg == "--max-length") a.max_length = static_cast<std::size_t>(std::max(1LL, std::atoll(next().c_str())));
    else if (arg == "--token-budget") a.token_budget = std::max(1L, std::atol(next().c_str()));
    else if (arg == "--threads") a.threads = std::atoi(next().c_str());
    else if (arg == "--reps") a.reps = std::max(1, std::atoi(next().c_str()));
    else if (arg == "--fixed-batch") a.fixed_batch = std::max(0L, std::atol(next().c_str()));
    else if (arg == "--attn") a.attn = next();
    else if (arg == "--peer") a.peer = next();
    else if (arg == "--no-peer") a.use_peer = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--config esm2-8m|esm2-35m] [--fasta FILE] [--proteins N] [--max-length R] [--token-budget T]\n"
                   "          [--threads N] [--reps R] [--fixed-batch B] [--attn sdpa|eager] [--peer CMD] [--no-peer]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    PLM_CHECK(a.attn == "sdpa" || a.attn == "eager", "esm_embed: --attn must be sdpa or eager, got '", a.attn, "'");
    set_num_threads(a.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    return bench(a);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "esm_embed: %s\n", e.what());
    return 1;
  }
}
