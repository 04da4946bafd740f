// The one CUDA translation unit of plm. The plm::cuda CMake target adds this
// file to the program that links it; nvcc compiles it once there. It defines
// CudaContext, memory<cuda> and every kernel entry point declared in
// launch.hpp, instantiated for the element types below.
#include "plm/backend/cuda/blockwise_attention.cuh"
#include "plm/backend/cuda/context.cuh"
#include "plm/backend/cuda/cross_entropy.cuh"
#include "plm/backend/cuda/elementwise.cuh"
#include "plm/backend/cuda/embedding.cuh"
#include "plm/backend/cuda/gemm.cuh"
#include "plm/backend/cuda/norm.cuh"
#include "plm/backend/cuda/optimizer.cuh"
#include "plm/backend/cuda/reduce.cuh"
#include "plm/backend/cuda/softmax.cuh"
#if defined(PLM_NCCL)
#include "plm/backend/cuda/nccl.cuh"
#endif

namespace plm::detail::cu {

#define PLM_CUDA_STORAGE_OPS(T)                          \
  template void fill<T>(T*, index_t, T);                 \
  template void gather<T>(const T*, const std::int32_t*, T*, index_t, index_t);

PLM_CUDA_STORAGE_OPS(float)
PLM_CUDA_STORAGE_OPS(double)
PLM_CUDA_STORAGE_OPS(bf16)
PLM_CUDA_STORAGE_OPS(std::int32_t)
PLM_CUDA_STORAGE_OPS(std::uint8_t)

template void convert<float, double>(const float*, double*, index_t);
template void convert<double, float>(const double*, float*, index_t);
template void convert<float, bf16>(const float*, bf16*, index_t);
template void convert<bf16, float>(const bf16*, float*, index_t);
template void convert<double, bf16>(const double*, bf16*, index_t);
template void convert<bf16, double>(const bf16*, double*, index_t);

#define PLM_CUDA_COMPUTE_OPS(T)                                                                                              \
  template void binary<T>(Binary, const T*, const T*, T*, index_t);                                                          \
  template void scale<T>(const T*, T, T*, index_t);                                                                          \
  template void axpy<T>(T, const T*, T*, index_t);                                                                           \
  template void row_broadcast<T>(RowOp, const T*, const T*, T*, index_t, index_t);                                           \
  template void sum_rows<T>(const T*, T*, index_t, index_t, T);                                                              \
  template void transpose12<T>(const T*, T*, index_t, index_t, index_t, index_t);                                            \
  template void rotary<T>(const T*, const T*, const T*, T*, index_t, index_t, index_t, bool);                                \
  template void gemm<T>(bool, bool, index_t, index_t, index_t, T, const T*, index_t, index_t, const T*, index_t, index_t, T, \
                        T*, index_t, index_t, index_t);                                                                      \
  template void masked_softmax<T>(const T*, T*, index_t, index_t, index_t, index_t, const T*, bool, const std::uint8_t*,    \
                                  bool, T);                                                                                  \
  template void masked_softmax_backward<T>(const T*, const T*, T*, index_t, index_t, index_t, index_t, T, T*, bool);        \
  template void blockwise_attention<T>(const BlockwiseAttention<T>&, const index_t*, T*, T*);                                \
  template void blockwise_attention_backward<T>(const BlockwiseAttention<T>&, const index_t*, const T*, const T*, const T*, \
                                                T*, T*, T*, T*, T*);                                                         \
  template void rms_norm<T>(const T*, const T*, T, T*, T*, index_t, index_t);                                                \
  template void rms_norm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, index_t, index_t);                      \
  template void layer_norm<T>(const T*, const T*, const T*, T, T*, T*, T*, index_t, index_t);                                \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, index_t, index_t);      \
  template void activation<T>(Act, const T*, T*, index_t);                                                                   \
  template void activation_backward<T>(Act, const T*, const T*, T*, index_t);                                                \
  template void gated<T>(Act, const T*, const T*, T*, index_t);                                                              \
  template void gated_backward<T>(Act, const T*, const T*, const T*, T*, T*, index_t);                                       \
  template void scatter_add<T>(const std::int32_t*, const T*, T*, index_t, index_t);                                         \
  template double reduce<T>(Reduce, const T*, index_t);                                                                      \
  template void dropout<T>(const T*, T*, index_t, T, std::uint64_t, std::uint64_t);                                          \
  template CrossEntropySums cross_entropy<T>(const T*, const std::int32_t*, index_t, index_t, std::int32_t, T, T*, T,        \
                                             const T*, T*, std::uint8_t*, index_t&);                                         \
  template void adamw<T>(T*, const T*, T*, T*, index_t, double, double, double, double, double, double, double);             \
  template void adafactor<T>(T*, const T*, T*, T*, T*, T*, index_t, index_t, double, double, double, double, double, double);

PLM_CUDA_COMPUTE_OPS(float)
PLM_CUDA_COMPUTE_OPS(double)

}  // namespace plm::detail::cu
