#pragma once
// Bounded JSON parsing for every file plm reads from strangers (config.json,
// tokenizer.json, safetensors headers, training-state metadata).
//
// nlohmann::json parses and destroys values recursively on some paths, so a
// 200 KB file of 100,000 nested brackets can overflow the stack. parse_json
// refuses such input before nlohmann sees it: the size is checked first, then a
// linear scan (strings and escapes skipped) bounds the nesting depth. Real
// configs and tokenizers nest a few levels; the limit is far above that.
// Every error is a plm::Error naming the file and the byte.
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"

namespace plm {

struct JsonLimits {
  std::size_t max_bytes = std::size_t{64} << 20;  // 64 MiB: a large multilingual tokenizer.json is ~20 MB
  int max_depth = 64;
};

namespace detail {

// The byte offset where nesting first exceeds max_depth, or npos.
inline std::size_t json_depth_violation(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::string_view::npos;
}

}  // namespace detail

// A JSON value for an error message, cut short: a hostile value can be megabytes.
inline std::string json_excerpt(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// Parses `text`, the contents of `source` (a path, or "path: metadata key"); `what`
// prefixes every error ("config", "Vocabulary", "safetensors").
inline nlohmann::json parse_json(std::string_view text, const std::string& what, const std::string& source, JsonLimits limits = {}) {
  PLM_CHECK(text.size() <= limits.max_bytes, what, ": ", source, ": ", text.size(), " bytes of JSON exceed the limit of ", limits.max_bytes,
            " bytes");
  const std::size_t deep = detail::json_depth_violation(text, limits.max_depth);
  PLM_CHECK(deep == std::string_view::npos, what, ": ", source, ": JSON nested deeper than ", limits.max_depth, " levels at byte ", deep);
  // nlohmann::json stops at a NUL byte and ignores the rest; JSON text never holds one (found by tests/fuzz).
  const std::size_t nul = text.find('\0');
  PLM_CHECK(nul == std::string_view::npos, what, ": ", source, ": not valid JSON (byte ", nul, "): a NUL byte");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    PLM_FAIL(what, ": ", source, ": not valid JSON (byte ", e.byte, "): ", e.what());
  } catch (const nlohmann::json::exception& e) {
    PLM_FAIL(what, ": ", source, ": not valid JSON: ", e.what());
  }
}

}  // namespace plm
