// nm_finetune: negative-mining fine-tuning (arXiv 2405.17902) of a T5 / Ankh
// encoder for protein classification, against a supervised-only baseline on
// the same split.
//
// Model (both arms): encoder -> single-head attention layer (Wq, Wk, Wv) ->
// mean over valid residues -> Linear(C -> 128) + ReLU -> Linear(128 -> K).
// The baseline trains it with cross-entropy. The negative-mining arm adds,
// for every anchor, N negatives (proteins of other labels) encoded by the same
// encoder, and a weighted attention-space loss on the same attention layer's
// cross-attention from each negative to its anchor (default: squared distance
// from uniform, the released formulation).
//
// By default it reads the bundled Swiss-Prot localisation sample, splits it
// by 40%-identity clusters into train / valid / test, trains both arms with
// early stopping on validation loss, and reports test accuracy and macro-F1.
// Writes into --out:
//   baseline/, nm/   metrics.jsonl, checkpoint.safetensors (after every
//                    epoch, atomic; --resume continues from it, also with a
//                    larger --epochs), best.safetensors (lowest validation
//                    loss), test.json (its test metrics)
//   results.json     both arms' test metrics and the split
#include <CLI/CLI.hpp>

#include <plm/data/labelled.hpp>
#include <plm/data/vocabulary.hpp>
#include <plm/io/checkpoint.hpp>
#include <plm/io/hf_config.hpp>
#include <plm/io/t5_checkpoint.hpp>
#include <plm/nn/heads.hpp>
#include <plm/nn/t5.hpp>
#include <plm/objectives/attention_contrastive.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/optim/clip.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/batching.hpp>
#include <plm/samplers/negatives.hpp>
#include <plm/train/classification.hpp>
#include <plm/train/device.hpp>
#include <plm/train/metrics.hpp>
#include <plm/train/progress.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string fasta = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample.fasta.gz";
  std::string labels = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample_labels.tsv";
  std::string clusters = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample_clusters.tsv";
  double valid_fraction = 0.1, test_fraction = 0.2;
  std::size_t min_class_size = 40, max_length = 128, limit = 0;
  std::string vocab = "ankh3";
  // model
  std::string backbone;  // Hugging Face T5 / Ankh checkpoint directory; empty: a randomly initialised encoder
  long d_model = 128, d_ff = 320, heads = 4, layers = 4;
  bool freeze = false, scaled = false;
  long readout = 128;
  // objective
  std::string arms = "both";  // both, baseline, nm
  std::string loss = "squared";  // squared, l1, kl, entropy-hinge
  double lambda = 0.1, margin = 0.1;
  long negatives = 2;
  std::string negatives_from = "label";  // label, hard
  long hard_pool = 10;
  // optimisation
  double lr = 1e-3, backbone_lr_mult = 0.3, weight_decay = 1e-5, clip = 1.0;
  long epochs = 6, batch = 32, patience = 3;
  // run
  std::string out = "nm_run";
  bool resume = false;
  std::uint64_t seed = 1;
  int threads = 0;
  train::DeviceOptions device;
};

struct Dataset {
  std::vector<std::string> ids, class_names;
  std::vector<std::vector<std::int32_t>> tokens;  // [prefix] residues </s>
  std::vector<std::int32_t> labels;
  std::vector<data::Split> split;
  std::vector<index_t> of(data::Split s) const {
    std::vector<index_t> r;
    for (std::size_t i = 0; i < split.size(); ++i)
      if (split[i] == s) r.push_back(static_cast<index_t>(i));
    return r;
  }
};

Dataset load_data(const Options& o, const data::Vocabulary& vocab) {
  data::FastaOptions fo;
  fo.max_length = o.max_length;
  fo.too_long = data::TooLongPolicy::crop_start;  // keep the N-terminus: signal and transit peptides sit there
  const auto set = data::read_labelled(o.fasta, o.labels, fo);
  std::vector<std::size_t> count(set.class_names.size(), 0);
  for (auto y : set.labels) ++count[static_cast<std::size_t>(y)];
  std::vector<std::int32_t> remap(count.size(), -1);
  Dataset d;
  for (std::size_t c = 0; c < count.size(); ++c)
    if (count[c] >= o.min_class_size) remap[c] = static_cast<std::int32_t>(d.class_names.size()), d.class_names.push_back(set.class_names[c]);
  PLM_CHECK(d.class_names.size() >= 2, o.labels, ": fewer than 2 classes have --min-class-size ", o.min_class_size, " proteins");
  data::EncodeOptions eo;
  const bool prefix = vocab.has_task_tokens();
  for (std::size_t i = 0; i < set.size() && (o.limit == 0 || d.ids.size() < o.limit); ++i) {
    if (remap[static_cast<std::size_t>(set.labels[i])] < 0) continue;
    std::vector<std::int32_t> t;
    if (prefix) t.push_back(vocab.nlu_id());
    vocab.encode_into(set.sequences[i], t, eo, set.ids[i]);
    d.ids.push_back(set.ids[i]);
    d.tokens.push_back(std::move(t));
    d.labels.push_back(remap[static_cast<std::size_t>(set.labels[i])]);
  }
  d.split = data::split_by_cluster(d.ids, o.clusters, {o.valid_fraction, o.test_fraction}, o.seed);
  return d;
}

// The fine-tuned model: backbone encoder + attention layer + pooling + readout head.
template <class Model>
struct Classifier {
  using B = typename Model::backend;
  Model backbone;
  std::unique_ptr<nn::ParameterSet<B, float>> head_ps = std::make_unique<nn::ParameterSet<B, float>>();
  nn::NegativeMiningAttention<B, float> attn;
  nn::ReadoutHead<B, float> head;
  nn::MeanPool<B, float> pool;

  Classifier(Model m, index_t classes, const Options& o) : backbone(std::move(m)) {
    const index_t C = backbone.config().d_model;
    attn = nn::NegativeMiningAttention<B, float>(*head_ps, "nm_attention", C, o.scaled);
    head = nn::ReadoutHead<B, float>(*head_ps, "classifier", C, classes, o.readout);
    head_ps->allocate();
    head_ps->init(o.seed ^ 0x4eadull);
  }
};

template <class Model>
Model make_backbone(const Options& o, std::int32_t vocab_size) {
  if (!o.backbone.empty()) return io::load_t5_encoder<Model>(o.backbone);
  nn::T5Config c = nn::T5Config::ankh3_small();
  c.d_model = o.d_model, c.d_ff = o.d_ff, c.num_heads = o.heads, c.d_kv = o.d_model / o.heads, c.num_layers = o.layers;
  c.num_decoder_layers = 0, c.vocab_size = vocab_size, c.feed_forward_proj = "gated-silu";
  return Model(c, o.seed);
}

// Rows of a (R, S, C) tensor as their own (n, S, C) view.
template <class B>
TensorView<B, float> rows(const Tensor<B, float>& t, index_t first, index_t n) {
  return TensorView<B, float>(t.data() + first * t.dim(1) * t.dim(2), Shape{n, t.dim(1), t.dim(2)});
}

// Query rows [q0, q0 + n) of a batch attending over the states of their
// anchors (rows anchor[k] < A of the same batch), through the shared attention layer.
template <class B>
struct PairSet {
  using Attention = nn::NegativeMiningAttention<B, float>;
  index_t q0 = 0;
  Tensor<B, std::int32_t> anchor;
  Tensor<B, float> kv, dkv, out, zeros, dprobs;
  Tensor<B, std::uint8_t> kv_valid;
  typename Attention::Cache c;

  index_t size() const { return anchor.numel(); }
  void forward(const Attention& attn, const Tensor<B, float>& H, const Tensor<B, std::uint8_t>& valid, index_t A, index_t first,
               const std::vector<std::int32_t>& anchor_of) {
    const index_t n = static_cast<index_t>(anchor_of.size()), S = H.dim(1), C = H.dim(2);
    q0 = first;
    anchor.resize(Shape{n});
    upload(anchor_of.data(), anchor.view());
    kv.resize(Shape{n, S, C});
    ops<B>::gather(ConstView<B, float>(H.data(), Shape{A, S * C}), anchor.cview(), kv.view().reshape(Shape{n, S * C}));
    kv_valid.resize(Shape{n, S});
    ops<B>::gather(ConstView<B, std::uint8_t>(valid.data(), Shape{A, S}), anchor.cview(), kv_valid.view());
    out.resize(Shape{n, S, C});
    attn.forward(rows(H, q0, n), kv.cview(), kv_valid.cview(), out.view(), c);
    dprobs.resize(c.probs.shape());
  }
  ConstView<B, std::uint8_t> q_valid(const Tensor<B, std::uint8_t>& valid) const {
    return ConstView<B, std::uint8_t>(valid.data() + q0 * valid.dim(1), Shape{size(), valid.dim(1)});
  }
  // The loss's gradient (in dprobs) into the query rows of dH (written) and the anchor rows (added).
  void backward(const Attention& attn, const Tensor<B, float>& H, Tensor<B, float>& dH, index_t A) {
    const index_t n = size(), S = H.dim(1), C = H.dim(2);
    zeros.resize(kv.shape());
    ops<B>::fill(zeros.view(), 0.0f);
    dkv.resize(kv.shape());
    ops<B>::fill(dkv.view(), 0.0f);
    attn.backward(rows(H, q0, n), kv.cview(), zeros.cview(), rows(dH, q0, n), dkv.view(), c, dprobs.cview());
    ops<B>::scatter_add(anchor.cview(), dkv.cview().reshape(Shape{n, S * C}), TensorView<B, float>(dH.data(), Shape{A, S * C}));
  }
};

// Working memory of one step.
template <class Model>
struct Work {
  using B = typename Model::backend;
  typename Model::Cache enc;
  Tensor<B, std::int32_t> ids, labels;
  Tensor<B, std::uint8_t> valid;
  Tensor<B, float> H, dH, out, dout, pooled, dpooled, logits;
  typename nn::MeanPool<B, float>::Cache pool;
  typename nn::ReadoutHead<B, float>::Cache head;
  typename nn::NegativeMiningAttention<B, float>::Cache self;
  PairSet<B> neg, pos;
  std::vector<float> host_logits;
  std::vector<std::int32_t> host_labels;
};

struct StepResult {
  double sup = 0, nm = 0;
  std::vector<std::int32_t> predicted;
};

// One forward (and with train, backward) pass over anchors; negatives[a] and
// positives[a] (-1: none) are dataset indices, both empty for the baseline.
template <class Model>
StepResult step(const Classifier<Model>& m, Work<Model>& w, const Dataset& d, const std::vector<index_t>& anchors,
                const std::vector<std::vector<index_t>>& negatives, const std::vector<index_t>& positives, const Options& o, bool train,
                std::int32_t pad) {
  using B = typename Model::backend;
  const index_t A = static_cast<index_t>(anchors.size());
  std::vector<index_t> list = anchors;
  std::vector<std::int32_t> neg_of, pos_of, pos_row;  // anchor of each negative / positive row; positive row of each anchor
  for (index_t a = 0; a < static_cast<index_t>(negatives.size()); ++a)
    for (index_t n : negatives[static_cast<std::size_t>(a)]) list.push_back(n), neg_of.push_back(static_cast<std::int32_t>(a));
  pos_row.assign(static_cast<std::size_t>(A), -1);
  for (index_t a = 0; a < static_cast<index_t>(positives.size()); ++a)
    if (positives[static_cast<std::size_t>(a)] >= 0) {
      pos_row[static_cast<std::size_t>(a)] = static_cast<std::int32_t>(pos_of.size());
      list.push_back(positives[static_cast<std::size_t>(a)]), pos_of.push_back(static_cast<std::int32_t>(a));
    }
  samplers::pad_rows<B>(d.tokens, list, pad, w.ids, w.valid);
  const index_t S = w.ids.dim(1), C = m.backbone.config().d_model, K = static_cast<index_t>(d.class_names.size());
  w.H.resize(Shape{w.ids.dim(0), S, C});
  m.backbone.encode(w.ids.cview(), w.valid.cview(), w.H.view(), w.enc);
  const auto Ha = rows(w.H, 0, A);
  const ConstView<B, std::uint8_t> va(w.valid.data(), Shape{A, S});
  w.out.resize(Shape{A, S, C});
  m.attn.forward(Ha, Ha, va, w.out.view(), w.self);
  w.pooled.resize(Shape{A, C});
  m.pool.forward(w.out.cview(), va, w.pooled.view(), w.pool);
  w.logits.resize(Shape{A, K});
  m.head.forward(w.pooled.cview(), w.logits.view(), w.head);

  StepResult r;
  w.host_logits.resize(static_cast<std::size_t>(A * K));
  download(w.logits.cview(), w.host_logits.data());
  for (index_t a = 0; a < A; ++a) {
    const float* l = w.host_logits.data() + a * K;
    r.predicted.push_back(static_cast<std::int32_t>(std::max_element(l, l + K) - l));
  }
  w.labels.resize(Shape{A});
  w.host_labels.clear();
  for (index_t a = 0; a < A; ++a) w.host_labels.push_back(d.labels[static_cast<std::size_t>(anchors[static_cast<std::size_t>(a)])]);
  upload(w.host_labels.data(), w.labels.view());
  const objectives::CrossEntropy<B, float> ce;
  r.sup = ce(w.logits.cview(), w.labels.cview(), train ? w.logits.view() : TensorView<B, float>{}).loss;  // logits become d loss / d logits
  if (!neg_of.empty()) {
    w.neg.forward(m.attn, w.H, w.valid, A, A, neg_of);
    if (o.loss == "entropy-hinge") {
      PLM_CHECK(!pos_of.empty(), "entropy-hinge: no anchor of this batch has a positive");
      w.pos.forward(m.attn, w.H, w.valid, A, A + static_cast<index_t>(neg_of.size()), pos_of);
      std::vector<index_t> anchor_of;  // the positive pair of each negative's anchor
      for (auto a : neg_of) {
        PLM_CHECK(pos_row[static_cast<std::size_t>(a)] >= 0, "entropy-hinge: anchor ", a, " has negatives but no positive");
        anchor_of.push_back(pos_row[static_cast<std::size_t>(a)]);
      }
      r.nm = objectives::entropy_hinge<B, float>(w.pos.c.probs.cview(), w.pos.q_valid(w.valid), w.pos.kv_valid.cview(), w.neg.c.probs.cview(),
                                                   w.neg.q_valid(w.valid), w.neg.kv_valid.cview(), anchor_of, o.margin, o.lambda,
                                                   w.pos.dprobs.view(), w.neg.dprobs.view());
    } else {
      const auto dist = o.loss == "squared" ? objectives::UniformDistance::squared
                        : o.loss == "l1"    ? objectives::UniformDistance::l1
                                            : objectives::UniformDistance::kl;
      r.nm = objectives::attention_to_uniform<B, float>(w.neg.c.probs.cview(), w.neg.q_valid(w.valid), w.neg.kv_valid.cview(), dist,
                                                          o.lambda, w.neg.dprobs.view());
    }
  }
  if (!train) return r;

  w.dpooled.resize(w.pooled.shape());
  m.head.backward(w.pooled.cview(), w.logits.cview(), w.dpooled.view(), w.head);
  w.dout.resize(w.out.shape());
  m.pool.backward(w.dpooled.cview(), w.dout.view(), w.pool);
  w.dH.resize(w.H.shape());
  ops<B>::fill(w.dH.view(), 0.0f);
  m.attn.backward(Ha, Ha, w.dout.cview(), rows(w.dH, 0, A), rows(w.dH, 0, A), w.self);  // writes the anchor rows
  if (!neg_of.empty()) w.neg.backward(m.attn, w.H, w.dH, A);
  if (!neg_of.empty() && o.loss == "entropy-hinge") w.pos.backward(m.attn, w.H, w.dH, A);
  if (!o.freeze) m.backbone.encode_backward(w.dH.cview(), w.enc);
  return r;
}

struct Evaluation {
  double loss = 0;
  train::ConfusionMatrix cm;
};

// Supervised loss and confusion matrix over proteins, in length-sorted batches.
template <class Model>
Evaluation evaluate(const Classifier<Model>& m, Work<Model>& w, const Dataset& d, std::vector<index_t> proteins, const Options& o,
                    std::int32_t pad) {
  std::stable_sort(proteins.begin(), proteins.end(),
                   [&](index_t a, index_t b) { return d.tokens[static_cast<std::size_t>(a)].size() < d.tokens[static_cast<std::size_t>(b)].size(); });
  Evaluation e{0, train::ConfusionMatrix(static_cast<std::int32_t>(d.class_names.size()))};
  for (std::size_t s = 0; s < proteins.size(); s += static_cast<std::size_t>(o.batch)) {
    const std::vector<index_t> batch(proteins.begin() + static_cast<long>(s),
                                     proteins.begin() + static_cast<long>(std::min(proteins.size(), s + static_cast<std::size_t>(o.batch))));
    const auto r = step(m, w, d, batch, {}, {}, o, false, pad);
    e.loss += r.sup * double(batch.size());
    for (std::size_t k = 0; k < batch.size(); ++k) e.cm.add(d.labels[static_cast<std::size_t>(batch[k])], r.predicted[k]);
  }
  e.loss /= double(std::max<std::size_t>(proteins.size(), 1));
  return e;
}

// Pooled representations (the classifier's input) of proteins, one row each.
template <class Model>
Tensor<cpu, float> embed(const Classifier<Model>& m, Work<Model>& w, const Dataset& d, const std::vector<index_t>& proteins,
                         const Options& o, std::int32_t pad) {
  const index_t C = m.backbone.config().d_model;
  Tensor<cpu, float> e(Shape{static_cast<index_t>(proteins.size()), C});
  for (std::size_t s = 0; s < proteins.size(); s += static_cast<std::size_t>(o.batch)) {
    const std::vector<index_t> batch(proteins.begin() + static_cast<long>(s),
                                     proteins.begin() + static_cast<long>(std::min(proteins.size(), s + static_cast<std::size_t>(o.batch))));
    step(m, w, d, batch, {}, {}, o, false, pad);
    download(w.pooled.cview(), e.data() + static_cast<index_t>(s) * C);
  }
  return e;
}

// What must not change between a run and its resume.
nlohmann::json fingerprint(const Options& o, bool nm) {
  nlohmann::json j = {{"fasta", o.fasta}, {"labels", o.labels}, {"clusters", o.clusters}, {"valid_fraction", o.valid_fraction},
                      {"test_fraction", o.test_fraction}, {"min_class_size", o.min_class_size}, {"max_length", o.max_length},
                      {"limit", o.limit}, {"vocab", o.vocab}, {"backbone", o.backbone}, {"d_model", o.d_model}, {"d_ff", o.d_ff},
                      {"heads", o.heads}, {"layers", o.layers}, {"freeze", o.freeze}, {"scaled", o.scaled}, {"readout", o.readout},
                      {"lr", o.lr}, {"backbone_lr_mult", o.backbone_lr_mult}, {"weight_decay", o.weight_decay}, {"clip", o.clip},
                      {"batch", o.batch}, {"seed", o.seed}};
  if (nm)
    j.update({{"loss", o.loss}, {"lambda", o.lambda}, {"margin", o.margin}, {"negatives", o.negatives},
              {"negatives_from", o.negatives_from}, {"hard_pool", o.hard_pool}});
  return j;
}

template <class Model>
nlohmann::json train_arm(const std::string& arm, const Options& o, const Dataset& d, const data::Vocabulary& vocab) {
  const bool nm = arm == "nm";
  const fs::path dir = fs::path(o.out) / arm;
  fs::create_directories(dir);
  const std::string ckpt = (dir / "checkpoint.safetensors").string(), best = (dir / "best.safetensors").string(),
                    result = (dir / "test.json").string();
  const auto K = static_cast<index_t>(d.class_names.size());
  Classifier<Model> m(make_backbone<Model>(o, vocab.size()), K, o);
  auto& bb = m.backbone.params();
  auto& hp = *m.head_ps;
  using B = typename Model::backend;
  const typename optim::AdamW<B, float>::Options ao{0.9, 0.999, 1e-8, o.weight_decay};
  optim::AdamW<B, float> head_opt(hp, ao);
  std::unique_ptr<optim::AdamW<B, float>> bb_opt;
  if (!o.freeze) bb_opt = std::make_unique<optim::AdamW<B, float>>(bb, ao);
  // Checkpoints hold the backbone as parameters, and the head with both optimizers' moments as state tensors.
  std::vector<io::NamedTensor<B, float>> state;
  for (index_t i = 0; i < hp.size(); ++i) state.push_back({"head." + hp.entry(i).name, hp.value(i)});
  for (auto& [name, v] : head_opt.state()) state.push_back({"head." + name, v});
  if (bb_opt)
    for (auto& [name, v] : bb_opt->state()) state.push_back({"backbone." + name, v});

  const std::vector<index_t> train_set = d.of(data::Split::train), valid_set = d.of(data::Split::valid), test_set = d.of(data::Split::test);
  std::vector<std::int32_t> train_labels;
  for (index_t i : train_set) train_labels.push_back(d.labels[static_cast<std::size_t>(i)]);
  const samplers::LabelIndex index(train_labels);  // indices into train_set
  const std::int64_t per_epoch = (static_cast<std::int64_t>(train_set.size()) + o.batch - 1) / o.batch;

  io::TrainingState ts;
  ts.seed = o.seed;
  ts.extra = {{"best_valid_loss", 1e300}, {"best_epoch", -1}, {"bad_epochs", 0}, {"stopped", false}};
  if (o.resume && fs::exists(ckpt)) {
    ts = io::load_checkpoint(ckpt, bb, state);
    io::check_fingerprint(ckpt, ts, fingerprint(o, nm));
    head_opt.set_steps(ts.step);
    if (bb_opt) bb_opt->set_steps(ts.step);
    std::fprintf(stderr, "nm_finetune: %s: resumed from %s after epoch %llu\n", arm.c_str(), ckpt.c_str(), (unsigned long long)ts.epoch);
  }
  train::MetricsLog metrics((dir / "metrics.jsonl").string(), ts.step > 0 ? ts.step : -1);
  Work<Model> w;
  const std::int32_t pad = vocab.pad_id();
  std::fprintf(stderr, "nm_finetune: %s: %zu train / %zu valid / %zu test proteins, %lld steps per epoch\n", arm.c_str(), train_set.size(),
               valid_set.size(), test_set.size(), (long long)per_epoch);
  train::ProgressBar bar(o.epochs * per_epoch, "seq/s", ts.step);
  hp.zero_grad();
  bb.zero_grad();
  for (auto epoch = static_cast<long>(ts.epoch); epoch < o.epochs && !ts.extra["stopped"].get<bool>(); ++epoch) {
    std::vector<index_t> order(train_set.size());
    std::iota(order.begin(), order.end(), index_t(0));
    Philox shuffle(o.seed ^ 0x5f1e0ull, static_cast<std::uint64_t>(epoch));
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.below(static_cast<std::uint32_t>(i))]);
    std::vector<std::vector<index_t>> hard;  // per training protein: its most similar proteins of other labels
    if (nm && o.negatives_from == "hard") hard = samplers::hard_negatives<cpu, float>(embed(m, w, d, train_set, o, pad).cview(), index, o.hard_pool);

    samplers::NegativeOptions no;
    no.negatives = o.negatives, no.seed = o.seed;
    for (std::int64_t b = 0; b < per_epoch; ++b) {
      std::vector<index_t> anchors;
      std::vector<std::vector<index_t>> negs;
      std::vector<index_t> pos;
      for (std::int64_t k = b * o.batch; k < std::min<std::int64_t>((b + 1) * o.batch, static_cast<std::int64_t>(order.size())); ++k) {
        const index_t local = order[static_cast<std::size_t>(k)];
        anchors.push_back(train_set[static_cast<std::size_t>(local)]);
        if (!nm) continue;
        const auto e = static_cast<std::uint64_t>(epoch);
        index_t p = -1;
        if (o.loss == "entropy-hinge") {
          p = samplers::sample_positive(index, local, e, o.seed);
          pos.push_back(p >= 0 ? train_set[static_cast<std::size_t>(p)] : -1);
        }
        std::vector<index_t> n;
        if (o.loss != "entropy-hinge" || p >= 0)  // the hinge compares against a positive: anchors without one get no negatives
          for (index_t x : hard.empty() ? samplers::sample_negatives_by_label(index, local, e, no)
                                        : samplers::sample_negatives_by_pairs(hard, local, e, no))
            n.push_back(train_set[static_cast<std::size_t>(x)]);
        negs.push_back(std::move(n));
      }
      const auto r = step(m, w, d, anchors, negs, pos, o, true, pad);
      double gn = optim::clip_grad_norm(hp, o.clip > 0 ? o.clip : 1e30);
      head_opt.step(o.lr);
      if (bb_opt) {
        gn = std::sqrt(gn * gn + std::pow(optim::clip_grad_norm(bb, o.clip > 0 ? o.clip : 1e30), 2));
        bb_opt->step(o.lr * o.backbone_lr_mult);
      }
      hp.zero_grad();
      bb.zero_grad();
      ts.step += 1;
      std::int64_t hit = 0;
      for (std::size_t k = 0; k < anchors.size(); ++k) hit += r.predicted[k] == d.labels[static_cast<std::size_t>(anchors[k])];
      metrics.write({{"split", "train"}, {"step", ts.step}, {"epoch", epoch}, {"loss", r.sup + r.nm}, {"sup_loss", r.sup},
                     {"nm_loss", r.nm}, {"acc", double(hit) / double(anchors.size())}, {"grad_norm", gn}});
      bar.update(ts.step, {{"loss", r.sup + r.nm}, {"nm", r.nm}}, double(anchors.size()));
    }
    const auto v = evaluate(m, w, d, valid_set, o, pad);
    metrics.write({{"split", "valid"}, {"step", ts.step}, {"epoch", epoch}, {"loss", v.loss}, {"acc", v.cm.accuracy()},
                   {"macro_f1", v.cm.macro_f1()}});
    auto& x = ts.extra;
    if (v.loss < x["best_valid_loss"].get<double>()) {
      x["best_valid_loss"] = v.loss, x["best_epoch"] = epoch, x["bad_epochs"] = 0;
      io::save_checkpoint(best, bb, state, ts);
    } else {
      x["bad_epochs"] = x["bad_epochs"].get<int>() + 1;
      x["stopped"] = x["bad_epochs"].get<int>() >= o.patience;
    }
    std::fprintf(stderr, "%s%s epoch %ld: valid loss %.4f acc %.3f macro-F1 %.3f%s\n", isatty(fileno(stderr)) ? "\n" : "", arm.c_str(),
                 epoch + 1, v.loss, v.cm.accuracy(), v.cm.macro_f1(), x["stopped"].get<bool>() ? " (early stop)" : "");
    ts.epoch = static_cast<std::uint64_t>(epoch + 1);
    x["fingerprint"] = fingerprint(o, nm);
    io::save_checkpoint(ckpt, bb, state, ts);
  }
  bar.finish();

  PLM_CHECK(fs::exists(best), best, " was never written (no epoch finished)");
  const auto at_best = io::load_checkpoint(best, bb, state);
  const auto t = evaluate(m, w, d, test_set, o, pad);
  nlohmann::json j = t.cm.to_json(d.class_names);
  j["arm"] = arm;
  j["test_loss"] = t.loss;
  j["best_epoch"] = at_best.extra["best_epoch"].template get<long>() + 1;
  io::write_file_atomically(result, [&](io::AtomicFile& f) { f.write(j.dump(2) + "\n"); });
  return j;
}

template <class Model>
int run(const Options& o) {
  const data::Vocabulary vocab = data::Vocabulary::load(o.vocab);
  const Dataset d = load_data(o, vocab);
  fs::create_directories(o.out);
  std::map<std::string, std::size_t> n_split;
  for (auto s : d.split) ++n_split[data::split_name(s)];
  std::fprintf(stderr, "nm_finetune: %zu proteins, %zu classes; split by cluster: %zu train, %zu valid, %zu test\n", d.ids.size(),
               d.class_names.size(), n_split["train"], n_split["valid"], n_split["test"]);
  PLM_CHECK(n_split["train"] > 0 && n_split["valid"] > 0 && n_split["test"] > 0, "every split needs proteins (raise --limit?)");

  // Reference: always predicting the most frequent training class.
  std::vector<std::int64_t> freq(d.class_names.size(), 0);
  for (index_t i : d.of(data::Split::train)) ++freq[static_cast<std::size_t>(d.labels[static_cast<std::size_t>(i)])];
  const auto top = static_cast<std::int32_t>(std::max_element(freq.begin(), freq.end()) - freq.begin());
  train::ConfusionMatrix majority(static_cast<std::int32_t>(d.class_names.size()));
  for (index_t i : d.of(data::Split::test)) majority.add(d.labels[static_cast<std::size_t>(i)], top);

  nlohmann::json results = {{"classes", d.class_names}, {"split", n_split},
                            {"majority", {{"class", d.class_names[static_cast<std::size_t>(top)]}, {"accuracy", majority.accuracy()},
                                          {"macro_f1", majority.macro_f1()}}}};
  std::vector<std::string> arms;
  if (o.arms == "both" || o.arms == "baseline") arms.push_back("baseline");
  if (o.arms == "both" || o.arms == "nm") arms.push_back("nm");
  for (const auto& arm : arms) results[arm] = train_arm<Model>(arm, o, d, vocab);
  io::write_file_atomically((fs::path(o.out) / "results.json").string(), [&](io::AtomicFile& f) { f.write(results.dump(2) + "\n"); });

  std::printf("\n%-10s %10s %10s %12s\n", "test", "accuracy", "macro-F1", "best epoch");
  std::printf("%-10s %10.3f %10.3f %12s\n", "majority", majority.accuracy(), majority.macro_f1(), "-");
  for (const auto& arm : arms)
    std::printf("%-10s %10.3f %10.3f %12ld\n", arm.c_str(), results[arm]["accuracy"].get<double>(), results[arm]["macro_f1"].get<double>(),
                results[arm]["best_epoch"].get<long>());
  std::printf("(%zu test proteins; results in %s)\n", n_split["test"], (fs::path(o.out) / "results.json").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Negative-mining fine-tuning of a T5 / Ankh encoder for protein classification, against a supervised baseline"};
  app.option_defaults()->always_capture_default();
  auto* g = app.add_option_group("data");
  g->add_option("--fasta", o.fasta, "protein sequences (plain or .gz)");
  g->add_option("--labels", o.labels, "label table: ID<TAB>LABEL");
  g->add_option("--clusters", o.clusters, "cluster table: ID<TAB>CLUSTER (examples/data/make_clusters.sh)");
  g->add_option("--valid-fraction", o.valid_fraction, "share of proteins (whole clusters) for early stopping");
  g->add_option("--test-fraction", o.test_fraction, "share of proteins (whole clusters) for the report");
  g->add_option("--min-class-size", o.min_class_size, "classes with fewer proteins are left out");
  g->add_option("--max-length", o.max_length, "longer proteins keep their first residues");
  g->add_option("--limit", o.limit, "use only the first N labelled proteins (0 = all)");
  g->add_option("--vocab", o.vocab, "ankh3, ankh, or a tokenizer.json / vocabulary file");
  auto* m = app.add_option_group("model");
  m->add_option("--backbone", o.backbone, "Hugging Face T5 / Ankh checkpoint directory (e.g. ankh3_pretrain's out/model); "
                                          "empty: a randomly initialised encoder of the sizes below");
  m->add_option("--d-model", o.d_model);
  m->add_option("--d-ff", o.d_ff);
  m->add_option("--heads", o.heads);
  m->add_option("--layers", o.layers);
  m->add_flag("--freeze", o.freeze, "train only the new layers");
  m->add_flag("--scaled", o.scaled, "scale attention scores by 1/sqrt(d) (the released code does not)");
  m->add_option("--readout", o.readout, "readout width");
  auto* ob = app.add_option_group("objective");
  ob->add_option("--arms", o.arms, "both, baseline or nm");
  ob->add_option("--loss", o.loss, "squared (released), l1, kl or entropy-hinge");
  ob->add_option("--lambda", o.lambda, "weight of the attention loss");
  ob->add_option("--margin", o.margin, "entropy-hinge margin");
  ob->add_option("--negatives", o.negatives, "negatives per anchor");
  ob->add_option("--negatives-from", o.negatives_from, "label (another label, then a member) or hard (most similar of other labels)");
  ob->add_option("--hard-pool", o.hard_pool, "with --negatives-from hard: draw among this many nearest, refreshed every epoch");
  auto* op = app.add_option_group("optimisation");
  op->add_option("--lr", o.lr, "AdamW learning rate of the new layers");
  op->add_option("--backbone-lr-mult", o.backbone_lr_mult, "the backbone's learning rate is lr times this");
  op->add_option("--weight-decay", o.weight_decay);
  op->add_option("--clip", o.clip, "gradient-norm limit per parameter group (0 = off)");
  op->add_option("--epochs", o.epochs);
  op->add_option("--batch", o.batch, "anchors per step");
  op->add_option("--patience", o.patience, "stop after this many epochs without a better validation loss");
  auto* r = app.add_option_group("run");
  r->add_option("--out", o.out, "output directory");
  r->add_flag("--resume", o.resume, "continue from the checkpoints in --out");
  r->add_option("--seed", o.seed);
  r->add_option("--threads", o.threads, "CPU threads (0 = all)");
  train::add_device_options(*r, o.device);
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) set_num_threads(o.threads);
    PLM_CHECK(o.arms == "both" || o.arms == "baseline" || o.arms == "nm", "--arms: unknown '", o.arms, "' (both, baseline, nm)");
    PLM_CHECK(o.loss == "squared" || o.loss == "l1" || o.loss == "kl" || o.loss == "entropy-hinge", "--loss: unknown '", o.loss,
              "' (squared, l1, kl, entropy-hinge)");
    PLM_CHECK(o.negatives_from == "label" || o.negatives_from == "hard", "--negatives-from: unknown '", o.negatives_from, "' (label, hard)");
    PLM_CHECK(o.epochs > 0 && o.batch > 0 && o.patience > 0 && o.negatives > 0 && o.hard_pool > 0 && o.lambda >= 0,
              "--epochs, --batch, --patience, --negatives and --hard-pool must be positive, --lambda >= 0");
    PLM_CHECK(o.d_model % o.heads == 0, "--d-model ", o.d_model, " must be a multiple of --heads ", o.heads);
    const std::string ffn = o.backbone.empty() ? "gated-silu" : io::read_t5_config((fs::path(o.backbone) / "config.json").string()).feed_forward_proj;
    return train::run_on_device(o.device, [&](auto backend) {
      using B = decltype(backend);
      if (ffn == "gated-silu") return run<nn::Ankh3Model<B, float>>(o);
      if (ffn == "gated-gelu") return run<nn::AnkhModel<B, float>>(o);
      PLM_FAIL(o.backbone, "/config.json: feed_forward_proj '", ffn, "' is not an Ankh model (gated-gelu or gated-silu)");
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nnm_finetune: %s\n", e.what());
    return 1;
  }
}
