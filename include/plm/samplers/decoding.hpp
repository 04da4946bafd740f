#pragma once
// Decoding: completing a sequence with a trained encoder-decoder (Ankh3's
// sequence completion: the encoder sees [S2S] + the first half of a protein,
// the decoder writes the rest).
//
//   greedy_token / sample_token   choose one token from one row of logits (host memory)
//   generate                      greedy or sampled decoding of a batch, one stream per row
//   beam_search                   the beam_width best continuations by (length-penalised) log-probability
//
// The model is any type with T5Model's incremental-decoding interface, so this
// header needs nothing from nn/:
//   using backend, value_type, DecodeState;
//   config().vocab_size
//   begin_decoding(enc_ids (B, S), enc_valid (B, S) or empty, max_len, DecodeState&)
//   decode_step(tokens (B), logits (B, V), DecodeState&)
//   reorder_decoding(rows (B), DecodeState&)
//
// Conventions, chosen once for the three entry points:
// - Returned tokens exclude the decoder start token and INCLUDE the eos token
//   when one was produced (as Hugging Face's generate() does, minus the start
//   token), so a caller can tell a finished sequence from one cut at
//   max_new_tokens. Nothing follows an eos.
// - min_new_tokens: eos is masked while fewer than min_new_tokens tokens have
//   been produced, so at least min_new_tokens non-eos tokens come before it.
// - temperature must be > 0: as in Hugging Face, temperature 0 is an error
//   rather than a silent switch to argmax; ask for Strategy::greedy instead.
// - Random draws: token t of row b uses draw t of Philox stream streams[b]
//   (default b) under `seed`, mapped to u = 1 - uniform() in [0, 1). A draw
//   depends on nothing else, so a row's sample does not change with the batch
//   around it, and another backend indexing draws the same way agrees.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "plm/backend/ops.hpp"
#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/shape.hpp"
#include "plm/core/tensor.hpp"

namespace plm::samplers {

// Filters applied before a token is drawn, in Hugging Face's order:
// temperature, then top-k, then top-p on the top-k set's renormalised probabilities.
struct SamplingOptions {
  double temperature = 1.0;  // > 0; logits are divided by it (< 1 sharpens, > 1 flattens)
  index_t top_k = 0;         // keep the k most likely tokens; 0 = no limit
  double top_p = 1.0;        // keep the smallest most-likely set with mass >= top_p; in (0, 1], 1 = no limit

  void validate(const char* where) const {
    PLM_CHECK(std::isfinite(temperature) && temperature > 0, where, ": temperature must be positive and finite, got ", temperature,
              " (for argmax decoding use Strategy::greedy)");
    PLM_CHECK(top_k >= 0, where, ": top_k must be >= 0 (0 = no limit), got ", top_k);
    PLM_CHECK(top_p > 0 && top_p <= 1, where, ": top_p must be in (0, 1], got ", top_p);
  }
};

namespace detail {

template <class T>
void decoding_check_logit(const char* where, const T* logits, index_t v) {
  const T x = logits[v];
  PLM_CHECK(!std::isnan(x) && x != std::numeric_limits<T>::infinity(), where, ": logit of token ", v, " is ", x,
            " (only -inf, a masked token, may be non-finite)");
}

// The tokens sampling may draw and their renormalised probabilities, most likely first
// (ties: lower id first). Masked tokens (-inf) never appear.
template <class T>
std::vector<std::pair<std::int32_t, double>> decoding_kept(const char* where, const T* logits, index_t V, const SamplingOptions& o) {
  o.validate(where);
  PLM_CHECK(V > 0, where, ": empty row of logits (V = ", V, ")");
  std::vector<std::pair<std::int32_t, double>> kept;  // (token, scaled logit, later probability)
  kept.reserve(static_cast<std::size_t>(V));
  for (index_t v = 0; v < V; ++v) {
    decoding_check_logit(where, logits, v);
    if (logits[v] == -std::numeric_limits<T>::infinity()) continue;
    kept.emplace_back(static_cast<std::int32_t>(v), static_cast<double>(logits[v]) / o.temperature);
  }
  PLM_CHECK(!kept.empty(), where, ": every one of the ", V, " tokens is masked");
  auto more_likely = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
  const std::size_t k = o.top_k > 0 ? std::min(kept.size(), static_cast<std::size_t>(o.top_k)) : kept.size();
  // Only the top k need ordering; the rest are dropped.
  std::partial_sort(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(k), kept.end(), more_likely);
  kept.resize(k);
  // softmax over the top-k set, in double, shifted by its max for stability
  const double m = kept.front().second;
  double sum = 0;
  for (auto& e : kept) sum += (e.second = std::exp(e.second - m));
  for (auto& e : kept) e.second /= sum;
  if (o.top_p < 1) {
    // keep token i while the mass before it is < top_p: the smallest set reaching
    // top_p, always at least the most likely token (HF's TopPLogitsWarper)
    double before = 0, total = 0;
    std::size_t n = 0;
    while (n < kept.size() && before < o.top_p) before += kept[n++].second;
    kept.resize(n);
    for (const auto& e : kept) total += e.second;
    for (auto& e : kept) e.second /= total;
  }
  return kept;
}

// Logits (rows, V) in host memory. On plm::cpu the tensor already is; a device
// backend copies it into `host` here, one (rows, V) transfer per decoding step.
template <class B, class T>
T* decoding_host_rows(TensorView<B, T> x, std::vector<T>& host) {
  if constexpr (std::is_same_v<B, typename B::host_tag>) {
    return x.data();
  } else {
    host.resize(static_cast<std::size_t>(x.numel()));
    download(ConstView<B, T>(x), host.data());
    return host.data();
  }
}

// log_softmax of one row in double: the per-token log-probabilities beam search sums.
template <class T>
void decoding_log_softmax(const T* logits, index_t V, std::vector<double>& out) {
  out.resize(static_cast<std::size_t>(V));
  double m = -std::numeric_limits<double>::infinity();
  for (index_t v = 0; v < V; ++v) {
    decoding_check_logit("beam_search", logits, v);
    m = std::max(m, static_cast<double>(logits[v]));
  }
  PLM_CHECK(m > -std::numeric_limits<double>::infinity(), "beam_search: every one of the ", V, " logits is -inf");
  double sum = 0;
  for (index_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(logits[v]) - m);
  const double lse = m + std::log(sum);
  for (index_t v = 0; v < V; ++v) out[static_cast<std::size_t>(v)] = static_cast<double>(logits[v]) - lse;
}

inline void decoding_check_id(const char* where, const char* name, std::int32_t id, index_t V, bool may_be_none = false) {
  PLM_CHECK((may_be_none && id == -1) || (id >= 0 && id < V), where, ": ", name, " ", id, " outside the vocabulary of ", V,
            may_be_none ? " (-1 = none)" : "");
}

}  // namespace detail

// Sets logits[id] = -inf for each id, so neither greedy_token nor sample_token
// can choose it (e.g. pad, the decoder start token, special tokens).
template <class T>
void ban_tokens(T* logits, index_t V, const std::vector<std::int32_t>& banned) {
  for (std::int32_t id : banned) {
    detail::decoding_check_id("ban_tokens", "banned token", id, V);
    logits[id] = -std::numeric_limits<T>::infinity();
  }
}

// argmax of one row of logits (V); ties go to the lower id (as torch.argmax); -inf entries are masked.
template <class T>
std::int32_t greedy_token(const T* logits, index_t V) {
  PLM_CHECK(V > 0, "greedy_token: empty row of logits (V = ", V, ")");
  index_t best = -1;
  for (index_t v = 0; v < V; ++v) {
    detail::decoding_check_logit("greedy_token", logits, v);
    if (logits[v] == -std::numeric_limits<T>::infinity()) continue;
    if (best < 0 || logits[v] > logits[best]) best = v;
  }
  PLM_CHECK(best >= 0, "greedy_token: every one of the ", V, " tokens is masked");
  return static_cast<std::int32_t>(best);
}
template <class T>
std::int32_t greedy_token(const std::vector<T>& logits) {
  return greedy_token(logits.data(), static_cast<index_t>(logits.size()));
}

// The distribution sample_token draws from: (V) probabilities, 0 outside the kept set.
template <class T>
std::vector<double> sampling_distribution(const T* logits, index_t V, const SamplingOptions& o) {
  std::vector<double> p(static_cast<std::size_t>(std::max<index_t>(V, 0)), 0.0);
  for (const auto& e : detail::decoding_kept("sampling_distribution", logits, V, o)) p[static_cast<std::size_t>(e.first)] = e.second;
  return p;
}

// A token drawn from the filtered distribution of one row of logits (V), given a
// uniform u in [0, 1): the first kept token, most likely first, whose cumulative
// probability exceeds u. The caller owns the randomness, so any source (or a
// device kernel using the same rule) reproduces the choice.
template <class T>
std::int32_t sample_token(const T* logits, index_t V, const SamplingOptions& o, double u) {
  PLM_CHECK(u >= 0 && u < 1, "sample_token: u must be a uniform draw in [0, 1), got ", u);
  const auto kept = detail::decoding_kept("sample_token", logits, V, o);
  double c = 0;
  for (const auto& e : kept)
    if (u < (c += e.second)) return e.first;
  return kept.back().first;  // u within rounding of 1
}
// Consumes one draw of rng: u = 1 - rng.uniform() (uniform() is in (0, 1]).
template <class T>
std::int32_t sample_token(const T* logits, index_t V, const SamplingOptions& o, Philox& rng) {
  return sample_token(logits, V, o, 1.0 - static_cast<double>(rng.uniform()));
}
template <class T>
std::int32_t sample_token(const std::vector<T>& logits, const SamplingOptions& o, double u) {
  return sample_token(logits.data(), static_cast<index_t>(logits.size()), o, u);
}
template <class T>
std::int32_t sample_token(const std::vector<T>& logits, const SamplingOptions& o, Philox& rng) {
  return sample_token(logits.data(), static_cast<index_t>(logits.size()), o, rng);
}

// --- generate -----------------------------------------------------------------

enum class Strategy { greedy, sample };

// Defaults follow T5 / Ankh: decoder start = pad = 0, eos = 1.
struct GenerateOptions {
  index_t max_new_tokens = 64;          // tokens produced per row at most (eos included)
  index_t min_new_tokens = 0;           // eos masked until this many tokens were produced
  Strategy strategy = Strategy::greedy;
  SamplingOptions sampling;             // used by Strategy::sample
  std::uint64_t seed = 0;               // Philox key of every row's stream
  std::vector<std::uint64_t> streams;   // per row Philox stream (B); empty = the row index
  std::int32_t decoder_start_id = 0;
  std::int32_t eos_id = 1;              // -1 = no eos: every row runs max_new_tokens
  std::int32_t pad_id = 0;              // fed to rows that finished
  std::vector<std::int32_t> banned;     // never generated
};

// enc_ids: (B, S); enc_valid: (B, S), 1 = token, or empty. Returns B token vectors:
// the generated tokens without the decoder start token, ending with eos when produced.
template <class Model>
std::vector<std::vector<std::int32_t>> generate(const Model& model, ConstView<typename Model::backend, std::int32_t> enc_ids,
                                                ConstView<typename Model::backend, std::uint8_t> enc_valid, const GenerateOptions& o) {
  using B = typename Model::backend;
  using T = typename Model::value_type;
  static_assert(is_backend_v<B>, "plm: generate needs a model whose backend is plm::cpu or plm::cuda");
  const index_t V = model.config().vocab_size;
  PLM_CHECK(enc_ids.rank() == 2 && enc_ids.dim(0) > 0, "generate: enc_ids ", enc_ids.shape(), " must be (B, S) with B > 0");
  PLM_CHECK(o.max_new_tokens > 0, "generate: max_new_tokens must be positive, got ", o.max_new_tokens);
  PLM_CHECK(o.min_new_tokens >= 0 && o.min_new_tokens <= o.max_new_tokens, "generate: min_new_tokens ", o.min_new_tokens,
            " must be in [0, max_new_tokens = ", o.max_new_tokens, "]");
  if (o.strategy == Strategy::sample) o.sampling.validate("generate");
  detail::decoding_check_id("generate", "decoder_start_id", o.decoder_start_id, V);
  detail::decoding_check_id("generate", "eos_id", o.eos_id, V, /*may_be_none=*/true);
  detail::decoding_check_id("generate", "pad_id", o.pad_id, V);
  for (std::int32_t id : o.banned) detail::decoding_check_id("generate", "banned token", id, V);
  const index_t Bn = enc_ids.dim(0);
  PLM_CHECK(o.streams.empty() || static_cast<index_t>(o.streams.size()) == Bn, "generate: ", o.streams.size(),
            " streams for a batch of ", Bn, " rows (give one per row, or none)");

  typename Model::DecodeState st;
  model.begin_decoding(enc_ids, enc_valid, o.max_new_tokens, st);
  Tensor<B, std::int32_t> tokens(Shape{Bn});  // (B)
  Tensor<B, T> logits(Shape{Bn, V});          // (B, V)
  std::vector<T> host;
  std::vector<std::int32_t> feed(static_cast<std::size_t>(Bn), o.decoder_start_id);
  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(Bn));
  std::vector<std::uint8_t> done(static_cast<std::size_t>(Bn), 0);
  index_t live = Bn;
  for (index_t t = 0; t < o.max_new_tokens && live > 0; ++t) {
    upload(feed.data(), tokens.view());
    model.decode_step(tokens, logits, st);
    T* rows = detail::decoding_host_rows(logits.view(), host);
    for (index_t b = 0; b < Bn; ++b) {
      const auto bi = static_cast<std::size_t>(b);
      if (done[bi]) {
        feed[bi] = o.pad_id;  // keeps the batch shape; its logits are ignored
        continue;
      }
      T* row = rows + b * V;  // (V)
      ban_tokens(row, V, o.banned);
      if (o.eos_id >= 0 && t < o.min_new_tokens) row[o.eos_id] = -std::numeric_limits<T>::infinity();
      std::int32_t tok;
      if (o.strategy == Strategy::greedy) {
        tok = greedy_token(row, V);
      } else {
        Philox rng(o.seed, o.streams.empty() ? static_cast<std::uint64_t>(b) : o.streams[bi], static_cast<std::uint64_t>(t));
        tok = sample_token(row, V, o.sampling, rng);
      }
      out[bi].push_back(tok);
      feed[bi] = tok;
      if (tok == o.eos_id) done[bi] = 1, --live;
    }
  }
  return out;
}

// --- beam search --------------------------------------------------------------

// Defaults follow T5 / Ankh (decoder start = pad = 0, eos = 1) and HF's generate().
struct BeamOptions {
  index_t beam_width = 4;
  index_t max_new_tokens = 64;
  index_t min_new_tokens = 0;        // eos masked until this many tokens were produced
  double length_penalty = 1.0;       // score = sum log-prob / len^length_penalty (HF); 0 = plain sum
  std::int32_t eos_id = 1;           // -1 = none: every hypothesis runs max_new_tokens
  std::int32_t decoder_start_id = 0;
  std::int32_t pad_id = 0;           // fed to unused beams and finished inputs
  index_t num_return = 1;            // hypotheses returned per input row, <= beam_width
  std::vector<std::int32_t> banned;  // never generated
};

struct Hypothesis {
  std::vector<std::int32_t> tokens;  // without the start token; ends with eos when finished
  double sum_logprob = 0;            // sum of the model's log-probabilities of `tokens`
  double score = 0;                  // sum_logprob / tokens.size()^length_penalty
  bool finished = false;             // ended with eos (else cut at max_new_tokens)
};

// Beam search as Hugging Face's with early_stopping="never": per input row the
// beam_width best hypotheses by score, best first (at most num_return of them).
//
// Each step ranks all (beam, token) continuations of an input by summed
// log-probability and looks at the best 2 * beam_width: an eos among the first
// beam_width closes a hypothesis, and the first beam_width others become the next
// beams. An input stops once it holds beam_width hypotheses and no live beam can
// still beat the worst of them: log-probabilities are <= 0, so a beam of sum s
// can at best score s / L^alpha with L = max_new_tokens when alpha > 0 and
// L = its next length otherwise. The bound is exact, so a beam as wide as the
// number of sequences enumerates them all. Banned / early-eos tokens are masked
// after the log-softmax (HF's order), so scores stay the model's log-probabilities.
//
// enc_ids: (B, S); enc_valid: (B, S) or empty. Returns B lists of hypotheses.
template <class Model>
std::vector<std::vector<Hypothesis>> beam_search(const Model& model, ConstView<typename Model::backend, std::int32_t> enc_ids,
                                                 ConstView<typename Model::backend, std::uint8_t> enc_valid, const BeamOptions& o) {
  using B = typename Model::backend;
  using T = typename Model::value_type;
  static_assert(is_backend_v<B>, "plm: beam_search needs a model whose backend is plm::cpu or plm::cuda");
  constexpr double kNone = -std::numeric_limits<double>::infinity();
  const index_t V = model.config().vocab_size;
  PLM_CHECK(enc_ids.rank() == 2 && enc_ids.dim(0) > 0, "beam_search: enc_ids ", enc_ids.shape(), " must be (B, S) with B > 0");
  PLM_CHECK(enc_valid.empty() || enc_valid.shape() == enc_ids.shape(), "beam_search: enc_valid ", enc_valid.shape(),
            " must match enc_ids ", enc_ids.shape());
  PLM_CHECK(o.beam_width > 0, "beam_search: beam_width must be positive, got ", o.beam_width);
  PLM_CHECK(o.max_new_tokens > 0, "beam_search: max_new_tokens must be positive, got ", o.max_new_tokens);
  PLM_CHECK(o.min_new_tokens >= 0 && o.min_new_tokens <= o.max_new_tokens, "beam_search: min_new_tokens ", o.min_new_tokens,
            " must be in [0, max_new_tokens = ", o.max_new_tokens, "]");
  PLM_CHECK(o.num_return >= 1 && o.num_return <= o.beam_width, "beam_search: num_return ", o.num_return,
            " must be in [1, beam_width = ", o.beam_width, "]");
  PLM_CHECK(std::isfinite(o.length_penalty), "beam_search: length_penalty must be finite, got ", o.length_penalty);
  detail::decoding_check_id("beam_search", "decoder_start_id", o.decoder_start_id, V);
  detail::decoding_check_id("beam_search", "eos_id", o.eos_id, V, /*may_be_none=*/true);
  detail::decoding_check_id("beam_search", "pad_id", o.pad_id, V);
  for (std::int32_t id : o.banned) detail::decoding_check_id("beam_search", "banned token", id, V);

  const index_t Bn = enc_ids.dim(0), S = enc_ids.dim(1), K = o.beam_width, N = Bn * K;
  const auto Ks = static_cast<std::size_t>(K);
  // Decoder row i*K + k is beam k of input i. Each input is repeated K times
  // before encoding: the decoder's cross-attention caches are per row.
  Tensor<B, std::int32_t> rows(Shape{N});  // (B*K)
  std::vector<std::int32_t> host_rows(static_cast<std::size_t>(N));
  for (index_t r = 0; r < N; ++r) host_rows[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r / K);
  upload(host_rows.data(), rows.view());
  Tensor<B, std::int32_t> ids(Shape{N, S});  // (B*K, S)
  Tensor<B, std::uint8_t> valid;             // (B*K, S) or empty
  ops<B>::gather(enc_ids, rows.cview(), ids.view());
  if (!enc_valid.empty()) {
    valid.resize(Shape{N, S});
    ops<B>::gather(enc_valid, rows.cview(), valid.view());
  }
  typename Model::DecodeState st;
  model.begin_decoding(ids, valid, o.max_new_tokens, st);

  auto score_of = [&](double sum, std::size_t len) { return sum / std::pow(static_cast<double>(len), o.length_penalty); };
  std::vector<std::vector<Hypothesis>> kept(static_cast<std::size_t>(Bn));
  // Adds a hypothesis, then drops the worst while more than K are kept (HF's BeamHypotheses).
  auto keep = [&](std::vector<Hypothesis>& hs, std::vector<std::int32_t> tokens, double sum, bool finished) {
    const double score = score_of(sum, tokens.size());
    hs.push_back(Hypothesis{std::move(tokens), sum, score, finished});
    if (hs.size() > Ks)
      hs.erase(std::min_element(hs.begin(), hs.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; }));
  };
  auto worst = [](const std::vector<Hypothesis>& hs) {
    double w = std::numeric_limits<double>::infinity();
    for (const auto& h : hs) w = std::min(w, h.score);
    return w;
  };

  // Per decoder row: summed log-prob (kNone = unused slot) and tokens so far.
  std::vector<double> sums(static_cast<std::size_t>(N), kNone), next_sums(sums.size());
  for (index_t i = 0; i < Bn; ++i) sums[static_cast<std::size_t>(i * K)] = 0;  // one live beam to start: no duplicates
  std::vector<std::vector<std::int32_t>> hist(static_cast<std::size_t>(N)), next_hist(hist.size());
  std::vector<std::int32_t> feed(static_cast<std::size_t>(N), o.decoder_start_id);
  std::vector<std::uint8_t> done(static_cast<std::size_t>(Bn), 0);
  Tensor<B, std::int32_t> tokens(Shape{N});  // (B*K)
  Tensor<B, T> logits(Shape{N, V});          // (B*K, V)
  std::vector<T> host;
  std::vector<double> logp;
  struct Candidate {
    double sum;
    std::int32_t beam, token;
  };
  std::vector<Candidate> cands;
  index_t live_inputs = Bn;

  for (index_t t = 0; t < o.max_new_tokens && live_inputs > 0; ++t) {
    upload(feed.data(), tokens.view());
    model.decode_step(tokens, logits, st);
    const T* lg = detail::decoding_host_rows(logits.view(), host);
    const bool last = t + 1 == o.max_new_tokens;
    for (index_t i = 0; i < Bn; ++i) {
      const auto ii = static_cast<std::size_t>(i);
      const std::size_t r0 = ii * Ks;
      if (done[ii]) {  // rows stay where they are, fed pad, ignored
        for (std::size_t k = 0; k < Ks; ++k) {
          host_rows[r0 + k] = static_cast<std::int32_t>(r0 + k), feed[r0 + k] = o.pad_id;
          next_sums[r0 + k] = kNone, next_hist[r0 + k].clear();
        }
        continue;
      }
      cands.clear();
      for (std::size_t k = 0; k < Ks; ++k) {
        if (sums[r0 + k] == kNone) continue;
        detail::decoding_log_softmax(lg + static_cast<index_t>(r0 + k) * V, V, logp);  // (V)
        for (std::int32_t id : o.banned) logp[static_cast<std::size_t>(id)] = kNone;
        if (o.eos_id >= 0 && t < o.min_new_tokens) logp[static_cast<std::size_t>(o.eos_id)] = kNone;
        for (index_t v = 0; v < V; ++v)
          if (logp[static_cast<std::size_t>(v)] != kNone)
            cands.push_back(Candidate{sums[r0 + k] + logp[static_cast<std::size_t>(v)], static_cast<std::int32_t>(k),
                                      static_cast<std::int32_t>(v)});
      }
      // best 2K continuations; ties by (beam, token) so the order never depends on the sort
      const std::size_t top = std::min(cands.size(), 2 * Ks);
      std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(top), cands.end(),
                        [](const Candidate& a, const Candidate& b) {
                          if (a.sum != b.sum) return a.sum > b.sum;
                          return a.beam != b.beam ? a.beam < b.beam : a.token < b.token;
                        });
      std::size_t n = 0;  // next beams of input i
      for (std::size_t rank = 0; rank < top && n < Ks; ++rank) {
        const Candidate& c = cands[rank];
        const std::size_t src = r0 + static_cast<std::size_t>(c.beam);
        if (c.token == o.eos_id) {
          if (rank >= Ks) continue;  // HF: an eos outside the best K does not close a hypothesis
          std::vector<std::int32_t> h = hist[src];
          h.push_back(c.token);
          keep(kept[ii], std::move(h), c.sum, /*finished=*/true);
        } else {
          host_rows[r0 + n] = static_cast<std::int32_t>(src);
          next_hist[r0 + n] = hist[src];
          next_hist[r0 + n].push_back(c.token);
          next_sums[r0 + n] = c.sum;
          feed[r0 + n] = c.token;
          ++n;
        }
      }
      for (std::size_t k = n; k < Ks; ++k) {  // unused slots
        host_rows[r0 + k] = static_cast<std::int32_t>(r0 + k), feed[r0 + k] = o.pad_id;
        next_sums[r0 + k] = kNone, next_hist[r0 + k].clear();
      }
      // The next beams are sorted, so the first has the best sum. On the last step
      // the live beams are closed below instead.
      if (n == 0) {
        done[ii] = 1;
      } else if (!last && kept[ii].size() == Ks) {
        const double len_bound = o.length_penalty > 0 ? static_cast<double>(o.max_new_tokens) : static_cast<double>(t + 2);
        if (worst(kept[ii]) >= next_sums[r0] / std::pow(len_bound, o.length_penalty)) done[ii] = 1;
      }
      if (done[ii]) --live_inputs;
    }
    std::swap(sums, next_sums);
    std::swap(hist, next_hist);
    if (live_inputs > 0 && !last) {
      upload(host_rows.data(), rows.view());
      model.reorder_decoding(rows, st);
    }
  }
  // Inputs still running at max_new_tokens: their live beams become hypotheses, cut short.
  std::vector<std::vector<Hypothesis>> out(static_cast<std::size_t>(Bn));
  for (index_t i = 0; i < Bn; ++i) {
    const auto ii = static_cast<std::size_t>(i);
    if (!done[ii])
      for (std::size_t k = 0; k < Ks; ++k)
        if (sums[ii * Ks + k] != kNone) keep(kept[ii], hist[ii * Ks + k], sums[ii * Ks + k], /*finished=*/false);
    PLM_CHECK(!kept[ii].empty(), "beam_search: input row ", i, " produced no hypothesis (every token masked?)");
    std::stable_sort(kept[ii].begin(), kept[ii].end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    if (kept[ii].size() > static_cast<std::size_t>(o.num_return)) kept[ii].resize(static_cast<std::size_t>(o.num_return));
    out[ii] = std::move(kept[ii]);
  }
  return out;
}

}  // namespace plm::samplers
