#pragma once
// A protein classification set ready for fine-tuning an encoder: a labelled
// set (labelled.hpp) reduced to the classes with enough members, renumbered
// 0..K-1, and tokenized. With a vocabulary that has task tokens (Ankh3) every
// sequence starts with [NLU], the prefix under which Ankh3 embeds proteins.
// split holds one Split per protein once the caller assigns it
// (split_by_cluster keeps homologues on one side).
#include <algorithm>
#include <unordered_map>
#include <cstdint>
#include <string>
#include <vector>

#include "plm/data/labelled.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/data/vocabulary.hpp"

namespace plm::data {

struct ClassificationOptions {
  std::size_t min_class_size = 1;  // classes with fewer proteins are left out
  std::size_t limit = 0;           // keep only the first proteins (after the class filter); 0 = all
  bool task_prefix = true;         // [NLU] first when the vocabulary has task tokens
};

struct ClassificationSet {
  std::vector<std::string> ids, class_names;
  std::vector<std::vector<std::int32_t>> tokens;  // [prefix] residues </s>
  std::vector<std::int32_t> labels;               // 0..classes() - 1
  std::vector<Split> split;

  std::size_t size() const { return ids.size(); }
  std::int32_t classes() const { return static_cast<std::int32_t>(class_names.size()); }
  // The proteins of a split, in set order.
  std::vector<index_t> of(Split s) const {
    PLM_CHECK(split.size() == ids.size(), "ClassificationSet: ", split.size(), " splits for ", ids.size(), " proteins (assign split first)");
    std::vector<index_t> r;
    for (std::size_t i = 0; i < split.size(); ++i)
      if (split[i] == s) r.push_back(static_cast<index_t>(i));
    return r;
  }
  std::vector<std::int32_t> labels_of(const std::vector<index_t>& proteins) const {
    std::vector<std::int32_t> r;
    for (index_t i : proteins) r.push_back(labels.at(static_cast<std::size_t>(i)));
    return r;
  }
};

namespace detail {
// encode(sequence, id, tokens) appends a protein's ids.
template <class Encode>
ClassificationSet make_classification_set(const LabelledSet& set, const Vocabulary& vocab, const ClassificationOptions& o, Encode&& encode) {
  std::vector<std::size_t> count(set.class_names.size(), 0);
  for (auto y : set.labels) ++count[static_cast<std::size_t>(y)];
  std::vector<std::int32_t> remap(count.size(), -1);
  ClassificationSet d;
  for (std::size_t c = 0; c < count.size(); ++c)
    if (count[c] >= o.min_class_size) {
      remap[c] = d.classes();
      d.class_names.push_back(set.class_names[c]);
    }
  PLM_CHECK(d.class_names.size() >= 2, "make_classification_set: ", d.class_names.size(), " of ", set.class_names.size(),
            " classes have at least ", o.min_class_size, " proteins; at least 2 are needed");
  const bool prefix = o.task_prefix && vocab.has_task_tokens();
  for (std::size_t i = 0; i < set.size() && (o.limit == 0 || d.size() < o.limit); ++i) {
    const std::int32_t y = remap[static_cast<std::size_t>(set.labels[i])];
    if (y < 0) continue;
    std::vector<std::int32_t> t;
    if (prefix) t.push_back(vocab.nlu_id());
    encode(set.sequences[i], set.ids[i], t);
    d.ids.push_back(set.ids[i]);
    d.tokens.push_back(std::move(t));
    d.labels.push_back(y);
  }
  return d;
}
}  // namespace detail

// Needs at least two classes left: a classifier of one class learns nothing.
// Each protein is plm's encoding of its residues, then </s>.
inline ClassificationSet make_classification_set(const LabelledSet& set, const Vocabulary& vocab, const ClassificationOptions& o = {}) {
  return detail::make_classification_set(set, vocab, o, [&](const std::string& seq, const std::string& id, std::vector<std::int32_t>& t) {
    vocab.encode_into(seq, t, EncodeOptions{}, id);
  });
}

// The same with a model's own tokenizer: its ids and special tokens (e.g. ESM's
// <cls> ... <eos>); for plm's vocabularies the same ids as above.
inline ClassificationSet make_classification_set(const LabelledSet& set, const Tokenizer& tok, InputStyle style,
                                                 const ClassificationOptions& o = {}) {
  Encoding e;
  return detail::make_classification_set(set, tok.vocabulary(), o,
                                         [&](const std::string& seq, const std::string& id, std::vector<std::int32_t>& t) {
                                           e.clear();
                                           tok.encode(seq, style, e, id);
                                           t.insert(t.end(), e.ids.begin(), e.ids.end());
                                         });
}

// Where a classification task's proteins, labels and split come from, as a
// fine-tuning program takes them: one labelled FASTA split by clusters, or by a
// split table, or separate train / valid / test FASTA files with one label table.
struct ClassificationSource {
  std::string fasta, labels, clusters;                    // the cluster split (the default)
  std::string split_table;                                // or ID<TAB>train|valid|test
  std::string train_fasta, valid_fasta, test_fasta;       // or three files (all three, instead of fasta)
  SplitFractions fractions;                               // the cluster split's shares
  std::uint64_t seed = 0;                                 // keys the cluster split
  std::size_t max_length = 0;                             // longer proteins keep their first residues; 0 = no limit
  ClassificationOptions options;
};

struct LoadedClassification {
  ClassificationSet set;         // split assigned
  std::string split_from;        // "by cluster", "as given by <table>", "as given by the files"
  std::size_t labelled = 0;      // labelled proteins read (before the class filter and limit)
  std::size_t cut = 0;           // of those, cut to max_length residues
  std::size_t median_length = 0; // their median length, before cutting
};

// Reads, cuts (keeping the N-terminus, where signal peptides sit), tokenizes
// with the model's own tokenizer and splits a classification task.
inline LoadedClassification load_classification(const ClassificationSource& src, const Tokenizer& tok, InputStyle style) {
  const bool given_files = !src.train_fasta.empty();
  PLM_CHECK(!given_files || src.split_table.empty(), "load_classification: a split table and separate files both give the split");
  std::vector<Split> file_split;
  LabelledSet set = given_files ? read_labelled_splits(src.train_fasta, src.valid_fasta, src.test_fasta, src.labels, file_split)
                                : read_labelled(src.fasta, src.labels);
  LoadedClassification r;
  r.labelled = set.size();
  std::vector<std::size_t> lengths;
  for (auto& seq : set.sequences) {
    lengths.push_back(seq.size());
    if (src.max_length > 0 && seq.size() > src.max_length) seq.resize(src.max_length), ++r.cut;
  }
  std::nth_element(lengths.begin(), lengths.begin() + static_cast<long>(lengths.size() / 2), lengths.end());
  r.median_length = lengths[lengths.size() / 2];
  std::unordered_map<std::string, Split> split_of;
  for (std::size_t i = 0; i < file_split.size(); ++i) split_of.emplace(set.ids[i], file_split[i]);
  r.set = make_classification_set(set, tok, style, src.options);
  ClassificationSet& d = r.set;
  if (given_files) {
    r.split_from = "as given by the files";
    for (const auto& id : d.ids) d.split.push_back(split_of.at(id));
  } else if (!src.split_table.empty()) {
    r.split_from = "as given by " + src.split_table;
    d.split = read_split_table(d.ids, src.split_table);
  } else {
    r.split_from = "by cluster";
    d.split = split_by_cluster(d.ids, src.clusters, src.fractions, src.seed);
  }
  return r;
}

}  // namespace plm::data
