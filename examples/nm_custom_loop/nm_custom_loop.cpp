// nm_custom_loop: the negative-mining attention loss in your own model and
// training loop. The model here is deliberately tiny and home-made (residue
// embeddings -> pair attention -> mean pool -> classifier). One padded batch
// holds the anchors and their negatives; the pair attention runs as
// self-attention over the anchors (the supervised path) and as cross-attention
// from each negative over its anchor's rows, whose probabilities the loss
// reads. Its gradient goes back through the same layer onto both rows.
//   nm_custom_loop [examples/data directory]
#include <plm/data/labelled.hpp>
#include <plm/data/vocabulary.hpp>
#include <plm/nn/embedding.hpp>
#include <plm/nn/pair_attention.hpp>
#include <plm/nn/pooling.hpp>
#include <plm/nn/readout.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/objectives/negative_mining.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/batching.hpp>
#include <plm/samplers/negative_batch.hpp>

#include <cstdio>

using namespace plm;
using Tn = Tensor<cpu, float>;

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : PLM_EXAMPLE_DATA_DIR;
  data::FastaOptions fo;
  fo.max_length = 64, fo.too_long = data::TooLongPolicy::crop_start;
  const auto set = data::read_labelled(dir + "/swissprot_sample.fasta.gz", dir + "/swissprot_sample_labels.tsv", fo);
  const auto vocab = data::Vocabulary::ankh();
  std::vector<std::vector<std::int32_t>> tokens;
  for (const auto& s : set.sequences) tokens.push_back(vocab.encode(s));
  const index_t N = static_cast<index_t>(set.size()), C = 32, K = set.num_classes(), A = 16;
  const samplers::LabelIndex labels(set.labels);

  // Your model: any layers on one parameter set.
  nn::ParameterSet<cpu, float> ps;
  nn::Embedding<cpu, float> embed(ps, "embed", vocab.size(), C, 1.0);
  nn::PairAttention<cpu, float> attn(ps, "attn", C);
  nn::MeanPool<cpu, float> pool;
  nn::ReadoutHead<cpu, float> head(ps, "head", C, K, 32);
  ps.allocate();
  ps.init(1);
  optim::AdamW<cpu, float> opt(ps);
  const objectives::CrossEntropy<cpu, float> ce;
  const objectives::NegativeMiningOptions nm{objectives::NegativeMiningLoss::squared, /*lambda=*/0.1};

  Tensor<cpu, std::int32_t> ids, y(Shape{A});
  Tensor<cpu, std::uint8_t> valid;
  Tn x, dx, out, dout, pooled(Shape{A, C}), dpooled(pooled.shape()), logits(Shape{A, K});
  nn::PairAttention<cpu, float>::Cache self;
  nn::PairAttention<cpu, float>::Pairs neg;
  nn::MeanPool<cpu, float>::Cache pc;
  nn::ReadoutHead<cpu, float>::Cache hc;

  for (std::uint64_t step = 1; step <= 400; ++step) {
    // Rows: A anchors, then one negative each (another label, then one of its members).
    Philox rng(7, step);
    std::vector<index_t> anchors;
    for (index_t k = 0; k < A; ++k) anchors.push_back(rng.below(static_cast<std::uint32_t>(N)));
    const auto batch = samplers::sample_negative_batch(labels, anchors, step, {/*negatives=*/1, /*positives=*/false, /*seed=*/7});
    samplers::pad_rows<cpu>(tokens, batch.items, vocab.pad_id(), ids, valid);
    for (index_t k = 0; k < A; ++k) y.data()[k] = set.labels[static_cast<std::size_t>(anchors[static_cast<std::size_t>(k)])];
    const index_t S = ids.dim(1);
    x.resize(Shape{ids.dim(0), S, C});
    dx.resize(x.shape());
    out.resize(Shape{A, S, C});
    dout.resize(out.shape());
    const auto xa = x.cview().slice(0, A);
    const auto va = valid.cview().slice(0, A);

    // Forward: the supervised path on the anchors, then the negatives' attention over their anchors.
    embed.forward(ids.cview(), x.view());
    attn.forward(xa, xa, va, out.view(), self);
    pool.forward(out.cview(), va, pooled.view(), pc);
    head.forward(pooled.cview(), logits.view(), hc);
    const auto sup = ce(logits.cview(), y.cview(), logits.view());  // logits become d loss / d logits
    attn.forward_pairs(x.cview(), valid.cview(), batch.rows.first_negative(), batch.rows.negative_anchor, neg);
    const double nml = objectives::negative_mining_loss<cpu, float>(nm, objectives::pairs_of<cpu, float>(neg));  // writes neg.d_probs

    // Backward: the supervised gradient writes the anchor rows; the attention
    // loss adds into the negatives' rows and, scattered, their anchors' rows.
    head.backward(pooled.cview(), logits.cview(), dpooled.view(), hc);
    pool.backward(dpooled.cview(), dout.view(), pc);
    ops<cpu>::fill(dx.view(), 0.0f);
    attn.backward(xa, xa, dout.cview(), dx.view().slice(0, A), dx.view().slice(0, A), self);
    attn.backward_pairs(x.cview(), dx.view(), neg);
    embed.backward(ids.cview(), dx.cview());
    opt.step(3e-3);
    ps.zero_grad();
    if (step % 50 == 0)
      std::printf("step %3llu  cross-entropy %.4f  attention loss %.5f  batch accuracy %.2f\n", (unsigned long long)step, sup.loss, nml,
                  sup.accuracy());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nm_custom_loop: %s\n", e.what());
  return 1;
}
