// nm_custom_loop: the attention-space contrastive loss in your own model and
// training loop. The model here is deliberately tiny and home-made (residue
// embeddings -> one attention layer -> mean pool -> classifier); any layer
// that exposes its attention probabilities takes the loss the same way: the
// loss writes d loss / d probs, and the layer's backward takes it as an extra
// probability gradient.
//   nm_custom_loop [examples/data directory]
#include <plm/data/labelled.hpp>
#include <plm/data/vocabulary.hpp>
#include <plm/nn/embedding.hpp>
#include <plm/nn/heads.hpp>
#include <plm/objectives/attention_contrastive.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/negatives.hpp>

#include <cstdio>

using namespace plm;
using Tn = Tensor<cpu, float>;

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : PLM_EXAMPLE_DATA_DIR;
  data::FastaOptions fo;
  fo.max_length = 64, fo.too_long = data::TooLongPolicy::crop_start;
  const auto set = data::read_labelled(dir + "/swissprot_sample.fasta.gz", dir + "/swissprot_sample_labels.tsv", fo);
  const auto vocab = data::Vocabulary::ankh();
  const index_t N = static_cast<index_t>(set.size()), C = 32, K = set.num_classes(), A = 16, S = 66;
  const samplers::LabelIndex labels(set.labels);

  // Your model: any layers on one parameter set.
  nn::ParameterSet<cpu, float> ps;
  nn::Embedding<cpu, float> embed(ps, "embed", vocab.size(), C, 1.0);
  nn::NegativeMiningAttention<cpu, float> attn(ps, "attn", C);
  nn::MeanPool<cpu, float> pool;
  nn::ReadoutHead<cpu, float> head(ps, "head", C, K, 32);
  ps.allocate();
  ps.init(1);
  optim::AdamW<cpu, float> opt(ps);
  const objectives::CrossEntropy<cpu, float> ce;

  // Rows [0, A) are anchors, rows [A, 2A) one negative each (row A + k belongs to anchor k).
  Tensor<cpu, std::int32_t> ids(Shape{2 * A, S}), y(Shape{A});
  Tensor<cpu, std::uint8_t> valid(Shape{2 * A, S});
  Tn x(Shape{2 * A, S, C}), dx(x.shape()), out(Shape{A, S, C}), dout(out.shape()), cross(out.shape()), zeros(out.shape());
  Tn pooled(Shape{A, C}), dpooled(pooled.shape()), logits(Shape{A, K}), dprobs(Shape{A, 1, S, S});
  nn::MeanPool<cpu, float>::Cache pc;
  nn::ReadoutHead<cpu, float>::Cache hc;
  nn::NegativeMiningAttention<cpu, float>::Cache self, neg;
  ops<cpu>::fill(zeros.view(), 0.0f);
  auto rows = [&](Tn& t, index_t first) { return TensorView<cpu, float>(t.data() + first * S * C, Shape{A, S, C}); };
  const ConstView<cpu, std::uint8_t> va(valid.data(), Shape{A, S}), vn(valid.data() + A * S, Shape{A, S});

  for (std::uint64_t step = 1; step <= 400; ++step) {
    Philox rng(7, step);
    for (index_t k = 0; k < A; ++k) {  // an anchor, then a negative: another label, then one of its members
      const index_t a = rng.below(static_cast<std::uint32_t>(N));
      const index_t n = samplers::sample_negatives_by_label(labels, a, step, {1, 7})[0];
      y.data()[k] = set.labels[static_cast<std::size_t>(a)];
      for (auto [row, i] : {std::pair{k, a}, std::pair{A + k, n}}) {
        auto t = vocab.encode(set.sequences[static_cast<std::size_t>(i)]);
        t.resize(static_cast<std::size_t>(S), vocab.pad_id());
        std::copy(t.begin(), t.end(), ids.data() + row * S);
        for (index_t j = 0; j < S; ++j) valid.data()[row * S + j] = t[static_cast<std::size_t>(j)] != vocab.pad_id();
      }
    }
    // Forward: the supervised path on the anchors, then the negatives' attention over their anchors.
    embed.forward(ids.cview(), x.view());
    attn.forward(rows(x, 0), rows(x, 0), va, out.view(), self);
    pool.forward(out.cview(), va, pooled.view(), pc);
    head.forward(pooled.cview(), logits.view(), hc);
    const auto sup = ce(logits.cview(), y.cview(), logits.view());  // logits become d loss / d logits
    attn.forward(rows(x, A), rows(x, 0), va, cross.view(), neg);
    const double nm = objectives::attention_to_uniform<cpu, float>(neg.probs.cview(), vn, va, objectives::UniformDistance::squared,
                                                                   /*weight=*/0.1, dprobs.view());
    // Backward: the supervised gradient, then the attention loss through the same layer.
    head.backward(pooled.cview(), logits.cview(), dpooled.view(), hc);
    pool.backward(dpooled.cview(), dout.view(), pc);
    attn.backward(rows(x, 0), rows(x, 0), dout.cview(), rows(dx, 0), rows(dx, 0), self);  // writes the anchor rows
    attn.backward(rows(x, A), rows(x, 0), zeros.cview(), rows(dx, A), rows(dx, 0), neg, dprobs.cview());  // adds to them
    embed.backward(ids.cview(), dx.cview());
    opt.step(3e-3);
    ps.zero_grad();
    if (step % 50 == 0)
      std::printf("step %3llu  cross-entropy %.4f  attention loss %.5f  batch accuracy %.2f\n", (unsigned long long)step, sup.loss, nm,
                  sup.accuracy());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "nm_custom_loop: %s\n", e.what());
  return 1;
}
