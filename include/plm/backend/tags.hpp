#pragma once
// Backend tags and the trait that recognises them.
//
// A backend is a tag type chosen at compile time. Every public entry point
// templated on a backend checks is_backend_v, so a typo such as
// Tensor<float, cpu> fails with a plm message instead of a template backtrace.
#include <type_traits>

namespace plm {

// Host CPU: Eigen (optionally OpenBLAS) and OpenMP.
struct cpu {
  using host_tag = cpu;
  static constexpr const char* name = "cpu";
};

// NVIDIA GPU: cuBLAS, Thrust and CUDA kernels. Its ops and memory are declared
// by plm/cuda.hpp; the CPU-only headers never need a CUDA compiler.
struct cuda {
  using host_tag = cpu;
  static constexpr const char* name = "cuda";
};

template <class B> struct is_backend : std::false_type {};
template <> struct is_backend<cpu> : std::true_type {};
template <> struct is_backend<cuda> : std::true_type {};
template <class B> inline constexpr bool is_backend_v = is_backend<B>::value;

// The primitive operations of a backend. Specialized by each backend
// (backend/cpu/ops.hpp, and the CUDA backend's header).
template <class B>
struct ops {
  static_assert(is_backend_v<B>, "plm: ops<B> needs a backend tag: plm::cpu or plm::cuda");
  static_assert(!std::is_same_v<B, cuda>, "plm: ops<plm::cuda> is declared by plm/cuda.hpp; include it");
  static_assert(!std::is_same_v<B, cpu>, "plm: ops<plm::cpu> is declared by plm/plm.hpp; include it");
};

}  // namespace plm
