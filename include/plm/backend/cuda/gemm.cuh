#pragma once
// Strided batched GEMM through cuBLAS.
//
// plm's buffers are row-major; cuBLAS is column-major. A row-major (r, c)
// matrix with pitch ld is, read column-major, its transpose with the same ld,
// so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: the operands swap
// places and keep their transpose flags.
#include <climits>

#include "plm/backend/cuda/common.cuh"
#include "plm/backend/cuda/elementwise.cuh"

namespace plm::detail::cu {

// C (m, n) = beta * C, for the k = 0 / alpha = 0 cases.
template <class T> __global__ void scale_matrix_kernel(T* c, index_t m, index_t n, index_t ldc, index_t stride_c, index_t batch, T beta) {
  const index_t total = batch * m * n;
  PLM_GRID_STRIDE(i, total) {
    const index_t col = i % n, row = (i / n) % m, b = i / (m * n);
    T& x = c[b * stride_c + row * ldc + col];
    x = beta == T(0) ? T(0) : beta * x;
  }
}

inline int to_int(index_t v, const char* what) {
  PLM_CHECK(v <= INT_MAX, "gemm: ", what, " = ", v, " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}

// Elements spanned by `batch` matrices of `rows` x `cols` with pitch ld and batch stride.
inline index_t extent(index_t rows, index_t cols, index_t ld, index_t stride, index_t batch) {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, index_t stride_a,
          const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc, index_t stride_c, index_t batch) {
  CudaContext::Impl& cx = ctx();
  if (k == 0 || alpha == T(0)) {
    scale_matrix_kernel<<<blocks_for(batch * m * n), threads_per_block, 0, cx.stream>>>(c, m, n, ldc, stride_c, batch, beta);
    check_launch("gemm (k = 0)");
    return;
  }
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int im = to_int(m, "m"), in = to_int(n, "n"), ik = to_int(k, "k"), ib = to_int(batch, "batch");
  const int ilda = to_int(lda, "lda"), ildb = to_int(ldb, "ldb"), ildc = to_int(ldc, "ldc");
  if constexpr (std::is_same_v<T, double>) {
    PLM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cx.blas, op_b, op_a, in, im, ik, &alpha, b, CUDA_R_64F, ildb, stride_b, a, CUDA_R_64F,
                                                ilda, stride_a, &beta, c, CUDA_R_64F, ildc, stride_c, ib, CUBLAS_COMPUTE_64F,
                                                CUBLAS_GEMM_DEFAULT));
  } else if (cx.math != CudaMath::bf16) {
    const cublasComputeType_t ct = cx.math == CudaMath::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    PLM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cx.blas, op_b, op_a, in, im, ik, &alpha, b, CUDA_R_32F, ildb, stride_b, a, CUDA_R_32F,
                                                ilda, stride_a, &beta, c, CUDA_R_32F, ildc, stride_c, ib, ct, CUBLAS_GEMM_DEFAULT));
  } else {
    // bf16 tensor cores: round the operands to bf16 in context scratch (same
    // layout, same strides), accumulate and write in fp32.
    const index_t ea = extent(trans_a ? k : m, trans_a ? m : k, lda, stride_a, batch);
    const index_t eb = extent(trans_b ? n : k, trans_b ? k : n, ldb, stride_b, batch);
    auto* a16 = static_cast<bf16*>(cx.scratch_at(CudaContext::Impl::gemm_a_slot, static_cast<std::size_t>(ea) * sizeof(bf16)));
    auto* b16 = static_cast<bf16*>(cx.scratch_at(CudaContext::Impl::gemm_b_slot, static_cast<std::size_t>(eb) * sizeof(bf16)));
    convert<float, bf16>(a, a16, ea);
    convert<float, bf16>(b, b16, eb);
    PLM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cx.blas, op_b, op_a, in, im, ik, &alpha, b16, CUDA_R_16BF, ildb, stride_b, a16,
                                                CUDA_R_16BF, ilda, stride_a, &beta, c, CUDA_R_32F, ildc, stride_c, ib,
                                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace plm::detail::cu
