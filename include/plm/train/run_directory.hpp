#pragma once
// The output directory of a training run, guarded so that a run is never
// replaced by accident.
//
// A run directory holds what days of compute produced (checkpoints, metrics,
// models). Starting a program again on the same --out without --resume used to
// replace them silently. RunDirectory decides at start-up, before any work:
//   - fresh (neither flag): the directory may be new, empty or hold unrelated
//     files, but if it holds any of the run's own outputs the program stops
//     and says to add --resume or --overwrite;
//   - resume: the outputs are kept; the program continues from its checkpoint;
//   - overwrite: the earlier outputs are removed, but only when the program
//     calls remove_previous() — after its model and data are set up, so an
//     invalid option or a missing file still loses nothing.
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "plm/core/error.hpp"

namespace plm::train {

class RunDirectory {
 public:
  // dir: --out; outputs: the names the run writes inside it ("checkpoint.safetensors", "metrics.jsonl", "model").
  RunDirectory(std::string dir, std::vector<std::string> outputs, bool resume, bool overwrite)
      : dir_(std::move(dir)), resume_(resume), overwrite_(overwrite) {
    namespace fs = std::filesystem;
    PLM_CHECK(!dir_.empty(), "--out: empty path");
    PLM_CHECK(!(resume && overwrite), "--resume and --overwrite exclude each other: continue the run in ", dir_, ", or replace it");
    std::error_code ec;
    const auto st = fs::status(dir_, ec);
    if (fs::exists(st)) {
      PLM_CHECK(fs::is_directory(st), "--out ", dir_, " exists and is not a directory");
    } else {
      fs::create_directories(dir_, ec);
      PLM_CHECK(!ec, "--out ", dir_, ": cannot create the directory: ", ec.message());
    }
    for (const auto& name : outputs) {
      const fs::path p = fs::path(dir_) / name;
      if (fs::exists(fs::symlink_status(p, ec))) previous_.push_back(p.string());
    }
    if (!resume && !overwrite && !previous_.empty()) {
      std::string list;
      for (std::size_t i = 0; i < previous_.size(); ++i) list += (i ? ", " : "") + fs::path(previous_[i]).filename().string();
      PLM_FAIL("--out ", dir_, " holds an earlier run (", list, "); add --resume to continue it, --overwrite to replace it, or choose another --out");
    }
  }

  const std::string& path() const { return dir_; }
  std::string file(const std::string& name) const { return (std::filesystem::path(dir_) / name).string(); }
  bool resume() const { return resume_; }
  bool overwrite() const { return overwrite_; }
  // The run's outputs found at start-up.
  const std::vector<std::string>& previous() const { return previous_; }

  // With --overwrite: removes the earlier run's outputs (call once set-up has succeeded). No-op otherwise.
  void remove_previous() {
    if (!overwrite_) return;
    for (const auto& p : previous_) {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
      PLM_CHECK(!ec, "--overwrite: cannot remove ", p, ": ", ec.message());
    }
    previous_.clear();
  }

 private:
  std::string dir_;
  bool resume_, overwrite_;
  std::vector<std::string> previous_;
};

}  // namespace plm::train
