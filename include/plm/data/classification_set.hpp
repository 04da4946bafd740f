#pragma once
// A protein classification set ready for fine-tuning an encoder: a labelled
// set (labelled.hpp) reduced to the classes with enough members, renumbered
// 0..K-1, and tokenized. With a vocabulary that has task tokens (Ankh3) every
// sequence starts with [NLU], the prefix under which Ankh3 embeds proteins.
// split holds one Split per protein once the caller assigns it
// (split_by_cluster keeps homologues on one side).
#include <cstdint>
#include <string>
#include <vector>

#include "plm/data/labelled.hpp"
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

// Needs at least two classes left: a classifier of one class learns nothing.
inline ClassificationSet make_classification_set(const LabelledSet& set, const Vocabulary& vocab, const ClassificationOptions& o = {}) {
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
    vocab.encode_into(set.sequences[i], t, EncodeOptions{}, set.ids[i]);
    d.ids.push_back(set.ids[i]);
    d.tokens.push_back(std::move(t));
    d.labels.push_back(y);
  }
  return d;
}

}  // namespace plm::data
