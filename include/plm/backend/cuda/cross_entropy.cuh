#pragma once
// Cross-entropy with its gradient in one kernel: one block per row finds the
// max and argmax, sums exp and the logits, then writes the gradient row.
// Per-row results go to context scratch and are summed in a fixed order.
#include "plm/backend/cross_entropy_sums.hpp"
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

struct RowSums {
  double loss, nll, count, correct;
};

template <class T>
__global__ void cross_entropy_kernel(const T* logits, const std::int32_t* targets, index_t V, std::int32_t ignore_index, double ls,
                                     T* dlogits, T grad_scale, const T* row_scale, T* row_loss, std::uint8_t* row_correct,
                                     RowSums* sums, unsigned long long* bad) {
  const index_t r = blockIdx.x;
  const T* l = logits + r * V;
  T* g = dlogits ? dlogits + r * V : nullptr;
  const std::int32_t t = targets[r];
  const bool ignored = t == ignore_index;
  if (ignored || t < 0 || t >= V) {
    if (!ignored && threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(r));
    if (g)
      for (index_t j = threadIdx.x; j < V; j += blockDim.x) g[j] = T(0);
    if (threadIdx.x == 0) {
      if (row_loss) row_loss[r] = T(0);
      if (row_correct) row_correct[r] = 0;
      sums[r] = RowSums{0, 0, 0, 0};
    }
    return;
  }
  const T lt = l[t];  // read before any thread writes the row (dlogits may alias logits)
  T mx = neg_inf<T>();
  for (index_t j = threadIdx.x; j < V; j += blockDim.x) mx = l[j] > mx ? l[j] : mx;
  mx = block_reduce(mx, MaxOp{}, neg_inf<T>());
  // argmax: the first index holding the maximum, as ops<cpu>
  long long arg = V;
  for (index_t j = threadIdx.x; j < V; j += blockDim.x)
    if (l[j] == mx && j < arg) arg = j;
  arg = block_reduce(arg, MinOp{}, static_cast<long long>(V));
  double z = 0, sum_l = 0;
  for (index_t j = threadIdx.x; j < V; j += blockDim.x) {
    z += exp(static_cast<double>(l[j] - mx));
    sum_l += static_cast<double>(l[j]);
  }
  z = block_reduce(z, SumOp{}, 0.0);
  sum_l = block_reduce(sum_l, SumOp{}, 0.0);
  const double lse = static_cast<double>(mx) + log(z);
  const double nll = lse - static_cast<double>(lt);
  const double loss = (1 - ls) * nll + ls * (lse - sum_l / static_cast<double>(V));
  if (threadIdx.x == 0) {
    if (row_loss) row_loss[r] = static_cast<T>(loss);
    if (row_correct) row_correct[r] = arg == t;
    sums[r] = RowSums{loss, nll, 1, arg == t ? 1.0 : 0.0};
  }
  if (g) {
    const T gs = row_scale ? row_scale[r] : grad_scale;
    const T inv_z = static_cast<T>(1.0 / z), off = static_cast<T>(ls / static_cast<double>(V));
    for (index_t j = threadIdx.x; j < V; j += blockDim.x) g[j] = gs * (dexp(l[j] - mx) * inv_z - off) - (j == t ? gs * static_cast<T>(1 - ls) : T(0));
  }
}

__global__ void row_sums_partial_kernel(const RowSums* rows, index_t n, index_t chunk, RowSums* partial) {
  const index_t begin = blockIdx.x * chunk, end = min(n, begin + chunk);
  RowSums s{0, 0, 0, 0};
  for (index_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    s.loss += rows[i].loss;
    s.nll += rows[i].nll;
    s.count += rows[i].count;
    s.correct += rows[i].correct;
  }
  s.loss = block_reduce(s.loss, SumOp{}, 0.0);
  s.nll = block_reduce(s.nll, SumOp{}, 0.0);
  s.count = block_reduce(s.count, SumOp{}, 0.0);
  s.correct = block_reduce(s.correct, SumOp{}, 0.0);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

template <class T>
CrossEntropySums cross_entropy(const T* logits, const std::int32_t* targets, index_t rows, index_t V, std::int32_t ignore_index,
                               T label_smoothing, T* dlogits, T grad_scale, const T* row_scale, T* row_loss,
                               std::uint8_t* row_correct, index_t& bad_row) {
  bad_row = -1;
  CrossEntropySums out;
  if (rows == 0) return out;
  PLM_CHECK(rows <= INT_MAX, "cross_entropy: ", rows, " rows exceed one launch");
  CudaContext::Impl& cx = ctx();
  constexpr int parts = 256;
  auto* per_row = static_cast<RowSums*>(cx.scratch_at(CudaContext::Impl::rows_slot, static_cast<std::size_t>(rows + parts + 1) * sizeof(RowSums)));
  RowSums* partial = per_row + rows;
  auto* bad = static_cast<unsigned long long*>(cx.scratch_at(CudaContext::Impl::flag_slot, sizeof(unsigned long long)));
  PLM_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), cx.stream));
  cross_entropy_kernel<<<static_cast<unsigned>(rows), row_threads(V), 0, cx.stream>>>(
      logits, targets, V, ignore_index, static_cast<double>(label_smoothing), dlogits, grad_scale, row_scale, row_loss, row_correct,
      per_row, bad);
  check_launch("cross_entropy");
  const index_t chunk = (rows + parts - 1) / parts;
  const int blocks = static_cast<int>((rows + chunk - 1) / chunk);
  row_sums_partial_kernel<<<blocks, 128, 0, cx.stream>>>(per_row, rows, chunk, partial);
  check_launch("cross_entropy (partial sums)");
  row_sums_partial_kernel<<<1, 128, 0, cx.stream>>>(partial, blocks, blocks, partial + parts);
  check_launch("cross_entropy (final sums)");
  RowSums total{};
  unsigned long long first_bad = 0;
  cx.read_back(&total, partial + parts, sizeof total);
  cx.read_back(&first_bad, bad, sizeof first_bad);
  if (first_bad != ~0ull) bad_row = static_cast<index_t>(first_bad);
  out.loss = total.loss;
  out.nll = total.nll;
  out.count = static_cast<std::int64_t>(total.count);
  out.correct = static_cast<std::int64_t>(total.correct);
  return out;
}

}  // namespace plm::detail::cu
