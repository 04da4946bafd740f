#pragma once
// Labelled protein sets for fine-tuning: sequences from FASTA joined by id
// with a label table, and interaction pair lists.
//
//   label table   one "ID<TAB>LABEL" per line; '#' starts a comment line;
//                 blank lines ignored
//   pair list     one "ID_A<TAB>ID_B<TAB>1|0" per line (1 = interact, 0 = known
//                 not to interact)
//   cluster table one "ID<TAB>CLUSTER" per line (e.g. from cd-hit or mmseqs2);
//                 split_by_cluster keeps every cluster in one split, so
//                 homologues never straddle train and test
//
// Every malformed line is an error naming file:line and what is wrong; an id
// listed twice names both lines. Labels become class ids 0..K-1 in sorted
// order of their names, so the mapping does not depend on file order.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/shape.hpp"
#include "plm/data/fasta.hpp"
#include "plm/data/lines.hpp"

namespace plm::data {

namespace detail {
inline constexpr std::size_t max_table_line = std::size_t{1} << 20;  // an id and a label: 1 MiB is far beyond any real line
// Splits a line on tabs (a trailing '\r' removed).
inline std::vector<std::string> split_tabs(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  std::vector<std::string> f;
  std::size_t s = 0;
  for (;;) {
    const std::size_t t = line.find('\t', s);
    f.push_back(line.substr(s, t == std::string::npos ? std::string::npos : t - s));
    if (t == std::string::npos) return f;
    s = t + 1;
  }
}
inline bool skip_line(const std::string& line) {
  return line.empty() || line == "\r" || line[0] == '#';
}
}  // namespace detail

// id -> label name, in file order.
struct LabelTable {
  std::vector<std::pair<std::string, std::string>> rows;

  static LabelTable read(const std::string& path) {
    std::ifstream in(path);
    PLM_CHECK(in.good(), "LabelTable: cannot open ", path);
    LabelTable t;
    std::unordered_map<std::string, std::size_t> line_of;
    std::string line;
    for (std::size_t n = 1; detail::read_bounded_line(in, line, detail::max_table_line, "LabelTable", path, n); ++n) {
      if (detail::skip_line(line)) continue;
      const auto f = detail::split_tabs(line);
      PLM_CHECK(f.size() == 2, "LabelTable: ", path, ":", n, ": expected 'ID<TAB>LABEL', found ", f.size(), " tab-separated fields");
      PLM_CHECK(!f[0].empty() && !f[1].empty(), "LabelTable: ", path, ":", n, ": empty ", f[0].empty() ? "id" : "label");
      const auto [it, fresh] = line_of.emplace(f[0], n);
      PLM_CHECK(fresh, "LabelTable: ", path, ":", n, ": id '", f[0], "' already labelled on line ", it->second);
      t.rows.emplace_back(f[0], f[1]);
    }
    PLM_CHECK(!t.rows.empty(), "LabelTable: ", path, " holds no labels");
    return t;
  }
};

struct LabelledSet {
  std::vector<std::string> ids, sequences;
  std::vector<std::int32_t> labels;       // class id per protein
  std::vector<std::string> class_names;   // class id -> label name (sorted)
  std::size_t unlabelled = 0;             // FASTA records without a label (skipped)
  std::size_t missing = 0;                // labelled ids without a FASTA record

  std::int32_t num_classes() const { return static_cast<std::int32_t>(class_names.size()); }
  std::size_t size() const { return ids.size(); }
};

// Joins a FASTA file with a label table by record id. Records without a label
// are skipped (counted); with require_all, a label without a sequence or a
// sequence without a label is an error naming it.
inline LabelledSet read_labelled(const std::string& fasta, const std::string& labels, const FastaOptions& fo = {},
                                 bool require_all = false) {
  const LabelTable table = LabelTable::read(labels);
  LabelledSet s;
  std::map<std::string, std::int32_t> class_of;
  for (const auto& [id, name] : table.rows) class_of.emplace(name, 0);
  for (auto& [name, k] : class_of) {
    k = static_cast<std::int32_t>(s.class_names.size());
    s.class_names.push_back(name);
  }
  std::unordered_map<std::string, std::int32_t> label_of;
  for (const auto& [id, name] : table.rows) label_of.emplace(id, class_of.at(name));
  std::unordered_map<std::string, std::size_t> seen;
  FastaReader reader(fasta, fo);
  FastaRecord r;
  while (reader.next(r)) {
    const auto it = label_of.find(r.id);
    if (it == label_of.end()) {
      PLM_CHECK(!require_all, "read_labelled: ", fasta, ":", r.header_line, ": record '", r.id, "' has no label in ", labels);
      ++s.unlabelled;
      continue;
    }
    const auto [at, fresh] = seen.emplace(r.id, r.header_line);
    PLM_CHECK(fresh, "read_labelled: ", fasta, ":", r.header_line, ": record '", r.id, "' appears again (first on line ", at->second, ")");
    s.ids.push_back(r.id);
    s.sequences.push_back(std::move(r.sequence));
    s.labels.push_back(it->second);
  }
  for (const auto& [id, name] : table.rows)
    if (!seen.count(id)) {
      PLM_CHECK(!require_all, "read_labelled: ", labels, ": id '", id, "' has no sequence in ", fasta);
      ++s.missing;
    }
  PLM_CHECK(!s.ids.empty(), "read_labelled: no record of ", fasta, " has a label in ", labels);
  return s;
}

// Interaction pairs over a set of ids: partners[i] and non_partners[i] hold
// indices into ids (both directions), each sorted and unique.
struct PairList {
  std::vector<std::vector<index_t>> partners, non_partners;

  static PairList read(const std::string& path, const std::vector<std::string>& ids) {
    std::unordered_map<std::string, index_t> index;
    for (std::size_t i = 0; i < ids.size(); ++i) index.emplace(ids[i], static_cast<index_t>(i));
    std::ifstream in(path);
    PLM_CHECK(in.good(), "PairList: cannot open ", path);
    PairList p;
    p.partners.resize(ids.size());
    p.non_partners.resize(ids.size());
    std::map<std::pair<index_t, index_t>, std::pair<bool, std::size_t>> known;
    std::string line;
    for (std::size_t n = 1; detail::read_bounded_line(in, line, detail::max_table_line, "PairList", path, n); ++n) {
      if (detail::skip_line(line)) continue;
      const auto f = detail::split_tabs(line);
      PLM_CHECK(f.size() == 3, "PairList: ", path, ":", n, ": expected 'ID_A<TAB>ID_B<TAB>1|0', found ", f.size(), " fields");
      PLM_CHECK(f[2] == "1" || f[2] == "0", "PairList: ", path, ":", n, ": third field '", f[2], "' must be 1 (interact) or 0 (not)");
      index_t ab[2];
      for (int k = 0; k < 2; ++k) {
        const auto it = index.find(f[static_cast<std::size_t>(k)]);
        PLM_CHECK(it != index.end(), "PairList: ", path, ":", n, ": unknown protein '", f[static_cast<std::size_t>(k)], "'");
        ab[k] = it->second;
      }
      PLM_CHECK(ab[0] != ab[1], "PairList: ", path, ":", n, ": a protein paired with itself ('", f[0], "')");
      const bool interact = f[2] == "1";
      const auto key = std::minmax(ab[0], ab[1]);
      const auto [it, fresh] = known.emplace(key, std::pair{interact, n});
      PLM_CHECK(fresh || it->second.first == interact, "PairList: ", path, ":", n, ": '", f[0], "' and '", f[1],
                "' contradict line ", it->second.second);
      if (!fresh) continue;
      auto& lists = interact ? p.partners : p.non_partners;
      lists[static_cast<std::size_t>(ab[0])].push_back(ab[1]);
      lists[static_cast<std::size_t>(ab[1])].push_back(ab[0]);
    }
    for (auto* lists : {&p.partners, &p.non_partners})
      for (auto& l : *lists) std::sort(l.begin(), l.end());
    return p;
  }
};

enum class Split : std::uint8_t { train, valid, test };

inline const char* split_name(Split s) { return s == Split::train ? "train" : s == Split::valid ? "valid" : "test"; }

struct SplitFractions {
  double valid = 0.1, test = 0.2;  // shares of the proteins; train gets the rest
};

// One split per protein (ids in set order) such that all members of a cluster
// share it. Clusters are visited in a seeded pseudo-random order and given to
// test until it holds fractions.test of the proteins, then to valid, then the
// rest to train, so the shares are met as closely as cluster sizes allow.
// clusters: a table "ID<TAB>CLUSTER"; every id must be in it (ids of the
// table absent from `ids` are ignored).
inline std::vector<Split> split_by_cluster(const std::vector<std::string>& ids, const std::string& clusters, SplitFractions f,
                                           std::uint64_t seed) {
  PLM_CHECK(f.valid >= 0 && f.test >= 0 && f.valid + f.test < 1, "split_by_cluster: valid ", f.valid, " and test ", f.test,
            " fractions must be >= 0 and leave some for train");
  const LabelTable table = LabelTable::read(clusters);
  std::unordered_map<std::string, std::string> cluster_of;
  for (const auto& [id, c] : table.rows) cluster_of.emplace(id, c);
  std::map<std::string, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto it = cluster_of.find(ids[i]);
    PLM_CHECK(it != cluster_of.end(), "split_by_cluster: protein '", ids[i], "' has no cluster in ", clusters);
    members[it->second].push_back(i);
  }
  // order: a seeded hash of the cluster name (FNV-1a through Philox), ties by name
  std::vector<std::pair<std::uint64_t, const std::string*>> order;
  for (const auto& [name, m] : members) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
    Philox rng(seed ^ 0x5b117ull, h);
    const std::uint64_t hi = rng.next_u32();
    order.emplace_back((hi << 32) | rng.next_u32(), &name);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : *a.second < *b.second; });
  std::vector<Split> out(ids.size(), Split::train);
  const double n = static_cast<double>(ids.size());
  double in_test = 0, in_valid = 0;
  for (const auto& [h, name] : order) {
    const auto& m = members.at(*name);
    Split s = Split::train;
    if (in_test < f.test * n) s = Split::test, in_test += double(m.size());
    else if (in_valid < f.valid * n) s = Split::valid, in_valid += double(m.size());
    for (std::size_t i : m) out[i] = s;
  }
  return out;
}

// A split given with the data, as benchmarks ship them (DeepLoc, FLIP, ...):
// one "ID<TAB>SPLIT" per line, SPLIT one of train, valid (or validation, dev)
// and test; every protein of `ids` must be listed (ids of the table absent
// from `ids` are ignored).
inline Split parse_split_name(const std::string& name, const std::string& where) {
  if (name == "train") return Split::train;
  if (name == "valid" || name == "validation" || name == "dev") return Split::valid;
  if (name == "test") return Split::test;
  PLM_FAIL(where, ": split '", name, "' is not one of train, valid (validation, dev), test");
}
inline std::vector<Split> read_split_table(const std::vector<std::string>& ids, const std::string& path) {
  const LabelTable table = LabelTable::read(path);
  std::unordered_map<std::string, Split> split_of;
  for (std::size_t r = 0; r < table.rows.size(); ++r)
    split_of.emplace(table.rows[r].first, parse_split_name(table.rows[r].second, path + ": id '" + table.rows[r].first + "'"));
  std::vector<Split> out;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    const auto it = split_of.find(id);
    PLM_CHECK(it != split_of.end(), "read_split_table: protein '", id, "' has no split in ", path);
    out.push_back(it->second);
  }
  return out;
}

// Proteins of separate train / valid / test FASTA files, labelled by one table
// (so class ids agree across the files); split[i] says which file protein i
// came from. An id in two files is refused, naming both.
inline LabelledSet read_labelled_splits(const std::string& train, const std::string& valid, const std::string& test,
                                        const std::string& labels, std::vector<Split>& split, const FastaOptions& fo = {}) {
  LabelledSet all;
  split.clear();
  std::unordered_map<std::string, const std::string*> file_of;
  const std::pair<const std::string*, Split> files[] = {{&train, Split::train}, {&valid, Split::valid}, {&test, Split::test}};
  for (const auto& [file, sp] : files) {
    LabelledSet s = read_labelled(*file, labels, fo);
    all.class_names = s.class_names;  // from the table alone: the same for every file
    all.unlabelled += s.unlabelled;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto [it, fresh] = file_of.emplace(s.ids[i], file);
      PLM_CHECK(fresh, "read_labelled_splits: protein '", s.ids[i], "' is in ", *it->second, " and in ", *file);
      all.ids.push_back(std::move(s.ids[i]));
      all.sequences.push_back(std::move(s.sequences[i]));
      all.labels.push_back(s.labels[i]);
      split.push_back(sp);
    }
  }
  for (const auto& row : LabelTable::read(labels).rows) all.missing += file_of.count(row.first) == 0;
  return all;
}

}  // namespace plm::data
