#pragma once
// Per-column sums over the rows of a (rows, C) array: bias, norm-weight and
// Adafactor column gradients. Two deterministic stages: each block sums a
// fixed chunk of rows for 128 columns, then one thread per column adds the
// chunk sums in chunk order. Splitting the rows as well as the columns keeps
// the GPU busy when C is a model width and rows are thousands of tokens.
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

constexpr int column_threads = 128;
constexpr index_t column_chunk_rows = 64, column_max_chunks = 1024;

template <class Acc, class Term>
__global__ void column_partial_kernel(Term term, index_t rows, index_t C, index_t chunk, Acc* partial) {
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const index_t r0 = static_cast<index_t>(blockIdx.y) * chunk, r1 = min(rows, r0 + chunk);
  Acc s = 0;
  for (index_t r = r0; r < r1; ++r) s += term(r, c);
  partial[static_cast<index_t>(blockIdx.y) * C + c] = s;
}

template <class Acc, class Finish>
__global__ void column_finish_kernel(const Acc* partial, index_t parts, index_t C, Finish finish) {
  PLM_GRID_STRIDE(c, C) {
    Acc s = 0;
    for (index_t p = 0; p < parts; ++p) s += partial[p * C + c];
    finish(c, s);
  }
}

// For every column c: finish(c, sum over r of term(r, c)), accumulated in Acc.
template <class Acc, class Term, class Finish>
void column_sums(index_t rows, index_t C, Term term, Finish finish, const char* what) {
  if (C == 0) return;
  CudaContext::Impl& cx = ctx();
  index_t parts = (rows + column_chunk_rows - 1) / column_chunk_rows;
  parts = parts < 1 ? 1 : parts > column_max_chunks ? column_max_chunks : parts;
  const index_t chunk = (rows + parts - 1) / parts;
  auto* partial = static_cast<Acc*>(
      cx.scratch_at(CudaContext::Impl::columns_slot, static_cast<std::size_t>(parts * C) * sizeof(Acc)));
  const dim3 grid(static_cast<unsigned>((C + column_threads - 1) / column_threads), static_cast<unsigned>(parts));
  column_partial_kernel<Acc><<<grid, column_threads, 0, cx.stream>>>(term, rows, C, chunk, partial);
  check_launch(what);
  column_finish_kernel<Acc><<<blocks_for(C, column_threads), column_threads, 0, cx.stream>>>(partial, parts, C, finish);
  check_launch(what);
}

// Common finishing steps.
template <class T> struct AddInto {  // out[c] += sum
  T* out;
  __device__ void operator()(index_t c, T s) const { out[c] += s; }
};
template <class T> struct ScaleAdd {  // out[c] = beta * out[c] + sum (out not read when beta is 0)
  T* out;
  T beta;
  __device__ void operator()(index_t c, T s) const { out[c] = (beta == T(0) ? T(0) : beta * out[c]) + s; }
};

}  // namespace plm::detail::cu
