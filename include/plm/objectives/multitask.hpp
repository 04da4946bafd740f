#pragma once
// Ankh3's objectives on a seq2seq model's logits.
//
//   SpanMLM     [NLU] denoising: the decoder predicts sentinel + residue pairs;
//               its headline metric is masked-residue accuracy (residue
//               positions of the targets only; sentinels and eos excluded).
//   Completion  [S2S]: the decoder generates the rest of the sequence;
//               metric: accuracy on the generated residues.
//   MultiTask   a batch mixing tasks: each task's loss is the mean over its
//               own target tokens, the total is the weighted sum of the task
//               losses present in the batch, and every task's loss and
//               accuracy are reported separately.
//
// One fused cross-entropy pass serves all tasks: the per-row gradient scale
// weight_task / tokens_task makes d total / d logits come out directly.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/packing.hpp"

namespace plm::objectives {

struct TaskStats {
  std::string name;
  double weight = 1.0;
  double loss = 0;                 // mean over the task's target tokens (with smoothing if any)
  std::int64_t tokens = 0;         // target tokens that count
  std::int64_t correct = 0;
  std::int64_t residue_tokens = 0;   // targets that are residues
  std::int64_t residue_correct = 0;
  double accuracy() const { return tokens ? double(correct) / double(tokens) : 0.0; }
  double residue_accuracy() const { return residue_tokens ? double(residue_correct) / double(residue_tokens) : 0.0; }
};

struct MultiTaskResult {
  double total = 0;  // sum over present tasks of weight * loss
  std::vector<TaskStats> tasks;

  // Folds in another batch of the same tasks (micro-batches, evaluation
  // batches): counts add up, each task's loss becomes the mean over all its
  // target tokens, and total is recomputed from those losses.
  MultiTaskResult& add(const MultiTaskResult& r) {
    if (tasks.empty()) return *this = r;
    PLM_CHECK(r.tasks.size() == tasks.size(), "MultiTaskResult::add: ", r.tasks.size(), " tasks added to ", tasks.size());
    total = 0;
    for (std::size_t k = 0; k < tasks.size(); ++k) {
      TaskStats& t = tasks[k];
      const TaskStats& o = r.tasks[k];
      const std::int64_t n = t.tokens + o.tokens;
      t.loss = n ? (t.loss * double(t.tokens) + o.loss * double(o.tokens)) / double(n) : 0.0;
      t.tokens = n, t.correct += o.correct;
      t.residue_tokens += o.residue_tokens, t.residue_correct += o.residue_correct;
      total += t.tokens ? t.weight * t.loss : 0.0;
    }
    return *this;
  }

  // Its numbers in one list, to send between processes: total, then per task
  // weight, loss, tokens, correct, residue tokens and residue correct (counts
  // below 2^53 are exact in a double).
  std::vector<double> numbers() const {
    std::vector<double> v{total};
    for (const auto& t : tasks)
      v.insert(v.end(), {t.weight, t.loss, double(t.tokens), double(t.correct), double(t.residue_tokens), double(t.residue_correct)});
    return v;
  }
  // Reads numbers() back, the tasks named `names` in order.
  static MultiTaskResult from_numbers(const std::vector<double>& v, const std::vector<std::string>& names) {
    PLM_CHECK(v.size() == 1 + 6 * names.size(), "MultiTaskResult::from_numbers: ", v.size(), " numbers for ", names.size(), " tasks");
    MultiTaskResult r;
    r.total = v[0];
    for (std::size_t k = 0; k < names.size(); ++k) {
      const double* x = v.data() + 1 + 6 * k;
      r.tasks.push_back({names[k], x[0], x[1], std::int64_t(x[2]), std::int64_t(x[3]), std::int64_t(x[4]), std::int64_t(x[5])});
    }
    return r;
  }
};

struct TaskSpec {
  std::string name;
  double weight = 1.0;
};

template <class B, class T>
class MultiTask {
 public:
  // tasks[i] is task id i. residue_ids: the token ids that count as residues for the accuracy metrics.
  MultiTask(std::vector<TaskSpec> tasks, std::vector<std::int32_t> residue_ids, std::int32_t ignore_index = -100,
            double label_smoothing = 0.0)
      : tasks_(std::move(tasks)), ignore_(ignore_index), smoothing_(label_smoothing) {
    PLM_CHECK(!tasks_.empty(), "MultiTask: no tasks");
    for (std::int32_t id : residue_ids) {
      PLM_CHECK(id >= 0, "MultiTask: negative residue id ", id);
      if (static_cast<std::size_t>(id) >= is_residue_.size()) is_residue_.resize(static_cast<std::size_t>(id) + 1, 0);
      is_residue_[static_cast<std::size_t>(id)] = 1;
    }
  }

  const std::vector<TaskSpec>& tasks() const { return tasks_; }

  // logits: (B, T, V); labels: (B, T) with ignore_index on padding; task: one id per sequence (host).
  // dlogits (same shape as logits, may alias it) is WRITTEN with d total / d logits when given.
  MultiTaskResult operator()(ConstView<B, T> logits, ConstView<B, std::int32_t> labels, const std::vector<std::int32_t>& task,
                             TensorView<B, T> dlogits = {}) const {
    PLM_CHECK(logits.rank() == 3 && labels.shape() == Shape({logits.dim(0), logits.dim(1)}), "MultiTask: logits ", logits.shape(),
              " and labels ", labels.shape(), " must be (B, T, V) and (B, T)");
    const index_t Bn = logits.dim(0), Tn = logits.dim(1);
    PLM_CHECK(static_cast<index_t>(task.size()) == Bn, "MultiTask: ", task.size(), " task ids for a batch of ", Bn);
    bounds_.resize(static_cast<std::size_t>(Bn) + 1);
    for (index_t b = 0; b <= Bn; ++b) bounds_[static_cast<std::size_t>(b)] = b * Tn;
    return run(logits, labels, task, dlogits);
  }
  // A packed batch (core/packing.hpp): logits (1, N, V) and labels (1, N) hold the
  // sequences of `packing` end to end; task: one id per sequence.
  MultiTaskResult operator()(ConstView<B, T> logits, ConstView<B, std::int32_t> labels, const Packing& packing,
                             const std::vector<std::int32_t>& task, TensorView<B, T> dlogits = {}) const {
    PLM_CHECK(logits.rank() == 3 && logits.dim(0) == 1 && logits.dim(1) == packing.tokens() &&
                  labels.shape() == Shape({1, packing.tokens()}),
              "MultiTask: packed logits ", logits.shape(), " and labels ", labels.shape(), " must be (1, ", packing.tokens(),
              ", V) and (1, ", packing.tokens(), ")");
    PLM_CHECK(static_cast<index_t>(task.size()) == packing.sequences(), "MultiTask: ", task.size(), " task ids for ",
              packing.sequences(), " packed sequences");
    bounds_ = packing.offsets();
    return run(logits, labels, task, dlogits);
  }

 private:
  // Sequence b owns the flattened rows [bounds_[b], bounds_[b + 1]).
  MultiTaskResult run(ConstView<B, T> logits, ConstView<B, std::int32_t> labels, const std::vector<std::int32_t>& task,
                      TensorView<B, T> dlogits) const {
    const index_t Bn = static_cast<index_t>(task.size()), rows = logits.dim(0) * logits.dim(1);
    host_labels_.resize(static_cast<std::size_t>(rows));
    download(labels, host_labels_.data());
    MultiTaskResult r;
    r.tasks.resize(tasks_.size());
    for (std::size_t k = 0; k < tasks_.size(); ++k) r.tasks[k].name = tasks_[k].name, r.tasks[k].weight = tasks_[k].weight;
    const auto first = [&](index_t b) { return bounds_[static_cast<std::size_t>(b)]; };
    for (index_t b = 0; b < Bn; ++b) {
      const std::int32_t k = task[static_cast<std::size_t>(b)];
      PLM_CHECK(k >= 0 && k < static_cast<std::int32_t>(tasks_.size()), "MultiTask: sequence ", b, " has task id ", k, " of ",
                tasks_.size(), " tasks");
      for (index_t t = first(b); t < first(b + 1); ++t) r.tasks[static_cast<std::size_t>(k)].tokens += host_labels_[t] != ignore_;
    }
    host_scale_.assign(static_cast<std::size_t>(rows), T(0));
    for (index_t b = 0; b < Bn; ++b) {
      const auto& st = r.tasks[static_cast<std::size_t>(task[static_cast<std::size_t>(b)])];
      const T s = st.tokens ? static_cast<T>(st.weight / double(st.tokens)) : T(0);
      for (index_t t = first(b); t < first(b + 1); ++t) host_scale_[static_cast<std::size_t>(t)] = s;
    }
    scale_.resize(Shape{rows});
    row_loss_.resize(Shape{rows});
    row_correct_.resize(Shape{rows});
    upload(host_scale_.data(), scale_.view());
    CrossEntropyRows<B, T> per_row{scale_.cview(), row_loss_.view(), row_correct_.view()};
    const auto flat = [&](auto v, index_t cols) { return v.reshape(Shape{rows, cols}); };
    ops<B>::cross_entropy(flat(logits, logits.dim(2)), labels.reshape(Shape{rows}), ignore_, static_cast<T>(smoothing_),
                          dlogits.empty() ? TensorView<B, T>{} : flat(dlogits, logits.dim(2)), T(1), per_row);
    host_loss_.resize(static_cast<std::size_t>(rows));
    host_correct_.resize(static_cast<std::size_t>(rows));
    download(row_loss_.cview(), host_loss_.data());
    download(row_correct_.cview(), host_correct_.data());
    for (index_t b = 0; b < Bn; ++b) {
      auto& st = r.tasks[static_cast<std::size_t>(task[static_cast<std::size_t>(b)])];
      for (index_t t = first(b); t < first(b + 1); ++t) {
        const std::size_t i = static_cast<std::size_t>(t);
        const std::int32_t y = host_labels_[i];
        if (y == ignore_) continue;
        st.loss += static_cast<double>(host_loss_[i]);
        st.correct += host_correct_[i];
        if (static_cast<std::size_t>(y) < is_residue_.size() && is_residue_[static_cast<std::size_t>(y)]) {
          st.residue_tokens += 1;
          st.residue_correct += host_correct_[i];
        }
      }
    }
    for (auto& st : r.tasks) {
      if (st.tokens) st.loss /= double(st.tokens);
      r.total += st.tokens ? st.weight * st.loss : 0.0;
    }
    if (!std::isfinite(r.total)) {
      const bool finite_logits = ops<B>::all_finite(logits);
      PLM_FAIL("MultiTask: loss is ", r.total, " (logits ", logits.shape(),
               finite_logits ? " are finite; check the labels and weights)" : " contain NaN or infinity)");
    }
    return r;
  }

  std::vector<TaskSpec> tasks_;
  std::vector<std::uint8_t> is_residue_;
  std::int32_t ignore_;
  double smoothing_;
  mutable std::vector<std::int32_t> host_labels_;
  mutable std::vector<index_t> bounds_;
  mutable std::vector<T> host_scale_, host_loss_;
  mutable std::vector<std::uint8_t> host_correct_;
  mutable Tensor<B, T> scale_, row_loss_;
  mutable Tensor<B, std::uint8_t> row_correct_;
};

// Single-task forms, for loops that train one objective: every sequence of
// the batch is of that task.
template <class B, class T>
class SingleTask : public MultiTask<B, T> {
 public:
  SingleTask(std::string name, std::vector<std::int32_t> residue_ids, std::int32_t ignore_index = -100, double label_smoothing = 0.0)
      : MultiTask<B, T>({{std::move(name), 1.0}}, std::move(residue_ids), ignore_index, label_smoothing) {}
  TaskStats operator()(ConstView<B, T> logits, ConstView<B, std::int32_t> labels, TensorView<B, T> dlogits = {}) const {
    const std::vector<std::int32_t> task(static_cast<std::size_t>(logits.dim(0)), 0);
    return MultiTask<B, T>::operator()(logits, labels, task, dlogits).tasks[0];
  }
  // A packed batch: logits (1, N, V), labels (1, N).
  TaskStats operator()(ConstView<B, T> logits, ConstView<B, std::int32_t> labels, const Packing& packing,
                       TensorView<B, T> dlogits = {}) const {
    const std::vector<std::int32_t> task(static_cast<std::size_t>(packing.sequences()), 0);
    return MultiTask<B, T>::operator()(logits, labels, packing, task, dlogits).tasks[0];
  }
};

// [NLU] span denoising: targets are sentinel + residue pairs.
template <class B, class T>
struct SpanMLM : SingleTask<B, T> {
  explicit SpanMLM(std::vector<std::int32_t> residue_ids, std::int32_t ignore_index = -100, double label_smoothing = 0.0)
      : SingleTask<B, T>("nlu", std::move(residue_ids), ignore_index, label_smoothing) {}
};

// [S2S] completion: targets are the rest of the sequence.
template <class B, class T>
struct Completion : SingleTask<B, T> {
  explicit Completion(std::vector<std::int32_t> residue_ids, std::int32_t ignore_index = -100, double label_smoothing = 0.0)
      : SingleTask<B, T>("s2s", std::move(residue_ids), ignore_index, label_smoothing) {}
};

}  // namespace plm::objectives
