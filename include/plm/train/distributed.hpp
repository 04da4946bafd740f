#pragma once
// What a training program needs to run as one rank of a job, on top of
// dist/ (the communicators) and dist::DataParallel:
//
//   train::DistOptions dist;  train::add_dist_options(cli_group, dist);   // --zero1, --dist-timeout
//   return train::run_job(argc, argv, "my_trainer", dist, device, [&](auto backend, dist::Communicator& comm) {
//     return run<decltype(backend)>(opts, comm);
//   });
//
// run_job starts MPI when a launcher started the program (dist::Environment),
// gives each local rank its own GPU (unless --gpu says) and its share of the
// cores (unless --threads says), runs the body on the chosen backend with the
// communicator for it (MPI for CPU tensors, NCCL for CUDA tensors across
// ranks) and, when the body throws on any rank, prints the error with the
// rank's number and stops every rank of the job.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "plm/backend/tags.hpp"
#include "plm/dist/communicator.hpp"
#include "plm/dist/data_parallel.hpp"
#include "plm/dist/environment.hpp"
#include "plm/objectives/multitask.hpp"
#include "plm/train/classification.hpp"
#include "plm/train/cli.hpp"
#include "plm/train/device.hpp"
#if defined(PLM_HAS_CUDA) && defined(PLM_NCCL)
#include "plm/dist/nccl.hpp"
#endif

namespace plm::train {

struct DistOptions {
  bool zero1 = false;    // shard the optimizer state over the ranks (ZeRO stage 1)
  double timeout = 600;  // seconds a rank waits for a peer before the job stops
};

template <class Group>
void add_dist_options(Group& g, DistOptions& d) {
  g.add_flag("--zero1", d.zero1, "under mpirun / srun: each rank keeps the optimizer state of its share of the parameters (ZeRO-1)");
  g.add_option("--dist-timeout", d.timeout, "seconds a rank waits for another before the job stops, naming the rank it waited for")
      ->check(cli::positive());
}

// --threads 0 means the cores of this machine shared by the ranks on it.
inline void set_threads_for_rank(int threads) {
  if (threads > 0) return set_num_threads(threads);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (dist::local_size() > 1) set_num_threads(std::max(1, cores / dist::local_size()));
}

// Prints (rank 0) how the job is spread and what ZeRO-1 saves.
template <class B, class T>
void report_data_parallel(dist::DataParallel<B, T>& dp, const std::vector<io::NamedTensor<B, T>>& state, const char* program) {
  auto& comm = dp.communicator();
  if (comm.size() == 1 && !dp.options().zero1) return;
  const double mine = double(dist::DataParallel<B, T>::state_elements(state)) * sizeof(T) / 1048576.0;
  const double all = comm.size() > 1 ? dist::sum_over_ranks(comm, mine, "the optimizer state sizes") : mine;
  if (!dp.lead()) return;
  std::fprintf(stderr, "%s: %d rank%s (%s), %lld micro-batch%s per step in all; optimizer state %.2f MiB on rank 0 of %.2f MiB%s\n", program,
               comm.size(), comm.size() > 1 ? "s" : "", comm.name(), (long long)dp.global_micro_batches(),
               dp.global_micro_batches() > 1 ? "es" : "", mine, dp.options().zero1 ? all : mine,
               dp.options().zero1 ? " (ZeRO-1: each rank keeps its shard)" : " (a full copy on every rank)");
}

// Every rank's MultiTaskResult folded into one, in rank order (what one
// process folding the same batches in that order gets). A rank that
// evaluated no batch (fewer batches than ranks) adds nothing.
inline objectives::MultiTaskResult fold_over_ranks(dist::Communicator& comm, objectives::MultiTaskResult mine,
                                                   const std::vector<objectives::TaskSpec>& tasks, const char* what) {
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t.name);
  const bool present = !mine.tasks.empty();
  if (!present)
    for (const auto& t : tasks) mine.tasks.push_back({t.name, t.weight});
  auto numbers = mine.numbers();
  numbers.push_back(present ? 1.0 : 0.0);
  objectives::MultiTaskResult out;
  for (auto& v : dist::gather_numbers(comm, numbers, what)) {
    const bool has = v.back() != 0;
    v.pop_back();
    if (has) out.add(objectives::MultiTaskResult::from_numbers(v, names));
  }
  return out;
}

// Batches [0, n) of a fixed set (held-out batches) shared by the ranks:
// rank r computes f(b) (`width` numbers) for b = r, r + size, ...; every rank
// gets every batch's row as its owner computed it (one rank contributes each
// element, so the sum over ranks is exact). Folding the rows in batch order
// then gives what one process evaluating every batch in order gets, bit for bit.
template <class F>
std::vector<std::vector<double>> shared_batch_rows(dist::Communicator& comm, std::size_t n, std::size_t width, const char* what, F&& f) {
  const auto N = static_cast<std::size_t>(comm.size()), r = static_cast<std::size_t>(comm.rank());
  std::vector<double> table(n * width, 0.0);
  for (std::size_t b = r; b < n; b += N) {
    const std::vector<double> row = f(b);
    PLM_CHECK(row.size() == width, what, ": batch ", b, " gives ", row.size(), " numbers, not ", width);
    std::copy(row.begin(), row.end(), table.begin() + static_cast<long>(b * width));
  }
  if (N > 1) table = dist::sum_over_ranks(comm, table, what);
  std::vector<std::vector<double>> rows;
  for (std::size_t b = 0; b < n; ++b) rows.emplace_back(table.begin() + static_cast<long>(b * width), table.begin() + static_cast<long>((b + 1) * width));
  return rows;
}

// MultiTask results of batches [0, n) shared by the ranks (f(b) evaluates
// batch b), folded in batch order: one process's figures, on every rank.
template <class F>
objectives::MultiTaskResult evaluate_shared(dist::Communicator& comm, std::size_t n, const std::vector<objectives::TaskSpec>& tasks,
                                            const char* what, F&& f) {
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t.name);
  objectives::MultiTaskResult out;
  for (const auto& row : shared_batch_rows(comm, n, 1 + 6 * tasks.size(), what, [&](std::size_t b) { return f(b).numbers(); }))
    out.add(objectives::MultiTaskResult::from_numbers(row, names));
  return out;
}

// The ranks' shares of an evaluation (NegativeMiningModel::evaluate with rank
// and world) put together: the per-batch losses added in batch order and the
// confusion matrices added exactly, as one process evaluating every batch gets.
inline ClassifierEvaluation sum_over_ranks(dist::Communicator& comm, const ClassifierEvaluation& mine, const char* what) {
  if (comm.size() == 1) return mine;
  const std::int32_t k = mine.cm.classes();
  std::vector<double> v = mine.batch_losses;
  for (std::int32_t t = 0; t < k; ++t)
    for (std::int32_t p = 0; p < k; ++p) v.push_back(double(mine.cm.count(t, p)));
  const auto s = dist::sum_over_ranks(comm, v, what);  // one rank holds each batch's loss: exact
  ClassifierEvaluation out{0, ConfusionMatrix(k), {s.begin(), s.begin() + static_cast<long>(mine.batch_losses.size())}, mine.proteins};
  for (double l : out.batch_losses) out.loss += l;
  out.loss /= double(std::max<std::size_t>(out.proteins, 1));
  const std::size_t at = out.batch_losses.size();
  for (std::int32_t t = 0; t < k; ++t)
    for (std::int32_t p = 0; p < k; ++p) out.cm.add(t, p, static_cast<std::int64_t>(s[at + static_cast<std::size_t>(t * k + p)]));
  return out;
}

// Runs a training program's body as one rank of a job (see the top of this file).
template <class F>
int run_job(int& argc, char**& argv, const char* program, const DistOptions& d, DeviceOptions device, F&& body) {
  std::unique_ptr<dist::Environment> env;
  try {
    env = std::make_unique<dist::Environment>(argc, argv);
    env->world().set_timeout_seconds(d.timeout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
  dist::Communicator& world = env->world();
  if (device.gpu < 0) device.gpu = dist::local_rank();  // one GPU per rank of a machine
  return dist::run_job(world, program, [&] {
    return run_on_device(device, [&](auto backend) {
      using B = decltype(backend);
      if constexpr (std::is_same_v<B, cuda>) {
        if (world.size() > 1) {
#if defined(PLM_HAS_CUDA) && defined(PLM_NCCL)
          dist::NcclCommunicator nccl(world);
          return body(backend, static_cast<dist::Communicator&>(nccl));
#else
          PLM_FAIL("--device cuda on ", world.size(), " ranks needs NCCL: configure plm with -DPLM_NCCL=ON (NCCL from the CUDA toolkit)");
#endif
        }
      }
      return body(backend, world);
    });
  });
}

}  // namespace plm::train
