// ankh3_complete: completes proteins from their first part with a trained
// Ankh3-style encoder-decoder ([S2S] sequence completion).
//
//   ankh3_complete --model ankh3_run/model --fasta proteins.fasta [--fraction 0.5]
//                  [--strategy greedy|top-k|top-p|beam] [--top-k 10] [--top-p 0.9]
//                  [--temperature 1] [--beam 4] [--out completions.fasta]
//
// For each protein the encoder sees [S2S] + the first `fraction` of its
// residues as the model directory's tokenizer encodes them (--vocab
// overrides it; --tokenize words|string as the model card calls it), with the
// tokenizer's </s>; the decoder writes the rest. The program prints the
// completion next to the true rest with their identity (share of equal
// residues position by position) and, with --out, writes the completed
// proteins as FASTA.
// GCC 12 at -O3 reports a null memmove destination (-Wnonnull) inside
// std::vector's copy of the banned-token list, after inlining: a known false
// positive of that compiler (the list is never null when it has elements).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wnonnull"
#endif
#include <CLI/CLI.hpp>

#include <plm/data/fasta.hpp>
#include <plm/data/tokenizer.hpp>
#include <plm/io/hf_config.hpp>
#include <plm/io/t5_checkpoint.hpp>
#include <plm/nn/t5.hpp>
#include <plm/plm.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/tokenizer_options.hpp>
#include <plm/samplers/decoding.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace plm;

namespace {

struct Options {
  std::string model, fasta, out, strategy = "greedy";
  double fraction = 0.5, temperature = 1.0, top_p = 0.9, length_penalty = 1.0;
  long top_k = 10, beam = 4, count = 10, extra = 16;
  std::uint64_t seed = 1;
  int threads = 0;
  bool overwrite = false;
  train::TokenizerOptions tokenizer;
  train::DeviceOptions device;
};

template <class Model>
int complete(const Options& o) {
  const Model model = io::load_t5<Model>(o.model);
  // The directory's own tokenizer files decide the ids; --vocab overrides them.
  const data::Tokenizer tok = o.tokenizer.load(o.model);
  const data::Vocabulary& vocab = tok.vocabulary();
  PLM_CHECK(vocab.size() <= model.config().vocab_size, tok.source(), ": the tokenizer has ", vocab.size(),
            " tokens, more than the model's embedding table of ", model.config().vocab_size);
  const data::InputStyle style = o.tokenizer.style();
  PLM_CHECK(o.fraction > 0 && o.fraction < 1, "--fraction ", o.fraction, " must be in (0, 1)");
  // Only residues may be generated: padding, unk, task tokens and sentinels are banned.
  std::vector<std::int32_t> banned;
  for (std::int32_t id = 0; id < model.config().vocab_size; ++id)
    if (id != vocab.eos_id() && (id >= vocab.size() || !vocab.is_residue(id))) banned.push_back(id);

  // Written to a temporary file and renamed over --out only when complete: a failure loses nothing.
  std::unique_ptr<io::AtomicFile> out;
  if (!o.out.empty()) out = std::make_unique<io::AtomicFile>(o.out);
  data::FastaReader reader(o.fasta, data::FastaOptions{});
  data::FastaRecord r;
  double identity_sum = 0;
  long n = 0;
  while ((o.count <= 0 || n < o.count) && reader.next(r)) {
    // The encoder sees [S2S] and the first k residues as the tokenizer encodes them.
    const std::string residues = o.tokenizer.prepare(r.sequence);
    if (residues.size() < 2) continue;
    const std::size_t k = std::clamp<std::size_t>(static_cast<std::size_t>(std::llround(double(residues.size()) * o.fraction)), 1,
                                                  residues.size() - 1);
    std::vector<std::int32_t> input = {vocab.s2s_id()};
    const data::Encoding head = tok.encode(std::string_view(residues).substr(0, k), style, r.id);
    input.insert(input.end(), head.ids.begin(), head.ids.end());
    Tensor<typename Model::backend, std::int32_t> ids(Shape{1, static_cast<index_t>(input.size())});
    upload(input.data(), ids.view());
    const index_t want = static_cast<index_t>(residues.size() - k);
    std::vector<std::int32_t> gen;
    if (o.strategy == "beam") {
      samplers::BeamOptions bo;
      bo.beam_width = o.beam, bo.max_new_tokens = want + o.extra, bo.length_penalty = o.length_penalty;
      bo.eos_id = vocab.eos_id(), bo.pad_id = vocab.pad_id(), bo.decoder_start_id = model.config().decoder_start_token_id;
      bo.banned = banned;
      gen = samplers::beam_search(model, ids.cview(), {}, bo)[0][0].tokens;
    } else {
      samplers::GenerateOptions go;
      go.max_new_tokens = want + o.extra, go.eos_id = vocab.eos_id(), go.pad_id = vocab.pad_id();
      go.decoder_start_id = model.config().decoder_start_token_id, go.banned = banned, go.seed = o.seed;
      go.streams = {static_cast<std::uint64_t>(n)};
      if (o.strategy != "greedy") {
        go.strategy = samplers::Strategy::sample;
        go.sampling.temperature = o.temperature;
        if (o.strategy == "top-k") go.sampling.top_k = o.top_k;
        else if (o.strategy == "top-p") go.sampling.top_p = o.top_p;
        else PLM_CHECK(o.strategy == "sample", "--strategy: unknown '", o.strategy, "' (greedy, sample, top-k, top-p, beam)");
      }
      gen = samplers::generate(model, ids.cview(), {}, go)[0];
    }
    if (!gen.empty() && gen.back() == vocab.eos_id()) gen.pop_back();
    const std::string prefix = residues.substr(0, k), truth = residues.substr(k), made = vocab.decode(gen);
    std::size_t same = 0;
    for (std::size_t i = 0; i < made.size() && i < truth.size(); ++i) same += made[i] == truth[i];
    const double identity = double(same) / double(want);
    identity_sum += identity;
    ++n;
    std::printf(">%s  prefix %zu, true rest %zu, completion %zu residues, identity %.3f\n  prefix     %s\n  true rest  %s\n  completion %s\n",
                r.id.c_str(), k, truth.size(), made.size(), identity, prefix.c_str(), truth.c_str(), made.c_str());
    if (out) out->write('>' + r.id + " completed from " + std::to_string(k) + " residues (" + o.strategy + ")\n" + prefix + made + '\n');
  }
  PLM_CHECK(n > 0, o.fasta, ": no sequences to complete");
  std::printf("%ld proteins, mean identity of the completion to the true rest: %.3f\n", n, identity_sum / double(n));
  if (out) out->commit();
  io::flush_stdout();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Complete proteins from their first part with an Ankh3-style encoder-decoder ([S2S])"};
  app.option_defaults()->always_capture_default();
  using namespace train::cli;  // every value is checked while parsing; errors name the option
  app.add_option("--model", o.model, "Hugging Face T5 checkpoint directory (config.json + model.safetensors)")->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--fasta", o.fasta, "proteins (plain or .gz); each is cut at --fraction and completed")->required()
      ->check(CLI::ExistingFile);
  app.add_option("--count", o.count, "complete at most this many proteins (0 = all)")->check(non_negative());
  app.add_option("--fraction", o.fraction, "share of the residues the encoder sees")->check(fraction());
  app.add_option("--strategy", o.strategy, "greedy, sample, top-k, top-p or beam")->check(one_of({"greedy", "sample", "top-k", "top-p", "beam"}));
  app.add_option("--temperature", o.temperature, "sampling temperature (> 0)")->check(positive());
  app.add_option("--top-k", o.top_k, "tokens kept by top-k (0 = no limit)")->check(non_negative());
  app.add_option("--top-p", o.top_p, "probability mass kept by top-p, in (0, 1]")->check(fraction(Interval::open_closed));
  app.add_option("--beam", o.beam, "beam width")->check(at_least(1));
  app.add_option("--length-penalty", o.length_penalty, "beam score = log-prob / length^penalty")->check(finite());
  app.add_option("--extra", o.extra, "tokens allowed beyond the true rest's length")->check(non_negative());
  train::add_tokenizer_options(app, o.tokenizer);
  app.add_option("--out", o.out, "write the completed proteins as FASTA");
  app.add_flag("--overwrite", o.overwrite, "replace --out if it exists");
  app.add_option("--seed", o.seed, "sampling seed")->check(non_negative());
  app.add_option("--threads", o.threads, "CPU threads (0 = all)")->check(non_negative());
  train::add_device_options(app, o.device);
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) set_num_threads(o.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty()) std::fprintf(stderr, "%s\n", w.c_str());
    if (!o.out.empty()) io::check_new_output(o.out, o.overwrite, "--out");  // before the work, not after
    return train::run_on_device(o.device, [&](auto backend) {
      return io::with_t5_checkpoint_type<decltype(backend)>(o.model, [&](auto model) { return complete<typename decltype(model)::type>(o); });
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ankh3_complete: %s\n", e.what());
    return 1;
  }
}
