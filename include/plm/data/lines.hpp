#pragma once
// Line-by-line reading with a bound: a table or vocabulary line longer than the
// bound is an error naming file and line, so a hostile file of one 10 GB line
// cannot make std::getline allocate without limit.
#include <cstddef>
#include <istream>
#include <string>

#include "plm/core/error.hpp"

namespace plm::data::detail {

// Reads the next line (without '\n') into `line`; false at the end of the input.
// `what` and `path` prefix the error; `line_no` is the number of this line.
inline bool read_bounded_line(std::istream& in, std::string& line, std::size_t max_bytes, const char* what, const std::string& path,
                              std::size_t line_no) {
  line.clear();
  std::streambuf* buf = in.rdbuf();
  bool any = false;
  for (;;) {
    const int c = buf->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n') return true;
    PLM_CHECK(line.size() < max_bytes, what, ": ", path, ":", line_no, ": line longer than ", max_bytes,
              " bytes (is this the right file?)");
    line.push_back(static_cast<char>(c));
  }
}

}  // namespace plm::data::detail
