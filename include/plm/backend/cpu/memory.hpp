#pragma once
// Host memory for Tensor<cpu, T>: 64-byte aligned (one cache line, one AVX-512 vector).
#include <cstdlib>
#include <cstring>
#include <new>

#include "plm/backend/tags.hpp"
#include "plm/core/tensor.hpp"

namespace plm {

template <>
struct memory<cpu> {
  static constexpr std::size_t alignment = 64;
  static void* allocate(std::size_t bytes) {
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) { std::free(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) { std::memcpy(dst, host_src, bytes); }
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) { std::memcpy(host_dst, src, bytes); }
};

}  // namespace plm
