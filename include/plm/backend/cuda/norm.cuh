#pragma once
// RMS norm and layer norm: one block per row, statistics accumulated in
// double as ops<cpu> does; weight gradients by deterministic column sums.
#include "plm/backend/cuda/column_sums.cuh"
#include "plm/backend/cuda/common.cuh"

namespace plm::detail::cu {

template <class T> __global__ void rms_norm_kernel(const T* x, const T* w, T eps, T* y, T* inv_rms, index_t C) {
  const index_t r = blockIdx.x;
  const T* xr = x + r * C;
  double ss = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) ss += static_cast<double>(xr[c]) * xr[c];
  ss = block_reduce(ss, SumOp{}, 0.0);
  const T inv = static_cast<T>(1.0 / sqrt(ss / static_cast<double>(C) + static_cast<double>(eps)));
  if (threadIdx.x == 0) inv_rms[r] = inv;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) y[r * C + c] = xr[c] * inv * w[c];
}
template <class T> void rms_norm(const T* x, const T* w, T eps, T* y, T* inv_rms, index_t rows, index_t C) {
  if (rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), row_threads(C), 0, stream()>>>(x, w, eps, y, inv_rms, C);
  check_launch("rms_norm");
}

template <class T> struct RmsWeightTerm {  // dy * xhat
  const T *x, *inv, *dy;
  index_t C;
  __device__ T operator()(index_t r, index_t c) const { return dy[r * C + c] * x[r * C + c] * inv[r]; }
};
template <class T> __global__ void rms_dx_kernel(const T* x, const T* w, const T* inv_rms, const T* dy, T* dx, index_t C) {
  const index_t r = blockIdx.x;
  const T *xr = x + r * C, *dyr = dy + r * C;
  const T inv = inv_rms[r];
  double dot = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) dot += static_cast<double>(dyr[c]) * w[c] * xr[c] * inv;
  dot = block_reduce(dot, SumOp{}, 0.0);
  const T m = static_cast<T>(dot / static_cast<double>(C));
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) dx[r * C + c] = inv * (dyr[c] * w[c] - xr[c] * inv * m);
}
template <class T>
void rms_norm_backward(const T* x, const T* w, const T* inv_rms, const T* dy, T* dx, T* dw, index_t rows, index_t C) {
  if (rows == 0) return;
  // dweight first: dx may alias dy.
  column_sums<T>(rows, C, RmsWeightTerm<T>{x, inv_rms, dy, C}, AddInto<T>{dw}, "rms_norm_backward (dweight)");
  rms_dx_kernel<<<static_cast<unsigned>(rows), row_threads(C), 0, stream()>>>(x, w, inv_rms, dy, dx, C);
  check_launch("rms_norm_backward (dx)");
}

template <class T> __global__ void layer_norm_kernel(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, index_t C) {
  const index_t r = blockIdx.x;
  const T* xr = x + r * C;
  double s = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
  const double mu = block_reduce(s, SumOp{}, 0.0) / static_cast<double>(C);
  double v = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) v += (xr[c] - mu) * (xr[c] - mu);
  v = block_reduce(v, SumOp{}, 0.0);
  const T rs = static_cast<T>(1.0 / sqrt(v / static_cast<double>(C) + static_cast<double>(eps)));
  const T m = static_cast<T>(mu);
  if (threadIdx.x == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) y[r * C + c] = (xr[c] - m) * rs * w[c] + b[c];
}
template <class T> void layer_norm(const T* x, const T* w, const T* b, T eps, T* y, T* mean, T* rstd, index_t rows, index_t C) {
  if (rows == 0) return;
  layer_norm_kernel<<<static_cast<unsigned>(rows), row_threads(C), 0, stream()>>>(x, w, b, eps, y, mean, rstd, C);
  check_launch("layer_norm");
}

template <class T> struct LnWeightTerm {  // dy * xhat
  const T *x, *mean, *rstd, *dy;
  index_t C;
  __device__ T operator()(index_t r, index_t c) const { return dy[r * C + c] * (x[r * C + c] - mean[r]) * rstd[r]; }
};
template <class T> struct LnBiasTerm {  // dy
  const T* dy;
  index_t C;
  __device__ T operator()(index_t r, index_t c) const { return dy[r * C + c]; }
};
template <class T> __global__ void ln_dx_kernel(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx, index_t C) {
  const index_t r = blockIdx.x;
  const T *xr = x + r * C, *dyr = dy + r * C;
  const T mu = mean[r], rs = rstd[r];
  double sg = 0, sgx = 0;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
    const double g = static_cast<double>(dyr[c]) * w[c];
    sg += g;
    sgx += g * (xr[c] - mu) * rs;
  }
  sg = block_reduce(sg, SumOp{}, 0.0);
  sgx = block_reduce(sgx, SumOp{}, 0.0);
  const T mg = static_cast<T>(sg / static_cast<double>(C)), mgx = static_cast<T>(sgx / static_cast<double>(C));
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) dx[r * C + c] = rs * (dyr[c] * w[c] - mg - (xr[c] - mu) * rs * mgx);
}
template <class T>
void layer_norm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx, T* dw, T* db, index_t rows, index_t C) {
  if (rows == 0) return;
  column_sums<T>(rows, C, LnWeightTerm<T>{x, mean, rstd, dy, C}, AddInto<T>{dw}, "layer_norm_backward (dweight)");
  column_sums<T>(rows, C, LnBiasTerm<T>{dy, C}, AddInto<T>{db}, "layer_norm_backward (dbias)");
  ln_dx_kernel<<<static_cast<unsigned>(rows), row_threads(C), 0, stream()>>>(x, w, mean, rstd, dy, dx, C);
  check_launch("layer_norm_backward (dx)");
}

}  // namespace plm::detail::cu
