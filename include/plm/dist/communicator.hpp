#pragma once
// plm::dist: the collectives data-parallel training needs, behind one
// interface, so a training loop is the same code in one process, across MPI
// ranks (CPU tensors, dist/mpi.hpp) and across GPUs (NCCL, dist/nccl.hpp).
//
//   dist::Environment env(argc, argv);        // MPI_Init when started by mpirun / srun
//   dist::Communicator& comm = env.world();   // rank(), size()
//   ... dist::DataParallel (dist/data_parallel.hpp) drives it for a model ...
//
// Two kinds of collectives:
//   tensor collectives  on buffers in the communicator's memory (host for MPI
//                       and the single process, CUDA for NCCL): reduce-scatter,
//                       all-gather, gather and broadcast over segments
//   host collectives    on host memory whatever the tensors' memory (metrics,
//                       flags, a checkpoint's JSON state)
//
// Sums. The MPI and single-process communicators add the ranks' terms in rank
// order, ((x0 + x1) + x2) + ..., on every element, and every rank receives the
// same bits: a run on N ranks adds what one process accumulating N
// micro-batches adds, in the same order (DataParallel relies on this). NCCL
// chooses its own order (dist/nccl.hpp).
//
// Failures. A collective that waits longer than timeout_seconds() for a peer
// raises a plm::Error naming this rank, the peers it still waits for and the
// collective (`what`): a dead or hung peer never blocks a rank forever. A
// program ends a failed job with dist::run_job, which aborts every rank.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"
#include "plm/core/shape.hpp"

namespace plm::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single process", "MPI", "NCCL".
  virtual const char* name() const = 0;
  // Where the buffers of tensor collectives live: false for host memory, true for CUDA memory.
  virtual bool device_memory() const { return false; }

  // Tensor collectives, on float or double elements (`t`). `buf` is laid out
  // as size() segments of counts[r] elements, in rank order.
  // Afterwards segment rank() holds the element-wise sum of every rank's copy
  // of that segment; the other segments are left undefined.
  virtual void reduce_scatter(void* buf, const std::vector<index_t>& counts, DType t, const char* what) = 0;
  // Afterwards every rank holds segment r as rank r had it.
  virtual void all_gather(void* buf, const std::vector<index_t>& counts, DType t, const char* what) = 0;
  // Rank r's `mine` (counts[r] elements) lands in root's `all` (every segment,
  // in rank order); `all` is only read on the root.
  virtual void gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) = 0;
  // The reverse: segment r of root's `all` into rank r's `mine`.
  virtual void scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) = 0;
  // Root's `bytes` bytes of buf to every rank.
  virtual void broadcast(void* buf, std::size_t bytes, int root, const char* what) = 0;

  // Host collectives. all: size() * bytes; rank r's `mine` lands at all + r * bytes.
  virtual void host_all_gather(const void* mine, std::size_t bytes, void* all, const char* what) = 0;
  virtual void host_broadcast(void* buf, std::size_t bytes, int root, const char* what) = 0;
  virtual void barrier(const char* what) = 0;

  // Ends every process of the job with `code` (MPI_Abort); the single process exits.
  [[noreturn]] virtual void abort(int code) = 0;

  // How long a collective waits for a peer before it fails.
  double timeout_seconds() const { return timeout_; }
  void set_timeout_seconds(double s) {
    PLM_CHECK(s > 0, "dist: timeout ", s, " s must be positive");
    timeout_ = s;
  }
  // "rank 1 of 4" (or "" in a single process): the prefix of this rank's messages.
  std::string where() const { return size() > 1 ? "rank " + std::to_string(rank()) + " of " + std::to_string(size()) : std::string(); }

 private:
  double timeout_ = 600;
};

// One process: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "single process"; }
  void reduce_scatter(void*, const std::vector<index_t>& counts, DType, const char* what) override { check(counts, what); }
  void all_gather(void*, const std::vector<index_t>& counts, DType, const char* what) override { check(counts, what); }
  void gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) override {
    copy(mine, all, counts, t, root, what);
  }
  void scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) override {
    copy(all, mine, counts, t, root, what);
  }
  void broadcast(void*, std::size_t, int root, const char* what) override {
    PLM_CHECK(root == 0, "dist: ", what, ": root ", root, " outside the single process");
  }
  void host_all_gather(const void* mine, std::size_t bytes, void* all, const char*) override {
    if (bytes) std::memmove(all, mine, bytes);
  }
  void host_broadcast(void*, std::size_t, int root, const char* what) override {
    PLM_CHECK(root == 0, "dist: ", what, ": root ", root, " outside the single process");
  }
  void barrier(const char*) override {}
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    std::exit(code);
  }

 private:
  static void check(const std::vector<index_t>& counts, const char* what) {
    PLM_CHECK(counts.size() == 1 && counts[0] >= 0, "dist: ", what, ": ", counts.size(), " segments for 1 rank");
  }
  // Host memory only: a single process holding CUDA tensors needs no communicator calls with data.
  static void copy(const void* from, void* to, const std::vector<index_t>& counts, DType t, int root, const char* what) {
    check(counts, what);
    PLM_CHECK(root == 0, "dist: ", what, ": root ", root, " outside the single process");
    const std::size_t bytes = static_cast<std::size_t>(counts[0]) * dtype_size(t);
    if (bytes && from != to) std::memmove(to, from, bytes);
  }
};

// --- helpers over any communicator ---

// Splits n elements into size segments as evenly as possible (the first n % size get one more).
inline std::vector<index_t> even_counts(index_t n, int size) {
  PLM_CHECK(n >= 0 && size > 0, "dist::even_counts: ", n, " elements over ", size, " ranks");
  std::vector<index_t> c(static_cast<std::size_t>(size), n / size);
  for (index_t r = 0; r < n % size; ++r) c[static_cast<std::size_t>(r)] += 1;
  return c;
}

// The element-wise sum over ranks of every rank's `v` (all of the same length),
// added in rank order: the same bits on every rank.
inline std::vector<double> sum_over_ranks(Communicator& comm, const std::vector<double>& v, const char* what) {
  const std::size_t n = v.size(), N = static_cast<std::size_t>(comm.size());
  std::vector<double> all(n * N), out(n, 0.0);
  comm.host_all_gather(v.data(), n * sizeof(double), all.data(), what);
  for (std::size_t i = 0; i < n; ++i) {
    double s = all[i];
    for (std::size_t r = 1; r < N; ++r) s += all[r * n + i];
    out[i] = s;
  }
  return out;
}

inline double sum_over_ranks(Communicator& comm, double x, const char* what) { return sum_over_ranks(comm, std::vector<double>{x}, what)[0]; }

// Every rank's value of x, in rank order.
inline std::vector<std::int64_t> gather_values(Communicator& comm, std::int64_t x, const char* what) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(comm.size()));
  comm.host_all_gather(&x, sizeof x, all.data(), what);
  return all;
}

// Every rank's list of numbers (of one length on every rank), in rank order.
inline std::vector<std::vector<double>> gather_numbers(Communicator& comm, const std::vector<double>& v, const char* what) {
  const std::size_t n = v.size(), N = static_cast<std::size_t>(comm.size());
  const auto lengths = gather_values(comm, static_cast<std::int64_t>(n), what);
  for (std::size_t r = 0; r < N; ++r)
    PLM_CHECK(lengths[r] == static_cast<std::int64_t>(n), "dist: ", what, ": rank ", r, " sends ", lengths[r], " numbers, rank ",
              comm.rank(), " ", n);
  std::vector<double> all(n * N);
  comm.host_all_gather(v.data(), n * sizeof(double), all.data(), what);
  std::vector<std::vector<double>> out;
  for (std::size_t r = 0; r < N; ++r) out.emplace_back(all.begin() + static_cast<long>(r * n), all.begin() + static_cast<long>((r + 1) * n));
  return out;
}

// Root's string to every rank.
inline void broadcast_string(Communicator& comm, std::string& s, int root, const char* what) {
  std::uint64_t n = s.size();
  comm.host_broadcast(&n, sizeof n, root, what);
  s.resize(static_cast<std::size_t>(n));
  if (n) comm.host_broadcast(s.data(), s.size(), root, what);
}

// Runs a program's body (returning its exit code). An exception on any rank
// is printed as "<program>: rank r of N: <message>" and ends every rank of the
// job (Communicator::abort), so a failure on one rank never leaves the others
// waiting; in a single process it returns 1 after printing.
template <class F>
int run_job(Communicator& comm, const char* program, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    const std::string w = comm.where();
    std::fprintf(stderr, "\n%s: %s%s%s\n", program, w.c_str(), w.empty() ? "" : ": ", e.what());
    std::fflush(stderr);
    if (comm.size() > 1) comm.abort(1);
    return 1;
  }
}

}  // namespace plm::dist
