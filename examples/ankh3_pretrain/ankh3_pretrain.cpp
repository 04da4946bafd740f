// ankh3_pretrain: Ankh3 multi-task pre-training ([NLU] span denoising with several masking probabilities jointly
// with [S2S] sequence completion) of a T5 encoder-decoder on a FASTA file; by default a small model on the bundled
// Swiss-Prot families, minutes on a laptop CPU. Writes into --out: metrics.jsonl (one line per step and evaluation),
// checkpoint.safetensors (model + optimizer + data cursor, atomic: kill it and --resume continues exactly) and model/
// (a Hugging Face T5 checkpoint). The loop is written out on purpose: plm gives the pieces, the loop stays yours.
// Under mpirun / srun every rank trains on its share of the batches (dist::DataParallel); rank 0 writes the files.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <plm/dist/data_parallel.hpp>
#include <plm/dist/environment.hpp>
#include <plm/io/checkpoint.hpp>
#include <plm/io/t5_checkpoint.hpp>
#include <plm/io/tokenizer_files.hpp>
#include <plm/nn/t5.hpp>
#include <plm/objectives/multitask.hpp>
#include <plm/optim/clip.hpp>
#include <plm/optim/optimizer.hpp>
#include <plm/optim/schedule.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/pretrain_stream.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/distributed.hpp>
#include <plm/train/metrics.hpp>
#include <plm/train/progress.hpp>
#include <plm/train/run_directory.hpp>
#include <plm/train/seq2seq_step.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
namespace fs = std::filesystem;

struct Options {
  // Data and tasks go straight into the library's option structs. The training file holds 4,000 proteins of 80
  // families (examples/data/README.md), so held-out proteins have relatives in the training part, as in real corpora;
  // on the random sample (swissprot_sample.fasta.gz) a few minutes of training stay at the residue-frequency baseline.
  samplers::PretrainStreamOptions data = [] {
    samplers::PretrainStreamOptions d;  // valid_fraction 0.05, valid_max 200, pool 2000, window 1024
    d.train = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_families.fasta.gz";
    d.fasta.min_length = 20, d.fasta.max_length = 128, d.batching.token_budget = 2048;
    return d;
  }();
  samplers::Ankh3Options tasks = [] { samplers::Ankh3Options t; t.mask_probabilities = {0.1, 0.2, 0.3}; return t; }();  // span 1, split 0.5
  std::string too_long = "crop-random", rare = "keep", vocab = "ankh3";
  double nlu_weight = 1.0, s2s_weight = 1.0, label_smoothing = 0.0;  // loss weights
  std::string model = "demo", init;  // model; init: a Hugging Face T5 checkpoint directory to start from
  long d_model = 0, d_ff = 0, heads = 0, d_kv = 0, layers = 0, decoder_layers = 0;
  // optimisation. lr 1e-3: on the family sample the default run completes 71%
  // of held-out residues correctly at 1e-3 against 49% at 3e-3 (docs/pretraining.md).
  std::string optimizer = "adamw", schedule = "cosine";
  double lr = 1e-3, weight_decay = 0.01, clip = 1.0;
  // Learning-rate multiplier of the relative position bias tables. They are T5's only source of position, and Adam
  // moves each entry by about lr per step: at the base rate a short run learns no local context at all.
  double bias_lr = 30.0;
  long warmup = 100, steps = 2500, accum = 1;
  std::string out = "ankh3_run";  // run
  bool resume = false, overwrite = false;
  long eval_every = 250, checkpoint_every = 250;
  std::uint64_t seed = 1;
  int threads = 0;  // 0 = all cores (shared by the ranks of one machine)
  train::DeviceOptions device;
  train::DistOptions dist;
};

nn::T5Config make_config(const Options& o, std::int32_t vocab_size) {
  nn::T5Config c = o.model == "demo" ? nn::T5Config::ankh3_small() : nn::T5Config::preset(o.model);
  if (o.model == "demo")  // small enough to learn something in minutes on 2 cores
    c.d_model = 128, c.d_kv = 32, c.num_heads = 4, c.d_ff = 320, c.num_layers = 4, c.num_decoder_layers = 2;
  for (auto [field, value] : {std::pair{&c.d_model, o.d_model}, {&c.d_ff, o.d_ff}, {&c.num_heads, o.heads}, {&c.d_kv, o.d_kv},
                              {&c.num_layers, o.layers}, {&c.num_decoder_layers, o.decoder_layers}})
    if (value) *field = value;
  c.vocab_size = vocab_size, c.feed_forward_proj = "gated-silu";
  return c;  // the model validates it
}

// What a resume must share with its run besides the data settings the stream checks itself
// (model: d_model, d_ff, heads, d_kv, layers, decoder layers, vocabulary).
// Micro-batches per step over all ranks: a job resumes on any number of ranks that keeps it.
nlohmann::json fingerprint(const Options& o, const nn::T5Config& c, std::int64_t micro_batches_per_step) {
  return {{"vocab", o.vocab}, {"optimizer", o.optimizer}, {"micro_batches_per_step", micro_batches_per_step},
          {"model", {c.d_model, c.d_ff, c.num_heads, c.d_kv, c.num_layers, c.num_decoder_layers, c.vocab_size}}};
}

nlohmann::json record(const char* split, std::int64_t step, const objectives::MultiTaskResult& r) {
  nlohmann::json j = {{"split", split}, {"step", step}, {"loss", r.total}};
  for (const auto& t : r.tasks) j[t.name + "_loss"] = t.loss, j[t.name + "_acc"] = t.residue_accuracy();
  return j;
}

template <class B>
int run(const Options& o, dist::Communicator& comm) {
  using Model = nn::Ankh3Model<B, float>;
  const bool lead = comm.rank() == 0;  // writes the files, the metrics and the progress
  train::set_threads_for_rank(o.threads);
  if (const std::string w = blas_kernel_warning(); !w.empty() && lead) std::fprintf(stderr, "%s\n", w.c_str());
  PLM_CHECK(o.steps > 0 && o.accum > 0 && o.eval_every > 0 && o.checkpoint_every > 0, "--steps, --accum, --eval-every, --checkpoint-every must be > 0");
  // An earlier run in --out is refused unless --resume or --overwrite says what to do with it.
  std::optional<train::RunDirectory> run_dir;
  if (lead) run_dir.emplace(o.out, std::vector<std::string>{"checkpoint.safetensors", "metrics.jsonl", "model"}, o.resume, o.overwrite);
  const std::string ckpt = (fs::path(o.out) / "checkpoint.safetensors").string(), metrics_path = (fs::path(o.out) / "metrics.jsonl").string();

  // A preset, a tokenizer directory or file (saved with the model, so transformers' AutoTokenizer and plm read the same ids).
  const data::Tokenizer tokenizer = data::Tokenizer::load(o.vocab);
  const data::Vocabulary& vocab = tokenizer.vocabulary();
  samplers::PretrainStreamOptions so = o.data;
  so.fasta.too_long = data::parse_too_long_policy(o.too_long), so.encode.rare = data::parse_rare_policy(o.rare);
  samplers::Ankh3Options ao = o.tasks;
  so.seed = so.fasta.seed = ao.seed = o.seed;  // one seed keys every draw
  samplers::PretrainStream stream(so, vocab, samplers::Ankh3Sampler(ao, samplers::ankh3_tokens(vocab)));
  stream.shard(comm.rank(), comm.size());  // rank r takes batch r of every comm.size()

  Model model = o.init.empty() ? Model(make_config(o, vocab.size()), o.seed) : io::load_t5<Model>(o.init);
  const nn::T5Config& cfg = model.config();
  PLM_CHECK(cfg.vocab_size >= vocab.size(), "model vocabulary ", cfg.vocab_size, " is smaller than the tokenizer's ", vocab.size());
  auto& ps = model.params();
  dist::DataParallel<B, float> dp(comm, ps, {o.dist.zero1, o.accum});
  if (lead) std::fprintf(stderr, "ankh3_pretrain: model d_model %ld, %ld+%ld layers, %ld heads, d_ff %ld, %.2fM parameters\n", long(cfg.d_model),
               long(cfg.num_layers), long(cfg.num_decoder_layers), long(cfg.num_heads), long(cfg.d_ff), double(ps.numel()) / 1e6);
  const samplers::ExamplePool valid = stream.held_out();  // fixed examples and batches: the same masks at every evaluation
  const auto baseline = samplers::residue_frequency_baseline(stream.first_pool_records(), valid.examples, vocab);
  if (lead) std::fprintf(stderr, "ankh3_pretrain: %zu held-out sequences; frequency baseline (always '%s'): nlu %.3f, s2s %.3f\n",
               valid.examples.size(), vocab.token(baseline.token).c_str(), baseline.accuracy.at("nlu"), baseline.accuracy.at("s2s"));
  objectives::MultiTask<B, float> loss({{"nlu", o.nlu_weight}, {"s2s", o.s2s_weight}}, vocab.residue_ids(), -100, o.label_smoothing);
  optim::ParamGroups groups;  // the relative position bias tables: --bias-lr, no weight decay
  for (auto s : {"encoder", "decoder"}) groups.add(std::string(s) + ".block.0.layer.0.SelfAttention.relative_attention_bias.", {o.bias_lr, false});
  auto opt = optim::make_optimizer<B, float>(o.optimizer, ps, {o.weight_decay}, groups, dp.optimizer_range());
  const auto state = opt.named_state();  // checkpointed with the parameters (under ZeRO-1 this rank's part)
  train::report_data_parallel(dp, state, "ankh3_pretrain");
  const optim::LRSchedule schedule{o.lr, o.warmup, o.steps, optim::LRSchedule::parse(o.schedule), 0.05};

  io::TrainingState ts{0, o.seed};  // step 0; the data cursor is the stream's
  // Rank 0 reads the checkpoint; every rank gets the weights, its optimizer state and the cursor.
  const auto resumed = o.resume ? dp.resume(ckpt, state, [&](const io::TrainingState& t) {
    io::check_fingerprint(ckpt, t, fingerprint(o, cfg, dp.global_micro_batches()));
  }) : std::nullopt;
  if (resumed) {
    ts = *resumed;
    stream.restore(ts);
    opt.set_steps(ts.step);
    if (lead) std::fprintf(stderr, "ankh3_pretrain: resumed from %s at step %lld (epoch %llu)\n", ckpt.c_str(), (long long)ts.step,
                           (unsigned long long)ts.epoch);
  } else {
    dp.broadcast_parameters();  // one set of weights on every rank (an --init read by each, or the seed's)
    if (o.resume && lead) std::fprintf(stderr, "ankh3_pretrain: --resume: no checkpoint in %s yet, starting fresh\n", o.out.c_str());
  }
  PLM_CHECK(ts.step < o.steps, "the checkpoint is at step ", ts.step, ", --steps ", o.steps, " is already reached");
  if (lead) run_dir->remove_previous();  // --overwrite: only now that the model, data and checkpoint are set up
  // Appended to; with --resume first cut back to the checkpoint's step (lines of a run killed before its first checkpoint too).
  train::MetricsLog metrics = lead ? train::MetricsLog(metrics_path, o.resume ? ts.step : -1) : train::MetricsLog();

  // Micro-batches collated (packed with --packed), through the model and the loss.
  train::Seq2SeqStep<B, float, Model> micro_batch(o.data.batching.packed);
  std::optional<train::ProgressBar> bar;
  if (lead) bar.emplace(o.steps, "tok/s", ts.step);
  ps.zero_grad();
  for (std::int64_t step = ts.step + 1; step <= o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    objectives::MultiTaskResult sum;
    double step_loss = 0;  // the optimised objective: mean over all ranks' micro-batches of their totals
    double tokens = 0;
    for (long micro = 0; micro < o.accum; ++micro) {
      const auto& rows = stream.next();
      // Dropout keyed by the micro-batch's index in the whole step; logits become d loss / d logits.
      const auto r = micro_batch.run(model, loss, stream.pool().examples, rows, nn::Pass::train(dp.micro_key(step, micro)), true);
      Tensor<B, float>& dlogits = micro_batch.logits();
      if (dp.global_micro_batches() > 1) ops<B>::scale(dlogits.cview(), static_cast<float>(dp.loss_weight()), dlogits.view());
      model.backward(dlogits.cview(), micro_batch.cache());
      dp.micro_batch_done();
      sum.add(r);
      step_loss += r.total * dp.loss_weight();
      tokens += double(micro_batch.tokens());
    }
    if (comm.size() > 1) {  // every rank's figures, folded in rank order (as one process folds its micro-batches)
      sum = train::fold_over_ranks(comm, sum, loss.tasks(), "the step's losses");
      const auto s = dist::sum_over_ranks(comm, {step_loss, tokens}, "the step's losses");
      step_loss = s[0], tokens = s[1];
    }
    sum.total = step_loss;
    const double grad_norm = dp.reduce_gradients(o.clip);  // NaN / Inf: an error naming the parameter, on every rank
    const double lr = schedule.at(step);
    opt.step(lr);
    dp.finish_step();
    ts.step = step;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto rec = record("train", step, sum);
    rec.update({{"lr", lr}, {"grad_norm", grad_norm}, {"tokens", std::int64_t(tokens)}, {"tokens_per_s", tokens / secs},
                {"epoch", stream.cursor().epoch}});
    if (comm.size() > 1) rec["sync_s"] = dp.step_sync_seconds();  // time in collectives, waits for slower ranks included
    metrics.write(rec);
    if (bar) bar->update(step, {{"loss", sum.total}, {"nlu", sum.tasks[0].loss}, {"s2s", sum.tasks[1].loss}}, tokens);
    if (step % o.eval_every == 0 || step == o.steps) {
      // Rank r evaluates held-out batches r, r + ranks, ...; folded in batch order, as one process would.
      const auto v = train::evaluate_shared(comm, valid.batches.size(), loss.tasks(), "the held-out losses", [&](std::size_t i) {
        return micro_batch.run(model, loss, valid.examples, valid.batches[i], nn::Pass::eval(), false);
      });
      auto vr = record("valid", step, v);
      for (const auto& [task, accuracy] : baseline.accuracy) vr[task + "_baseline_acc"] = accuracy;
      metrics.write(vr);
      if (lead) std::fprintf(stderr, "%sstep %lld  valid loss %.4f  nlu %.4f (masked-residue acc %.3f)  s2s %.4f (acc %.3f)\n",
                   isatty(fileno(stderr)) ? "\n" : "", (long long)step, v.total, v.tasks[0].loss, v.tasks[0].residue_accuracy(),
                   v.tasks[1].loss, v.tasks[1].residue_accuracy());
    }
    if (step % o.checkpoint_every == 0 || step == o.steps) {
      stream.save(ts);  // data cursor: epoch, pool, batch, and the stream's settings
      metrics.sync();  // the log is on disk at least up to the checkpoint
      ts.extra["fingerprint"] = fingerprint(o, cfg, dp.global_micro_batches());
      dp.save_checkpoint(ckpt, state, ts);  // rank 0 writes; under ZeRO-1 the others send it their optimizer state
    }
  }
  if (!lead) return 0;
  bar->finish();
  const std::string model_dir = (fs::path(o.out) / "model").string();
  io::save_t5(model, model_dir);
  io::save_tokenizer(tokenizer, model_dir);
  io::save_generation_config(model.config(), model_dir);
  std::fprintf(stderr, "ankh3_pretrain: wrote %s, %s and %s/\n", metrics_path.c_str(), ckpt.c_str(), model_dir.c_str());
  return 0;
}

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Ankh3 multi-task pre-training ([NLU] span denoising + [S2S] completion) of a T5 encoder-decoder on a FASTA file"};
  app.option_defaults()->always_capture_default();
  auto* g = app.add_option_group("data");
  // Every value is checked while parsing (plm/train/cli.hpp); errors name the option.
  using namespace train::cli;
  using C = nn::T5Config;
  g->add_option("--train", o.data.train, "training FASTA (plain or .gz)")->check(CLI::ExistingFile);
  g->add_option("--valid", o.data.valid, "held-out FASTA; default: --valid-fraction of --train")->check(CLI::ExistingFile);
  g->add_option("--valid-fraction", o.data.valid_fraction, "share of --train records held out")->check(fraction(Interval::closed_open));
  g->add_option("--valid-max", o.data.valid_max, "at most this many held-out sequences are evaluated")->check(at_least(1));
  g->add_option("--min-length", o.data.fasta.min_length, "skip shorter sequences")->check(non_negative());
  g->add_option("--max-length", o.data.fasta.max_length, "longer sequences follow --too-long (0 = unlimited)")->check(non_negative());
  g->add_option("--too-long", o.too_long, "skip, crop-random, crop-start or error")->check(one_of({"skip", "crop-random", "crop-start", "error"}));
  g->add_option("--rare", o.rare, "rare residues X B Z U O: keep, unk or error")->check(one_of({"keep", "unk", "error"}));
  g->add_option("--vocab", o.vocab, "ankh3, ankh, a tokenizer directory, tokenizer.json, spiece.model or a vocabulary file")
      ->check(one_of_or_file({"ankh3", "ankh"}, true));
  g->add_option("--pool", o.data.pool, "records batched together (length buckets form inside a pool)")->check(at_least(1));
  auto* t = app.add_option_group("tasks");
  t->add_option("--mask-probs", o.tasks.mask_probabilities, "[NLU] masking probabilities, one drawn per example")->delimiter(',')
      ->check(fraction());
  t->add_option("--mean-span", o.tasks.mean_span_length, "mean masked span length (1 = Ankh3, 3 = T5)")->check(at_least(1));
  t->add_flag("--mask-per-batch", o.tasks.probability_per_batch, "draw the masking probability once per batch");
  t->add_option("--split-min", o.tasks.split.min_fraction, "[S2S] smallest prefix fraction")->check(fraction());
  t->add_option("--split-max", o.tasks.split.max_fraction, "[S2S] largest prefix fraction")->check(fraction());
  t->add_option("--nlu-mix", o.tasks.nlu_weight, "sampling odds of [NLU] examples")->check(non_negative());
  t->add_option("--s2s-mix", o.tasks.s2s_weight, "sampling odds of [S2S] examples")->check(non_negative());
  t->add_option("--nlu-weight", o.nlu_weight, "loss weight of [NLU]")->check(non_negative());
  t->add_option("--s2s-weight", o.s2s_weight, "loss weight of [S2S]")->check(non_negative());
  t->add_option("--label-smoothing", o.label_smoothing)->check(fraction(Interval::closed_open));
  auto* m = app.add_option_group("model");
  m->add_option("--model", o.model, "demo, ankh3-tiny, ankh3-small, ankh3-large, ankh-base or ankh-large")
      ->check(one_of({"demo", "ankh3-tiny", "ankh3-small", "ankh3-large", "ankh-base", "ankh-large"}));
  m->add_option("--init", o.init, "start from this Hugging Face T5 checkpoint directory")->check(CLI::ExistingDirectory);
  // The sizes replace the --model's (0 = keep its value).
  m->add_option("--d-model", o.d_model)->check(in_range(index_t(0), C::max_width));
  m->add_option("--d-ff", o.d_ff)->check(in_range(index_t(0), C::max_width));
  m->add_option("--heads", o.heads)->check(in_range(index_t(0), C::max_heads));
  m->add_option("--d-kv", o.d_kv, "width of each head")->check(in_range(index_t(0), C::max_width));
  m->add_option("--layers", o.layers, "encoder layers")->check(in_range(index_t(0), C::max_depth));
  m->add_option("--decoder-layers", o.decoder_layers)->check(in_range(index_t(0), C::max_depth));
  auto* op = app.add_option_group("optimisation");
  op->add_option("--optimizer", o.optimizer, "adamw, adafactor (scheduled lr) or adafactor-relative (its own step size)")
      ->check(one_of({"adamw", "adafactor", "adafactor-relative"}));
  op->add_option("--lr", o.lr)->check(positive());
  op->add_option("--bias-lr", o.bias_lr, "learning-rate multiplier of the relative position bias tables (no weight decay)")
      ->check(non_negative());
  op->add_option("--schedule", o.schedule, "constant, linear, cosine or inverse-sqrt, after --warmup")
      ->check(one_of({"constant", "linear", "cosine", "inverse-sqrt"}));
  op->add_option("--warmup", o.warmup, "linear warm-up steps")->check(non_negative());
  op->add_option("--weight-decay", o.weight_decay)->check(non_negative());
  op->add_option("--clip", o.clip, "global gradient-norm limit (0 = off)")->check(non_negative());
  op->add_option("--steps", o.steps, "optimizer steps")->check(at_least(1));
  op->add_option("--accum", o.accum, "micro-batches per step")->check(at_least(1));
  op->add_option("--token-budget", o.data.batching.token_budget, "input + target tokens per micro-batch, padding included unless --packed")
      ->check(at_least(1));
  op->add_flag("--packed", o.data.batching.packed, "pack each micro-batch's sequences end to end: no compute on padding");
  op->add_option("--max-rows", o.data.batching.max_rows, "sequences per micro-batch (0 = budget only)")->check(non_negative());
  op->add_option("--window", o.data.batching.window, "examples sorted by length together (0 = the whole pool)")->check(non_negative());
  train::add_run_options(*app.add_option_group("run"), o);
  train::add_dist_options(*app.add_option_group("distributed"), o.dist);
  app.callback([&] {  // rules between options, still at parse time
    const auto& f = o.data.fasta;
    if (f.max_length > 0 && f.min_length > f.max_length)
      throw CLI::ValidationError("--min-length", str(f.min_length) + " exceeds --max-length " + str(f.max_length));
    if (o.data.valid.empty() && o.data.valid_fraction == 0)
      throw CLI::ValidationError("--valid-fraction", "0 holds nothing out: give a share in (0, 1) or a --valid file");
    if (o.tasks.split.min_fraction > o.tasks.split.max_fraction)
      throw CLI::ValidationError("--split-min", str(o.tasks.split.min_fraction) + " exceeds --split-max " + str(o.tasks.split.max_fraction));
    if (o.tasks.nlu_weight == 0 && o.tasks.s2s_weight == 0) throw CLI::ValidationError("--nlu-mix", "0 with --s2s-mix 0: no task is ever sampled");
    if (o.nlu_weight == 0 && o.s2s_weight == 0) throw CLI::ValidationError("--nlu-weight", "0 with --s2s-weight 0: neither loss counts");
    if (o.init.empty()) {  // the sizes together (products, d_kv * heads), before any work; the vocabulary's size comes later
      try {
        make_config(o, 256).validate();
      } catch (const Error& e) {
        throw CLI::ValidationError("--model " + o.model + " with --d-model, --d-ff, --heads, --d-kv, --layers, --decoder-layers", e.what());
      }
    }
  });
  CLI11_PARSE(app, argc, argv);
  return train::run_job(argc, argv, "ankh3_pretrain", o.dist, o.device, [&](auto backend, dist::Communicator& comm) {
    return run<decltype(backend)>(o, comm);
  });
}
