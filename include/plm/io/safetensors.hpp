#pragma once
// Hugging Face safetensors files: checked reading on demand, atomic writing.
//
// Layout: an 8-byte little-endian u64 N, N bytes of JSON header, then the data
// section. The header maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with byte offsets relative to the start of the data section, and may hold
// "__metadata__", a map of strings to strings. Tensor data is row-major and
// little-endian.
//
// SafetensorsReader reads and checks only the header when it is constructed;
// each read() then fetches one tensor with positional reads, so opening a
// checkpoint of several GB is cheap and a model loads one parameter at a time.
// read() may be called from several threads at once.
//
// Little-endian hosts only: the bytes of the data section are the in-memory
// representation of the elements.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/backend/cpu/memory.hpp"
#include "plm/backend/tags.hpp"
#include "plm/core/dtype.hpp"
#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/core/shape.hpp"
#include "plm/core/tensor.hpp"
#include "plm/io/atomic_file.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "plm: safetensors io supports little-endian hosts only (the file's byte order is little-endian)");
#endif

namespace plm::io {

// One tensor as the header describes it.
struct TensorInfo {
  std::string name;
  std::string dtype;  // as stored: "F32", "BF16", "I64", ...
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data section
};

namespace detail {

// The safetensors dtypes with a whole number of bytes per element; 0 for any other name.
inline std::size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::pair<const char*, std::size_t> sizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8},  {"F64", 8},     {"C64", 8}};
  for (const auto& [name, size] : sizes)
    if (dtype == name) return size;
  return 0;
}

// The element types plm reads and writes, and their safetensors names.
template <class T> inline constexpr bool is_safetensors_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::uint8_t>;

template <class T>
constexpr const char* safetensors_name() {
  if constexpr (std::is_same_v<T, float>) return "F32";
  else if constexpr (std::is_same_v<T, double>) return "F64";
  else if constexpr (std::is_same_v<T, bf16>) return "BF16";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "I32";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "I64";
  else return "U8";
}

// The stored dtypes read() converts from.
enum class Stored { f64, f32, f16, bf16, i64, i32, u8, boolean, other };
inline Stored stored_kind(const std::string& d) {
  if (d == "F64") return Stored::f64;
  if (d == "F32") return Stored::f32;
  if (d == "F16") return Stored::f16;
  if (d == "BF16") return Stored::bf16;
  if (d == "I64") return Stored::i64;
  if (d == "I32") return Stored::i32;
  if (d == "U8") return Stored::u8;
  if (d == "BOOL") return Stored::boolean;
  return Stored::other;
}
inline bool is_floating(Stored s) { return s == Stored::f64 || s == Stored::f32 || s == Stored::f16 || s == Stored::bf16; }

// IEEE binary16 -> float, exact (every half is a float).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);  // inf, NaN (payload kept)
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else {
    const float f = static_cast<float>(mant) * 5.9604644775390625e-08f;  // subnormal: mant * 2^-24
    return sign ? -f : f;
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline bool little_endian_host() {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// "(2, 3)", "(7,)", "()": the same spelling as plm::Shape, for any rank.
inline std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// One stored element, decoded to the value conversions start from: double or
// float for the floating dtypes (every F16/BF16 value is a float), int64 for the
// integer ones.
template <class U>
U load_le(const unsigned char* p) {
  U v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <Stored S>
auto decode(const unsigned char* p) {
  if constexpr (S == Stored::f64) return load_le<double>(p);
  else if constexpr (S == Stored::f32) return load_le<float>(p);
  else if constexpr (S == Stored::f16) return half_to_float(load_le<std::uint16_t>(p));
  else if constexpr (S == Stored::bf16) return bf16::to_float(load_le<std::uint16_t>(p));
  else if constexpr (S == Stored::i64) return load_le<std::int64_t>(p);
  else if constexpr (S == Stored::i32) return static_cast<std::int64_t>(load_le<std::int32_t>(p));
  else if constexpr (S == Stored::u8) return static_cast<std::int64_t>(*p);
  else return static_cast<std::int64_t>(*p != 0);  // BOOL
}
template <Stored S>
inline constexpr std::size_t stored_size = S == Stored::f64 || S == Stored::i64   ? 8
                                           : S == Stored::f32 || S == Stored::i32 ? 4
                                           : S == Stored::f16 || S == Stored::bf16 ? 2
                                                                                   : 1;

}  // namespace detail

// Reads a safetensors file. The constructor checks the whole header (types,
// known dtypes, sizes against shapes, offsets inside the data section, no two
// tensors overlapping), so a read() that follows can only fail on the request
// itself (shape, conversion) or on the file changing underneath.
class SafetensorsReader {
 public:
  // The safetensors reference implementation's limit; a larger "header" means
  // the file is not safetensors at all, and reading it would be a waste.
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  explicit SafetensorsReader(std::string path) : path_(std::move(path)) {
    PLM_CHECK(detail::little_endian_host(), "safetensors: big-endian hosts are not supported (the format is little-endian)");
    detail::InputFile f(path_, "safetensors");
    const std::uint64_t size = f.size();
    if (size < 8) fail("file is ", size, " bytes, shorter than the 8-byte header length");
    unsigned char len[8];
    f.read_at(len, 8, 0);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    if (n > max_header_bytes) fail("header length ", n, " bytes exceeds the 100 MB limit (is this a safetensors file?)");
    if (n > size - 8) fail("header length ", n, " bytes is larger than the rest of the file (", size - 8, " bytes)");
    std::string text(static_cast<std::size_t>(n), '\0');
    f.read_at(text.data(), n, 8);
    data_start_ = 8 + n;
    data_size_ = size - data_start_;
    parse_header(text);
  }

  const std::string& path() const { return path_; }
  // Every tensor, in the order of their data in the file.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads tensor `name` into dst, whose shape must equal the stored one,
  // converting the stored dtype (F64, F32, F16, BF16, I64, I32, U8, BOOL) to T.
  // Floating to integer is refused; integer narrowing checks every value's range.
  // To bf16, values pass through float (F64 -> bf16 may then differ from a
  // direct rounding in the last bit).
  template <class T>
  void read(const std::string& name, TensorView<cpu, T> dst) const {
    static_assert(detail::is_safetensors_type_v<T>,
                  "plm: SafetensorsReader::read reads into float, double, bf16, int32, int64 or uint8 tensors");
    const TensorInfo& info = get(name);
    bool same = static_cast<std::size_t>(dst.rank()) == info.shape.size();
    for (int d = 0; same && d < dst.rank(); ++d) same = dst.dim(d) == info.shape[static_cast<std::size_t>(d)];
    if (!same) fail("tensor '", name, "' has shape ", detail::shape_str(info.shape), " in the file, the destination has ", dst.shape());
    const auto n = static_cast<std::uint64_t>(dst.numel());
    if (n == 0) return;
    PLM_CHECK(dst.data() != nullptr, "safetensors: ", path_, ": read of '", name, "' into an empty view");

    const detail::Stored kind = detail::stored_kind(info.dtype);
    if (kind == detail::Stored::other)
      fail("tensor '", name, "' has dtype ", info.dtype, ", which plm cannot read (readable: F64, F32, F16, BF16, I64, I32, U8, BOOL)");
    if constexpr (std::is_integral_v<T>) {
      if (detail::is_floating(kind))
        fail("tensor '", name, "' is stored as ", info.dtype, "; converting floating point to ", dtype_name(dtype_of_v<T>),
             " is not supported");
    }
    detail::InputFile f(path_, "safetensors");
    if (info.dtype == detail::safetensors_name<T>()) {  // same type: straight into the destination
      f.read_at(dst.data(), info.end - info.begin, data_start_ + info.begin);
      return;
    }
    switch (kind) {
      case detail::Stored::f64: return convert<detail::Stored::f64>(f, info, dst.data());
      case detail::Stored::f32: return convert<detail::Stored::f32>(f, info, dst.data());
      case detail::Stored::f16: return convert<detail::Stored::f16>(f, info, dst.data());
      case detail::Stored::bf16: return convert<detail::Stored::bf16>(f, info, dst.data());
      case detail::Stored::i64: return convert<detail::Stored::i64>(f, info, dst.data());
      case detail::Stored::i32: return convert<detail::Stored::i32>(f, info, dst.data());
      case detail::Stored::u8: return convert<detail::Stored::u8>(f, info, dst.data());
      case detail::Stored::boolean: return convert<detail::Stored::boolean>(f, info, dst.data());
      case detail::Stored::other: break;
    }
  }

  // Allocates a tensor of the stored shape and reads into it.
  template <class T>
  Tensor<cpu, T> load(const std::string& name) const {
    const TensorInfo& info = get(name);
    const auto& s = info.shape;
    if (s.size() > static_cast<std::size_t>(Shape::max_rank))
      fail("tensor '", name, "' has rank ", s.size(), " ", detail::shape_str(s), "; plm tensors have at most ", Shape::max_rank,
           " dimensions");
    Shape shape;
    switch (s.size()) {
      case 0: shape = Shape{}; break;
      case 1: shape = Shape{s[0]}; break;
      case 2: shape = Shape{s[0], s[1]}; break;
      case 3: shape = Shape{s[0], s[1], s[2]}; break;
      default: shape = Shape{s[0], s[1], s[2], s[3]}; break;
    }
    Tensor<cpu, T> t(shape);
    read(name, t.view());
    return t;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(Args&&... args) const {
    PLM_FAIL("safetensors: ", path_, ": ", std::forward<Args>(args)...);
  }

  const TensorInfo& get(const std::string& name) const {
    const TensorInfo* info = find(name);
    if (!info) fail("no tensor named '", name, "' (the file holds ", tensors_.size(), " tensors)");
    return *info;
  }

  // Converts in bounded chunks, so a conversion never holds a second copy of a large tensor.
  template <detail::Stored S, class T>
  void convert(const detail::InputFile& f, const TensorInfo& info, T* dst) const {
    using V = decltype(detail::decode<S>(nullptr));
    if constexpr (std::is_integral_v<T> && !std::is_integral_v<V>) {
      (void)f, (void)info, (void)dst;  // never called: read() refuses floating -> integer first
    } else {
      constexpr std::size_t size = detail::stored_size<S>;
      const std::uint64_t n = (info.end - info.begin) / size;
      const std::uint64_t chunk = std::min<std::uint64_t>(n, (std::uint64_t{1} << 20) / size);
      std::vector<unsigned char> buf(static_cast<std::size_t>(chunk * size));
      for (std::uint64_t i0 = 0; i0 < n; i0 += chunk) {
        const std::uint64_t m = std::min(chunk, n - i0);
        f.read_at(buf.data(), m * size, data_start_ + info.begin + i0 * size);
        for (std::uint64_t i = 0; i < m; ++i) {
          const V v = detail::decode<S>(buf.data() + i * size);
          if constexpr (std::is_same_v<T, bf16>) {
            dst[i0 + i] = bf16(static_cast<float>(v));
          } else if constexpr (std::is_floating_point_v<T>) {
            dst[i0 + i] = static_cast<T>(v);
          } else {  // integer -> integer
            if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
                v > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
              fail("tensor '", info.name, "': ", info.dtype, " value ", v, " at element ", i0 + i, " does not fit in ",
                   dtype_name(dtype_of_v<T>));
            dst[i0 + i] = static_cast<T>(v);
          }
        }
      }
    }
  }

  void parse_header(const std::string& text) {
    const nlohmann::json header = parse_json(text, "safetensors", path_ + ": header", {max_header_bytes, 16});
    if (!header.is_object()) fail("header is not a JSON object but ", header.type_name());
    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        parse_metadata(value);
      } else {
        tensors_.push_back(parse_entry(key, value));
      }
    }
    // Data order, then the overlap check needs only neighbours: each tensor must
    // start at or after the furthest end so far. Empty tensors occupy no bytes.
    std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.name < b.name;
    });
    const TensorInfo* last = nullptr;
    for (const TensorInfo& t : tensors_) {
      if (t.begin == t.end) continue;
      if (last && t.begin < last->end)
        fail("tensors '", last->name, "' [", last->begin, ", ", last->end, ") and '", t.name, "' [", t.begin, ", ", t.end,
             ") overlap");
      if (!last || t.end > last->end) last = &t;
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  void parse_metadata(const nlohmann::json& m) {
    if (!m.is_object()) fail("'__metadata__' must be an object of strings, got ", json_excerpt(m));
    for (const auto& [k, v] : m.items()) {
      if (!v.is_string()) fail("'__metadata__' value of '", k, "' must be a string, got ", json_excerpt(v));
      metadata_.emplace(k, v.get<std::string>());
    }
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& e) const {
    TensorInfo t;
    t.name = name;
    if (!e.is_object()) fail("tensor '", name, "': entry must be an object, got ", json_excerpt(e));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!e.contains(field)) fail("tensor '", name, "': missing '", field, "'");

    const nlohmann::json& dtype = e.at("dtype");
    if (!dtype.is_string()) fail("tensor '", name, "': 'dtype' must be a string, got ", json_excerpt(dtype));
    t.dtype = dtype.get<std::string>();
    const std::size_t elem = detail::safetensors_dtype_size(t.dtype);
    if (elem == 0) fail("tensor '", name, "': unknown dtype '", t.dtype, "'");

    const nlohmann::json& shape = e.at("shape");
    if (!shape.is_array()) fail("tensor '", name, "': 'shape' must be an array of integers, got ", json_excerpt(shape));
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const nlohmann::json& d : shape) {
      if (!d.is_number_integer())
        fail("tensor '", name, "': 'shape' must be an array of integers, got ", json_excerpt(shape));
      if (!d.is_number_unsigned()) fail("tensor '", name, "': negative dimension ", d.get<std::int64_t>(), " in shape ", json_excerpt(shape));
      const auto v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail("tensor '", name, "': dimension ", v, " is too large");
      t.shape.push_back(static_cast<std::int64_t>(v));
      if (v != 0 && numel > std::numeric_limits<std::uint64_t>::max() / v) overflow = true;
      numel *= v;
    }

    const nlohmann::json& off = e.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_integer() || !off[1].is_number_integer())
      fail("tensor '", name, "': 'data_offsets' must be [begin, end], two integers, got ", json_excerpt(off));
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("tensor '", name, "': 'data_offsets' ", json_excerpt(off), " must not be negative");
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    if (t.begin > t.end) fail("tensor '", name, "': data_offsets begin ", t.begin, " is after end ", t.end);

    const std::uint64_t bytes = t.end - t.begin;
    // numel * elem overflowing means no byte range can hold the shape.
    if (overflow || (numel != 0 && elem > std::numeric_limits<std::uint64_t>::max() / numel) || numel * elem != bytes)
      fail("tensor '", name, "': data_offsets [", t.begin, ", ", t.end, ") hold ", bytes, " bytes, but shape ",
           detail::shape_str(t.shape), " of ", t.dtype, " needs ", overflow ? std::string("more than 2^64") : std::to_string(numel), " x ", elem);
    if (t.end > data_size_)
      fail("tensor '", name, "': data_offsets end ", t.end, " is beyond the data section (", data_size_, " bytes)");
    return t;
  }

  std::string path_;
  std::uint64_t data_start_ = 0, data_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and metadata, then writes one safetensors file atomically.
// add() keeps a pointer to the data, not a copy (checkpoints are large): the
// tensors must stay alive and unchanged until write() returns.
class SafetensorsWriter {
 public:
  template <class T>
  void add(const std::string& name, TensorView<cpu, const T> t) {
    static_assert(detail::is_safetensors_type_v<T>, "plm: SafetensorsWriter::add takes float, double, bf16, int32, int64 or uint8 tensors");
    PLM_CHECK(!name.empty(), "safetensors: a tensor name must not be empty");
    PLM_CHECK(name != "__metadata__", "safetensors: '__metadata__' is reserved for the metadata and cannot name a tensor");
    PLM_CHECK(!entries_.count(name), "safetensors: tensor '", name, "' added twice");
    PLM_CHECK(t.numel() == 0 || t.data() != nullptr, "safetensors: tensor '", name, "' is an empty view");
    Entry e;
    e.dtype = detail::safetensors_name<T>();
    for (int d = 0; d < t.rank(); ++d) e.shape.push_back(t.dim(d));
    e.data = t.data();
    e.bytes = static_cast<std::uint64_t>(t.numel()) * sizeof(T);
    entries_.emplace(name, std::move(e));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  std::size_t size() const { return entries_.size(); }

  // Tensors are laid out in name order. The header is padded with spaces to a
  // multiple of 8 bytes so the data section starts aligned, as the reference
  // implementation does.
  void write(const std::string& path) const {
    PLM_CHECK(detail::little_endian_host(), "safetensors: big-endian hosts are not supported (the format is little-endian)");
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& [name, e] : entries_) {
      header[name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes}}};
      offset += e.bytes;
    }
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& err) {  // names and metadata must be UTF-8
      PLM_FAIL("safetensors: ", path, ": cannot encode the header: ", err.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));

    write_file_atomically(path, [&](AtomicFile& f) {
      f.write(len, 8);
      f.write(text);
      for (const auto& entry : entries_) f.write(entry.second.data, entry.second.bytes);
    });
  }

 private:
  struct Entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    const void* data = nullptr;
    std::uint64_t bytes = 0;
  };
  std::map<std::string, Entry> entries_;  // ordered: the file's layout is by name
  std::map<std::string, std::string> metadata_;
};

}  // namespace plm::io
