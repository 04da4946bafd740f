#pragma once
// dist::MpiCommunicator: plm's collectives over MPI point-to-point messages,
// on host memory (CPU tensors). Built when PLM_MPI is defined (the CMake
// option PLM_MPI, on by default where an MPI library is found).
//
// Why point-to-point rather than MPI_Allreduce: MPI chooses the order in which
// it adds the ranks' terms (and may change it with the message size), so a
// job's gradients would depend on the MPI library and the rank count. Here
// every rank receives its segment from each peer and adds the terms in rank
// order itself, and the waits poll with a deadline, so a peer that died or
// hangs is named instead of blocking the job forever.
//
// Cost: a reduce-scatter sends (N-1)/N of the buffer per rank, like a ring,
// in N-1 messages per peer pair and round; staging is (N-1) x 16 MiB at most
// (rounds of chunk_bytes per segment).
#if defined(PLM_MPI)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "plm/dist/communicator.hpp"

namespace plm::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Works on a duplicate of `comm` (its messages never meet the caller's).
  explicit MpiCommunicator(MPI_Comm comm) {
    check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "MPI"; }
  MPI_Comm handle() const { return comm_; }

  // Elements of a segment exchanged per round of a reduce-scatter.
  static constexpr std::size_t chunk_bytes = std::size_t{16} << 20;

  void reduce_scatter(void* buf, const std::vector<index_t>& counts, DType t, const char* what) override {
    const std::size_t es = element_size(t, what);
    const auto off = offsets(counts, what);
    const index_t chunk = static_cast<index_t>(chunk_bytes / es);
    const index_t mine = counts[static_cast<std::size_t>(rank_)];
    index_t longest = 0;
    for (index_t c : counts) longest = std::max(longest, c);
    auto* base = static_cast<char*>(buf);
    staging_.resize(static_cast<std::size_t>(size_ - 1) * static_cast<std::size_t>(std::min(chunk, mine)) * es);
    for (index_t lo = 0; lo < longest; lo += chunk) {
      const index_t n = std::clamp<index_t>(mine - lo, 0, chunk);
      Pending p;
      for (int j = 0; j < size_; ++j) {
        if (j == rank_) continue;
        if (n > 0) p.recv(staging_.data() + slot(j) * static_cast<std::size_t>(n) * es, static_cast<std::size_t>(n) * es, j, comm_);
        const index_t nj = std::clamp<index_t>(counts[static_cast<std::size_t>(j)] - lo, 0, chunk);
        if (nj > 0) p.send(base + static_cast<std::size_t>(off[static_cast<std::size_t>(j)] + lo) * es, static_cast<std::size_t>(nj) * es, j, comm_);
      }
      wait(p, what);
      if (n == 0) continue;
      char* own = base + static_cast<std::size_t>(off[static_cast<std::size_t>(rank_)] + lo) * es;
      if (t == DType::f32) add_in_rank_order(reinterpret_cast<float*>(own), static_cast<std::size_t>(n));
      else add_in_rank_order(reinterpret_cast<double*>(own), static_cast<std::size_t>(n));
    }
  }

  void all_gather(void* buf, const std::vector<index_t>& counts, DType t, const char* what) override {
    const std::size_t es = element_size(t, what);
    const auto off = offsets(counts, what);
    auto* base = static_cast<char*>(buf);
    auto seg = [&](int r) { return std::pair{base + static_cast<std::size_t>(off[static_cast<std::size_t>(r)]) * es,
                                             static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]) * es}; };
    Pending p;
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      p.recv(seg(j).first, seg(j).second, j, comm_);
      p.send(seg(rank_).first, seg(rank_).second, j, comm_);
    }
    wait(p, what);
  }

  void gather(const void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) override {
    root_exchange(true, const_cast<void*>(mine), all, counts, t, root, what);
  }
  void scatter(const void* all, void* mine, const std::vector<index_t>& counts, DType t, int root, const char* what) override {
    root_exchange(false, mine, const_cast<void*>(all), counts, t, root, what);
  }

  void broadcast(void* buf, std::size_t bytes, int root, const char* what) override { host_broadcast(buf, bytes, root, what); }

  void host_all_gather(const void* mine, std::size_t bytes, void* all, const char* what) override {
    auto* base = static_cast<char*>(all);
    Pending p;
    for (int j = 0; j < size_; ++j) {
      if (j == rank_) continue;
      p.recv(base + static_cast<std::size_t>(j) * bytes, bytes, j, comm_);
      p.send(mine, bytes, j, comm_);
    }
    if (bytes) std::memmove(base + static_cast<std::size_t>(rank_) * bytes, mine, bytes);
    wait(p, what);
  }

  void host_broadcast(void* buf, std::size_t bytes, int root, const char* what) override {
    check_root(root, what);
    Pending p;
    if (rank_ == root) {
      for (int j = 0; j < size_; ++j)
        if (j != root) p.send(buf, bytes, j, comm_);
    } else {
      p.recv(buf, bytes, root, comm_);
    }
    wait(p, what);
  }

  void barrier(const char* what) override {
    char token = 0;
    std::vector<char> all(static_cast<std::size_t>(size_));
    host_all_gather(&token, 1, all.data(), what);
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; if it did, this process still ends
  }

 private:
  // Requests in flight and the peer of each (to name the ones a timeout still waits for).
  struct Pending {
    std::vector<MPI_Request> requests;
    std::vector<int> peers;
    // Messages above 1 GiB go in pieces (MPI counts are int); pieces keep their order.
    static constexpr std::size_t piece = std::size_t{1} << 30;
    void send(const void* p, std::size_t bytes, int peer, MPI_Comm c) {
      for (std::size_t o = 0; o < bytes || o == 0; o += piece) {
        const int n = static_cast<int>(std::min(piece, bytes - o));
        requests.emplace_back(), peers.push_back(peer);
        check(MPI_Isend(static_cast<const char*>(p) + o, n, MPI_BYTE, peer, tag, c, &requests.back()), "MPI_Isend");
        if (bytes == 0) break;
      }
    }
    void recv(void* p, std::size_t bytes, int peer, MPI_Comm c) {
      for (std::size_t o = 0; o < bytes || o == 0; o += piece) {
        const int n = static_cast<int>(std::min(piece, bytes - o));
        requests.emplace_back(), peers.push_back(peer);
        check(MPI_Irecv(static_cast<char*>(p) + o, n, MPI_BYTE, peer, tag, c, &requests.back()), "MPI_Irecv");
        if (bytes == 0) break;
      }
    }
  };
  static constexpr int tag = 0x504c4d;  // every collective runs in the same order on every rank

  static void check(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    PLM_FAIL("dist: ", call, " failed: ", std::string(msg, static_cast<std::size_t>(len)));
  }

  // Polls until every request is done; past the deadline, fails naming the
  // peers still owed a message. Sleeps between polls once a wait is long, so
  // a rank waiting for a slower one does not spin a core the other may need.
  void wait(Pending& p, const char* what) {
    if (p.requests.empty()) return;
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout_seconds());
    for (long polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Testall(static_cast<int>(p.requests.size()), p.requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (done) return;
      const auto now = std::chrono::steady_clock::now();
      if (now > deadline) {
        std::set<int> late;
        for (std::size_t i = 0; i < p.requests.size(); ++i)
          if (p.requests[i] != MPI_REQUEST_NULL) {
            late.insert(p.peers[i]);
            // Withdrawn, so that a late message can never land in a buffer the caller has since reused.
            MPI_Cancel(&p.requests[i]);
            MPI_Request_free(&p.requests[i]);
          }
        std::string who;
        for (int r : late) who += (who.empty() ? "" : ", ") + std::to_string(r);
        PLM_FAIL("dist: rank ", rank_, " waited ", timeout_seconds(), " s for rank", late.size() > 1 ? "s " : " ", who, " in ", what,
                 ": that rank died, hangs, or is far slower (raise the timeout if a step or a checkpoint legitimately takes longer)");
      }
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 50));
    }
  }

  // Segment j of root's `all` and rank j's `mine`: to_root copies the ranks'
  // segments into `all` (gather), otherwise `all`'s out to the ranks (scatter).
  // Only the direction's source is read.
  void root_exchange(bool to_root, void* mine, void* all, const std::vector<index_t>& counts, DType t, int root, const char* what) {
    const std::size_t es = element_size(t, what);
    const auto off = offsets(counts, what);
    check_root(root, what);
    Pending p;
    if (rank_ != root) {
      const std::size_t bytes = static_cast<std::size_t>(counts[static_cast<std::size_t>(rank_)]) * es;
      to_root ? p.send(mine, bytes, root, comm_) : p.recv(mine, bytes, root, comm_);
    } else {
      for (int j = 0; j < size_; ++j) {
        char* seg = static_cast<char*>(all) + static_cast<std::size_t>(off[static_cast<std::size_t>(j)]) * es;
        const std::size_t bytes = static_cast<std::size_t>(counts[static_cast<std::size_t>(j)]) * es;
        if (j != rank_) to_root ? p.recv(seg, bytes, j, comm_) : p.send(seg, bytes, j, comm_);
        else if (bytes && seg != mine) to_root ? (void)std::memmove(seg, mine, bytes) : (void)std::memmove(mine, seg, bytes);
      }
    }
    wait(p, what);
  }

  std::size_t slot(int peer) const { return static_cast<std::size_t>(peer < rank_ ? peer : peer - 1); }

  // own = x_0 + x_1 + ... + x_{N-1}, in that order, with x_rank = own and the others in staging.
  template <class T>
  void add_in_rank_order(T* own, std::size_t n) const {
    const T* x = reinterpret_cast<const T*>(staging_.data());
    auto peer = [&](int j) { return x + slot(j) * n; };
    if (rank_ == 0) {
      for (int j = 1; j < size_; ++j) {
        const T* y = peer(j);
        for (std::size_t i = 0; i < n; ++i) own[i] += y[i];
      }
      return;
    }
    T* acc = const_cast<T*>(peer(0));  // x_0, then (x_0 + x_1), ... up to x_{rank-1}
    for (int j = 1; j < rank_; ++j) {
      const T* y = peer(j);
      for (std::size_t i = 0; i < n; ++i) acc[i] += y[i];
    }
    for (std::size_t i = 0; i < n; ++i) own[i] = acc[i] + own[i];
    for (int j = rank_ + 1; j < size_; ++j) {
      const T* y = peer(j);
      for (std::size_t i = 0; i < n; ++i) own[i] += y[i];
    }
  }

  static std::size_t element_size(DType t, const char* what) {
    PLM_CHECK(t == DType::f32 || t == DType::f64, "dist: ", what, ": MPI collectives add float or double, not ", dtype_name(t));
    return t == DType::f32 ? sizeof(float) : sizeof(double);
  }
  std::vector<index_t> offsets(const std::vector<index_t>& counts, const char* what) const {
    PLM_CHECK(static_cast<int>(counts.size()) == size_, "dist: ", what, ": ", counts.size(), " segments for ", size_, " ranks");
    std::vector<index_t> off(counts.size(), 0);
    for (std::size_t r = 1; r < counts.size(); ++r) off[r] = off[r - 1] + counts[r - 1];
    for (index_t c : counts) PLM_CHECK(c >= 0, "dist: ", what, ": negative segment length ", c);
    return off;
  }
  void check_root(int root, const char* what) const {
    PLM_CHECK(root >= 0 && root < size_, "dist: ", what, ": root ", root, " outside ", size_, " ranks");
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<char> staging_;
};

}  // namespace plm::dist
#endif  // PLM_MPI
