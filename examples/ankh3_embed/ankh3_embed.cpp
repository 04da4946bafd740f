// ankh3_embed: per-protein and per-residue embeddings from a T5 / Ankh or an ESM-2 encoder.
//
//   ankh3_embed --model ankh3_run/model --fasta proteins.fasta --out embeddings.safetensors [--per-residue]
//
// Each protein is tokenized by the model directory's own tokenizer files
// (tokenizer.json or spiece.model; --vocab overrides), as the model card's
// Python does (--tokenize words: tok(list(seq), is_split_into_words=True), the
// Ankh cards; string: tok(seq)), after a task prefix ([NLU] or [S2S] for Ankh3;
// by default [NLU] when the vocabulary has task tokens, none otherwise: Ankh,
// ESM), and run through the encoder in eval mode in
// length-sorted batches (train/embed.hpp). The output is one safetensors file:
//   mean             (N, d_model)  float32, mean of the encoder states over the
//                                  tokens that hold a residue (no prefix, eos or lone "▁")
//   eos              (N, d_model)  with --eos, the state of the final eos token
//   residues.<id>    (L, d_model)  with --per-residue, the state of each such token
// of the final-normed output, or of each of --layers (then named layer<k>.mean, ...),
// and metadata "ids" (a JSON list of the record ids, in row order of `mean`).
// Duplicate record ids are refused before any work; proteins over --max-length
// are refused, cut (--long truncate) or embedded in overlapping windows (--long windows).
#include <CLI/CLI.hpp>

#include <plm/data/fasta.hpp>
#include <plm/data/tokenizer.hpp>
#include <plm/io/hf_config.hpp>
#include <plm/io/safetensors.hpp>
#include <plm/io/backbone.hpp>
#include <plm/plm.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/embed.hpp>
#include <plm/train/progress.hpp>
#include <plm/train/tokenizer_options.hpp>

#include <algorithm>
#include <map>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

using namespace plm;

namespace {

struct Options {
  std::string model, fasta, out = "embeddings.safetensors", prefix = "auto", long_policy = "error";
  std::vector<int> layers = {-1};
  bool per_residue = false, eos = false, overwrite = false;
  train::TokenizerOptions tokenizer;
  std::size_t max_length = 1024;
  long overlap = -1;  // -1: a quarter of max_length
  long token_budget = 8192;
  int threads = 0;
  train::DeviceOptions device;
};

template <class Model>
int embed(const Options& o) {
  const Model model = io::load_encoder<Model>(o.model);
  const index_t C = model.d_model();
  // The directory's own tokenizer files decide the ids; --vocab overrides them.
  const data::Tokenizer tok = o.tokenizer.load(o.model);
  const data::Vocabulary& vocab = tok.vocabulary();
  PLM_CHECK(vocab.size() <= model.vocab_size(), tok.source(), ": the tokenizer has ", vocab.size(),
            " tokens, more than the model's embedding table of ", model.vocab_size());
  train::EmbedOptions eo;
  eo.token_budget = o.token_budget;
  eo.per_residue = o.per_residue;
  eo.eos = o.eos;
  eo.layers = o.layers;
  eo.style = o.tokenizer.style();
  eo.max_length = o.max_length;
  eo.long_policy = train::parse_long_policy(o.long_policy);
  eo.overlap = o.overlap < 0 ? o.max_length / 4 : static_cast<std::size_t>(o.overlap);
  PLM_CHECK(eo.long_policy == train::LongPolicy::error || o.max_length > 0, "--long ", o.long_policy, " needs a --max-length above 0");
  PLM_CHECK(eo.long_policy != train::LongPolicy::windows || eo.overlap < o.max_length, "--window-overlap ", eo.overlap,
            " must be smaller than --max-length ", o.max_length);
  const std::string prefix = o.prefix != "auto" ? o.prefix : vocab.has_task_tokens() ? "nlu" : "none";
  if (prefix == "nlu") eo.prefix = vocab.nlu_id();
  else if (prefix == "s2s") eo.prefix = vocab.s2s_id();
  else PLM_CHECK(prefix == "none", "--prefix: unknown '", prefix, "' (auto, nlu, s2s, none)");
  const int L = static_cast<int>(model.num_encoder_layers());
  for (const int k : o.layers)
    PLM_CHECK(k >= -(L + 1) && k <= L, "--layers: ", k, " is outside this encoder's hidden states 0..", L, " (or -", L + 1, "..-1)");

  // Every record is read and checked before any work: duplicate ids would make rows ambiguous.
  data::FastaOptions fo;
  fo.empty = data::EmptyPolicy::error;
  std::vector<std::string> ids, sequences;
  {
    data::FastaReader reader(o.fasta, fo);
    data::FastaRecord r;
    std::map<std::string, std::size_t> seen;
    while (reader.next(r)) {
      const auto [it, fresh] = seen.emplace(r.id, r.header_line);
      PLM_CHECK(fresh, o.fasta, ":", r.header_line, ": duplicate record id '", r.id, "' (first at line ", it->second, ")");
      PLM_CHECK(eo.long_policy != train::LongPolicy::error || o.max_length == 0 || r.sequence.size() <= o.max_length, o.fasta, ":",
                r.header_line, ": '", r.id, "' has ", r.sequence.size(), " residues, more than --max-length ", o.max_length,
                " (--long truncate or --long windows embeds it)");
      ids.push_back(r.id);
      sequences.push_back(o.tokenizer.prepare(r.sequence));
    }
  }
  PLM_CHECK(!ids.empty(), o.fasta, ": no sequences");
  std::fprintf(stderr, "ankh3_embed: tokenizer %s (%s style)\n", tok.source().c_str(), o.tokenizer.tokenize.c_str());

  train::ProgressBar bar(static_cast<std::int64_t>(ids.size()), "res/s");
  const train::Embeddings e = train::embed(model, tok, sequences, eo, ids, &bar);
  bar.finish();
  if (e.truncated) std::fprintf(stderr, "ankh3_embed: %zu proteins cut to their first %zu residues\n", e.truncated, o.max_length);
  if (e.windowed)
    std::fprintf(stderr, "ankh3_embed: %zu proteins embedded in windows of %zu residues (overlap %zu)\n", e.windowed, o.max_length,
                 eo.overlap);

  // One layer: mean, eos, residues.<id>; several: layer<k>.mean, ...
  io::SafetensorsWriter w;
  for (const train::LayerEmbeddings& le : e.layers) {
    const std::string p = e.layers.size() == 1 ? std::string() : "layer" + std::to_string(le.layer) + ".";
    w.add<float>(p + "mean", le.mean.cview());
    if (o.eos) w.add<float>(p + "eos", le.eos.cview());
    for (std::size_t i = 0; i < le.per_residue.size(); ++i) w.add<float>(p + "residues." + ids[i], le.per_residue[i].cview());
  }
  w.set_metadata("ids", nlohmann::json(ids).dump());
  w.set_metadata("layers", nlohmann::json(o.layers).dump());
  w.set_metadata("prefix", prefix);
  w.set_metadata("tokenize", o.tokenizer.tokenize);
  w.set_metadata("long", o.long_policy);
  w.write(o.out);
  std::fprintf(stderr, "ankh3_embed: %zu proteins, d_model %ld -> %s\n", ids.size(), long(C), o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Per-protein (mean) and per-residue embeddings from a T5 / Ankh or ESM-2 encoder"};
  app.option_defaults()->always_capture_default();
  using namespace train::cli;  // every value is checked while parsing; errors name the option
  app.add_option("--model", o.model, "Hugging Face T5 / Ankh or ESM checkpoint directory (config.json + model.safetensors)")->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--fasta", o.fasta, "proteins to embed (plain or .gz)")->required()->check(CLI::ExistingFile);
  app.add_option("--out", o.out, "output safetensors file");
  app.add_flag("--overwrite", o.overwrite, "replace --out if it exists");
  train::add_tokenizer_options(app, o.tokenizer);
  app.add_option("--prefix", o.prefix, "task token before the residues: nlu, s2s, none, or auto (nlu when the vocabulary has task tokens)")
      ->check(one_of({"auto", "nlu", "s2s", "none"}));
  app.add_flag("--per-residue", o.per_residue, "also write every residue's embedding");
  app.add_flag("--eos", o.eos, "also write the state of the final eos token");
  app.add_option("--layers", o.layers,
                 "hidden states to write, numbered as transformers' hidden_states: 0 = embeddings, k = layer k's output, "
                 "-1 = the final-normed output")
      ->delimiter(',');
  app.add_option("--max-length", o.max_length, "residues per pass (0 = no limit); longer proteins follow --long")->check(non_negative());
  app.add_option("--long", o.long_policy, "proteins over --max-length: error, truncate (first residues) or windows (overlapping)")
      ->check(one_of({"error", "truncate", "windows"}));
  app.add_option("--window-overlap", o.overlap, "--long windows: residues shared by neighbouring windows (default: a quarter of --max-length)")
      ->check(non_negative());
  app.add_option("--token-budget", o.token_budget, "padded tokens per batch")->check(at_least(1));
  app.add_option("--threads", o.threads, "CPU threads (0 = all)")->check(non_negative());
  train::add_device_options(app, o.device);
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) set_num_threads(o.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    io::check_new_output(o.out, o.overwrite, "--out");  // before the work, not after
    return train::run_on_device(o.device, [&](auto backend) {
      return io::with_encoder_checkpoint_type<decltype(backend)>(o.model, [&](auto model) { return embed<typename decltype(model)::type>(o); });
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nankh3_embed: %s\n", e.what());
    return 1;
  }
}
