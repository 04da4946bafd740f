#pragma once
// Embeddings of proteins from an encoder (T5 / Ankh, ESM: any model with the
// encoder interface of nn::T5Model and nn::EsmModel), as the model cards compute
// them: the ids of each protein from its Tokenizer (data/tokenizer.hpp), an
// optional task prefix ([NLU] / [S2S]) in front, the encoder in eval mode, and
// per protein and chosen layer:
//   mean          the mean of the states over the tokens that hold a residue
//                 (not the prefix, not eos, not a lone "▁" piece);
//   per_residue   each such token's state (optional);
//   eos           the state of the final eos token (optional).
// Layers are numbered as transformers' `hidden_states`: 0 = the embeddings,
// k = the output of layer k, L (or -1) = the final-normed output
// (`last_hidden_state`, the default).
//
// Proteins longer than `max_length` residues are refused, cut to their first
// max_length residues, or embedded in overlapping windows of max_length
// residues (each window tokenized on its own, with prefix and eos); a residue
// seen by several windows gets the mean of its states, and the protein's mean
// and eos state are the means over its residues and windows.
//
// Proteins run in batches of similar length under a token budget. A model with
// encode_packed (T5Model, EsmModel) takes each batch packed: no token of
// padding, and attention blockwise, without the probabilities that an
// embedding never reads. Other models (BertModel) take it padded, each row with
// its own key mask. Either way the batching changes nothing but float rounding
// (other GEMM shapes).
#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/packing.hpp"
#include "plm/core/tensor.hpp"
#include "plm/data/tokenizer.hpp"
#include "plm/samplers/batching.hpp"
#include "plm/train/progress.hpp"

namespace plm::train {

namespace detail {
// Whether Model has encode_packed(ids, packing, out, cache), as T5Model and EsmModel.
template <class Model, class = void>
struct has_encode_packed : std::false_type {};
template <class Model>
struct has_encode_packed<Model, std::void_t<decltype(std::declval<const Model&>().encode_packed(
                                    std::declval<ConstView<typename Model::backend, std::int32_t>>(), std::declval<const Packing&>(),
                                    std::declval<TensorView<typename Model::backend, typename Model::value_type>>(),
                                    std::declval<typename Model::Cache&>()))>> : std::true_type {};
}  // namespace detail

enum class LongPolicy { error, truncate, windows };

inline const char* long_policy_name(LongPolicy p) {
  switch (p) {
    case LongPolicy::error: return "error";
    case LongPolicy::truncate: return "truncate";
    case LongPolicy::windows: return "windows";
  }
  PLM_FAIL("long_policy_name: invalid LongPolicy value ", static_cast<int>(p));
}
inline LongPolicy parse_long_policy(const std::string& name) {
  for (LongPolicy p : {LongPolicy::error, LongPolicy::truncate, LongPolicy::windows})
    if (name == long_policy_name(p)) return p;
  PLM_FAIL("long-protein policy '", name, "' is not one of: error, truncate, windows");
}

struct EmbedOptions {
  long token_budget = 8192;      // padded tokens per batch (one protein always fits, however long)
  std::vector<int> layers = {-1};  // hidden_states indices; negative counts from the end
  bool per_residue = false;      // also keep the state of every residue token
  bool eos = false;              // also keep the state of the final eos token
  std::int32_t prefix = -1;      // task token before the residues, or -1 for none
  std::size_t max_length = 0;    // residues per pass; 0 = no limit
  LongPolicy long_policy = LongPolicy::error;
  std::size_t overlap = 0;       // windows: residues shared by neighbouring windows (< max_length)
  data::InputStyle style = data::InputStyle::words;
};

struct LayerEmbeddings {
  int layer = -1;                               // as requested
  Tensor<cpu, float> mean;                      // (N, d_model)
  Tensor<cpu, float> eos;                       // with eos: (N, d_model)
  std::vector<Tensor<cpu, float>> per_residue;  // with per_residue: (residue tokens of protein i, d_model)
};

struct Embeddings {
  std::vector<LayerEmbeddings> layers;  // in the order requested
  std::size_t truncated = 0, windowed = 0;  // proteins cut, proteins embedded in windows
  const Tensor<cpu, float>& mean() const { return layers.front().mean; }
};

namespace detail {

// [start, end) residue windows of a protein of n residues: width w, overlap o,
// the last window flush with the end.
inline std::vector<std::pair<std::size_t, std::size_t>> residue_windows(std::size_t n, std::size_t w, std::size_t o) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  if (n <= w) return {{0, n}};
  const std::size_t stride = w - o;
  for (std::size_t s = 0;; s += stride) {
    if (s + w >= n) {
      out.emplace_back(n - w, n);
      break;
    }
    out.emplace_back(s, s + w);
  }
  return out;
}

}  // namespace detail

// Embeds `sequences` (as the tokenizer should see them); `names` (or empty)
// name proteins in errors.
template <class Model>
Embeddings embed(const Model& model, const data::Tokenizer& tok, const std::vector<std::string>& sequences, const EmbedOptions& o = {},
                 const std::vector<std::string>& names = {}, ProgressBar* bar = nullptr) {
  using B = typename Model::backend;
  using T = typename Model::value_type;  // the model's; the embeddings are stored in float32
  PLM_CHECK(o.token_budget >= 1, "embed: token_budget must be at least 1, got ", o.token_budget);
  PLM_CHECK(!o.layers.empty(), "embed: no layer requested");
  PLM_CHECK(names.empty() || names.size() == sequences.size(), "embed: ", names.size(), " names for ", sequences.size(), " proteins");
  PLM_CHECK(o.long_policy == LongPolicy::error || o.max_length > 0, "embed: the ", long_policy_name(o.long_policy),
            " policy needs a max_length");
  PLM_CHECK(o.long_policy != LongPolicy::windows || o.overlap < o.max_length, "embed: window overlap ", o.overlap,
            " must be smaller than max_length ", o.max_length);
  const index_t C = model.d_model();
  const index_t vocab = model.vocab_size();
  const int L = static_cast<int>(model.num_encoder_layers());
  std::vector<int> layer_index;  // 0..L
  for (const int k : o.layers) {
    PLM_CHECK(k >= -(L + 1) && k <= L, "embed: layer ", k, " outside this encoder's hidden states 0..", L, " (or -", L + 1, "..-1)");
    layer_index.push_back(k < 0 ? k + L + 1 : k);
  }
  const data::Vocabulary& v = tok.vocabulary();
  const auto name = [&](std::size_t i) { return names.empty() ? "protein " + std::to_string(i) : names[i]; };

  // The passes: a protein, or each of its windows.
  struct Pass {
    std::size_t protein, offset;  // the window's first residue in the protein
    std::vector<std::int32_t> ids;
    std::vector<index_t> rows;           // token rows that hold a residue
    std::vector<std::int32_t> columns;   // their first residue, in the protein
    index_t eos_row = -1;
  };
  Embeddings r;
  std::vector<Pass> passes;
  data::Encoding enc;
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    const std::string& s = sequences[i];
    std::vector<std::pair<std::size_t, std::size_t>> windows = {{0, s.size()}};
    if (o.max_length > 0 && s.size() > o.max_length) {
      switch (o.long_policy) {
        case LongPolicy::error:
          PLM_FAIL("embed: ", name(i), " has ", s.size(), " residues, more than max_length ", o.max_length,
                   " (choose to truncate it or embed it in windows)");
        case LongPolicy::truncate:
          windows = {{0, o.max_length}};
          ++r.truncated;
          break;
        case LongPolicy::windows:
          windows = detail::residue_windows(s.size(), o.max_length, o.overlap);
          ++r.windowed;
          break;
      }
    }
    for (const auto& [a, b] : windows) {
      Pass p;
      p.protein = i, p.offset = a;
      if (o.prefix >= 0) p.ids.push_back(o.prefix);
      const index_t shift = static_cast<index_t>(p.ids.size());
      enc.clear();
      tok.encode(std::string_view(s).substr(a, b - a), o.style, enc, name(i));
      for (std::size_t t = 0; t < enc.size(); ++t) {
        p.ids.push_back(enc.ids[t]);
        if (enc.holds_residue(t)) {
          p.rows.push_back(static_cast<index_t>(t) + shift);
          p.columns.push_back(static_cast<std::int32_t>(a) + enc.begin[t]);
        }
      }
      PLM_CHECK(!p.rows.empty(), "embed: ", name(i), " has no token that holds a residue");
      if (o.eos) {
        PLM_CHECK(enc.size() > 0 && enc.ids.back() == v.eos_id() && !enc.holds_residue(enc.size() - 1), "embed: ", name(i),
                  ": the tokenizer does not end the sequence with eos '", v.token(v.eos_id()), "'");
        p.eos_row = static_cast<index_t>(enc.size() - 1) + shift;
      }
      for (const std::int32_t id : p.ids)
        PLM_CHECK(id >= 0 && id < vocab, "embed: ", name(i), " has token id ", id, " outside the model's vocabulary of ", vocab);
      passes.push_back(std::move(p));
    }
  }

  // Per protein and layer: per residue column, the sum of states and how many windows saw it.
  struct Acc {
    std::map<std::int32_t, std::pair<std::vector<double>, int>> columns;
    std::vector<double> eos;
    int eos_count = 0;
  };
  std::vector<std::vector<Acc>> acc(layer_index.size(), std::vector<Acc>(sequences.size()));

  std::vector<std::vector<std::int32_t>> tokens(passes.size());
  for (std::size_t k = 0; k < passes.size(); ++k) tokens[k] = passes[k].ids;
  std::vector<index_t> order(passes.size());
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    return tokens[static_cast<std::size_t>(a)].size() < tokens[static_cast<std::size_t>(b)].size();
  });
  if (bar) bar->set_total(static_cast<std::int64_t>(passes.size()));  // the bar counts passes: proteins, or their windows
  typename Model::Cache cache;
  Tensor<B, std::int32_t> batch_ids;
  Tensor<B, std::uint8_t> valid;
  std::vector<std::int32_t> flat;
  Tensor<B, T> out;
  std::vector<T> host;
  std::size_t done = 0;
  for (std::size_t s = 0; s < order.size();) {
    // a batch of similar lengths within the budget (sorted: the last is the longest)
    std::size_t e = s + 1;
    while (e < order.size() && static_cast<long>((e - s + 1) * tokens[static_cast<std::size_t>(order[e])].size()) <= o.token_budget) ++e;
    const std::vector<index_t> rows(order.begin() + static_cast<long>(s), order.begin() + static_cast<long>(e));
    const index_t Bn = static_cast<index_t>(rows.size());
    std::vector<index_t> first(rows.size());  // the flat row of each protein's token 0 in the states
    if constexpr (detail::has_encode_packed<Model>::value) {
      std::vector<index_t> lengths;
      flat.clear();
      for (const index_t k : rows) {
        const auto& t = tokens[static_cast<std::size_t>(k)];
        lengths.push_back(static_cast<index_t>(t.size()));
        flat.insert(flat.end(), t.begin(), t.end());
      }
      const Packing packing(lengths);
      for (index_t b = 0; b < Bn; ++b) first[static_cast<std::size_t>(b)] = packing.offset(b);
      batch_ids.resize(Shape{1, packing.tokens()});
      upload(flat.data(), batch_ids.view());
      out.resize(Shape{1, packing.tokens(), C});
      model.encode_packed(batch_ids.cview(), packing, out.view(), cache);
    } else {
      samplers::pad_rows<B>(tokens, rows, v.pad_id(), batch_ids, valid);
      const index_t S = batch_ids.dim(1);
      for (index_t b = 0; b < Bn; ++b) first[static_cast<std::size_t>(b)] = b * S;
      out.resize(Shape{Bn, S, C});
      model.encode(batch_ids.cview(), valid.cview(), out.view(), cache);
    }
    double residues = 0;
    for (std::size_t li = 0; li < layer_index.size(); ++li) {
      const int k = layer_index[li];
      const auto states = k == L ? out.cview() : model.hidden_state(cache, k);
      host.resize(static_cast<std::size_t>(states.numel()));
      download(states, host.data());
      for (index_t b = 0; b < Bn; ++b) {
        const Pass& p = passes[static_cast<std::size_t>(order[s + static_cast<std::size_t>(b)])];
        Acc& a = acc[li][p.protein];
        for (std::size_t t = 0; t < p.rows.size(); ++t) {
          const T* h = host.data() + (first[static_cast<std::size_t>(b)] + p.rows[t]) * C;
          auto& slot = a.columns[p.columns[t]];
          if (slot.first.empty()) slot.first.assign(static_cast<std::size_t>(C), 0.0);
          for (index_t c = 0; c < C; ++c) slot.first[static_cast<std::size_t>(c)] += h[c];
          ++slot.second;
        }
        if (p.eos_row >= 0) {
          const T* h = host.data() + (first[static_cast<std::size_t>(b)] + p.eos_row) * C;
          if (a.eos.empty()) a.eos.assign(static_cast<std::size_t>(C), 0.0);
          for (index_t c = 0; c < C; ++c) a.eos[static_cast<std::size_t>(c)] += h[c];
          ++a.eos_count;
        }
        if (li == 0) residues += static_cast<double>(p.rows.size());
      }
    }
    done += rows.size();
    s = e;
    if (bar) bar->update(static_cast<std::int64_t>(done), {}, residues);
  }

  const index_t N = static_cast<index_t>(sequences.size());
  for (std::size_t li = 0; li < layer_index.size(); ++li) {
    LayerEmbeddings le;
    le.layer = o.layers[li];
    le.mean = Tensor<cpu, float>(Shape{N, C});
    if (o.eos) le.eos = Tensor<cpu, float>(Shape{N, C});
    if (o.per_residue) le.per_residue.resize(sequences.size());
    for (std::size_t i = 0; i < sequences.size(); ++i) {
      const Acc& a = acc[li][i];
      std::vector<double> sum(static_cast<std::size_t>(C), 0.0);
      if (o.per_residue) le.per_residue[i] = Tensor<cpu, float>(Shape{static_cast<index_t>(a.columns.size()), C});
      index_t row = 0;
      for (const auto& [column, slot] : a.columns) {
        for (index_t c = 0; c < C; ++c) {
          const double x = slot.first[static_cast<std::size_t>(c)] / slot.second;
          sum[static_cast<std::size_t>(c)] += x;
          if (o.per_residue) le.per_residue[i].data()[row * C + c] = static_cast<float>(x);
        }
        ++row;
      }
      for (index_t c = 0; c < C; ++c) {
        le.mean.data()[static_cast<index_t>(i) * C + c] = static_cast<float>(sum[static_cast<std::size_t>(c)] / static_cast<double>(a.columns.size()));
        if (o.eos) le.eos.data()[static_cast<index_t>(i) * C + c] = static_cast<float>(a.eos[static_cast<std::size_t>(c)] / a.eos_count);
      }
    }
    r.layers.push_back(std::move(le));
  }
  return r;
}

}  // namespace plm::train
