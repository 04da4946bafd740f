// io/: safetensors reading and writing, T5 config.json, atomic file replacement.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ops_test_support.hpp"
#include "plm/io/hf_config.hpp"
#include "plm/io/safetensors.hpp"

using namespace plm;
using plm::test::check_error;
using plm::test::TempDir;
namespace fs = std::filesystem;

namespace {


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}
std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}
// A safetensors file by hand: length, header text, data bytes.
std::string st_file(const std::string& header, const std::string& data = "") { return le64(header.size()) + header + data; }

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

template <class T>
bool same_bits(ConstView<cpu, T> a, ConstView<cpu, T> b) {
  return a.shape() == b.shape() &&
         (a.numel() == 0 || std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(T)) == 0);
}

template <class T>
Tensor<cpu, T> iota_tensor(Shape s, double start, double step) {
  Tensor<cpu, T> t(s);
  for (index_t i = 0; i < t.numel(); ++i) {
    const double v = start + step * static_cast<double>(i);
    if constexpr (std::is_same_v<T, bf16>) t.data()[i] = bf16(static_cast<float>(v));
    else t.data()[i] = static_cast<T>(v);
  }
  return t;
}

void check_same_config(const nn::T5Config& a, const nn::T5Config& b) {
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.d_model == b.d_model);
  CHECK(a.d_kv == b.d_kv);
  CHECK(a.d_ff == b.d_ff);
  CHECK(a.num_heads == b.num_heads);
  CHECK(a.num_layers == b.num_layers);
  CHECK(a.num_decoder_layers == b.num_decoder_layers);
  CHECK(a.relative_attention_num_buckets == b.relative_attention_num_buckets);
  CHECK(a.relative_attention_max_distance == b.relative_attention_max_distance);
  CHECK(a.layer_norm_epsilon == b.layer_norm_epsilon);
  CHECK(a.dropout_rate == b.dropout_rate);
  CHECK(a.initializer_factor == b.initializer_factor);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.scales_decoder_outputs() == b.scales_decoder_outputs());
  CHECK(a.feed_forward_proj == b.feed_forward_proj);
  CHECK(a.pad_token_id == b.pad_token_id);
  CHECK(a.eos_token_id == b.eos_token_id);
  CHECK(a.decoder_start_token_id == b.decoder_start_token_id);
}

}  // namespace

// --- safetensors: round trips -------------------------------------------------

TEST_CASE("safetensors: every dtype round-trips bit for bit, laid out in name order") {
  TempDir tmp;
  const std::string path = tmp.file("all.safetensors");
  auto f32 = iota_tensor<float>(Shape{3, 5}, -1.25, 0.37);
  f32.data()[1] = std::numeric_limits<float>::infinity();
  f32.data()[2] = -0.0f;
  auto f64 = iota_tensor<double>(Shape{2, 3, 4}, 1e-300, 0.1);
  auto b16 = iota_tensor<bf16>(Shape{7}, -3, 0.77);
  auto i32 = iota_tensor<std::int32_t>(Shape{2, 2, 2, 2}, -2147483647.0, 1e8);
  auto i64 = iota_tensor<std::int64_t>(Shape{5}, -5e15, 3e15);
  i64.data()[4] = std::numeric_limits<std::int64_t>::max();
  auto u8 = iota_tensor<std::uint8_t>(Shape{3, 1}, 0, 127);
  Tensor<cpu, float> scalar(Shape{});
  scalar.data()[0] = 42.5f;
  Tensor<cpu, float> none(Shape{0, 3});

  io::SafetensorsWriter w;
  // Added out of name order on purpose: the file is laid out by name.
  w.add("z.f32", f32);
  w.add("a.f64", f64);
  w.add("m.bf16", b16);
  w.add("c.i32", i32);
  w.add("d.i64", i64);
  w.add("e.u8", u8);
  w.add("s.scalar", scalar);
  w.add("n.empty", none);
  CHECK(w.size() == 8);
  w.write(path);

  // Header length is a multiple of 8, so the data section starts aligned.
  const std::string raw = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  CHECK(n % 8 == 0);
  CHECK(nlohmann::json::parse(raw.substr(8, n)).is_object());

  io::SafetensorsReader r(path);
  REQUIRE(r.tensors().size() == 8);
  std::vector<std::string> names;
  for (const auto& t : r.tensors()) names.push_back(t.name);
  // Data order; the empty tensor occupies no bytes and sorts with its neighbour's offset.
  CHECK(names == std::vector<std::string>{"a.f64", "c.i32", "d.i64", "e.u8", "m.bf16", "n.empty", "s.scalar", "z.f32"});
  for (std::size_t i = 1; i < r.tensors().size(); ++i) CHECK(r.tensors()[i].begin == r.tensors()[i - 1].end);
  CHECK(r.tensors().back().end == raw.size() - 8 - n);

  const io::TensorInfo* info = r.find("m.bf16");
  REQUIRE(info != nullptr);
  CHECK(info->dtype == "BF16");
  CHECK(info->shape == std::vector<std::int64_t>{7});
  CHECK(info->end - info->begin == 14);
  CHECK(r.find("nope") == nullptr);
  CHECK(r.contains("e.u8"));
  CHECK_FALSE(r.contains("e"));
  CHECK(r.find("a.f64")->dtype == "F64");
  CHECK(r.find("c.i32")->dtype == "I32");
  CHECK(r.find("d.i64")->dtype == "I64");
  CHECK(r.find("e.u8")->dtype == "U8");
  CHECK(r.find("z.f32")->dtype == "F32");
  CHECK(r.find("s.scalar")->shape.empty());
  CHECK(r.metadata().empty());

  CHECK(same_bits<float>(r.load<float>("z.f32"), f32));
  CHECK(same_bits<double>(r.load<double>("a.f64"), f64));
  CHECK(same_bits<bf16>(r.load<bf16>("m.bf16"), b16));
  CHECK(same_bits<std::int32_t>(r.load<std::int32_t>("c.i32"), i32));
  CHECK(same_bits<std::int64_t>(r.load<std::int64_t>("d.i64"), i64));
  CHECK(same_bits<std::uint8_t>(r.load<std::uint8_t>("e.u8"), u8));
  CHECK(same_bits<float>(r.load<float>("s.scalar"), scalar));
  CHECK(r.load<float>("n.empty").shape() == Shape{0, 3});

  // read() into an existing tensor, and into a view of a larger buffer.
  Tensor<cpu, float> into(Shape{3, 5});
  r.read("z.f32", into);
  CHECK(same_bits<float>(into, f32));
  Tensor<cpu, float> big(Shape{4, 3, 5});
  r.read("z.f32", big[2]);
  CHECK(same_bits<float>(big[2], f32));
}

TEST_CASE("safetensors: read converts between dtypes") {
  TempDir tmp;
  const std::string path = tmp.file("conv.safetensors");
  auto f32 = iota_tensor<float>(Shape{2, 3}, -1.1, 0.45);
  auto b16 = iota_tensor<bf16>(Shape{4}, -2.3, 1.7);
  Tensor<cpu, std::int64_t> i64(Shape{5});
  const std::int64_t i64_values[] = {0, -1, 2147483647, -2147483647 - 1, 12345};
  std::memcpy(i64.data(), i64_values, sizeof i64_values);
  auto f64 = iota_tensor<double>(Shape{3}, 1.0 / 3.0, 1e-3);
  auto i32 = iota_tensor<std::int32_t>(Shape{3}, -7, 100);
  auto u8 = iota_tensor<std::uint8_t>(Shape{3}, 250, 2);
  io::SafetensorsWriter w;
  w.add("f32", f32);
  w.add("bf16", b16);
  w.add("i64", i64);
  w.add("f64", f64);
  w.add("i32", i32);
  w.add("u8", u8);
  w.write(path);
  io::SafetensorsReader r(path);

  auto as_double = r.load<double>("f32");  // widening is exact
  for (index_t i = 0; i < f32.numel(); ++i) CHECK(as_double.data()[i] == static_cast<double>(f32.data()[i]));
  auto as_float = r.load<float>("bf16");  // bf16 -> float is exact
  for (index_t i = 0; i < b16.numel(); ++i) CHECK(as_float.data()[i] == static_cast<float>(b16.data()[i]));
  auto as_i32 = r.load<std::int32_t>("i64");  // in range: exact
  for (index_t i = 0; i < i64.numel(); ++i) CHECK(as_i32.data()[i] == i64.data()[i]);
  auto f64_as_float = r.load<float>("f64");
  for (index_t i = 0; i < f64.numel(); ++i) CHECK(f64_as_float.data()[i] == static_cast<float>(f64.data()[i]));
  auto f32_as_bf16 = r.load<bf16>("f32");  // the same rounding as plm's bf16
  for (index_t i = 0; i < f32.numel(); ++i) CHECK(f32_as_bf16.data()[i] == bf16(f32.data()[i]));
  auto i32_as_i64 = r.load<std::int64_t>("i32");
  for (index_t i = 0; i < i32.numel(); ++i) CHECK(i32_as_i64.data()[i] == i32.data()[i]);
  auto i32_as_float = r.load<float>("i32");
  for (index_t i = 0; i < i32.numel(); ++i) CHECK(i32_as_float.data()[i] == static_cast<float>(i32.data()[i]));
  auto u8_as_i32 = r.load<std::int32_t>("u8");
  for (index_t i = 0; i < u8.numel(); ++i) CHECK(u8_as_i32.data()[i] == u8.data()[i]);
}

TEST_CASE("safetensors: conversions of tensors larger than one 1 MiB chunk") {
  TempDir tmp;
  const std::string path = tmp.file("big.safetensors");
  auto f32 = iota_tensor<float>(Shape{3, 100003}, -7, 1e-4);  // 1.2 MB: two chunks and a partial one
  auto i64 = iota_tensor<std::int64_t>(Shape{300001}, -150000, 1);
  i64.data()[290000] = std::int64_t{1} << 40;  // in the third chunk
  io::SafetensorsWriter w;
  w.add("f32", f32);
  w.add("i64", i64);
  w.write(path);
  io::SafetensorsReader r(path);
  auto d = r.load<double>("f32");
  bool all_equal = true;
  for (index_t i = 0; i < f32.numel(); ++i) all_equal = all_equal && d.data()[i] == static_cast<double>(f32.data()[i]);
  CHECK(all_equal);
  check_error([&] { r.load<std::int32_t>("i64"); }, path, "value 1099511627776 at element 290000 does not fit in i32");
}

TEST_CASE("safetensors: F16 and BOOL, which plm does not write, are read and converted") {
  TempDir tmp;
  const std::string path = tmp.file("hf.safetensors");
  // 1, -2, the smallest subnormal 2^-24, +inf, 65504 (largest half), 1/3 rounded to half.
  const std::vector<std::uint16_t> halves = {0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff, 0x3555};
  const std::vector<std::uint8_t> flags = {1, 0, 1};
  write_bytes(path, st_file(R"({"h": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]},)"
                            R"( "b": {"dtype": "BOOL", "shape": [3], "data_offsets": [12, 15]}})",
                            bytes_of(halves) + bytes_of(flags)));
  io::SafetensorsReader r(path);
  auto h = r.load<float>("h");
  CHECK(h.shape() == Shape{2, 3});
  CHECK(h.at(0, 0) == 1.0f);
  CHECK(h.at(0, 1) == -2.0f);
  CHECK(h.at(0, 2) == std::ldexp(1.0f, -24));
  CHECK(std::isinf(h.at(1, 0)));
  CHECK(h.at(1, 1) == 65504.0f);
  CHECK(h.at(1, 2) == 0.333251953125f);
  auto hd = r.load<double>("h");
  CHECK(hd.at(1, 2) == 0.333251953125);
  auto b = r.load<std::uint8_t>("b");
  CHECK((b.at(0) == 1 && b.at(1) == 0 && b.at(2) == 1));
  auto bf = r.load<float>("b");
  CHECK((bf.at(0) == 1.0f && bf.at(1) == 0.0f));
  auto bi = r.load<std::int64_t>("b");
  CHECK(bi.at(2) == 1);
}

TEST_CASE("safetensors: metadata round-trips") {
  TempDir tmp;
  const std::string path = tmp.file("meta.safetensors");
  Tensor<cpu, float> t(Shape{2});
  t.data()[0] = 1, t.data()[1] = 2;
  io::SafetensorsWriter w;
  w.add("t", t);
  w.set_metadata("format", "pt");
  w.set_metadata("step", "1200");
  w.set_metadata("note", "quotes \" and unicode \xc3\xa9");
  w.set_metadata("step", "1300");  // the last value wins
  w.write(path);
  io::SafetensorsReader r(path);
  CHECK(r.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"step", "1300"}, {"note", "quotes \" and unicode \xc3\xa9"}});
  CHECK(r.tensors().size() == 1);  // __metadata__ is not a tensor
}

TEST_CASE("safetensors: a write is atomic and leaves no temporary file") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  auto a = iota_tensor<float>(Shape{4, 4}, 0, 1);
  {
    io::SafetensorsWriter w;
    w.add("a", a);
    w.write(path);
  }
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  // Overwriting replaces the file as a whole.
  auto b = iota_tensor<double>(Shape{3}, 5, 1);
  {
    io::SafetensorsWriter w;
    w.add("b", b);
    w.write(path);
  }
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  io::SafetensorsReader r(path);
  CHECK_FALSE(r.contains("a"));
  CHECK(same_bits<double>(r.load<double>("b"), b));

  // A target that is a directory is refused before anything is written, and no temporary file is left.
  const std::string dir_target = tmp.file("taken");
  fs::create_directory(dir_target);
  io::SafetensorsWriter w;
  w.add("a", a);
  check_error([&] { w.write(dir_target); }, dir_target, "is a directory", "only regular files");
  std::vector<std::string> entries = tmp.entries();
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"model.safetensors", "taken"});

  // The directory of the target does not exist.
  const std::string missing = tmp.file("no_such_dir/model.safetensors");
  check_error([&] { w.write(missing); }, missing, "cannot create temporary file", "No such file or directory");
}

TEST_CASE("atomic writer: only regular files; a device, FIFO or directory is refused and left as it is; links are followed") {
  TempDir tmp;
  // /dev/full and /dev/null: renaming over them would replace the device node with a file.
  for (const char* dev : {"/dev/full", "/dev/null"}) {
    struct stat before {};
    REQUIRE(::stat(dev, &before) == 0);
    check_error([&] { io::write_file_atomically(dev, [](io::AtomicFile& f) { f.write("x"); }); }, dev, "character device");
    check_error([&] { io::check_new_output(dev, true, "--out"); }, "--out", dev, "character device");
    struct stat after {};
    REQUIRE(::stat(dev, &after) == 0);
    CHECK(S_ISCHR(after.st_mode));
    CHECK(after.st_rdev == before.st_rdev);
  }
  const std::string fifo = tmp.file("pipe");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_error([&] { io::write_file_atomically(fifo, [](io::AtomicFile& f) { f.write("x"); }); }, fifo, "a FIFO");
  CHECK(fs::is_fifo(fifo));
  // A symbolic link: the file it points to is replaced, the link stays a link.
  const std::string real = tmp.file("real.txt"), link = tmp.file("link.txt");
  write_bytes(real, "old");
  fs::create_symlink(real, link);
  io::write_file_atomically(link, [](io::AtomicFile& f) { f.write("new"); });
  CHECK(fs::is_symlink(link));
  CHECK(read_bytes(real) == "new");
  // A link to a device is refused like the device.
  const std::string dev_link = tmp.file("full_link");
  fs::create_symlink("/dev/full", dev_link);
  check_error([&] { io::write_file_atomically(dev_link, [](io::AtomicFile& f) { f.write("x"); }); }, dev_link, "/dev/full",
              "character device");
  // An existing output is refused without --overwrite, before any work; a missing directory is named.
  check_error([&] { io::check_new_output(real, false, "--out"); }, "--out", real, "already exists", "--overwrite");
  CHECK_NOTHROW(io::check_new_output(real, true, "--out"));
  CHECK_NOTHROW(io::check_new_output(tmp.file("new.safetensors"), false, "--out"));
  check_error([&] { io::check_new_output(tmp.file("nowhere/x.safetensors"), false, "--out"); }, "--out", "does not exist");
}

TEST_CASE("safetensors: a write that fails midway (file too large) keeps the old file and removes the temporary one") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  auto small = iota_tensor<float>(Shape{8}, 0, 1);
  {
    io::SafetensorsWriter w;
    w.add("small", small);
    w.write(path);
  }
  const std::string before = read_bytes(path);

  // RLIMIT_FSIZE makes write() fail with EFBIG past 64 KiB, as a full disk fails
  // with ENOSPC; SIGXFSZ is ignored so the failure is an error code, not a signal.
  auto big = iota_tensor<float>(Shape{512, 512}, 0, 1);
  io::SafetensorsWriter w;
  w.add("big", big);
  rlimit old_limit{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  rlimit limit = old_limit;
  limit.rlim_cur = old_limit.rlim_max == RLIM_INFINITY || old_limit.rlim_max > 65536 ? 65536 : old_limit.rlim_max;
  struct sigaction ignore {}, old_action {};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGXFSZ, &ignore, &old_action) == 0);
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  std::string msg;
  try {
    w.write(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);

  INFO("message: ", msg);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("write failed: File too large") != std::string::npos);
  CHECK(read_bytes(path) == before);
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: writer refuses duplicate and reserved names") {
  Tensor<cpu, float> t(Shape{2});
  io::SafetensorsWriter w;
  w.add("w", t);
  check_error([&] { w.add("w", t); }, "tensor 'w' added twice");
  check_error([&] { w.add("__metadata__", t); }, "'__metadata__' is reserved");
  check_error([&] { w.add("", t); }, "name must not be empty");
  check_error([&] { w.add("v", ConstView<cpu, float>()); }, "tensor 'v' is an empty view");
}

// --- safetensors: malformed files, one per rule --------------------------------

namespace {
// Writes `bytes` to a fresh file and expects opening it to fail with a message
// holding the file's path and every one of `parts`.
template <class... Parts>
void check_bad_file(const TempDir& tmp, const std::string& bytes, const Parts&... parts) {
  static int n = 0;
  const std::string path = tmp.file("bad" + std::to_string(n++) + ".safetensors");
  write_bytes(path, bytes);
  check_error([&] { io::SafetensorsReader r(path); }, path, parts...);
}
}  // namespace

TEST_CASE("safetensors: missing or unreadable files") {
  TempDir tmp;
  const std::string missing = tmp.file("missing.safetensors");
  check_error([&] { io::SafetensorsReader r(missing); }, missing, "cannot open", "No such file or directory");
  check_error([&] { io::SafetensorsReader r(tmp.dir.string()); }, tmp.dir.string(), "is a directory");
}

TEST_CASE("safetensors: file shorter than the length prefix") {
  TempDir tmp;
  check_bad_file(tmp, "", "file is 0 bytes, shorter than the 8-byte header length");
  check_bad_file(tmp, std::string("\x10\0\0\0\0", 5), "file is 5 bytes, shorter than the 8-byte header length");
}

TEST_CASE("safetensors: header length beyond the file or over 100 MB") {
  TempDir tmp;
  check_bad_file(tmp, le64(1000) + "{}", "header length 1000 bytes is larger than the rest of the file (2 bytes)");
  check_bad_file(tmp, le64(200'000'000) + "{}", "header length 200000000 bytes exceeds the 100 MB limit");
  check_bad_file(tmp, le64(~std::uint64_t{0}) + "{}", "exceeds the 100 MB limit");
}

TEST_CASE("safetensors: header that is not JSON, or not an object") {
  TempDir tmp;
  check_bad_file(tmp, st_file(R"({"a": {"dtype": "F32",)"), "header: not valid JSON", "parse error");
  check_bad_file(tmp, st_file(""), "header: not valid JSON");
  check_bad_file(tmp, st_file("{\"a\": \"\xff\"}"), "header: not valid JSON");  // not UTF-8
  check_bad_file(tmp, st_file("[1, 2]"), "header is not a JSON object but array");
  check_bad_file(tmp, st_file("42"), "header is not a JSON object but number");
}

TEST_CASE("safetensors: entries missing a field or with fields of the wrong type") {
  TempDir tmp;
  const std::string data(8, '\0');
  check_bad_file(tmp, st_file(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", data), "tensor 'w': missing 'dtype'");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", data), "tensor 'w': missing 'shape'");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2]}})", data), "tensor 'w': missing 'data_offsets'");
  check_bad_file(tmp, st_file(R"({"w": [1, 2]})", data), "tensor 'w': entry must be an object, got [1,2]");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", data),
                 "tensor 'w': 'dtype' must be a string, got 4");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", data),
                 "tensor 'w': 'shape' must be an array of integers");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", data),
                 "tensor 'w': 'shape' must be an array of integers, got [2.0]");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", data),
                 "tensor 'w': 'data_offsets' must be [begin, end], two integers, got [0]");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}})", data),
                 "tensor 'w': 'data_offsets' must be [begin, end]");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", data),
                 "tensor 'w': 'data_offsets' [-8,0] must not be negative");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data),
                 "tensor 'w': data_offsets begin 8 is after end 0");
  check_bad_file(tmp, st_file(R"({"__metadata__": {"step": 5}})"), "'__metadata__' value of 'step' must be a string, got 5");
  check_bad_file(tmp, st_file(R"({"__metadata__": ["a"]})"), "'__metadata__' must be an object of strings");
}

TEST_CASE("safetensors: unknown dtype") {
  TempDir tmp;
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F17", "shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                 "tensor 'w': unknown dtype 'F17'");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                 "tensor 'w': unknown dtype 'f32'");
}

TEST_CASE("safetensors: negative dimensions") {
  TempDir tmp;
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}})", std::string(8, '\0')),
                 "tensor 'w': negative dimension -1 in shape [2,-1]");
}

TEST_CASE("safetensors: byte size that does not match the shape") {
  TempDir tmp;
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", std::string(24, '\0')),
                 "tensor 'w': data_offsets [0, 20) hold 20 bytes, but shape (2, 3) of F32 needs 6 x 4");
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "BF16", "shape": [], "data_offsets": [0, 4]}})", std::string(4, '\0')),
                 "tensor 'w': data_offsets [0, 4) hold 4 bytes, but shape () of BF16 needs 1 x 2");
  // A shape whose size overflows 64 bits cannot match any byte range.
  check_bad_file(tmp,
                 st_file(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 2], "data_offsets": [0, 8]}})",
                         std::string(8, '\0')),
                 "tensor 'w'", "needs more than 2^64");
}

TEST_CASE("safetensors: data beyond the end of the data section") {
  TempDir tmp;
  check_bad_file(tmp, st_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", std::string(16, '\0')),
                 "tensor 'w': data_offsets end 24 is beyond the data section (16 bytes)");
}

TEST_CASE("safetensors: overlapping tensors") {
  TempDir tmp;
  check_bad_file(tmp,
                 st_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                         R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                         std::string(16, '\0')),
                 "tensors 'a' [0, 16) and 'b' [8, 16) overlap");
  // Overlap with an earlier tensor that is not the immediate predecessor.
  check_bad_file(tmp,
                 st_file(R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},)"
                         R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},)"
                         R"( "c": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})",
                         std::string(32, '\0')),
                 "overlap");
  // Empty tensors take no bytes and overlap nothing; gaps are allowed.
  TempDir ok;
  const std::string path = ok.file("ok.safetensors");
  write_bytes(path, st_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                            R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},)"
                            R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}})",
                            std::string(16, '\0')));
  CHECK(io::SafetensorsReader(path).tensors().size() == 3);
}

TEST_CASE("safetensors: read and load errors name the file and the tensor") {
  TempDir tmp;
  const std::string path = tmp.file("r.safetensors");
  const std::vector<std::int64_t> big = {1, 3000000000LL};
  const std::vector<float> five(120, 0.5f);
  write_bytes(path, st_file(R"({"big": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},)"
                            R"( "f": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]},)"
                            R"( "r5": {"dtype": "F32", "shape": [1, 2, 3, 4, 5], "data_offsets": [40, 520]},)"
                            R"( "q": {"dtype": "I8", "shape": [4], "data_offsets": [520, 524]}})",
                            bytes_of(big) + bytes_of(std::vector<float>(6, 1.0f)) + bytes_of(five) + std::string(4, '\1')));
  io::SafetensorsReader r(path);

  Tensor<cpu, float> wrong(Shape{3, 2});
  check_error([&] { r.read("f", wrong); }, path, "tensor 'f' has shape (2, 3) in the file, the destination has (3, 2)");
  Tensor<cpu, float> wrong_rank(Shape{6});
  check_error([&] { r.read("f", wrong_rank); }, path, "tensor 'f' has shape (2, 3) in the file, the destination has (6,)");

  check_error([&] { r.load<std::int32_t>("f"); }, path, "tensor 'f' is stored as F32; converting floating point to i32 is not supported");
  check_error([&] { r.load<std::uint8_t>("f"); }, path, "tensor 'f'", "floating point to u8");

  check_error([&] { r.load<std::int32_t>("big"); }, path, "tensor 'big': I64 value 3000000000 at element 1 does not fit in i32");
  CHECK(r.load<std::int64_t>("big").at(1) == 3000000000LL);
  CHECK(r.load<double>("big").at(1) == 3e9);

  check_error([&] { r.load<float>("r5"); }, path, "tensor 'r5' has rank 5 (1, 2, 3, 4, 5); plm tensors have at most 4 dimensions");
  Tensor<cpu, float> flat(Shape{120});
  check_error([&] { r.read("r5", flat); }, path, "tensor 'r5' has shape (1, 2, 3, 4, 5)");

  check_error([&] { r.load<float>("q"); }, path, "tensor 'q' has dtype I8, which plm cannot read");

  check_error([&] { r.load<float>("nope"); }, path, "no tensor named 'nope' (the file holds 4 tensors)");
  Tensor<cpu, float> any(Shape{2});
  check_error([&] { r.read("nope", any); }, path, "no tensor named 'nope'");
}

TEST_CASE("safetensors: a file truncated after opening fails the read, not silently") {
  TempDir tmp;
  const std::string path = tmp.file("t.safetensors");
  auto t = iota_tensor<float>(Shape{64}, 0, 1);
  io::SafetensorsWriter w;
  w.add("t", t);
  w.write(path);
  io::SafetensorsReader r(path);
  fs::resize_file(path, fs::file_size(path) - 100);
  check_error([&] { r.load<float>("t"); }, path, "unexpected end of file");
}

// --- T5 config.json -----------------------------------------------------------

TEST_CASE("config: an Ankh config.json reads as T5Config::ankh_base()") {
  TempDir tmp;
  const std::string path = tmp.file("config.json");
  // The fields of ElnaggarLab's Ankh config.json, plus keys transformers writes
  // that plm has no use for (they are ignored).
  write_bytes(path, R"({
  "architectures": ["T5ForConditionalGeneration"],
  "d_ff": 3072,
  "d_kv": 64,
  "d_model": 768,
  "decoder_start_token_id": 0,
  "dense_act_fn": "gelu_new",
  "dropout_rate": 0.0,
  "eos_token_id": 1,
  "feed_forward_proj": "gated-gelu",
  "initializer_factor": 1.0,
  "is_encoder_decoder": true,
  "is_gated_act": true,
  "layer_norm_epsilon": 1e-06,
  "model_type": "t5",
  "num_decoder_layers": 24,
  "num_heads": 12,
  "num_layers": 48,
  "pad_token_id": 0,
  "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 64,
  "tie_word_embeddings": false,
  "torch_dtype": "float32",
  "transformers_version": "4.30.0",
  "use_cache": true,
  "vocab_size": 144
}
)");
  check_same_config(io::read_t5_config(path), nn::T5Config::ankh_base());
}

TEST_CASE("config: absent fields take transformers' defaults") {
  TempDir tmp;
  const std::string path = tmp.file("config.json");
  write_bytes(path, R"({"num_layers": 3, "pad_token_id": 5})");
  const nn::T5Config c = io::read_t5_config(path);
  CHECK(c.vocab_size == 32128);
  CHECK(c.d_model == 512);
  CHECK(c.d_ff == 2048);
  CHECK(c.num_heads == 8);
  CHECK(c.num_layers == 3);
  CHECK(c.num_decoder_layers == 3);  // follows num_layers
  CHECK(c.feed_forward_proj == "relu");
  CHECK(c.dropout_rate == 0.1);
  CHECK(c.tie_word_embeddings);
  CHECK(c.pad_token_id == 5);
  CHECK(c.decoder_start_token_id == 5);  // the pad token
  CHECK(c.eos_token_id == 1);

  write_bytes(path, R"({"num_layers": 4, "num_decoder_layers": null})");
  CHECK(io::read_t5_config(path).num_decoder_layers == 4);
}

TEST_CASE("config: write then read gives the same config, with transformers' derived fields") {
  TempDir tmp;
  nn::T5Config odd = nn::T5Config::ankh3_tiny();
  odd.dropout_rate = 0.1;  // not exactly representable: must survive the text round trip
  odd.layer_norm_epsilon = 1.2345678901234567e-7;
  odd.initializer_factor = 0.75;
  odd.tie_word_embeddings = true;
  odd.pad_token_id = 3, odd.eos_token_id = 2, odd.decoder_start_token_id = 7;
  nn::T5Config relu = nn::T5Config::ankh_base();
  relu.feed_forward_proj = "relu";
  nn::T5Config encoder = nn::T5Config::ankh_large();
  encoder.num_decoder_layers = 0;

  struct Case {
    nn::T5Config config;
    bool encoder_only;
    const char* act;
    bool gated;
  };
  const Case cases[] = {{nn::T5Config::ankh_base(), false, "gelu_new", true},
                        {odd, false, "silu", true},
                        {relu, false, "relu", false},
                        {nn::T5Config::ankh3_large(), true, "silu", true},
                        {encoder, true, "gelu_new", true}};
  for (const Case& k : cases) {
    const std::string path = tmp.file("config.json");
    io::write_t5_config(k.config, path, k.encoder_only);
    check_same_config(io::read_t5_config(path), k.config);

    const nlohmann::json j = nlohmann::json::parse(read_bytes(path));
    CHECK(j.at("model_type") == "t5");
    CHECK(j.at("architectures") == nlohmann::json::array({k.encoder_only ? "T5EncoderModel" : "T5ForConditionalGeneration"}));
    CHECK(j.at("is_encoder_decoder") == !k.encoder_only);
    CHECK(j.at("dense_act_fn") == k.act);
    CHECK(j.at("is_gated_act") == k.gated);
    CHECK(j.at("torch_dtype") == "float32");
    CHECK(j.at("d_model") == k.config.d_model);
    CHECK(tmp.entries() == std::vector<std::string>{"config.json"});  // no temporary file left
  }
  check_error([&] { io::write_t5_config(encoder, tmp.file("enc.json")); }, tmp.file("enc.json"),
              "no decoder layers; write it with encoder_only = true");
  nn::T5Config bad = nn::T5Config::ankh_base();
  bad.d_kv = 0;
  check_error([&] { io::write_t5_config(bad, tmp.file("bad.json")); }, tmp.file("bad.json"), "d_kv must be positive");
}

TEST_CASE("config: errors name the file and the field") {
  TempDir tmp;
  const std::string path = tmp.file("config.json");
  auto bad = [&](const std::string& text, const auto&... parts) {
    write_bytes(path, text);
    check_error([&] { io::read_t5_config(path); }, path, parts...);
  };
  const std::string missing = tmp.file("missing.json");
  check_error([&] { io::read_t5_config(missing); }, missing, "cannot open", "No such file or directory");
  bad(R"({"d_model": 768,)", "not valid JSON");
  bad(R"([768])", "the top level must be a JSON object, got array");
  bad(R"({"d_model": "768"})", "field 'd_model' must be an integer, got string \"768\"");
  bad(R"({"num_heads": 12.5})", "field 'num_heads' must be an integer, got number 12.5");
  bad(R"({"num_layers": true})", "field 'num_layers' must be an integer, got boolean true");
  bad(R"({"dropout_rate": "0.1"})", "field 'dropout_rate' must be a number");
  bad(R"({"tie_word_embeddings": 0})", "field 'tie_word_embeddings' must be true or false");
  bad(R"({"feed_forward_proj": ["gated", "gelu"]})", "field 'feed_forward_proj' must be a string");
  bad(R"({"pad_token_id": null})", "field 'pad_token_id' must be an integer, got null");
  bad(R"({"pad_token_id": 4294967296})", "field 'pad_token_id' value 4294967296 is out of range");
  bad(R"({"vocab_size": 18446744073709551615})", "field 'vocab_size' value 18446744073709551615 is out of range");
  bad(R"({"model_type": "mt5"})", "field 'model_type' is 'mt5', expected 't5'");
  bad(R"({"model_type": "bert"})", "field 'model_type' is 'bert', expected 't5'");
  bad(R"({"feed_forward_proj": "fast-gelu"})", "feed_forward_proj 'fast-gelu' is not of the form 'gated-<act>' or '<act>'");
  bad(R"({"feed_forward_proj": "gated-gelu-new"})", "feed_forward_proj 'gated-gelu-new'");
  // Values T5Config::validate rejects, reported with the file.
  bad(R"({"d_model": 0})", "field 'd_model' = 0 is out of range [1, 1048576]");
  // Sizes beyond the sane bounds, named as the file spells them, before anything is allocated.
  bad(R"({"d_ff": 1000000000000})", "config: " + path + ": field 'd_ff' = 1000000000000 is out of range [1, 1048576]");
  bad(R"({"d_model": 4611686018427387904})", "field 'd_model' = 4611686018427387904 is out of range [1, 1048576]");
  bad(R"({"num_heads": 5000})", "field 'num_heads' = 5000 is out of range [1, 4096]");
  bad(R"({"num_layers": 100000})", "field 'num_layers' = 100000 is out of range [1, 1024]");
  bad(R"({"num_layers": 4, "num_decoder_layers": -2})", "field 'num_decoder_layers' = -2 is out of range [0, 1024]");
  bad(R"({"vocab_size": 100000000})", "field 'vocab_size' = 100000000 is out of range [1, 16777216]");
  bad(R"({"relative_attention_num_buckets": 1})", "field 'relative_attention_num_buckets' = 1 is out of range [4, 65536]");
  // each within bounds, together too large
  bad(R"({"d_model": 1048576, "d_ff": 1048576, "vocab_size": 256})", "config: " + path + ": T5Config:", "parameters exceed 2^40");
  bad(R"({"d_kv": 4096, "num_heads": 4096})", "T5Config: d_kv * num_heads = 4096 * 4096 = 16777216 exceeds 1048576");
  bad(R"({"layer_norm_epsilon": -1e-6})", "T5Config: layer_norm_epsilon must be positive");
  bad(R"({"vocab_size": 100, "eos_token_id": 100})", "T5Config: eos_token_id 100 outside the vocabulary of 100");
  bad(R"({"dropout_rate": 1.5})", "T5Config: dropout_rate must be in [0, 1)");
}

TEST_CASE("hostile JSON: deep nesting and oversized files are refused before parsing, naming file and byte") {
  TempDir tmp;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');  // 200 KB that overflowed the stack
  // config.json
  const std::string config = tmp.file("config.json");
  write_bytes(config, "{\"model_type\": \"t5\", \"x\": " + deep + "}");
  check_error([&] { (void)io::read_t5_config(config); }, config, "nested deeper than 32 levels", "at byte 57");
  write_bytes(config, "{\"model_type\": \"t5\", \"d_model\": " + std::string(2 << 20, ' ') + "1}");
  check_error([&] { (void)io::read_t5_config(config); }, config, "too large for a config.json");
  write_bytes(config, "{\"model_type\": \"t5\",, }");
  check_error([&] { (void)io::read_t5_config(config); }, config, "not valid JSON (byte 21)");
  // Brackets inside strings are not nesting.
  CHECK(detail::json_depth_violation("{\"a\": \"[[[[[[[[[[\\\"[[[[\"}", 2) == std::string_view::npos);
  CHECK(detail::json_depth_violation("[[[", 2) == 2);
  // A safetensors header.
  const std::string st = tmp.file("deep.safetensors");
  std::string header = "{\"a\": " + deep + "}";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  write_bytes(st, bytes + header);
  check_error([&] { io::SafetensorsReader r(st); }, st, "header", "nested deeper than 16 levels");
}
