#pragma once
// CudaContext and memory<cuda>: device selection, the stream, the cuBLAS
// handle and the caching allocator.
#include <string>

#include "plm/backend/cuda/common.cuh"
#include "plm/backend/cuda/memory.hpp"

namespace plm {

namespace detail::cu {
// The context current on this thread; set only by CudaContext's constructor
// and destructor.
inline thread_local CudaContext* current_context = nullptr;

// Blocks are rounded so that workspaces of nearby sizes share cached blocks.
inline std::size_t round_block(std::size_t bytes) {
  constexpr std::size_t small = 512, large = std::size_t{1} << 20;
  if (bytes < large) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}

inline void free_cached(CudaContext::Impl& c) {
  for (auto& kv : c.free_blocks) {
    cudaFree(kv.second);
    c.stats.cached -= kv.first;
  }
  c.free_blocks.clear();
}
}  // namespace detail::cu

CudaContext::CudaContext(int device, CudaMath math) : impl_(new Impl) {
  const int n = device_count();
  PLM_CHECK(n > 0, "CudaContext: no CUDA device is available");
  PLM_CHECK(device >= 0 && device < n, "CudaContext: device ", device, " does not exist (", n, " visible)");
  impl_->device = device;
  impl_->math = math;
  PLM_CUDA_CHECK(cudaSetDevice(device));
  PLM_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  PLM_CUBLAS_CHECK(cublasCreate(&impl_->blas));
  PLM_CUBLAS_CHECK(cublasSetStream(impl_->blas, impl_->stream));
  PLM_CUDA_CHECK(cudaMallocHost(&impl_->host_pinned, 64));
  previous_ = detail::cu::current_context;
  detail::cu::current_context = this;
}

CudaContext::~CudaContext() {
  Impl& c = *impl_;
  cudaStreamSynchronize(c.stream);
  detail::cu::free_cached(c);
  for (void* p : c.scratch)
    if (p) cudaFree(p);
  if (c.host_pinned) cudaFreeHost(c.host_pinned);
  if (c.blas) cublasDestroy(c.blas);
  if (c.stream) cudaStreamDestroy(c.stream);
  if (detail::cu::current_context == this) detail::cu::current_context = previous_;
}

int CudaContext::device() const { return impl_->device; }
std::string CudaContext::device_name() const {
  cudaDeviceProp p{};
  PLM_CUDA_CHECK(cudaGetDeviceProperties(&p, impl_->device));
  return p.name;
}
CudaMath CudaContext::math() const { return impl_->math; }
void CudaContext::set_math(CudaMath m) { impl_->math = m; }
void CudaContext::synchronize() const { PLM_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }
CudaMemoryStats CudaContext::memory_stats() const { return impl_->stats; }
void CudaContext::release_cached() {
  synchronize();
  detail::cu::free_cached(*impl_);
}

int CudaContext::device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}
bool CudaContext::has_current() { return detail::cu::current_context != nullptr; }
CudaContext& CudaContext::current() {
  PLM_CHECK(detail::cu::current_context != nullptr,
            "no current CudaContext: construct a plm::CudaContext before using plm::cuda tensors or ops");
  return *detail::cu::current_context;
}

void* memory<cuda>::allocate(std::size_t bytes) {
  CudaContext::Impl& c = CudaContext::current().impl();
  const std::size_t size = detail::cu::round_block(bytes == 0 ? 1 : bytes);
  void* p = nullptr;
  // Reuse a cached block of this size or up to twice it.
  auto it = c.free_blocks.lower_bound(size);
  std::size_t got = size;
  if (it != c.free_blocks.end() && it->first <= 2 * size) {
    p = it->second;
    got = it->first;
    c.stats.cached -= got;
    c.free_blocks.erase(it);
  } else {
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {  // give the cache back and try once more
      (void)cudaGetLastError();
      cudaStreamSynchronize(c.stream);
      detail::cu::free_cached(c);
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      PLM_FAIL("cudaMalloc(", size, " bytes) failed: ", cudaGetErrorString(e), " (", c.stats.in_use, " bytes in use by plm tensors)");
    }
    c.stats.device_allocations += 1;
  }
  c.live[p] = got;
  c.stats.in_use += got;
  if (c.stats.in_use > c.stats.peak) c.stats.peak = c.stats.in_use;
  return p;
}

void memory<cuda>::deallocate(void* p) {
  if (!p) return;
  if (CudaContext* cur = detail::cu::current_context) {
    CudaContext::Impl& c = cur->impl();
    auto it = c.live.find(p);
    if (it != c.live.end()) {
      // Later work on the same stream is ordered after the work that used p,
      // so the block can be handed out again at once.
      c.free_blocks.emplace(it->second, p);
      c.stats.in_use -= it->second;
      c.stats.cached += it->second;
      c.live.erase(it);
      return;
    }
  }
  cudaFree(p);  // allocated under a context that is gone
}

void memory<cuda>::copy(void* dst, const void* src, std::size_t bytes) {
  PLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, detail::cu::stream()));
}
void memory<cuda>::copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
  const cudaStream_t s = detail::cu::stream();
  PLM_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s));
  PLM_CUDA_CHECK(cudaStreamSynchronize(s));
}
void memory<cuda>::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  const cudaStream_t s = detail::cu::stream();
  PLM_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s));
  PLM_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace plm
