#pragma once
// Helpers for the tests against transformers' fixtures (tests/fixtures/make_*_fixtures.py):
// the hash the scripts draw weights from, and comparisons with their float64 references.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

#include "ops_test_support.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::test {

// The scripts' hash_uniform: splitmix64 of fnv1a(name) + i, top 53 bits, in [-1, 1).
inline double fixture_hash_uniform(const std::string& name, std::uint64_t i) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001B3ull;
  std::uint64_t z = h + i + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return 2.0 * (static_cast<double>(z >> 11) * 0x1.0p-53) - 1.0;
}

inline bool name_ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

// The scripts' hash_value for every parameter of ps: norm weights 1 + 0.2 u, everything else 0.1 u.
template <class T>
void fixture_hash_parameters(nn::ParameterSet<cpu, T>& ps) {
  for (index_t p = 0; p < ps.size(); ++p) {
    const std::string& name = ps.entry(p).name;
    const bool norm = name_ends_with(name, "LayerNorm.weight") || name_ends_with(name, "layer_norm.weight") ||
                      name_ends_with(name, "emb_layer_norm_after.weight");
    auto v = ps.value(p);
    for (index_t i = 0; i < v.numel(); ++i) {
      const double u = fixture_hash_uniform(name, static_cast<std::uint64_t>(i));
      v.data()[i] = static_cast<T>(norm ? 1.0 + 0.2 * u : 0.1 * u);
    }
  }
}

// max |a - b| / max |b|
template <class T>
double rel_to_largest(ConstView<cpu, T> a, ConstView<cpu, double> b) {
  REQUIRE(a.shape() == b.shape());
  double num = 0, den = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a.data()[i]) - b.data()[i]);
    num = std::isnan(d) || d > num ? (std::isnan(d) ? INFINITY : d) : num;
    den = std::max(den, std::abs(b.data()[i]));
  }
  return den > 0 ? num / den : num;
}

// Compares every gradient of ps with the fixture's grad.<name> or probe.<name>
// (a projection on a hash vector, with probe_abs.<name> its sum of absolute
// terms). A difference counts relative to the reference's own scale (its
// largest element, or probe_abs), but never to less than 1e-3 of the largest
// such scale in the model: a gradient that is zero in exact arithmetic (a key
// bias under softmax, whose scores it shifts by a constant per row) is
// rounding noise on both sides. Returns the worst; each parameter must be in
// the fixture.
template <class T>
double check_fixture_gradients(const nn::ParameterSet<cpu, T>& ps, const io::SafetensorsReader& ref, double tol) {
  double model_scale = 0;
  for (index_t p = 0; p < ps.size(); ++p) {
    const std::string& pname = ps.entry(p).name;
    if (ref.contains("grad." + pname)) {
      const auto g = ref.load<double>("grad." + pname);
      for (index_t i = 0; i < g.numel(); ++i) model_scale = std::max(model_scale, std::abs(g.data()[i]));
    } else if (ref.contains("probe_abs." + pname)) {
      model_scale = std::max(model_scale, ref.load<double>("probe_abs." + pname).data()[0]);
    }
  }
  const double floor = 1e-3 * model_scale;
  double worst = 0;
  for (index_t p = 0; p < ps.size(); ++p) {
    const std::string& pname = ps.entry(p).name;
    INFO("gradient of ", pname);
    const ConstView<cpu, T> g = ps.grad(p);
    double diff = 0, scale = 0;
    if (ref.contains("grad." + pname)) {
      const auto want = ref.load<double>("grad." + pname);
      REQUIRE(want.shape() == g.shape());
      for (index_t i = 0; i < g.numel(); ++i) {
        const double d = std::abs(static_cast<double>(g.data()[i]) - want.data()[i]);
        diff = std::isnan(d) ? INFINITY : std::max(diff, d);
        scale = std::max(scale, std::abs(want.data()[i]));
      }
    } else {
      REQUIRE(ref.contains("probe." + pname));
      double proj = 0;
      for (index_t i = 0; i < g.numel(); ++i)
        proj += static_cast<double>(g.data()[i]) * fixture_hash_uniform(pname + "#probe", static_cast<std::uint64_t>(i));
      const double d = std::abs(proj - ref.load<double>("probe." + pname).data()[0]);
      diff = std::isnan(d) ? INFINITY : d;
      scale = ref.load<double>("probe_abs." + pname).data()[0];
    }
    const double rel = diff / std::max({scale, floor, 1e-300});
    worst = std::max(worst, rel);
    CHECK(rel <= tol);
  }
  return worst;
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace plm::test
