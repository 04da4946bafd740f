#pragma once
// Matrix products on the CPU (the tensor-level matmul is backend/matmul.hpp).
//
// Row-major throughout: C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C.
// Eigen evaluates the product; when PLM_USE_BLAS is defined (CMake option
// PLM_BLAS), Eigen's BLAS hook (EIGEN_USE_BLAS) hands large products to the
// linked BLAS (OpenBLAS), which is measured faster on AVX-512 (docs/benchmarks.md).
#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_gemm {
  // Strided batched GEMM on raw row-major buffers: for each b in [0, batch),
  //   C_b = alpha * op(A_b) * op(B_b) + beta * C_b,
  // with X_b = X + b * stride_x. A stride of 0 broadcasts one matrix to the batch.
  // op(A) is (m, k): A is stored (m, k) with row pitch lda, or (k, m) when trans_a.
  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                                   const T* a, index_t lda, index_t stride_a, const T* b, index_t ldb,
                                   index_t stride_b, T beta, T* c, index_t ldc, index_t stride_c, index_t batch) {
    require_compute_type<T>("gemm");
    if (!check_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, stride_c, batch)) return;

    auto one = [&](index_t i) {
      const T* ai = a + i * stride_a;
      const T* bi = b + i * stride_b;
      MatMap<T> cm(c + i * stride_c, m, n, Eigen::OuterStride<>(ldc));
      if (beta == T(0))
        cm.setZero();
      else if (beta != T(1))
        cm *= beta;
      if (k == 0 || alpha == T(0)) return;
      CMatMap<T> am(ai, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
      CMatMap<T> bm(bi, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
      if (!trans_a && !trans_b) cm.noalias() += alpha * am * bm;
      else if (trans_a && !trans_b) cm.noalias() += alpha * am.transpose() * bm;
      else if (!trans_a && trans_b) cm.noalias() += alpha * am * bm.transpose();
      else cm.noalias() += alpha * am.transpose() * bm.transpose();
    };
    // Many small products (attention heads): one per thread. Large ones: one at a
    // time, each threaded inside Eigen / BLAS, unless there are enough of them to
    // give every thread the same number (long sequences: B x heads products of
    // T x T): then whole products per thread, which saves a thread hand-off per
    // product (measured 0.31 s -> 0.07 s for ESM-2 8M's scores at T = 510, 2 threads).
    const index_t flops = m * n * (k > 0 ? k : 1);
    const index_t threads = num_threads();
    if (batch > 1 && (flops < (index_t{1} << 21) || (threads > 1 && (batch % threads == 0 || batch >= 4 * threads)))) {
      parallel_for(batch, flops, [&](index_t b0, index_t b1) {
        for (index_t i = b0; i < b1; ++i) one(i);
      });
    } else {
      for (index_t i = 0; i < batch; ++i) one(i);
    }
  }
};

}  // namespace plm::detail
