#pragma once
// Metrics as JSON Lines: one object per line, e.g.
//   {"step": 120, "split": "train", "task": "nlu", "loss": 2.31, "tokens_per_s": 5300}
// Lines are flushed as they are written, so a killed run keeps everything it
// logged. Opening a log to resume at step s drops the lines of steps after s
// (written after the checkpoint the run resumes from), so the file reads as one
// uninterrupted run.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/io/atomic_file.hpp"

namespace plm::train {

class MetricsLog {
 public:
  MetricsLog() = default;
  // Creates (or truncates) the log; with resume_step >= 0 keeps the existing
  // lines whose "step" is <= resume_step instead.
  explicit MetricsLog(const std::string& path, std::int64_t resume_step = -1) : path_(path) {
    if (resume_step >= 0) keep_until(resume_step);
    else io::write_file_atomically(path_, [](io::AtomicFile&) {});
    out_.open(path_, std::ios::app);
    PLM_CHECK(out_.good(), "MetricsLog: cannot open ", path_, " for appending");
  }

  void write(const nlohmann::json& record) {
    if (!out_.is_open()) return;
    out_ << record.dump() << '\n';
    out_.flush();
    PLM_CHECK(out_.good(), "MetricsLog: write to ", path_, " failed");
  }
  const std::string& path() const { return path_; }

  // All records of a log (for tests and plotting from C++).
  static std::vector<nlohmann::json> read(const std::string& path) {
    std::ifstream in(path);
    PLM_CHECK(in.good(), "MetricsLog: cannot read ", path);
    std::vector<nlohmann::json> rows;
    std::string line;
    std::uint64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty()) continue;
      try {
        rows.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception& e) {
        PLM_FAIL("MetricsLog: ", path, ":", n, ": not a JSON object (", e.what(), ")");
      }
    }
    return rows;
  }

 private:
  void keep_until(std::int64_t step) {
    std::string kept;
    std::ifstream in(path_);
    std::string line;
    while (in && std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        break;  // a line cut short by the kill: nothing after it is kept
      }
      if (j.contains("step") && j["step"].is_number_integer() && j["step"].get<std::int64_t>() > step) continue;
      kept += line + '\n';
    }
    io::write_file_atomically(path_, [&](io::AtomicFile& f) { f.write(kept); });
  }

  std::string path_;
  std::ofstream out_;
};

}  // namespace plm::train
