#pragma once
// The tensor-level matrix product, shared by every backend: it checks shapes
// and hands the work to ops<B>::gemm_strided_batched as one strided batched
// GEMM over raw row-major buffers.
#include "plm/backend/checks.hpp"
#include "plm/backend/tags.hpp"
#include "plm/core/tensor.hpp"

namespace plm::detail {

template <class B>
struct matmul_op {
  // Shape-checked product of tensors.
  //   a: (..., M, K), or (..., K, M) when trans_a
  //   b: (..., K, N), or (..., N, K) when trans_b
  //   c: (..., M, N)
  // The leading (batch) dimensions of a and b each equal c's, or the operand is
  // rank 2 and broadcast. c = alpha * op(a) op(b) + beta * c.
  template <class T>
  static void matmul(TensorView<B, const T> a, bool trans_a, TensorView<B, const T> b, bool trans_b, TensorView<B, T> c,
                     T alpha = T(1), T beta = T(0)) {
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
      ops<B>::template gemm_strided_batched<T>(false, trans_b, m * batch, n, ka, alpha, a.data(), ka, 0, b.data(), b.dim(-1),
                                               0, beta, c.data(), n, 0, 1);
      return;
    }
    const index_t sa = a.rank() == 2 ? 0 : a.dim(-2) * a.dim(-1);
    const index_t sb = b.rank() == 2 ? 0 : b.dim(-2) * b.dim(-1);
    ops<B>::template gemm_strided_batched<T>(trans_a, trans_b, m, n, ka, alpha, a.data(), a.dim(-1), sa, b.data(), b.dim(-1),
                                             sb, beta, c.data(), n, m * n, batch);
  }
};

}  // namespace plm::detail
