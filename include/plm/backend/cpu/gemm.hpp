#pragma once
// Matrix products on the CPU.
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
    PLM_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "gemm: negative size m=", m, " n=", n, " k=", k, " batch=", batch);
    const index_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    PLM_CHECK(lda >= a_cols && ldb >= b_cols && ldc >= n, "gemm: leading dimensions lda=", lda, " ldb=", ldb, " ldc=", ldc,
              " too small for m=", m, " n=", n, " k=", k, trans_a ? " (A transposed)" : "", trans_b ? " (B transposed)" : "");
    if (m == 0 || n == 0 || batch == 0) return;
    PLM_CHECK(c != nullptr && (k == 0 || (a != nullptr && b != nullptr)), "gemm: null operand");
    PLM_CHECK(batch == 1 || stride_c >= m * ldc, "gemm: output batch stride ", stride_c, " overlaps matrices of ", m, "x", ldc);

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
    // time, each threaded inside Eigen / BLAS.
    const index_t flops = m * n * (k > 0 ? k : 1);
    if (batch > 1 && flops < (index_t{1} << 21)) {
      parallel_for(batch, flops, [&](index_t b0, index_t b1) {
        for (index_t i = b0; i < b1; ++i) one(i);
      });
    } else {
      for (index_t i = 0; i < batch; ++i) one(i);
    }
  }

  // Shape-checked product of tensors.
  //   a: (..., M, K), or (..., K, M) when trans_a
  //   b: (..., K, N), or (..., N, K) when trans_b
  //   c: (..., M, N)
  // The leading (batch) dimensions of a and b each equal c's, or the operand is
  // rank 2 and broadcast. c = alpha * op(a) op(b) + beta * c.
  template <class T>
  static void matmul(CView<T> a, bool trans_a, CView<T> b, bool trans_b, View<T> c, T alpha = T(1), T beta = T(0)) {
    const char* op = "matmul";
    auto fail = [&](const char* why) {
      PLM_FAIL(op, ": ", why, ": a ", a.shape(), trans_a ? "^T" : "", " x b ", b.shape(), trans_b ? "^T" : "", " -> c ",
               c.shape());
    };
    if (a.rank() < 2 || b.rank() < 2 || c.rank() < 2) fail("operands need rank >= 2");
    const index_t m = trans_a ? a.dim(-1) : a.dim(-2), ka = trans_a ? a.dim(-2) : a.dim(-1);
    const index_t kb = trans_b ? b.dim(-1) : b.dim(-2), n = trans_b ? b.dim(-2) : b.dim(-1);
    if (ka != kb) fail("inner dimensions differ");
    if (c.dim(-2) != m || c.dim(-1) != n) fail("output shape does not match");
    auto batch_of = [](const Shape& s) {
      index_t p = 1;
      for (int i = 0; i + 2 < s.rank(); ++i) p *= s[i];
      return p;
    };
    auto same_lead = [](const Shape& x, const Shape& y) {
      if (x.rank() != y.rank()) return false;
      for (int i = 0; i + 2 < x.rank(); ++i)
        if (x[i] != y[i]) return false;
      return true;
    };
    if (!(a.rank() == 2 || same_lead(a.shape(), c.shape()))) fail("batch dimensions of a and c differ");
    if (!(b.rank() == 2 || same_lead(b.shape(), c.shape()))) fail("batch dimensions of b and c differ");
    check_not_null(op, "a", a.data(), a.numel());
    check_not_null(op, "b", b.data(), b.numel());
    check_not_null(op, "c", c.data(), c.numel());
    const index_t batch = batch_of(c.shape());
    // (..., M, K) x (K, N): one GEMM over all rows of a.
    if (b.rank() == 2 && !trans_a && a.rank() == c.rank()) {
      gemm_strided_batched<T>(false, trans_b, m * batch, n, ka, alpha, a.data(), ka, 0, b.data(), b.dim(-1), 0, beta,
                              c.data(), n, 0, 1);
      return;
    }
    const index_t sa = a.rank() == 2 ? 0 : a.dim(-2) * a.dim(-1);
    const index_t sb = b.rank() == 2 ? 0 : b.dim(-2) * b.dim(-1);
    gemm_strided_batched<T>(trans_a, trans_b, m, n, ka, alpha, a.data(), a.dim(-1), sa, b.data(), b.dim(-1), sb, beta,
                            c.data(), n, m * n, batch);
  }
};

}  // namespace plm::detail
