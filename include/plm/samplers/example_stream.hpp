#pragma once
// Pre-training data as a stream: a FASTA file (plain or gzip) read in pools, a
// held-out part, one example per record in length-bucketed batches, epoch
// after epoch, and the cursor a checkpoint stores to continue exactly. What an
// example is comes from a maker (the template parameter): Ankh3's seq2seq
// examples (pretrain_stream.hpp) and masked-LM examples (mlm_stream.hpp) share
// everything else here.
//
//   file --(records not held out, >= maker.min_residues() residues)--> pool of `pool` records
//        --(maker, each example built once)--> examples
//        --(length_bucket_batches)--> batches, handed out one by one;
//   at the end of the file the next epoch starts again at record 0.
//
// Exact resume. Every draw is keyed by what it belongs to, never by what was
// drawn before it (the keys are named in pretrain_keys below):
//   held out or not   Philox(seed ^ held_out_salt, record index)
//   the example       the maker's draws, key pretrain_keys::example(epoch, record index)
//   batch order       Philox(seed ^ batch_order_salt, pool(epoch, pool position))
// so a pool rebuilt from the file position of its first record has the same
// examples and batches. The cursor (epoch, that position, batches of the pool
// handed out) is therefore all a checkpoint needs: save() writes it into an
// io::TrainingState (epoch, cursor = batches of the pool, and
// extra["pretrain_stream"] = the pool position and the settings that shaped
// the stream, the maker's included); restore() refuses a cursor written with
// other settings or for another file, and one that is not where a pool of this
// file starts.
//
// A maker M provides
//   using Example = ...;
//   static constexpr const char* stream_name;      // names the stream in errors
//   std::size_t min_residues() const;              // shorter records are not used
//   bool grouped() const;                          // batch by group (see below)
//   double group(std::uint64_t key) const;         // the group of the example of `key` (when grouped)
//   Example make(const std::vector<std::int32_t>& residues, std::uint64_t key, double group) const;
//   index_t input_length(const Example&) const;    // tokens a batch pads, input side
//   index_t target_length(const Example&) const;   //                      target side (0: none)
//   nlohmann::json settings() const;               // what shapes its examples, for the cursor check
// A grouped maker's records are batched separately per group (e.g. one masking
// probability per batch), and the groups' batches are then shuffled together.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/core/philox.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/vocabulary.hpp"
#include "plm/io/training_state.hpp"
#include "plm/samplers/batching.hpp"

namespace plm::samplers {

// The keys of every draw of the stream. An example key packs the epoch above
// the record index: 2^40 records per file, epochs below 2^24.
namespace pretrain_keys {
inline constexpr std::uint64_t held_out_salt = 0x9e3779b97f4a7c15ull;  // seed ^ this: held-out choice
inline constexpr std::uint64_t batch_order_salt = 0xba7c4e5ull;       // seed ^ this: batch order of a pool
inline constexpr int record_bits = 40;
inline constexpr std::uint64_t max_epochs = std::uint64_t{1} << 24;
// The held-out set is built as if it were this epoch: its examples never share
// a key with a training example (training stops below it).
inline constexpr std::uint64_t held_out_epoch = std::uint64_t{1} << 20;

// Key of the example made from record `record_index` in `epoch`.
inline std::uint64_t example(std::uint64_t epoch, std::uint64_t record_index) {
  PLM_CHECK(record_index < (std::uint64_t{1} << record_bits), "pretrain_keys: record index ", record_index, " exceeds 2^", record_bits);
  PLM_CHECK(epoch < max_epochs, "pretrain_keys: epoch ", epoch, " exceeds 2^24");
  return (epoch << record_bits) + record_index;
}
// Philox stream of the batch order of the pool starting at file position `pool_position`.
inline std::uint64_t pool(std::uint64_t epoch, std::uint64_t pool_position) { return example(epoch, pool_position); }
}  // namespace pretrain_keys

struct PretrainStreamOptions {
  std::string train;             // FASTA, plain or gzip
  std::string valid;             // held-out FASTA; empty: hold out valid_fraction of train
  double valid_fraction = 0.05;  // share of train records held out, chosen by a hash of the record index
  std::size_t valid_max = 200;   // the held-out set keeps at most this many records
  std::size_t pool = 2000;       // training records turned into examples and batched together
  data::FastaOptions fasta;      // length policies; fasta.seed keys the random crops
  data::EncodeOptions encode;    // append_eos is ignored: the maker adds what a sequence needs around its residues
  BatchOptions batching;         // shuffle is ignored: training batches are shuffled, held-out ones kept in order
  std::uint64_t seed = 0;        // keys the held-out choice and the batch order

  void validate(const char* who = "PretrainStream") const {
    PLM_CHECK(!train.empty(), who, ": no training file");
    PLM_CHECK(!valid.empty() || (valid_fraction > 0 && valid_fraction < 1), who, ": valid_fraction ", valid_fraction,
              " must be in (0, 1) when no validation file is given");
    PLM_CHECK(pool > 0, who, ": pool must be positive");
    PLM_CHECK(valid_max > 0, who, ": valid_max must be positive");
  }
};

// A record the stream uses: its index in the file and its residue tokens (no eos).
struct PretrainRecord {
  std::uint64_t index = 0;
  std::vector<std::int32_t> tokens;
};

// Examples and the batches over them (rows index `examples`); records[i] is the
// file index of the record examples[i] was made from.
template <class Example>
struct ExamplePoolOf {
  std::vector<Example> examples;
  std::vector<std::uint64_t> records;
  std::vector<std::vector<index_t>> batches;
};

// One example per record (keys pretrain_keys::example(epoch, record index)),
// batched by length with the draws of `order`. A grouped maker's records are
// batched per group (see the top of this file).
template <class Maker>
ExamplePoolOf<typename Maker::Example> make_example_pool(const std::vector<PretrainRecord>& records, const Maker& maker,
                                                         std::uint64_t epoch, const BatchOptions& batching, Philox& order) {
  ExamplePoolOf<typename Maker::Example> p;
  p.examples.reserve(records.size());
  std::vector<index_t> in_len, out_len;
  std::map<double, std::vector<index_t>> groups;  // ordered by group: a fixed batching order
  const bool grouped = maker.grouped();
  for (const auto& r : records) {
    const std::uint64_t key = pretrain_keys::example(epoch, r.index);
    const double group = grouped ? maker.group(key) : -1.0;
    if (grouped) groups[group].push_back(static_cast<index_t>(p.examples.size()));
    p.examples.push_back(maker.make(r.tokens, key, group));
    p.records.push_back(r.index);
    in_len.push_back(maker.input_length(p.examples.back()));
    out_len.push_back(maker.target_length(p.examples.back()));
  }
  if (!grouped) {
    p.batches = length_bucket_batches(in_len, out_len, batching, order);
    return p;
  }
  for (const auto& [group, rows] : groups) {
    std::vector<index_t> gin, gout;
    for (index_t i : rows) gin.push_back(in_len[static_cast<std::size_t>(i)]), gout.push_back(out_len[static_cast<std::size_t>(i)]);
    for (auto& b : length_bucket_batches(gin, gout, batching, order)) {
      for (index_t& i : b) i = rows[static_cast<std::size_t>(i)];
      p.batches.push_back(std::move(b));
    }
  }
  if (batching.shuffle)  // mix the groups' batches
    for (std::size_t i = p.batches.size(); i > 1; --i) std::swap(p.batches[i - 1], p.batches[order.below(static_cast<std::uint32_t>(i))]);
  return p;
}

// Where the stream stands: the next batch is batch `batch` of the pool that
// starts at record position `pool_position` of the file, in epoch `epoch`.
struct PretrainCursor {
  std::uint64_t epoch = 0;
  std::uint64_t pool_position = 0;  // FastaReader::position() where the pool's reading started
  std::uint64_t batch = 0;          // batches of that pool already handed out
  bool operator==(const PretrainCursor& o) const { return epoch == o.epoch && pool_position == o.pool_position && batch == o.batch; }
};

template <class Maker>
class ExampleStream {
 public:
  using Example = typename Maker::Example;
  using Pool = ExamplePoolOf<Example>;

  // Reads the first pool at once, so that a file without training records is
  // an error here rather than at the first step.
  ExampleStream(PretrainStreamOptions options, data::Vocabulary vocab, Maker maker)
      : o_(checked(std::move(options))), vocab_(std::move(vocab)), maker_(std::move(maker)), reader_(o_.train, o_.fasta) {
    auto records = records_at(0);
    if (records.empty()) fail_no_records();
    commit(build(records, 0, 0), {0, 0, 0});
  }

  // Data parallelism: of every `world` consecutive batches this stream hands
  // out only the one at `rank`; the ranks' streams together hand out each
  // batch once, and after each next() (and in save()) every rank's cursor is
  // the same. One process accumulating `world` micro-batches per step sees
  // the batches in the order the ranks take them (micro m = rank m).
  void shard(int rank, int world) {
    PLM_CHECK(world >= 1 && rank >= 0 && rank < world, name(), "::shard: rank ", rank, " of ", world);
    rank_ = rank, world_ = world;
  }

  // Rows (into pool().examples) of the next training batch (this rank's, see
  // shard()). Moves on to the next pool when this one is used up, and to the
  // next epoch at the end of the file.
  const std::vector<index_t>& next() {
    skip(pending_ + static_cast<std::uint64_t>(rank_));
    pending_ = static_cast<std::uint64_t>(world_ - 1 - rank_);  // the other ranks' batches after this one, skipped lazily: a
    return next_batch();                                        // new pool would replace the examples these rows index
  }

 private:
  void skip(std::uint64_t n) {
    for (; n > 0; --n) next_batch();
  }
  const std::vector<index_t>& next_batch() {
    while (cursor_.batch >= pool_.batches.size()) {
      std::uint64_t epoch = cursor_.epoch, position = next_position_;
      auto records = records_at(position);
      if (records.empty()) {  // end of the file: the next epoch reads it again from the start
        PLM_CHECK(++epoch < pretrain_keys::held_out_epoch, name(), ": ", o_.train, ": epoch ", epoch,
                  " reaches the held-out set's key range (", pretrain_keys::held_out_epoch, " epochs)");
        position = 0;
        records = records_at(0);
        if (records.empty()) fail_no_records();
      }
      commit(build(records, epoch, position), {epoch, position, 0});
    }
    return pool_.batches[static_cast<std::size_t>(cursor_.batch++)];
  }

 public:

  // The pool the last batch came from (before the first next(): the first pool).
  const Pool& pool() const { return pool_; }
  // Where the stream stands, past the other ranks' batches of the last round.
  PretrainCursor cursor() {
    settle();
    return cursor_;
  }

  // Continues from a cursor this stream (or one with the same settings over
  // the same file) returned. Replays the file from the start to check that
  // the cursor's position is where a pool starts: a cost of one forward read.
  // A refused cursor leaves the stream where it was.
  void seek(const PretrainCursor& c) {
    auto refuse = [&](const std::string& why) {
      PLM_FAIL(name(), ": cursor (epoch ", c.epoch, ", pool at record ", c.pool_position, ", batch ", c.batch, ") does not fit ", o_.train,
               ": ", why, " (a cursor of another file or other settings?)");
    };
    if (c.epoch >= pretrain_keys::held_out_epoch) refuse("the epoch is beyond the training range");
    reader_.rewind();
    std::uint64_t count = 0, boundary = 0;  // training records so far; position after the last full pool
    data::FastaRecord r;
    std::vector<std::int32_t> tokens;
    while (reader_.position() < c.pool_position) {
      if (!reader_.next(r)) refuse("the file ends at record " + std::to_string(reader_.position()));
      if (training_record(r, tokens) && ++count % o_.pool == 0) boundary = reader_.position();
    }
    if (reader_.position() != boundary) refuse("no pool of " + std::to_string(o_.pool) + " training records starts there");
    const auto records = read_records(reader_);
    if (records.empty()) refuse("no training records follow that position");
    Pool p = build(records, c.epoch, c.pool_position);
    if (c.batch > p.batches.size()) refuse("that pool has only " + std::to_string(p.batches.size()) + " batches");
    commit(std::move(p), c);
    pending_ = 0;
  }

  // The cursor into a checkpoint's training state: epoch, cursor = batches of
  // the pool handed out, extra["pretrain_stream"] = {pool_position, settings}.
  void save(io::TrainingState& ts) {
    settle();
    ts.epoch = cursor_.epoch;
    ts.cursor = cursor_.batch;
    ts.extra["pretrain_stream"] = {{"pool_position", cursor_.pool_position}, {"settings", settings()}};
  }

  // Continues where save() left off; refuses a state saved with other settings
  // or for another file, naming the first setting that differs.
  void restore(const io::TrainingState& ts) {
    // Checked access only: the state comes from a file (const operator[] on a missing key is undefined behaviour).
    PLM_CHECK(ts.extra.contains("pretrain_stream") && ts.extra.at("pretrain_stream").contains("pool_position"), name(),
              "::restore: the training state has no data cursor (extra.pretrain_stream); was it saved by ", name(), "::save?");
    const auto& j = ts.extra.at("pretrain_stream");
    const auto s = j.find("settings");
    PLM_CHECK(s == j.end() || s->is_object(), name(), "::restore: damaged data cursor ", json_excerpt(j));
    const nlohmann::json have = s == j.end() ? nlohmann::json::object() : *s, want = settings();
    for (auto it = want.begin(); it != want.end(); ++it) {
      const auto h = have.find(it.key());
      PLM_CHECK(h != have.end() && *h == it.value(), name(), "::restore: the data cursor was saved with ", it.key(), " = ",
                h == have.end() ? std::string("null") : json_excerpt(*h), ", this stream has ", json_excerpt(it.value()),
                " (a checkpoint of another file or other settings)");
    }
    for (auto it = have.begin(); it != have.end(); ++it)  // a setting this stream does not have (packed batches)
      PLM_CHECK(want.contains(it.key()), name(), "::restore: the data cursor was saved with ", it.key(), " = ", json_excerpt(it.value()),
                ", this stream has none (a checkpoint of other settings)");
    PLM_CHECK(j.at("pool_position").is_number_unsigned(), name(), "::restore: damaged data cursor ", json_excerpt(j));
    seek({ts.epoch, j.at("pool_position").get<std::uint64_t>(), ts.cursor});
  }

  // Everything that shapes the batches: a cursor is only valid for a stream
  // with the same settings (the maker's included) over the same file (its path
  // and size in bytes).
  nlohmann::json settings() const {
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(o_.train, ec);
    nlohmann::json s = {{"train", o_.train},
                        {"train_bytes", ec ? std::uintmax_t{0} : bytes},
                        {"valid", o_.valid},
                        {"valid_fraction", o_.valid.empty() ? o_.valid_fraction : 0.0},
                        {"pool", o_.pool},
                        {"min_length", o_.fasta.min_length},
                        {"max_length", o_.fasta.max_length},
                        {"too_long", data::policy_name(o_.fasta.too_long)},
                        {"empty", o_.fasta.empty == data::EmptyPolicy::skip ? "skip" : "error"},
                        {"allow_gaps", o_.fasta.allow_gaps},
                        {"crop_seed", o_.fasta.seed},
                        {"rare", data::policy_name(o_.encode.rare)},
                        {"lowercase", o_.encode.lowercase == data::LowercasePolicy::uppercase ? "uppercase" : "error"},
                        {"vocab_size", vocab_.size()},
                        {"token_budget", o_.batching.token_budget},
                        {"max_rows", o_.batching.max_rows},
                        {"window", o_.batching.window},
                        {"sort_by_length", o_.batching.sort_by_length},
                        {"seed", o_.seed}};
    if (o_.batching.packed) s["packed"] = true;  // a real-token budget batches differently (absent: padded, as before)
    s.update(maker_.settings());
    return s;
  }

  // The fixed held-out set: the first valid_max held-out records of the
  // training file (or records of the validation file), their examples and
  // batches built once, in file order. The same in every run and resume.
  Pool held_out() const {
    const std::string& path = o_.valid.empty() ? o_.train : o_.valid;
    data::FastaReader reader(path, o_.fasta);
    std::vector<PretrainRecord> records;
    data::FastaRecord r;
    while (records.size() < o_.valid_max && reader.next(r)) {
      if (!o_.valid.empty() || held_out_record(r.index)) {
        PretrainRecord rec{r.index, {}};
        vocab_.encode_into(r.sequence, rec.tokens, o_.encode, r.id);
        if (rec.tokens.size() >= maker_.min_residues()) records.push_back(std::move(rec));
      }
    }
    PLM_CHECK(!records.empty(), name(), ": no held-out records in ", path,
              o_.valid.empty() ? std::string(" (raise valid_fraction or give a validation file)")
                               : " (all shorter than " + residues(maker_.min_residues()) + " or filtered?)");
    BatchOptions bo = o_.batching;
    bo.shuffle = false;
    Philox order(o_.seed ^ pretrain_keys::batch_order_salt, pretrain_keys::pool(pretrain_keys::held_out_epoch, 0));
    return make_example_pool(records, maker_, pretrain_keys::held_out_epoch, bo, order);
  }

  // The training records of the first pool (read anew; the stream does not move).
  std::vector<PretrainRecord> first_pool_records() const {
    data::FastaReader reader(o_.train, o_.fasta);
    return read_records(reader);
  }

  // Whether the record at `index` of the training file is held out.
  bool held_out_record(std::uint64_t index) const {
    if (!o_.valid.empty()) return false;
    Philox rng(o_.seed ^ pretrain_keys::held_out_salt, index);
    return rng.uniform() <= o_.valid_fraction;
  }

  // Examples made so far: one per training record read (a seek rebuilds its pool).
  std::uint64_t examples_built() const { return examples_built_; }
  const PretrainStreamOptions& options() const { return o_; }
  const Maker& maker() const { return maker_; }
  const data::Vocabulary& vocabulary() const { return vocab_; }

 private:
  static const char* name() { return Maker::stream_name; }
  // Skips the other ranks' batches still owed from the last next().
  void settle() {
    skip(pending_);
    pending_ = 0;
  }
  static std::string residues(std::size_t n) { return std::to_string(n) + (n == 1 ? " residue" : " residues"); }

  static PretrainStreamOptions checked(PretrainStreamOptions o) {
    o.validate(name());
    o.encode.append_eos = false;
    return o;
  }

  bool training_record(const data::FastaRecord& r, std::vector<std::int32_t>& tokens) const {
    if (held_out_record(r.index)) return false;
    tokens.clear();
    vocab_.encode_into(r.sequence, tokens, o_.encode, r.id);
    return tokens.size() >= maker_.min_residues();
  }

  // Up to `pool` training records from the reader's position on.
  std::vector<PretrainRecord> read_records(data::FastaReader& reader) const {
    std::vector<PretrainRecord> records;
    data::FastaRecord r;
    PretrainRecord rec;
    while (records.size() < o_.pool && reader.next(r))
      if (training_record(r, rec.tokens)) {
        rec.index = r.index;
        records.push_back(rec);
      }
    return records;
  }

  // The training records of the pool that starts at file position `position`.
  std::vector<PretrainRecord> records_at(std::uint64_t position) {
    if (reader_.position() != position) reader_.skip_to(position);  // only after a refused seek or at an epoch's end
    return read_records(reader_);
  }

  // The examples and batches of a pool of `epoch` starting at `position`.
  Pool build(const std::vector<PretrainRecord>& records, std::uint64_t epoch, std::uint64_t position) {
    Philox order(o_.seed ^ pretrain_keys::batch_order_salt, pretrain_keys::pool(epoch, position));
    BatchOptions bo = o_.batching;
    bo.shuffle = true;
    examples_built_ += records.size();
    return make_example_pool(records, maker_, epoch, bo, order);
  }

  // Makes `p` the current pool (just read: the next one starts where the reader stands).
  void commit(Pool p, const PretrainCursor& c) {
    pool_ = std::move(p);
    cursor_ = c;
    next_position_ = reader_.position();
  }

  [[noreturn]] void fail_no_records() const {
    PLM_FAIL(name(), ": ", o_.train, " yields no training records (", reader_.records_read(), " records passed the length policies, ",
             reader_.records_skipped(), " were skipped by them; held out and shorter than ", residues(maker_.min_residues()),
             " are not used for training)");
  }

  PretrainStreamOptions o_;
  data::Vocabulary vocab_;
  Maker maker_;
  data::FastaReader reader_;
  Pool pool_;
  PretrainCursor cursor_;
  std::uint64_t next_position_ = 0;  // where the pool after this one starts reading
  int rank_ = 0, world_ = 1;         // shard(): this stream hands out batch rank_ of every world_
  std::uint64_t pending_ = 0;        // batches of later ranks still to skip
  std::uint64_t examples_built_ = 0;
};

}  // namespace plm::samplers
