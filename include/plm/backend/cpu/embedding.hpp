#pragma once
// Embedding lookup (gather rows of a table by id) and its gradient (scatter-add).
#include <cstdint>

#include "plm/backend/cpu/common.hpp"

namespace plm::detail {

struct cpu_embedding {
  static void check_ids(const char* op, CView<std::int32_t> ids, index_t vocab) {
    const std::int32_t* p = ids.data();
    for (index_t i = 0; i < ids.numel(); ++i)
      if (p[i] < 0 || p[i] >= vocab) fail_bad_id(op, p[i], i, ids.shape(), vocab);
  }

  // out[n, :] = table[ids[n], :].  table: (V, C); ids: (...); out: (..., C).
  template <class T>
  static void gather(CView<T> table, CView<std::int32_t> ids, View<T> out) {
    check_embedding("gather", table.shape(), ids.shape(), out.shape());
    check_ids("gather", ids, table.dim(0));
    const index_t n = ids.numel(), C = table.dim(1);
    const std::int32_t* pi = ids.data();
    const T* pt = table.data();
    T* po = out.data();
    parallel_for(n, C, [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) std::memcpy(po + i * C, pt + pi[i] * C, static_cast<std::size_t>(C) * sizeof(T));
    });
  }

  // dtable[ids[n], :] += drows[n, :].  Repeated ids accumulate.
  template <class T>
  static void scatter_add(CView<std::int32_t> ids, CView<T> drows, View<T> dtable) {
    require_compute_type<T>("scatter_add");
    check_embedding("scatter_add", dtable.shape(), ids.shape(), drows.shape());
    check_ids("scatter_add", ids, dtable.dim(0));
    const index_t n = ids.numel(), C = dtable.dim(1);
    const std::int32_t* pi = ids.data();
    const T* pd = drows.data();
    T* pt = dtable.data();
    // Threads own column ranges, so repeated ids never race and the sum order is fixed.
    parallel_for(C, n, [&](index_t c0, index_t c1) {
      for (index_t i = 0; i < n; ++i) {
        T* dst = pt + pi[i] * C;
        const T* src = pd + i * C;
        for (index_t c = c0; c < c1; ++c) dst[c] += src[c];
      }
    });
  }
};

}  // namespace plm::detail
