#pragma once
// Embedding gather, its scatter-add gradient, and the id check both run first.
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

__global__ void find_bad_id_kernel(const std::int32_t* ids, index_t n, index_t V, unsigned long long* first) {
  PLM_GRID_STRIDE(i, n) {
    if (ids[i] < 0 || ids[i] >= V) atomicMin(first, static_cast<unsigned long long>(i));
  }
}
index_t find_bad_id(const std::int32_t* ids, index_t n, index_t V) {
  if (n == 0) return -1;
  CudaContext::Impl& cx = ctx();
  auto* flag = static_cast<unsigned long long*>(cx.scratch_at(CudaContext::Impl::flag_slot, sizeof(unsigned long long)));
  const unsigned long long none = ~0ull;
  PLM_CUDA_CHECK(cudaMemsetAsync(flag, 0xff, sizeof none, cx.stream));
  find_bad_id_kernel<<<blocks_for(n), threads_per_block, 0, cx.stream>>>(ids, n, V, flag);
  check_launch("find_bad_id");
  unsigned long long first = none;
  cx.read_back(&first, flag, sizeof first);
  return first == none ? -1 : static_cast<index_t>(first);
}

template <class T> __global__ void gather_kernel(const T* table, const std::int32_t* ids, T* out, index_t n, index_t C) {
  PLM_GRID_STRIDE(i, n * C) out[i] = table[static_cast<index_t>(ids[i / C]) * C + i % C];
}
template <class T> void gather(const T* table, const std::int32_t* ids, T* out, index_t n, index_t C) {
  if (n * C == 0) return;
  gather_kernel<<<blocks_for(n * C), threads_per_block, 0, stream()>>>(table, ids, out, n, C);
  check_launch("gather");
}

// Repeated ids meet in atomic adds: the sum is exact up to the order of
// floating-point additions, which varies from run to run (as in PyTorch's
// CUDA index_add_).
template <class T> __global__ void scatter_add_kernel(const std::int32_t* ids, const T* drows, T* dtable, index_t n, index_t C) {
  PLM_GRID_STRIDE(i, n * C) atomicAdd(dtable + static_cast<index_t>(ids[i / C]) * C + i % C, drows[i]);
}
template <class T> void scatter_add(const std::int32_t* ids, const T* drows, T* dtable, index_t n, index_t C) {
  if (n * C == 0) return;
  scatter_add_kernel<<<blocks_for(n * C), threads_per_block, 0, stream()>>>(ids, drows, dtable, n, C);
  check_launch("scatter_add");
}

}  // namespace plm::detail::cu
