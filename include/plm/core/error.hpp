#pragma once
// plm::Error and the checks every public entry point uses.
//
// A failed check says what went wrong, in which operation, and where in the
// source the check sits, e.g.
//   plm: gemm: inner dimensions differ: A (2, 3) x B (4, 5) [ops.hpp:120]
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace plm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

inline const char* basename_of(const char* path) {
  const char* base = path;
  for (const char* p = path; *p; ++p)
    if (*p == '/' || *p == '\\') base = p + 1;
  return base;
}

template <class... Args>
[[noreturn]] void raise(const char* file, int line, Args&&... args) {
  throw Error(concat("plm: ", std::forward<Args>(args)..., " [", basename_of(file), ":", line, "]"));
}

}  // namespace detail
}  // namespace plm

// PLM_CHECK(cond, "op", ": message ", value, ...) throws plm::Error when cond is false.
// The message parts are only formatted on failure.
#define PLM_CHECK(cond, ...)                                      \
  do {                                                            \
    if (!(cond)) ::plm::detail::raise(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#define PLM_FAIL(...) ::plm::detail::raise(__FILE__, __LINE__, __VA_ARGS__)
