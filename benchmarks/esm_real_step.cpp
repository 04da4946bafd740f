// ESM-2 masked-LM pre-training steps on real protein batches, next to Hugging
// Face transformers in the same run.
//
// The batches are those of the library's masked-LM stream on the bundled
// Swiss-Prot sample: <cls> residues <eos>, 15% of the residues selected (of
// those 80% <mask>, 10% a random residue, 10% kept), sequences cropped to
// --max-length, grouped by length within windows and cut under a token budget
// of real tokens. plm runs them packed (no padding anywhere) and, for
// reference, padded to the longest in each batch. The peer
// (esm_real_step_hf.py) runs the very same batches the way Hugging Face users
// do: padded to the longest in each batch (the batches are already
// length-grouped, as group_by_length makes them), eager and under
// torch.compile. One step = forward (token dropout as ESM-2), cross-entropy on
// the selected positions, backward and the AdamW update; a pass = one step per
// batch. Figures: median pass time over --passes (min-max), real tokens per
// second, and the ratios.
//
//   esm_real_step [--width 320|480] [--threads N] [--batches K] [--budget TOKENS] [--max-length L]
//                 [--passes P] [--peer CMD] [--no-peer] [--no-compile] [--no-padded] [--keep FILE]
#include <plm/nn/esm.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/mlm_stream.hpp>

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

// ESM-2 8M (6 layers, d 320) or 35M (12 layers, d 480), 20 heads, ffn 4 x d, on the ESM-2 alphabet; no dropout.
nn::EsmConfig config_of(int width, const data::Vocabulary& vocab) {
  nn::EsmConfig c;
  if (width == 320) c = nn::EsmConfig::esm2_8m();
  else if (width == 480) c = nn::EsmConfig::esm2_35m();
  else PLM_FAIL("esm_real_step: --width must be 320 or 480, not ", width);
  c.vocab_size = vocab.size(), c.pad_token_id = vocab.pad_id(), c.mask_token_id = vocab.id_of("<mask>");
  c.hidden_dropout_prob = c.attention_probs_dropout_prob = 0;
  return c;
}

struct Batch {
  std::vector<samplers::MlmExample> examples;
  index_t real = 0, padded = 0, selected = 0;  // tokens without and with padding to the longest; positions in the loss
};

// The model FLOPs of a training step on one sequence of `len` tokens: 6 x the weights each token passes through
// (attention projections and feed-forward of every layer, the LM head's dense and tied decoder), plus the attention
// products QK^T and PV, 12 x len^2 x hidden per layer (4 forward, 8 backward). Embedding lookups are not counted.
double esm_step_flops(const nn::EsmConfig& c, double len) {
  const double d = double(c.hidden_size), f = double(c.intermediate_size), L = double(c.num_hidden_layers), V = double(c.vocab_size);
  return 6 * len * (L * (4 * d * d + 2 * d * f) + d * d + d * V) + 12 * L * len * len * d;
}

// The model FLOPs of a pass on the real tokens: each sequence's own count.
double real_flops(const nn::EsmConfig& c, const std::vector<Batch>& batches) {
  double f = 0;
  for (const auto& b : batches)
    for (const auto& e : b.examples) f += esm_step_flops(c, double(e.ids.size()));
  return f;
}

// The first k training batches of the masked-LM stream.
std::vector<Batch> real_batches(const Options& a, const data::Vocabulary& vocab) {
  samplers::PretrainStreamOptions so;
  so.train = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_families.fasta.gz";
  so.fasta.min_length = 20, so.fasta.max_length = a.max_length;
  so.fasta.too_long = data::TooLongPolicy::crop_random;
  so.batching.token_budget = a.budget, so.batching.packed = true;
  so.seed = so.fasta.seed = 1;
  samplers::MlmOptions mo;  // the stream's defaults: 15% selected, of those 80% <mask>, 10% random, 10% kept
  mo.seed = 1;
  samplers::MlmStream stream(so, vocab, samplers::MlmExamples(mo, samplers::mlm_tokens(vocab)));
  std::vector<Batch> out;
  for (index_t k = 0; k < a.batches; ++k) {
    const auto& rows = stream.next();
    Batch b;
    index_t longest = 0;
    for (index_t r : rows) {
      const auto& e = stream.pool().examples[static_cast<std::size_t>(r)];
      b.examples.push_back(e);
      b.real += static_cast<index_t>(e.ids.size());
      longest = std::max(longest, static_cast<index_t>(e.ids.size()));
      for (const std::int32_t t : e.labels) b.selected += t != -100;
    }
    b.padded = static_cast<index_t>(rows.size()) * longest;
    out.push_back(std::move(b));
  }
  return out;
}

// Median (min, max) seconds of one pass of plm over the batches, packed or padded.
Timing plm_passes(const Options& a, const nn::EsmConfig& c, const std::vector<Batch>& batches, std::int32_t pad, bool packed) {
  nn::EsmModel<cpu, float> model(c, 1);
  optim::AdamW<cpu, float> opt(model.params());
  const objectives::CrossEntropy<cpu, float> loss(-100);
  nn::EsmModel<cpu, float>::Cache cache;
  Tensor<cpu, float> logits;
  std::vector<samplers::MlmBatch<cpu>> collated(batches.size());
  for (std::size_t k = 0; k < batches.size(); ++k) {  // collated once, outside the timing (the peer does the same)
    std::vector<index_t> rows(batches[k].examples.size());
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<index_t>(i);
    samplers::collate_mlm<cpu>(batches[k].examples, rows, pad, collated[k], packed);
  }
  double first_loss = -1;
  auto step = [&](std::size_t k) {
    const auto& b = collated[k];
    model.params().zero_grad();
    logits.resize(Shape{b.ids.dim(0), b.ids.dim(1), c.vocab_size});
    if (packed) model.forward_packed(b.ids.cview(), b.packing, logits.view(), cache, nn::Pass::train(1));
    else model.forward(b.ids.cview(), b.valid.cview(), logits.view(), cache, nn::Pass::train(1));
    const auto r = loss(logits.cview(), b.labels.cview(), logits.view());  // logits become d loss / d logits
    if (first_loss < 0) first_loss = r.loss;
    model.backward(logits.cview(), cache);
    opt.step(1e-4);
  };
  const Timing t = bench_real::time_passes(a.passes, batches.size(), step);
  std::fprintf(stderr, "esm_real_step: plm %s, step 1 loss %.4f\n", packed ? "packed" : "padded", first_loss);
  return t;
}

int bench(const Options& a) {
  const data::Tokenizer tokenizer = data::Tokenizer::esm2();  // the 33-token ESM alphabet, as esm2_pretrain uses it
  const data::Vocabulary& vocab = tokenizer.vocabulary();
  const nn::EsmConfig c = config_of(a.width, vocab);
  PLM_CHECK(a.budget >= a.max_length + 2, "esm_real_step: --budget ", a.budget, " cannot hold one sequence of --max-length ", a.max_length,
            " with <cls> and <eos>");
  const auto batches = real_batches(a, vocab);
  index_t real = 0, padded = 0, rows = 0, selected = 0, longest = 0;
  for (const auto& b : batches) {
    real += b.real, padded += b.padded, rows += static_cast<index_t>(b.examples.size()), selected += b.selected;
    for (const auto& e : b.examples) longest = std::max(longest, static_cast<index_t>(e.ids.size()));
  }
  std::printf("esm_real_step: ESM-2 %s shape: hidden %lld, ffn %lld, %lld heads, %lld layers, vocab %lld, token dropout %s; "
              "%d threads, fp32, AdamW\n",
              a.width == 320 ? "8M" : "35M", (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_attention_heads,
              (long long)c.num_hidden_layers, (long long)c.vocab_size, c.token_dropout ? "on" : "off", a.threads);
  std::printf("data: %lld batches of Swiss-Prot sample (crop %lld, real-token budget %lld): %lld sequences, %lld real tokens, "
              "%lld padded (%.1f%% padding when padded to the longest), %lld masked-LM positions (15%%: 80/10/10)\n",
              (long long)batches.size(), (long long)a.max_length, (long long)a.budget, (long long)rows, (long long)real,
              (long long)padded, 100.0 * double(padded - real) / double(padded), (long long)selected);
  bench_real::Table table(double(real), real_flops(c, batches), a.passes);
  table.row("plm, packed", plm_passes(a, c, batches, vocab.pad_id(), true));
  if (a.padded) table.row("plm, padded to the longest", plm_passes(a, c, batches, vocab.pad_id(), false));
  if (!a.use_peer) return 0;
  char args[1024];
  std::snprintf(args, sizeof args,
                " --hidden_size %lld --layers %lld --heads %lld --ffn %lld --vocab %lld --pad_id %d --mask_id %d --token_dropout %d"
                " --tie_word_embeddings %d --layer_norm_eps %g --max_positions %lld --threads %d --passes %d --warmup_passes 1",
                (long long)c.hidden_size, (long long)c.num_hidden_layers, (long long)c.num_attention_heads, (long long)c.intermediate_size,
                (long long)c.vocab_size, int(c.pad_token_id), int(c.mask_token_id), c.token_dropout ? 1 : 0, c.tie_word_embeddings ? 1 : 0,
                c.layer_norm_eps, (long long)std::max<index_t>(c.max_position_embeddings, longest), a.threads, a.passes);
  const auto write = bench_real::json_lines(batches, "ids", [](const auto& e) { return e.ids; }, "labels",
                                             [](const auto& e) { return e.labels; });
  bench_real::run_peers(a, "esm_real_step", args, write, table);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options a;
  a.width = 320;
  a.peer = "python3 benchmarks/esm_real_step_hf.py";
  return bench_real::run_main(argc, argv, a, "320|480", bench);
}
