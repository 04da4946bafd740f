#pragma once
// Parse-time checks of command-line values, for CLI11's Option::check:
//
//   app.add_option("--heads", o.heads)->check(train::cli::in_range(1, 4096));
//   app.add_option("--lr", o.lr)->check(train::cli::positive());
//   app.add_option("--valid-fraction", f)->check(train::cli::fraction(train::cli::Interval::closed_open));  // [0, 1)
//   app.add_option("--schedule", s)->check(train::cli::one_of({"constant", "linear", "cosine", "inverse-sqrt"}));
//
// Each check is a function of the option's text returning "" for a value it
// accepts and the reason otherwise; CLI11 puts the option's name in front
// ("--heads: 0 is out of range [1, 4096]") and the program exits with its
// usage error. Unlike CLI::PositiveNumber and CLI::Range these refuse NaN and
// infinities, and refuse "-1" for an unsigned option, which CLI11 would wrap
// to 2^64 - 1. Text that is not a number at all is left to CLI11's own
// conversion, which names the option too.
//
// Needs only the standard library: the programs bring CLI11.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace plm::train::cli {

using Check = std::function<std::string(const std::string&)>;

namespace detail {
// The value of a number's text, or false when it is not one number.
inline bool parse_number(const std::string& text, long double& v) {
  if (text.empty()) return false;
  char* end = nullptr;
  v = std::strtold(text.c_str(), &end);
  return end == text.c_str() + text.size();
}
}  // namespace detail

// A value as a message shows it (6 significant digits for a double: 0.6, not to_string's 0.600000).
template <class T>
std::string str(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// A finite number in [lo, hi] (both inclusive), e.g. in_range(1, 4096).
template <class T>
Check in_range(T lo, T hi) {
  return [lo, hi](const std::string& text) -> std::string {
    long double v = 0;
    if (!detail::parse_number(text, v)) return {};
    if (std::isfinite(v) && v >= static_cast<long double>(lo) && v <= static_cast<long double>(hi)) return {};
    return text + " is out of range [" + str(lo) + ", " + str(hi) + "]";
  };
}

// A finite number >= lo (0 for counts where 0 means all / unlimited / off).
inline Check at_least(long double lo) {
  return [lo](const std::string& text) -> std::string {
    long double v = 0;
    if (!detail::parse_number(text, v)) return {};
    if (std::isfinite(v) && v >= lo) return {};
    return "must be >= " + str(lo) + ", got " + text;
  };
}
inline Check non_negative() { return at_least(0); }

// A finite number > 0.
inline Check positive() {
  return [](const std::string& text) -> std::string {
    long double v = 0;
    if (!detail::parse_number(text, v)) return {};
    if (std::isfinite(v) && v > 0) return {};
    return "must be positive, got " + text;
  };
}

// Any finite number (no NaN, no infinity).
inline Check finite() {
  return [](const std::string& text) -> std::string {
    long double v = 0;
    if (!detail::parse_number(text, v) || std::isfinite(v)) return {};
    return "must be a finite number, got " + text;
  };
}

// A share of 1: fraction() is (0, 1), fraction(Interval::closed_open) is [0, 1), ...
enum class Interval { open, closed_open, open_closed, closed };
inline Check fraction(Interval ends = Interval::open) {
  const bool zero = ends == Interval::closed_open || ends == Interval::closed, one = ends == Interval::open_closed || ends == Interval::closed;
  return [zero, one](const std::string& text) -> std::string {
    long double v = 0;
    if (!detail::parse_number(text, v)) return {};
    if (std::isfinite(v) && (zero ? v >= 0 : v > 0) && (one ? v <= 1 : v < 1)) return {};
    return text + " is outside " + (zero ? "[0" : "(0") + ", 1" + (one ? "]" : ")");
  };
}

// One of a fixed set of names: "unknown 'x' (a, b or c)", as the library's parsers say it.
inline Check one_of(std::vector<std::string> names) {
  return [names = std::move(names)](const std::string& text) -> std::string {
    for (const auto& n : names)
      if (text == n) return {};
    std::string list;
    for (std::size_t i = 0; i < names.size(); ++i) list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return "unknown '" + text + "' (" + list + ")";
  };
}

// One of the names, or else the path of an existing file, e.g. --vocab: a preset or a tokenizer file.
inline Check one_of_or_file(std::vector<std::string> names, bool or_directory = false) {
  return [names = std::move(names), or_directory](const std::string& text) -> std::string {
    for (const auto& n : names)
      if (text == n) return {};
    std::error_code ec;
    if (std::filesystem::is_regular_file(text, ec)) return {};
    if (or_directory && std::filesystem::is_directory(text, ec)) return {};
    std::string list;
    for (const auto& n : names) list += n + ", ";
    return "'" + text + "' is neither " + (names.size() > 1 ? "one of " : "") + list.substr(0, list.size() - 2) + " nor an existing file" +
           (or_directory ? " or directory" : "");
  };
}

}  // namespace plm::train::cli
