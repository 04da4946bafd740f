#pragma once
// Whole-tensor reductions in double, deterministic: a fixed number of blocks
// each sums a fixed contiguous chunk, then one block sums the partials in order.
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

constexpr int reduce_blocks = 512, reduce_threads = 256;

template <class T> __device__ inline double reduce_term(Reduce kind, T x) {
  const double v = static_cast<double>(x);
  if (kind == Reduce::sum) return v;
  if (kind == Reduce::sum_squares) return v * v;
  return isfinite(v) ? 0.0 : 1.0;  // finite: counts the elements that are not
}

template <class T> __global__ void reduce_partial_kernel(Reduce kind, const T* x, index_t n, index_t chunk, double* partial) {
  const index_t begin = blockIdx.x * chunk, end = min(n, begin + chunk);
  double s = 0;
  for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += reduce_term(kind, x[i]);
  s = block_reduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void reduce_final_kernel(const double* partial, int count, double* out) {
  double s = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_reduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) *out = s;
}

// Leaves the result in *out (device memory) without waiting for it.
template <class T> void reduce_to_device(Reduce kind, const T* x, index_t n, double* out, double* partial) {
  const index_t chunk = (n + reduce_blocks - 1) / reduce_blocks;
  const int blocks = static_cast<int>(chunk == 0 ? 1 : (n + chunk - 1) / chunk);
  reduce_partial_kernel<<<blocks, reduce_threads, 0, stream()>>>(kind, x, n, chunk == 0 ? 1 : chunk, partial);
  check_launch("reduce (partial sums)");
  reduce_final_kernel<<<1, reduce_threads, 0, stream()>>>(partial, blocks, out);
  check_launch("reduce (final sum)");
}

template <class T> double reduce(Reduce kind, const T* x, index_t n) {
  if (n == 0) return 0.0;
  CudaContext::Impl& cx = ctx();
  auto* buf = static_cast<double*>(cx.scratch_at(CudaContext::Impl::reduce_slot, (reduce_blocks + 1) * sizeof(double)));
  reduce_to_device(kind, x, n, buf + reduce_blocks, buf);
  double r = 0;
  cx.read_back(&r, buf + reduce_blocks, sizeof r);
  return r;
}

}  // namespace plm::detail::cu
