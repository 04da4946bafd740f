#pragma once
// The bodies of plm's fuzz harnesses, one function per parser (docs/fuzzing.md).
//
// The same functions serve libFuzzer (tests/fuzz/fuzz_<name>.cpp, through the
// extern "C" wrappers of harnesses.cpp) and the doctest suite
// (tests/test_fuzz_regressions.cpp replays every committed seed and
// regression input through them).
//
// Contract of every harness: the bytes are hostile input; a plm::Error is an
// expected outcome and is swallowed. Anything else is a bug: another exception
// type escaping (libFuzzer reports it as a deadly signal, doctest as a
// failure), a crash, a sanitizer report, a hang or an unbounded allocation.
// Where a parser promises a property (the same records whatever the read
// buffer size, a resumed reader continuing where the first one stood, a
// refused checkpoint leaving the parameters alone, ...), the harness checks it
// and throws InvariantViolation, which is not a plm::Error.
//
// Parsers take paths: inputs are written to one file per name in a directory
// of the process's own (/dev/shm/plm-fuzz-<pid> where /dev/shm exists, else
// the temp directory), reused for every input and removed at exit.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/labelled.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/data/vocabulary.hpp"
#include "plm/io/bert_checkpoint.hpp"
#include "plm/io/checkpoint.hpp"
#include "plm/io/esm_checkpoint.hpp"
#include "plm/io/hf_config.hpp"
#include "plm/io/hf_weights.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/nn/parameters.hpp"
#include "plm/plm.hpp"  // ops<cpu>, which ParameterSet<cpu, float> needs
#include "plm/train/metrics.hpp"

namespace plm::fuzz {

// A property a parser promises did not hold. Deliberately not a plm::Error.
struct InvariantViolation : std::logic_error {
  using std::logic_error::logic_error;
};

#define PLM_FUZZ_EXPECT(cond, ...)                                                                     \
  do {                                                                                                 \
    if (!(cond))                                                                                       \
      throw ::plm::fuzz::InvariantViolation(::plm::detail::concat("fuzz invariant violated: ", #cond, \
                                                                  ": ", __VA_ARGS__));                \
  } while (0)

// ---------------------------------------------------------------------------
// Scratch files

class Scratch {
 public:
  static Scratch& get() {
    static Scratch s;
    return s;
  }
  // Writes `data` to the scratch file `name` (replacing it) and returns its path.
  std::string write(const std::string& name, const void* data, std::size_t size) {
    const std::string path = dir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("fuzz: cannot create scratch file " + path);
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ::ssize_t put = ::write(fd, p, size);
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) {
        ::close(fd);
        throw std::runtime_error("fuzz: cannot write scratch file " + path);
      }
      p += put, size -= static_cast<std::size_t>(put);
    }
    ::close(fd);
    return path;
  }
  std::string write(const std::string& name, std::string_view s) { return write(name, s.data(), s.size()); }
  const std::string& dir() const { return dir_; }

  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

 private:
  Scratch() {
    std::error_code ec;
    std::filesystem::path base = "/dev/shm";
    if (!std::filesystem::is_directory(base, ec) || ::access(base.c_str(), W_OK) != 0)
      base = std::filesystem::temp_directory_path();
    dir_ = (base / ("plm-fuzz-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir_, ec);  // a stale one of a crashed process with a recycled pid
    std::filesystem::create_directories(dir_);
  }
  std::string dir_;
};

// ---------------------------------------------------------------------------
// Outcome of one harness call, for the doctest replay: the first plm::Error the
// primary parse of the input raised (empty when the input was accepted).

inline std::string& first_error() {
  static std::string e;
  return e;
}

// Runs f; a plm::Error is an expected outcome. primary: it is the parse the
// harness is about, whose refusal first_error() reports.
template <class F>
bool attempt(F&& f, bool primary = false) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    if (primary && first_error().empty()) first_error() = e.what();
    return false;
  }
}

inline std::uint64_t fnv1a(const std::uint8_t* data, std::size_t size) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

// JSON text never holds a raw NUL byte (control characters in strings must be
// escaped), and nlohmann::json stops reading at one: a parser that accepts a
// JSON file holding one has ignored whatever followed it.
inline bool has_nul(const void* data, std::size_t size) { return size > 0 && std::memchr(data, 0, size) != nullptr; }

// The parts of an input separated by lines "%%" (the separator is "\n%%\n"),
// for harnesses that need several files; missing parts are empty.
inline std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size, std::size_t count) {
  std::vector<std::string_view> parts;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  static constexpr std::string_view sep = "\n%%\n";
  while (parts.size() + 1 < count) {
    const std::size_t at = rest.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at + 1));  // the part keeps its final newline
    rest.remove_prefix(at + sep.size());
  }
  parts.push_back(rest);
  while (parts.size() < count) parts.emplace_back();
  return parts;
}

// ---------------------------------------------------------------------------
// FASTA

struct FastaOutcome {
  std::vector<data::FastaRecord> records;
  std::string error;  // empty: read to the end
  std::uint64_t position = 0, read = 0, skipped = 0, cropped = 0;
};

inline bool same_records(const data::FastaRecord& a, const data::FastaRecord& b) {
  return a.id == b.id && a.description == b.description && a.sequence == b.sequence && a.header_line == b.header_line &&
         a.index == b.index;
}

inline bool same_outcome(const FastaOutcome& a, const FastaOutcome& b) {
  if (a.error != b.error || a.records.size() != b.records.size() || a.position != b.position || a.read != b.read ||
      a.skipped != b.skipped || a.cropped != b.cropped)
    return false;
  for (std::size_t i = 0; i < a.records.size(); ++i)
    if (!same_records(a.records[i], b.records[i])) return false;
  return true;
}

inline std::string describe(const FastaOutcome& o) {
  return detail::concat(o.records.size(), " records, position ", o.position, ", error '", o.error, "'");
}

// Every record returned must satisfy what the reader promises about it.
inline void check_record(const data::FastaRecord& r, const data::FastaOptions& o) {
  PLM_FUZZ_EXPECT(!r.id.empty(), "record ", r.index, " has an empty id");
  // Only spaces and tabs end the id: a lone \r, \v or \f inside a header stays in it.
  PLM_FUZZ_EXPECT(r.id.find_first_of(" \t\n") == std::string::npos, "id '", r.id, "' holds a space, tab or newline");
  PLM_FUZZ_EXPECT(!r.sequence.empty(), "record '", r.id, "' returned with an empty sequence");
  PLM_FUZZ_EXPECT(r.sequence.size() >= o.min_length, "record '", r.id, "' shorter than min_length");
  PLM_FUZZ_EXPECT(o.max_length == 0 || r.sequence.size() <= o.max_length, "record '", r.id, "' longer than max_length");
  for (char c : r.sequence) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*' || (c == '-' && o.allow_gaps);
    PLM_FUZZ_EXPECT(ok, "record '", r.id, "' holds character ", static_cast<int>(static_cast<unsigned char>(c)));
  }
}

inline FastaOutcome read_fasta_outcome(const std::string& path, const data::FastaOptions& o, bool primary) {
  FastaOutcome out;
  try {
    data::FastaReader reader(path, o);
    data::FastaRecord r;
    while (reader.next(r)) {
      check_record(r, o);
      out.records.push_back(r);
    }
    out.position = reader.position();
    out.read = reader.records_read();
    out.skipped = reader.records_skipped();
    out.cropped = reader.records_cropped();
    PLM_FUZZ_EXPECT(out.read + out.skipped == out.position, "read ", out.read, " + skipped ", out.skipped,
                    " != position ", out.position);
    PLM_FUZZ_EXPECT(out.read == out.records.size(), "records_read ", out.read, " but ", out.records.size(), " returned");
  } catch (const Error& e) {
    out.error = e.what();
    if (primary && first_error().empty()) first_error() = out.error;
  }
  return out;
}

// Policies drawn from the input's hash: every mutation explores another mix.
inline data::FastaOptions fasta_policies(std::uint64_t h) {
  data::FastaOptions o;
  o.allow_gaps = h & 1;
  o.empty = (h >> 1) & 1 ? data::EmptyPolicy::error : data::EmptyPolicy::skip;
  if ((h >> 2) & 1) o.max_length = 1 + (h >> 8) % 40;
  o.too_long = static_cast<data::TooLongPolicy>((h >> 3) & 3);
  if (((h >> 5) & 3) == 0) o.min_length = (h >> 16) % 6;
  if (o.max_length > 0 && o.min_length > o.max_length) o.min_length = o.max_length;
  o.seed = h >> 24;
  o.buffer_bytes = 1 + (h >> 40) % 97;  // lines and headers cross buffer boundaries
  return o;
}

// Reads `path` with a 64 KB buffer (the primary parse, returned) and with a buffer
// of 1 to 7 bytes: they must give the same records, counters and error. For
// inflated input a corrupt stream may be noticed after a different number of
// lines, so when either refuses, only refusal itself must agree.
inline FastaOutcome big_and_tiny_buffers_agree(const std::string& path, std::uint64_t h, bool inflated) {
  data::FastaOptions big;
  big.buffer_bytes = 1u << 16;
  const FastaOutcome a = read_fasta_outcome(path, big, true);
  data::FastaOptions tiny;
  tiny.buffer_bytes = 1 + h % 7;
  const FastaOutcome b = read_fasta_outcome(path, tiny, false);
  if (inflated && (!a.error.empty() || !b.error.empty()))
    PLM_FUZZ_EXPECT(a.error.empty() == b.error.empty(), "buffer of 64 KB: ", describe(a), "; buffer of ", tiny.buffer_bytes,
                    " bytes: ", describe(b));
  else
    PLM_FUZZ_EXPECT(same_outcome(a, b), "buffer of 64 KB: ", describe(a), "; buffer of ", tiny.buffer_bytes,
                    " bytes: ", describe(b));
  return a;
}

// Reads the file at `path` three ways: (1) default options with a 64 KB buffer
// (the primary parse); (2) default options with a buffer of a few bytes, which
// must give exactly the same records, counters and error; (3) policies drawn
// from `h`, read to the end, then rewound and resumed from half-way with
// skip_to(), which must give the same records as the first pass from there on.
// Bytes that start with the gzip magic are inflated: a corrupt stream may then be
// noticed before or after the FASTA parser trips over what was inflated so far,
// depending on the buffer, so for them only refusal itself must agree.
inline FastaOutcome fasta_three_ways(const std::string& path, std::uint64_t h, bool gzip_magic) {
  const FastaOutcome a = big_and_tiny_buffers_agree(path, h, gzip_magic);

  const data::FastaOptions o = fasta_policies(h);
  attempt([&] {
    data::FastaReader reader(path, o);
    std::vector<data::FastaRecord> first;
    data::FastaRecord r;
    while (reader.next(r)) {
      check_record(r, o);
      first.push_back(r);
    }
    const std::uint64_t total = reader.position();
    const std::uint64_t k = total / 2;
    reader.rewind();
    PLM_FUZZ_EXPECT(reader.position() == 0 && reader.records_read() == 0, "rewind() left position ", reader.position());
    reader.skip_to(k);
    PLM_FUZZ_EXPECT(reader.position() == k, "skip_to(", k, ") left position ", reader.position());
    std::size_t i = 0;
    while (i < first.size() && first[i].index < k) ++i;
    while (reader.next(r)) {
      PLM_FUZZ_EXPECT(i < first.size() && same_records(r, first[i]), "after skip_to(", k, "): record index ", r.index,
                      " '", r.id, "' differs from the first pass");
      ++i;
    }
    PLM_FUZZ_EXPECT(i == first.size(), "after skip_to(", k, "): ", first.size() - i, " records missing");
    PLM_FUZZ_EXPECT(reader.position() == total, "resumed pass ends at ", reader.position(), ", first at ", total);
  });
  return a;
}

// Plain FASTA.
inline int fuzz_fasta(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::string path = Scratch::get().write("input.fasta", data, size);
  fasta_three_ways(path, fnv1a(data, size), size >= 2 && data[0] == 0x1f && data[1] == 0x8b);
  return 0;
}

// The bytes as a file named .gz: gzip headers, deflate streams, trailers and
// concatenated members as the fuzzer makes them (zlib passes non-gzip bytes
// through, so this also reads plain text). Read with a 64 KB and a tiny buffer:
// both must accept or both refuse, and when both accept, agree.
inline int fuzz_fasta_gz_raw(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::string path = Scratch::get().write("input.fasta.gz", data, size);
  big_and_tiny_buffers_agree(path, fnv1a(data, size), true);
  return 0;
}

// gzip of `text` (windowBits 15 + 16); split > 0 makes two members, cut at
// `split`, as bgzip writes files.
inline std::string gzip(std::string_view text, int level, std::size_t split = 0) {
  std::string out;
  auto member = [&](std::string_view part) {
    z_stream z{};
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("fuzz: deflateInit2 failed");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
    z.avail_in = static_cast<uInt>(part.size());
    char buf[16384];
    int rc;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = deflate(&z, Z_FINISH);
      out.append(buf, sizeof buf - z.avail_out);
    } while (rc == Z_OK || rc == Z_BUF_ERROR);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("fuzz: deflate failed");
  };
  if (split > 0 && split < text.size()) {
    member(text.substr(0, split));
    member(text.substr(split));
  } else {
    member(text);
  }
  return out;
}

// The fuzzer's bytes compressed first (one member, or two as bgzip writes
// them), so the FASTA parser behind the decompressor is reached: the
// compressed file must read exactly as the same bytes uncompressed (same
// records, counters and error message), through every buffer size.
inline int fuzz_fasta_gz(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::uint64_t h = fnv1a(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Scratch& s = Scratch::get();
  const std::string path = s.dir() + "/input.fasta.gz";
  const int level = 1 + static_cast<int>((h >> 8) % 9);
  const std::size_t split = ((h >> 4) & 1) != 0 && size > 1 ? 1 + (h >> 16) % (size - 1) : 0;
  s.write("input.fasta.gz", gzip(text, level, split));
  data::FastaOptions o;
  o.buffer_bytes = 1 + h % 13;
  const FastaOutcome z = read_fasta_outcome(path, o, true);
  // zlib reads a file that itself starts with the gzip magic as gzip; such
  // bytes have no plain reading to compare with.
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) return 0;
  s.write("input.fasta.gz", text);  // the same name: error messages name the file
  data::FastaOptions big;
  big.buffer_bytes = 1u << 16;
  const FastaOutcome plain = read_fasta_outcome(path, big, false);
  PLM_FUZZ_EXPECT(same_outcome(plain, z), "plain: ", describe(plain), "; gzip (", split ? "two members" : "one member",
                  ", level ", level, ", buffer ", o.buffer_bytes, "): ", describe(z));
  return 0;
}

// ---------------------------------------------------------------------------
// safetensors

// The 8-byte header length is what most mutations break first (an inserted or
// erased byte in the header moves its end), so the safetensors and checkpoint
// harnesses also run a repaired copy: the length rewritten to where the JSON
// object starting at byte 8 ends, plus the spaces that pad it. Returns false
// when the input needs no repair or has no such object.
inline bool repair_header_length(const std::uint8_t* data, std::size_t size, std::string& out) {
  if (size < 9 || data[8] != '{') return false;
  std::size_t depth = 0, i = 8;
  bool in_string = false;
  for (; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      break;
    }
  }
  if (i >= size) return false;
  ++i;
  while (i < size && data[i] == ' ') ++i;
  const std::uint64_t n = i - 8;
  std::uint64_t stored = 0;
  for (int b = 7; b >= 0; --b) stored = (stored << 8) | data[b];
  if (n == stored) return false;
  out.assign(reinterpret_cast<const char*>(data), size);
  for (int b = 0; b < 8; ++b) out[static_cast<std::size_t>(b)] = static_cast<char>((n >> (8 * b)) & 0xff);
  return true;
}

// Opens the file and reads every tensor it lists as float (and integer dtypes
// as int32 and uint8 too, for the range checks), after checking what the
// header promises: byte ranges inside the data section, sizes matching shapes.
inline void read_safetensors(const std::uint8_t* data, std::size_t size, bool primary) {
  const std::string path = Scratch::get().write("input.safetensors", data, size);
  attempt(
      [&] {
        const io::SafetensorsReader reader(path);
        std::size_t meta_bytes = 0;
        for (const auto& [k, v] : reader.metadata()) meta_bytes += k.size() + v.size();
        PLM_FUZZ_EXPECT(meta_bytes <= size, "metadata of ", meta_bytes, " bytes from a file of ", size);
        std::uint64_t header = 0;
        for (int i = 7; i >= 0; --i) header = (header << 8) | data[i];
        PLM_FUZZ_EXPECT(!has_nul(data + 8, header), "a header holding a NUL byte was accepted");
        const std::uint64_t data_size = size - 8 - header;
        for (const io::TensorInfo& t : reader.tensors()) {
          PLM_FUZZ_EXPECT(reader.find(t.name) == &t, "find('", t.name, "') does not return its entry");
          PLM_FUZZ_EXPECT(t.begin <= t.end && t.end <= data_size, "tensor '", t.name, "' [", t.begin, ", ", t.end,
                          ") outside the data section of ", data_size, " bytes");
          std::uint64_t numel = 1;
          for (std::int64_t d : t.shape) numel *= static_cast<std::uint64_t>(d);
          const std::size_t elem = io::detail::safetensors_dtype_size(t.dtype);
          PLM_FUZZ_EXPECT(numel * elem == t.end - t.begin, "tensor '", t.name, "': ", numel, " x ", elem, " != ",
                          t.end - t.begin, " bytes");
          attempt([&] {
            const Tensor<cpu, float> x = reader.load<float>(t.name);
            PLM_FUZZ_EXPECT(static_cast<std::uint64_t>(x.numel()) == numel, "tensor '", t.name, "' loaded ",
                            x.numel(), " elements, the header says ", numel);
            volatile float sink = 0;
            for (index_t i = 0; i < x.numel(); ++i) sink = sink + x.data()[i];
          });
          const auto kind = io::detail::stored_kind(t.dtype);
          if (kind != io::detail::Stored::other && !io::detail::is_floating(kind)) {
            attempt([&] { (void)reader.load<std::int32_t>(t.name); });
            attempt([&] { (void)reader.load<std::uint8_t>(t.name); });
          }
        }
        (void)reader.contains("__metadata__");
      },
      primary);
}

// Runs f(bytes, size, primary) on the input and, when its header length needs
// repair, once more on the repaired copy (primary false).
template <class F>
int on_input_and_repaired(const std::uint8_t* data, std::size_t size, F&& f) {
  first_error().clear();
  f(data, size, true);
  std::string repaired;
  if (repair_header_length(data, size, repaired)) f(reinterpret_cast<const std::uint8_t*>(repaired.data()), repaired.size(), false);
  return 0;
}

inline int fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
  return on_input_and_repaired(data, size, [](const std::uint8_t* d, std::size_t n, bool primary) { read_safetensors(d, n, primary); });
}

// ---------------------------------------------------------------------------
// model.safetensors.index.json: the weight map of a sharded checkpoint

// The input is the index of a directory that holds two fixed shards
// (model-00001-of-00002.safetensors: "a" F32 (2, 3) and "b" BF16 (4);
// model-00002-of-00002.safetensors: "c" F32 (3)), read by io::ModelWeights.
// An accepted index names exactly the tensors of those shards, each in the
// shard that holds it, and every tensor reads back with its written values.
inline int fuzz_weights_index(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  Scratch& s = Scratch::get();
  const std::string dir = s.dir() + "/weights";
  static const bool shards_written = [&] {
    std::filesystem::create_directories(dir);
    Tensor<cpu, float> a(Shape{2, 3}), c(Shape{3});
    Tensor<cpu, bf16> b(Shape{4});
    for (index_t i = 0; i < a.numel(); ++i) a.data()[i] = static_cast<float>(i) + 0.5f;
    for (index_t i = 0; i < b.numel(); ++i) b.data()[i] = bf16(static_cast<float>(-i));
    for (index_t i = 0; i < c.numel(); ++i) c.data()[i] = static_cast<float>(10 + i);
    io::SafetensorsWriter one, two;
    one.add<float>("a", a.cview());
    one.add<bf16>("b", b.cview());
    two.add<float>("c", c.cview());
    one.write(dir + "/model-00001-of-00002.safetensors");
    two.write(dir + "/model-00002-of-00002.safetensors");
    return true;
  }();
  (void)shards_written;
  s.write("weights/model.safetensors.index.json", data, size);
  std::unique_ptr<io::ModelWeights> w;
  if (!attempt([&] { w = std::make_unique<io::ModelWeights>(dir); }, true)) return 0;
  PLM_FUZZ_EXPECT(!has_nul(data, size), "an index holding a NUL byte was accepted");
  PLM_FUZZ_EXPECT(w->sharded() && w->tensors().size() == 3, "an accepted index lists ", w->tensors().size(), " tensors");
  const std::map<std::string, std::pair<std::string, std::vector<float>>> want = {
      {"a", {"model-00001-of-00002.safetensors", {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f}}},
      {"b", {"model-00001-of-00002.safetensors", {0.0f, -1.0f, -2.0f, -3.0f}}},
      {"c", {"model-00002-of-00002.safetensors", {10.0f, 11.0f, 12.0f}}}};
  for (const auto& [name, expected] : want) {
    PLM_FUZZ_EXPECT(w->contains(name), "tensor '", name, "' missing from an accepted index");
    PLM_FUZZ_EXPECT(std::filesystem::path(w->file_of(name)).filename() == expected.first, "tensor '", name, "' read from ",
                    w->file_of(name));
    Tensor<cpu, float> t(name == "a" ? Shape{2, 3} : Shape{static_cast<index_t>(expected.second.size())});
    w->read<float>(name, t.view());
    for (index_t i = 0; i < t.numel(); ++i)
      PLM_FUZZ_EXPECT(t.data()[i] == expected.second[static_cast<std::size_t>(i)], "tensor '", name, "' element ", i, " reads ",
                      t.data()[i]);
  }
  return 0;
}

// ---------------------------------------------------------------------------
// config.json

// read_t5_config; a config it accepts must write and read back to itself.
// An ESM config.json: accepted only without NUL bytes, and written back it reads the same.
inline bool read_esm_config(Scratch& s, const std::string& path, const std::uint8_t* data, std::size_t size) {
  nn::EsmConfig c;
  if (!attempt([&] { c = io::read_esm_config(path); })) return false;
  PLM_FUZZ_EXPECT(!has_nul(data, size), "an ESM config.json holding a NUL byte was accepted");
  const std::string again = s.dir() + "/esm_config_again.json";
  attempt([&] {
    io::write_esm_config(c, again);
    const nn::EsmConfig d = io::read_esm_config(again);
    const bool same = c.vocab_size == d.vocab_size && c.hidden_size == d.hidden_size && c.num_hidden_layers == d.num_hidden_layers &&
                      c.num_attention_heads == d.num_attention_heads && c.intermediate_size == d.intermediate_size &&
                      c.hidden_dropout_prob == d.hidden_dropout_prob && c.attention_probs_dropout_prob == d.attention_probs_dropout_prob &&
                      c.rope_theta == d.rope_theta && c.layer_norm_eps == d.layer_norm_eps && c.token_dropout == d.token_dropout &&
                      c.mask_token_id == d.mask_token_id && c.pad_token_id == d.pad_token_id &&
                      c.tie_word_embeddings == d.tie_word_embeddings && c.initializer_range == d.initializer_range;
    PLM_FUZZ_EXPECT(same, "ESM config does not read back as written");
  });
  return true;
}

// A BERT config.json: the same rules.
inline bool read_bert_config(Scratch& s, const std::string& path, const std::uint8_t* data, std::size_t size) {
  nn::BertConfig c;
  if (!attempt([&] { c = io::read_bert_config(path); })) return false;
  PLM_FUZZ_EXPECT(!has_nul(data, size), "a BERT config.json holding a NUL byte was accepted");
  const std::string again = s.dir() + "/bert_config_again.json";
  attempt([&] {
    io::write_bert_config(c, again);
    const nn::BertConfig d = io::read_bert_config(again);
    const bool same = c.vocab_size == d.vocab_size && c.hidden_size == d.hidden_size && c.num_hidden_layers == d.num_hidden_layers &&
                      c.num_attention_heads == d.num_attention_heads && c.intermediate_size == d.intermediate_size &&
                      c.max_position_embeddings == d.max_position_embeddings && c.type_vocab_size == d.type_vocab_size &&
                      c.layer_norm_eps == d.layer_norm_eps && c.pad_token_id == d.pad_token_id &&
                      c.tie_word_embeddings == d.tie_word_embeddings;
    PLM_FUZZ_EXPECT(same, "BERT config does not read back as written");
  });
  return true;
}

// The input is a config.json, read as a T5, an ESM and a BERT config.
inline int fuzz_config(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  Scratch& s = Scratch::get();
  const std::string path = s.write("config.json", data, size);
  const bool esm_ok = read_esm_config(s, path, data, size), bert_ok = read_bert_config(s, path, data, size);
  const bool esm = esm_ok || bert_ok;  // another family accepted it
  nn::T5Config c;
  if (!attempt([&] { c = io::read_t5_config(path); }, /*primary=*/!esm)) return 0;
  PLM_FUZZ_EXPECT(!has_nul(data, size), "a config.json holding a NUL byte was accepted");
  const std::string again = s.dir() + "/config_again.json";
  attempt([&] {
    io::write_t5_config(c, again, /*encoder_only=*/c.num_decoder_layers == 0);
    const nn::T5Config d = io::read_t5_config(again);
    const bool same =
        c.vocab_size == d.vocab_size && c.d_model == d.d_model && c.d_kv == d.d_kv && c.d_ff == d.d_ff &&
        c.num_heads == d.num_heads && c.num_layers == d.num_layers && c.num_decoder_layers == d.num_decoder_layers &&
        c.relative_attention_num_buckets == d.relative_attention_num_buckets &&
        c.relative_attention_max_distance == d.relative_attention_max_distance &&
        c.layer_norm_epsilon == d.layer_norm_epsilon && c.dropout_rate == d.dropout_rate &&
        c.initializer_factor == d.initializer_factor && c.tie_word_embeddings == d.tie_word_embeddings &&
        c.feed_forward_proj == d.feed_forward_proj && c.pad_token_id == d.pad_token_id &&
        c.eos_token_id == d.eos_token_id && c.decoder_start_token_id == d.decoder_start_token_id;
    PLM_FUZZ_EXPECT(same, "config does not read back as written");
  });
  return 0;
}

// ---------------------------------------------------------------------------
// Vocabularies

// What a program does with a vocabulary it loaded: ids and tokens agree both
// ways, specials and sentinels resolve, a protein encodes and decodes.
inline void exercise_vocabulary(const data::Vocabulary& v) {
  const std::int32_t n = v.size();
  PLM_FUZZ_EXPECT(n > 0 && static_cast<std::size_t>(n) == v.tokens().size(), "size ", n);
  for (std::int32_t i = 0; i < n && i < 4096; ++i) {
    const std::string& t = v.token(i);
    PLM_FUZZ_EXPECT(!t.empty() && v.id_of(t) == i, "token ", i, " '", t, "' does not map back to its id");
  }
  for (std::int32_t id : {v.pad_id(), v.eos_id(), v.unk_id()})
    PLM_FUZZ_EXPECT(id >= 0 && id < n, "special id ", id, " outside the vocabulary of ", n);
  for (std::int32_t k = 0; k < v.num_sentinels(); ++k)
    PLM_FUZZ_EXPECT(v.is_sentinel(v.sentinel_id(k)), "sentinel ", k, " is not a sentinel");
  if (v.has_task_tokens()) (void)(v.nlu_id() + v.s2s_id());
  for (std::int32_t id : v.residue_ids()) PLM_FUZZ_EXPECT(v.is_residue(id), "residue id ", id);
  for (char c = 'A'; c <= 'Z'; ++c)
    if (const auto id = v.residue_id(c)) {
      PLM_FUZZ_EXPECT(*id >= 0 && *id < n, "residue '", c, "' has id ", *id);
      if (v.is_residue(*id)) {
        const std::string back = v.decode(&*id, 1, false);
        PLM_FUZZ_EXPECT(back == std::string(1, c), "residue '", c, "' decodes as '", back, "'");
      }
    }
  for (data::RarePolicy rare : {data::RarePolicy::keep, data::RarePolicy::unk, data::RarePolicy::error})
    attempt([&] {
      data::EncodeOptions eo;
      eo.rare = rare;
      const auto ids = v.encode("MKTAYIAKQRqisfvkshfsrXBZUO*", eo, "fuzz");
      for (std::int32_t id : ids) PLM_FUZZ_EXPECT(id >= 0 && id < n, "encode gave id ", id);
      (void)v.decode(ids);
      (void)v.decode(ids, false);
    });
}

// What a program does with a tokenizer it loaded: a protein (with lowercase,
// rare residues, a stop and gaps) encodes in both styles to ids inside the
// vocabulary, and every character is held by exactly one token, in order.
inline void exercise_tokenizer(const data::Tokenizer& t) {
  const std::string protein = "MKTAYIAKQRqisfvkshfsrXBZUO*-.";
  for (const data::InputStyle style : {data::InputStyle::words, data::InputStyle::string}) {
    const data::Encoding e = t.encode(protein, style, "fuzz");
    PLM_FUZZ_EXPECT(e.ids.size() == e.begin.size() && e.ids.size() == e.end.size(), "encoding arrays differ in length");
    std::int32_t next = 0;
    for (std::size_t k = 0; k < e.size(); ++k) {
      PLM_FUZZ_EXPECT(e.ids[k] >= 0 && e.ids[k] < t.vocabulary().size(), "encode gave id ", e.ids[k]);
      PLM_FUZZ_EXPECT(e.begin[k] <= e.end[k], "token ", k, " holds [", e.begin[k], ", ", e.end[k], ")");
      if (e.holds_residue(k)) {
        PLM_FUZZ_EXPECT(e.begin[k] == next, "token ", k, " starts at column ", e.begin[k], ", expected ", next);
        next = e.end[k];
      }
    }
    PLM_FUZZ_EXPECT(next == static_cast<std::int32_t>(protein.size()), "the tokens hold ", next, " of ", protein.size(), " characters");
  }
}

inline data::Specials alternative_specials() {  // BERT-style names
  data::Specials s;
  s.pad = "[PAD]";
  s.eos = "[SEP]";
  s.unk = "[UNK]";
  s.nlu = "[CLS]";
  s.s2s = "";
  s.sentinel_prefix = "[unused";
  s.sentinel_suffix = "]";
  return s;
}

// A Hugging Face tokenizer.json, through Vocabulary::load (the .json name
// picks from_tokenizer_json), from_tokenizer_json with other special names and
// Tokenizer::from_tokenizer_json (every component), then encoding a protein;
// and the bytes as a SentencePiece precompiled character map.
inline int fuzz_tokenizer_json(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::string path = Scratch::get().write("tokenizer.json", data, size);
  if (attempt([&] { exercise_vocabulary(data::Vocabulary::load(path)); }, true))
    PLM_FUZZ_EXPECT(!has_nul(data, size), "a tokenizer.json holding a NUL byte was accepted");
  if (fnv1a(data, size) & 1)
    attempt([&] { exercise_vocabulary(data::Vocabulary::from_tokenizer_json(path, alternative_specials())); });
  // The whole tokenizer: normalizer, pre-tokenizer, model and post-processor.
  attempt([&] { exercise_tokenizer(data::Tokenizer::from_tokenizer_json(path)); });
  // The same bytes as a SentencePiece character map (the Precompiled normalizer's blob).
  attempt([&] {
    const data::detail::Charsmap map(std::string(reinterpret_cast<const char*>(data), size));
    for (const char* key : {"A", "m", "*", "\xEF\xBC\xA1", "\xE2\x96\x81"}) (void)map.lookup(key);
  });
  return 0;
}

// A vocabulary file (one token per line, SentencePiece's "piece<TAB>score"),
// through Vocabulary::load (a name not ending in .json) and from_vocab_file.
inline int fuzz_vocab_file(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::string path = Scratch::get().write("tokens.vocab", data, size);
  // as an EsmTokenizer's vocab.txt, and as plm's vocabulary file (an input
  // counts as refused when both refuse it)
  const bool esm_ok = attempt([&] { exercise_tokenizer(data::Tokenizer::from_esm_vocab(path)); });
  const bool bert_ok = attempt([&] { exercise_tokenizer(data::Tokenizer::from_bert_vocab(path)); });
  const bool esm = esm_ok || bert_ok;
  attempt([&] { exercise_vocabulary(data::Vocabulary::load(path)); }, /*primary=*/!esm);
  if (fnv1a(data, size) & 1)
    attempt([&] { exercise_vocabulary(data::Vocabulary::from_vocab_file(path, alternative_specials())); });
  return 0;
}

// ---------------------------------------------------------------------------
// Labelled sets, pair lists, cluster splits

// The input is three files separated by lines "%%": a FASTA file, a table
// "ID<TAB>LABEL" (read as labels and as clusters), and a pair list
// "ID_A<TAB>ID_B<TAB>1|0" over the ids of the first two.
inline int fuzz_labelled(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const auto parts = split_parts(data, size, 3);
  Scratch& s = Scratch::get();
  const std::string fasta = s.write("set.fasta", parts[0]);
  const std::string table = s.write("labels.tsv", parts[1]);
  const std::string pairs = s.write("pairs.tsv", parts[2]);
  const std::uint64_t h = fnv1a(data, size);

  std::vector<std::string> ids;
  data::LabelTable t;
  const bool table_ok = attempt([&] { t = data::LabelTable::read(table); }, true);
  if (table_ok) {
    std::map<std::string, int> seen;
    for (const auto& [id, label] : t.rows) {
      PLM_FUZZ_EXPECT(!id.empty() && !label.empty(), "empty id or label");
      PLM_FUZZ_EXPECT(++seen[id] == 1, "id '", id, "' listed twice");
      ids.push_back(id);
    }
  }
  if (table_ok)  // the table as a split table too: every split one of the three, in the order of ids
    attempt([&] {
      const std::vector<data::Split> split = data::read_split_table(ids, table);
      PLM_FUZZ_EXPECT(split.size() == ids.size(), "split sizes");
    });
  for (bool require_all : {false, true})
    attempt(
        [&] {
          const data::LabelledSet set = data::read_labelled(fasta, table, {}, require_all);
          PLM_FUZZ_EXPECT(set.ids.size() == set.sequences.size() && set.ids.size() == set.labels.size(), "sizes");
          PLM_FUZZ_EXPECT(std::is_sorted(set.class_names.begin(), set.class_names.end()), "class names not sorted");
          for (std::int32_t label : set.labels)
            PLM_FUZZ_EXPECT(label >= 0 && label < set.num_classes(), "label ", label, " of ", set.num_classes());
          if (require_all) PLM_FUZZ_EXPECT(set.unlabelled == 0 && set.missing == 0, "require_all let one through");
          if (!require_all)
            for (const std::string& id : set.ids) ids.push_back(id);
        },
        !require_all && table_ok);

  attempt([&] {
    const data::PairList p = data::PairList::read(pairs, ids);
    PLM_FUZZ_EXPECT(p.partners.size() == ids.size() && p.non_partners.size() == ids.size(), "list sizes");
    const auto has = [](const std::vector<index_t>& l, index_t x) { return std::binary_search(l.begin(), l.end(), x); };
    for (std::size_t i = 0; i < ids.size(); ++i)
      for (const auto* lists : {&p.partners, &p.non_partners}) {
        const auto& l = (*lists)[i];
        PLM_FUZZ_EXPECT(std::adjacent_find(l.begin(), l.end(), [](index_t a, index_t b) { return a >= b; }) == l.end(),
                        "list of ", i, " not sorted and unique");
        for (index_t j : l) {
          PLM_FUZZ_EXPECT(j >= 0 && static_cast<std::size_t>(j) < ids.size() && j != static_cast<index_t>(i), "index ", j);
          PLM_FUZZ_EXPECT(has((*lists)[static_cast<std::size_t>(j)], static_cast<index_t>(i)), "pair not symmetric");
        }
      }
  });

  if (table_ok) {
    data::SplitFractions f;
    f.valid = static_cast<double>((h >> 8) % 5) / 10;
    f.test = static_cast<double>((h >> 16) % 5) / 10;
    attempt([&] {
      const auto split = data::split_by_cluster(ids, table, f, h >> 32);
      PLM_FUZZ_EXPECT(split.size() == ids.size(), "split sizes");
      std::map<std::string, data::Split> of_cluster;
      std::map<std::string, std::string> cluster_of;
      for (const auto& [id, c] : t.rows) cluster_of.emplace(id, c);
      for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto [it, fresh] = of_cluster.emplace(cluster_of.at(ids[i]), split[i]);
        PLM_FUZZ_EXPECT(fresh || it->second == split[i], "cluster '", it->first, "' straddles two splits");
      }
    });
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Training checkpoints

// The small model the checkpoint harness loads into (make_seeds.cpp saves its
// seeds from the same): three parameters and one optimizer-state tensor.
struct CheckpointModel {
  nn::ParameterSet<cpu, float> params;
  Tensor<cpu, float> moment{Shape{2, 2}};
  CheckpointModel() {
    params.add("encoder.weight", Shape{2, 3}, 0.02);
    params.add("encoder.bias", Shape{3}, 0, 0.5);
    params.add("head.scale", Shape{1}, 0, 1);
    params.allocate();
    params.init(7);
    for (index_t i = 0; i < moment.numel(); ++i) moment.data()[i] = 0.125f * static_cast<float>(i);
  }
  std::vector<io::NamedTensor<cpu, float>> state() { return {{"adamw.m", moment.view()}}; }
  std::vector<float> snapshot() const {
    std::vector<float> v(params.values().data(), params.values().data() + params.values().numel());
    v.insert(v.end(), moment.data(), moment.data() + moment.numel());
    return v;
  }
  static nlohmann::json fingerprint() { return {{"model", "fuzz-tiny"}, {"seed", 7}}; }
};

inline CheckpointModel& checkpoint_model() {
  static CheckpointModel m;  // built once, not per input
  return m;
}

// io::load_checkpoint into the small model, then check_fingerprint on what it
// returns. A refused checkpoint must leave parameters and state untouched.
inline void load_checkpoint_input(const std::uint8_t* data, std::size_t size, bool primary) {
  const std::string path = Scratch::get().write("checkpoint.safetensors", data, size);
  CheckpointModel& m = checkpoint_model();
  const std::vector<float> before = m.snapshot();
  io::TrainingState ts;
  const bool ok = attempt([&] { ts = io::load_checkpoint<cpu, float>(path, m.params, m.state()); }, primary);
  if (!ok) {
    const std::vector<float> after = m.snapshot();
    PLM_FUZZ_EXPECT(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)) == 0,
                    "a refused checkpoint changed the parameters");
    return;
  }
  attempt([&] { io::check_fingerprint(path, ts, CheckpointModel::fingerprint()); });
}

inline int fuzz_checkpoint(const std::uint8_t* data, std::size_t size) {
  return on_input_and_repaired(data, size,
                               [](const std::uint8_t* d, std::size_t n, bool primary) { load_checkpoint_input(d, n, primary); });
}

// ---------------------------------------------------------------------------
// Metrics log

// MetricsLog::read, then what a resumed run does: reopen the log at a step,
// which keeps the lines up to it and drops the rest, append a line, read again.
inline int fuzz_metrics(const std::uint8_t* data, std::size_t size) {
  first_error().clear();
  const std::string path = Scratch::get().write("metrics.jsonl", data, size);
  std::vector<nlohmann::json> rows;
  if (attempt([&] { rows = train::MetricsLog::read(path); }, true))
    PLM_FUZZ_EXPECT(!has_nul(data, size), "a log holding a NUL byte was read as ", rows.size(), " records");
  const std::int64_t resume = static_cast<std::int64_t>(fnv1a(data, size) % 64);
  const bool resumed = attempt([&] {
    train::MetricsLog log(path, resume);
    log.write({{"step", resume + 1}, {"split", "train"}, {"loss", 1.5}});
  });
  if (!resumed) return 0;
  // A log the resume accepted and appended to must read back whole.
  std::vector<nlohmann::json> kept;
  try {
    kept = train::MetricsLog::read(path);
  } catch (const Error& e) {
    PLM_FUZZ_EXPECT(false, "the log resumed at step ", resume, " and appended to does not read back: ", e.what());
  }
  PLM_FUZZ_EXPECT(!kept.empty() && kept.back().value("step", std::int64_t{-1}) == resume + 1,
                  "the appended line is not the last record");
  for (std::size_t i = 0; i + 1 < kept.size(); ++i) {
    const nlohmann::json& j = kept[i];
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer())
      PLM_FUZZ_EXPECT(j["step"].get<std::int64_t>() <= resume, "kept a line of step ", j["step"].dump(),
                      " after resuming at ", resume);
  }
  return 0;
}

// ---------------------------------------------------------------------------
// The table of harnesses: the name is the fuzzer's (fuzz_<name>) and the
// corpus and regression folders' (tests/fuzz/corpus/<name>, regressions/<name>).

struct Harness {
  const char* name;
  int (*run)(const std::uint8_t*, std::size_t);
};

inline const std::vector<Harness>& harnesses() {
  static const std::vector<Harness> all = {
      {"fasta", fuzz_fasta},
      {"fasta_gz_raw", fuzz_fasta_gz_raw},
      {"fasta_gz", fuzz_fasta_gz},
      {"safetensors", fuzz_safetensors},
      {"config", fuzz_config},
      {"tokenizer_json", fuzz_tokenizer_json},
      {"vocab_file", fuzz_vocab_file},
      {"labelled", fuzz_labelled},
      {"checkpoint", fuzz_checkpoint},
      {"metrics", fuzz_metrics},
      {"weights_index", fuzz_weights_index},
  };
  return all;
}

}  // namespace plm::fuzz
