#pragma once
// Device memory for Tensor<cuda, T>, from the current CudaContext's caching
// allocator. Copies run on the context's stream; copies to or from host
// memory return once the host buffer may be reused.
#include <cstddef>

#include "plm/backend/cuda/context.hpp"
#include "plm/backend/tags.hpp"
#include "plm/core/tensor.hpp"

namespace plm {

template <>
struct memory<cuda> {
  static void* allocate(std::size_t bytes);
  // Returns the block to the current context's cache (or to the driver when no
  // context is current any more).
  static void deallocate(void* p);
  static void copy(void* dst, const void* src, std::size_t bytes);
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes);
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes);
};

}  // namespace plm
