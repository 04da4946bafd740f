#pragma once
// Shared pieces of the CPU ops: Eigen maps, OpenMP helpers and shape checks.
#include <Eigen/Core>
#include <cstdint>
#include <type_traits>

#include "plm/backend/checks.hpp"
#include "plm/backend/cpu/memory.hpp"
#include "plm/backend/cpu/threads.hpp"
#include "plm/core/error.hpp"
#include "plm/core/tensor.hpp"

namespace plm::detail {

template <class T> using View = TensorView<cpu, T>;
template <class T> using CView = TensorView<cpu, const T>;

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMatMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Runs f(begin, end) over [0, n) split across threads when the work is large enough.
// `cost` is the approximate work per index, in elementary operations.
template <class F>
void parallel_for(index_t n, index_t cost, F&& f) {
#if defined(_OPENMP)
  if (n > 1 && n * cost >= parallel_grain && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel
    {
      const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const index_t chunk = (n + nt - 1) / nt;
      const index_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
      if (b < e) f(b, e);
    }
    return;
  }
#endif
  (void)cost;
  if (n > 0) f(index_t{0}, n);
}

}  // namespace plm::detail
