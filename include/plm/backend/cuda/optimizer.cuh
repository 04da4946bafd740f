#pragma once
// Optimizer steps as fused kernels: AdamW in one pass; Adafactor as row and
// column moment updates, the scaled update, its RMS (a deterministic
// reduction kept on the device) and the step, with no host round trip.
#include "plm/backend/cuda/column_sums.cuh"
#include "plm/backend/cuda/common.cuh"
#include "plm/backend/cuda/reduce.cuh"

namespace plm::detail::cu {

template <class T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, index_t n, T b1, T b2, T decay, T step, T inv_c2, T eps) {
  PLM_GRID_STRIDE(i, n) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (dsqrt(vi * inv_c2) + eps);
  }
}
template <class T>
void adamw(T* p, const T* g, T* m, T* v, index_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
           double correction1, double correction2) {
  if (n == 0) return;
  adamw_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(
      p, g, m, v, n, static_cast<T>(beta1), static_cast<T>(beta2), static_cast<T>(1 - lr * weight_decay),
      static_cast<T>(lr / correction1), static_cast<T>(1 / correction2), static_cast<T>(eps));
  check_launch("adamw_update");
}

// Factored second moments: row r's running mean of g^2 + eps1 over columns.
template <class T> __global__ void adafactor_rows_kernel(const T* g, T* vr, index_t C, double b, double eps1) {
  const index_t r = blockIdx.x;
  double s = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) s += double(g[r * C + c]) * double(g[r * C + c]) + eps1;
  s = block_reduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) vr[r] = static_cast<T>(b * double(vr[r]) + (1 - b) * s / double(C));
}
template <class T> struct SquarePlusEps {  // g^2 + eps1, in double
  const T* g;
  index_t C;
  double eps1;
  __device__ double operator()(index_t r, index_t c) const { return double(g[r * C + c]) * double(g[r * C + c]) + eps1; }
};
template <class T> struct RunningColumnMean {  // vc = b vc + (1 - b) sum / R
  T* vc;
  double b, R;
  __device__ void operator()(index_t c, double s) const { vc[c] = static_cast<T>(b * double(vc[c]) + (1 - b) * s / R); }
};
// u = g / sqrt(row x col / mean(row)); row_sum holds sum(row) on the device.
template <class T> __global__ void adafactor_factored_u_kernel(const T* g, const T* vr, const T* vc, const double* row_sum, T* u, index_t R, index_t C) {
  const double row_mean = *row_sum / double(R);
  PLM_GRID_STRIDE(i, R * C) {
    const index_t r = i / C, c = i % C;
    const double rr = 1.0 / sqrt(double(vr[r]) / row_mean);
    u[i] = static_cast<T>(double(g[i]) * rr / sqrt(double(vc[c])));
  }
}
template <class T> __global__ void adafactor_full_u_kernel(const T* g, T* v, T* u, index_t n, double b, double eps1) {
  PLM_GRID_STRIDE(i, n) {
    v[i] = static_cast<T>(b * double(v[i]) + (1 - b) * (double(g[i]) * double(g[i]) + eps1));
    u[i] = static_cast<T>(double(g[i]) / sqrt(double(v[i])));
  }
}
template <class T>
__global__ void adafactor_step_kernel(T* p, const T* u, T* m, index_t n, const double* u_sum_squares, double lr, double clip,
                                      double beta1, T decay) {
  const double rms = sqrt(*u_sum_squares / double(n));
  const double s = lr / fmax(1.0, rms / clip);
  PLM_GRID_STRIDE(i, n) {
    double step = s * double(u[i]);
    if (m) {
      m[i] = static_cast<T>(beta1 * double(m[i]) + (1 - beta1) * step);
      step = double(m[i]);
    }
    p[i] = static_cast<T>(double(p[i] * decay) - step);
  }
}

template <class T>
void adafactor(T* p, const T* g, T* row, T* col, T* m, T* scratch, index_t R, index_t C, double lr, double beta2t, double eps1,
               double clip_threshold, double beta1, double weight_decay) {
  CudaContext::Impl& cx = ctx();
  const index_t n = R * C;
  auto* buf = static_cast<double*>(cx.scratch_at(CudaContext::Impl::reduce_slot, (reduce_blocks + 2) * sizeof(double)));
  double* row_sum = buf + reduce_blocks;
  double* u_ss = buf + reduce_blocks + 1;
  if (col) {
    adafactor_rows_kernel<<<static_cast<unsigned>(R), row_threads(C), 0, cx.stream>>>(g, row, C, beta2t, eps1);
    check_launch("adafactor_update (row moments)");
    column_sums<double>(R, C, SquarePlusEps<T>{g, C, eps1}, RunningColumnMean<T>{col, beta2t, double(R)},
                        "adafactor_update (column moments)");
    reduce_to_device(Reduce::sum, static_cast<const T*>(row), R, row_sum, buf);
    adafactor_factored_u_kernel<<<blocks_for(n), threads_per_block, 0, cx.stream>>>(g, row, col, row_sum, scratch, R, C);
    check_launch("adafactor_update (update)");
  } else {
    adafactor_full_u_kernel<<<blocks_for(n), threads_per_block, 0, cx.stream>>>(g, row, scratch, n, beta2t, eps1);
    check_launch("adafactor_update (update)");
  }
  reduce_to_device(Reduce::sum_squares, static_cast<const T*>(scratch), n, u_ss, buf);
  adafactor_step_kernel<<<blocks_for(n), threads_per_block, 0, cx.stream>>>(p, scratch, m, n, u_ss, lr, clip_threshold, beta1,
                                                                           static_cast<T>(1 - lr * weight_decay));
  check_launch("adafactor_update (step)");
}

}  // namespace plm::detail::cu
