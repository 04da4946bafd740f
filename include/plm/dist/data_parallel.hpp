#pragma once
// dist::DataParallel: data-parallel training over a model's flat gradient
// buffer, on any dist::Communicator (one process, MPI ranks, NCCL GPUs).
//
//   dist::DataParallel<B, float> dp(comm, ps, {/*zero1=*/true, /*micro_batches=*/accum});
//   auto opt = optim::make_optimizer<B, float>("adamw", ps, {...}, groups, dp.optimizer_range());
//   dp.broadcast_parameters();                       // or dp.resume(...) from rank 0's checkpoint
//   for each step:
//     for micro in [0, accum):
//       forward on this rank's batch (stream.shard(rank, world)), pass keyed by dp.micro_key(step, micro),
//       loss gradient scaled by dp.loss_weight(), backward;
//       dp.micro_batch_done();
//     const double norm = dp.reduce_gradients(clip);  // summed over ranks, global norm, clipped
//     opt.step(lr);
//     dp.finish_step();                                 // ZeRO-1: every rank's updated shard to all; grads zeroed
//
// What it guarantees. Each micro-batch's backward starts from a zero gradient
// buffer, and the micro-batch gradients of a step are added in the order of
// their global index (micro * world + rank): the local ones by the
// accumulator, then across ranks in rank order (dist/communicator.hpp). With
// one micro-batch per rank the step therefore adds exactly what one process
// adds when it accumulates `world` micro-batches, and the weights agree bit
// for bit. With several micro-batches per rank the terms are grouped by rank
// first, ((g0 + g2) + (g1 + g3)) on 2 ranks against ((g0 + g1) + g2) + g3 in
// one process: equal up to float rounding, not bitwise.
// The global gradient norm is the sum, in parameter order, of each
// parameter's sum of squares (in double), whichever rank holds it, so
// clipping is identical with and without ZeRO-1 and at any world size.
//
// ZeRO-1 (zero1): the parameters are cut into `world` runs of whole tensors
// with about equal element counts; rank r keeps the optimizer state of run r
// only (optimizer_range()), receives only that run's summed gradient
// (reduce-scatter instead of all-reduce), steps it, and the updated runs are
// then all-gathered. Optimizer state memory falls to about 1/world per rank.
// Whole tensors, because Adafactor's factored moments and its parameter scale
// need a whole matrix.
//
// Checkpoints hold what one process would write (full optimizer state), so a
// job resumes at any world size, with or without ZeRO-1. Rank 0 alone reads
// and writes them; the others receive parameters, state and the training state
// from it, so no shared file system is needed.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/backend/ops.hpp"
#include "plm/dist/communicator.hpp"
#include "plm/io/checkpoint.hpp"
#include "plm/io/training_state.hpp"
#include "plm/nn/parameters.hpp"
#include "plm/optim/param_groups.hpp"

namespace plm::dist {

// Cuts parameters [0, ps.size()) into `parts` runs of whole tensors, run r
// starting at the first tensor whose offset reaches r / parts of the elements.
template <class B, class T>
std::vector<nn::ParamRange> shard_parameters(const nn::ParameterSet<B, T>& ps, int parts) {
  PLM_CHECK(parts > 0, "dist::shard_parameters: ", parts, " parts");
  std::vector<nn::ParamRange> out;
  index_t begin = 0;
  const index_t total = ps.numel();
  for (int r = 0; r < parts; ++r) {
    index_t end = ps.size();
    if (r + 1 < parts) {
      end = begin;
      while (end < ps.size() && ps.entry(end).offset * parts < total * (r + 1)) ++end;
    }
    out.push_back({begin, end});
    begin = end;
  }
  return out;
}

template <class B, class T>
class DataParallel {
 public:
  struct Options {
    bool zero1 = false;               // shard the optimizer state (ZeRO stage 1)
    std::int64_t micro_batches = 1;  // per rank and step
  };

  DataParallel(Communicator& comm, nn::ParameterSet<B, T>& ps, Options o) : comm_(&comm), ps_(&ps), o_(o) {
    PLM_CHECK(ps.allocated(), "DataParallel: the parameter set must be allocated first");
    PLM_CHECK(o.micro_batches >= 1, "DataParallel: micro_batches ", o.micro_batches, " must be at least 1");
    PLM_CHECK(dtype_of_v<T> == DType::f32 || dtype_of_v<T> == DType::f64, "DataParallel: float or double parameters");
    if (comm.size() > 1)
      PLM_CHECK((comm.device_memory() == std::is_same_v<B, cuda>), "DataParallel: the ", comm.name(), " communicator works on ",
                comm.device_memory() ? "CUDA" : "host", " memory but the model is on the ", (std::is_same_v<B, cuda> ? "GPU" : "CPU"),
                (std::is_same_v<B, cuda>) ? " (data parallelism across GPUs needs plm built with NCCL, PLM_NCCL)" : "");
    if (comm.size() > 1) {  // ranks started with other models or options would exchange garbage or wait forever
      const std::int64_t mine[2] = {ps.numel(), o.micro_batches};
      std::vector<std::int64_t> all(2 * static_cast<std::size_t>(comm.size()));
      comm.host_all_gather(mine, sizeof mine, all.data(), "the model check");
      for (int r = 0; r < comm.size(); ++r)
        PLM_CHECK(all[2 * static_cast<std::size_t>(r)] == mine[0] && all[2 * static_cast<std::size_t>(r) + 1] == mine[1], "DataParallel: rank ", r,
                  " has ", all[2 * static_cast<std::size_t>(r)], " parameters and ", all[2 * static_cast<std::size_t>(r) + 1],
                  " micro-batches per step, rank ", comm.rank(), " ", mine[0], " and ", mine[1],
                  " (were the ranks started with different options?)");
    }
    shards_ = shard_parameters(ps, comm.size());
    for (const auto& s : shards_) counts_.push_back(optim::range_numel(ps, s));
  }

  int rank() const { return comm_->rank(); }
  int world() const { return comm_->size(); }
  bool lead() const { return comm_->rank() == 0; }
  Communicator& communicator() const { return *comm_; }
  const Options& options() const { return o_; }
  // The parameters this rank's optimizer updates: all, or its shard under ZeRO-1.
  nn::ParamRange optimizer_range() const { return o_.zero1 ? shards_[static_cast<std::size_t>(rank())] : ps_->all(); }
  const std::vector<nn::ParamRange>& shards() const { return shards_; }
  // Micro-batches of one step over all ranks, and the weight of each one's loss
  // (the step's gradient is the mean over them).
  std::int64_t global_micro_batches() const { return o_.micro_batches * world(); }
  double loss_weight() const { return 1.0 / static_cast<double>(global_micro_batches()); }
  // The global index of this rank's micro-batch `micro` of `step`: keys its
  // dropout as one process accumulating global_micro_batches() keys its own.
  std::uint64_t micro_key(std::int64_t step, std::int64_t micro) const {
    return static_cast<std::uint64_t>(step) * static_cast<std::uint64_t>(global_micro_batches()) +
           static_cast<std::uint64_t>(micro * world() + rank());
  }

  // Rank 0's parameters to every rank (a fresh run; resume() does it itself).
  void broadcast_parameters() {
    if (world() > 1) comm_->broadcast(ps_->values().data(), bytes(ps_->numel()), 0, "the parameter broadcast");
  }

  // After the backward of each micro-batch. With several micro-batches per
  // step the gradient moves into the accumulator (the first is copied, the
  // next added in order) and the set's buffer is zeroed for the next backward;
  // the last is left in place, added to the accumulator by reduce_gradients.
  void micro_batch_done() {
    PLM_CHECK(micro_ < o_.micro_batches, "DataParallel::micro_batch_done: called ", micro_ + 1, " times in a step of ", o_.micro_batches,
              " micro-batches");
    ++micro_;
    if (o_.micro_batches == 1 || micro_ == o_.micro_batches) return;
    if (acc_.empty()) acc_.resize(Shape{ps_->numel()});
    const ConstView<B, T> g(ps_->grads());
    if (micro_ == 1) ops<B>::copy(g, acc_.view());
    else ops<B>::add(acc_.cview(), g, acc_.view());
    ps_->zero_grad();
  }

  // After the step's micro-batches: adds the gradients over micro-batches and
  // ranks, multiplies the sum by `scale` (for a loop whose losses are not
  // weighted by loss_weight(): 1 / the micro-batches that had data), returns
  // the global norm and scales the gradients down to max_norm when it is
  // larger (max_norm 0: no clipping). A NaN or infinite norm is an
  // error naming the first parameter whose gradient is not finite, the same
  // on every rank. Afterwards ps.grads() holds the step's gradient for
  // optimizer_range() (every parameter without ZeRO-1).
  double reduce_gradients(double max_norm, double scale = 1.0) {
    PLM_CHECK(micro_ == o_.micro_batches, "DataParallel::reduce_gradients: ", micro_, " of ", o_.micro_batches,
              " micro-batches were done this step");
    PLM_CHECK(max_norm >= 0, "DataParallel::reduce_gradients: max_norm ", max_norm, " is negative");
    const TensorView<B, T> g = ps_->grads();
    if (o_.micro_batches > 1) ops<B>::add(acc_.cview(), ConstView<B, T>(g), g);  // ((g0 + g1) + ...) + g_last
    const auto t0 = std::chrono::steady_clock::now();
    if (world() > 1) comm_->reduce_scatter(g.data(), counts_, dtype_of_v<T>, "the gradient reduce-scatter");
    sync_ = seconds_since(t0);
    const nn::ParamRange mine = shards_[static_cast<std::size_t>(rank())];
    const auto own = g.slice(offset(mine), offset(mine) + counts_[static_cast<std::size_t>(rank())]);
    if (scale != 1.0) ops<B>::scale(ConstView<B, T>(own), static_cast<T>(scale), own);
    // Per-parameter sums of squares of this rank's run, the others' from them.
    std::vector<double> sq(static_cast<std::size_t>(ps_->size()), 0.0);
    for (index_t i = mine.begin; i < mine.end; ++i) sq[static_cast<std::size_t>(i)] = ops<B>::sum_squares(ConstView<B, T>(ps_->grad(i)));
    const auto t1 = std::chrono::steady_clock::now();
    if (world() > 1) sq = sum_over_ranks(*comm_, sq, "the gradient norm");  // one non-zero term per parameter: exact
    sync_ += seconds_since(t1);
    double total = 0;
    for (double s : sq) total += s;
    const double norm = std::sqrt(total);
    if (!std::isfinite(norm)) {
      for (index_t i = 0; i < ps_->size(); ++i)
        PLM_CHECK(std::isfinite(sq[static_cast<std::size_t>(i)]), "the gradient of '", ps_->entry(i).name, "' contains NaN or infinity");
      PLM_FAIL("the gradient norm overflows (", norm, ")");
    }
    if (max_norm > 0 && norm > max_norm) {
      ops<B>::scale(ConstView<B, T>(own), static_cast<T>(max_norm / norm), own);
    }
    const auto t2 = std::chrono::steady_clock::now();
    if (world() > 1 && !o_.zero1) comm_->all_gather(g.data(), counts_, dtype_of_v<T>, "the gradient all-gather");
    sync_ += seconds_since(t2);
    return norm;
  }

  // After the optimizer step: under ZeRO-1 every rank's updated run to all
  // ranks. Zeroes the gradients and starts the next step.
  void finish_step() {
    PLM_CHECK(micro_ == o_.micro_batches, "DataParallel::finish_step: the step's gradients were not reduced");
    const auto t0 = std::chrono::steady_clock::now();
    if (world() > 1 && o_.zero1) comm_->all_gather(ps_->values().data(), counts_, dtype_of_v<T>, "the parameter all-gather");
    sync_ += seconds_since(t0);
    ps_->zero_grad();
    micro_ = 0;
  }

  // Writes a training checkpoint from rank 0 (io::save_checkpoint's format,
  // the full optimizer state: under ZeRO-1 the ranks' parts are gathered to
  // rank 0 first). Every rank calls it.
  void save_checkpoint(const std::string& path, const std::vector<io::NamedTensor<B, T>>& state, const io::TrainingState& ts) {
    if (!o_.zero1 || world() == 1) {
      if (lead()) io::save_checkpoint(path, *ps_, state, ts);
      return;
    }
    std::vector<Tensor<B, T>> full;
    std::vector<io::NamedTensor<B, T>> named;
    for (const auto& s : state) {
      const auto counts = state_counts(s);
      full.emplace_back(Shape{lead() ? sum(counts) : 0});
      comm_->gather(s.view.data(), full.back().data(), counts, dtype_of_v<T>, 0, "the optimizer state gather");
      named.push_back({s.name, full.back().view()});
    }
    if (lead()) io::save_checkpoint(path, *ps_, named, ts);
  }

  // Resumes from rank 0's checkpoint at `path`, if rank 0 has one: rank 0
  // loads it and runs `check` on its training state (a fingerprint check:
  // throw to refuse), then every rank receives the parameters, its optimizer
  // state and the training state. nullopt, on every rank, when rank 0 finds no file.
  std::optional<io::TrainingState> resume(const std::string& path, const std::vector<io::NamedTensor<B, T>>& state,
                                          const std::function<void(const io::TrainingState&)>& check = {}) {
    const bool split = o_.zero1 && world() > 1;
    std::vector<Tensor<B, T>> full;  // rank 0, ZeRO-1: the whole state, scattered after loading
    std::vector<std::vector<index_t>> counts;
    std::vector<io::NamedTensor<B, T>> target = state;
    for (std::size_t k = 0; split && k < state.size(); ++k) {
      counts.push_back(state_counts(state[k]));
      full.emplace_back(Shape{lead() ? sum(counts.back()) : 0});
      target[k].view = full.back().view();
    }
    std::string ts_json;  // empty: no checkpoint
    if (lead() && std::filesystem::exists(path)) {
      const io::TrainingState ts = io::load_checkpoint(path, *ps_, target);
      if (check) check(ts);
      ts_json = nlohmann::json{{"step", ts.step}, {"seed", ts.seed}, {"epoch", ts.epoch}, {"cursor", ts.cursor}, {"extra", ts.extra}}.dump();
    }
    if (world() > 1) broadcast_string(*comm_, ts_json, 0, "the training state broadcast");
    if (ts_json.empty()) return std::nullopt;
    broadcast_parameters();
    for (std::size_t k = 0; k < state.size() && world() > 1; ++k) {
      if (split) comm_->scatter(full[k].data(), state[k].view.data(), counts[k], dtype_of_v<T>, 0, "the optimizer state scatter");
      else comm_->broadcast(state[k].view.data(), bytes(state[k].view.numel()), 0, "the optimizer state broadcast");
    }
    const auto j = nlohmann::json::parse(ts_json);
    io::TrainingState ts;
    ts.step = j.at("step").get<std::int64_t>(), ts.seed = j.at("seed").get<std::uint64_t>();
    ts.epoch = j.at("epoch").get<std::uint64_t>(), ts.cursor = j.at("cursor").get<std::uint64_t>(), ts.extra = j.at("extra");
    return ts;
  }

  // Seconds the last step spent in collectives (reduce_gradients and
  // finish_step), waiting for slower ranks included: what overlapping them
  // with the backward could save at most.
  double step_sync_seconds() const { return sync_; }

  // Bytes of optimizer state this rank holds, and what one process would hold (for reports).
  static index_t state_elements(const std::vector<io::NamedTensor<B, T>>& state) {
    index_t n = 0;
    for (const auto& s : state) n += s.view.numel();
    return n;
  }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }
  static std::size_t bytes(index_t n) { return static_cast<std::size_t>(n) * sizeof(T); }
  static index_t sum(const std::vector<index_t>& v) {
    index_t s = 0;
    for (index_t x : v) s += x;
    return s;
  }
  index_t offset(nn::ParamRange r) const { return r.begin < ps_->size() ? ps_->entry(r.begin).offset : ps_->numel(); }
  // Every rank's length of one state tensor (each rank's part of the full tensor, in rank order).
  std::vector<index_t> state_counts(const io::NamedTensor<B, T>& s) {
    std::vector<index_t> counts;
    for (std::int64_t n : gather_values(*comm_, s.view.numel(), "the optimizer state sizes")) counts.push_back(n);
    return counts;
  }

  Communicator* comm_;
  nn::ParameterSet<B, T>* ps_;
  Options o_;
  std::vector<nn::ParamRange> shards_;
  std::vector<index_t> counts_;  // elements of each rank's run
  Tensor<B, T> acc_;             // the step's earlier micro-batches (micro_batches > 1)
  std::int64_t micro_ = 0;       // micro-batches done this step
  double sync_ = 0;              // step_sync_seconds()
};

}  // namespace plm::dist
