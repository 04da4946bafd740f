#pragma once
// Metrics as JSON Lines: one object per line, e.g.
//   {"step": 120, "split": "train", "task": "nlu", "loss": 2.31, "tokens_per_s": 5300}
// Each line goes to the file in one checked write() on an O_APPEND descriptor,
// so a killed run keeps everything it logged and a full disk is an error, not a
// silent gap. sync() makes the log durable (call it with each checkpoint).
//
// A log is never replaced by accident:
//   - a new log (resume_step < 0) refuses a file that already holds lines;
//   - resuming at step s validates every line first (a damaged line is an
//     error naming file and line; only a last line without its newline, cut by
//     a kill or a crash, is dropped, with a note), then drops the lines of steps
//     after s, written after the checkpoint the run resumes from, so the file
//     reads as one uninterrupted run. The file is rewritten (atomically) only
//     when something is dropped. Open the log only after the checkpoint has
//     been loaded and checked.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/io/atomic_file.hpp"

namespace plm::train {

class MetricsLog {
 public:
  MetricsLog() = default;
  // A new log at `path`, or with resume_step >= 0 the existing one continued after that step.
  explicit MetricsLog(const std::string& path, std::int64_t resume_step = -1) : path_(path) {
    (void)io::detail::regular_write_target(path_);  // devices, directories, FIFOs refused
    if (resume_step >= 0) {
      keep_until(resume_step);
    } else {
      std::error_code ec;
      PLM_CHECK(!std::filesystem::exists(path_, ec) || std::filesystem::file_size(path_, ec) == 0, "MetricsLog: ", path_,
                " already holds a log; resume it (a resume step) or remove it first");
    }
    do {
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) fail_errno("cannot open for appending");
  }
  ~MetricsLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  MetricsLog(MetricsLog&& o) noexcept : path_(std::move(o.path_)), fd_(o.fd_) { o.fd_ = -1; }
  MetricsLog& operator=(MetricsLog&& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(fd_, o.fd_);
    return *this;
  }

  void write(const nlohmann::json& record) {
    if (fd_ < 0) return;
    const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
    const char* p = line.data();
    std::size_t n = line.size();
    while (n > 0) {
      const ::ssize_t put = ::write(fd_, p, n);
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) fail_errno("write failed");
      p += put, n -= static_cast<std::size_t>(put);
    }
  }
  // Flushes the log to disk (fdatasync).
  void sync() {
    if (fd_ >= 0 && ::fdatasync(fd_) != 0) fail_errno("fdatasync failed");
  }
  const std::string& path() const { return path_; }

  // All records of a log (for tests and plotting from C++); a damaged line is an error naming file and line.
  static std::vector<nlohmann::json> read(const std::string& path) {
    std::vector<nlohmann::json> rows;
    for (auto& l : parse_lines(path, false).lines) rows.push_back(std::move(l.record));
    return rows;
  }

 private:
  struct Line {
    std::string text;
    nlohmann::json record;
  };
  struct Parsed {
    std::vector<Line> lines;
    bool torn_tail = false;  // a last line without newline that does not parse
    bool unterminated = false;  // the file does not end with a newline
  };

  // Every line of `path` as a JSON object; with allow_torn_tail the last line may be cut short.
  static Parsed parse_lines(const std::string& path, bool allow_torn_tail) {
    const io::detail::InputFile in(path, "MetricsLog");
    const std::string text = in.read_all();
    Parsed out;
    out.unterminated = !text.empty() && text.back() != '\n';
    std::size_t begin = 0, line_no = 0;
    const JsonLimits limits{std::size_t{1} << 20, 16};
    while (begin < text.size()) {
      ++line_no;
      std::size_t end = text.find('\n', begin);
      const bool terminated = end != std::string::npos;
      if (!terminated) end = text.size();
      const std::string line = text.substr(begin, end - begin);
      begin = end + 1;
      if (line.empty() || line == "\r") continue;
      try {
        nlohmann::json j = parse_json(line, "MetricsLog", path + ":" + std::to_string(line_no), limits);
        PLM_CHECK(j.is_object(), "MetricsLog: ", path, ":", line_no, ": not a JSON object but ", j.type_name());
        out.lines.push_back({line, std::move(j)});
      } catch (const Error&) {
        if (allow_torn_tail && !terminated) {
          out.torn_tail = true;
          break;
        }
        throw;
      }
    }
    return out;
  }

  void keep_until(std::int64_t step) {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return;
    const Parsed p = parse_lines(path_, true);
    std::string kept;
    // Rewritten also when the last line is whole but lacks its newline (found by
    // tests/fuzz): the next line written would otherwise join it.
    bool dropped = p.torn_tail || p.unterminated;
    for (const auto& l : p.lines) {
      const auto it = l.record.find("step");
      if (it != l.record.end() && it->is_number_integer() && it->get<std::int64_t>() > step) {
        dropped = true;
        continue;
      }
      kept += l.text + '\n';
    }
    if (p.torn_tail) std::fprintf(stderr, "MetricsLog: %s: dropped a last line cut short (the run was interrupted while writing it)\n", path_.c_str());
    if (dropped) io::write_file_atomically(path_, [&](io::AtomicFile& f) { f.write(kept); });
  }

  [[noreturn]] void fail_errno(const char* what) const {
    const int err = errno;
    PLM_FAIL("MetricsLog: ", path_, ": ", what, ": ", io::detail::errno_message(err));
  }

  std::string path_;
  int fd_ = -1;
};

}  // namespace plm::train
