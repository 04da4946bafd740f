#pragma once
// What sits on top of an encoder for protein-level tasks:
//   MeanPool              mean of the hidden states over valid tokens
//   ReadoutHead           Linear(C -> R) + ReLU + Linear(R -> K): classes (K logits)
//                         or a regression (K = 1), the negative-mining paper's readout (R = 128)
//   NegativeMiningAttention  single-head attention without output projection
//                         (Wq, Wk, Wv, no bias, no 1/sqrt(d) unless asked, as the
//                         released code) whose probabilities feed the
//                         attention-space losses of objectives/attention_contrastive.hpp
#include <cmath>
#include <string>
#include <vector>

#include "plm/backend/cpu/ops.hpp"
#include "plm/backend/softmax_mask.hpp"
#include "plm/nn/linear.hpp"

namespace plm::nn {

// x (B, T, C), valid (B, T) -> out (B, C): one batched GEMM with weights
// valid / count, so padding contributes nothing and the backward is its transpose.
template <class B, class T>
class MeanPool {
 public:
  struct Cache {
    Tensor<B, T> w;  // (B, 1, T)
  };
  void forward(ConstView<B, T> x, ConstView<B, std::uint8_t> valid, TensorView<B, T> out, Cache& c) const {
    PLM_CHECK(x.rank() == 3 && valid.shape() == Shape({x.dim(0), x.dim(1)}) && out.shape() == Shape({x.dim(0), x.dim(2)}),
              "MeanPool: x ", x.shape(), ", valid ", valid.shape(), " and out ", out.shape(), " must be (B, T, C), (B, T), (B, C)");
    const index_t Bn = x.dim(0), Tn = x.dim(1);
    std::vector<std::uint8_t> v(static_cast<std::size_t>(Bn * Tn));
    download(valid, v.data());
    std::vector<T> w(v.size());
    for (index_t b = 0; b < Bn; ++b) {
      index_t n = 0;
      for (index_t t = 0; t < Tn; ++t) n += v[static_cast<std::size_t>(b * Tn + t)] != 0;
      PLM_CHECK(n > 0, "MeanPool: sequence ", b, " has no valid token");
      for (index_t t = 0; t < Tn; ++t) w[static_cast<std::size_t>(b * Tn + t)] = v[static_cast<std::size_t>(b * Tn + t)] ? T(1) / T(n) : T(0);
    }
    c.w.resize(Shape{Bn, 1, Tn});
    upload(w.data(), c.w.view());
    ops<B>::matmul(c.w.cview(), false, x, false, out.reshape(Shape{Bn, 1, x.dim(2)}));
  }
  // d_out (B, C) -> dx (B, T, C), written.
  void backward(ConstView<B, T> d_out, TensorView<B, T> dx, Cache& c) const {
    const index_t Bn = dx.dim(0), C = dx.dim(2);
    ops<B>::matmul(c.w.cview(), true, d_out.reshape(Shape{Bn, 1, C}), false, dx);
  }
};

template <class B, class T>
class ReadoutHead {
 public:
  struct Cache {
    Tensor<B, T> h, a, da;  // (N, R)
  };
  ReadoutHead() = default;
  ReadoutHead(ParameterSet<B, T>& ps, const std::string& name, index_t in, index_t out, index_t readout = 128)
      : readout_(ps, name + ".readout", in, readout, 1.0 / std::sqrt(double(in)), true),
        out_(ps, name + ".out", readout, out, 1.0 / std::sqrt(double(readout)), true) {}

  // x (N, C) -> y (N, K)
  void forward(ConstView<B, T> x, TensorView<B, T> y, Cache& c) const {
    c.h.resize(Shape{x.dim(0), readout_.out_features()});
    c.a.resize(c.h.shape());
    readout_.forward(x, c.h.view());
    ops<B>::relu(c.h.cview(), c.a.view());
    out_.forward(c.a.cview(), y);
  }
  // dy (N, K) -> dx (N, C) written (skipped when empty); parameter gradients added.
  void backward(ConstView<B, T> x, ConstView<B, T> dy, TensorView<B, T> dx, Cache& c) const {
    c.da.resize(c.a.shape());
    out_.backward(c.a.cview(), dy, c.da.view());
    ops<B>::relu_backward(c.h.cview(), c.da.cview(), c.da.view());
    readout_.backward(x, c.da.cview(), dx);
  }

 private:
  Linear<B, T> readout_, out_;
};

template <class B, class T>
class NegativeMiningAttention {
 public:
  struct Cache {
    Tensor<B, T> q, k, v, probs, d_probs, d_q, d_k, d_v;
  };
  NegativeMiningAttention() = default;
  // d: hidden size of the encoder below; scaled = true divides scores by sqrt(d)
  // (the released code does not).
  NegativeMiningAttention(ParameterSet<B, T>& ps, const std::string& name, index_t d, bool scaled = false)
      : q_(ps, name + ".q", d, d, 1.0 / std::sqrt(double(d))), k_(ps, name + ".k", d, d, 1.0 / std::sqrt(double(d))),
        v_(ps, name + ".v", d, d, 1.0 / std::sqrt(double(d))), scale_(scaled ? 1.0 / std::sqrt(double(d)) : 1.0) {}

  // x_q (N, Tq, d) attends over x_kv (N, Tk, d) with key_valid (N, Tk):
  // out (N, Tq, d) = P V; the probabilities P (N, 1, Tq, Tk) stay in the cache.
  void forward(ConstView<B, T> x_q, ConstView<B, T> x_kv, ConstView<B, std::uint8_t> key_valid, TensorView<B, T> out, Cache& c) const {
    const index_t N = x_q.dim(0), Tq = x_q.dim(1), Tk = x_kv.dim(1), d = q_.out_features();
    PLM_CHECK(x_q.rank() == 3 && x_kv.rank() == 3 && x_kv.dim(0) == N && x_q.dim(2) == d && x_kv.dim(2) == d && out.shape() == x_q.shape(),
              "NegativeMiningAttention: x_q ", x_q.shape(), ", x_kv ", x_kv.shape(), " and out ", out.shape(), " must be (N, T, ", d, ")");
    c.q.resize(Shape{N, Tq, d});
    c.k.resize(Shape{N, Tk, d});
    c.v.resize(Shape{N, Tk, d});
    q_.forward(x_q, c.q.view());
    k_.forward(x_kv, c.k.view());
    v_.forward(x_kv, c.v.view());
    c.probs.resize(Shape{N, 1, Tq, Tk});
    const auto scores = c.probs.view().reshape(Shape{N, Tq, Tk});
    ops<B>::matmul(c.q.cview(), false, c.k.cview(), true, scores);
    SoftmaxMask<B, T> mask{{}, key_valid, false, static_cast<T>(scale_)};
    ops<B>::masked_softmax(c.probs.cview(), c.probs.view(), mask);
    ops<B>::matmul(ConstView<B, T>(scores), false, c.v.cview(), false, out);
  }
  const Tensor<B, T>& probs(const Cache& c) const { return c.probs; }

  // dout (N, Tq, d); d_probs_extra (N, 1, Tq, Tk) or empty (the contrastive
  // loss's gradient). dx_q is written, dx_kv added to (the same view for self-attention).
  void backward(ConstView<B, T> x_q, ConstView<B, T> x_kv, ConstView<B, T> dout, TensorView<B, T> dx_q, TensorView<B, T> dx_kv,
                Cache& c, ConstView<B, T> d_probs_extra = {}) const {
    const index_t N = x_q.dim(0), Tq = x_q.dim(1), Tk = x_kv.dim(1), d = q_.out_features();
    const Shape ps{N, Tq, Tk};
    c.d_probs.resize(c.probs.shape());
    c.d_v.resize(Shape{N, Tk, d});
    const auto P = c.probs.cview().reshape(ps);
    ops<B>::matmul(dout, false, c.v.cview(), true, c.d_probs.view().reshape(ps));  // dP = dout V^T
    ops<B>::matmul(P, true, dout, false, c.d_v.view());                             // dV = P^T dout
    if (!d_probs_extra.empty()) {
      PLM_CHECK(d_probs_extra.shape() == c.probs.shape(), "NegativeMiningAttention: extra probability gradient ", d_probs_extra.shape(),
                " must match the probabilities ", c.probs.shape());
      ops<B>::axpy(T(1), d_probs_extra, c.d_probs.view());
    }
    ops<B>::masked_softmax_backward(c.probs.cview(), c.d_probs.cview(), c.d_probs.view(), static_cast<T>(scale_), TensorView<B, T>{});
    c.d_q.resize(Shape{N, Tq, d});
    c.d_k.resize(Shape{N, Tk, d});
    const auto dS = c.d_probs.cview().reshape(ps);
    ops<B>::matmul(dS, false, c.k.cview(), false, c.d_q.view());  // dQ = dS K
    ops<B>::matmul(dS, true, c.q.cview(), false, c.d_k.view());   // dK = dS^T Q
    q_.backward(x_q, c.d_q.cview(), dx_q, false);
    k_.backward(x_kv, c.d_k.cview(), dx_kv, true);
    v_.backward(x_kv, c.d_v.cview(), dx_kv, true);
  }

 private:
  Linear<B, T> q_, k_, v_;
  double scale_ = 1.0;
};

}  // namespace plm::nn
