#pragma once
// Downstream heads on an encoder's states, for either model family (T5 / Ankh,
// ESM-2): what a protein benchmark asks of a pretrained model.
//
//   ProteinHead  one prediction per protein: MeanPool over the valid tokens ->
//                ReadoutHead (C -> R -> K) -> one of
//                  classification  softmax cross-entropy over K classes
//                                  (target: the class id)
//                  multilabel      a sigmoid and binary cross-entropy per label
//                                  (targets 0 / 1, e.g. locations a protein has)
//                  regression      squared error per target (stability, fitness)
//   ResidueHead  one prediction per token: ReadoutHead (C -> R -> K) on every
//                token -> cross-entropy over K classes on the tokens whose label
//                is not -100 (secondary structure, binding or active sites;
//                special tokens and padding carry -100)
//
// Both give d loss / d H for the encoder's backward (train::TaskModel runs the
// encoder, the head and the backward as one model). A NaN target of the
// multilabel and regression tasks is a missing value (assay tables have them)
// and counts nowhere; a non-finite logit is an error naming its row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/nn/pooling.hpp"
#include "plm/nn/readout.hpp"
#include "plm/objectives/cross_entropy.hpp"
#include "plm/objectives/regression.hpp"

namespace plm::objectives {

enum class ProteinTask { classification, multilabel, regression };

inline const char* protein_task_name(ProteinTask t) {
  switch (t) {
    case ProteinTask::classification: return "classification";
    case ProteinTask::multilabel: return "multilabel";
    case ProteinTask::regression: return "regression";
  }
  PLM_FAIL("protein_task_name: invalid ProteinTask value ", static_cast<int>(t));
}
inline ProteinTask parse_protein_task(const std::string& name) {
  for (ProteinTask t : {ProteinTask::classification, ProteinTask::multilabel, ProteinTask::regression})
    if (name == protein_task_name(t)) return t;
  PLM_FAIL("protein task '", name, "' is not one of: classification, multilabel, regression");
}

struct TaskHeadConfig {
  index_t d_model = 0;   // the encoder's width (TaskModel fills it in)
  index_t outputs = 2;   // classes, labels or regression targets
  index_t readout = 128;
  std::string name = "task_head";  // parameters <name>.readout.*, <name>.out.*
};

struct TaskResult {
  double loss = 0;
  std::int64_t count = 0;    // what the loss averages over: proteins, present targets or labelled tokens
  std::int64_t correct = 0;  // argmax right (classification, residues), or labels right at threshold 0.5 (multilabel)
  std::vector<double> predictions;  // host copy of the outputs (logits, or regression values), row-major
  double accuracy() const { return count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

// Sigmoid binary cross-entropy with logits, over the present targets (not NaN),
// stable for any logit: max(x, 0) - x t + log(1 + e^-|x|). Writes the gradient
// (weight / count) (sigmoid(x) - t) into dlogits when given.
template <class B, class T>
TaskResult binary_cross_entropy(ConstView<B, T> logits, const std::vector<double>& targets, TensorView<B, T> dlogits = {},
                                double weight = 1.0) {
  PLM_CHECK(logits.rank() == 2 && static_cast<index_t>(targets.size()) == logits.numel(), "binary_cross_entropy: ", targets.size(),
            " targets for logits ", logits.shape());
  const index_t K = logits.dim(1);
  std::vector<T> x(static_cast<std::size_t>(logits.numel())), g(x.size(), T(0));
  download(logits, x.data());
  TaskResult r;
  for (std::size_t i = 0; i < x.size(); ++i) {
    PLM_CHECK(std::isfinite(static_cast<double>(x[i])), "binary_cross_entropy: logit (", index_t(i) / K, ", ", index_t(i) % K, ") is ",
              static_cast<double>(x[i]));
    if (std::isnan(targets[i])) continue;
    PLM_CHECK(targets[i] >= 0 && targets[i] <= 1, "binary_cross_entropy: target (", index_t(i) / K, ", ", index_t(i) % K, ") is ",
              targets[i], ", outside [0, 1]");
    ++r.count;
  }
  const double per = r.count ? weight / static_cast<double>(r.count) : 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = static_cast<double>(x[i]);
    r.predictions.push_back(v);
    if (std::isnan(targets[i])) continue;
    const double t = targets[i];
    r.loss += std::max(v, 0.0) - v * t + std::log1p(std::exp(-std::abs(v)));
    r.correct += (v > 0) == (t > 0.5);
    g[i] = static_cast<T>(per * (1.0 / (1.0 + std::exp(-v)) - t));
  }
  if (r.count) r.loss /= static_cast<double>(r.count);
  if (!dlogits.empty()) {
    PLM_CHECK(dlogits.shape() == logits.shape(), "binary_cross_entropy: dlogits ", dlogits.shape(), " must match logits ", logits.shape());
    upload(g.data(), dlogits);
  }
  return r;
}

template <class B, class T>
class ProteinHead {
 public:
  struct Work {
    typename nn::MeanPool<B, T>::Cache pool;
    typename nn::ReadoutHead<B, T>::Cache head;
    Tensor<B, T> pooled, d_pooled, out, d_out;  // (N, C), (N, K)
    Tensor<B, std::int32_t> classes;
    std::vector<std::int32_t> host_classes;
  };

  ProteinHead() = default;
  ProteinHead(nn::ParameterSet<B, T>& ps, ProteinTask task, const TaskHeadConfig& c)
      : task_(task), c_(c), head_(ps, c.name, c.d_model, c.outputs, c.readout) {
    PLM_CHECK(c.d_model >= 1 && c.outputs >= 1 && c.readout >= 1, "ProteinHead: d_model ", c.d_model, ", outputs ", c.outputs,
              " and readout ", c.readout, " must be positive");
    PLM_CHECK(task != ProteinTask::classification || c.outputs >= 2, "ProteinHead: classification needs at least 2 classes, got ", c.outputs);
  }

  ProteinTask task() const { return task_; }
  index_t outputs() const { return c_.outputs; }
  const nn::ReadoutHead<B, T>& readout() const { return head_; }

  // H (N, S, C), valid (N, S). targets: classification N class ids (as numbers),
  // else N * K values (NaN = missing). with_gradient keeps what backward() needs.
  TaskResult forward(ConstView<B, T> H, ConstView<B, std::uint8_t> valid, const std::vector<double>& targets, Work& w,
                     bool with_gradient) const {
    PLM_CHECK(H.rank() == 3 && H.dim(2) == c_.d_model, "ProteinHead: H ", H.shape(), " must be (N, S, ", c_.d_model, ")");
    const index_t N = H.dim(0), K = c_.outputs;
    w.pooled.resize(Shape{N, c_.d_model});
    pool_.forward(H, valid, w.pooled.view(), w.pool);
    w.out.resize(Shape{N, K});
    head_.forward(w.pooled.cview(), w.out.view(), w.head);
    w.d_out.resize(w.out.shape());
    const TensorView<B, T> d = with_gradient ? w.d_out.view() : TensorView<B, T>{};
    if (task_ == ProteinTask::multilabel) return binary_cross_entropy<B, T>(w.out.cview(), targets, d);
    if (task_ == ProteinTask::regression) {
      PLM_CHECK(static_cast<index_t>(targets.size()) == N * K, "ProteinHead: ", targets.size(), " regression targets for ", N,
                " proteins x ", K, " outputs");
      std::vector<T> t(targets.begin(), targets.end());
      Tensor<B, T> target(Shape{N, K});
      upload(t.data(), target.view());
      const RegressionResult rr = regression_loss<B, T>(w.out.cview(), target.cview(), 0, 1.0, d);
      TaskResult r{rr.loss, rr.count, 0, host(w.out)};
      return r;
    }
    PLM_CHECK(static_cast<index_t>(targets.size()) == N, "ProteinHead: ", targets.size(), " class ids for ", N, " proteins");
    w.host_classes.resize(targets.size());
    for (std::size_t i = 0; i < targets.size(); ++i) {
      PLM_CHECK(targets[i] >= 0 && targets[i] < double(K) && targets[i] == std::floor(targets[i]), "ProteinHead: protein ", i,
                " has class ", targets[i], ", outside 0..", K - 1);
      w.host_classes[i] = static_cast<std::int32_t>(targets[i]);
    }
    w.classes.resize(Shape{N});
    upload(w.host_classes.data(), w.classes.view());
    const CrossEntropyResult ce = ce_(w.out.cview(), w.classes.cview(), d);
    return TaskResult{ce.loss, ce.tokens, ce.correct, host(w.out)};
  }

  // d loss / d H (written) from the last forward with gradient of H; parameter gradients added.
  void backward(ConstView<B, T> /*H*/, TensorView<B, T> dH, Work& w) const {
    w.d_pooled.resize(w.pooled.shape());
    head_.backward(w.pooled.cview(), w.d_out.cview(), w.d_pooled.view(), w.head);
    pool_.backward(w.d_pooled.cview(), dH, w.pool);
  }

 private:
  static std::vector<double> host(const Tensor<B, T>& t) {
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    download(t.cview(), v.data());
    return std::vector<double>(v.begin(), v.end());
  }

  ProteinTask task_ = ProteinTask::classification;
  TaskHeadConfig c_;
  nn::MeanPool<B, T> pool_;
  nn::ReadoutHead<B, T> head_;
  CrossEntropy<B, T> ce_;
};

template <class B, class T>
class ResidueHead {
 public:
  struct Work {
    typename nn::ReadoutHead<B, T>::Cache head;
    Tensor<B, T> out, d_out;  // (N * S, K)
    Tensor<B, std::int32_t> labels;
  };

  ResidueHead() = default;
  ResidueHead(nn::ParameterSet<B, T>& ps, const TaskHeadConfig& c) : c_(c), head_(ps, c.name, c.d_model, c.outputs, c.readout) {
    PLM_CHECK(c.d_model >= 1 && c.outputs >= 2 && c.readout >= 1, "ResidueHead: d_model ", c.d_model, " and readout ", c.readout,
              " must be positive and there must be at least 2 classes, got ", c.outputs);
  }

  index_t outputs() const { return c_.outputs; }

  // H (N, S, C); labels (N, S) as a host vector, row-major: the class of each
  // token, -100 where nothing is predicted (special tokens, padding). valid is
  // not needed: padding carries -100.
  TaskResult forward(ConstView<B, T> H, ConstView<B, std::uint8_t> /*valid*/, const std::vector<std::int32_t>& labels, Work& w,
                     bool with_gradient) const {
    PLM_CHECK(H.rank() == 3 && H.dim(2) == c_.d_model, "ResidueHead: H ", H.shape(), " must be (N, S, ", c_.d_model, ")");
    const index_t rows = H.dim(0) * H.dim(1), K = c_.outputs;
    PLM_CHECK(static_cast<index_t>(labels.size()) == rows, "ResidueHead: ", labels.size(), " token labels for H ", H.shape());
    for (std::size_t i = 0; i < labels.size(); ++i)
      PLM_CHECK(labels[i] == ce_.ignore_index() || (labels[i] >= 0 && labels[i] < K), "ResidueHead: token ", i % std::size_t(H.dim(1)),
                " of row ", i / std::size_t(H.dim(1)), " has class ", labels[i], ", outside 0..", K - 1, " (or -100)");
    w.out.resize(Shape{rows, K});
    head_.forward(H.reshape(Shape{rows, c_.d_model}), w.out.view(), w.head);
    w.labels.resize(Shape{rows});
    upload(labels.data(), w.labels.view());
    w.d_out.resize(w.out.shape());
    const CrossEntropyResult ce = ce_(w.out.cview(), w.labels.cview(), with_gradient ? w.d_out.view() : TensorView<B, T>{});
    std::vector<T> v(static_cast<std::size_t>(w.out.numel()));
    download(w.out.cview(), v.data());
    return TaskResult{ce.loss, ce.tokens, ce.correct, std::vector<double>(v.begin(), v.end())};
  }

  // d loss / d H (written) from the last forward with gradient of H; parameter gradients added.
  void backward(ConstView<B, T> H, TensorView<B, T> dH, Work& w) const {
    const index_t rows = H.dim(0) * H.dim(1);
    head_.backward(H.reshape(Shape{rows, c_.d_model}), w.d_out.cview(), dH.reshape(Shape{rows, c_.d_model}), w.head);
  }

 private:
  TaskHeadConfig c_;
  nn::ReadoutHead<B, T> head_;
  CrossEntropy<B, T> ce_;
};

}  // namespace plm::objectives
