// esm2_pretrain: ESM-2 masked-language-model pre-training (15% of residues selected; of those 80% <mask>, 10% a
// random residue, 10% kept) of an ESM-2-shaped encoder (rotary positions, token dropout) on a FASTA file; by default a
// small model on the bundled Swiss-Prot sample, minutes on a laptop CPU. Writes into --out: metrics.jsonl (one line
// per step and evaluation), checkpoint.safetensors (model + optimizer + data cursor, atomic: kill it and --resume
// continues exactly) and model/ (a Hugging Face ESM directory: EsmForMaskedLM.from_pretrained and AutoTokenizer read
// it). The loop is written out on purpose: plm gives the pieces, the loop stays yours.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <plm/dist/data_parallel.hpp>
#include <plm/io/checkpoint.hpp>
#include <plm/io/esm_checkpoint.hpp>
#include <plm/io/tokenizer_files.hpp>
#include <plm/nn/esm.hpp>
#include <plm/objectives/cross_entropy.hpp>
#include <plm/optim/clip.hpp>
#include <plm/optim/optimizer.hpp>
#include <plm/optim/schedule.hpp>
#include <plm/plm.hpp>
#include <plm/samplers/mlm_stream.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/distributed.hpp>
#include <plm/train/metrics.hpp>
#include <plm/train/progress.hpp>
#include <plm/train/run_directory.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#ifndef PLM_EXAMPLE_DATA_DIR
#define PLM_EXAMPLE_DATA_DIR "examples/data"
#endif

using namespace plm;
namespace fs = std::filesystem;

struct Options {
  // Data: 4,000 Swiss-Prot proteins drawn at random (examples/data/README.md); 5% held out by a hash of the record index.
  samplers::PretrainStreamOptions data = [] {
    samplers::PretrainStreamOptions d;  // valid_fraction 0.05, valid_max 200, pool 2000, window 1024
    d.train = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample.fasta.gz";
    d.fasta.min_length = 20, d.fasta.max_length = 256, d.batching.token_budget = 4096;
    return d;
  }();
  samplers::MlmOptions masking;  // ESM-2: select 15%, of those 80% <mask>, 10% random, 10% kept
  std::string too_long = "crop-random", rare = "keep";
  // Model: ESM-2's shape (pre-norm blocks, rotary, erf-GELU FFN 4x, token dropout), small enough for minutes on 2 cores.
  long layers = 4, hidden = 128, heads = 4, ffn = 0;  // ffn 0: 4 x hidden
  bool token_dropout = true;
  // Optimisation (ESM-2: AdamW, warm-up, then linear decay to a tenth).
  std::string optimizer = "adamw", schedule = "linear";
  double lr = 2e-3, weight_decay = 0.01, clip = 1.0;
  long warmup = 100, steps = 800, accum = 1;
  std::string out = "esm2_run";  // run
  bool resume = false, overwrite = false;
  long eval_every = 200, checkpoint_every = 200;
  std::uint64_t seed = 1;
  int threads = 0;  // 0 = all cores (shared by the ranks of one machine)
  train::DeviceOptions device;
  train::DistOptions dist;
};

nn::EsmConfig make_config(const Options& o, const data::Vocabulary& vocab) {
  nn::EsmConfig c;
  c.num_hidden_layers = o.layers, c.hidden_size = o.hidden, c.num_attention_heads = o.heads;
  c.intermediate_size = o.ffn ? o.ffn : 4 * o.hidden;
  c.token_dropout = o.token_dropout;
  c.vocab_size = vocab.size(), c.pad_token_id = vocab.pad_id();
  if (const auto mask = vocab.find("<mask>")) c.mask_token_id = *mask;
  return c;  // the model validates it
}

// What a resume must share with its run besides the data and masking settings the stream checks itself.
// Micro-batches per step over all ranks: a job resumes on any number of ranks that keeps it.
nlohmann::json fingerprint(const Options& o, const nn::EsmConfig& c, std::int64_t micro_batches_per_step) {
  return {{"optimizer", o.optimizer},
          {"micro_batches_per_step", micro_batches_per_step},
          {"model", {c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size, c.token_dropout}}};
}

template <class B>
int run(const Options& o, dist::Communicator& comm) {
  using Model = nn::EsmModel<B, float>;
  const bool lead = comm.rank() == 0;  // writes the files, the metrics and the progress
  train::set_threads_for_rank(o.threads);
  if (const std::string w = blas_kernel_warning(); !w.empty() && lead) std::fprintf(stderr, "%s\n", w.c_str());
  // An earlier run in --out is refused unless --resume or --overwrite says what to do with it.
  std::optional<train::RunDirectory> run_dir;
  if (lead) run_dir.emplace(o.out, std::vector<std::string>{"checkpoint.safetensors", "metrics.jsonl", "model"}, o.resume, o.overwrite);
  const std::string ckpt = (fs::path(o.out) / "checkpoint.safetensors").string(), metrics_path = (fs::path(o.out) / "metrics.jsonl").string();

  const data::Tokenizer tokenizer = data::Tokenizer::esm2();  // the 33-token ESM alphabet, saved with the model
  const data::Vocabulary& vocab = tokenizer.vocabulary();
  samplers::PretrainStreamOptions so = o.data;
  so.fasta.too_long = data::parse_too_long_policy(o.too_long), so.encode.rare = data::parse_rare_policy(o.rare);
  samplers::MlmOptions mo = o.masking;
  so.seed = so.fasta.seed = mo.seed = o.seed;  // one seed keys every draw
  samplers::MlmStream stream(so, vocab, samplers::MlmExamples(mo, samplers::mlm_tokens(vocab)));
  stream.shard(comm.rank(), comm.size());  // rank r takes batch r of every comm.size()
  const samplers::MlmPool valid = stream.held_out();  // fixed examples and batches: the same masks at every evaluation
  // The held-out examples again, counting only the positions whose input is <mask> (the 80% a model cannot copy).
  samplers::MlmPool valid_at_mask = valid;
  for (auto& e : valid_at_mask.examples)
    for (std::size_t t = 0; t < e.ids.size(); ++t)
      if (e.ids[t] != stream.maker().tokens().mask) e.labels[t] = -100;
  // Always the most frequent masked target of the first training pool, scored on the held-out masked positions.
  const auto baseline = samplers::mlm_frequency_baseline(stream.pool().examples, valid.examples);
  const auto baseline_at_mask = samplers::mlm_frequency_baseline(stream.pool().examples, valid_at_mask.examples);

  Model model(make_config(o, vocab), o.seed);
  const nn::EsmConfig& cfg = model.config();
  auto& ps = model.params();
  dist::DataParallel<B, float> dp(comm, ps, {o.dist.zero1, o.accum});
  if (lead) std::fprintf(stderr, "esm2_pretrain: model %ld layers, hidden %ld, %ld heads, ffn %ld, token dropout %s, %.2fM parameters\n",
               long(cfg.num_hidden_layers), long(cfg.hidden_size), long(cfg.num_attention_heads), long(cfg.intermediate_size),
               cfg.token_dropout ? "on" : "off", double(ps.numel()) / 1e6);
  if (lead) std::fprintf(stderr,
               "esm2_pretrain: %zu held-out sequences, %lld selected positions (%lld with <mask> input); frequency baseline (always '%s'): "
               "accuracy %.4f (%.4f at <mask>)\n",
               valid.examples.size(), (long long)baseline.positions, (long long)baseline_at_mask.positions, vocab.token(baseline.token).c_str(),
               baseline.accuracy, baseline_at_mask.accuracy);
  const objectives::CrossEntropy<B, float> loss(-100);
  auto opt = optim::make_optimizer<B, float>(o.optimizer, ps, {o.weight_decay}, {}, dp.optimizer_range());
  const auto state = opt.named_state();  // checkpointed with the parameters (under ZeRO-1 this rank's part)
  train::report_data_parallel(dp, state, "esm2_pretrain");
  const optim::LRSchedule schedule{o.lr, o.warmup, o.steps, optim::LRSchedule::parse(o.schedule), 0.1};

  io::TrainingState ts{0, o.seed};  // step 0; the data cursor is the stream's
  // Rank 0 reads the checkpoint; every rank gets the weights, its optimizer state and the cursor.
  const auto resumed = o.resume ? dp.resume(ckpt, state, [&](const io::TrainingState& t) {
    io::check_fingerprint(ckpt, t, fingerprint(o, cfg, dp.global_micro_batches()));
  }) : std::nullopt;
  if (resumed) {
    ts = *resumed;
    stream.restore(ts);
    opt.set_steps(ts.step);
    if (lead) std::fprintf(stderr, "esm2_pretrain: resumed from %s at step %lld (epoch %llu)\n", ckpt.c_str(), (long long)ts.step,
                           (unsigned long long)ts.epoch);
  } else {
    dp.broadcast_parameters();  // one set of weights on every rank
    if (o.resume && lead) std::fprintf(stderr, "esm2_pretrain: --resume: no checkpoint in %s yet, starting fresh\n", o.out.c_str());
  }
  PLM_CHECK(ts.step < o.steps, "the checkpoint is at step ", ts.step, ", --steps ", o.steps, " is already reached");
  if (lead) run_dir->remove_previous();  // --overwrite: only now that the model, data and checkpoint are set up
  // Appended to; with --resume first cut back to the checkpoint's step (lines of a run killed before its first checkpoint too).
  train::MetricsLog metrics = lead ? train::MetricsLog(metrics_path, o.resume ? ts.step : -1) : train::MetricsLog();

  typename Model::Cache cache;
  Tensor<B, float> logits;
  samplers::MlmBatch<B> b, at_mask;
  auto forward = [&](nn::Pass pass) {
    logits.resize(Shape{b.ids.dim(0), b.ids.dim(1), cfg.vocab_size});
    if (b.packed) model.forward_packed(b.ids.cview(), b.packing, logits.view(), cache, pass);
    else model.forward(b.ids.cview(), b.valid.cview(), logits.view(), cache, pass);
  };
  // Held-out masked loss, accuracy and perplexity over every selected position, and the accuracy at <mask> inputs.
  // Rank r evaluates held-out batches r, r + ranks, ...; the sums are taken in batch order, as one process would.
  auto evaluate = [&] {
    double nll = 0, n = 0, correct = 0, n_mask = 0, correct_mask = 0;
    for (const auto& row : train::shared_batch_rows(comm, valid.batches.size(), 5, "the held-out losses", [&](std::size_t k) {
           stream.collate(valid, k, b);
           stream.collate(valid_at_mask, k, at_mask);
           forward(nn::Pass::eval());
           const auto r = loss(logits.cview(), b.labels.cview()), rm = loss(logits.cview(), at_mask.labels.cview());
           return std::vector<double>{r.nll * double(r.tokens), double(r.tokens), double(r.correct), double(rm.tokens), double(rm.correct)};
         }))
      nll += row[0], n += row[1], correct += row[2], n_mask += row[3], correct_mask += row[4];
    const double mean = n ? nll / double(n) : 0.0;
    return nlohmann::json{{"loss", mean},
                          {"acc", n ? correct / n : 0.0},
                          {"perplexity", std::exp(mean)},
                          {"acc_at_mask", n_mask ? correct_mask / n_mask : 0.0},
                          {"positions", std::int64_t(n)}};
  };
  std::optional<train::ProgressBar> bar;
  if (lead) bar.emplace(o.steps, "tok/s", ts.step);
  nlohmann::json last_eval;
  ps.zero_grad();
  for (std::int64_t step = ts.step + 1; step <= o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    double step_loss = 0;  // the optimised objective: mean over all ranks' micro-batches of their masked-token means
    double masked = 0, correct = 0, tokens = 0;
    for (long micro = 0; micro < o.accum; ++micro) {
      stream.next(b);
      forward(nn::Pass::train(dp.micro_key(step, micro)));  // dropout keyed by the micro-batch's index in the whole step
      objectives::CrossEntropyResult r;
      try {
        r = loss(logits.cview(), b.labels.cview(), logits.view(), dp.loss_weight());  // logits become d loss / d logits
      } catch (const Error& e) {
        PLM_FAIL("step ", step, ": the training loss is not finite (", e.what(), "); lower --lr or raise --warmup. ",
                 ts.step ? "The checkpoint of step " + std::to_string(ts.step) + " in " + o.out + " is intact."
                         : std::string("No checkpoint was written yet."));
      }
      model.backward(logits.cview(), cache);
      dp.micro_batch_done();
      step_loss += r.loss * dp.loss_weight();
      masked += double(r.tokens), correct += double(r.correct), tokens += double(b.tokens);
    }
    if (comm.size() > 1) {  // every rank's figures, added in rank order (as one process adds its micro-batches)
      const auto s = dist::sum_over_ranks(comm, {step_loss, masked, correct, tokens}, "the step's losses");
      step_loss = s[0], masked = s[1], correct = s[2], tokens = s[3];
    }
    double grad_norm = 0;
    try {
      grad_norm = dp.reduce_gradients(o.clip);
    } catch (const Error& e) {
      PLM_FAIL("step ", step, ": ", e.what(), " (loss ", step_loss, "); lower --lr or raise --warmup. Nothing of this step was applied or saved.");
    }
    const double lr = schedule.at(step);
    opt.step(lr);
    dp.finish_step();
    ts.step = step;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double train_acc = masked ? correct / masked : 0.0;
    nlohmann::json rec = {{"split", "train"}, {"step", step}, {"loss", step_loss}, {"acc", train_acc}, {"masked", std::int64_t(masked)},
                          {"lr", lr}, {"grad_norm", grad_norm}, {"tokens", std::int64_t(tokens)}, {"tokens_per_s", tokens / secs},
                          {"epoch", stream.cursor().epoch}};
    if (comm.size() > 1) rec["sync_s"] = dp.step_sync_seconds();  // time in collectives, waits for slower ranks included
    metrics.write(rec);
    if (bar) bar->update(step, {{"loss", step_loss}, {"acc", train_acc}}, tokens);
    if (step % o.eval_every == 0 || step == o.steps) {
      last_eval = evaluate();
      nlohmann::json rec = {{"split", "valid"},
                            {"step", step},
                            {"baseline_acc", baseline.accuracy},
                            {"baseline_acc_at_mask", baseline_at_mask.accuracy},
                            {"baseline_token", vocab.token(baseline.token)}};
      rec.update(last_eval);
      metrics.write(rec);
      if (lead) std::fprintf(stderr, "%sstep %lld  held-out masked loss %.4f  perplexity %.2f  accuracy %.4f (frequency baseline %.4f), at <mask> %.4f (%.4f)\n",
                   isatty(fileno(stderr)) ? "\n" : "", (long long)step, last_eval["loss"].get<double>(), last_eval["perplexity"].get<double>(),
                   last_eval["acc"].get<double>(), baseline.accuracy, last_eval["acc_at_mask"].get<double>(), baseline_at_mask.accuracy);
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
  io::save_esm(model, model_dir);
  io::save_tokenizer(tokenizer, model_dir);
  std::fprintf(stderr,
               "esm2_pretrain: held-out masked accuracy %.4f against the frequency baseline %.4f (always '%s'); at <mask> inputs %.4f "
               "against %.4f; perplexity %.2f\n",
               last_eval["acc"].get<double>(), baseline.accuracy, vocab.token(baseline.token).c_str(), last_eval["acc_at_mask"].get<double>(),
               baseline_at_mask.accuracy, last_eval["perplexity"].get<double>());
  std::fprintf(stderr, "esm2_pretrain: wrote %s, %s and %s/\n", metrics_path.c_str(), ckpt.c_str(), model_dir.c_str());
  return 0;
}

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ESM-2 masked-language-model pre-training of an ESM-2-shaped encoder on a FASTA file"};
  app.option_defaults()->always_capture_default();
  // Every value is checked while parsing (plm/train/cli.hpp); errors name the option.
  using namespace train::cli;
  using C = nn::EsmConfig;
  auto* g = app.add_option_group("data");
  g->add_option("--train", o.data.train, "training FASTA (plain or .gz)")->check(CLI::ExistingFile);
  g->add_option("--valid", o.data.valid, "held-out FASTA; default: --valid-fraction of --train")->check(CLI::ExistingFile);
  g->add_option("--valid-fraction", o.data.valid_fraction, "share of --train records held out")->check(fraction(Interval::closed_open));
  g->add_option("--valid-max", o.data.valid_max, "at most this many held-out sequences are evaluated")->check(at_least(1));
  g->add_option("--min-length", o.data.fasta.min_length, "skip shorter sequences")->check(non_negative());
  g->add_option("--max-length", o.data.fasta.max_length, "longer sequences follow --too-long (0 = unlimited)")->check(non_negative());
  g->add_option("--too-long", o.too_long, "skip, crop-random, crop-start or error")->check(one_of({"skip", "crop-random", "crop-start", "error"}));
  g->add_option("--rare", o.rare, "rare residues X B Z U O: keep, unk or error")->check(one_of({"keep", "unk", "error"}));
  g->add_option("--pool", o.data.pool, "records batched together (length buckets form inside a pool)")->check(at_least(1));
  auto* k = app.add_option_group("masking");
  k->add_option("--select-prob", o.masking.select_probability, "share of residues that count in the loss")
      ->check(fraction(Interval::open_closed));
  k->add_option("--mask-frac", o.masking.mask_fraction, "of those, replaced by <mask>")->check(fraction(Interval::closed));
  k->add_option("--random-frac", o.masking.random_fraction, "of those, replaced by a random residue (the rest stay)")
      ->check(fraction(Interval::closed));
  auto* m = app.add_option_group("model");
  m->add_option("--layers", o.layers)->check(in_range(index_t(1), C::max_depth));
  m->add_option("--hidden", o.hidden, "width (a multiple of --heads, with an even head width)")->check(in_range(index_t(1), C::max_width));
  m->add_option("--heads", o.heads)->check(in_range(index_t(1), C::max_heads));
  m->add_option("--ffn", o.ffn, "feed-forward width (0 = 4 x --hidden)")->check(in_range(index_t(0), C::max_width));
  m->add_flag("--token-dropout,!--no-token-dropout", o.token_dropout, "ESM-2's rescaling of the embeddings by the mask ratio");
  auto* op = app.add_option_group("optimisation");
  op->add_option("--optimizer", o.optimizer, "adamw, adafactor (scheduled lr) or adafactor-relative (its own step size)")
      ->check(one_of({"adamw", "adafactor", "adafactor-relative"}));
  op->add_option("--lr", o.lr)->check(positive());
  op->add_option("--schedule", o.schedule, "constant, linear, cosine or inverse-sqrt, after --warmup (linear and cosine end at lr / 10)")
      ->check(one_of({"constant", "linear", "cosine", "inverse-sqrt"}));
  op->add_option("--warmup", o.warmup, "linear warm-up steps")->check(non_negative());
  op->add_option("--weight-decay", o.weight_decay)->check(non_negative());
  op->add_option("--clip", o.clip, "global gradient-norm limit (0 = off)")->check(non_negative());
  op->add_option("--steps", o.steps, "optimizer steps")->check(at_least(1));
  op->add_option("--accum", o.accum, "micro-batches per step")->check(at_least(1));
  op->add_option("--token-budget", o.data.batching.token_budget, "tokens per micro-batch, padding included unless --packed")
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
    if (f.max_length > 0 && index_t(f.max_length) + 2 > o.data.batching.token_budget)
      throw CLI::ValidationError("--token-budget", str(o.data.batching.token_budget) + " cannot hold one sequence of --max-length " +
                                                       str(f.max_length) + " with <cls> and <eos>");
    if (o.data.valid.empty() && o.data.valid_fraction == 0)
      throw CLI::ValidationError("--valid-fraction", "0 holds nothing out: give a share in (0, 1) or a --valid file");
    if (o.masking.mask_fraction + o.masking.random_fraction > 1)
      throw CLI::ValidationError("--mask-frac", str(o.masking.mask_fraction) + " and --random-frac " + str(o.masking.random_fraction) +
                                                    " add up to more than 1");
    if (o.hidden % o.heads != 0) throw CLI::ValidationError("--hidden", str(o.hidden) + " must be a multiple of --heads " + str(o.heads));
    try {  // the sizes together (an even head width for rotary positions), before any work
      make_config(o, data::Tokenizer::esm2().vocabulary()).validate();
    } catch (const Error& e) {
      throw CLI::ValidationError("--layers, --hidden, --heads, --ffn", e.what());
    }
  });
  CLI11_PARSE(app, argc, argv);
  return train::run_job(argc, argv, "esm2_pretrain", o.dist, o.device, [&](auto backend, dist::Communicator& comm) {
    return run<decltype(backend)>(o, comm);
  });
}
