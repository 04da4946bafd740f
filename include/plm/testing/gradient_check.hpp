#pragma once
// Finite-difference gradient checking, in double precision.
//
// Every layer and objective in plm goes through check_gradient in its tests;
// users can do the same for layers they write. Central differences with step
// eps have error O(eps^2); with eps = 1e-6 in double the agreement with a
// correct analytic gradient is typically 1e-8 relative or better.
#include <cmath>
#include <sstream>
#include <string>

#include "plm/backend/cpu/memory.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/tensor.hpp"

namespace plm::testing {

struct GradientCheck {
  double worst = 0;          // largest |analytic - numeric| / (atol + rtol * max(|analytic|, |numeric|))
  index_t worst_index = -1;  // flat index of that element
  double analytic = 0, numeric = 0;
  bool ok() const { return worst <= 1.0; }
  std::string report(const std::string& what) const {
    std::ostringstream os;
    os << what << ": worst element " << worst_index << " analytic " << analytic << " numeric " << numeric
       << " (error/tolerance " << worst << ")";
    return os.str();
  }
};

// Compares `analytic` (d loss / d x) with central differences of loss() obtained by
// perturbing each element of x in place (x is restored afterwards).
template <class Loss>
GradientCheck check_gradient(TensorView<cpu, double> x, TensorView<cpu, const double> analytic, Loss&& loss,
                             double eps = 1e-6, double rtol = 1e-6, double atol = 1e-8) {
  PLM_CHECK(x.shape() == analytic.shape(), "check_gradient: x ", x.shape(), " and its gradient ", analytic.shape(),
            " differ in shape");
  GradientCheck r;
  double* p = x.data();
  for (index_t i = 0; i < x.numel(); ++i) {
    const double saved = p[i];
    p[i] = saved + eps;
    const double lp = loss();
    p[i] = saved - eps;
    const double lm = loss();
    p[i] = saved;
    const double num = (lp - lm) / (2 * eps), an = analytic.data()[i];
    const double err = std::abs(an - num) / (atol + rtol * std::max(std::abs(an), std::abs(num)));
    if (!(err <= r.worst)) {  // also catches NaN
      r.worst = std::isnan(err) ? INFINITY : err;
      r.worst_index = i;
      r.analytic = an;
      r.numeric = num;
    }
  }
  return r;
}

// Fills x with draws from U(lo, hi) on Philox stream `stream` of `seed`.
template <class T>
void fill_uniform(TensorView<cpu, T> x, std::uint64_t seed, std::uint64_t stream, double lo = -1, double hi = 1) {
  Philox rng(seed, stream);
  for (index_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<T>(lo + (hi - lo) * rng.uniform());
}

// Sum of x * w: the scalar a backward test differentiates, so d/dx = w.
template <class T>
double dot(TensorView<cpu, const T> x, TensorView<cpu, const T> w) {
  PLM_CHECK(x.shape() == w.shape(), "dot: ", x.shape(), " vs ", w.shape());
  double s = 0;
  for (index_t i = 0; i < x.numel(); ++i) s += static_cast<double>(x.data()[i]) * static_cast<double>(w.data()[i]);
  return s;
}

}  // namespace plm::testing
