#pragma once
// Helpers shared by the tests: random tensors, tolerance-aware comparisons, expected errors, temporary files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <zlib.h>

#include "plm/plm.hpp"
#include "plm/testing/gradient_check.hpp"

namespace plm::test {

using O = ops<cpu>;

template <class T>
Tensor<cpu, T> random_tensor(Shape s, std::uint64_t stream, double lo = -1, double hi = 1) {
  Tensor<cpu, T> t(s);
  testing::fill_uniform<T>(t, 2024, stream, lo, hi);
  return t;
}

template <class T> constexpr double tol() { return std::is_same_v<T, float> ? 2e-5 : 1e-12; }

// Largest |a - b| / max(1, |b|) over all elements.
template <class T, class U>
double max_rel_diff(ConstView<cpu, T> a, ConstView<cpu, U> b) {
  REQUIRE(a.shape() == b.shape());
  double w = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const double x = static_cast<double>(a.data()[i]), y = static_cast<double>(b.data()[i]);
    const double d = std::abs(x - y) / std::max(1.0, std::abs(y));
    if (!(d <= w)) w = std::isnan(d) ? INFINITY : d;
  }
  return w;
}

// A finite-difference check that passed; on failure the report names the worst element.
inline void expect_ok(const testing::GradientCheck& r, const std::string& what) {
  INFO(r.report(what));
  CHECK(r.ok());
}

// Runs f, expecting a plm::Error whose message contains every one of `parts`.
template <class F, class... Parts>
void check_error(F&& f, const Parts&... parts) {
  std::string msg;
  try {
    f();
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO("message: ", msg);
  CHECK_FALSE(msg.empty());
  for (const std::string& part : {std::string(parts)...}) {
    INFO("expected to contain: ", part);
    CHECK(msg.find(part) != std::string::npos);
  }
}

// A fresh directory under the system temp directory, removed with its contents.
struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    static int counter = 0;
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    dir = std::filesystem::temp_directory_path() /
          ("plm_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(ticks));
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    return names;
  }
};

// Writes a test input file, plain or gzip-compressed.
inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}
inline void write_gzip(const std::string& path, const std::string& content) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

}  // namespace plm::test
