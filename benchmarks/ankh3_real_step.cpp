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

#include "real_batches.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
using bench_real::Options;
using bench_real::Timing;

namespace {

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
std::vector<Batch> real_batches(const Options& a, const data::Vocabulary& vocab) {
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

// Median (min, max) seconds of one pass of plm over the batches, packed or padded.
Timing plm_passes(const Options& a, const nn::T5Config& c, const std::vector<Batch>& batches, const std::vector<std::int32_t>& residues,
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
  return bench_real::time_passes(a.passes, batches.size(), step);
}

int bench(const Options& a) {
  const data::Vocabulary vocab = data::Vocabulary::ankh3();
  const nn::T5Config c = bench_real::ankh3_config(a.width, vocab.size());
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
  bench_real::Table table(double(real), real_flops(c, batches), a.passes);
  table.row("plm, packed", plm_passes(a, c, batches, vocab.residue_ids(), true));
  if (a.padded) table.row("plm, padded to the longest", plm_passes(a, c, batches, vocab.residue_ids(), false));
  if (!a.use_peer) return 0;
  char args[1024];
  std::snprintf(args, sizeof args,
                " --d_model %lld --d_kv %lld --d_ff %lld --num_heads %lld --num_layers %lld --num_decoder_layers %lld"
                " --vocab_size %lld --num_buckets %lld --max_distance %lld --threads %d --passes %d --warmup_passes 1"
                " --feed_forward_proj %s",
                (long long)c.d_model, (long long)c.d_kv, (long long)c.d_ff, (long long)c.num_heads, (long long)c.num_layers,
                (long long)c.num_decoder_layers, (long long)c.vocab_size, (long long)c.relative_attention_num_buckets,
                (long long)c.relative_attention_max_distance, a.threads, a.passes, c.feed_forward_proj.c_str());
  const auto write = bench_real::json_lines(batches, "inputs", [](const auto& e) { return e.inputs; }, "targets",
                                             [](const auto& e) { return e.targets; });
  bench_real::run_peers(a, "ankh3_real_step", args, write, table);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options a;
  a.width = 256;
  a.peer = "python3 benchmarks/ankh3_real_step_hf.py";
  return bench_real::run_main(argc, argv, a, "256|768", bench);
}
