#pragma once
// Host memory for Tensor<cpu, T>: 64-byte aligned (one cache line, one AVX-512 vector).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "plm/backend/tags.hpp"
#include "plm/core/error.hpp"
#include "plm/core/tensor.hpp"

namespace plm {

template <>
struct memory<cpu> {
  static constexpr std::size_t alignment = 64;
  static void* allocate(std::size_t bytes) {
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    PLM_CHECK(bytes <= SIZE_MAX - alignment, "memory<cpu>: cannot allocate ", bytes, " bytes (the size overflows)");
    void* p = std::aligned_alloc(alignment, rounded);
    // A plm::Error (not a bare std::bad_alloc) that says how much was asked for: a model or
    // batch too large for this machine's memory.
    if (!p)
      PLM_FAIL("memory<cpu>: out of memory allocating ", bytes, " bytes (", static_cast<double>(bytes) / double(1 << 30),
               " GiB); a smaller model, batch or --token-budget may fit");
    return p;
  }
  static void deallocate(void* p) { std::free(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) { std::memcpy(dst, host_src, bytes); }
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) { std::memcpy(host_dst, src, bytes); }
};

}  // namespace plm
