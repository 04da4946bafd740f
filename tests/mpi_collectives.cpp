// dist::MpiCommunicator's collectives on 3 ranks (uneven segments, a rank
// with an empty one), run by ctest as `mpirun -np 3 plm_mpi_collectives`:
// every result is compared bit for bit with what one process computes from
// the same inputs, adding in rank order. Exits non-zero naming the first
// failed check; every rank checks its own results.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "plm/core/philox.hpp"
#include "plm/dist/environment.hpp"

using namespace plm;

namespace {
int failures = 0;
void check(bool ok, int rank, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: FAIL: %s\n", rank, what.c_str());
    ++failures;
  }
}

// Rank r's buffer: values of very different sizes, so that the order of the additions shows in the bits.
template <class T>
std::vector<T> input(int rank, std::size_t n) {
  Philox rng(99, static_cast<std::uint64_t>(rank));
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng.normal() * std::pow(10.0, double(rng.below(12)) - 6.0));
  return v;
}

template <class T>
void reduce_scatter_and_gather(dist::Communicator& c, DType t) {
  const int N = c.size(), r = c.rank();
  const std::vector<index_t> counts{5, 0, 4500001};  // rank 1 holds nothing; rank 2's segment takes several 16 MiB rounds
  std::size_t total = 0;
  for (index_t k : counts) total += static_cast<std::size_t>(k);
  std::vector<T> buf = input<T>(r, total);
  c.reduce_scatter(buf.data(), counts, t, "test reduce-scatter");
  // The expected sum of this rank's segment: ((x0 + x1) + x2).
  std::size_t off = 0;
  for (int k = 0; k < r; ++k) off += static_cast<std::size_t>(counts[static_cast<std::size_t>(k)]);
  std::vector<std::vector<T>> all;
  for (int k = 0; k < N; ++k) all.push_back(input<T>(k, total));
  bool same = true;
  for (std::size_t i = 0; i < static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]); ++i) {
    T s = all[0][off + i];
    for (int k = 1; k < N; ++k) s += all[static_cast<std::size_t>(k)][off + i];
    same = same && std::memcmp(&s, &buf[off + i], sizeof(T)) == 0;
  }
  check(same, r, std::string("reduce-scatter adds in rank order (") + std::string(dtype_name(t)) + ")");

  // All-gather: every rank gets every segment as its owner had it.
  std::vector<T> g(total);
  for (std::size_t i = 0; i < total; ++i) g[i] = static_cast<T>(1000 * r + int(i % 7));
  c.all_gather(g.data(), counts, t, "test all-gather");
  same = true;
  std::size_t o = 0;
  for (int k = 0; k < N; ++k)
    for (index_t i = 0; i < counts[static_cast<std::size_t>(k)]; ++i, ++o) same = same && g[o] == static_cast<T>(1000 * k + int(o % 7));
  check(same, r, "all-gather");

  // Gather to rank 2 and scatter back from it.
  std::vector<T> mine(static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]), static_cast<T>(r + 1)), whole(r == 2 ? total : 0);
  c.gather(mine.data(), whole.data(), counts, t, 2, "test gather");
  if (r == 2) {
    same = true, o = 0;
    for (int k = 0; k < N; ++k)
      for (index_t i = 0; i < counts[static_cast<std::size_t>(k)]; ++i, ++o) same = same && whole[o] == static_cast<T>(k + 1);
    check(same, r, "gather");
    for (std::size_t i = 0; i < total; ++i) whole[i] = static_cast<T>(i);
  }
  std::vector<T> back(mine.size(), T(-1));
  c.scatter(whole.data(), back.data(), counts, t, 2, "test scatter");
  same = true;
  for (std::size_t i = 0; i < back.size(); ++i) same = same && back[i] == static_cast<T>(off + i);
  check(same, r, "scatter");
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  dist::Communicator& c = env.world();
  const int r = c.rank();
  if (c.size() != 3) {
    std::fprintf(stderr, "plm_mpi_collectives: run me on 3 ranks (mpirun -np 3), not %d\n", c.size());
    return 2;
  }
  check(std::string(c.name()) == "MPI", r, "the world communicator is MPI under mpirun");
  reduce_scatter_and_gather<float>(c, DType::f32);
  reduce_scatter_and_gather<double>(c, DType::f64);

  // Broadcast from rank 1, a string from rank 2, host gathers and sums.
  std::vector<double> b(10, r == 1 ? 3.5 : 0.0);
  c.broadcast(b.data(), b.size() * sizeof(double), 1, "test broadcast");
  check(b == std::vector<double>(10, 3.5), r, "broadcast");
  std::string s = r == 2 ? std::string(100000, 'x') + "end" : std::string("short");
  dist::broadcast_string(c, s, 2, "test string");
  check(s.size() == 100003 && s.substr(100000) == "end", r, "string broadcast");
  const auto sums = dist::sum_over_ranks(c, {1e16, double(r)}, "test sum");
  check(sums[1] == 3.0 && sums[0] == (1e16 + 1e16) + 1e16, r, "sum over ranks");
  const auto numbers = dist::gather_numbers(c, {double(r), -double(r)}, "test numbers");
  check(numbers.size() == 3 && numbers[2][1] == -2.0, r, "gather numbers");
  c.barrier("test barrier");

  // A collective whose segments disagree between ranks fails instead of hanging.
  bool refused = false;
  try {
    std::vector<float> x(4);
    c.all_gather(x.data(), {1, 1}, DType::f32, "test bad segments");
  } catch (const Error& e) {
    refused = std::string(e.what()).find("2 segments for 3 ranks") != std::string::npos;
  }
  check(refused, r, "a wrong segment count is refused");

  // A peer that never answers: the wait ends after the timeout, naming it.
  c.set_timeout_seconds(0.5);
  if (r == 0) {
    std::string msg;
    try {
      double x = 0;
      c.host_broadcast(&x, sizeof x, 1, "a broadcast rank 1 never sends");  // ranks 1 and 2 do not take part
    } catch (const Error& e) {
      msg = e.what();
    }
    check(msg.find("rank 0 waited 0.5 s for rank 1 in a broadcast rank 1 never sends") != std::string::npos, r, "timeout message: " + msg);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past rank 0's timeout: its receive was withdrawn
  }
  c.set_timeout_seconds(60);
  const auto bad = dist::sum_over_ranks(c, double(failures), "the failure count");
  std::fflush(stderr);
  if (r == 0) std::printf(bad == 0 ? "plm_mpi_collectives: all checks passed on 3 ranks\n" : "plm_mpi_collectives: %g failures\n", bad);
  std::fflush(stdout);
  c.barrier("the end");
  return bad == 0 ? 0 : 1;
}
