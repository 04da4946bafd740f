// ankh3_pretrain: Ankh3-style multi-task pre-training of a T5 encoder-decoder
// on a FASTA file: [NLU] span denoising with several masking probabilities
// jointly with [S2S] sequence completion.
//
// By default it trains a small model on the bundled Swiss-Prot families for a
// few minutes on a laptop CPU, evaluates held-out loss and masked-residue
// accuracy per task, and writes into --out:
//   metrics.jsonl             one line per step (train) and per evaluation (valid)
//   checkpoint.safetensors    model + optimizer + RNG + data cursor (atomic)
//   model/                    the final model as a Hugging Face T5 checkpoint
// Kill it at any time and run it again with --resume: it continues exactly.
//
// The loop is written out here on purpose: plm gives the pieces (samplers,
// model, objective, optimizer, checkpoints, metrics), the loop stays yours.
#include <CLI/CLI.hpp>

#include <plm/data/fasta.hpp>
#include <plm/data/vocabulary.hpp>
#include <plm/io/checkpoint.hpp>
#include <plm/io/t5_checkpoint.hpp>
#include <plm/nn/t5.hpp>
#include <plm/objectives/multitask.hpp>
#include <plm/optim/adafactor.hpp>
#include <plm/optim/adamw.hpp>
#include <plm/optim/clip.hpp>
#include <plm/optim/schedule.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/ankh3.hpp>
#include <plm/samplers/batching.hpp>
#include <plm/train/flops.hpp>
#include <plm/train/metrics.hpp>
#include <plm/train/progress.hpp>
#include <plm/train/device.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
namespace fs = std::filesystem;
using samplers::Task;

namespace {

struct Options {
  // data
  // 4,000 proteins from 80 families (examples/data/README.md): held-out
  // proteins have relatives in the training part, as in real corpora. On the
  // random sample (swissprot_sample.fasta.gz) a few minutes of training stay
  // at the residue-frequency baseline.
  std::string train = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_families.fasta.gz";
  std::string valid;  // empty: hold out valid_fraction of train
  double valid_fraction = 0.05;
  std::size_t valid_max = 200;
  std::size_t min_length = 20, max_length = 128;
  std::string too_long = "crop-random";
  std::string rare = "keep";
  std::string vocab = "ankh3";
  std::size_t pool = 2000;  // records read, turned into examples and batched together
  // tasks
  std::vector<double> mask_probs{0.1, 0.2, 0.3};
  double mean_span = 1.0;
  bool mask_per_batch = false;
  double split_min = 0.5, split_max = 0.5;
  double nlu_mix = 1.0, s2s_mix = 1.0;        // sampling odds of the tasks
  double nlu_weight = 1.0, s2s_weight = 1.0;  // loss weights
  double label_smoothing = 0.0;
  // model
  std::string model = "demo";
  std::string init;  // a Hugging Face T5 checkpoint directory to start from
  long d_model = 0, d_ff = 0, heads = 0, d_kv = 0, layers = 0, decoder_layers = 0;
  // optimisation
  std::string optimizer = "adamw";
  // 1e-3: on the family sample the default run completes 71% of held-out
  // residues correctly at 1e-3 against 49% at 3e-3 (docs/pretraining.md).
  double lr = 1e-3, weight_decay = 0.01, clip = 1.0;
  // Learning-rate multiplier of the relative position bias tables. They are
  // T5's only source of position, and Adam moves each entry by about lr per
  // step: at the base rate a bias that makes a head look at its neighbours
  // needs thousands of steps, so a short run learns no local context at all.
  double bias_lr = 30.0;
  std::string schedule = "cosine";
  long warmup = 100, steps = 2500, accum = 1;
  long token_budget = 2048, max_rows = 0, window = 1024;
  // run
  std::string out = "ankh3_run";
  bool resume = false;
  long eval_every = 250, checkpoint_every = 250;
  std::uint64_t seed = 1;
  int threads = 0;
  train::DeviceOptions device;
};

nn::T5Config make_config(const Options& o, std::int32_t vocab_size) {
  nn::T5Config c;
  if (o.model == "demo") {
    // Small enough to learn something in minutes on 2 cores.
    c = nn::T5Config::ankh3_small();
    c.d_model = 128, c.d_kv = 32, c.num_heads = 4, c.d_ff = 320, c.num_layers = 4, c.num_decoder_layers = 2;
  } else {
    c = nn::T5Config::preset(o.model);
  }
  if (o.d_model) c.d_model = o.d_model;
  if (o.d_ff) c.d_ff = o.d_ff;
  if (o.heads) c.num_heads = o.heads;
  if (o.d_kv) c.d_kv = o.d_kv;
  if (o.layers) c.num_layers = o.layers;
  if (o.decoder_layers) c.num_decoder_layers = o.decoder_layers;
  c.vocab_size = vocab_size;
  c.feed_forward_proj = "gated-silu";
  c.validate();
  return c;
}

data::TooLongPolicy parse_too_long(const std::string& s) {
  if (s == "skip") return data::TooLongPolicy::skip;
  if (s == "crop-random") return data::TooLongPolicy::crop_random;
  if (s == "crop-start") return data::TooLongPolicy::crop_start;
  if (s == "error") return data::TooLongPolicy::error;
  PLM_FAIL("--too-long: unknown policy '", s, "' (skip, crop-random, crop-start, error)");
}

data::RarePolicy parse_rare(const std::string& s) {
  if (s == "keep") return data::RarePolicy::keep;
  if (s == "unk") return data::RarePolicy::unk;
  if (s == "error") return data::RarePolicy::error;
  PLM_FAIL("--rare: unknown policy '", s, "' (keep, unk, error)");
}

// Held-out records are chosen by a hash of their index, so the split is the
// same in every epoch and after a resume, without a second file.
bool held_out(std::uint64_t index, const Options& o) {
  if (!o.valid.empty()) return false;
  Philox rng(o.seed ^ 0x9e3779b97f4a7c15ull, index);
  return rng.uniform() <= o.valid_fraction;
}

struct Sequence {
  std::uint64_t index;  // record index in its file
  std::vector<std::int32_t> tokens;  // residues, no eos
};

// Training records in pools of o.pool, streamed from the FASTA file, epoch after epoch.
class TrainStream {
 public:
  TrainStream(const Options& o, const data::Vocabulary& v, data::FastaOptions fo, data::EncodeOptions eo)
      : o_(o), vocab_(v), reader_(o.train, fo), enc_(eo) {}

  // Reads the pool that starts at record position `pos` of the file.
  std::vector<Sequence> read_pool(std::uint64_t pos) {
    if (reader_.position() != pos) {
      if (reader_.position() > pos) reader_.rewind();
      reader_.skip_to(pos);
    }
    std::vector<Sequence> pool;
    data::FastaRecord r;
    while (pool.size() < o_.pool && reader_.next(r)) {
      if (held_out(r.index, o_)) continue;
      Sequence s{r.index, {}};
      vocab_.encode_into(r.sequence, s.tokens, enc_, r.id);
      if (s.tokens.size() >= 2) pool.push_back(std::move(s));
    }
    return pool;
  }
  std::uint64_t position() const { return reader_.position(); }

 private:
  const Options& o_;
  const data::Vocabulary& vocab_;
  data::FastaReader reader_;
  data::EncodeOptions enc_;
};

struct Pool {
  std::vector<samplers::Seq2SeqExample> examples;
  std::vector<std::vector<index_t>> batches;
};

// Examples and length-bucketed batches of one pool; every draw is keyed by
// (seed, epoch, record index / pool position), so rebuilding a pool after a
// resume gives the same batches.
Pool build_pool(const std::vector<Sequence>& seqs, const samplers::Ankh3Sampler& sampler, const Options& o, std::uint64_t epoch,
                std::uint64_t pool_pos, bool shuffle) {
  Pool p;
  std::vector<index_t> in_len, out_len;
  const double p_max = *std::max_element(o.mask_probs.begin(), o.mask_probs.end());
  for (const auto& s : seqs) {
    const std::uint64_t key = (epoch << 40) + s.index;
    auto ex = sampler.make(s.tokens, key, o.mask_per_batch ? p_max : -1.0);
    // With one probability per batch the example is remade once its batch is
    // known; size the batch for the largest probability so it always fits.
    const bool bound = o.mask_per_batch && ex.task == Task::nlu;
    in_len.push_back(bound ? static_cast<index_t>(s.tokens.size()) + 2 : static_cast<index_t>(ex.inputs.size()));
    out_len.push_back(static_cast<index_t>(ex.targets.size()));
    p.examples.push_back(std::move(ex));
  }
  samplers::BatchOptions bo;
  bo.token_budget = o.token_budget, bo.max_rows = o.max_rows, bo.window = o.window, bo.shuffle = shuffle;
  Philox rng(o.seed ^ 0xba7c4e5ull, (epoch << 40) + pool_pos);
  p.batches = samplers::length_bucket_batches(in_len, out_len, bo, rng);
  if (o.mask_per_batch)
    for (std::size_t b = 0; b < p.batches.size(); ++b) {
      const double pb = sampler.batch_mask_probability((epoch << 40) + (pool_pos << 16) + b);
      for (index_t i : p.batches[b]) {
        auto& ex = p.examples[static_cast<std::size_t>(i)];
        if (ex.task == Task::nlu) ex = sampler.make(seqs[static_cast<std::size_t>(i)].tokens, (epoch << 40) + seqs[static_cast<std::size_t>(i)].index, pb);
      }
    }
  return p;
}

// Held-out loss and accuracy per task over fixed examples (the same masks every time).
template <class B>
objectives::MultiTaskResult evaluate(const nn::Ankh3Model<B, float>& m, const Pool& valid, const objectives::MultiTask<B, float>& loss,
                                     typename nn::Ankh3Model<B, float>::Cache& cache, Tensor<B, float>& logits) {
  objectives::MultiTaskResult total;
  samplers::Seq2SeqBatch<B> b;
  for (const auto& rows : valid.batches) {
    samplers::collate<B>(valid.examples, rows, b);
    logits.resize(Shape{b.dec_ids.dim(0), b.dec_ids.dim(1), m.config().vocab_size});
    m.forward(b.enc_ids.cview(), b.enc_valid.cview(), b.dec_ids.cview(), logits.view(), cache, 0, b.dec_valid.cview());
    total.add(loss(logits.cview(), b.labels.cview(), b.task));
  }
  return total;
}

// What must not change between a run and its resume.
nlohmann::json fingerprint(const Options& o, const nn::T5Config& c) {
  return {{"train", o.train},       {"valid", o.valid},           {"valid_fraction", o.valid_fraction}, {"min_length", o.min_length},
          {"max_length", o.max_length}, {"too_long", o.too_long}, {"vocab", o.vocab},                  {"pool", o.pool},
          {"mask_probs", o.mask_probs}, {"mean_span", o.mean_span}, {"mask_per_batch", o.mask_per_batch},
          {"split", {o.split_min, o.split_max}}, {"mix", {o.nlu_mix, o.s2s_mix}}, {"optimizer", o.optimizer},
          {"token_budget", o.token_budget}, {"max_rows", o.max_rows}, {"window", o.window}, {"accum", o.accum},
          {"seed", o.seed},
          {"model", {{"d_model", c.d_model}, {"d_ff", c.d_ff}, {"heads", c.num_heads}, {"d_kv", c.d_kv}, {"layers", c.num_layers},
                     {"decoder_layers", c.num_decoder_layers}, {"vocab_size", c.vocab_size}}}};
}

std::vector<std::pair<std::string, double>> task_metrics(const objectives::MultiTaskResult& r, const char* prefix) {
  std::vector<std::pair<std::string, double>> m;
  for (const auto& t : r.tasks) {
    m.push_back({std::string(prefix) + t.name + "_loss", t.loss});
    m.push_back({std::string(prefix) + t.name + "_acc", t.residue_accuracy()});
  }
  return m;
}

template <class B>
int run(const Options& o) {
  using Model = nn::Ankh3Model<B, float>;
  if (o.threads > 0) set_num_threads(o.threads);
  PLM_CHECK(o.steps > 0 && o.accum > 0 && o.eval_every > 0 && o.checkpoint_every > 0,
            "--steps, --accum, --eval-every and --checkpoint-every must be positive");
  PLM_CHECK(o.valid_fraction > 0 && o.valid_fraction < 1, "--valid-fraction ", o.valid_fraction, " must be in (0, 1)");
  PLM_CHECK(o.pool > 0, "--pool must be positive");
  PLM_CHECK(fs::exists(o.train), "--train: ", o.train, " does not exist");
  fs::create_directories(o.out);
  const std::string ckpt = (fs::path(o.out) / "checkpoint.safetensors").string();
  const std::string metrics_path = (fs::path(o.out) / "metrics.jsonl").string();

  const data::Vocabulary vocab = data::Vocabulary::load(o.vocab);
  data::FastaOptions fo;
  fo.min_length = o.min_length, fo.max_length = o.max_length, fo.too_long = parse_too_long(o.too_long), fo.seed = o.seed;
  data::EncodeOptions eo;
  eo.append_eos = false;
  eo.rare = parse_rare(o.rare);

  samplers::Ankh3Options so;
  so.mask_probabilities = o.mask_probs, so.mean_span_length = o.mean_span, so.probability_per_batch = o.mask_per_batch;
  so.split = {o.split_min, o.split_max}, so.nlu_weight = o.nlu_mix, so.s2s_weight = o.s2s_mix, so.seed = o.seed;
  samplers::Ankh3Tokens tok;
  tok.nlu = vocab.nlu_id(), tok.s2s = vocab.s2s_id(), tok.eos = vocab.eos_id();
  for (std::int32_t k = 0; k < vocab.num_sentinels(); ++k) tok.sentinels.push_back(vocab.sentinel_id(k));
  const samplers::Ankh3Sampler sampler(so, tok);

  Model model = o.init.empty() ? Model(make_config(o, vocab.size()), o.seed) : io::load_t5<Model>(o.init);
  const nn::T5Config& cfg = model.config();
  PLM_CHECK(cfg.vocab_size >= vocab.size(), "model vocabulary ", cfg.vocab_size, " is smaller than the tokenizer's ", vocab.size());
  auto& ps = model.params();
  if (o.init.empty() && !cfg.tie_word_embeddings) {
    // transformers initialises an untied LM head with std 1, which makes the
    // first logits O(sqrt(d_model)) and the first losses ~5x ln(V); starting
    // it at std d_model^-0.5 gives O(1) logits and a loss near ln(V) at step 0.
    auto head = ps.value("lm_head.weight");
    ops<B>::scale(head, static_cast<float>(1.0 / std::sqrt(double(cfg.d_model))), head);
  }
  std::fprintf(stderr, "ankh3_pretrain: model d_model %ld, %ld+%ld layers, %ld heads, d_ff %ld, %.2fM parameters\n", long(cfg.d_model),
               long(cfg.num_layers), long(cfg.num_decoder_layers), long(cfg.num_heads), long(cfg.d_ff), double(ps.numel()) / 1e6);

  // Held-out set: fixed examples and batches, built once.
  std::vector<Sequence> valid_seqs;
  {
    data::FastaReader vr(o.valid.empty() ? o.train : o.valid, fo);
    data::FastaRecord r;
    while (valid_seqs.size() < o.valid_max && vr.next(r)) {
      if (!o.valid.empty() || held_out(r.index, o)) {
        Sequence s{r.index, {}};
        vocab.encode_into(r.sequence, s.tokens, eo, r.id);
        if (s.tokens.size() >= 2) valid_seqs.push_back(std::move(s));
      }
    }
  }
  PLM_CHECK(!valid_seqs.empty(), "no held-out sequences (raise --valid-fraction or pass --valid)");
  const Pool valid = build_pool(valid_seqs, sampler, o, 1u << 20, 0, false);

  objectives::MultiTask<B, float> loss({{"nlu", o.nlu_weight}, {"s2s", o.s2s_weight}}, vocab.residue_ids(), -100,
                                         o.label_smoothing);
  optim::ParamGroups groups;
  for (const char* stack : {"encoder", "decoder"})
    groups.add(std::string(stack) + ".block.0.layer.0.SelfAttention.relative_attention_bias.", {o.bias_lr, false});
  std::unique_ptr<optim::AdamW<B, float>> adamw;
  std::unique_ptr<optim::Adafactor<B, float>> adafactor;
  if (o.optimizer == "adamw") {
    adamw = std::make_unique<optim::AdamW<B, float>>(ps, typename optim::AdamW<B, float>::Options{0.9, 0.999, 1e-8, o.weight_decay}, groups);
  } else if (o.optimizer == "adafactor" || o.optimizer == "adafactor-relative") {
    typename optim::Adafactor<B, float>::Options ao;
    ao.weight_decay = o.weight_decay;
    ao.relative_step = o.optimizer == "adafactor-relative";
    ao.scale_parameter = ao.relative_step;
    adafactor = std::make_unique<optim::Adafactor<B, float>>(ps, ao, groups);
  } else {
    PLM_FAIL("--optimizer: unknown '", o.optimizer, "' (adamw, adafactor, adafactor-relative)");
  }
  auto opt_state = [&] { return adamw ? adamw->state() : adafactor->state(); };
  std::vector<io::NamedTensor<B, float>> state;
  for (auto& [name, view] : opt_state()) state.push_back({name, view});
  const optim::LRSchedule schedule{o.lr, o.warmup, o.steps, optim::LRSchedule::parse(o.schedule), 0.05};

  // Where the run stands: step, epoch, the pool's first record and the batches of it consumed.
  io::TrainingState ts;
  ts.seed = o.seed;
  std::uint64_t pool_pos = 0;
  if (o.resume && fs::exists(ckpt)) {
    ts = io::load_checkpoint(ckpt, ps, state);
    io::check_fingerprint(ckpt, ts, fingerprint(o, cfg));
    pool_pos = ts.extra.at("pool_position").get<std::uint64_t>();
    (adamw ? adamw->set_steps(ts.step) : adafactor->set_steps(ts.step));
    std::fprintf(stderr, "ankh3_pretrain: resumed from %s at step %lld (epoch %llu)\n", ckpt.c_str(), (long long)ts.step,
                 (unsigned long long)ts.epoch);
  } else if (o.resume) {
    std::fprintf(stderr, "ankh3_pretrain: --resume: no checkpoint in %s yet, starting fresh\n", o.out.c_str());
  }
  PLM_CHECK(ts.step < o.steps, "the checkpoint is at step ", ts.step, ", --steps ", o.steps, " is already reached");
  train::MetricsLog metrics(metrics_path, ts.step > 0 ? ts.step : -1);

  TrainStream stream(o, vocab, fo, eo);
  // Residue-frequency baseline: always predicting the most frequent residue of
  // the first training pool (the same pool in every run and resume).
  std::map<std::int32_t, std::int64_t> freq;
  auto seqs = stream.read_pool(0);
  for (const auto& s : seqs)
    for (std::int32_t t : s.tokens) freq[t] += 1;
  PLM_CHECK(!freq.empty(), o.train, ": no training sequences (all filtered or held out?)");
  if (pool_pos != 0) seqs = stream.read_pool(pool_pos);  // a resumed run's pool; a fresh run keeps the first
  PLM_CHECK(!seqs.empty(), o.train, ": no training sequences at record ", pool_pos);
  Pool pool = build_pool(seqs, sampler, o, ts.epoch, pool_pos, true);
  std::size_t batch = ts.cursor;
  auto next_batch = [&]() -> const std::vector<index_t>& {
    while (batch >= pool.batches.size()) {
      pool_pos = stream.position();
      seqs = stream.read_pool(pool_pos);
      if (seqs.empty()) {  // end of the file: next epoch
        ++ts.epoch;
        pool_pos = 0;
        seqs = stream.read_pool(0);
      }
      pool = build_pool(seqs, sampler, o, ts.epoch, pool_pos, true);
      batch = 0;
    }
    return pool.batches[batch++];
  };

  const std::int32_t top = std::max_element(freq.begin(), freq.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  std::map<std::string, double> baseline;
  for (int task = 0; task < 2; ++task) {
    std::int64_t n = 0, hit = 0;
    for (const auto& ex : valid.examples)
      if (static_cast<int>(ex.task) == task)
        for (std::int32_t t : ex.targets)
          if (vocab.is_residue(t)) n += 1, hit += t == top;
    baseline[samplers::task_name(static_cast<Task>(task))] = n ? double(hit) / double(n) : 0.0;
  }
  std::fprintf(stderr, "ankh3_pretrain: %zu held-out sequences; frequency baseline (always '%s'): nlu %.3f, s2s %.3f\n",
               valid_seqs.size(), vocab.token(top).c_str(), baseline["nlu"], baseline["s2s"]);

  typename Model::Cache cache;
  Tensor<B, float> logits;
  samplers::Seq2SeqBatch<B> b;
  const optim::GradientAccumulation acc{o.accum};
  train::ProgressBar bar(o.steps, "tok/s", ts.step);
  auto save = [&] {
    ts.cursor = batch;
    ts.extra["pool_position"] = pool_pos;
    ts.extra["fingerprint"] = fingerprint(o, cfg);
    io::save_checkpoint(ckpt, ps, state, ts);
  };
  ps.zero_grad();
  for (std::int64_t step = ts.step + 1; step <= o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    objectives::MultiTaskResult sum;
    double step_loss = 0;  // the optimised objective: mean over micro-batches of their totals
    index_t tokens = 0;
    for (long micro = 0; micro < o.accum; ++micro) {
      samplers::collate<B>(pool.examples, next_batch(), b);
      logits.resize(Shape{b.dec_ids.dim(0), b.dec_ids.dim(1), cfg.vocab_size});
      model.forward(b.enc_ids.cview(), b.enc_valid.cview(), b.dec_ids.cview(), logits.view(), cache, 0, b.dec_valid.cview());
      const auto r = loss(logits.cview(), b.labels.cview(), b.task, logits.view());  // logits become d loss / d logits
      if (acc.micro_batches > 1) ops<B>::scale(logits.cview(), static_cast<float>(acc.loss_weight()), logits.view());
      model.backward(logits.cview(), cache);
      sum.add(r);
      step_loss += r.total * acc.loss_weight();
      tokens += b.input_tokens + b.target_tokens;
    }
    sum.total = step_loss;
    const double grad_norm = o.clip > 0 ? optim::clip_grad_norm(ps, o.clip) : 0.0;
    const double lr = schedule.at(step);
    if (adamw) adamw->step(lr);
    else adafactor->step(lr);
    ps.zero_grad();
    ts.step = step;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    nlohmann::json rec = {{"split", "train"}, {"step", step}, {"loss", sum.total}, {"lr", lr}, {"grad_norm", grad_norm},
                          {"tokens", tokens}, {"tokens_per_s", double(tokens) / secs}, {"epoch", ts.epoch}};
    for (auto& [k, v] : task_metrics(sum, "")) rec[k] = v;
    metrics.write(rec);
    bar.update(step, {{"loss", sum.total}, {"nlu", sum.tasks[0].loss}, {"s2s", sum.tasks[1].loss}}, double(tokens));

    if (step % o.eval_every == 0 || step == o.steps) {
      const auto v = evaluate<B>(model, valid, loss, cache, logits);
      nlohmann::json vr = {{"split", "valid"}, {"step", step}, {"loss", v.total}};
      for (auto& [k, val] : task_metrics(v, "")) vr[k] = val;
      for (auto& [k, val] : baseline) vr[k + "_baseline_acc"] = val;
      metrics.write(vr);
      std::fprintf(stderr, "%sstep %lld  valid loss %.4f  nlu %.4f (masked-residue acc %.3f)  s2s %.4f (acc %.3f)\n",
                   isatty(fileno(stderr)) ? "\n" : "", (long long)step, v.total, v.tasks[0].loss, v.tasks[0].residue_accuracy(),
                   v.tasks[1].loss, v.tasks[1].residue_accuracy());
    }
    if (step % o.checkpoint_every == 0 || step == o.steps) save();
  }
  bar.finish();
  const std::string model_dir = (fs::path(o.out) / "model").string();
  io::save_t5(model, model_dir);
  std::fprintf(stderr, "ankh3_pretrain: wrote %s, %s and %s/\n", metrics_path.c_str(), ckpt.c_str(), model_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Ankh3 multi-task pre-training ([NLU] span denoising + [S2S] completion) of a T5 encoder-decoder on a FASTA file"};
  app.option_defaults()->always_capture_default();
  auto* g = app.add_option_group("data");
  g->add_option("--train", o.train, "training FASTA (plain or .gz)");
  g->add_option("--valid", o.valid, "held-out FASTA; default: --valid-fraction of --train");
  g->add_option("--valid-fraction", o.valid_fraction, "share of --train records held out");
  g->add_option("--valid-max", o.valid_max, "at most this many held-out sequences are evaluated");
  g->add_option("--min-length", o.min_length, "skip shorter sequences");
  g->add_option("--max-length", o.max_length, "longer sequences follow --too-long (0 = unlimited)");
  g->add_option("--too-long", o.too_long, "skip, crop-random, crop-start or error");
  g->add_option("--rare", o.rare, "rare residues X B Z U O: keep, unk or error");
  g->add_option("--vocab", o.vocab, "ankh3, ankh, or a tokenizer.json / vocabulary file");
  g->add_option("--pool", o.pool, "records batched together (length buckets form inside a pool)");
  auto* t = app.add_option_group("tasks");
  t->add_option("--mask-probs", o.mask_probs, "[NLU] masking probabilities, one drawn per example")->delimiter(',');
  t->add_option("--mean-span", o.mean_span, "mean masked span length (1 = Ankh3, 3 = T5)");
  t->add_flag("--mask-per-batch", o.mask_per_batch, "draw the masking probability once per batch");
  t->add_option("--split-min", o.split_min, "[S2S] smallest prefix fraction");
  t->add_option("--split-max", o.split_max, "[S2S] largest prefix fraction");
  t->add_option("--nlu-mix", o.nlu_mix, "sampling odds of [NLU] examples");
  t->add_option("--s2s-mix", o.s2s_mix, "sampling odds of [S2S] examples");
  t->add_option("--nlu-weight", o.nlu_weight, "loss weight of [NLU]");
  t->add_option("--s2s-weight", o.s2s_weight, "loss weight of [S2S]");
  t->add_option("--label-smoothing", o.label_smoothing);
  auto* m = app.add_option_group("model");
  m->add_option("--model", o.model, "demo, ankh3-tiny, ankh3-small, ankh3-large, ...");
  m->add_option("--init", o.init, "start from this Hugging Face T5 checkpoint directory");
  m->add_option("--d-model", o.d_model);
  m->add_option("--d-ff", o.d_ff);
  m->add_option("--heads", o.heads);
  m->add_option("--d-kv", o.d_kv);
  m->add_option("--layers", o.layers, "encoder layers");
  m->add_option("--decoder-layers", o.decoder_layers);
  auto* op = app.add_option_group("optimisation");
  op->add_option("--optimizer", o.optimizer, "adamw, adafactor (scheduled lr) or adafactor-relative (its own step size)");
  op->add_option("--lr", o.lr);
  op->add_option("--bias-lr", o.bias_lr, "learning-rate multiplier of the relative position bias tables (no weight decay)");
  op->add_option("--schedule", o.schedule, "constant, linear, cosine or inverse-sqrt, after --warmup");
  op->add_option("--warmup", o.warmup, "linear warm-up steps");
  op->add_option("--weight-decay", o.weight_decay);
  op->add_option("--clip", o.clip, "global gradient-norm limit (0 = off)");
  op->add_option("--steps", o.steps, "optimizer steps");
  op->add_option("--accum", o.accum, "micro-batches per step");
  op->add_option("--token-budget", o.token_budget, "padded input + target tokens per micro-batch");
  op->add_option("--max-rows", o.max_rows, "sequences per micro-batch (0 = budget only)");
  op->add_option("--window", o.window, "examples sorted by length together");
  auto* r = app.add_option_group("run");
  r->add_option("--out", o.out, "output directory");
  r->add_flag("--resume", o.resume, "continue from --out/checkpoint.safetensors");
  r->add_option("--eval-every", o.eval_every);
  r->add_option("--checkpoint-every", o.checkpoint_every);
  r->add_option("--seed", o.seed);
  r->add_option("--threads", o.threads, "CPU threads (0 = all)");
  train::add_device_options(*r, o.device);
  CLI11_PARSE(app, argc, argv);
  try {
    return train::run_on_device(o.device, [&](auto backend) { return run<decltype(backend)>(o); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nankh3_pretrain: %s\n", e.what());
    return 1;
  }
}
