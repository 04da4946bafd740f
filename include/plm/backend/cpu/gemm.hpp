#pragma once
// Matrix products on the CPU (the tensor-level matmul is backend/matmul.hpp).
//
// Row-major throughout: C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C.
// Eigen evaluates the product; when PLM_USE_BLAS is defined (CMake option
// PLM_BLAS), Eigen's BLAS hook (EIGEN_USE_BLAS) hands large products to the
// linked BLAS (OpenBLAS), which is measured faster on AVX-512 (docs/benchmarks.md).
//
// Threads: plm cuts every call into pieces whose sizes depend on the shape
// alone and runs each piece as one single-threaded Eigen / BLAS call, the
// pieces spread over OpenMP threads. Every thread count thus makes the same
// library calls with the same arguments, and C has the same bits. The
// libraries' own threading is not thread-count-neutral: OpenBLAS blocks the
// inner dimension k differently in its single- and multi-threaded drivers (a
// k between its block size Q and 2Q is halved as (k + 1) / 2 by one and
// rounded to its kernel's unroll by the other), so a weight gradient summed
// over, say, 1000 rows differed in the last bits between 1 and 2 threads; its
// threaded GEMV splits columns where the thread ranges fall; Eigen's own
// kernel sizes its k blocks from the thread count.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

// How one call is cut: each product into cm x cn tiles of C of tm x tn
// elements and, for a single product, its inner dimension into ck chunks of kc.
struct GemmPlan {
  index_t tm, tn, cm, cn, kc, ck;
};

// A piece that is one library call costs more than its share of the whole
// call: it packs its parts of both operands again (OpenBLAS packs a tile's rows
// of A and columns of B), at about the price of 30 multiply-adds per element
// packed; 4 row tiles of a 1600 x 128 x 128 product cost 5% more on one
// thread, a 320 x 128 x 1600 weight gradient cut in 80-row tiles 40%. So the
// pieces are few and large, planned from the shape and the batch size:
// - tiles of C, halving the longer side (in multiples of 16, the kernels'
//   unroll) while it is at least 2048 (tiles of 1024 or more cost about
//   30 / 1024 = 3% each, and a large product gets one per 1024 to 2048 rows
//   for many threads), or while a single product is still one tile of at least
//   2^22 multiply-adds with a side of at least 512 (a 128-wide linear layer
//   over 651 to 2047 rows: 2 tiles). A batch of attention's small products
//   stays one tile per product;
// - a single product left whole whose k is at least 4 times its larger side
//   (a weight gradient: C has a weight's shape, k counts tokens) is cut along
//   k in two instead: each half packs only its own slice, the second writes its
//   product to scratch (at most 2^21 elements), added to C afterwards.
inline GemmPlan gemm_plan(index_t m, index_t n, index_t k, index_t batch) {
  constexpr index_t big_side = 1024, big_work = index_t{1} << 24, min_side = 256, min_work = index_t{1} << 21;
  const index_t depth = std::max<index_t>(k, 1);
  auto round16 = [](index_t s) { return (s + 15) / 16 * 16; };
  index_t tm = m, tn = n;
  for (;;) {
    const index_t side = std::max(tm, tn), work = tm * tn * depth;
    const bool whole = batch == 1 && tm == m && tn == n;
    const bool granular = side >= 2 * big_side && work >= 2 * big_work;
    const bool spread = whole && side >= 2 * min_side && work >= 2 * min_work;
    if (!granular && !spread) break;
    index_t& longer = tm >= tn ? tm : tn;
    const index_t next = round16((longer + 1) / 2);
    if (next >= longer) break;  // sides of 16 or less: nothing left to halve
    longer = next;
  }
  GemmPlan p{tm, tn, (m + tm - 1) / tm, (n + tn - 1) / tn, depth, 1};
  if (batch == 1 && p.cm * p.cn == 1 && k >= 4 * std::max(m, n) && k / 2 >= min_side && m * n * (k / 2) >= min_work / 2 &&
      m * n <= (index_t{1} << 21))
    p.kc = round16((k + 1) / 2), p.ck = (k + p.kc - 1) / p.kc;
  return p;
}

// One piece straight to the BLAS with its beta, where Eigen's hook would have
// called the BLAS anyway (rows + cols + depth >= Eigen's coefficient-based
// threshold, 20): Eigen first zeroes or scales C and then asks the BLAS for
// C += alpha A B, an extra pass over C that a beta of 0 does not need. The
// BLAS computes the same sums either way. Returns false where Eigen runs it.
// Row-major C = A B is column-major C^T = B^T A^T: the operands swap.
template <class T>
bool blas_piece(bool trans_a, bool trans_b, index_t rows, index_t cols, index_t depth, T alpha, const T* a, index_t lda,
                const T* b, index_t ldb, T beta, T* c, index_t ldc) {
#if defined(EIGEN_USE_BLAS)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    constexpr index_t int_max = 2147483647;
    if (depth <= 0 || alpha == T(0) || rows + cols + depth < 20 ||
        std::max({rows, cols, depth, lda, ldb, ldc}) > int_max)
      return false;
    const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
    const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(depth);
    const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    if constexpr (std::is_same_v<T, float>) sgemm_(&ta, &tb, &m, &n, &k, &alpha, b, &la, a, &lb, &beta, c, &lc);
    else dgemm_(&ta, &tb, &m, &n, &k, &alpha, b, &la, a, &lb, &beta, c, &lc);
    return true;
  }
#endif
  (void)trans_a, (void)trans_b, (void)rows, (void)cols, (void)depth, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta,
      (void)c, (void)ldc;
  return false;
}

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

    const GemmPlan p = gemm_plan(m, n, alpha == T(0) ? 0 : k, batch);
    const index_t tiles = p.cm * p.cn, units = batch * tiles * p.ck;
    // Chunks after the first write their products here, one m x n block each.
    thread_local std::vector<T> scratch;
    if (p.ck > 1) scratch.resize(static_cast<std::size_t>((p.ck - 1) * m * n));
    T* const partial = scratch.data();
    // One piece: rows [r0, r0 + rows) and columns [c0, c0 + cols) of C_i over
    // the inner range [k0, k0 + depth), into C (chunk 0) or its scratch block.
    auto piece = [&](index_t u) {
      const index_t chunk = u % p.ck, t = u / p.ck % tiles, i = u / p.ck / tiles;
      const index_t r0 = t / p.cn * p.tm, c0 = t % p.cn * p.tn, k0 = chunk * p.kc;
      const index_t rows = std::min(p.tm, m - r0), cols = std::min(p.tn, n - c0), depth = std::min(p.kc, k - k0);
      const bool own = chunk == 0;
      T* const cp = own ? c + i * stride_c + r0 * ldc + c0 : partial + (chunk - 1) * m * n + r0 * n + c0;
      // Rows r0.. of op(A): rows of A, or columns when A is stored transposed; likewise columns c0.. of op(B).
      const T* ai = a + i * stride_a + (trans_a ? k0 * lda + r0 : r0 * lda + k0);
      const T* bi = b + i * stride_b + (trans_b ? c0 * ldb + k0 : k0 * ldb + c0);
      if (blas_piece(trans_a, trans_b, rows, cols, depth, alpha, ai, lda, bi, ldb, own ? beta : T(0), cp, own ? ldc : n)) return;
      MatMap<T> cm(cp, rows, cols, Eigen::OuterStride<>(own ? ldc : n));
      if (!own || beta == T(0))
        cm.setZero();
      else if (beta != T(1))
        cm *= beta;
      if (depth <= 0 || alpha == T(0)) return;
      CMatMap<T> am(ai, trans_a ? depth : rows, trans_a ? rows : depth, Eigen::OuterStride<>(lda));
      CMatMap<T> bm(bi, trans_b ? cols : depth, trans_b ? depth : cols, Eigen::OuterStride<>(ldb));
      if (!trans_a && !trans_b) cm.noalias() += alpha * am * bm;
      else if (trans_a && !trans_b) cm.noalias() += alpha * am.transpose() * bm;
      else if (!trans_a && trans_b) cm.noalias() += alpha * am * bm.transpose();
      else cm.noalias() += alpha * am.transpose() * bm.transpose();
    };
    // The chunk products are added to C in chunk order, each row by one thread.
    auto add_chunks = [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r)
        for (index_t chunk = 1; chunk < p.ck; ++chunk) {
          T* cr = c + r * ldc;
          const T* pr = partial + (chunk - 1) * m * n + r * n;
          for (index_t j = 0; j < n; ++j) cr[j] += pr[j];
        }
    };
    // The pieces run inside a parallel region whenever more than one thread is
    // allowed, even a single piece, because OpenBLAS and Eigen run
    // single-threaded only there (OpenBLAS checks omp_in_parallel(), Eigen the
    // team size). Only calls too small for either library to thread (2^13
    // multiply-adds; OpenBLAS threads a GEMV from 9216, a GEMM from 2^18) run
    // outside one. Whole pieces per thread, as consecutive ranges: which thread
    // runs a piece does not change its bits.
#if defined(_OPENMP)
    const index_t work = batch * m * n * std::max<index_t>(k, 1);
    if (work >= (index_t{1} << 13) && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel
      {
        const index_t nt = omp_get_num_threads(), th = omp_get_thread_num();
        const index_t per = (units + nt - 1) / nt, end = std::min(units, (th + 1) * per);
        for (index_t u = th * per; u < end; ++u) piece(u);
        if (p.ck > 1) {
#pragma omp barrier
          const index_t rows = (m + nt - 1) / nt;
          add_chunks(std::min(m, th * rows), std::min(m, (th + 1) * rows));
        }
      }
      return;
    }
#endif
    for (index_t u = 0; u < units; ++u) piece(u);
    add_chunks(0, p.ck > 1 ? m : 0);
  }
};

}  // namespace plm::detail
