#pragma once
// plm::data::Tokenizer: a protein sequence -> ids, exactly as the Hugging Face
// tokenizer of a model directory gives them.
//
// `Vocabulary` is plm's own encoding (one token per residue, eos appended). A
// published checkpoint decides its ids with its own tokenizer files, and the
// model cards tokenize in one of two ways:
//   InputStyle::words   tok(list(seq), is_split_into_words=True)  (the Ankh cards)
//   InputStyle::string  tok(seq)
// A Metaspace tokenizer prefixes every word with "\u2581" ("▁"), so the two
// styles give different ids, and a tokenizer may emit a separate "▁" piece. A
// Tokenizer reproduces both from the files themselves:
//   tokenizer.json   Unigram (SentencePiece-style, Viterbi over piece scores,
//                    unknown characters fused as transformers does), WordLevel
//                    and WordPiece models; the normalizers, pre-tokenizers and
//                    post-processors protein tokenizers use. Anything else is
//                    refused with the file and the component named.
//   spiece.model     through the SentencePiece library (PLM_SENTENCEPIECE);
//                    extra ids appended as transformers' T5Tokenizer does.
//   vocab.txt        of an EsmTokenizer (ESM-2): one token per line, the
//                    longest vocabulary token at each column, a run of
//                    characters that starts no token as one <unk>, and
//                    <cls> ... <eos> around the sequence.
//   a Vocabulary     plm's own one-token-per-residue encoding (presets, vocab files).
// Special token names (pad, eos, unk) come from tokenizer_config.json or
// special_tokens_map.json next to the file. A tokenizer whose pieces merge
// residues ("AL", "▁AL") is refused: plm's samplers and pooling count one
// token per residue, and approximating such a tokenizer would give other ids.
//
// The input is the sequence as given: letters of either case and '*', '-',
// '.', exactly what the Python call would receive (plm does not upper-case it
// or drop a stop here; a FASTA reader's policies do that before, if asked).
// Every token of an Encoding records which characters of the input it holds,
// so per-residue outputs and mean pooling skip the tokens that hold none (eos,
// a task prefix, a lone "▁").
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/data/vocabulary.hpp"

#ifdef PLM_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace plm::data {

// How the Python recipe calls the tokenizer: on the list of residues
// (is_split_into_words=True) or on the sequence string.
enum class InputStyle { words, string };

inline const char* style_name(InputStyle s) { return s == InputStyle::words ? "words" : "string"; }
inline InputStyle parse_input_style(const std::string& name) {
  if (name == "words") return InputStyle::words;
  if (name == "string") return InputStyle::string;
  PLM_FAIL("tokenizer input style '", name, "' is not one of: words, string");
}

// The ids of one sequence, and for every token the characters [begin, end) of
// the input that it holds (begin == end: it holds none).
struct Encoding {
  std::vector<std::int32_t> ids, begin, end;
  std::size_t size() const { return ids.size(); }
  bool holds_residue(std::size_t t) const { return end[t] > begin[t]; }
  void clear() {
    ids.clear();
    begin.clear();
    end.clear();
  }
  void push(std::int32_t id, std::int32_t b, std::int32_t e) {
    ids.push_back(id);
    begin.push_back(b);
    end.push_back(e);
  }
};

namespace detail {

// A stretch of normalized text and, per byte, the input character it came from
// (-1 for bytes the tokenizer inserted, such as a "▁" prefix).
struct Segment {
  std::string text;
  std::vector<std::int32_t> source;
};

inline std::size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 6) return 2;
  if ((lead >> 4) == 14) return 3;
  return 4;
}

// The characters a protein input may hold: letters, '*' (stop), '-' and '.' (gaps).
inline bool is_sequence_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*' || c == '-' || c == '.';
}

inline bool is_ascii_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_ascii_punct(unsigned char c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}
inline bool is_word_char(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

// A string from tokenizer_config.json / special_tokens_map.json: "x" or {"content": "x", ...}.
inline std::optional<std::string> token_name(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return std::nullopt;
  const nlohmann::json& v = j.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  return std::nullopt;
}

// Pieces made of two or more letters (after a "▁" or "##" prefix) would merge residues.
inline bool merges_residues(std::string_view piece) {
  if (piece.rfind(sentencepiece_space, 0) == 0) piece.remove_prefix(sentencepiece_space.size());
  else if (piece.rfind("##", 0) == 0) piece.remove_prefix(2);
  if (piece.size() < 2) return false;
  return std::all_of(piece.begin(), piece.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

// Standard base64 (RFC 4648); characters outside the alphabet are skipped, "=" ends it.
inline std::string base64_decode(const std::string& in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '+') v = 62;
    else if (ch == '/') v = 63;
    else if (ch == '=') break;
    else continue;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFFu));
    }
  }
  return out;
}

// SentencePiece's precompiled character map: a little-endian uint32 byte size
// of a Darts-clone double array, the array, then NUL-terminated replacement
// strings that the array's values point into. lookup() gives the replacement
// of the shortest key that starts `text` (what transformers' Precompiled
// normalizer takes), or nothing. Damaged input is a plm::Error.
class Charsmap {
 public:
  explicit Charsmap(std::string blob) : blob_(std::move(blob)) {
    PLM_CHECK(blob_.size() >= 4, "precompiled_charsmap of ", blob_.size(), " bytes is cut short");
    const std::uint32_t bytes = read32(0);
    PLM_CHECK(bytes % 4 == 0 && bytes > 0 && bytes <= blob_.size() - 4, "precompiled_charsmap: damaged (array of ", bytes,
              " bytes in ", blob_.size() - 4, ")");
    units_ = bytes / 4;
  }

  std::optional<std::string_view> lookup(std::string_view text) const {
    const std::string_view normalized_ = std::string_view(blob_).substr(4 + 4 * units_);
    std::size_t pos = offset(unit(0));
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c == 0) break;
      pos ^= c;
      const std::uint32_t u = unit(pos);
      if ((u & ((1u << 31) | 0xFFu)) != c) return std::nullopt;  // no key continues with c
      pos ^= offset(u);
      if ((u >> 8) & 1u) {  // a key ends here: its value is in the leaf below
        const std::size_t value = unit(pos) & ((1u << 31) - 1);
        PLM_CHECK(value < normalized_.size(), "precompiled_charsmap: damaged (value ", value, " beyond ", normalized_.size(), " bytes)");
        const std::size_t stop = normalized_.find('\0', value);
        return normalized_.substr(value, stop == std::string_view::npos ? std::string_view::npos : stop - value);
      }
    }
    return std::nullopt;
  }

 private:
  std::uint32_t read32(std::size_t at) const {
    const auto* p = reinterpret_cast<const unsigned char*>(blob_.data() + at);
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 | static_cast<std::uint32_t>(p[2]) << 16 |
           static_cast<std::uint32_t>(p[3]) << 24;
  }
  std::uint32_t unit(std::size_t i) const {
    PLM_CHECK(i < units_, "precompiled_charsmap: damaged (unit ", i, " beyond ", units_, ")");
    return read32(4 + 4 * i);
  }
  static std::size_t offset(std::uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

  std::string blob_;
  std::size_t units_ = 0;
};

}  // namespace detail

class Tokenizer {
 public:
  // plm's own encoding: one token per residue (Vocabulary::encode with its
  // policies: lowercase upper-cased, a trailing '*' dropped), eos appended.
  explicit Tokenizer(Vocabulary vocabulary, std::string source = "plm vocabulary")
      : vocab_(std::make_shared<const Vocabulary>(std::move(vocabulary))), source_(std::move(source)) {}

  // The tokenizer of a model directory, as AutoTokenizer.from_pretrained(dir)
  // picks it: tokenizer.json, else spiece.model. None of them is an error.
  static Tokenizer from_directory(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    PLM_CHECK(fs::is_directory(dir, ec), "Tokenizer: ", dir, ": not a directory");
    const fs::path d(dir);
    if (fs::exists(d / "tokenizer.json", ec)) return from_tokenizer_json((d / "tokenizer.json").string());
    if (fs::exists(d / "spiece.model", ec)) return from_sentencepiece((d / "spiece.model").string());
    if (fs::exists(d / "vocab.txt", ec)) {
      const nlohmann::json config = config_near((d / "vocab.txt").string());
      const std::string cls = config.is_object() && config.contains("tokenizer_class") && config.at("tokenizer_class").is_string()
                                  ? config.at("tokenizer_class").get<std::string>()
                                  : std::string();
      if (cls == "BertTokenizer" || cls == "BertTokenizerFast") return from_bert_vocab((d / "vocab.txt").string());
      PLM_CHECK(cls.empty() || cls == "EsmTokenizer", "Tokenizer: ", dir, ": vocab.txt of a ", cls,
                ", which plm does not reproduce (it reads an EsmTokenizer's or a BertTokenizer's vocab.txt, a tokenizer.json or a "
                "spiece.model)");
      return from_esm_vocab((d / "vocab.txt").string());
    }
    PLM_FAIL("Tokenizer: ", dir, ": no tokenizer.json, spiece.model or vocab.txt (give the vocabulary explicitly, e.g. --vocab ankh3)");
  }

  // As command lines take it: "ankh3" / "ankh" / "esm2" (presets), a directory, a
  // tokenizer.json, a spiece.model, or a one-token-per-line vocabulary file.
  static Tokenizer load(const std::string& spec) {
    if (spec == "ankh3") return Tokenizer(Vocabulary::ankh3(), "ankh3 preset");
    if (spec == "ankh") return Tokenizer(Vocabulary::ankh(), "ankh preset");
    if (spec == "esm2") return esm2();
    std::error_code ec;
    if (std::filesystem::is_directory(spec, ec)) return from_directory(spec);
    const auto ends_with = [&](std::string_view suffix) {
      return spec.size() >= suffix.size() && spec.compare(spec.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(".json")) return from_tokenizer_json(spec);
    if (ends_with(".model")) return from_sentencepiece(spec);
    return Tokenizer(Vocabulary::from_vocab_file(spec), spec);
  }

  // A Hugging Face tokenizer.json; special token names from tokenizer_config.json
  // or special_tokens_map.json in the same directory when they exist.
  static Tokenizer from_tokenizer_json(const std::string& path) {
    const nlohmann::json j = Vocabulary::read_json(path);
    const Specials specials = specials_near(path);
    Tokenizer t(Vocabulary::from_tokenizer_json(j, path, specials), path);
    t.kind_ = Kind::pipeline;
    t.files_ = files_beside(path);
    t.parse_pipeline(j);
    return t;
  }

  // A SentencePiece model (spiece.model) through the SentencePiece library,
  // encoded as transformers' T5Tokenizer does: pieces as ids, then the extra
  // ids of tokenizer_config.json ("extra_ids", 100 when absent) in reverse.
  static Tokenizer from_sentencepiece(const std::string& path) {
#ifdef PLM_SENTENCEPIECE
    std::error_code ec;
    PLM_CHECK(std::filesystem::is_regular_file(path, ec), "Tokenizer: ", path, ": no such file");
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->Load(path);
    PLM_CHECK(status.ok(), "Tokenizer: ", path, ": not a SentencePiece model: ", status.ToString());
    const int n = sp->GetPieceSize();
    PLM_CHECK(n > 0 && n < (1 << 24), "Tokenizer: ", path, ": ", n, " pieces");
    std::vector<std::string> tokens;
    tokens.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      tokens.push_back(sp->IdToPiece(i));
      PLM_CHECK(!sp->IsByte(i), "Tokenizer: ", path, ": byte-fallback piece '", tokens.back(),
                "': plm reproduces SentencePiece models without byte fallback only");
      PLM_CHECK(!detail::merges_residues(tokens.back()), "Tokenizer: ", path, ": piece '", tokens.back(),
                "' merges residues; plm encodes one token per residue and cannot reproduce this tokenizer");
    }
    const nlohmann::json config = config_near(path);
    std::int64_t extra = 100;  // T5Tokenizer's default
    if (config.is_object() && config.contains("extra_ids")) {
      PLM_CHECK(config.at("extra_ids").is_number_integer(), "Tokenizer: tokenizer_config.json next to ", path, ": extra_ids is ",
                json_excerpt(config.at("extra_ids")), ", not an integer");
      extra = config.at("extra_ids").get<std::int64_t>();
      PLM_CHECK(extra >= 0 && extra <= 100000, "Tokenizer: tokenizer_config.json next to ", path, ": extra_ids ", extra,
                " outside [0, 100000]");
    }
    for (std::int64_t k = extra - 1; k >= 0; --k) {
      std::string s = "<extra_id_" + std::to_string(k) + ">";
      if (std::find(tokens.begin(), tokens.end(), s) == tokens.end()) tokens.push_back(std::move(s));
    }
    Tokenizer t(Vocabulary::from_tokens(std::move(tokens), specials_near(path), path), path);
    t.kind_ = Kind::sentencepiece;
    t.files_ = files_beside(path);
    t.sp_ = std::move(sp);
    t.post_ = {-1};  // T5Tokenizer: the sequence, then </s>
    t.post_.push_back(t.vocab_->eos_id());
    return t;
#else
    PLM_FAIL("Tokenizer: ", path, ": a SentencePiece model needs plm built with the SentencePiece library "
             "(apt-get install libsentencepiece-dev, then reconfigure: PLM_SENTENCEPIECE=AUTO finds it); "
             "or give the directory's tokenizer.json");
#endif
  }

  // The vocab.txt of an EsmTokenizer (ESM-1b, ESM-2): a token per line, spaces
  // around it dropped, as transformers reads it. <cls>, <pad>, <eos>, <unk> and
  // <mask> (or the names of tokenizer_config.json) must be among the tokens.
  static Tokenizer from_esm_vocab(const std::string& path) {
    const std::vector<std::string> tokens = read_vocab_lines(path);
    Specials sp = specials_near(path);
    if (!config_near(path).is_object()) sp.eos = "<eos>";  // EsmTokenizer's defaults
    std::string cls = "<cls>";
    for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
      const std::filesystem::path f = std::filesystem::path(path).parent_path() / name;
      std::error_code ec;
      if (!std::filesystem::exists(f, ec)) continue;
      if (auto v = detail::token_name(Vocabulary::read_json(f.string()), "cls_token")) cls = *v;
    }
    sp.nlu = sp.s2s = "";
    return esm_tokenizer(tokens, sp, cls, path, files_beside(path), Kind::esm);
  }

  // The vocab.txt of a BertTokenizer with one-letter residue tokens (ProtBert:
  // Rostlab/prot_bert), as its model card calls it, residues separated by
  // spaces: [CLS] one token per residue ([UNK] where the letter is not in the
  // vocabulary) [SEP]. Only the words call style reproduces it (a string of
  // residues is one word to BERT, whose WordPiece pieces ProtBert's vocabulary
  // lacks); a tokenizer that lower-cases (do_lower_case, BertTokenizer's
  // default) would turn every residue into [UNK] and is refused.
  static Tokenizer from_bert_vocab(const std::string& path) {
    const std::vector<std::string> tokens = read_vocab_lines(path);
    const nlohmann::json config = config_near(path);
    PLM_CHECK(config.is_object() && config.contains("do_lower_case") && config.at("do_lower_case").is_boolean() &&
                  !config.at("do_lower_case").get<bool>(),
              "Tokenizer: ", path, ": a BertTokenizer lower-cases its input unless tokenizer_config.json says \"do_lower_case\": false "
              "(ProtBert's does); lower-cased residues would all be [UNK]");
    Specials sp;  // BertTokenizer's defaults, then the config files'
    sp.pad = "[PAD]", sp.unk = "[UNK]", sp.eos = "[SEP]", sp.nlu = sp.s2s = "";
    const Specials near = specials_near(path);
    const Specials plain;
    if (near.pad != plain.pad) sp.pad = near.pad;
    if (near.unk != plain.unk) sp.unk = near.unk;
    if (near.eos != plain.eos) sp.eos = near.eos;
    std::string cls = "[CLS]";
    if (auto v = detail::token_name(config, "cls_token")) cls = *v;
    return esm_tokenizer(tokens, sp, cls, path, files_beside(path), Kind::bert);
  }

 private:
  // A vocab.txt: a token per line, spaces around it dropped, as transformers reads it.
  static std::vector<std::string> read_vocab_lines(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    PLM_CHECK(in, "Tokenizer: ", path, ": cannot open");
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path, ec);
    PLM_CHECK(!ec && bytes <= (std::uintmax_t{16} << 20), "Tokenizer: ", path, ": ", ec ? ec.message() : std::to_string(bytes) + " bytes",
              " (an ESM vocab.txt is a few hundred bytes; the limit is 16 MiB)");
    std::vector<std::string> tokens;
    std::string line;
    while (std::getline(in, line)) {
      const auto a = line.find_first_not_of(" \t\r\n\v\f");
      const auto b = line.find_last_not_of(" \t\r\n\v\f");
      std::string t = a == std::string::npos ? std::string() : line.substr(a, b - a + 1);
      PLM_CHECK(t.find('\0') == std::string::npos, "Tokenizer: ", path, ": line ", tokens.size() + 1, " holds a NUL byte");
      PLM_CHECK(!t.empty(), "Tokenizer: ", path, ": line ", tokens.size() + 1, " is empty");
      tokens.push_back(std::move(t));
    }
    PLM_CHECK(!in.bad(), "Tokenizer: ", path, ": read error");
    return tokens;
  }

 public:

  // ESM-2's alphabet (33 tokens: <cls> 0, <pad> 1, <eos> 2, <unk> 3, L A G V S
  // E R T I D P K Q N F Y M H W C X B U Z O . -, <null_1>, <mask> 32),
  // tokenized as EsmTokenizer does; io::save_tokenizer writes it as vocab.txt
  // and EsmTokenizer's config files.
  static Tokenizer esm2() {
    std::vector<std::string> tokens = {"<cls>", "<pad>", "<eos>", "<unk>"};
    for (const char c : std::string_view("LAGVSERTIDPKQNFYMHWCXBUZO.-")) tokens.emplace_back(1, c);
    tokens.insert(tokens.end(), {"<null_1>", "<mask>"});
    Specials sp;
    sp.eos = "<eos>", sp.nlu = sp.s2s = "";
    return esm_tokenizer(tokens, sp, "<cls>", "esm2 alphabet", {}, Kind::esm);
  }
  // True for EsmTokenizer's encoding (a vocab.txt or the esm2() alphabet).
  bool is_esm() const { return kind_ == Kind::esm; }

  const Vocabulary& vocabulary() const { return *vocab_; }
  const std::string& source() const { return source_; }
  // The files it was read from (the tokenizer file, and tokenizer_config.json /
  // special_tokens_map.json beside it when they exist); empty for plm's own.
  const std::vector<std::string>& files() const { return files_; }
  // True when the ids come from Hugging Face tokenizer files (not plm's own encoding).
  bool is_pretrained() const { return kind_ != Kind::vocabulary; }

  // Appends the encoding of `sequence` (with the post-processor's special tokens,
  // e.g. </s>) to `out`. `context` (a FASTA id) is named in errors.
  void encode(std::string_view sequence, InputStyle style, Encoding& out, std::string_view context = {}) const {
    for (std::size_t i = 0; i < sequence.size(); ++i) {
      const auto c = static_cast<unsigned char>(sequence[i]);
      if (!detail::is_sequence_char(c))
        PLM_FAIL("Tokenizer: invalid character ", detail::describe_char(c), " at column ", i, detail::in_context(context),
                 ": a protein sequence holds letters, '*', '-' and '.'");
    }
    PLM_CHECK(sequence.size() < (std::size_t{1} << 30), "Tokenizer: sequence of ", sequence.size(), " characters", detail::in_context(context));
    if (kind_ == Kind::vocabulary) {
      std::vector<std::int32_t> ids;
      EncodeOptions eo;
      eo.append_eos = false;
      vocab_->encode_into(sequence, ids, eo, context);
      for (std::size_t i = 0; i < ids.size(); ++i) out.push(ids[i], static_cast<std::int32_t>(i), static_cast<std::int32_t>(i + 1));
      out.push(vocab_->eos_id(), static_cast<std::int32_t>(ids.size()), static_cast<std::int32_t>(ids.size()));
      return;
    }
    PLM_CHECK(kind_ != Kind::bert || style == InputStyle::words, "Tokenizer: ", source_,
              ": a BertTokenizer (ProtBert) reads residues separated by spaces; use the words call style (--tokenize words)");
    const auto n = static_cast<std::int32_t>(sequence.size());
    for (const std::int32_t special : post_) {
      if (special >= 0) {
        out.push(special, n, n);  // holds no residue; placed after the sequence
        continue;
      }
      if (style == InputStyle::words) {
        for (std::int32_t i = 0; i < n; ++i) encode_text(sequence.substr(static_cast<std::size_t>(i), 1), i, out);
      } else {
        encode_text(sequence, 0, out);
      }
    }
  }
  Encoding encode(std::string_view sequence, InputStyle style, std::string_view context = {}) const {
    Encoding e;
    encode(sequence, style, e, context);
    return e;
  }

 private:
  enum class Kind { vocabulary, pipeline, sentencepiece, esm, bert };
  enum class Model { unigram, wordlevel, wordpiece };
  enum class Pre { whitespace_split, whitespace, bert, punctuation, metaspace, split_chars, split_char };

  struct PreTokenizer {
    Pre kind;
    std::string replacement;  // metaspace
    bool prepend = true;      // metaspace: prefix each word's first segment
    bool split = true;        // metaspace
    char delimiter = 0;       // split_char: the character
    int behavior = 0;         // split_char: 0 removed, 1 isolated, 2 merged with previous, 3 merged with next
  };

  Tokenizer() = default;

  // A character-level tokenizer (EsmTokenizer, or BertTokenizer on one-letter
  // residue words): cls, the residues' tokens, eos (or sep).
  static Tokenizer esm_tokenizer(const std::vector<std::string>& tokens, const Specials& sp, const std::string& cls, const std::string& source,
                                 std::vector<std::string> files, Kind kind) {
    Tokenizer t(Vocabulary::from_tokens(tokens, sp, source), source);
    t.kind_ = kind;
    t.files_ = std::move(files);
    const auto cls_id = t.vocab_->find(cls);
    PLM_CHECK(cls_id.has_value(), "Tokenizer: ", source, ": no ", cls, " token (EsmTokenizer puts it before every sequence)");
    for (const auto& tok : tokens) t.max_piece_bytes_ = std::max(t.max_piece_bytes_, tok.size());
    t.post_ = {*cls_id, -1, t.vocab_->eos_id()};
    return t;
  }

  static std::vector<std::string> files_beside(const std::string& path) {
    std::vector<std::string> files = {path};
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"})
      if (std::filesystem::is_regular_file(dir / name, ec)) files.push_back((dir / name).string());
    return files;
  }

  static nlohmann::json config_near(const std::string& path) {
    const std::filesystem::path cfg = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (!std::filesystem::exists(cfg, ec)) return nlohmann::json();
    return Vocabulary::read_json(cfg.string());
  }

  // pad / eos / unk from tokenizer_config.json, then special_tokens_map.json; eos
  // falls back to sep_token (BERT-style tokenizers have no eos).
  static Specials specials_near(const std::string& path) {
    Specials s;
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {  // the latter wins
      const std::filesystem::path f = dir / name;
      if (!std::filesystem::exists(f, ec)) continue;
      const nlohmann::json j = Vocabulary::read_json(f.string());
      if (auto v = detail::token_name(j, "pad_token")) s.pad = *v;
      if (auto v = detail::token_name(j, "unk_token")) s.unk = *v;
      if (auto v = detail::token_name(j, "eos_token")) s.eos = *v;
      else if (auto w = detail::token_name(j, "sep_token")) s.eos = *w;
    }
    return s;
  }

  [[noreturn]] void refuse(const std::string& what) const {
    PLM_FAIL("Tokenizer: ", source_, ": ", what, "; plm reproduces only tokenizers whose ids it can match exactly");
  }

  static std::string type_of(const nlohmann::json& j) {
    return j.is_object() && j.contains("type") && j.at("type").is_string() ? j.at("type").get<std::string>() : std::string();
  }

  void parse_pipeline(const nlohmann::json& j) {
    for (unsigned c = 0; c < 128; ++c) norm_[c] = static_cast<char>(c);
    if (j.contains("normalizer")) parse_normalizer(j.at("normalizer"));
    if (j.contains("pre_tokenizer")) parse_pre_tokenizer(j.at("pre_tokenizer"));
    parse_model(j.at("model"));
    post_ = {-1};
    if (j.contains("post_processor")) parse_post_processor(j.at("post_processor"));
    // Added tokens are matched in the input before the model runs; one made of
    // sequence characters would change the split, which plm does not reproduce.
    if (j.contains("added_tokens") && j.at("added_tokens").is_array())
      for (const auto& a : j.at("added_tokens")) {
        const std::string content = a.at("content").get<std::string>();
        const bool sequence_like = !content.empty() && std::all_of(content.begin(), content.end(), [](char c) {
          return detail::is_sequence_char(static_cast<unsigned char>(c));
        });
        if (sequence_like && !vocab_->is_residue(vocab_->id_of(content)))
          refuse("added token '" + content + "' is made of sequence characters");
      }
  }

  // Normalizers act on a protein's characters one for one, or refuse.
  void parse_normalizer(const nlohmann::json& n) {
    if (n.is_null()) return;
    const std::string type = type_of(n);
    if (type == "Sequence") {
      if (!n.contains("normalizers") || !n.at("normalizers").is_array()) refuse("normalizer Sequence without a list");
      for (const auto& m : n.at("normalizers")) parse_normalizer(m);
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Strip" || type == "StripAccents" ||
               type == "Nmt") {
      // identity on ASCII letters and punctuation
    } else if (type == "Lowercase") {
      for (unsigned c = 'A'; c <= 'Z'; ++c) norm_[c] = static_cast<char>(norm_[c] - 'A' + 'a');
    } else if (type == "BertNormalizer") {
      if (n.contains("lowercase") && n.at("lowercase").is_boolean() && n.at("lowercase").get<bool>())
        for (unsigned c = 'A'; c <= 'Z'; ++c) norm_[c] = static_cast<char>(norm_[c] - 'A' + 'a');
    } else if (type == "Replace") {
      const nlohmann::json pattern = n.contains("pattern") ? n.at("pattern") : nlohmann::json();
      if (!pattern.is_object()) refuse("normalizer Replace without a pattern");
      std::string source;
      if (pattern.contains("String") && pattern.at("String").is_string()) source = pattern.at("String").get<std::string>();
      else if (pattern.contains("Regex") && pattern.at("Regex").is_string()) source = pattern.at("Regex").get<std::string>();
      else refuse("normalizer Replace with a pattern of another kind");
      // Whitespace-only patterns (T5's " {2,}") never match a protein; others would change it.
      const bool whitespace_only = std::all_of(source.begin(), source.end(), [](char c) {
        return c == ' ' || c == '{' || c == '}' || c == ',' || c == '+' || (c >= '0' && c <= '9') || c == '\\' || c == 's' ||
               c == 't' || c == 'n';
      });
      if (!whitespace_only || source.empty()) refuse("normalizer Replace pattern '" + source + "' may change a protein sequence");
    } else if (type == "Precompiled") {
      parse_precompiled(n);
    } else if (type == "Prepend") {
      if (!n.contains("prepend") || !n.at("prepend").is_string()) refuse("normalizer Prepend without a string");
      prepend_ += n.at("prepend").get<std::string>();
    } else {
      refuse("normalizer '" + (type.empty() ? json_excerpt(n) : type) + "' is not supported");
    }
  }

  // SentencePiece's precompiled character map, read for the characters a
  // protein may hold: each is looked up alone, as transformers does for a
  // one-character grapheme.
  void parse_precompiled(const nlohmann::json& n) {
    if (!n.contains("precompiled_charsmap") || n.at("precompiled_charsmap").is_null()) return;  // none: identity
    if (!n.at("precompiled_charsmap").is_string()) refuse("normalizer Precompiled: precompiled_charsmap is not a string");
    std::optional<detail::Charsmap> map;
    try {
      map.emplace(detail::base64_decode(n.at("precompiled_charsmap").get<std::string>()));
    } catch (const Error& e) {
      refuse(std::string("normalizer Precompiled: ") + e.what());
    }
    for (unsigned c = 1; c < 128; ++c) {
      if (!detail::is_sequence_char(static_cast<unsigned char>(c))) continue;
      std::optional<std::string_view> to;
      try {
        to = map->lookup(std::string(1, static_cast<char>(c)));
      } catch (const Error& e) {
        refuse(std::string("normalizer Precompiled: ") + e.what());
      }
      if (!to) continue;
      if (to->size() != 1 || !detail::is_sequence_char(static_cast<unsigned char>((*to)[0])))
        refuse(std::string("normalizer Precompiled maps ") + detail::describe_char(static_cast<unsigned char>(c)) + " to '" +
               std::string(*to) + "'");
      norm_[c] = norm_[static_cast<unsigned char>((*to)[0])];
    }
  }

  void parse_pre_tokenizer(const nlohmann::json& p) {
    if (p.is_null()) return;
    const std::string type = type_of(p);
    PreTokenizer t{};
    if (type == "Sequence") {
      if (!p.contains("pretokenizers") || !p.at("pretokenizers").is_array()) refuse("pre_tokenizer Sequence without a list");
      for (const auto& q : p.at("pretokenizers")) parse_pre_tokenizer(q);
      return;
    } else if (type == "WhitespaceSplit") {
      t.kind = Pre::whitespace_split;
    } else if (type == "Whitespace") {
      t.kind = Pre::whitespace;
    } else if (type == "BertPreTokenizer") {
      t.kind = Pre::bert;
    } else if (type == "Punctuation") {
      const std::string behavior = p.contains("behavior") && p.at("behavior").is_string() ? p.at("behavior").get<std::string>() : "Isolated";
      if (behavior != "Isolated") refuse("pre_tokenizer Punctuation with behavior " + behavior);
      t.kind = Pre::punctuation;
    } else if (type == "Digits") {
      return;  // digits never occur in a protein sequence
    } else if (type == "Metaspace") {
      t.kind = Pre::metaspace;
      t.replacement = p.contains("replacement") && p.at("replacement").is_string() ? p.at("replacement").get<std::string>()
                                                                                    : std::string(detail::sentencepiece_space);
      if (t.replacement.empty()) refuse("pre_tokenizer Metaspace with an empty replacement");
      if (p.contains("prepend_scheme") && p.at("prepend_scheme").is_string()) {
        const std::string scheme = p.at("prepend_scheme").get<std::string>();
        if (scheme != "always" && scheme != "first" && scheme != "never") refuse("pre_tokenizer Metaspace prepend_scheme '" + scheme + "'");
        // A protein has no whitespace, so each word is one segment: "first" and "always" agree.
        t.prepend = scheme != "never";
      } else if (p.contains("add_prefix_space") && p.at("add_prefix_space").is_boolean()) {
        t.prepend = p.at("add_prefix_space").get<bool>();
      }
      if (p.contains("split") && p.at("split").is_boolean()) t.split = p.at("split").get<bool>();
    } else if (type == "Split") {
      const nlohmann::json pattern = p.contains("pattern") ? p.at("pattern") : nlohmann::json();
      if (!pattern.is_object() || !pattern.contains("String") || !pattern.at("String").is_string())
        refuse("pre_tokenizer Split with a pattern other than a plain string");
      const std::string s = pattern.at("String").get<std::string>();
      const std::string behavior = p.contains("behavior") && p.at("behavior").is_string() ? p.at("behavior").get<std::string>() : "";
      if (p.contains("invert") && p.at("invert").is_boolean() && p.at("invert").get<bool>()) refuse("pre_tokenizer Split with invert");
      if (s.empty()) {
        // An empty pattern matches between every two characters: one segment per character.
        if (behavior != "Isolated" && behavior != "Removed") refuse("pre_tokenizer Split on \"\" with behavior " + behavior);
        t.kind = Pre::split_chars;
      } else if (s.size() == 1) {
        t.kind = Pre::split_char;
        t.delimiter = s[0];
        if (behavior == "Removed") {
          if (detail::is_sequence_char(static_cast<unsigned char>(s[0])))
            refuse("pre_tokenizer Split removes '" + s + "', a sequence character");
          t.behavior = 0;
        }
        else if (behavior == "Isolated") t.behavior = 1;
        else if (behavior == "MergedWithPrevious") t.behavior = 2;
        else if (behavior == "MergedWithNext") t.behavior = 3;
        else refuse("pre_tokenizer Split with behavior " + behavior);
      } else {
        refuse("pre_tokenizer Split on '" + s + "'");
      }
    } else {
      refuse("pre_tokenizer '" + (type.empty() ? json_excerpt(p) : type) + "' is not supported" +
             (type == "ByteLevel" ? " (byte-level BPE merges residues)" : ""));
    }
    pre_.push_back(std::move(t));
  }

  void parse_model(const nlohmann::json& m) {
    const std::string type = type_of(m);
    const nlohmann::json& vocab = m.at("vocab");
    if (type == "Unigram" || (type.empty() && vocab.is_array())) {
      model_ = Model::unigram;
      if (m.contains("byte_fallback") && m.at("byte_fallback").is_boolean() && m.at("byte_fallback").get<bool>())
        refuse("Unigram model with byte_fallback");
      if (!m.contains("unk_id") || !m.at("unk_id").is_number_integer()) refuse("Unigram model without an integer unk_id");
      const std::int64_t unk = m.at("unk_id").get<std::int64_t>();
      if (unk < 0 || unk >= static_cast<std::int64_t>(vocab.size())) refuse("Unigram unk_id " + std::to_string(unk) + " outside the vocabulary");
      model_unk_ = static_cast<std::int32_t>(unk);
      double min_score = std::numeric_limits<double>::infinity();
      for (std::size_t i = 0; i < vocab.size(); ++i) {
        const auto& e = vocab[i];
        if (!e.is_array() || e.size() < 2 || !e[0].is_string() || !e[1].is_number())
          refuse("model.vocab[" + std::to_string(i) + "] is " + json_excerpt(e) + ", not a [piece, score] pair");
        const std::string piece = e[0].get<std::string>();
        const double score = e[1].get<double>();
        if (detail::merges_residues(piece)) refuse("piece '" + piece + "' merges residues");
        pieces_.emplace(piece, std::make_pair(static_cast<std::int32_t>(i), score));
        max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());
        min_score = std::min(min_score, score);
      }
      unk_score_ = min_score - 10.0;  // tokenizers' K_UNK_PENALTY
    } else if (type == "WordLevel" || type == "WordPiece") {
      model_ = type == "WordLevel" ? Model::wordlevel : Model::wordpiece;
      const std::string unk = m.contains("unk_token") && m.at("unk_token").is_string() ? m.at("unk_token").get<std::string>() : "";
      const auto unk_id = vocab_->find(unk);
      if (!unk_id) refuse(type + " unk_token '" + unk + "' is not in the vocabulary");
      model_unk_ = *unk_id;
      if (model_ == Model::wordpiece) {
        if (m.contains("continuing_subword_prefix") && m.at("continuing_subword_prefix").is_string())
          continuation_ = m.at("continuing_subword_prefix").get<std::string>();
        if (m.contains("max_input_chars_per_word") && m.at("max_input_chars_per_word").is_number_unsigned())
          max_word_chars_ = m.at("max_input_chars_per_word").get<std::size_t>();
      }
      for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        std::string piece = it.key();
        if (model_ == Model::wordpiece && !continuation_.empty() && piece.rfind(continuation_, 0) == 0 && piece.size() > continuation_.size())
          piece = "##" + piece.substr(continuation_.size());
        if (detail::merges_residues(piece)) refuse("token '" + it.key() + "' merges residues");
        pieces_.emplace(it.key(), std::make_pair(it.value().get<std::int32_t>(), 0.0));
        max_piece_bytes_ = std::max(max_piece_bytes_, it.key().size());
      }
    } else {
      refuse("model type '" + type + "' is not supported (Unigram, WordLevel and WordPiece are)" +
             (type == "BPE" ? ": BPE merges residues" : ""));
    }
  }

  void parse_post_processor(const nlohmann::json& p) {
    if (p.is_null()) return;
    const std::string type = type_of(p);
    if (type == "Sequence") {
      if (!p.contains("processors") || !p.at("processors").is_array()) refuse("post_processor Sequence without a list");
      for (const auto& q : p.at("processors")) parse_post_processor(q);
    } else if (type == "ByteLevel") {
      return;  // offsets only
    } else if (type == "TemplateProcessing") {
      if (!p.contains("single") || !p.at("single").is_array()) refuse("post_processor TemplateProcessing without 'single'");
      const nlohmann::json specials = p.contains("special_tokens") ? p.at("special_tokens") : nlohmann::json::object();
      std::vector<std::int32_t> post;
      bool has_sequence = false;
      for (const auto& item : p.at("single")) {
        if (item.is_object() && item.contains("Sequence")) {
          // The single-sequence template holds sequence A exactly once (as the
          // tokenizers library writes it); B or a second copy would repeat residues.
          const nlohmann::json& seq = item.at("Sequence");
          if (!seq.is_object() || !seq.contains("id") || seq.at("id") != "A")
            refuse("post_processor TemplateProcessing: the single template's sequence must be A, got " + json_excerpt(item));
          if (has_sequence) refuse("post_processor TemplateProcessing: the single template holds the sequence twice");
          post.push_back(-1);
          has_sequence = true;
        } else if (item.is_object() && item.contains("SpecialToken") && item.at("SpecialToken").is_object() &&
                   item.at("SpecialToken").contains("id") && item.at("SpecialToken").at("id").is_string()) {
          const std::string name = item.at("SpecialToken").at("id").get<std::string>();
          if (!specials.is_object() || !specials.contains(name) || !specials.at(name).is_object() || !specials.at(name).contains("ids") ||
              !specials.at(name).at("ids").is_array())
            refuse("post_processor special token '" + name + "' has no ids");
          for (const auto& id : specials.at(name).at("ids")) {
            if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= vocab_->size())
              refuse("post_processor special token '" + name + "' has id " + json_excerpt(id) + " outside the vocabulary");
            post.push_back(id.get<std::int32_t>());
          }
        } else {
          refuse("post_processor TemplateProcessing item " + json_excerpt(item));
        }
      }
      if (!has_sequence) refuse("post_processor TemplateProcessing without the sequence");
      post_ = std::move(post);
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      const auto id_of = [&](const char* key) {
        if (!p.contains(key) || !p.at(key).is_array() || p.at(key).size() != 2 || !p.at(key)[1].is_number_integer())
          refuse(std::string("post_processor ") + type + " without " + key);
        const auto id = p.at(key)[1].get<std::int64_t>();
        if (id < 0 || id >= vocab_->size()) refuse(std::string("post_processor ") + key + " id outside the vocabulary");
        return static_cast<std::int32_t>(id);
      };
      post_ = {id_of("cls"), -1, id_of("sep")};
    } else {
      refuse("post_processor '" + type + "' is not supported");
    }
  }

  // One word (words style) or the whole sequence (string style); `first` is the
  // input column of text[0].
  void encode_text(std::string_view text, std::int32_t first, Encoding& out) const {
#ifdef PLM_SENTENCEPIECE
    if (kind_ == Kind::sentencepiece) {
      sentencepiece::ImmutableSentencePieceText spt;
      const auto status = sp_->Encode(text, spt.mutable_proto());
      PLM_CHECK(status.ok(), "Tokenizer: ", source_, ": SentencePiece: ", status.ToString());
      for (const auto& piece : spt.pieces()) {
        const std::int32_t b = static_cast<std::int32_t>(piece.begin()), e = static_cast<std::int32_t>(piece.end());
        out.push(static_cast<std::int32_t>(piece.id()), first + b, first + e);
      }
      return;
    }
#endif
    if (kind_ == Kind::esm || kind_ == Kind::bert) {
      esm_split(text, first, out);
      return;
    }
    detail::Segment s;
    for (char c : prepend_) {
      s.text.push_back(c);
      s.source.push_back(-1);
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
      s.text.push_back(norm_[static_cast<unsigned char>(text[i])]);
      s.source.push_back(first + static_cast<std::int32_t>(i));
    }
    std::vector<detail::Segment> segments;
    segments.push_back(std::move(s));
    for (const PreTokenizer& p : pre_) segments = pre_tokenize(p, std::move(segments));
    for (const detail::Segment& seg : segments) {
      if (seg.text.empty()) continue;
      switch (model_) {
        case Model::unigram: unigram(seg, out); break;
        case Model::wordlevel: wordlevel(seg, out); break;
        case Model::wordpiece: wordpiece(seg, out); break;
      }
    }
  }

  static detail::Segment slice(const detail::Segment& s, std::size_t a, std::size_t b) {
    detail::Segment r;
    r.text = s.text.substr(a, b - a);
    r.source.assign(s.source.begin() + static_cast<std::ptrdiff_t>(a), s.source.begin() + static_cast<std::ptrdiff_t>(b));
    return r;
  }

  std::vector<detail::Segment> pre_tokenize(const PreTokenizer& p, std::vector<detail::Segment> in) const {
    std::vector<detail::Segment> out;
    for (std::size_t k = 0; k < in.size(); ++k) {
      const detail::Segment& s = in[k];
      const std::string& t = s.text;
      const auto push = [&](std::size_t a, std::size_t b) {
        if (b > a) out.push_back(slice(s, a, b));
      };
      switch (p.kind) {
        case Pre::whitespace_split:
        case Pre::bert:
        case Pre::punctuation: {
          std::size_t a = 0;
          for (std::size_t i = 0; i < t.size(); ++i) {
            const auto c = static_cast<unsigned char>(t[i]);
            if (p.kind != Pre::punctuation && detail::is_ascii_space(c)) {
              push(a, i);
              a = i + 1;
            } else if (p.kind != Pre::whitespace_split && detail::is_ascii_punct(c)) {
              push(a, i);
              push(i, i + 1);
              a = i + 1;
            }
          }
          push(a, t.size());
          break;
        }
        case Pre::whitespace: {  // \w+|[^\w\s]+
          std::size_t a = 0;
          int cls = -1;  // 0 word, 1 other
          for (std::size_t i = 0; i < t.size();) {
            const auto c = static_cast<unsigned char>(t[i]);
            const std::size_t len = std::min(detail::utf8_length(c), t.size() - i);
            const int now = detail::is_ascii_space(c) ? -1 : detail::is_word_char(c) ? 0 : 1;
            if (now != cls) {
              if (cls >= 0) push(a, i);
              a = i;
              cls = now;
            }
            i += len;
          }
          if (cls >= 0) push(a, t.size());
          break;
        }
        case Pre::metaspace: {
          detail::Segment r;
          const bool first_of_word = k == 0;
          if (p.prepend && first_of_word && t.rfind(p.replacement, 0) != 0) {
            r.text = p.replacement;
            r.source.assign(p.replacement.size(), -1);
          }
          for (std::size_t i = 0; i < t.size(); ++i) {
            if (t[i] == ' ') {
              r.text += p.replacement;
              r.source.insert(r.source.end(), p.replacement.size(), -1);
            } else {
              r.text.push_back(t[i]);
              r.source.push_back(s.source[i]);
            }
          }
          if (!p.split) {
            out.push_back(std::move(r));
            break;
          }
          // Split before every replacement (merged with next).
          std::size_t a = 0;
          for (std::size_t i = 0; i + p.replacement.size() <= r.text.size(); ++i)
            if (i > a && r.text.compare(i, p.replacement.size(), p.replacement) == 0) {
              out.push_back(slice(r, a, i));
              a = i;
            }
          if (r.text.size() > a) out.push_back(slice(r, a, r.text.size()));
          break;
        }
        case Pre::split_chars: {
          for (std::size_t i = 0; i < t.size();) {
            const std::size_t len = std::min(detail::utf8_length(static_cast<unsigned char>(t[i])), t.size() - i);
            push(i, i + len);
            i += len;
          }
          break;
        }
        case Pre::split_char: {
          std::size_t a = 0;
          for (std::size_t i = 0; i < t.size(); ++i) {
            if (t[i] != p.delimiter) continue;
            switch (p.behavior) {
              case 0: push(a, i); a = i + 1; break;
              case 1: push(a, i); push(i, i + 1); a = i + 1; break;
              case 2: push(a, i + 1); a = i + 1; break;
              default: push(a, i); a = i; break;
            }
          }
          push(a, t.size());
          break;
        }
      }
    }
    return out;
  }

  // The input columns a byte range of a segment holds.
  static void emit(const detail::Segment& s, std::size_t a, std::size_t b, std::int32_t id, Encoding& out) {
    std::int32_t lo = std::numeric_limits<std::int32_t>::max(), hi = -1;
    for (std::size_t i = a; i < b; ++i)
      if (s.source[i] >= 0) {
        lo = std::min(lo, s.source[i]);
        hi = std::max(hi, s.source[i]);
      }
    if (hi < 0) {
      // Holds no input character: place it at the next character that follows.
      std::int32_t at = -1;
      for (std::size_t i = b; i < s.source.size() && at < 0; ++i) at = s.source[i];
      if (at < 0) at = s.source.empty() || s.source.back() < 0 ? 0 : s.source.back() + 1;
      out.push(id, at, at);
    } else {
      out.push(id, lo, hi + 1);
    }
  }

  // Unigram: the best-scoring segmentation (Viterbi), as tokenizers' Unigram
  // encodes it: candidates in order of start, strict improvements only, an
  // unknown character as one unk piece scored min_score - 10, and runs of unk
  // pieces fused into one.
  void unigram(const detail::Segment& s, Encoding& out) const {
    const std::string& t = s.text;
    const std::size_t n = t.size();
    struct Best {
      double score = 0;
      std::size_t start = 0;
      std::int32_t id = -1;
      bool set = false;
    };
    std::vector<Best> best(n + 1);
    best[0].set = true;
    for (std::size_t a = 0; a < n; ++a) {
      if (!best[a].set) continue;
      const std::size_t char_len = std::min(detail::utf8_length(static_cast<unsigned char>(t[a])), n - a);
      bool single = false;
      for (std::size_t len = 1; len <= std::min(max_piece_bytes_, n - a); ++len) {
        const auto it = pieces_.find(t.substr(a, len));
        if (it == pieces_.end()) continue;
        if (len == char_len) single = true;
        const double score = best[a].score + it->second.second;
        Best& target = best[a + len];
        if (!target.set || score > target.score) target = {score, a, it->second.first, true};
      }
      if (!single) {
        const double score = best[a].score + unk_score_;
        Best& target = best[a + char_len];
        if (!target.set || score > target.score) target = {score, a, model_unk_, true};
      }
    }
    std::vector<std::pair<std::size_t, std::size_t>> spans;  // reversed
    std::vector<std::int32_t> ids;
    for (std::size_t e = n; e > 0;) {
      const Best& b = best[e];
      if (b.id == model_unk_ && !ids.empty() && ids.back() == model_unk_) {
        spans.back().first = b.start;  // fuse with the unk after it
      } else {
        spans.emplace_back(b.start, e);
        ids.push_back(b.id);
      }
      e = b.start;
    }
    for (std::size_t k = ids.size(); k-- > 0;) emit(s, spans[k].first, spans[k].second, ids[k], out);
  }

  void wordlevel(const detail::Segment& s, Encoding& out) const {
    const auto it = pieces_.find(s.text);
    emit(s, 0, s.text.size(), it == pieces_.end() ? model_unk_ : it->second.first, out);
  }

  // WordPiece: greedy longest match, continuation pieces after the first; a
  // word with an unmatched stretch, or longer than max_input_chars_per_word
  // characters, is one unk.
  void wordpiece(const detail::Segment& s, Encoding& out) const {
    const std::string& t = s.text;
    std::size_t chars = 0;
    for (std::size_t i = 0; i < t.size(); i += detail::utf8_length(static_cast<unsigned char>(t[i]))) ++chars;
    std::vector<std::pair<std::size_t, std::int32_t>> parts;  // (end, id)
    bool bad = chars > max_word_chars_;
    for (std::size_t a = 0; a < t.size() && !bad;) {
      std::size_t found_end = 0;
      std::int32_t found = -1;
      for (std::size_t e = t.size(); e > a; --e) {
        if (e < t.size() && (static_cast<unsigned char>(t[e]) & 0xC0) == 0x80) continue;  // inside a character
        std::string piece = t.substr(a, e - a);
        if (a > 0) piece = continuation_ + piece;
        const auto it = pieces_.find(piece);
        if (it != pieces_.end()) {
          found = it->second.first;
          found_end = e;
          break;
        }
      }
      if (found < 0) bad = true;
      else {
        parts.emplace_back(found_end, found);
        a = found_end;
      }
    }
    if (bad) {
      emit(s, 0, t.size(), model_unk_, out);
      return;
    }
    std::size_t a = 0;
    for (const auto& [e, id] : parts) {
      emit(s, a, e, id, out);
      a = e;
    }
  }

  // EsmTokenizer: the longest vocabulary token at each column (transformers'
  // no-split trie holds them all); the characters between two tokens form one
  // word, which is <unk> (ESM's vocabulary has no multi-letter word).
  void esm_split(std::string_view text, std::int32_t first, Encoding& out) const {
    std::size_t i = 0, unknown = std::string_view::npos;
    const auto flush = [&](std::size_t end) {
      if (unknown == std::string_view::npos) return;
      const auto id = vocab_->find(text.substr(unknown, end - unknown));
      out.push(id ? *id : vocab_->unk_id(), first + static_cast<std::int32_t>(unknown), first + static_cast<std::int32_t>(end));
      unknown = std::string_view::npos;
    };
    while (i < text.size()) {
      std::size_t len = std::min(max_piece_bytes_, text.size() - i);
      std::optional<std::int32_t> id;
      for (; len > 0; --len)
        if ((id = vocab_->find(text.substr(i, len)))) break;
      if (!id) {
        if (unknown == std::string_view::npos) unknown = i;
        ++i;
        continue;
      }
      flush(i);
      out.push(*id, first + static_cast<std::int32_t>(i), first + static_cast<std::int32_t>(i + len));
      i += len;
    }
    flush(text.size());
  }

  std::shared_ptr<const Vocabulary> vocab_;
  std::string source_;
  Kind kind_ = Kind::vocabulary;
  std::array<char, 128> norm_{};
  std::string prepend_;
  std::vector<PreTokenizer> pre_;
  Model model_ = Model::unigram;
  std::unordered_map<std::string, std::pair<std::int32_t, double>> pieces_;
  std::size_t max_piece_bytes_ = 0;
  std::int32_t model_unk_ = 0;
  double unk_score_ = 0;
  std::string continuation_ = "##";
  std::size_t max_word_chars_ = 100;
  std::vector<std::int32_t> post_ = {-1};  // the sequence (-1) and special ids around it
  std::vector<std::string> files_;
#ifdef PLM_SENTENCEPIECE
  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
#endif
};

}  // namespace plm::data
