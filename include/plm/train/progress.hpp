#pragma once
// A progress bar for training loops: step / total, a bar, the metrics the loop
// passes in, throughput (with a unit, e.g. tokens/s) and the time left.
//
//   ProgressBar bar(total_steps, "tok/s");
//   bar.update(step, {{"loss", loss}}, tokens_this_step);
//
// On a terminal the line is redrawn in place at most every `min_interval`
// seconds; when stderr is not a terminal (a log file, CI) a full line is
// printed every `log_interval` seconds instead, so logs stay readable.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace plm::train {

inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

class ProgressBar {
 public:
  using clock = std::chrono::steady_clock;

  // total: the last step; unit: what `work` counts in update() (e.g. "tok/s").
  // first_step: where a resumed run starts, so the rate and ETA cover only this run.
  ProgressBar(std::int64_t total, std::string unit = "it/s", std::int64_t first_step = 0, std::FILE* out = stderr)
      : total_(total), unit_(std::move(unit)), first_(first_step), out_(out), tty_(isatty(fileno(out)) != 0),
        start_(clock::now()), last_print_(start_ - std::chrono::hours(1)) {}

  // When the work turns out larger than announced (e.g. proteins cut into windows).
  void set_total(std::int64_t total) { total_ = total; }

  void set_intervals(double min_interval, double log_interval) {
    min_interval_ = min_interval;
    log_interval_ = log_interval;
  }

  // Reports that `step` is done; work: units of work done in this step (tokens).
  void update(std::int64_t step, const std::vector<std::pair<std::string, double>>& metrics = {}, double work = 1.0) {
    work_ += work;
    const auto now = clock::now();
    const double since = std::chrono::duration<double>(now - last_print_).count();
    if (step < total_ && since < (tty_ ? min_interval_ : log_interval_)) return;
    last_print_ = now;
    std::fputs(render(step, metrics).c_str(), out_);
    std::fflush(out_);
  }

  // Ends the bar's line (call once after the loop).
  void finish() {
    if (tty_) std::fputc('\n', out_);
    std::fflush(out_);
  }

  // The text of one report, without redraw control characters (tested).
  std::string line(std::int64_t step, const std::vector<std::pair<std::string, double>>& metrics) const {
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    const double done = static_cast<double>(step - first_), left = static_cast<double>(total_ - step);
    const double rate = elapsed > 0 ? work_ / elapsed : 0.0;
    const double eta = done > 0 ? elapsed / done * left : NAN;
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min(1.0, static_cast<double>(step) / static_cast<double>(total_))) : 0;
    std::string s = "[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
    char buf[256];
    std::snprintf(buf, sizeof buf, "%lld/%lld", static_cast<long long>(step), static_cast<long long>(total_));
    s += buf;
    for (const auto& [k, v] : metrics) {
      std::snprintf(buf, sizeof buf, "  %s %.4g", k.c_str(), v);
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "  %.4g %s  ETA %s", rate, unit_.c_str(), format_duration(eta).c_str());
    return s + buf;
  }

 private:
  std::string render(std::int64_t step, const std::vector<std::pair<std::string, double>>& metrics) const {
    return tty_ ? "\r\033[K" + line(step, metrics) : line(step, metrics) + "\n";
  }

  std::int64_t total_;
  std::string unit_;
  std::int64_t first_;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_, last_print_;
  double work_ = 0, min_interval_ = 0.1, log_interval_ = 10.0;
};

}  // namespace plm::train
