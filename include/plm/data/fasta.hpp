#pragma once
// Streaming FASTA reader, plain or gzip-compressed.
//
// FastaReader reads through a fixed buffer and keeps only the current record
// in memory, so a multi-gigabyte UniRef file costs a few megabytes; a line may
// be any length (a 35,000-residue titin on one line, or tens of MB). Files go
// through detail::ByteSource (byte_source.hpp), which inflates gzip (files
// starting with the magic bytes 1f 8b, all concatenated members, as bgzip
// writes them) and passes other files through unchanged. A truncated or
// corrupt gzip stream, or bytes after the last member that are not a member,
// is an error naming the file, never a silent end of data.
//
// Format: a record is a header line ">id description" followed by sequence
// lines. CRLF, blank lines and a missing final newline are accepted;
// whitespace inside sequence lines is dropped. Sequence characters must be
// letters or '*' ('-' too with FastaOptions::allow_gaps): the Vocabulary
// decides later what a letter means; anything else (digits, punctuation,
// non-ASCII) is an error giving file:line:column (1-based, as compilers do).
// Letter case is kept.
//
// Resuming: position() counts the records consumed from the file (returned
// and skipped); a training checkpoint stores it as the data cursor, and
// skip_to(position) on a fresh reader reads forward to it. There is no index,
// so resuming costs one forward read of the file up to that point.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/data/byte_source.hpp"
#include "plm/data/vocabulary.hpp"  // detail::describe_char

namespace plm::data {

// A record with an empty sequence (a header followed by no residues).
enum class EmptyPolicy { skip, error };

// A record longer than FastaOptions::max_length: skip it, keep a random window
// of max_length residues, keep its first max_length residues, or stop.
enum class TooLongPolicy { skip, crop_random, crop_start, error };

// The policy's name on a command line or in a settings record: skip, crop-random, crop-start, error.
inline const char* policy_name(TooLongPolicy p) {
  switch (p) {
    case TooLongPolicy::skip: return "skip";
    case TooLongPolicy::crop_random: return "crop-random";
    case TooLongPolicy::crop_start: return "crop-start";
    case TooLongPolicy::error: return "error";
  }
  PLM_FAIL("policy_name: invalid TooLongPolicy value ", static_cast<int>(p));
}

// Inverse of policy_name; an unknown name is an error that names it and lists the valid ones.
inline TooLongPolicy parse_too_long_policy(const std::string& name) {
  for (TooLongPolicy p : {TooLongPolicy::skip, TooLongPolicy::crop_random, TooLongPolicy::crop_start, TooLongPolicy::error})
    if (name == policy_name(p)) return p;
  PLM_FAIL("too-long policy '", name, "' is not one of: skip, crop-random, crop-start, error");
}

struct FastaOptions {
  EmptyPolicy empty = EmptyPolicy::skip;
  std::size_t min_length = 0;  // shorter records are skipped
  std::size_t max_length = 0;  // 0 = unlimited
  TooLongPolicy too_long = TooLongPolicy::skip;
  // crop_random draws the window start from Philox(seed, stream = record index),
  // so a record's crop depends only on (seed, its index in the file), not on
  // what was read before: the same after skip_to() as in the original pass.
  std::uint64_t seed = 0;
  bool allow_gaps = false;        // accept '-' (alignment gap) in sequence lines
  std::size_t buffer_bytes = 1u << 20;  // read buffer; lines may be longer
};

struct FastaRecord {
  std::string id;           // first word of the header, after '>'
  std::string description;  // rest of the header, trimmed
  std::string sequence;     // all sequence lines joined, whitespace removed
  std::size_t header_line = 0;  // 1-based line number of the header
  std::uint64_t index = 0;      // 0-based index of the record in the file (skipped ones counted)
};

namespace detail {

enum class FastaChar : unsigned char { invalid, residue, space, gap };

inline const std::array<FastaChar, 256>& fasta_char_classes() {
  static const std::array<FastaChar, 256> table = [] {
    std::array<FastaChar, 256> t{};
    t.fill(FastaChar::invalid);
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = FastaChar::residue;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = FastaChar::residue;
    t['*'] = FastaChar::residue;
    t['-'] = FastaChar::gap;
    for (char c : {' ', '\t', '\r', '\v', '\f'}) t[static_cast<unsigned char>(c)] = FastaChar::space;
    return t;
  }();
  return table;
}


inline bool fasta_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace detail

class FastaReader {
 public:
  explicit FastaReader(std::string path, FastaOptions options = {})
      : path_(std::move(path)), options_(options) {
    PLM_CHECK(options_.buffer_bytes > 0 && options_.buffer_bytes <= (std::size_t{1} << 30),
              "FastaReader: ", path_, ": buffer_bytes ", options_.buffer_bytes, " outside [1, 2^30]");
    PLM_CHECK(options_.max_length == 0 || options_.min_length <= options_.max_length, "FastaReader: ", path_,
              ": min_length ", options_.min_length, " exceeds max_length ", options_.max_length);
    // The read buffer need not exceed the file (a gzip file's compressed size is only a hint for
    // its contents, and a smaller buffer only means more reads): small files cost little.
    std::error_code ec;
    const auto file_bytes = std::filesystem::file_size(path_, ec);
    std::size_t size = options_.buffer_bytes;
    if (!ec && file_bytes < size) size = std::max<std::size_t>(static_cast<std::size_t>(file_bytes), std::min<std::size_t>(size, 4096));
    buf_.resize(size);
    open();
  }

  // Fills `r` with the next record that passes the policies; false at the end of the file.
  bool next(FastaRecord& r) {
    for (;;) {
      const Step s = step(r);
      if (s == Step::end) return false;
      if (s == Step::returned) return true;
    }
  }

  // Records consumed from the file so far, returned or skipped: the data cursor
  // to store in a checkpoint.
  std::uint64_t position() const { return position_; }

  // Moves to `position` (records consumed), as if next() had been called until
  // position() reached it: counters and crops are the same as in that pass. A
  // position behind the current one rewinds first. Costs a forward read.
  void skip_to(std::uint64_t position) {
    if (position < position_) rewind();
    FastaRecord scratch;
    while (position_ < position)
      if (step(scratch) == Step::end)
        PLM_FAIL("FastaReader: ", path_, ": skip_to(", position, "): the file has only ", position_, " records");
  }

  // Back to the first record (for the next epoch); counters restart at zero.
  void rewind() { open(); }

  std::uint64_t records_read() const { return read_; }        // returned by next()
  std::uint64_t records_skipped() const { return skipped_; }  // dropped by a policy
  std::uint64_t records_cropped() const { return cropped_; }  // returned cropped to max_length
  const std::string& path() const { return path_; }
  const FastaOptions& options() const { return options_; }

 private:
  enum class Step { end, skipped, returned };

  void open() {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) PLM_FAIL("FastaReader: ", path_, ": no such file");
    if (std::filesystem::is_directory(path_, ec)) PLM_FAIL("FastaReader: ", path_, ": is a directory");
    if (!file_.open(path_)) PLM_FAIL("FastaReader: ", path_, ": ", file_.error());
    pos_ = end_ = 0;
    eof_ = false;
    line_ = 1;
    have_pending_ = false;
    pending_header_.clear();
    position_ = read_ = skipped_ = cropped_ = 0;
  }

  // One raw record through the policies.
  Step step(FastaRecord& r) {
    if (!read_raw(r)) return Step::end;
    r.index = position_++;
    const std::size_t len = r.sequence.size();
    if (len == 0) {
      if (options_.empty == EmptyPolicy::error)
        PLM_FAIL("FastaReader: ", path_, ":", r.header_line, ": record '", r.id, "' has an empty sequence");
      ++skipped_;
      return Step::skipped;
    }
    if (len < options_.min_length) {
      ++skipped_;
      return Step::skipped;
    }
    const std::size_t max = options_.max_length;
    if (max > 0 && len > max) {
      switch (options_.too_long) {
        case TooLongPolicy::skip:
          ++skipped_;
          return Step::skipped;
        case TooLongPolicy::error:
          PLM_FAIL("FastaReader: ", path_, ":", r.header_line, ": record '", r.id, "' has ", len,
                   " residues, more than max_length ", max);
        case TooLongPolicy::crop_start:
          r.sequence.resize(max);
          break;
        case TooLongPolicy::crop_random: {
          const std::uint64_t start = crop_start(r.index, len - max + 1);
          r.sequence.erase(0, static_cast<std::size_t>(start));
          r.sequence.resize(max);
          break;
        }
      }
      ++cropped_;
    }
    ++read_;
    return Step::returned;
  }

  // Uniform in [0, n) from the record's own Philox stream.
  std::uint64_t crop_start(std::uint64_t index, std::uint64_t n) const {
    Philox rng(options_.seed, index);
    if (n <= std::numeric_limits<std::uint32_t>::max()) return rng.below(static_cast<std::uint32_t>(n));
    const std::uint64_t hi = rng.next_u32(), lo = rng.next_u32();
    return ((hi << 32) | lo) % n;  // > 4G residues: the modulo bias is negligible
  }

  // Ensures buf_[pos_] is valid; false at the end of the data.
  bool fill() {
    if (pos_ < end_) return true;
    if (eof_) return false;
    const std::ptrdiff_t n = file_.read(buf_.data(), buf_.size());
    if (n < 0) PLM_FAIL("FastaReader: ", path_, ": after line ", line_, ": ", file_.error());
    if (n == 0) {
      eof_ = true;
      return false;
    }
    pos_ = 0;
    end_ = static_cast<std::size_t>(n);
    return true;
  }

  // At a '>' at the start of a line: reads the header line (without '>' and newline) into out.
  void read_header(std::string& out) {
    out.clear();
    ++pos_;  // '>'
    for (;;) {
      if (!fill()) return;  // last line without newline
      const char* p = buf_.data() + pos_;
      const auto* nl = static_cast<const char*>(std::memchr(p, '\n', end_ - pos_));
      if (!nl) {
        out.append(p, end_ - pos_);
        pos_ = end_;
        continue;
      }
      out.append(p, static_cast<std::size_t>(nl - p));
      pos_ += static_cast<std::size_t>(nl - p) + 1;
      ++line_;
      return;
    }
  }

  // At the start of a non-header line: consumes it through its newline,
  // appending its residues to *seq. seq == nullptr before the first header,
  // where only blank lines are allowed.
  void read_sequence_line(std::string* seq, const std::string& record_id) {
    const auto& classes = detail::fasta_char_classes();
    std::size_t column = 1;
    for (;;) {
      if (!fill()) return;
      const char* p = buf_.data() + pos_;
      const auto* nl = static_cast<const char*>(std::memchr(p, '\n', end_ - pos_));
      const char* q = nl ? nl : buf_.data() + end_;
      const auto span = static_cast<std::size_t>(q - p);
      std::size_t old = 0;
      char* w = nullptr;
      if (seq) {
        old = seq->size();
        seq->resize(old + span);
        w = &(*seq)[old];
      }
      for (const char* s = p; s < q; ++s) {
        const auto c = static_cast<unsigned char>(*s);
        const detail::FastaChar k = classes[c];
        if (k == detail::FastaChar::space) continue;
        const std::size_t col = column + static_cast<std::size_t>(s - p);
        if (!seq) PLM_FAIL("FastaReader: ", path_, ":", line_, ": sequence data before the first header ('>')");
        if (k == detail::FastaChar::residue || (k == detail::FastaChar::gap && options_.allow_gaps)) {
          *w++ = static_cast<char>(c);
          continue;
        }
        if (k == detail::FastaChar::gap)
          PLM_FAIL("FastaReader: ", path_, ":", line_, ":", col, ": alignment gap '-' in the sequence of record '",
                   record_id, "' (set FastaOptions::allow_gaps to accept gaps)");
        PLM_FAIL("FastaReader: ", path_, ":", line_, ":", col, ": invalid character ", detail::describe_char(c),
                 " in the sequence of record '", record_id, "' (letters and '*' allowed)");
      }
      if (seq) seq->resize(static_cast<std::size_t>(w - seq->data()));
      column += span;
      pos_ += span;
      if (nl) {
        ++pos_;
        ++line_;
        return;
      }
    }
  }

  // The next record as in the file, before any policy; false at the end.
  bool read_raw(FastaRecord& r) {
    if (!have_pending_) {
      for (;;) {
        if (!fill()) return false;
        if (buf_[pos_] == '>') {
          pending_line_ = line_;
          read_header(pending_header_);
          have_pending_ = true;
          break;
        }
        read_sequence_line(nullptr, std::string());
      }
    }
    have_pending_ = false;
    r.header_line = pending_line_;
    parse_header(pending_header_, r);
    r.sequence.clear();
    for (;;) {
      if (!fill()) break;
      if (buf_[pos_] == '>') {
        pending_line_ = line_;
        read_header(pending_header_);
        have_pending_ = true;
        break;
      }
      read_sequence_line(&r.sequence, r.id);
    }
    return true;
  }

  void parse_header(const std::string& h, FastaRecord& r) const {
    std::size_t b = 0, e = h.size();
    while (b < e && detail::fasta_space(h[b])) ++b;
    while (e > b && detail::fasta_space(h[e - 1])) --e;
    if (b == e) PLM_FAIL("FastaReader: ", path_, ":", r.header_line, ": empty header '>' (a record needs an id)");
    std::size_t i = b;
    while (i < e && h[i] != ' ' && h[i] != '\t') ++i;
    r.id.assign(h, b, i - b);
    while (i < e && detail::fasta_space(h[i])) ++i;
    r.description.assign(h, i, e - i);
  }

  std::string path_;
  FastaOptions options_;
  detail::ByteSource file_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  std::size_t line_ = 1;  // line of buf_[pos_]
  bool have_pending_ = false;
  std::string pending_header_;
  std::size_t pending_line_ = 0;
  std::uint64_t position_ = 0, read_ = 0, skipped_ = 0, cropped_ = 0;
};

// All records of a (small) file that pass the policies.
inline std::vector<FastaRecord> read_fasta(const std::string& path, const FastaOptions& options = {}) {
  FastaReader reader(path, options);
  std::vector<FastaRecord> records;
  FastaRecord r;
  while (reader.next(r)) records.push_back(r);
  return records;
}

}  // namespace plm::data
