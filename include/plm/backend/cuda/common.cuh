#pragma once
// Pieces every CUDA kernel file uses: checked CUDA and cuBLAS calls, the
// context's internals, launch shapes, device math and block reductions.
// Compiled by nvcc only (through plm_cuda.cu).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <unordered_map>

#include "plm/backend/cuda/context.hpp"
#include "plm/backend/cuda/launch.hpp"
#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"

// Every CUDA runtime call goes through PLM_CUDA_CHECK: a failure raises
// plm::Error naming the call, e.g. "plm: cudaMalloc(&p, bytes) failed: out of memory".
#define PLM_CUDA_CHECK(call)                                                                                  \
  do {                                                                                                        \
    const cudaError_t plm_err_ = (call);                                                                      \
    if (plm_err_ != cudaSuccess) {                                                                            \
      (void)cudaGetLastError();                                                                               \
      ::plm::detail::raise(__FILE__, __LINE__, #call " failed: ", cudaGetErrorString(plm_err_));              \
    }                                                                                                         \
  } while (0)

#define PLM_CUBLAS_CHECK(call)                                                                                \
  do {                                                                                                        \
    const cublasStatus_t plm_st_ = (call);                                                                    \
    if (plm_st_ != CUBLAS_STATUS_SUCCESS)                                                                     \
      ::plm::detail::raise(__FILE__, __LINE__, #call " failed: ", cublasGetStatusString(plm_st_));            \
  } while (0)

namespace plm {

// What a CudaContext holds.
struct CudaContext::Impl {
  int device = 0;
  CudaMath math = CudaMath::tf32;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  // Caching allocator: free blocks by size, live blocks with their size.
  std::multimap<std::size_t, void*> free_blocks;
  std::unordered_map<void*, std::size_t> live;
  CudaMemoryStats stats;
  // Scratch owned by the context, grown on demand, one per purpose so that
  // one op's scratch never overlaps another's within a call.
  enum Slot { reduce_slot, gemm_a_slot, gemm_b_slot, rows_slot, flag_slot, columns_slot, slot_count };
  void* scratch[slot_count] = {};
  std::size_t scratch_bytes[slot_count] = {};
  void* host_pinned = nullptr;  // 64 bytes for read-backs

  void* scratch_at(Slot s, std::size_t bytes) {
    if (bytes > scratch_bytes[s]) {
      if (scratch[s]) PLM_CUDA_CHECK(cudaFree(scratch[s]));
      scratch[s] = nullptr;
      scratch_bytes[s] = 0;
      PLM_CUDA_CHECK(cudaMalloc(&scratch[s], bytes));
      scratch_bytes[s] = bytes;
    }
    return scratch[s];
  }
  // Copies `bytes` (<= 64) from the device and waits for them.
  void read_back(void* host, const void* dev, std::size_t bytes) {
    PLM_CUDA_CHECK(cudaMemcpyAsync(host_pinned, dev, bytes, cudaMemcpyDeviceToHost, stream));
    PLM_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::memcpy(host, host_pinned, bytes);
  }
};

namespace detail::cu {

inline CudaContext::Impl& ctx() { return CudaContext::current().impl(); }
inline cudaStream_t stream() { return ctx().stream; }

// Raises a plm::Error if the last launch failed.
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) PLM_FAIL("CUDA kernel ", kernel, " failed to launch: ", cudaGetErrorString(e));
}

constexpr int threads_per_block = 256;
// Blocks for a grid-stride loop over n elements.
inline unsigned blocks_for(index_t n, int threads = threads_per_block) {
  const index_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

#define PLM_GRID_STRIDE(i, n) \
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += static_cast<index_t>(gridDim.x) * blockDim.x)

__device__ inline float dexp(float x) { return expf(x); }
__device__ inline double dexp(double x) { return exp(x); }
__device__ inline float dtanh(float x) { return tanhf(x); }
__device__ inline double dtanh(double x) { return tanh(x); }
__device__ inline float derf(float x) { return erff(x); }
__device__ inline double derf(double x) { return erf(x); }
__device__ inline float dsqrt(float x) { return sqrtf(x); }
__device__ inline double dsqrt(double x) { return sqrt(x); }

template <class T> __device__ inline T neg_inf() { return -static_cast<T>(INFINITY); }

struct SumOp {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T> __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <class T> __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Reduces v over the block (blockDim.x a multiple of 32, at most 1024) in a
// fixed order, so the result is the same on every run; every thread gets it.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T shm[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? shm[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) shm[0] = v;
  }
  __syncthreads();
  v = shm[0];
  __syncthreads();
  return v;
}

// Threads per block for a kernel that gives one block to a row of n elements.
inline int row_threads(index_t n) {
  int t = 32;
  while (t < 1024 && t < n) t *= 2;
  return t < 128 ? (n > 32 ? 128 : 32) : t > 512 ? 512 : t;
}

// bf16 on the device, bit-identical to plm::bf16 on the host.
__device__ inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ inline float bf16_bits_to_float(std::uint16_t b) { return __uint_as_float(static_cast<std::uint32_t>(b) << 16); }

template <class T> __device__ inline float to_float(T x) { return static_cast<float>(x); }
template <> __device__ inline float to_float<bf16>(bf16 x) { return bf16_bits_to_float(x.bits); }
template <class D> __device__ inline D from_float(float f) { return static_cast<D>(f); }
template <> __device__ inline bf16 from_float<bf16>(float f) {
  bf16 h;
  h.bits = float_to_bf16_bits(f);
  return h;
}

}  // namespace detail::cu
}  // namespace plm
