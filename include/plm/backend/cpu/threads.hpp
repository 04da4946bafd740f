#pragma once
// Thread count of the CPU backend: OpenMP loops and the pieces of every GEMM
// follow plm::set_num_threads. Eigen and OpenBLAS run each piece
// single-threaded inside plm's parallel region (their own threading would
// change the bits with the thread count, gemm.hpp); they are set alike for
// any use outside plm's ops.
#if defined(_OPENMP)
#include <omp.h>
#endif
#include <cctype>
#include <string>

#include "plm/core/error.hpp"

#if defined(PLM_USE_BLAS)
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
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

// The kernel family OpenBLAS chose for this CPU at load time ("" without the BLAS route).
inline std::string blas_core() {
#if defined(PLM_USE_BLAS)
  const char* name = openblas_get_corename();
  return name ? std::string(name) : std::string();
#else
  return {};
#endif
}

// Non-empty when OpenBLAS runs one of its generic pre-AVX kernels on a CPU
// with AVX2: on a virtual machine whose CPUID names no model it knows,
// OpenBLAS's detection falls back to "Prescott" (SSE3), and every GEMM runs
// several times slower (3.4x on an ESM-2 training step, docs/benchmarks.md).
// OpenBLAS reads OPENBLAS_CORETYPE when the program loads, so the remedy is
// the environment, which the message names. Programs print it at start.
inline std::string blas_kernel_warning() {
#if defined(PLM_USE_BLAS) && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  std::string core = blas_core();
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool generic = core == "prescott" || core == "core2" || core == "penryn" || core == "dunnington" || core == "nehalem" ||
                       core == "katmai" || core == "coppermine" || core == "northwood" || core == "banias" || core == "atom";
  if (!generic || !__builtin_cpu_supports("avx2")) return {};
  const bool avx512 = __builtin_cpu_supports("avx512f");
  return "plm: warning: OpenBLAS chose its generic '" + blas_core() + "' GEMM kernel on a CPU with " +
         (avx512 ? "AVX-512" : "AVX2") + " (its detection does not know this CPU, as on some virtual machines); GEMMs run several " +
         "times slower. Start the program with OPENBLAS_CORETYPE=" + (avx512 ? "SkylakeX" : "Haswell") + " in the environment.";
#else
  return {};
#endif
}

namespace detail {
// Loops shorter than this run on one thread: forking costs more than it saves.
inline constexpr long parallel_grain = 1 << 15;
}  // namespace detail

}  // namespace plm
