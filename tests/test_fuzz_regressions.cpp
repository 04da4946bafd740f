// Replays the fuzz corpora through the fuzz harnesses (tests/fuzz/harnesses.hpp,
// docs/fuzzing.md), so the normal build checks every committed input without
// libFuzzer: the seeds under tests/fuzz/corpus/<harness>/ must be accepted by
// their parser (a refused seed fuzzes nothing behind the first check), and the
// crashers kept under tests/fuzz/regressions/<harness>/ must now end in a
// plm::Error or be accepted, never in another exception or a sanitizer report.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "fuzz/harnesses.hpp"

#ifndef PLM_FUZZ_DIR
#error "PLM_FUZZ_DIR must name tests/fuzz"
#endif

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs one input; returns the error the primary parse raised (empty: accepted).
std::string replay(const plm::fuzz::Harness& h, const fs::path& file) {
  const std::vector<std::uint8_t> data = bytes_of(file);
  INFO(h.name, ": ", file.string());
  std::string error;
  CHECK_NOTHROW([&] {
    h.run(data.data(), data.size());
    error = plm::fuzz::first_error();
  }());
  return error;
}

}  // namespace

TEST_CASE("fuzz: every corpus and regression folder belongs to a harness, and every harness has seeds") {
  std::set<std::string> names;
  for (const auto& h : plm::fuzz::harnesses()) {
    names.insert(h.name);
    INFO("harness ", h.name);
    CHECK(!files_in(fs::path(PLM_FUZZ_DIR) / "corpus" / h.name).empty());
  }
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path root = fs::path(PLM_FUZZ_DIR) / kind;
    if (!fs::is_directory(root)) continue;
    for (const auto& e : fs::directory_iterator(root)) {
      INFO(e.path().string());
      CHECK((e.is_directory() && names.count(e.path().filename().string()) == 1));
    }
  }
}

TEST_CASE("fuzz: the seeds are accepted by their parsers") {
  std::size_t n = 0;
  for (const auto& h : plm::fuzz::harnesses())
    for (const fs::path& f : files_in(fs::path(PLM_FUZZ_DIR) / "corpus" / h.name)) {
      const std::string error = replay(h, f);
      INFO(h.name, ": seed ", f.string(), " refused: ", error);
      CHECK(error.empty());
      ++n;
    }
  CHECK(n >= plm::fuzz::harnesses().size());
}

TEST_CASE("fuzz: the regression inputs end in a plm::Error or are accepted") {
  for (const auto& h : plm::fuzz::harnesses())
    for (const fs::path& f : files_in(fs::path(PLM_FUZZ_DIR) / "regressions" / h.name)) (void)replay(h, f);
}

TEST_CASE("fuzz: the harnesses survive trivial inputs") {
  const std::uint8_t nothing = 0;
  const std::vector<std::uint8_t> junk = {0x1f, 0x8b, 0x08, 0x00, '>', '\n', '{', '[', 0xff, 0x00, '\t', '%'};
  for (const auto& h : plm::fuzz::harnesses()) {
    INFO("harness ", h.name);
    CHECK_NOTHROW(h.run(&nothing, 0));
    for (std::size_t n = 1; n <= junk.size(); ++n) CHECK_NOTHROW(h.run(junk.data(), n));
  }
}
