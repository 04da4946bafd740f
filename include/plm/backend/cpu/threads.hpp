#pragma once
// Thread count of the CPU backend: OpenMP loops, Eigen's GEMM and, when the
// BLAS route is on, OpenBLAS all follow plm::set_num_threads.
#if defined(_OPENMP)
#include <omp.h>
#endif
#include "plm/core/error.hpp"

#if defined(PLM_USE_BLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace plm {

inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int n) {
  PLM_CHECK(n >= 1, "set_num_threads: need at least one thread, got ", n);
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
#if defined(PLM_USE_BLAS)
  openblas_set_num_threads(n);
#endif
}

namespace detail {
// Loops shorter than this run on one thread: forking costs more than it saves.
inline constexpr long parallel_grain = 1 << 15;
}  // namespace detail

}  // namespace plm
