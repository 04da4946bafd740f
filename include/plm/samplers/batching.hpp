#pragma once
// Length-bucketed batches under a token budget, and collation of seq2seq
// examples into padded tensors.
//
// Sorting whole datasets by length makes every batch alike (and the model sees
// the length order); not sorting wastes compute on padding. The middle road,
// as in fairseq and T5X: shuffle, cut into windows of `window` examples, sort
// each window by length, fill batches greedily while
//     rows x (longest input + longest target) <= token_budget
// (padding included: that is what the step costs), then shuffle the batches.
// Packed batches (BatchOptions::packed) cost their real tokens instead:
//     sum of (input + target) <= token_budget.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "plm/backend/tags.hpp"
#include "plm/core/error.hpp"
#include "plm/core/packing.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/tensor.hpp"
#include "plm/samplers/ankh3.hpp"

namespace plm::samplers {

struct BatchOptions {
  index_t token_budget = 4096;  // padded input + target tokens per batch
  index_t max_rows = 0;         // 0 = no limit besides the budget
  index_t window = 1024;        // examples sorted together; 0 = the whole set
  bool sort_by_length = true;   // false: batches in (shuffled) order, padding as it falls
  bool shuffle = true;
  // true: the budget counts real tokens, sum of (input + target), as packed
  // batches (PackedSeq2SeqBatch) cost; false: rows x (longest input + longest target).
  bool packed = false;
};

// Cost of a batch: rows x (longest input + longest target).
inline index_t padded_tokens(const std::vector<index_t>& rows, const std::vector<index_t>& in_len, const std::vector<index_t>& out_len) {
  index_t a = 0, b = 0;
  for (index_t i : rows) a = std::max(a, in_len[static_cast<std::size_t>(i)]), b = std::max(b, out_len[static_cast<std::size_t>(i)]);
  return static_cast<index_t>(rows.size()) * (a + b);
}

// Indices of the examples grouped into batches. An example that alone exceeds
// the budget is an error naming it (crop long sequences when reading).
inline std::vector<std::vector<index_t>> length_bucket_batches(const std::vector<index_t>& in_len, const std::vector<index_t>& out_len,
                                                               const BatchOptions& o, Philox& rng) {
  PLM_CHECK(in_len.size() == out_len.size(), "length_bucket_batches: ", in_len.size(), " input lengths but ", out_len.size(),
            " target lengths");
  PLM_CHECK(o.token_budget > 0 && o.max_rows >= 0 && o.window >= 0, "length_bucket_batches: token_budget ", o.token_budget,
            " must be > 0, max_rows ", o.max_rows, " and window ", o.window, " >= 0");
  const index_t n = static_cast<index_t>(in_len.size());
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t(0));
  auto shuffle = [&](auto& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(static_cast<std::uint32_t>(i))]);
  };
  if (o.shuffle) shuffle(order);
  const index_t window = o.window > 0 ? o.window : std::max<index_t>(n, 1);
  std::vector<std::vector<index_t>> batches;
  for (index_t w0 = 0; w0 < n; w0 += window) {
    const auto first = order.begin() + w0, last = order.begin() + std::min(n, w0 + window);
    if (o.sort_by_length)
      std::stable_sort(first, last, [&](index_t a, index_t b) {
      return in_len[static_cast<std::size_t>(a)] + out_len[static_cast<std::size_t>(a)] <
             in_len[static_cast<std::size_t>(b)] + out_len[static_cast<std::size_t>(b)];
    });
    std::vector<index_t> cur;
    index_t max_in = 0, max_out = 0, real = 0;
    for (auto it = first; it != last; ++it) {
      const index_t i = *it, li = in_len[static_cast<std::size_t>(i)], lo = out_len[static_cast<std::size_t>(i)];
      PLM_CHECK(li + lo <= o.token_budget, "length_bucket_batches: example ", i, " has ", li, " input + ", lo,
                " target tokens, more than the token budget ", o.token_budget, " (raise the budget or crop sequences)");
      const index_t rows = static_cast<index_t>(cur.size()) + 1;
      const index_t cost = o.packed ? real + li + lo : rows * (std::max(max_in, li) + std::max(max_out, lo));
      const bool fits = cost <= o.token_budget && (o.max_rows == 0 || rows <= o.max_rows);
      if (!fits) {
        batches.push_back(std::move(cur));
        cur.clear();
        max_in = max_out = real = 0;
      }
      cur.push_back(i);
      max_in = std::max(max_in, li);
      max_out = std::max(max_out, lo);
      real += li + lo;
    }
    if (!cur.empty()) batches.push_back(std::move(cur));
  }
  if (o.shuffle) shuffle(batches);
  return batches;
}

// A padded seq2seq batch, ready for T5Model::forward and MultiTask.
//   enc_ids (B, S), enc_valid (B, S); dec_ids (B, T) = targets shifted right
//   behind the decoder start token; dec_valid (B, T); labels (B, T) with
//   ignore_index on padding; task: one id per row (Task as int).
template <class B>
struct Seq2SeqBatch {
  Tensor<B, std::int32_t> enc_ids, dec_ids, labels;
  Tensor<B, std::uint8_t> enc_valid, dec_valid;
  std::vector<std::int32_t> task;
  index_t input_tokens = 0, target_tokens = 0;  // real (unpadded) tokens
  index_t rows() const { return static_cast<index_t>(task.size()); }
};

struct CollateOptions {
  std::int32_t pad = 0;
  std::int32_t decoder_start = 0;  // T5 starts decoding from pad
  std::int32_t ignore_index = -100;
};

// The token sequences seqs[rows[k]] as one batch padded to the longest:
// ids (R, S) holds pad after each row's tokens, valid (R, S) is 1 on tokens.
template <class B>
void pad_rows(const std::vector<std::vector<std::int32_t>>& seqs, const std::vector<index_t>& rows, std::int32_t pad,
              Tensor<B, std::int32_t>& ids, Tensor<B, std::uint8_t>& valid) {
  PLM_CHECK(!rows.empty(), "pad_rows: empty batch");
  index_t S = 0;
  for (index_t r : rows) {
    PLM_CHECK(r >= 0 && r < static_cast<index_t>(seqs.size()), "pad_rows: row ", r, " outside the ", seqs.size(), " sequences");
    PLM_CHECK(!seqs[static_cast<std::size_t>(r)].empty(), "pad_rows: sequence ", r, " is empty");
    S = std::max(S, static_cast<index_t>(seqs[static_cast<std::size_t>(r)].size()));
  }
  const index_t R = static_cast<index_t>(rows.size());
  std::vector<std::int32_t> h(static_cast<std::size_t>(R * S), pad);
  std::vector<std::uint8_t> v(h.size(), 0);
  for (index_t b = 0; b < R; ++b) {
    const auto& t = seqs[static_cast<std::size_t>(rows[static_cast<std::size_t>(b)])];
    std::copy(t.begin(), t.end(), h.begin() + b * S);
    std::fill(v.begin() + b * S, v.begin() + b * S + static_cast<index_t>(t.size()), std::uint8_t(1));
  }
  ids.resize(Shape{R, S});
  valid.resize(Shape{R, S});
  upload(h.data(), ids.view());
  upload(v.data(), valid.view());
}

template <class B>
void collate(const std::vector<Seq2SeqExample>& examples, const std::vector<index_t>& rows, Seq2SeqBatch<B>& out,
             const CollateOptions& o = {}) {
  PLM_CHECK(!rows.empty(), "collate: empty batch");
  index_t S = 0, Tn = 0;
  for (index_t r : rows) {
    PLM_CHECK(r >= 0 && r < static_cast<index_t>(examples.size()), "collate: row ", r, " outside the ", examples.size(), " examples");
    const auto& e = examples[static_cast<std::size_t>(r)];
    PLM_CHECK(!e.inputs.empty() && !e.targets.empty(), "collate: example ", r, " has an empty input or target");
    S = std::max(S, static_cast<index_t>(e.inputs.size()));
    Tn = std::max(Tn, static_cast<index_t>(e.targets.size()));
  }
  const index_t Bn = static_cast<index_t>(rows.size());
  std::vector<std::int32_t> enc(static_cast<std::size_t>(Bn * S), o.pad), dec(static_cast<std::size_t>(Bn * Tn), o.pad),
      lab(static_cast<std::size_t>(Bn * Tn), o.ignore_index);
  std::vector<std::uint8_t> ev(static_cast<std::size_t>(Bn * S), 0), dv(static_cast<std::size_t>(Bn * Tn), 0);
  out.task.clear();
  out.input_tokens = out.target_tokens = 0;
  for (index_t b = 0; b < Bn; ++b) {
    const auto& e = examples[static_cast<std::size_t>(rows[static_cast<std::size_t>(b)])];
    for (std::size_t t = 0; t < e.inputs.size(); ++t) {
      enc[static_cast<std::size_t>(b * S) + t] = e.inputs[t];
      ev[static_cast<std::size_t>(b * S) + t] = 1;
    }
    for (std::size_t t = 0; t < e.targets.size(); ++t) {
      dec[static_cast<std::size_t>(b * Tn) + t] = t == 0 ? o.decoder_start : e.targets[t - 1];
      lab[static_cast<std::size_t>(b * Tn) + t] = e.targets[t];
      dv[static_cast<std::size_t>(b * Tn) + t] = 1;
    }
    out.task.push_back(static_cast<std::int32_t>(e.task));
    out.input_tokens += static_cast<index_t>(e.inputs.size());
    out.target_tokens += static_cast<index_t>(e.targets.size());
  }
  out.enc_ids.resize(Shape{Bn, S});
  out.enc_valid.resize(Shape{Bn, S});
  out.dec_ids.resize(Shape{Bn, Tn});
  out.dec_valid.resize(Shape{Bn, Tn});
  out.labels.resize(Shape{Bn, Tn});
  upload(enc.data(), out.enc_ids.view());
  upload(ev.data(), out.enc_valid.view());
  upload(dec.data(), out.dec_ids.view());
  upload(dv.data(), out.dec_valid.view());
  upload(lab.data(), out.labels.view());
}

// A packed seq2seq batch (core/packing.hpp), ready for T5Model's packed forward
// and MultiTask's packed form: no padding anywhere.
//   enc_ids (1, S) the inputs end to end (S = their total), laid out by enc;
//   dec_ids (1, T) each target shifted right behind the decoder start token,
//   labels (1, T) the targets, laid out by dec; task: one id per sequence.
template <class B>
struct PackedSeq2SeqBatch {
  Tensor<B, std::int32_t> enc_ids, dec_ids, labels;
  Packing enc, dec;
  std::vector<std::int32_t> task;
  index_t input_tokens = 0, target_tokens = 0;
  index_t rows() const { return static_cast<index_t>(task.size()); }
};

template <class B>
void collate_packed(const std::vector<Seq2SeqExample>& examples, const std::vector<index_t>& rows, PackedSeq2SeqBatch<B>& out,
                    const CollateOptions& o = {}) {
  PLM_CHECK(!rows.empty(), "collate_packed: empty batch");
  std::vector<index_t> in_len, out_len;
  std::vector<std::int32_t> enc, dec, lab;
  out.task.clear();
  for (index_t r : rows) {
    PLM_CHECK(r >= 0 && r < static_cast<index_t>(examples.size()), "collate_packed: row ", r, " outside the ", examples.size(),
              " examples");
    const auto& e = examples[static_cast<std::size_t>(r)];
    PLM_CHECK(!e.inputs.empty() && !e.targets.empty(), "collate_packed: example ", r, " has an empty input or target");
    in_len.push_back(static_cast<index_t>(e.inputs.size()));
    out_len.push_back(static_cast<index_t>(e.targets.size()));
    enc.insert(enc.end(), e.inputs.begin(), e.inputs.end());
    dec.push_back(o.decoder_start);
    dec.insert(dec.end(), e.targets.begin(), e.targets.end() - 1);
    lab.insert(lab.end(), e.targets.begin(), e.targets.end());
    out.task.push_back(static_cast<std::int32_t>(e.task));
  }
  out.enc = Packing(in_len);
  out.dec = Packing(out_len);
  out.input_tokens = out.enc.tokens();
  out.target_tokens = out.dec.tokens();
  out.enc_ids.resize(Shape{1, out.enc.tokens()});
  out.dec_ids.resize(Shape{1, out.dec.tokens()});
  out.labels.resize(Shape{1, out.dec.tokens()});
  upload(enc.data(), out.enc_ids.view());
  upload(dec.data(), out.dec_ids.view());
  upload(lab.data(), out.labels.view());
}

}  // namespace plm::samplers
