#pragma once
// CudaContext: the GPU state plm's CUDA backend works with.
//
// A context owns one device's cuBLAS handle, one stream every op is queued on,
// and a caching allocator. There are no hidden globals: nothing exists until a
// user constructs a context, and ops<cuda> run on the context that is current
// on the calling thread. Constructing a context makes it current (contexts
// nest: the destructor restores the previous one), so a program reads
//
//   plm::CudaContext gpu;                 // device 0, TF32 GEMMs for float
//   plm::nn::T5Model<plm::cuda, float, plm::nn::Ankh3> model(cfg, seed);
//
// This header is plain C++: it needs no CUDA compiler and no CUDA headers.
// The implementation is compiled from backend/cuda/plm_cuda.cu, which the
// plm::cuda CMake target adds to the consuming program.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "plm/core/error.hpp"

namespace plm {

// How ops<cuda>::gemm computes products of float matrices.
//   fp32: full fp32 (CUDA cores); the reference for parity checks.
//   tf32: TF32 tensor cores, fp32 accumulation (about 1e-3 relative error).
//   bf16: operands rounded to bf16, bf16 tensor cores, fp32 accumulation and
//         fp32 output (about 1e-2 relative error); weights and activations
//         stay fp32 in memory, as autocast does for matrix products.
// double GEMMs always run in double.
enum class CudaMath { fp32, tf32, bf16 };

struct CudaMemoryStats {
  std::size_t in_use = 0;     // bytes held by live tensors
  std::size_t cached = 0;     // bytes kept for reuse
  std::size_t peak = 0;       // largest in_use so far
  std::int64_t device_allocations = 0;  // cudaMalloc calls (a steady loop adds none)
};

class CudaContext {
 public:
  explicit CudaContext(int device = 0, CudaMath math = CudaMath::tf32);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const;
  std::string device_name() const;
  CudaMath math() const;
  void set_math(CudaMath m);
  // Waits for every op queued so far; raises a plm::Error if one failed.
  void synchronize() const;
  CudaMemoryStats memory_stats() const;
  // Returns cached blocks to the driver.
  void release_cached();

  // Number of CUDA devices visible (0 when there is no driver or no GPU).
  static int device_count();
  // The context current on this thread; raises a plm::Error when there is none.
  static CudaContext& current();
  static bool has_current();

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  CudaContext* previous_ = nullptr;
};

}  // namespace plm
