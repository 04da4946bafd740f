// data/: Vocabulary (presets, tokenizer files, encode/decode policies) and the
// streaming FASTA reader (plain and gzip, malformed input, length policies,
// resuming from a position).
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <map>
#include <string>
#include <vector>

#include "ops_test_support.hpp"
#include "plm/data/classification_set.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/labelled.hpp"
#include "plm/data/vocabulary.hpp"

using namespace plm;
using namespace plm::data;
using plm::test::check_error;
using plm::test::write_file;
using plm::test::write_gzip;
using plm::test::TempDir;
namespace fs = std::filesystem;

namespace {




std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<FastaRecord> read_all(const std::string& path, const FastaOptions& o = {}) { return read_fasta(path, o); }

bool same_records(const std::vector<FastaRecord>& a, const std::vector<FastaRecord>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].id != b[i].id || a[i].description != b[i].description || a[i].sequence != b[i].sequence ||
        a[i].header_line != b[i].header_line || a[i].index != b[i].index)
      return false;
  return true;
}

// Residues drawn from a Philox stream: deterministic test data.
std::string random_protein(std::size_t n, std::uint64_t stream) {
  static const char* aa = "ACDEFGHIKLMNPQRSTVWY";
  Philox rng(7, stream);
  std::string s(n, 'A');
  for (auto& c : s) c = aa[rng.below(20)];
  return s;
}

}  // namespace

// ---------------------------------------------------------------- Vocabulary

TEST_CASE("Vocabulary::ankh: confirmed ids, size 144, sentinels, no task tokens") {
  const Vocabulary v = Vocabulary::ankh();
  CHECK(v.size() == 144);
  CHECK(v.pad_id() == 0);
  CHECK(v.eos_id() == 1);
  CHECK(v.unk_id() == 2);
  CHECK(v.token(0) == "<pad>");
  CHECK(v.token(1) == "</s>");
  CHECK(v.token(2) == "<unk>");
  const std::string order = "ALGVSREDTIPKFQNYMHWC";  // ids 3..22
  for (std::size_t i = 0; i < order.size(); ++i) {
    INFO("residue ", order[i]);
    CHECK(v.id_of(std::string(1, order[i])) == static_cast<std::int32_t>(3 + i));
    CHECK(v.is_residue(static_cast<std::int32_t>(3 + i)));
  }
  CHECK(v.id_of("M") == 19);
  CHECK(v.id_of("W") == 21);
  CHECK(v.residue_ids().size() == 25);  // 20 standard + X B Z U O
  CHECK_FALSE(v.is_residue(v.eos_id()));
  CHECK_FALSE(v.has_task_tokens());
  check_error([&] { (void)v.nlu_id(); }, "[NLU]");
  check_error([&] { (void)v.s2s_id(); }, "[S2S]");
  CHECK(v.num_sentinels() == 116);
  CHECK(v.sentinel_id(0) == 143);
  CHECK(v.token(v.sentinel_id(5)) == "<extra_id_5>");
  CHECK(v.is_sentinel(v.sentinel_id(115)));
  CHECK_FALSE(v.is_sentinel(3));
  check_error([&] { (void)v.sentinel_id(116); }, "sentinel 116", "116 sentinels");
  check_error([&] { (void)v.id_of("<mask>"); }, "'<mask>'");
  check_error([&] { (void)v.token(144); }, "id 144", "144 tokens");
  CHECK_FALSE(v.find("J").has_value());
  CHECK(v.find("X").has_value());
}

TEST_CASE("Vocabulary::ankh3: confirmed ids, size 256, task tokens and sentinels") {
  const Vocabulary v = Vocabulary::ankh3();
  CHECK(v.size() == 256);
  CHECK(v.pad_id() == 0);
  CHECK(v.eos_id() == 1);
  CHECK(v.unk_id() == 2);
  const std::string order = "LAGSVERTIDPKNFQYHMCW";  // ids 7..26
  for (std::size_t i = 0; i < order.size(); ++i) {
    INFO("residue ", order[i]);
    CHECK(v.id_of(std::string(1, order[i])) == static_cast<std::int32_t>(7 + i));
  }
  CHECK(v.id_of("C") == 25);
  CHECK(v.id_of("W") == 26);
  CHECK(v.has_task_tokens());
  CHECK(v.token(v.nlu_id()) == "[NLU]");
  CHECK(v.token(v.s2s_id()) == "[S2S]");
  CHECK(v.nlu_id() != v.s2s_id());
  CHECK(v.num_sentinels() > 0);
  CHECK(v.token(v.sentinel_id(0)) == "<extra_id_0>");
  CHECK(v.sentinel_id(v.num_sentinels() - 1) < v.size());
  CHECK(v.residue_ids().size() == 25);
  // No id is used twice and every token maps back to its id.
  for (std::int32_t id = 0; id < v.size(); ++id) CHECK(v.id_of(v.token(id)) == id);
}

TEST_CASE("Vocabulary: encode / decode round trip, eos appended") {
  const Vocabulary v = Vocabulary::ankh();
  const std::string seq = "MKTAYIAKQRQISFVKSHFSRQ";
  const auto ids = v.encode(seq);
  REQUIRE(ids.size() == seq.size() + 1);
  CHECK(ids.back() == v.eos_id());
  CHECK(ids[0] == v.id_of("M"));
  CHECK(ids[1] == v.id_of("K"));
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) CHECK(v.is_residue(ids[i]));
  CHECK(v.decode(ids) == seq);

  EncodeOptions no_eos;
  no_eos.append_eos = false;
  const auto bare = v.encode(seq, no_eos);
  CHECK(bare.size() == seq.size());
  CHECK(std::vector<std::int32_t>(ids.begin(), ids.end() - 1) == bare);

  // encode_into appends.
  std::vector<std::int32_t> out = {v.pad_id()};
  v.encode_into("AC", out);
  CHECK(out == std::vector<std::int32_t>{0, 3, 22, 1});
  CHECK(v.encode("").size() == 1);

  const Vocabulary v3 = Vocabulary::ankh3();
  CHECK(v3.decode(v3.encode(seq)) == seq);
  CHECK(v3.encode("LA") == std::vector<std::int32_t>{7, 8, 1});
}

TEST_CASE("Vocabulary: lowercase policy") {
  const Vocabulary v = Vocabulary::ankh();
  CHECK(v.encode("mktAy") == v.encode("MKTAY"));
  EncodeOptions strict;
  strict.lowercase = LowercasePolicy::error;
  CHECK(v.encode("MKT", strict) == v.encode("MKT"));
  check_error([&] { (void)v.encode("MKtA", strict, "sp|P1"); }, "lowercase", "'t'", "column 2", "sp|P1");
}

TEST_CASE("Vocabulary: rare residue policies") {
  const Vocabulary v = Vocabulary::ankh();
  const std::string seq = "AXBZUOJ";
  EncodeOptions o;
  o.append_eos = false;

  // keep: the letter's own token when the vocabulary has one, else unk (J has none).
  const auto keep = v.encode(seq, o);
  CHECK(keep[1] == v.id_of("X"));
  CHECK(keep[2] == v.id_of("B"));
  CHECK(keep[5] == v.id_of("O"));
  CHECK(keep[6] == v.unk_id());
  CHECK(v.decode(keep) == "AXBZUO<unk>");

  o.rare = RarePolicy::unk;
  const auto unk = v.encode(seq, o);
  CHECK(unk[0] == v.id_of("A"));
  for (std::size_t i = 1; i < unk.size(); ++i) CHECK(unk[i] == v.unk_id());

  o.rare = RarePolicy::error;
  CHECK(v.encode("ACD", o).size() == 3);
  check_error([&] { (void)v.encode("ACXD", o, "rec7"); }, "rare residue", "'X'", "column 2", "rec7");
  check_error([&] { (void)v.encode("acxd", o); }, "rare residue", "'X'", "column 2");

  // keep with a vocabulary that has no X: unk.
  const Vocabulary small({"<pad>", "</s>", "<unk>", "A", "C"});
  CHECK(small.encode("AXC") == std::vector<std::int32_t>{3, 2, 4, 1});
}

TEST_CASE("Vocabulary: invalid characters name the character, the column and the context") {
  const Vocabulary v = Vocabulary::ankh();
  check_error([&] { (void)v.encode("ACD1EF", {}, "record sp|Q9"); }, "invalid character", "'1'", "column 3",
              "record sp|Q9");
  check_error([&] { (void)v.encode("AC-D"); }, "'-'", "column 2");
  check_error([&] { (void)v.encode("AC D"); }, "' '", "column 2");
  check_error([&] { (void)v.encode("A\tD"); }, "0x09", "column 1");
  check_error([&] { (void)v.encode("AC\xC3\xA9"); }, "0xC3", "non-ASCII", "column 2");
  check_error([&] { (void)v.encode("AC*D"); }, "'*'", "column 2");
  // One trailing '*' (stop codon) is dropped.
  CHECK(v.encode("ACD*") == v.encode("ACD"));
  check_error([&] { (void)v.encode("ACD**"); }, "'*'", "column 3");
}

TEST_CASE("Vocabulary: decode writes specials as text, drops pad, stops at eos on request") {
  const Vocabulary v = Vocabulary::ankh3();
  const std::vector<std::int32_t> ids = {v.nlu_id(), v.id_of("M"), v.sentinel_id(0), v.pad_id(), v.id_of("K"),
                                         v.unk_id(), v.eos_id(),   v.id_of("A"),      v.pad_id()};
  CHECK(v.decode(ids) == "[NLU]M<extra_id_0>K<unk>");
  CHECK(v.decode(ids, false) == "[NLU]M<extra_id_0>K<unk></s>A");
  check_error([&] { (void)v.decode(std::vector<std::int32_t>{3, 256}); }, "id 256", "256 tokens");
  check_error([&] { (void)v.decode(std::vector<std::int32_t>{-1}); }, "id -1");
}

TEST_CASE("Vocabulary: user-built vocabularies and their errors") {
  Specials sp;
  sp.pad = "[PAD]";
  sp.eos = "[EOS]";
  sp.unk = "[UNK]";
  const Vocabulary v({"[PAD]", "[EOS]", "[UNK]", "<extra_id_1>", "<extra_id_0>", "A", "C"}, sp);
  CHECK(v.pad_id() == 0);
  CHECK(v.eos_id() == 1);
  CHECK(v.num_sentinels() == 2);
  CHECK(v.sentinel_id(0) == 4);
  CHECK(v.sentinel_id(1) == 3);
  CHECK(v.residue_ids() == std::vector<std::int32_t>{5, 6});
  CHECK(v.encode("CA") == std::vector<std::int32_t>{6, 5, 1});

  check_error([] { Vocabulary({"<pad>", "</s>", "A"}); }, "unk", "'<unk>'", "missing");
  check_error([] { Vocabulary({"<pad>", "</s>", "<unk>", "A", "A"}); }, "'A'", "twice", "3", "4");
  check_error([] { Vocabulary({"<pad>", "</s>", "<unk>", ""}); }, "id 3", "empty");
  check_error([] { Vocabulary({"<pad>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_2>"}); }, "<extra_id_1>",
              "missing");
}

TEST_CASE("Vocabulary::from_tokenizer_json: WordLevel object vocab plus added_tokens") {
  TempDir tmp;
  const std::string path = tmp.file("tokenizer.json");
  write_file(path, R"({
    "version": "1.0",
    "added_tokens": [
      {"id": 0, "content": "<pad>", "special": true},
      {"id": 6, "content": "[NLU]", "special": true},
      {"id": 7, "content": "[S2S]", "special": true},
      {"id": 8, "content": "<extra_id_0>", "special": true}
    ],
    "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2, "M": 3, "K": 4, "X": 5},
              "unk_token": "<unk>"}
  })");
  const Vocabulary v = Vocabulary::from_tokenizer_json(path);
  CHECK(v.size() == 9);
  CHECK(v.id_of("K") == 4);
  CHECK(v.nlu_id() == 6);
  CHECK(v.s2s_id() == 7);
  CHECK(v.sentinel_id(0) == 8);
  CHECK(v.num_sentinels() == 1);
  CHECK(v.encode("MKX") == std::vector<std::int32_t>{3, 4, 5, 1});
  CHECK(v.residue_ids() == std::vector<std::int32_t>{3, 4, 5});
}

TEST_CASE("Vocabulary::from_tokenizer_json: Unigram [piece, score] vocab with SentencePiece prefixes") {
  TempDir tmp;
  const std::string path = tmp.file("tokenizer.json");
  // "▁A" stands for A because there is no bare "A"; "C" exists bare, so "▁C" stays an ordinary piece.
  write_file(path, R"({
    "added_tokens": [{"id": 7, "content": "[NLU]"}, {"id": 8, "content": "[S2S]"},
                     {"id": 9, "content": "<extra_id_1>"}, {"id": 10, "content": "<extra_id_0>"}],
    "model": {"type": "Unigram", "unk_id": 2,
              "vocab": [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["▁", -2.0], ["▁A", -3.1],
                        ["C", -3.2], ["▁C", -3.3]]}
  })");
  const Vocabulary v = Vocabulary::from_tokenizer_json(path);
  CHECK(v.size() == 11);
  CHECK(v.residue_id('A') == 4);
  CHECK(v.residue_id('C') == 5);
  CHECK(v.encode("ACA") == std::vector<std::int32_t>{4, 5, 4, 1});
  CHECK(v.decode(v.encode("ACA")) == "ACA");
  CHECK(v.is_residue(4));
  CHECK_FALSE(v.is_residue(6));
  CHECK(v.has_task_tokens());
  CHECK(v.sentinel_id(0) == 10);
  CHECK(v.sentinel_id(1) == 9);
}

TEST_CASE("Vocabulary::from_tokenizer_json: errors name the file") {
  TempDir tmp;
  const std::string bad = tmp.file("broken.json");
  write_file(bad, R"({"model": {"vocab": {"<pad>": 0,)");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(bad); }, bad, "not valid JSON");

  const std::string dup = tmp.file("dup.json");
  write_file(dup, R"({"model": {"vocab": {"<pad>": 0, "</s>": 1, "<unk>": 1}}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(dup); }, dup, "duplicate id 1");

  const std::string dup_added = tmp.file("dup_added.json");
  write_file(dup_added, R"({"added_tokens": [{"id": 0, "content": "<mask>"}],
                            "model": {"vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2}}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(dup_added); }, dup_added, "duplicate id 0", "<mask>");

  const std::string no_unk = tmp.file("no_unk.json");
  write_file(no_unk, R"({"model": {"vocab": [["<pad>", 0], ["</s>", 0], ["A", 0]]}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(no_unk); }, no_unk, "unk", "'<unk>'", "missing");

  const std::string hole = tmp.file("hole.json");
  write_file(hole, R"({"added_tokens": [{"id": 0, "content": "<pad>"}], "model": {"vocab": {"<pad>": 0, "</s>": 2, "<unk>": 3}}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(hole); }, hole, "no token has id 1");

  // An id beyond the number of tokens listed is refused before anything is allocated (35 bytes once allocated ~700 MB).
  const std::string huge = tmp.file("huge.json");
  write_file(huge, R"({"model":{"vocab":{"A":16000000}}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(huge); }, huge, "id 16000000", "lists only 1 tokens");
  const std::string huge_added = tmp.file("huge_added.json");
  write_file(huge_added, R"({"added_tokens":[{"id":9999999,"content":"x"}],"model":{"vocab":[["<pad>",0]]}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(huge_added); }, huge_added, "added_tokens", "id 9999999");

  // Deep nesting is refused before parsing, naming the byte.
  const std::string deep = tmp.file("deep.json");
  write_file(deep, R"({"model": {"vocab": )" + std::string(100000, '[') + std::string(100000, ']') + "}}");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(deep); }, deep, "nested deeper than 64 levels", "at byte 82");

  const std::string no_model = tmp.file("no_model.json");
  write_file(no_model, R"({"vocab": {}})");
  check_error([&] { (void)Vocabulary::from_tokenizer_json(no_model); }, no_model, "model");

  check_error([&] { (void)Vocabulary::from_tokenizer_json(tmp.file("absent.json")); }, "absent.json", "no such file");
}

TEST_CASE("Vocabulary::from_vocab_file: one token per line, optional score column") {
  TempDir tmp;
  const std::string path = tmp.file("spiece.vocab");
  write_file(path, "<pad>\t0\n</s>\t0\n<unk>\t0\n\xE2\x96\x81M\t-1.5\nK\r\n<extra_id_0>\n");
  const Vocabulary v = Vocabulary::from_vocab_file(path);
  CHECK(v.size() == 6);
  CHECK(v.token(3) == "\xE2\x96\x81M");
  CHECK(v.residue_id('M') == 3);
  CHECK(v.id_of("K") == 4);
  CHECK(v.sentinel_id(0) == 5);
  CHECK(v.encode("MK") == std::vector<std::int32_t>{3, 4, 1});

  const std::string gap = tmp.file("gap.vocab");
  write_file(gap, "<pad>\n</s>\n\n<unk>\n");
  check_error([&] { (void)Vocabulary::from_vocab_file(gap); }, gap + ":3", "empty token");
  const std::string missing = tmp.file("missing.vocab");
  write_file(missing, "<pad>\n<unk>\nA\n");
  check_error([&] { (void)Vocabulary::from_vocab_file(missing); }, missing, "eos", "'</s>'");
}

// ---------------------------------------------------------------- FASTA

TEST_CASE("FastaReader: wrapped multi-record file, any buffer size") {
  TempDir tmp;
  const std::string path = tmp.file("multi.fasta");
  write_file(path,
             ">sp|P1|ONE first protein, human\nMKT\nAYI\nAKQ\n"
             ">P2\nACDE\nFG\n"
             ">P3   spaced   description  \nWW");  // no final newline
  for (std::size_t buf : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{1} << 20}) {
    INFO("buffer_bytes ", buf);
    FastaOptions o;
    o.buffer_bytes = buf;
    const auto r = read_all(path, o);
    REQUIRE(r.size() == 3);
    CHECK(r[0].id == "sp|P1|ONE");
    CHECK(r[0].description == "first protein, human");
    CHECK(r[0].sequence == "MKTAYIAKQ");
    CHECK(r[0].header_line == 1);
    CHECK(r[0].index == 0);
    CHECK(r[1].id == "P2");
    CHECK(r[1].description.empty());
    CHECK(r[1].sequence == "ACDEFG");
    CHECK(r[1].header_line == 5);
    CHECK(r[2].id == "P3");
    CHECK(r[2].description == "spaced   description");
    CHECK(r[2].sequence == "WW");
    CHECK(r[2].header_line == 8);
    CHECK(r[2].index == 2);
  }
  FastaReader reader(path);
  FastaRecord rec;
  int n = 0;
  while (reader.next(rec)) ++n;
  CHECK(n == 3);
  CHECK(reader.records_read() == 3);
  CHECK(reader.records_skipped() == 0);
  CHECK(reader.position() == 3);
  CHECK_FALSE(reader.next(rec));
}

TEST_CASE("FastaReader: CRLF, blank lines, whitespace, lowercase and '*' kept") {
  TempDir tmp;
  const std::string path = tmp.file("crlf.fa");
  write_file(path, "\r\n\n>a  x y\r\nAC \r\n\r\n de*\r\n\r\n>b\r\nK\r\n\r\n");
  const auto r = read_all(path);
  REQUIRE(r.size() == 2);
  CHECK(r[0].id == "a");
  CHECK(r[0].description == "x y");
  CHECK(r[0].sequence == "ACde*");
  CHECK(r[0].header_line == 3);
  CHECK(r[1].id == "b");
  CHECK(r[1].sequence == "K");
  CHECK(r[1].header_line == 8);
  // An empty file and a file of blank lines hold no records.
  write_file(path, "");
  CHECK(read_all(path).empty());
  write_file(path, "\n  \r\n\t\n");
  CHECK(read_all(path).empty());
}

TEST_CASE("FastaReader: a gzip file gives the records of the plain file") {
  TempDir tmp;
  std::string text;
  for (int i = 0; i < 3000; ++i) {
    const std::string seq = random_protein(1 + static_cast<std::size_t>(i * 37 % 500), static_cast<std::uint64_t>(i));
    text += ">seq" + std::to_string(i) + " entry " + std::to_string(i) + "\n";
    for (std::size_t p = 0; p < seq.size(); p += 60) text += seq.substr(p, 60) + "\n";
  }
  const std::string plain = tmp.file("many.fasta"), gz = tmp.file("many.fasta.gz");
  write_file(plain, text);
  write_gzip(gz, text);
  const std::string bytes = read_bytes(gz);
  REQUIRE(bytes.size() > 2);
  CHECK(static_cast<unsigned char>(bytes[0]) == 0x1f);
  CHECK(static_cast<unsigned char>(bytes[1]) == 0x8b);
  CHECK(bytes.size() < text.size());
  const auto a = read_all(plain), b = read_all(gz);
  CHECK(a.size() == 3000);
  CHECK(same_records(a, b));
  FastaOptions small;
  small.buffer_bytes = 13;
  CHECK(same_records(a, read_all(gz, small)));

  // A truncated stream is an error naming the file, not a short read.
  const std::string cut = tmp.file("cut.fasta.gz");
  write_file(cut, bytes.substr(0, bytes.size() / 2));
  check_error([&] { (void)read_all(cut); }, cut, "truncated");
  // So is a stream missing only its trailer (CRC and length).
  const std::string no_trailer = tmp.file("no_trailer.fasta.gz");
  write_file(no_trailer, bytes.substr(0, bytes.size() - 4));
  check_error([&] { (void)read_all(no_trailer); }, no_trailer);
  // And corrupted data (a deflate error or a failed CRC check).
  std::string corrupt = bytes;
  for (std::size_t i = corrupt.size() / 3; i < corrupt.size() / 3 + 64; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  const std::string bad = tmp.file("corrupt.fasta.gz");
  write_file(bad, corrupt);
  check_error([&] { (void)read_all(bad); }, bad);
}

TEST_CASE("FastaReader: gzip members are read whole, and bytes after the last one are an error") {
  TempDir tmp;
  const std::string first = ">a\nMKTAYIAK\n>b\nQRQISFVK\n", second = ">c\nSHFSRQ\n";
  const std::string a = tmp.file("a.gz"), b = tmp.file("b.gz");
  write_gzip(a, first);
  write_gzip(b, second);
  const std::string ga = read_bytes(a), gb = read_bytes(b);
  // Two members (cat a.gz b.gz, or bgzip's blocks): every record of both, with a small buffer too.
  const std::string two = tmp.file("two.fasta.gz");
  write_file(two, ga + gb);
  write_file(tmp.file("plain.fasta"), first + second);
  const auto want = read_all(tmp.file("plain.fasta"));
  CHECK(want.size() == 3);
  CHECK(same_records(want, read_all(two)));
  FastaOptions small;
  small.buffer_bytes = 3;
  CHECK(same_records(want, read_all(two, small)));
  // Plain text after a complete member: an error naming the file, the member and the byte.
  const std::string text_after = tmp.file("text_after.fasta.gz");
  write_file(text_after, ga + ">d\nKK\n");
  check_error([&] { (void)read_all(text_after); }, text_after, "after gzip member 1", "at byte " + std::to_string(ga.size()));
  // A second member cut to its first byte, or to its header.
  for (const std::size_t keep : {std::size_t{1}, std::size_t{10}, gb.size() - 1}) {
    const std::string cut = tmp.file("cut" + std::to_string(keep) + ".fasta.gz");
    write_file(cut, ga + gb.substr(0, keep));
    check_error([&] { (void)read_all(cut); }, cut);
  }
  // Zero padding after the last member.
  const std::string padded = tmp.file("padded.fasta.gz");
  write_file(padded, ga + std::string(16, '\0'));
  check_error([&] { (void)read_all(padded); }, padded, "not a gzip member");
  // A one-byte file that is not gzip is plain text (here: not FASTA).
  const std::string one = tmp.file("one.fasta");
  write_file(one, "\x1f");
  check_error([&] { (void)read_all(one); }, one);
}

TEST_CASE("FastaReader: malformed input names file, line and column") {
  TempDir tmp;
  const std::string path = tmp.file("bad.fasta");

  write_file(path, "\nMKT\n>a\nAC\n");
  check_error([&] { (void)read_all(path); }, path + ":2", "before the first header");

  write_file(path, ">a\nAC\n>\nKK\n");
  check_error([&] { (void)read_all(path); }, path + ":3", "empty header");
  write_file(path, "> \t\r\nKK\n");
  check_error([&] { (void)read_all(path); }, path + ":1", "empty header");

  write_file(path, ">a\nACD\n>b x\nAC1D\n");
  check_error([&] { (void)read_all(path); }, path + ":4:3", "'1'", "'b'");
  FastaOptions tiny;
  tiny.buffer_bytes = 2;
  check_error([&] { (void)read_all(path, tiny); }, path + ":4:3", "'1'");

  write_file(path, ">a\nAC.D\n");
  check_error([&] { (void)read_all(path); }, path + ":2:3", "'.'");
  write_file(path, ">a\nAC\xC3\xA9\n");
  check_error([&] { (void)read_all(path); }, path + ":2:3", "0xC3");

  write_file(path, ">a\nAC-DE\n");
  check_error([&] { (void)read_all(path); }, path + ":2:3", "gap");
  FastaOptions gaps;
  gaps.allow_gaps = true;
  CHECK(read_all(path, gaps).at(0).sequence == "AC-DE");

  check_error([&] { (void)read_all(tmp.file("nope.fasta")); }, "nope.fasta", "no such file");
}

TEST_CASE("FastaReader: empty sequences are skipped or an error") {
  TempDir tmp;
  const std::string path = tmp.file("empty.fasta");
  write_file(path, ">a\n>b\nK\n>c\n\n>d\nMM\n>e");
  FastaReader reader(path);
  FastaRecord r;
  REQUIRE(reader.next(r));
  CHECK(r.id == "b");
  CHECK(r.index == 1);
  REQUIRE(reader.next(r));
  CHECK(r.id == "d");
  CHECK(r.index == 3);
  CHECK_FALSE(reader.next(r));
  CHECK(reader.records_read() == 2);
  CHECK(reader.records_skipped() == 3);
  CHECK(reader.position() == 5);

  FastaOptions strict;
  strict.empty = EmptyPolicy::error;
  check_error([&] { (void)read_all(path, strict); }, path + ":1", "'a'", "empty sequence");

  FastaOptions min;
  min.min_length = 2;
  const auto kept = read_all(path, min);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].id == "d");
}

TEST_CASE("FastaReader: too-long policies") {
  TempDir tmp;
  const std::string path = tmp.file("long.fasta");
  write_file(path, ">s3\nABC\n>s10\nABCDEFGHIJ\n>s5\nABCDE\n");
  FastaOptions o;
  o.max_length = 5;

  o.too_long = TooLongPolicy::skip;
  {
    FastaReader reader(path, o);
    const auto r = read_all(path, o);
    REQUIRE(r.size() == 2);
    CHECK(r[0].id == "s3");
    CHECK(r[1].id == "s5");
    FastaRecord rec;
    while (reader.next(rec)) {
    }
    CHECK(reader.records_skipped() == 1);
    CHECK(reader.records_cropped() == 0);
  }

  o.too_long = TooLongPolicy::crop_start;
  {
    const auto r = read_all(path, o);
    REQUIRE(r.size() == 3);
    CHECK(r[1].sequence == "ABCDE");
    CHECK(r[2].sequence == "ABCDE");
  }

  o.too_long = TooLongPolicy::error;
  check_error([&] { (void)read_all(path, o); }, path + ":3", "'s10'", "10 residues", "max_length 5");
}

TEST_CASE("FastaReader: crop_random takes a reproducible window per record") {
  TempDir tmp;
  const std::string path = tmp.file("crop.fasta");
  const std::string full = random_protein(400, 99);
  std::string text;
  for (int i = 0; i < 40; ++i) text += ">r" + std::to_string(i) + "\n" + full + "\n";
  write_file(path, text);

  FastaOptions o;
  o.max_length = 50;
  o.too_long = TooLongPolicy::crop_random;
  o.seed = 1234;
  const auto a = read_all(path, o);
  const auto b = read_all(path, o);
  REQUIRE(a.size() == 40);
  std::set<std::size_t> starts;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].sequence.size() == 50);
    const std::size_t at = full.find(a[i].sequence);
    CHECK(at != std::string::npos);
    starts.insert(at);
    CHECK(a[i].sequence == b[i].sequence);  // same seed, same crops
  }
  CHECK(starts.size() > 20);  // the window differs across records

  FastaOptions other = o;
  other.seed = 4321;
  const auto c = read_all(path, other);
  int differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differ += a[i].sequence != c[i].sequence;
  CHECK(differ > 30);

  FastaReader reader(path, o);
  FastaRecord r;
  while (reader.next(r)) {
  }
  CHECK(reader.records_cropped() == 40);
  CHECK(reader.records_read() == 40);

  // A record not longer than max_length is not cropped.
  write_file(path, ">short\nACDEF\n");
  o.max_length = 5;
  CHECK(read_all(path, o).at(0).sequence == "ACDEF");
}

TEST_CASE("FastaReader: position() and skip_to() resume at the same record; rewind() restarts") {
  TempDir tmp;
  const std::string path = tmp.file("resume.fasta.gz");
  std::string text;
  for (int i = 0; i < 30; ++i) {
    text += ">r" + std::to_string(i) + "\n";
    if (i % 4 != 3) text += random_protein(20 + static_cast<std::size_t>(i) * 7, static_cast<std::uint64_t>(i)) + "\n";
  }
  write_gzip(path, text);
  FastaOptions o;
  o.max_length = 100;
  o.too_long = TooLongPolicy::crop_random;
  o.seed = 5;

  FastaReader first(path, o);
  FastaRecord r;
  for (int i = 0; i < 9; ++i) REQUIRE(first.next(r));
  const std::uint64_t cursor = first.position();
  CHECK(cursor > 9);  // empty records were skipped on the way
  REQUIRE(first.next(r));
  const FastaRecord expected = r;

  FastaReader resumed(path, o);
  resumed.skip_to(cursor);
  CHECK(resumed.position() == cursor);
  CHECK(resumed.records_read() == 9);
  FastaRecord got;
  REQUIRE(resumed.next(got));
  CHECK(got.id == expected.id);
  CHECK(got.index == expected.index);
  CHECK(got.sequence == expected.sequence);
  CHECK(got.header_line == expected.header_line);

  // Backwards rewinds first.
  resumed.skip_to(2);
  CHECK(resumed.position() == 2);
  REQUIRE(resumed.next(got));
  CHECK(got.id == "r2");

  check_error([&] { resumed.skip_to(31); }, path, "skip_to(31)", "30 records");

  // rewind: a second epoch gives the same records and fresh counters.
  FastaReader epochs(path, o);
  std::vector<FastaRecord> one, two;
  while (epochs.next(r)) one.push_back(r);
  epochs.rewind();
  CHECK(epochs.position() == 0);
  CHECK(epochs.records_read() == 0);
  while (epochs.next(r)) two.push_back(r);
  CHECK(one.size() == 30 - 7);
  CHECK(same_records(one, two));
}

TEST_CASE("FastaReader: a 5,000,000-residue line is read intact") {
  TempDir tmp;
  const std::string path = tmp.file("big.fasta");
  const std::string big = random_protein(5'000'000, 3);
  write_file(path, ">big one line\n" + big + "\n>small\nAC\n");
  FastaReader reader(path);
  FastaRecord r;
  REQUIRE(reader.next(r));
  CHECK(r.id == "big");
  CHECK(r.sequence.size() == big.size());
  CHECK(r.sequence == big);
  REQUIRE(reader.next(r));
  CHECK(r.id == "small");
  CHECK(r.header_line == 3);
  CHECK_FALSE(reader.next(r));
}

TEST_CASE("FASTA records encode with the vocabulary; errors carry the record id") {
  TempDir tmp;
  const std::string path = tmp.file("enc.fasta");
  write_file(path, ">ok\nmkta*\n>bad\nMKJTA\n");
  const Vocabulary v = Vocabulary::ankh3();
  const auto recs = read_fasta(path);
  REQUIRE(recs.size() == 2);
  CHECK(v.decode(v.encode(recs[0].sequence, {}, recs[0].id)) == "MKTA");
  EncodeOptions strict;
  strict.rare = RarePolicy::error;
  check_error([&] { (void)v.encode(recs[1].sequence, strict, "record " + recs[1].id); }, "'J'", "column 2",
              "record bad");
}

TEST_CASE("read_labelled: join by id, sorted class ids, skipped and missing records, errors with file:line") {
  TempDir tmp;
  const std::string fa = tmp.file("s.fasta"), lab = tmp.file("l.tsv");
  write_file(fa, ">P1 first\nMKV\n>P2\nAAG\n>P3\nLLL\n>P4\nWWW\n");
  write_file(lab, "# id\tlocation\nP3\tnucleus\nP1\tcytoplasm\r\n\nP4\tnucleus\nP9\tcytoplasm\n");
  const auto s = read_labelled(fa, lab);
  CHECK(s.ids == std::vector<std::string>{"P1", "P3", "P4"});
  CHECK(s.sequences == std::vector<std::string>{"MKV", "LLL", "WWW"});
  CHECK(s.class_names == std::vector<std::string>{"cytoplasm", "nucleus"});
  CHECK(s.labels == std::vector<std::int32_t>{0, 1, 1});
  CHECK(s.unlabelled == 1);
  CHECK(s.missing == 1);
  check_error([&] { read_labelled(fa, lab, {}, true); }, "s.fasta:3: record 'P2' has no label");
  write_file(lab, "P1\tcytoplasm\nP2 nucleus\n");
  check_error([&] { read_labelled(fa, lab); }, "l.tsv:2: expected 'ID<TAB>LABEL', found 1");
  write_file(lab, "P1\tcytoplasm\nP3\t\n");
  check_error([&] { read_labelled(fa, lab); }, "l.tsv:2: empty label");
  write_file(lab, "P1\tcytoplasm\n\nP1\tnucleus\n");
  check_error([&] { read_labelled(fa, lab); }, "l.tsv:3: id 'P1' already labelled on line 1");
  write_file(lab, "Q1\tcytoplasm\n");
  check_error([&] { read_labelled(fa, lab); }, "no record of", "has a label");
  write_file(fa, ">P1\nMKV\n>P1\nAAA\n");
  write_file(lab, "P1\tcytoplasm\n");
  check_error([&] { read_labelled(fa, lab); }, "s.fasta:3: record 'P1' appears again (first on line 1)");
}

TEST_CASE("split_by_cluster: clusters never straddle splits, shares met, seeded, errors name the protein") {
  TempDir tmp;
  const std::string path = tmp.file("clusters.tsv");
  std::vector<std::string> ids;
  std::string table = "# id\tcluster\n";
  for (int k = 0; ids.size() < 1000; ++k)  // cluster k has 1 + k % 6 members
    for (int j = 0; j <= k % 6 && ids.size() < 1000; ++j) {
      ids.push_back("P" + std::to_string(ids.size()));
      table += ids.back() + "\tC" + std::to_string(k) + "\n";
    }
  table += "UNUSED\tC1\n";  // ids absent from the set are ignored
  write_file(path, table);
  const auto s = split_by_cluster(ids, path, {0.1, 0.2}, 7);
  REQUIRE(s.size() == ids.size());
  std::map<std::string, Split> of;
  std::map<Split, int> n;
  const auto t = LabelTable::read(path);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string& c = t.rows[i].second;
    const auto [it, fresh] = of.emplace(c, s[i]);
    CHECK(it->second == s[i]);  // one split per cluster
    ++n[s[i]];
  }
  // each share is met to within one cluster (at most 6 proteins)
  CHECK(n[Split::test] >= 200);
  CHECK(n[Split::test] < 206);
  CHECK(n[Split::valid] >= 100);
  CHECK(n[Split::valid] < 106);
  CHECK(split_by_cluster(ids, path, {0.1, 0.2}, 7) == s);
  CHECK(split_by_cluster(ids, path, {0.1, 0.2}, 8) != s);
  ids.push_back("NEW");
  check_error([&] { split_by_cluster(ids, path, {0.1, 0.2}, 7); }, "protein 'NEW' has no cluster in", "clusters.tsv");
  check_error([&] { split_by_cluster(ids, path, {0.5, 0.5}, 7); }, "fractions");
}

TEST_CASE("predefined splits: a split table, or separate train / valid / test files, taken as given; errors name the protein") {
  TempDir tmp;
  const std::string fa = tmp.file("all.fasta"), lab = tmp.file("l.tsv"), sp = tmp.file("split.tsv");
  write_file(fa, ">P1\nMKV\n>P2\nAAG\n>P3\nLLL\n>P4\nWWW\n");
  write_file(lab, "P1\tcytoplasm\nP2\tnucleus\nP3\tnucleus\nP4\tcytoplasm\nP9\tnucleus\n");
  write_file(sp, "# DeepLoc style\nP1\ttrain\nP2\tvalidation\nP3\ttest\nP4\ttrain\nP9\tdev\n");
  const auto s = read_labelled(fa, lab);
  CHECK(read_split_table(s.ids, sp) == std::vector<Split>{Split::train, Split::valid, Split::test, Split::train});
  write_file(sp, "P1\ttrain\nP2\ttest\nP3\ttest\n");
  check_error([&] { read_split_table(s.ids, sp); }, "protein 'P4' has no split in", "split.tsv");
  write_file(sp, "P1\ttrain\nP2\tholdout\n");
  check_error([&] { read_split_table(s.ids, sp); }, "split.tsv: id 'P2': split 'holdout' is not one of train");

  const std::string tr = tmp.file("train.fasta"), va = tmp.file("valid.fasta"), te = tmp.file("test.fasta");
  write_file(tr, ">P1\nMKV\n>P4\nWWW\n>U1\nAAA\n");
  write_file(va, ">P2\nAAG\n");
  write_file(te, ">P3\nLLL\n");
  std::vector<Split> split;
  const auto f = read_labelled_splits(tr, va, te, lab, split);
  CHECK(f.ids == std::vector<std::string>{"P1", "P4", "P2", "P3"});
  CHECK(f.sequences == std::vector<std::string>{"MKV", "WWW", "AAG", "LLL"});
  CHECK(f.labels == std::vector<std::int32_t>{0, 0, 1, 1});  // class ids from the one table
  CHECK(split == std::vector<Split>{Split::train, Split::train, Split::valid, Split::test});
  CHECK(f.unlabelled == 1);  // U1
  CHECK(f.missing == 1);     // P9
  write_file(te, ">P3\nLLL\n>P1\nMKV\n");
  check_error([&] { read_labelled_splits(tr, va, te, lab, split); }, "protein 'P1' is in", "train.fasta and in", "test.fasta");
}

TEST_CASE("make_classification_set: small classes dropped, classes renumbered; plm's vocabulary or a model's own tokenizer") {
  LabelledSet set;
  set.ids = {"P1", "P2", "P3", "P4", "P5"};
  set.sequences = {"MKV", "AG", "LLW", "KK", "C"};
  set.class_names = {"a", "b", "c"};
  set.labels = {0, 2, 0, 1, 2};
  const auto ankh3 = Vocabulary::ankh3();
  const auto d = make_classification_set(set, ankh3, {2, 0});
  CHECK(d.class_names == std::vector<std::string>{"a", "c"});  // "b" has one protein
  CHECK(d.ids == std::vector<std::string>{"P1", "P2", "P3", "P5"});
  CHECK(d.labels == std::vector<std::int32_t>{0, 1, 0, 1});
  CHECK(d.tokens[1] == std::vector<std::int32_t>{ankh3.nlu_id(), ankh3.id_of("A"), ankh3.id_of("G"), ankh3.eos_id()});
  // plm's vocabulary through the Tokenizer: the same ids
  const auto same = make_classification_set(set, Tokenizer::load("ankh3"), InputStyle::words, {2, 0});
  CHECK(same.tokens == d.tokens);
  // an ESM tokenizer: <cls> residues <eos>, no task prefix
  const auto esm = Tokenizer::from_directory((std::filesystem::path(PLM_FIXTURES_DIR) / "esm" / "tokenizer").string());
  const auto e = make_classification_set(set, esm, InputStyle::string, {1, 2});
  const auto& v = esm.vocabulary();
  CHECK(e.ids == std::vector<std::string>{"P1", "P2"});
  CHECK(e.tokens[1] == std::vector<std::int32_t>{v.id_of("<cls>"), v.id_of("A"), v.id_of("G"), v.id_of("<eos>")});
  check_error([&] { make_classification_set(set, ankh3, {3, 0}); }, "0 of 3 classes have at least 3 proteins");
}

TEST_CASE("load_classification: cut to max_length and counted, split by table or by files, tokenized by the model's tokenizer") {
  TempDir tmp;
  const std::string fa = tmp.file("all.fasta"), lab = tmp.file("l.tsv"), sp = tmp.file("split.tsv");
  write_file(fa, ">P1\nMKVLA\n>P2\nAAG\n>P3\nLLLWWW\n>P4\nWW\n");
  write_file(lab, "P1\ta\nP2\tb\nP3\tb\nP4\ta\n");
  write_file(sp, "P1\ttrain\nP2\tvalid\nP3\ttest\nP4\ttrain\n");
  ClassificationSource src;
  src.fasta = fa, src.labels = lab, src.split_table = sp, src.max_length = 4;
  const auto tok = Tokenizer::load("ankh3");
  const auto t = load_classification(src, tok, InputStyle::words);
  CHECK(t.labelled == 4);
  CHECK(t.cut == 2);            // MKVLA and LLLWWW
  CHECK(t.median_length == 5);  // of 5, 3, 6, 2 (upper median)
  CHECK(t.split_from == "as given by " + sp);
  CHECK(t.set.split == std::vector<Split>{Split::train, Split::valid, Split::test, Split::train});
  CHECK(t.set.tokens[0].size() == 1 + 4 + 1);  // [NLU], 4 residues, </s>
  const std::string tr = tmp.file("train.fasta"), va = tmp.file("valid.fasta"), te = tmp.file("test.fasta");
  write_file(tr, ">P1\nMKVLA\n>P4\nWW\n");
  write_file(va, ">P2\nAAG\n");
  write_file(te, ">P3\nLLLWWW\n");
  ClassificationSource files = src;
  files.train_fasta = tr, files.valid_fasta = va, files.test_fasta = te;
  check_error([&] { load_classification(files, tok, InputStyle::words); }, "a split table and separate files both give the split");
  files.split_table.clear();
  const auto f = load_classification(files, tok, InputStyle::words);
  CHECK(f.split_from == "as given by the files");
  CHECK(f.set.ids == std::vector<std::string>{"P1", "P4", "P2", "P3"});
  CHECK(f.set.split == std::vector<Split>{Split::train, Split::train, Split::valid, Split::test});
}

TEST_CASE("PairList: partners and non-partners both ways, errors with file:line") {
  TempDir tmp;
  const std::string path = tmp.file("pairs.tsv");
  const std::vector<std::string> ids = {"A", "B", "C", "D"};
  write_file(path, "A\tB\t1\nA\tC\t0\nD\tA\t0\nB\tA\t1\n");
  const auto p = PairList::read(path, ids);
  CHECK(p.partners[0] == std::vector<index_t>{1});
  CHECK(p.partners[1] == std::vector<index_t>{0});
  CHECK(p.non_partners[0] == std::vector<index_t>{2, 3});
  CHECK(p.non_partners[2] == std::vector<index_t>{0});
  CHECK(p.non_partners[3] == std::vector<index_t>{0});
  write_file(path, "A\tB\t1\nB\tA\t0\n");
  check_error([&] { PairList::read(path, ids); }, "pairs.tsv:2: 'B' and 'A' contradict line 1");
  write_file(path, "A\tZ\t1\n");
  check_error([&] { PairList::read(path, ids); }, "pairs.tsv:1: unknown protein 'Z'");
  write_file(path, "A\tB\tyes\n");
  check_error([&] { PairList::read(path, ids); }, "pairs.tsv:1: third field 'yes' must be 1");
  write_file(path, "A\tA\t0\n");
  check_error([&] { PairList::read(path, ids); }, "a protein paired with itself");
}

TEST_CASE("tables and vocabulary files: a line beyond the bound is an error naming file and line, before it is held") {
  TempDir tmp;
  const std::string labels = tmp.file("labels.tsv"), pairs = tmp.file("pairs.tsv"), vocab = tmp.file("vocab.txt");
  write_file(labels, "P1\tnucleus\nP2\t" + std::string((1u << 20) + 10, 'x') + "\n");
  check_error([&] { (void)data::LabelTable::read(labels); }, labels + ":2", "line longer than 1048576 bytes");
  write_file(pairs, "a\tb\t1\n" + std::string((1u << 20) + 1, 'y'));  // no final newline
  check_error([&] { (void)data::PairList::read(pairs, {"a", "b"}); }, pairs + ":2", "line longer than");
  write_file(vocab, "<pad>\n</s>\n<unk>\n" + std::string(70000, 'A') + "\n");
  check_error([&] { (void)Vocabulary::from_vocab_file(vocab); }, vocab + ":4", "line longer than 65536 bytes");
  // A last line without newline, and CRLF, still read as before.
  write_file(labels, "P1\tnucleus\r\nP2\tcytoplasm");
  const auto t = data::LabelTable::read(labels);
  REQUIRE(t.rows.size() == 2);
  CHECK(t.rows[0].second == "nucleus");
  CHECK(t.rows[1].second == "cytoplasm");
}
