#pragma once
// Classification metrics from a confusion matrix: accuracy, per-class
// precision / recall / F1 and macro-F1 (the unweighted mean of F1 over the
// classes present in the truth or the predictions, as scikit-learn's default).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"

namespace plm::train {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(std::int32_t classes = 0) : k_(classes), m_(static_cast<std::size_t>(classes) * static_cast<std::size_t>(classes), 0) {
    PLM_CHECK(classes >= 0, "ConfusionMatrix: ", classes, " classes");
  }
  std::int32_t classes() const { return k_; }

  void add(std::int32_t truth, std::int32_t predicted) {
    PLM_CHECK(truth >= 0 && truth < k_ && predicted >= 0 && predicted < k_, "ConfusionMatrix: class pair (", truth, ", ", predicted,
              ") outside 0..", k_ - 1);
    ++m_[at(truth, predicted)];
  }
  // n more proteins of class `truth` predicted as `predicted` (merging matrices, e.g. the ranks' of a job).
  void add(std::int32_t truth, std::int32_t predicted, std::int64_t n) {
    PLM_CHECK(truth >= 0 && truth < k_ && predicted >= 0 && predicted < k_ && n >= 0, "ConfusionMatrix: class pair (", truth, ", ",
              predicted, ") outside 0..", k_ - 1, " or count ", n, " negative");
    m_[at(truth, predicted)] += n;
  }
  // Row = truth, column = prediction.
  std::int64_t count(std::int32_t truth, std::int32_t predicted) const { return m_[at(truth, predicted)]; }
  std::int64_t total() const {
    std::int64_t n = 0;
    for (auto c : m_) n += c;
    return n;
  }
  double accuracy() const {
    std::int64_t hit = 0;
    for (std::int32_t c = 0; c < k_; ++c) hit += count(c, c);
    const std::int64_t n = total();
    return n ? double(hit) / double(n) : 0.0;
  }
  std::int64_t support(std::int32_t c) const {  // true members of class c
    std::int64_t n = 0;
    for (std::int32_t p = 0; p < k_; ++p) n += count(c, p);
    return n;
  }
  std::int64_t predicted(std::int32_t c) const {
    std::int64_t n = 0;
    for (std::int32_t t = 0; t < k_; ++t) n += count(t, c);
    return n;
  }
  double precision(std::int32_t c) const { return predicted(c) ? double(count(c, c)) / double(predicted(c)) : 0.0; }
  double recall(std::int32_t c) const { return support(c) ? double(count(c, c)) / double(support(c)) : 0.0; }
  double f1(std::int32_t c) const {
    const std::int64_t d = support(c) + predicted(c);  // 2TP + FP + FN
    return d ? 2.0 * double(count(c, c)) / double(d) : 0.0;
  }
  double macro_f1() const {
    double s = 0;
    int n = 0;
    for (std::int32_t c = 0; c < k_; ++c)
      if (support(c) + predicted(c) > 0) s += f1(c), ++n;
    return n ? s / n : 0.0;
  }
  // {"accuracy", "macro_f1", "per_class": [{"class", "support", "precision", "recall", "f1"}], "matrix"}
  nlohmann::json to_json(const std::vector<std::string>& names = {}) const {
    nlohmann::json per = nlohmann::json::array(), rows = nlohmann::json::array();
    for (std::int32_t c = 0; c < k_; ++c) {
      per.push_back({{"class", c < static_cast<std::int32_t>(names.size()) ? names[static_cast<std::size_t>(c)] : std::to_string(c)},
                     {"support", support(c)}, {"precision", precision(c)}, {"recall", recall(c)}, {"f1", f1(c)}});
      std::vector<std::int64_t> r;
      for (std::int32_t p = 0; p < k_; ++p) r.push_back(count(c, p));
      rows.push_back(r);
    }
    return {{"accuracy", accuracy()}, {"macro_f1", macro_f1()}, {"n", total()}, {"per_class", per}, {"matrix", rows}};
  }

 private:
  std::size_t at(std::int32_t t, std::int32_t p) const { return static_cast<std::size_t>(t) * static_cast<std::size_t>(k_) + static_cast<std::size_t>(p); }
  std::int32_t k_;
  std::vector<std::int64_t> m_;
};

// A classifier's figures over a set of proteins.
struct ClassifierEvaluation {
  double loss = 0;  // mean cross-entropy over the proteins
  ConfusionMatrix cm;
  std::vector<double> batch_losses;  // per batch: the sum of its proteins' losses (0 for another rank's batches)
  std::size_t proteins = 0;          // proteins of the whole set
};

}  // namespace plm::train
