#pragma once
// Losses for a regression head (ReadoutHead with K = 1, or K targets per
// protein): mean squared error and Huber, over the targets that are present.
// A NaN target marks a missing value (common in assay tables) and is skipped;
// a NaN or infinite prediction is an error naming its row and column.
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/backend/ops.hpp"

namespace plm::objectives {

struct RegressionResult {
  double loss = 0;            // mean over counted targets
  double mae = 0;             // mean absolute error over them
  std::int64_t count = 0;     // targets present
};

// pred (N, K) and target (N, K). delta <= 0: squared error (y - t)^2;
// delta > 0: Huber, 0.5 (y - t)^2 within delta, delta (|y - t| - 0.5 delta) beyond.
// dpred, when given, is written with weight * d loss / d pred (0 for missing targets).
template <class B, class T>
RegressionResult regression_loss(ConstView<B, T> pred, ConstView<B, T> target, double delta = 0, double weight = 1.0,
                                 TensorView<B, T> dpred = {}) {
  PLM_CHECK(pred.rank() == 2 && pred.shape() == target.shape(), "regression_loss: pred ", pred.shape(), " and target ", target.shape(),
            " must both be (N, K)");
  const index_t N = pred.dim(0), K = pred.dim(1);
  std::vector<T> p(static_cast<std::size_t>(N * K)), t(p.size()), g(p.size(), T(0));
  download(pred, p.data());
  download(target, t.data());
  RegressionResult r;
  for (std::size_t i = 0; i < p.size(); ++i) {
    PLM_CHECK(std::isfinite(static_cast<double>(p[i])), "regression_loss: prediction (", index_t(i) / K, ", ", index_t(i) % K, ") is ",
              static_cast<double>(p[i]));
    if (std::isnan(static_cast<double>(t[i]))) continue;
    PLM_CHECK(std::isfinite(static_cast<double>(t[i])), "regression_loss: target (", index_t(i) / K, ", ", index_t(i) % K, ") is ",
              static_cast<double>(t[i]));
    ++r.count;
  }
  const double per = r.count ? weight / double(r.count) : 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (std::isnan(static_cast<double>(t[i]))) continue;
    const double e = double(p[i]) - double(t[i]), a = std::abs(e);
    double v = e * e, d = 2 * e;
    if (delta > 0) {
      v = a <= delta ? 0.5 * e * e : delta * (a - 0.5 * delta);
      d = a <= delta ? e : (e > 0 ? delta : -delta);
    }
    r.loss += v;
    r.mae += a;
    g[i] = static_cast<T>(per * d);
  }
  if (r.count) r.loss /= double(r.count), r.mae /= double(r.count);
  if (!dpred.empty()) {
    PLM_CHECK(dpred.shape() == pred.shape(), "regression_loss: dpred ", dpred.shape(), " must match pred ", pred.shape());
    upload(g.data(), dpred);
  }
  return r;
}

}  // namespace plm::objectives
