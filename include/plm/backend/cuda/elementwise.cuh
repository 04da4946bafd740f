#pragma once
// Elementwise kernels, row broadcasts, column sums, the (1, 2) transpose,
// activations and dropout: each reads and writes every element once.
#include "plm/backend/cuda/column_sums.cuh"
#include "plm/backend/cuda/common.cuh"
#include "plm/core/philox.hpp"

namespace plm::detail::cu {

template <class T> __global__ void fill_kernel(T* x, index_t n, T v) { PLM_GRID_STRIDE(i, n) x[i] = v; }
template <class T> void fill(T* x, index_t n, T value) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(x, n, value);
  check_launch("fill");
}

template <class S, class D> __global__ void convert_kernel(const S* s, D* d, index_t n) {
  PLM_GRID_STRIDE(i, n) {
    if constexpr (std::is_same_v<S, bf16> || std::is_same_v<D, bf16>)
      d[i] = from_float<D>(to_float<S>(s[i]));
    else
      d[i] = static_cast<D>(s[i]);
  }
}
template <class S, class D> void convert(const S* src, D* dst, index_t n) {
  if (n == 0) return;
  convert_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(src, dst, n);
  check_launch("convert");
}

template <class T> __global__ void binary_kernel(Binary op, const T* a, const T* b, T* o, index_t n) {
  PLM_GRID_STRIDE(i, n) o[i] = op == Binary::add ? a[i] + b[i] : op == Binary::sub ? a[i] - b[i] : a[i] * b[i];
}
template <class T> void binary(Binary op, const T* a, const T* b, T* out, index_t n) {
  if (n == 0) return;
  binary_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(op, a, b, out, n);
  check_launch("binary");
}

template <class T> __global__ void scale_kernel(const T* x, T alpha, T* o, index_t n) { PLM_GRID_STRIDE(i, n) o[i] = alpha * x[i]; }
template <class T> void scale(const T* x, T alpha, T* out, index_t n) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(x, alpha, out, n);
  check_launch("scale");
}

template <class T> __global__ void axpy_kernel(T alpha, const T* x, T* y, index_t n) { PLM_GRID_STRIDE(i, n) y[i] += alpha * x[i]; }
template <class T> void axpy(T alpha, const T* x, T* y, index_t n) {
  if (n == 0) return;
  axpy_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(alpha, x, y, n);
  check_launch("axpy");
}

template <class T> __global__ void row_kernel(RowOp op, const T* x, const T* row, T* o, index_t n, index_t cols) {
  PLM_GRID_STRIDE(i, n) o[i] = op == RowOp::add ? x[i] + row[i % cols] : op == RowOp::mul ? x[i] * row[i % cols] : x[i] * row[i / cols];
}
template <class T> void row_broadcast(RowOp op, const T* x, const T* row, T* out, index_t rows, index_t cols) {
  const index_t n = rows * cols;
  if (n == 0) return;
  row_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(op, x, row, out, n, cols);
  check_launch("row_broadcast");
}

template <class T> struct RowEntry {
  const T* x;
  index_t cols;
  __device__ T operator()(index_t r, index_t c) const { return x[r * cols + c]; }
};
template <class T> void sum_rows(const T* x, T* out, index_t rows, index_t cols, T beta) {
  column_sums<T>(rows, cols, RowEntry<T>{x, cols}, ScaleAdd<T>{out, beta}, "sum_rows");
}

// out (A, C, B, D) from x (A, B, C, D); consecutive threads write consecutive d.
template <class T> __global__ void transpose12_kernel(const T* x, T* o, index_t A, index_t B, index_t C, index_t D) {
  const index_t n = A * B * C * D;
  PLM_GRID_STRIDE(i, n) {
    const index_t d = i % D, b = (i / D) % B, c = (i / (D * B)) % C, a = i / (D * B * C);
    o[i] = x[((a * B + b) * C + c) * D + d];
  }
}
template <class T> void transpose12(const T* x, T* out, index_t A, index_t B, index_t C, index_t D) {
  transpose12_kernel<<<blocks_for(A * B * C * D), threads_per_block, 0, stream()>>>(x, out, A, B, C, D);
  check_launch("transpose12");
}

template <class T> __global__ void rotary_kernel(const T* x, const T* cs, const T* sn, T* y, index_t rows, index_t Tn, index_t D, T sign) {
  const index_t half = D / 2;
  PLM_GRID_STRIDE(k, rows * half) {
    const index_t r = k / half, i = k % half, t = r % Tn;
    const T x1 = x[r * D + i], x2 = x[r * D + i + half], c = cs[t * half + i], s = sign * sn[t * half + i];
    y[r * D + i] = x1 * c - x2 * s;
    y[r * D + i + half] = x2 * c + x1 * s;
  }
}
template <class T> void rotary(const T* x, const T* cos, const T* sin, T* y, index_t rows, index_t Tn, index_t D, bool inverse) {
  if (rows * D == 0) return;
  rotary_kernel<<<blocks_for(rows * (D / 2)), threads_per_block, 0, stream()>>>(x, cos, sin, y, rows, Tn, D, inverse ? T(-1) : T(1));
  check_launch("rotary");
}

// Activations, as ops<cpu>: gelu is the tanh approximation, gelu_erf the exact one.
template <class T> __device__ inline T act_forward(Act a, T x) {
  if (a == Act::relu) return x > T(0) ? x : T(0);
  if (a == Act::silu) return x / (T(1) + dexp(-x));
  if (a == Act::gelu_erf) return T(0.5) * x * (T(1) + derf(x * T(0.7071067811865476)));
  const T k0 = T(0.7978845608028654), k1 = T(0.044715);
  return T(0.5) * x * (T(1) + dtanh(k0 * (x + k1 * x * x * x)));
}
template <class T> __device__ inline T act_derivative(Act a, T x) {
  if (a == Act::relu) return x > T(0) ? T(1) : T(0);
  if (a == Act::silu) {
    const T s = T(1) / (T(1) + dexp(-x));
    return s * (T(1) + x * (T(1) - s));
  }
  if (a == Act::gelu_erf) return T(0.5) * (T(1) + derf(x * T(0.7071067811865476))) + x * T(0.3989422804014327) * dexp(T(-0.5) * x * x);
  const T k0 = T(0.7978845608028654), k1 = T(0.044715);
  const T t = dtanh(k0 * (x + k1 * x * x * x));
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k0 * (T(1) + T(3) * k1 * x * x);
}
template <class T> __global__ void act_kernel(Act a, const T* x, T* y, index_t n) { PLM_GRID_STRIDE(i, n) y[i] = act_forward(a, x[i]); }
template <class T> __global__ void act_bw_kernel(Act a, const T* x, const T* dy, T* dx, index_t n) {
  PLM_GRID_STRIDE(i, n) dx[i] = dy[i] * act_derivative(a, x[i]);
}
template <class T> void activation(Act a, const T* x, T* y, index_t n) {
  if (n == 0) return;
  act_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(a, x, y, n);
  check_launch("activation");
}
template <class T> void activation_backward(Act a, const T* x, const T* dy, T* dx, index_t n) {
  if (n == 0) return;
  act_bw_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(a, x, dy, dx, n);
  check_launch("activation_backward");
}

// The gated feed-forward's activation, fused as ops<cpu>::gated: g = act(h0) h1;
// backward dh1 = dg act(h0), dh0 = dg h1 act'(h0) (dh0 may alias dg).
template <class T> __global__ void gated_kernel(Act a, const T* h0, const T* h1, T* g, index_t n) {
  PLM_GRID_STRIDE(i, n) g[i] = act_forward(a, h0[i]) * h1[i];
}
template <class T> __global__ void gated_bw_kernel(Act a, const T* h0, const T* h1, const T* dg, T* dh0, T* dh1, index_t n) {
  PLM_GRID_STRIDE(i, n) {
    const T x = h0[i], d = dg[i];
    dh1[i] = d * act_forward(a, x);
    dh0[i] = d * h1[i] * act_derivative(a, x);
  }
}
template <class T> void gated(Act a, const T* h0, const T* h1, T* g, index_t n) {
  if (n == 0) return;
  gated_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(a, h0, h1, g, n);
  check_launch("gated");
}
template <class T> void gated_backward(Act a, const T* h0, const T* h1, const T* dg, T* dh0, T* dh1, index_t n) {
  if (n == 0) return;
  gated_bw_kernel<<<blocks_for(n), threads_per_block, 0, stream()>>>(a, h0, h1, dg, dh0, dh1, n);
  check_launch("gated_backward");
}

// Inverted dropout: thread k handles Philox block k (elements 4k .. 4k+3),
// exactly the draws ops<cpu> uses.
template <class T> __global__ void dropout_kernel(const T* x, T* y, index_t n, float p, T scale, std::uint64_t seed, std::uint64_t st) {
  const index_t blocks = (n + 3) / 4;
  PLM_GRID_STRIDE(b, blocks) {
    const PhiloxBlock r = philox_block(seed, st, static_cast<std::uint64_t>(b));
    for (int j = 0; j < 4; ++j) {
      const index_t i = 4 * b + j;
      if (i < n) y[i] = u32_to_uniform(r.v[j]) > p ? x[i] * scale : T(0);
    }
  }
}
template <class T> void dropout(const T* x, T* y, index_t n, T p, std::uint64_t seed, std::uint64_t st) {
  if (n == 0) return;
  dropout_kernel<<<blocks_for((n + 3) / 4), threads_per_block, 0, stream()>>>(x, y, n, static_cast<float>(p), T(1) / (T(1) - p), seed, st);
  check_launch("dropout");
}

}  // namespace plm::detail::cu
