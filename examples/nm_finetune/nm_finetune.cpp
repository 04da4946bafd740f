// nm_finetune: negative-mining fine-tuning (arXiv 2405.17902) of a T5 / Ankh or ESM-2 encoder for protein
// classification, against a supervised-only baseline on the same split (a ProtBert backbone works too). Both arms: encoder -> pair
// attention -> mean pool -> readout -> K classes, cross-entropy (train::NegativeMiningModel); the nm arm
// adds N negatives per anchor and lambda x an attention loss on each negative's attention over its anchor.
// Default data: the bundled Swiss-Prot localisation sample split by 40%-identity clusters; a benchmark's
// own split is taken as given (--split-table, or --train-fasta / --valid-fasta / --test-fasta). Early
// stopping on validation loss; validation and test accuracy and macro-F1 after every epoch (so a run cut
// short still reports), and the test figures of the best-validation epoch at the end. Writes into --out:
//   baseline/, nm/   metrics.jsonl, checkpoint.safetensors (every epoch, atomic; --resume continues from
//                    it, also with a larger --epochs), best.safetensors (lowest validation loss), test.json
//   results.json     both arms' test metrics and the split
// Under mpirun / srun each step's --accum x ranks batches are shared by the ranks (dist::DataParallel); rank 0
// writes the files.
#include <CLI/CLI.hpp>

#include <plm/data/classification_set.hpp>
#include <plm/data/tokenizer.hpp>
#include <plm/dist/data_parallel.hpp>
#include <plm/io/backbone.hpp>
#include <plm/io/checkpoint.hpp>
#include <plm/nn/t5.hpp>
#include <plm/optim/clip.hpp>
#include <plm/optim/optimizer.hpp>
#include <plm/plm.hpp>
#include <plm/train/cli.hpp>
#include <plm/train/device.hpp>
#include <plm/train/distributed.hpp>
#include <plm/train/metrics.hpp>
#include <plm/train/run_directory.hpp>
#include <plm/train/negative_mining.hpp>
#include <plm/train/progress.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>

using namespace plm;
namespace fs = std::filesystem;
namespace {

struct Options {
  std::string fasta = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample.fasta.gz";
  std::string labels = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample_labels.tsv";
  std::string clusters = std::string(PLM_EXAMPLE_DATA_DIR) + "/swissprot_sample_clusters.tsv";
  std::string split_table, train_fasta, valid_fasta, test_fasta;  // a split given with the data
  double valid_fraction = 0.1, test_fraction = 0.2;
  std::size_t min_class_size = 40, max_length = 1024, limit = 0;
  std::string vocab, tokenize = "words", backbone;  // backbone: a Hugging Face T5 / Ankh or ESM directory; empty: a random encoder
  long d_model = 128, d_ff = 320, heads = 4, layers = 4, readout = 128;
  bool freeze = false, scaled = false;
  std::string arms = "both", loss = "squared", negatives_from = "label";
  double lambda = 0.1, margin = 0.1;
  long negatives = 2, hard_pool = 10;
  double lr = 1e-3, backbone_lr_mult = 0.3, weight_decay = 1e-5, clip = 1.0;
  long epochs = 6, batch = 32, patience = 3, accum = 1;
  std::string out = "nm_run";
  bool resume = false, overwrite = false;
  std::uint64_t seed = 1;
  int threads = 0;
  train::DeviceOptions device;
  train::DistOptions dist;
};

// What must not change between a run and its resume.
// Batches per step over all ranks: a job resumes on any number of ranks that keeps it.
nlohmann::json fingerprint(const Options& o, bool nm, std::int64_t batches_per_step) {
  nlohmann::json j = {{"fasta", o.fasta}, {"labels", o.labels}, {"clusters", o.clusters}, {"split_table", o.split_table},
                      {"train_fasta", o.train_fasta}, {"valid_fasta", o.valid_fasta}, {"test_fasta", o.test_fasta},
                      {"tokenize", o.tokenize}, {"valid_fraction", o.valid_fraction},
                      {"test_fraction", o.test_fraction}, {"min_class_size", o.min_class_size}, {"max_length", o.max_length},
                      {"limit", o.limit}, {"vocab", o.vocab}, {"backbone", o.backbone}, {"d_model", o.d_model}, {"d_ff", o.d_ff},
                      {"heads", o.heads}, {"layers", o.layers}, {"freeze", o.freeze}, {"scaled", o.scaled}, {"readout", o.readout},
                      {"lr", o.lr}, {"backbone_lr_mult", o.backbone_lr_mult}, {"weight_decay", o.weight_decay}, {"clip", o.clip},
                      {"batch", o.batch}, {"batches_per_step", batches_per_step}, {"seed", o.seed}};
  if (nm) j.update({{"loss", o.loss}, {"lambda", o.lambda}, {"margin", o.margin}, {"negatives", o.negatives},
                    {"negatives_from", o.negatives_from}, {"hard_pool", o.hard_pool}});
  return j;
}

template <class Model>
nlohmann::json train_arm(const std::string& arm, const Options& o, const data::ClassificationSet& d, const data::Vocabulary& vocab,
                         dist::Communicator& comm) {
  using B = typename Model::backend;
  const bool nm = arm == "nm", lead = comm.rank() == 0;  // rank 0 writes the files, the metrics and the progress
  const fs::path dir = fs::path(o.out) / arm;
  if (lead) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    PLM_CHECK(!ec, "--out: cannot create ", dir.string(), ": ", ec.message());
  }
  const std::string ckpt = (dir / "checkpoint.safetensors").string(), best = (dir / "best.safetensors").string();
  using Config = std::decay_t<decltype(std::declval<const Model&>().config())>;
  const auto c = [&] {
    if constexpr (std::is_same_v<Config, nn::T5Config>) {
      nn::T5Config t = o.backbone.empty() ? nn::T5Config::ankh3_small() : io::read_backbone_config<Model>(o.backbone);
      if (o.backbone.empty())  // a random encoder of the given sizes
        t.d_model = o.d_model, t.d_ff = o.d_ff, t.num_heads = o.heads, t.d_kv = o.d_model / o.heads, t.num_layers = o.layers,
        t.vocab_size = vocab.size(), t.feed_forward_proj = "gated-silu", t.num_decoder_layers = 0;
      return t;
    } else {
      return io::read_backbone_config<Model>(o.backbone);
    }
  }();
  const objectives::NegativeMiningOptions nmo{objectives::parse_negative_mining_loss(o.loss), o.lambda, o.margin};
  train::NegativeMiningModel<Model> m(c, {0, d.classes(), o.readout, o.scaled}, nmo, o.seed, o.freeze);
  PLM_CHECK(vocab.size() <= m.encoder().vocab_size(), "the tokenizer has ", vocab.size(), " tokens, more than the backbone's embedding table of ",
            m.encoder().vocab_size());
  if (!o.backbone.empty()) io::load_backbone_weights(m.encoder(), o.backbone);
  auto& ps = m.params();
  // One AdamW; the backbone at lr x --backbone-lr-mult, or with --freeze at lr 0 and without weight decay, so
  // its weights stay bit-exact (step() also skips its backward). Norm scales (rank 1) are never decayed.
  optim::ParamGroups groups;
  for (const char* backbone : {"shared.", "encoder.", "esm.", "bert."}) groups.add(backbone, {o.freeze ? 0.0 : o.backbone_lr_mult, !o.freeze});
  dist::DataParallel<B, float> dp(comm, ps, {o.dist.zero1, o.accum});
  optim::Optimizer<B, float> opt(optim::OptimizerKind::adamw, ps, {o.weight_decay}, groups, dp.optimizer_range());
  const auto state = opt.named_state();  // under ZeRO-1 this rank's part
  train::report_data_parallel(dp, state, "nm_finetune");

  const auto train_set = d.of(data::Split::train), valid_set = d.of(data::Split::valid), test_set = d.of(data::Split::test);
  samplers::NegativeBatchSampler sampler(train_set, d.labels_of(train_set), o.batch, {o.negatives, needs_positives(nmo.loss), o.seed}, nm);
  const std::int64_t per_epoch = sampler.batches(), per_step = dp.global_micro_batches();
  const std::int64_t steps_per_epoch = (per_epoch + per_step - 1) / per_step;  // the last step of an epoch may have fewer batches
  const auto fp = fingerprint(o, nm, per_step);
  io::TrainingState ts{0, o.seed, 0, 0, {{"best_valid_loss", 1e300}, {"best_epoch", -1}, {"bad_epochs", 0}, {"stopped", false}}};
  // Rank 0 reads the checkpoint; every rank gets the weights, its optimizer state and the early-stopping state.
  const auto resumed = o.resume ? dp.resume(ckpt, state, [&](const io::TrainingState& t) {
    io::check_fingerprint(ckpt, t, fp);
    // Early-stopping state, checked once (the loop below reads it unchecked): a key missing or of another type names the file.
    (void)io::extra_value<double>(ckpt, t, "best_valid_loss"), (void)io::extra_value<long>(ckpt, t, "best_epoch");
    (void)io::extra_value<int>(ckpt, t, "bad_epochs"), (void)io::extra_value<bool>(ckpt, t, "stopped");
  }) : std::nullopt;
  if (resumed) {
    ts = *resumed;
    opt.set_steps(ts.step);
    if (lead) std::fprintf(stderr, "nm_finetune: %s: resumed from %s after epoch %llu\n", arm.c_str(), ckpt.c_str(), (unsigned long long)ts.epoch);
  } else {
    dp.broadcast_parameters();  // one set of weights on every rank
  }
  // After the checkpoint is checked.
  train::MetricsLog metrics = lead ? train::MetricsLog((dir / "metrics.jsonl").string(), o.resume ? ts.step : -1) : train::MetricsLog();
  const std::int32_t pad = vocab.pad_id();
  if (lead)
    std::fprintf(stderr, "nm_finetune: %s: %zu train / %zu valid / %zu test proteins, %lld steps of %lld batches per epoch\n", arm.c_str(),
                 train_set.size(), valid_set.size(), test_set.size(), (long long)steps_per_epoch, (long long)per_step);
  std::optional<train::ProgressBar> bar;
  if (lead) bar.emplace(o.epochs * steps_per_epoch, "seq/s", ts.step);
  const auto evaluate = [&](const std::vector<index_t>& proteins, const char* what) {
    return train::sum_over_ranks(comm, m.evaluate(d.tokens, d.labels, proteins, o.batch, pad, comm.rank(), comm.size()), what);
  };
  ps.zero_grad();
  for (auto epoch = static_cast<long>(ts.epoch); epoch < o.epochs && !ts.extra["stopped"].get<bool>(); ++epoch) {
    if (nm && o.negatives_from == "hard") {  // per training protein: its most similar proteins of other labels
      sampler.set_candidates(samplers::hard_negatives<cpu, float>(m.embed(d.tokens, d.labels, train_set, o.batch, pad).cview(),
                                                                  sampler.index(), o.hard_pool));
    }
    for (std::int64_t s = 0; s < steps_per_epoch; ++s) {
      // Batch s * per_step + micro * ranks + rank of the epoch: one process with --accum per_step takes them in this order.
      double sums[5] = {0, 0, 0, 0, 0};  // total, supervised and attention loss (sums over batches), correct, anchors
      for (long micro = 0; micro < o.accum; ++micro) {
        const std::int64_t b = s * per_step + micro * comm.size() + comm.rank();
        if (b < per_epoch) {  // the epoch's last step may leave a rank without a batch: it adds a zero gradient
          const auto nb = sampler.batch(static_cast<std::uint64_t>(epoch), b);
          // Dropout masks per batch (epoch * batches + batch + 1: with one batch per step, the step number as before).
          const auto r = m.step(d.tokens, d.labels, nb, pad, true, static_cast<std::uint64_t>(epoch * per_epoch + b + 1));
          const double add[5] = {r.total(), r.supervised, r.attention, double(r.correct), double(nb.rows.anchors)};
          for (int k = 0; k < 5; ++k) sums[k] += add[k];
        }
        dp.micro_batch_done();
      }
      const std::vector<double> all = comm.size() > 1 ? dist::sum_over_ranks(comm, {sums, sums + 5}, "the step's losses")
                                                      : std::vector<double>(sums, sums + 5);
      const double batches = double(std::min(per_step, per_epoch - s * per_step));
      const double gn = dp.reduce_gradients(o.clip, 1.0 / batches);  // the mean gradient over the step's batches
      opt.step(o.lr);
      dp.finish_step();
      ts.step += 1;
      metrics.write({{"split", "train"}, {"step", ts.step}, {"epoch", epoch}, {"loss", all[0] / batches}, {"sup_loss", all[1] / batches},
                     {"nm_loss", all[2] / batches}, {"acc", all[3] / all[4]}, {"grad_norm", gn}});
      if (bar) bar->update(ts.step, {{"loss", all[0] / batches}, {"nm", all[2] / batches}}, all[4]);
    }
    const auto ve = evaluate(valid_set, "the validation figures");
    const double vloss = ve.loss;
    const auto& vcm = ve.cm;
    metrics.write({{"split", "valid"}, {"step", ts.step}, {"epoch", epoch}, {"loss", vloss}, {"acc", vcm.accuracy()}, {"macro_f1", vcm.macro_f1()}});
    // The test figures of every epoch too, so a run stopped early (or killed) still reports; the
    // result of the run stays the test figures of the best-validation epoch.
    const auto ee = evaluate(test_set, "the test figures");
    const double eloss = ee.loss;
    const auto& ecm = ee.cm;
    metrics.write({{"split", "test"}, {"step", ts.step}, {"epoch", epoch}, {"loss", eloss}, {"acc", ecm.accuracy()}, {"macro_f1", ecm.macro_f1()}});
    auto& x = ts.extra;
    if (vloss < x["best_valid_loss"].get<double>()) {
      x["best_valid_loss"] = vloss, x["best_epoch"] = epoch, x["bad_epochs"] = 0;
      dp.save_checkpoint(best, state, ts);
    } else {
      x["bad_epochs"] = x["bad_epochs"].get<int>() + 1;
      x["stopped"] = x["bad_epochs"].get<int>() >= o.patience;
    }
    if (lead)
      std::fprintf(stderr, "%s%s epoch %ld: valid loss %.4f acc %.3f macro-F1 %.3f | test loss %.4f acc %.3f macro-F1 %.3f%s\n",
                 isatty(fileno(stderr)) ? "\n" : "", arm.c_str(), epoch + 1, vloss, vcm.accuracy(), vcm.macro_f1(), eloss, ecm.accuracy(),
                 ecm.macro_f1(), x["stopped"].get<bool>() ? " (early stop)" : "");
    ts.epoch = static_cast<std::uint64_t>(epoch + 1);
    x["fingerprint"] = fp;
    metrics.sync();  // the log is on disk at least up to the checkpoint
    dp.save_checkpoint(ckpt, state, ts);
  }
  if (bar) bar->finish();
  const auto at_best = dp.resume(best, state);  // rank 0 reads it, every rank gets the weights
  PLM_CHECK(at_best, best, " was never written (no epoch finished)");
  const auto te = evaluate(test_set, "the test figures");
  const double tloss = te.loss;
  const auto& tcm = te.cm;
  nlohmann::json j = tcm.to_json(d.class_names);
  j["arm"] = arm, j["test_loss"] = tloss, j["best_epoch"] = io::extra_value<long>(best, *at_best, "best_epoch") + 1;
  if (lead) io::write_file_atomically((dir / "test.json").string(), [&](io::AtomicFile& f) { f.write(j.dump(2) + "\n"); });
  return j;
}

template <class Model>
int run(const Options& o, dist::Communicator& comm) {
  const bool lead = comm.rank() == 0;  // rank 0 writes the files and reports
  // An earlier run in --out is refused unless --resume or --overwrite says what to do with it.
  std::optional<train::RunDirectory> run_dir;
  if (lead) run_dir.emplace(o.out, std::vector<std::string>{"baseline", "nm", "results.json"}, o.resume, o.overwrite);
  // The backbone's own tokenizer files unless --vocab names one (a random encoder: the Ankh3 vocabulary).
  const data::Tokenizer tokenizer = !o.vocab.empty()       ? data::Tokenizer::load(o.vocab)
                                    : o.backbone.empty() ? data::Tokenizer::load("ankh3")
                                                         : data::Tokenizer::from_directory(o.backbone);
  const data::Vocabulary& vocab = tokenizer.vocabulary();
  data::ClassificationSource src;
  src.fasta = o.fasta, src.labels = o.labels, src.clusters = o.clusters, src.split_table = o.split_table;
  src.train_fasta = o.train_fasta, src.valid_fasta = o.valid_fasta, src.test_fasta = o.test_fasta;
  src.fractions = {o.valid_fraction, o.test_fraction}, src.seed = o.seed, src.max_length = o.max_length;
  src.options = {o.min_class_size, o.limit};
  data::LoadedClassification task = data::load_classification(src, tokenizer, data::parse_input_style(o.tokenize));
  const std::size_t cut = task.cut;
  const std::string how = task.split_from;
  if (lead) std::fprintf(stderr, "nm_finetune: tokenizer %s; median length %zu residues; %zu of %zu proteins longer than --max-length %zu %s\n",
               tokenizer.source().c_str(), task.median_length, cut, task.labelled, o.max_length,
               cut ? "were cut to their first residues" : "(none cut)");
  data::ClassificationSet& d = task.set;
  std::map<std::string, std::size_t> n_split;
  for (auto s : d.split) ++n_split[data::split_name(s)];
  if (lead) std::fprintf(stderr, "nm_finetune: %zu proteins, %zu classes; split %s: %zu train, %zu valid, %zu test\n", d.ids.size(),
               d.class_names.size(), how.c_str(), n_split["train"], n_split["valid"], n_split["test"]);
  PLM_CHECK(n_split["train"] > 0 && n_split["valid"] > 0 && n_split["test"] > 0, "every split needs proteins (raise --limit?)");
  // Reference: always predicting the most frequent training class.
  std::vector<std::int64_t> freq(d.class_names.size(), 0);
  for (index_t i : d.of(data::Split::train)) ++freq[static_cast<std::size_t>(d.labels[static_cast<std::size_t>(i)])];
  const auto top = static_cast<std::int32_t>(std::max_element(freq.begin(), freq.end()) - freq.begin());
  train::ConfusionMatrix majority(d.classes());
  for (index_t i : d.of(data::Split::test)) majority.add(d.labels[static_cast<std::size_t>(i)], top);
  nlohmann::json results = {{"classes", d.class_names}, {"split", n_split}, {"split_from", how}, {"cut_to_max_length", cut},
                            {"majority", {{"class", d.class_names[static_cast<std::size_t>(top)]}, {"accuracy", majority.accuracy()},
                                          {"macro_f1", majority.macro_f1()}}}};
  if (lead) run_dir->remove_previous();  // --overwrite: only now that the data is read and split
  std::vector<std::string> arms;
  if (o.arms != "nm") arms.push_back("baseline");
  if (o.arms != "baseline") arms.push_back("nm");
  for (const auto& arm : arms) results[arm] = train_arm<Model>(arm, o, d, vocab, comm);
  if (!lead) return 0;
  io::write_file_atomically((fs::path(o.out) / "results.json").string(), [&](io::AtomicFile& f) { f.write(results.dump(2) + "\n"); });
  std::printf("\n%-10s %10s %10s %12s\n%-10s %10.3f %10.3f %12s\n", "test", "accuracy", "macro-F1", "best epoch", "majority",
              majority.accuracy(), majority.macro_f1(), "-");
  for (const auto& arm : arms)
    std::printf("%-10s %10.3f %10.3f %12ld\n", arm.c_str(), results[arm]["accuracy"].get<double>(), results[arm]["macro_f1"].get<double>(),
                results[arm]["best_epoch"].get<long>());
  std::printf("(%zu test proteins; results in %s)\n", n_split["test"], (fs::path(o.out) / "results.json").string().c_str());
  io::flush_stdout();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Negative-mining fine-tuning of a T5 / Ankh or ESM-2 encoder for protein classification, against a supervised baseline"};
  app.option_defaults()->always_capture_default();
  auto* g = app.add_option_group("data");
  // Every value is checked while parsing (plm/train/cli.hpp); errors name the option.
  using namespace train::cli;
  using C = nn::T5Config;
  g->add_option("--fasta", o.fasta, "protein sequences (plain or .gz)")->check(CLI::ExistingFile);
  g->add_option("--labels", o.labels, "label table: ID<TAB>LABEL")->check(CLI::ExistingFile);
  g->add_option("--clusters", o.clusters, "cluster table: ID<TAB>CLUSTER (examples/data/make_clusters.sh); the split when none is given")
      ->check(CLI::ExistingFile);
  g->add_option("--split-table", o.split_table, "a predefined split: ID<TAB>train|valid|test for every protein (replaces --clusters)")
      ->check(CLI::ExistingFile);
  auto* train_file = g->add_option("--train-fasta", o.train_fasta, "a predefined split as separate files (replaces --fasta): training proteins")
                         ->check(CLI::ExistingFile);
  auto* valid_file = g->add_option("--valid-fasta", o.valid_fasta, "... validation proteins (early stopping)")->check(CLI::ExistingFile);
  auto* test_file = g->add_option("--test-fasta", o.test_fasta, "... test proteins")->check(CLI::ExistingFile);
  train_file->needs(valid_file, test_file);
  valid_file->needs(train_file, test_file);
  test_file->needs(train_file, valid_file);
  g->add_option("--valid-fraction", o.valid_fraction, "share of proteins (whole clusters) for early stopping")->check(fraction());
  g->add_option("--test-fraction", o.test_fraction, "share of proteins (whole clusters) for the report")->check(fraction());
  g->add_option("--min-class-size", o.min_class_size, "classes with fewer proteins are left out")->check(non_negative());
  g->add_option("--max-length", o.max_length, "longer proteins keep their first residues, and the run says how many (0 = no limit)")
      ->check(non_negative());
  g->add_option("--limit", o.limit, "use only the first N labelled proteins (0 = all)")->check(non_negative());
  g->add_option("--vocab", o.vocab, "ankh3, ankh, a tokenizer directory, tokenizer.json, spiece.model or a vocabulary file "
                                     "(default: the --backbone directory's own tokenizer, or ankh3 for a random encoder)")
      ->check(one_of_or_file({"ankh3", "ankh"}, true));
  g->add_option("--tokenize", o.tokenize, "how the model card calls the tokenizer: words = tok(list(seq), is_split_into_words=True), "
                                          "string = tok(seq)")
      ->check(one_of({"words", "string"}));
  auto* m = app.add_option_group("model");
  m->add_option("--backbone", o.backbone, "Hugging Face T5 / Ankh or ESM-2 checkpoint directory (e.g. ankh3_pretrain's out/model, "
                                          "facebook/esm2_t6_8M_UR50D); empty: a randomly initialised T5 encoder of the sizes below")
      ->check(CLI::ExistingDirectory);
  m->add_option("--d-model", o.d_model, "a multiple of --heads (d_kv = d_model / heads)")->check(in_range(index_t(1), C::max_width));
  m->add_option("--d-ff", o.d_ff)->check(in_range(index_t(1), C::max_width));
  m->add_option("--heads", o.heads)->check(in_range(index_t(1), C::max_heads));
  m->add_option("--layers", o.layers)->check(in_range(index_t(1), C::max_depth));
  m->add_flag("--freeze", o.freeze, "train only the new layers");
  m->add_flag("--scaled", o.scaled, "scale attention scores by 1/sqrt(d) (the released code does not)");
  m->add_option("--readout", o.readout, "readout width")->check(in_range(index_t(1), C::max_width));
  auto* ob = app.add_option_group("objective");
  ob->add_option("--arms", o.arms, "both, baseline or nm")->check(one_of({"both", "baseline", "nm"}));
  ob->add_option("--loss", o.loss, "squared (released), l1, kl or entropy-hinge")->check(one_of({"squared", "l1", "kl", "entropy-hinge"}));
  ob->add_option("--lambda", o.lambda, "weight of the attention loss")->check(non_negative());
  ob->add_option("--margin", o.margin, "entropy-hinge margin")->check(non_negative());
  ob->add_option("--negatives", o.negatives, "negatives per anchor")->check(in_range(1L, 1L << 20));
  ob->add_option("--negatives-from", o.negatives_from, "label (another label, then a member) or hard (most similar of other labels)")
      ->check(one_of({"label", "hard"}));
  ob->add_option("--hard-pool", o.hard_pool, "with --negatives-from hard: draw among this many nearest, refreshed every epoch")
      ->check(in_range(1L, 1L << 20));
  auto* op = app.add_option_group("optimisation");
  op->add_option("--lr", o.lr, "AdamW learning rate of the new layers")->check(positive());
  op->add_option("--backbone-lr-mult", o.backbone_lr_mult, "the backbone's learning rate is lr times this")->check(non_negative());
  op->add_option("--weight-decay", o.weight_decay)->check(non_negative());
  op->add_option("--clip", o.clip, "global gradient-norm limit (0 = off)")->check(non_negative());
  op->add_option("--epochs", o.epochs)->check(at_least(1));
  op->add_option("--batch", o.batch, "anchors per batch")->check(in_range(1L, 1L << 20));
  op->add_option("--accum", o.accum, "batches per step and rank (a step's gradient is the mean over its batches)")->check(at_least(1));
  op->add_option("--patience", o.patience, "stop after this many epochs without a better validation loss")->check(at_least(1));
  auto* r = app.add_option_group("run");
  r->add_option("--out", o.out, "output directory");
  r->add_flag("--resume", o.resume, "continue from the checkpoints in --out");
  r->add_flag("--overwrite", o.overwrite, "replace an earlier run in --out (without it, or --resume, an earlier run is refused)");
  r->add_option("--seed", o.seed)->check(non_negative());
  r->add_option("--threads", o.threads, "CPU threads (0 = all)")->check(non_negative());
  train::add_device_options(*r, o.device);
  train::add_dist_options(*app.add_option_group("distributed"), o.dist);
  app.callback([&] {  // rules between options, still at parse time
    if (o.valid_fraction + o.test_fraction >= 1)
      throw CLI::ValidationError("--valid-fraction", str(o.valid_fraction) + " and --test-fraction " + str(o.test_fraction) +
                                                         " leave no proteins for training");
    if (!o.split_table.empty() && !o.train_fasta.empty())
      throw CLI::ValidationError("--split-table", "and --train-fasta / --valid-fasta / --test-fasta both give the split; choose one");
    if (o.backbone.empty() && o.d_model % o.heads != 0)
      throw CLI::ValidationError("--d-model", str(o.d_model) + " must be a multiple of --heads " + str(o.heads));
  });
  CLI11_PARSE(app, argc, argv);
  return train::run_job(argc, argv, "nm_finetune", o.dist, o.device, [&](auto backend, dist::Communicator& comm) {
    train::set_threads_for_rank(o.threads);
    if (const std::string w = blas_kernel_warning(); !w.empty() && comm.rank() == 0) std::fprintf(stderr, "%s\n", w.c_str());
    const auto body = [&](auto model) { return run<typename decltype(model)::type>(o, comm); };
    using B = decltype(backend);
    return o.backbone.empty() ? io::with_t5_model_type<B>("gated-silu", body) : io::with_encoder_checkpoint_type<B>(o.backbone, body);
  });
}
