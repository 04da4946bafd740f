#pragma once
// Labelled protein sets for fine-tuning: sequences from FASTA joined by id
// with a label table, and interaction pair lists.
//
//   label table   one "ID<TAB>LABEL" per line; '#' starts a comment line;
//                 blank lines ignored
//   pair list     one "ID_A<TAB>ID_B<TAB>1|0" per line (1 = interact, 0 = known
//                 not to interact)
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
#include "plm/data/fasta.hpp"

namespace plm::data {

namespace detail {
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
    for (std::size_t n = 1; std::getline(in, line); ++n) {
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
    for (std::size_t n = 1; std::getline(in, line); ++n) {
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

}  // namespace plm::data
