#pragma once
// plm::data::Vocabulary: the token <-> id map of a protein language model, and
// the encoding of amino-acid sequences into ids (one token per residue).
//
// A vocabulary is a list of token strings, id = index, plus the names of its
// special tokens (`Specials`): pad, eos and unk are required; the task prefixes
// "[NLU]" / "[S2S]" and the T5 sentinels "<extra_id_N>" are optional. It comes
// from a preset (Ankh, Ankh3), from a Hugging Face tokenizer.json, from a
// one-token-per-line vocab file, or from a user's own token list.
//
// Residue letters: the token of letter L is the token "L", or, only when there
// is no bare "L", the SentencePiece piece "\u2581L" ("▁L", word-boundary
// prefix). That covers both WordLevel-style and Unigram tokenizers of one
// piece per residue; a tokenizer that merges residues into multi-letter pieces
// is not reproduced by encode() (plm encodes one token per residue).
//
// Encoding follows the Ankh family: one token per residue, eos appended, no
// BOS. Ids are std::int32_t throughout (what the embedding gather consumes).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/data/lines.hpp"

namespace plm::data {

// The strings that name the special tokens. pad, eos and unk must be in the
// vocabulary; nlu / s2s are used when present; sentinels are every token
// `sentinel_prefix + N + sentinel_suffix` (N = 0, 1, ... without gaps).
struct Specials {
  std::string pad = "<pad>";
  std::string eos = "</s>";
  std::string unk = "<unk>";
  std::string nlu = "[NLU]";
  std::string s2s = "[S2S]";
  std::string sentinel_prefix = "<extra_id_";
  std::string sentinel_suffix = ">";
};

// Lowercase residue letters: upper-case them (FASTA files from some sources are
// lowercase, or mark low-complexity regions in lowercase), or refuse them.
enum class LowercasePolicy { uppercase, error };

// Rare residues X, B, Z, U, O (and J, the one other letter that is not one of
// the 20 standard amino acids): `keep` maps them to their own token when the
// vocabulary has one and to unk otherwise; `unk` always maps them to unk;
// `error` refuses them.
enum class RarePolicy { keep, unk, error };

// The policy's name on a command line or in a settings record: keep, unk, error.
inline const char* policy_name(RarePolicy p) {
  switch (p) {
    case RarePolicy::keep: return "keep";
    case RarePolicy::unk: return "unk";
    case RarePolicy::error: return "error";
  }
  PLM_FAIL("policy_name: invalid RarePolicy value ", static_cast<int>(p));
}

// Inverse of policy_name; an unknown name is an error that names it and lists the valid ones.
inline RarePolicy parse_rare_policy(const std::string& name) {
  for (RarePolicy p : {RarePolicy::keep, RarePolicy::unk, RarePolicy::error})
    if (name == policy_name(p)) return p;
  PLM_FAIL("rare-residue policy '", name, "' is not one of: keep, unk, error");
}

struct EncodeOptions {
  bool append_eos = true;  // Ankh appends </s>; there is no BOS
  LowercasePolicy lowercase = LowercasePolicy::uppercase;
  RarePolicy rare = RarePolicy::keep;
};

namespace detail {

inline constexpr std::string_view standard_residues = "ACDEFGHIKLMNPQRSTVWY";
inline constexpr std::string_view rare_residues = "XBZUO";
// SentencePiece's word-boundary marker U+2581 in UTF-8.
inline constexpr std::string_view sentencepiece_space = "\xE2\x96\x81";

inline bool is_standard_residue(char c) { return standard_residues.find(c) != std::string_view::npos; }
inline bool is_amino_acid_letter(char c) {
  return is_standard_residue(c) || rare_residues.find(c) != std::string_view::npos;
}

// A character for an error message: 'A' when printable ASCII, else its byte value.
inline std::string describe_char(unsigned char c) {
  if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
  static const char* hex = "0123456789ABCDEF";
  std::string s = "byte 0x";
  s += hex[c >> 4];
  s += hex[c & 15];
  if (c == '\t') s += " (tab)";
  else if (c == '\r') s += " (carriage return)";
  else if (c == '\n') s += " (newline)";
  else if (c >= 0x80) s += " (non-ASCII)";
  return s;
}

inline std::string in_context(std::string_view context) {
  return context.empty() ? std::string() : " in " + std::string(context);
}

// N when `token` is prefix + decimal N + suffix (no sign, no leading zeros), else -1.
inline std::int64_t sentinel_number(const std::string& token, const std::string& prefix, const std::string& suffix) {
  if (prefix.empty() && suffix.empty()) return -1;
  if (token.size() <= prefix.size() + suffix.size()) return -1;
  if (token.compare(0, prefix.size(), prefix) != 0) return -1;
  if (token.compare(token.size() - suffix.size(), suffix.size(), suffix) != 0) return -1;
  const std::string_view digits(token.data() + prefix.size(), token.size() - prefix.size() - suffix.size());
  if (digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) return -1;
  std::int64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace detail

class Vocabulary {
 public:
  // tokens[i] is the token of id i. Errors: an empty token, a token listed
  // twice, a missing pad/eos/unk, sentinels with a gap in their numbering.
  explicit Vocabulary(std::vector<std::string> tokens, Specials specials = {})
      : Vocabulary(std::move(tokens), std::move(specials), "Vocabulary") {}

  // Ankh (ElnaggarLab/ankh-base, ankh-large; 144 ids). Confirmed: <pad> 0,
  // </s> 1, <unk> 2, A3 L4 G5 V6 S7 R8 E9 D10 T11 I12 P13 K14 F15 Q16 N17 Y18
  // M19 H20 W21 C22. Not confirmed, plm's choice (load the real tokenizer.json
  // to match a published checkpoint): X23 B24 Z25 U26 O27, and the 116
  // sentinels in ids 28..143 laid out as Hugging Face's T5Tokenizer lays out
  // extra ids, at the end in reverse: <extra_id_N> = 143 - N. No task tokens.
  static Vocabulary ankh() {
    std::vector<std::string> t = {"<pad>", "</s>", "<unk>"};
    for (char c : std::string_view("ALGVSREDTIPKFQNYMHWC")) t.emplace_back(1, c);
    for (char c : detail::rare_residues) t.emplace_back(1, c);
    append_sentinels_reversed(t, 144);
    return Vocabulary(std::move(t));
  }

  // Ankh3 (ElnaggarLab/ankh3-large, ankh3-xl; SentencePiece, 256 ids).
  // Confirmed: <pad> 0, </s> 1, <unk> 2, L7 A8 G9 S10 V11 E12 R13 T14 I15 D16
  // P17 K18 N19 F20 Q21 Y22 H23 M24 C25 W26, and that [NLU], [S2S] and
  // <extra_id_N> exist. Not confirmed, plm's choice (load the real
  // tokenizer.json to match a published checkpoint): [NLU] 3, [S2S] 4, two
  // placeholders <plm_reserved_5> and <plm_reserved_6>, X27 B28 Z29 U30 O31,
  // and 224 sentinels in ids 32..255 as T5Tokenizer lays them out:
  // <extra_id_N> = 255 - N.
  static Vocabulary ankh3() {
    std::vector<std::string> t = {"<pad>", "</s>", "<unk>", "[NLU]", "[S2S]", "<plm_reserved_5>", "<plm_reserved_6>"};
    for (char c : std::string_view("LAGSVERTIDPKNFQYHMCW")) t.emplace_back(1, c);
    for (char c : detail::rare_residues) t.emplace_back(1, c);
    append_sentinels_reversed(t, 256);
    return Vocabulary(std::move(t));
  }

  // By name or file, as command lines take it: "ankh3", "ankh", a Hugging
  // Face tokenizer file (*.json) or a vocabulary file (one token per line).
  static Vocabulary load(const std::string& spec) {
    if (spec == "ankh3") return ankh3();
    if (spec == "ankh") return ankh();
    if (spec.size() > 5 && spec.compare(spec.size() - 5, 5, ".json") == 0) return from_tokenizer_json(spec);
    return from_vocab_file(spec);
  }

  // A Hugging Face tokenizers file. `model.vocab` is either an object
  // {token: id} (WordLevel, BPE, WordPiece) or an array of [piece, score]
  // pairs (Unigram, i.e. SentencePiece; id = index); `added_tokens`
  // [{"id": .., "content": ..}] adds or repeats tokens (a repeat must name the
  // same token). Ids must cover 0..max without a hole.
  static Vocabulary from_tokenizer_json(const std::string& path, Specials specials = {}) {
    return from_tokenizer_json(read_json(path), path, std::move(specials));
  }
  // The same from a tokenizer.json already parsed (`path` names it in errors).
  static Vocabulary from_tokenizer_json(const nlohmann::json& j, const std::string& path, Specials specials) {
    if (!j.is_object() || !j.contains("model") || !j.at("model").is_object() || !j.at("model").contains("vocab"))
      PLM_FAIL("Vocabulary: ", path, ": not a tokenizer.json: no \"model\": {\"vocab\": ...}");
    const nlohmann::json& vocab = j.at("model").at("vocab");
    // Ids run 0..n-1 without a hole, so no id can reach the number of entries listed: a bound
    // known before anything is allocated (a 35-byte file with id 10^7 must not allocate).
    const nlohmann::json* added_tokens = j.contains("added_tokens") ? &j.at("added_tokens") : nullptr;
    const std::size_t listed = vocab.size() + (added_tokens && added_tokens->is_array() ? added_tokens->size() : 0);
    IdTable table(path, static_cast<std::int64_t>(listed));
    if (vocab.is_object()) {
      for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer())
          PLM_FAIL("Vocabulary: ", path, ": model.vocab[\"", it.key(), "\"] is ", json_excerpt(it.value()), ", not an integer id");
        table.put(it.value().get<std::int64_t>(), it.key(), "model.vocab", false);
      }
    } else if (vocab.is_array()) {
      for (std::size_t i = 0; i < vocab.size(); ++i) {
        const nlohmann::json& e = vocab[i];
        const nlohmann::json* piece = &e;
        if (e.is_array() && !e.empty()) piece = &e[0];
        if (!piece->is_string())
          PLM_FAIL("Vocabulary: ", path, ": model.vocab[", i, "] is ", json_excerpt(e), ", not a [piece, score] pair");
        table.put(static_cast<std::int64_t>(i), piece->get<std::string>(), "model.vocab", false);
      }
    } else {
      PLM_FAIL("Vocabulary: ", path, ": model.vocab is neither an object {token: id} nor an array of [piece, score]");
    }
    if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
      const nlohmann::json& added = j.at("added_tokens");
      if (!added.is_array()) PLM_FAIL("Vocabulary: ", path, ": added_tokens is not an array");
      for (std::size_t i = 0; i < added.size(); ++i) {
        const nlohmann::json& a = added[i];
        if (!a.is_object() || !a.contains("id") || !a.at("id").is_number_integer() || !a.contains("content") ||
            !a.at("content").is_string())
          PLM_FAIL("Vocabulary: ", path, ": added_tokens[", i, "] is ", json_excerpt(a), ", not {\"id\": int, \"content\": string}");
        table.put(a.at("id").get<std::int64_t>(), a.at("content").get<std::string>(), "added_tokens", true);
      }
    }
    return Vocabulary(table.tokens(), std::move(specials), path);
  }

  // One token per line, id = line index (0-based). A tab and anything after it
  // is ignored, so SentencePiece's .vocab files ("piece<TAB>score") load as is.
  static Vocabulary from_vocab_file(const std::string& path, Specials specials = {}) {
    std::ifstream in = open_file(path);
    std::vector<std::string> tokens;
    std::string line;
    std::size_t line_no = 0;
    while (detail::read_bounded_line(in, line, std::size_t{1} << 16, "Vocabulary", path, line_no + 1)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::size_t tab = line.find('\t');
      if (tab != std::string::npos) line.resize(tab);
      if (line.empty()) PLM_FAIL("Vocabulary: ", path, ":", line_no, ": empty token (id ", line_no - 1, ")");
      tokens.push_back(line);
    }
    if (in.bad()) PLM_FAIL("Vocabulary: ", path, ": read error");
    if (tokens.empty()) PLM_FAIL("Vocabulary: ", path, ": no tokens");
    return Vocabulary(std::move(tokens), std::move(specials), path);
  }

  // A token list read from `where` (a file name for errors), id = index.
  static Vocabulary from_tokens(std::vector<std::string> tokens, Specials specials, const std::string& where) {
    return Vocabulary(std::move(tokens), std::move(specials), where);
  }

  // A JSON file from a stranger: size and nesting bounded before parsing; errors name `path`.
  static nlohmann::json read_json(const std::string& path) {
    const JsonLimits limits;  // 64 MiB, 64 levels
    std::ifstream in = open_file(path);
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) PLM_FAIL("Vocabulary: ", path, ": cannot read its size: ", ec.message());
    if (size > limits.max_bytes)
      PLM_FAIL("Vocabulary: ", path, ": ", size, " bytes exceed the tokenizer file limit of ", limits.max_bytes, " bytes");
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (in.gcount() != static_cast<std::streamsize>(size)) PLM_FAIL("Vocabulary: ", path, ": read error");
    return parse_json(text, "Vocabulary", path, limits);
  }

  std::int32_t size() const { return static_cast<std::int32_t>(tokens_.size()); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const Specials& specials() const { return specials_; }

  std::optional<std::int32_t> find(std::string_view token) const {
    const auto it = ids_.find(std::string(token));
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  std::int32_t id_of(std::string_view token) const {
    const auto id = find(token);
    if (!id) PLM_FAIL("Vocabulary: no token '", token, "' in this vocabulary of ", size(), " tokens");
    return *id;
  }
  const std::string& token(std::int32_t id) const {
    check_id(id, "token");
    return tokens_[static_cast<std::size_t>(id)];
  }

  std::int32_t pad_id() const { return pad_; }
  std::int32_t eos_id() const { return eos_; }
  std::int32_t unk_id() const { return unk_; }
  bool has_task_tokens() const { return nlu_ >= 0 && s2s_ >= 0; }
  std::int32_t nlu_id() const {
    if (nlu_ < 0) PLM_FAIL("Vocabulary: no task token '", specials_.nlu, "' in this vocabulary");
    return nlu_;
  }
  std::int32_t s2s_id() const {
    if (s2s_ < 0) PLM_FAIL("Vocabulary: no task token '", specials_.s2s, "' in this vocabulary");
    return s2s_;
  }

  std::int32_t num_sentinels() const { return static_cast<std::int32_t>(sentinels_.size()); }
  // The id of sentinel n (<extra_id_n>); T5 numbers the masked spans of one example 0, 1, ...
  std::int32_t sentinel_id(std::int32_t n) const {
    if (n < 0 || n >= num_sentinels())
      PLM_FAIL("Vocabulary: sentinel ", n, " requested, but this vocabulary has ", num_sentinels(), " sentinels (",
               specials_.sentinel_prefix, "0", specials_.sentinel_suffix, " ...)");
    return sentinels_[static_cast<std::size_t>(n)];
  }
  bool is_sentinel(std::int32_t id) const { return in_range(id) && kind_[static_cast<std::size_t>(id)] == Kind::sentinel; }
  // True for the token of an amino-acid letter: the 20 standard ones and X, B, Z, U, O.
  bool is_residue(std::int32_t id) const { return in_range(id) && kind_[static_cast<std::size_t>(id)] == Kind::residue; }
  // Ids of the amino-acid letter tokens, ascending (for accuracy baselines and
  // for restricting predictions to residues).
  std::vector<std::int32_t> residue_ids() const {
    std::vector<std::int32_t> ids;
    for (std::int32_t i = 0; i < size(); ++i)
      if (is_residue(i)) ids.push_back(i);
    return ids;
  }
  // The id of residue letter `letter` (upper case), if the vocabulary has one.
  std::optional<std::int32_t> residue_id(char letter) const {
    const auto c = static_cast<unsigned char>(letter);
    if (c >= letter_ids_.size() || letter_ids_[c] < 0) return std::nullopt;
    return letter_ids_[c];
  }

  // Appends the ids of `sequence` to `out` (no allocation when `out` has room).
  // Every character must be a letter; one trailing '*' (stop codon) is dropped.
  // `context` (e.g. the FASTA record id) is named in errors, which also give
  // the 0-based column of the offending character.
  void encode_into(std::string_view sequence, std::vector<std::int32_t>& out, const EncodeOptions& options = {},
                   std::string_view context = {}) const {
    std::size_t n = sequence.size();
    if (n > 0 && sequence[n - 1] == '*') --n;
    out.reserve(out.size() + n + (options.append_eos ? 1 : 0));
    for (std::size_t i = 0; i < n; ++i) {
      auto c = static_cast<unsigned char>(sequence[i]);
      if (c >= 'a' && c <= 'z') {
        if (options.lowercase == LowercasePolicy::error)
          PLM_FAIL("Vocabulary::encode: lowercase residue ", detail::describe_char(c), " at column ", i,
                   detail::in_context(context), " (LowercasePolicy::error)");
        c = static_cast<unsigned char>(c - 'a' + 'A');
      }
      if (c < 'A' || c > 'Z') {
        if (c == '*')
          PLM_FAIL("Vocabulary::encode: stop '*' at column ", i, detail::in_context(context),
                   " inside the sequence (only a trailing '*' is dropped)");
        PLM_FAIL("Vocabulary::encode: invalid character ", detail::describe_char(c), " at column ", i,
                 detail::in_context(context), ": a residue must be a letter");
      }
      std::int32_t id = letter_ids_[c];
      if (!detail::is_standard_residue(static_cast<char>(c))) {
        if (options.rare == RarePolicy::error)
          PLM_FAIL("Vocabulary::encode: rare residue ", detail::describe_char(c), " at column ", i,
                   detail::in_context(context), " (RarePolicy::error)");
        if (options.rare == RarePolicy::unk) id = unk_;
      }
      out.push_back(id >= 0 ? id : unk_);
    }
    if (options.append_eos) out.push_back(eos_);
  }

  std::vector<std::int32_t> encode(std::string_view sequence, const EncodeOptions& options = {},
                                   std::string_view context = {}) const {
    std::vector<std::int32_t> ids;
    encode_into(sequence, ids, options, context);
    return ids;
  }

  // Residues concatenated as letters; pad dropped; every other token (unk,
  // task tokens, sentinels, eos when not stopping there) written as its text.
  std::string decode(const std::int32_t* ids, std::size_t n, bool stop_at_eos = true) const {
    std::string s;
    s.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int32_t id = ids[i];
      check_id(id, "decode");
      if (id == pad_) continue;
      if (id == eos_ && stop_at_eos) break;
      const auto k = static_cast<std::size_t>(id);
      if (kind_[k] == Kind::residue) s += residue_letter_[k];
      else s += tokens_[k];
    }
    return s;
  }
  std::string decode(const std::vector<std::int32_t>& ids, bool stop_at_eos = true) const {
    return decode(ids.data(), ids.size(), stop_at_eos);
  }

 private:
  enum class Kind : unsigned char { other, special, sentinel, residue };

  // Collects id -> token pairs from a tokenizer.json; errors name the file.
  class IdTable {
   public:
    // listed: how many entries the file gives; ids must run 0..listed-1 at most.
    IdTable(const std::string& path, std::int64_t listed) : path_(path), listed_(listed) {}
    void put(std::int64_t id, const std::string& token, const char* where, bool repeat_ok) {
      // 2^24 ids is far beyond any protein vocabulary and keeps a bad id from allocating gigabytes.
      if (id < 0 || id >= (std::int64_t{1} << 24))
        PLM_FAIL("Vocabulary: ", path_, ": ", where, ": token '", token, "' has id ", id, ", outside [0, 2^24)");
      if (id >= listed_)
        PLM_FAIL("Vocabulary: ", path_, ": ", where, ": token '", token, "' has id ", id, ", but the file lists only ", listed_,
                 " tokens (ids must run 0..", listed_ - 1, " without a hole)");
      const auto k = static_cast<std::size_t>(id);
      if (k >= tokens_.size()) {
        tokens_.resize(k + 1);
        filled_.resize(k + 1, 0);
      }
      if (filled_[k]) {
        if (repeat_ok && tokens_[k] == token) return;
        PLM_FAIL("Vocabulary: ", path_, ": duplicate id ", id, ": '", tokens_[k], "' and '", token, "' (", where, ")");
      }
      tokens_[k] = token;
      filled_[k] = 1;
    }
    std::vector<std::string> tokens() const {
      if (tokens_.empty()) PLM_FAIL("Vocabulary: ", path_, ": the vocabulary is empty");
      for (std::size_t k = 0; k < tokens_.size(); ++k)
        if (!filled_[k])
          PLM_FAIL("Vocabulary: ", path_, ": no token has id ", k, " (ids must run 0..", tokens_.size() - 1,
                   " without a hole)");
      return tokens_;
    }

   private:
    std::string path_;
    std::int64_t listed_;
    std::vector<std::string> tokens_;
    std::vector<unsigned char> filled_;
  };

  Vocabulary(std::vector<std::string> tokens, Specials specials, const std::string& where)
      : tokens_(std::move(tokens)), specials_(std::move(specials)) {
    if (tokens_.empty()) PLM_FAIL(where, ": the vocabulary is empty");
    if (tokens_.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
      PLM_FAIL(where, ": ", tokens_.size(), " tokens do not fit 32-bit ids");
    kind_.assign(tokens_.size(), Kind::other);
    residue_letter_.assign(tokens_.size(), '\0');
    ids_.reserve(tokens_.size());
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      if (tokens_[i].empty()) PLM_FAIL(where, ": the token of id ", i, " is empty");
      const auto [it, fresh] = ids_.emplace(tokens_[i], static_cast<std::int32_t>(i));
      if (!fresh) PLM_FAIL(where, ": token '", tokens_[i], "' appears twice, at ids ", it->second, " and ", i);
    }
    const auto required = [&](const std::string& token, const char* role) {
      const auto id = find(token);
      if (!id) PLM_FAIL(where, ": the ", role, " token '", token, "' is missing (set Specials to name it)");
      kind_[static_cast<std::size_t>(*id)] = Kind::special;
      return *id;
    };
    pad_ = required(specials_.pad, "pad");
    eos_ = required(specials_.eos, "eos");
    unk_ = required(specials_.unk, "unk");
    const auto optional_special = [&](const std::string& token) {
      const auto id = token.empty() ? std::nullopt : find(token);
      if (!id) return std::int32_t{-1};
      kind_[static_cast<std::size_t>(*id)] = Kind::special;
      return *id;
    };
    nlu_ = optional_special(specials_.nlu);
    s2s_ = optional_special(specials_.s2s);

    // Sentinels: a gap in the numbering would make sentinel_id(n) silently
    // skip a span index, so it is an error.
    std::vector<std::int32_t> by_number;
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      const std::int64_t n = detail::sentinel_number(tokens_[i], specials_.sentinel_prefix, specials_.sentinel_suffix);
      if (n < 0) continue;
      if (static_cast<std::size_t>(n) >= tokens_.size())
        PLM_FAIL(where, ": sentinel '", tokens_[i], "' is numbered beyond the vocabulary size ", tokens_.size());
      if (static_cast<std::size_t>(n) >= by_number.size()) by_number.resize(static_cast<std::size_t>(n) + 1, -1);
      by_number[static_cast<std::size_t>(n)] = static_cast<std::int32_t>(i);
      kind_[i] = Kind::sentinel;
    }
    for (std::size_t n = 0; n < by_number.size(); ++n)
      if (by_number[n] < 0)
        PLM_FAIL(where, ": sentinel '", specials_.sentinel_prefix, by_number.size() - 1, specials_.sentinel_suffix,
                 "' exists but '", specials_.sentinel_prefix, n, specials_.sentinel_suffix, "' is missing");
    sentinels_ = std::move(by_number);

    // Residue letters: "L", else SentencePiece's "▁L".
    letter_ids_.fill(-1);
    for (char c = 'A'; c <= 'Z'; ++c) {
      auto id = find(std::string(1, c));
      if (!id) id = find(std::string(detail::sentencepiece_space) + c);
      if (!id) continue;
      const auto k = static_cast<std::size_t>(*id);
      if (kind_[k] != Kind::other) continue;  // a special token named "X" stays special
      letter_ids_[static_cast<unsigned char>(c)] = *id;
      if (detail::is_amino_acid_letter(c)) {
        kind_[k] = Kind::residue;
        residue_letter_[k] = c;
      }
    }
  }

  static void append_sentinels_reversed(std::vector<std::string>& t, std::size_t total) {
    const std::size_t first = t.size();
    for (std::size_t id = first; id < total; ++id) t.push_back("<extra_id_" + std::to_string(total - 1 - id) + ">");
  }

  static std::ifstream open_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) PLM_FAIL("Vocabulary: ", path, ": no such file");
    std::ifstream in(path, std::ios::binary);
    if (!in) PLM_FAIL("Vocabulary: ", path, ": cannot open for reading");
    return in;
  }

  bool in_range(std::int32_t id) const { return id >= 0 && id < size(); }
  void check_id(std::int32_t id, const char* op) const {
    if (!in_range(id)) PLM_FAIL("Vocabulary::", op, ": id ", id, " outside the vocabulary of ", size(), " tokens");
  }

  std::vector<std::string> tokens_;
  Specials specials_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::vector<Kind> kind_;
  std::vector<char> residue_letter_;
  std::array<std::int32_t, 128> letter_ids_{};
  std::vector<std::int32_t> sentinels_;
  std::int32_t pad_ = -1, eos_ = -1, unk_ = -1, nlu_ = -1, s2s_ = -1;
};

}  // namespace plm::data
