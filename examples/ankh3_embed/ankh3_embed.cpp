// ankh3_embed: per-protein and per-residue embeddings from a T5 encoder.
//
//   ankh3_embed --model ankh3_run/model --fasta proteins.fasta --out embeddings.safetensors [--per-residue]
//
// Each protein is encoded as [prefix] residues </s> (Ankh3 uses the [NLU] or
// [S2S] prefix; Ankh has none) in length-sorted batches. The output is one
// safetensors file:
//   mean             (N, d_model)  float32, mean of the final encoder states over the residues
//   residues.<id>    (L, d_model)  with --per-residue, the state of every residue
// and metadata "ids" (a JSON list of the record ids, in row order of `mean`).
#include <CLI/CLI.hpp>

#include <plm/data/fasta.hpp>
#include <plm/data/vocabulary.hpp>
#include <plm/io/hf_config.hpp>
#include <plm/io/safetensors.hpp>
#include <plm/io/t5_checkpoint.hpp>
#include <plm/nn/t5.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/batching.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/progress.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

using namespace plm;

namespace {

struct Options {
  std::string model, fasta, out = "embeddings.safetensors", vocab = "ankh3", prefix = "nlu";
  bool per_residue = false, overwrite = false;
  std::size_t max_length = 1024;
  long token_budget = 8192;
  int threads = 0;
  train::DeviceOptions device;
};

template <class Model>
int embed(const Options& o) {
  const Model model = io::load_t5_encoder<Model>(o.model);
  const index_t C = model.config().d_model;
  const data::Vocabulary vocab = data::Vocabulary::load(o.vocab);
  PLM_CHECK(vocab.size() <= model.config().vocab_size, "--vocab has ", vocab.size(), " tokens, the model only ",
            model.config().vocab_size);
  std::int32_t prefix = -1;
  if (o.prefix == "nlu") prefix = vocab.nlu_id();
  else if (o.prefix == "s2s") prefix = vocab.s2s_id();
  else PLM_CHECK(o.prefix == "none", "--prefix: unknown '", o.prefix, "' (nlu, s2s, none)");

  // Proteins longer than max_length are refused rather than silently cropped:
  // an embedding of part of a protein would be mistaken for the whole.
  data::FastaOptions fo;
  fo.max_length = o.max_length;
  fo.too_long = data::TooLongPolicy::error;
  fo.empty = data::EmptyPolicy::error;
  std::vector<std::string> ids;
  std::vector<std::vector<std::int32_t>> tokens;
  {
    data::FastaReader reader(o.fasta, fo);
    data::FastaRecord r;
    data::EncodeOptions eo;
    while (reader.next(r)) {
      std::vector<std::int32_t> t;
      if (prefix >= 0) t.push_back(prefix);
      vocab.encode_into(r.sequence, t, eo, r.id);
      ids.push_back(r.id);
      tokens.push_back(std::move(t));
    }
  }
  PLM_CHECK(!ids.empty(), o.fasta, ": no sequences");
  const index_t first = prefix >= 0 ? 1 : 0;  // residues are tokens [first, len - 1): no prefix, no eos

  std::vector<index_t> order(ids.size());
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return tokens[a].size() < tokens[b].size(); });
  Tensor<cpu, float> mean(Shape{static_cast<index_t>(ids.size()), C});
  std::vector<Tensor<cpu, float>> per_residue(o.per_residue ? ids.size() : 0);
  typename Model::Cache cache;
  using B = typename Model::backend;
  Tensor<B, std::int32_t> batch_ids;
  Tensor<B, std::uint8_t> valid;
  Tensor<B, float> out;
  std::vector<float> host_out;
  train::ProgressBar bar(static_cast<std::int64_t>(ids.size()), "res/s");
  for (std::size_t s = 0; s < order.size();) {
    // a batch of similar lengths within the token budget (sorted: the last is the longest)
    std::size_t e = s + 1;
    while (e < order.size() && static_cast<long>((e - s + 1) * tokens[static_cast<std::size_t>(order[e])].size()) <= o.token_budget) ++e;
    const std::vector<index_t> rows(order.begin() + static_cast<long>(s), order.begin() + static_cast<long>(e));
    samplers::pad_rows<B>(tokens, rows, vocab.pad_id(), batch_ids, valid);
    const index_t Bn = batch_ids.dim(0), S = batch_ids.dim(1);
    double residues = 0;
    for (index_t r : rows) residues += double(tokens[static_cast<std::size_t>(r)].size());
    out.resize(Shape{Bn, S, C});
    model.encode(batch_ids.cview(), valid.cview(), out.view(), cache);
    host_out.resize(static_cast<std::size_t>(out.numel()));
    download(out.cview(), host_out.data());
    for (index_t b = 0; b < Bn; ++b) {
      const auto i = static_cast<std::size_t>(order[s + static_cast<std::size_t>(b)]);
      const index_t L = static_cast<index_t>(tokens[i].size()) - 1 - first;
      float* m = mean.data() + static_cast<index_t>(i) * C;
      std::fill(m, m + C, 0.0f);
      if (o.per_residue) per_residue[i] = Tensor<cpu, float>(Shape{L, C});
      for (index_t t = 0; t < L; ++t) {
        const float* h = host_out.data() + (b * S + first + t) * C;
        for (index_t c = 0; c < C; ++c) m[c] += h[c] / static_cast<float>(L);
        if (o.per_residue) std::copy(h, h + C, per_residue[i].data() + t * C);
      }
    }
    s = e;
    bar.update(static_cast<std::int64_t>(s), {}, residues);
  }
  bar.finish();

  io::SafetensorsWriter w;
  w.add<float>("mean", mean.cview());
  for (std::size_t i = 0; i < per_residue.size(); ++i) w.add<float>("residues." + ids[i], per_residue[i].cview());
  w.set_metadata("ids", nlohmann::json(ids).dump());
  w.set_metadata("prefix", o.prefix);
  w.write(o.out);
  std::fprintf(stderr, "ankh3_embed: %zu proteins, d_model %ld -> %s\n", ids.size(), long(C), o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Per-protein (mean) and per-residue embeddings from a T5 / Ankh encoder"};
  app.option_defaults()->always_capture_default();
  using namespace train::cli;  // every value is checked while parsing; errors name the option
  app.add_option("--model", o.model, "Hugging Face T5 checkpoint directory (config.json + model.safetensors)")->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--fasta", o.fasta, "proteins to embed (plain or .gz)")->required()->check(CLI::ExistingFile);
  app.add_option("--out", o.out, "output safetensors file");
  app.add_flag("--overwrite", o.overwrite, "replace --out if it exists");
  app.add_option("--vocab", o.vocab, "ankh3, ankh, or a tokenizer.json / vocabulary file")->check(one_of_or_file({"ankh3", "ankh"}));
  app.add_option("--prefix", o.prefix, "task token before the residues: nlu, s2s or none")->check(one_of({"nlu", "s2s", "none"}));
  app.add_flag("--per-residue", o.per_residue, "also write every residue's embedding");
  app.add_option("--max-length", o.max_length, "longer proteins are an error (0 = no limit)")->check(non_negative());
  app.add_option("--token-budget", o.token_budget, "padded tokens per batch")->check(at_least(1));
  app.add_option("--threads", o.threads, "CPU threads (0 = all)")->check(non_negative());
  train::add_device_options(app, o.device);
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) set_num_threads(o.threads);
    io::check_new_output(o.out, o.overwrite, "--out");  // before the work, not after
    return train::run_on_device(o.device, [&](auto backend) {
      return io::with_t5_checkpoint_type<decltype(backend)>(o.model, [&](auto model) { return embed<typename decltype(model)::type>(o); });
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nankh3_embed: %s\n", e.what());
    return 1;
  }
}
