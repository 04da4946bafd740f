#pragma once
// T5 span corruption, the [NLU] denoising task of Ankh3.
//
// random_spans_noise_mask follows T5's preprocessor of the same name: the
// number of noise tokens is round(length * density) (at least 1, at most
// length - 1), split into round(noise / mean_span_length) spans; noise and
// non-noise tokens are each cut into that many non-empty runs at random and
// interleaved, starting with non-noise. mean_span_length 1 gives Ankh3's form:
// every noise span is one residue and spans never touch.
//
// span_corrupt is T5's noise_span_to_unique_sentinel applied to both sides:
//   inputs   M <extra_id_0> A Y <extra_id_1> ...     (each noise span -> one sentinel)
//   targets  <extra_id_0> K <extra_id_1> V ...       (each sentinel, then its span)
// The caller adds prefix and eos tokens; span_restore inverts the encoding.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "plm/core/error.hpp"
#include "plm/core/philox.hpp"
#include "plm/core/shape.hpp"

namespace plm::samplers {

namespace detail {
// Random composition of num_items into num_segments positive parts, uniform over
// compositions (T5's _random_segmentation): choose which of the num_items - 1
// gaps start a new segment by shuffling a 0/1 vector.
inline std::vector<index_t> random_segmentation(index_t num_items, index_t num_segments, Philox& rng) {
  std::vector<std::uint8_t> starts(static_cast<std::size_t>(std::max<index_t>(num_items - 1, 0)), 0);
  for (index_t i = 0; i < num_segments - 1; ++i) starts[static_cast<std::size_t>(i)] = 1;
  for (std::size_t i = starts.size(); i > 1; --i) std::swap(starts[i - 1], starts[rng.below(static_cast<std::uint32_t>(i))]);
  std::vector<index_t> lengths(static_cast<std::size_t>(num_segments), 0);
  std::size_t seg = 0;
  lengths[0] = 1;
  for (std::uint8_t s : starts) {
    seg += s;
    lengths[seg] += 1;
  }
  return lengths;
}
}  // namespace detail

// noise mask (length), 1 = replaced. max_spans caps the span count (the
// vocabulary's number of sentinels); with fewer spans they get longer.
inline std::vector<std::uint8_t> random_spans_noise_mask(index_t length, double density, double mean_span_length, Philox& rng,
                                                         index_t max_spans = 1 << 30) {
  PLM_CHECK(length >= 0, "random_spans_noise_mask: negative length ", length);
  PLM_CHECK(density > 0 && density < 1, "random_spans_noise_mask: masking probability ", density, " must be in (0, 1)");
  PLM_CHECK(mean_span_length >= 1, "random_spans_noise_mask: mean span length ", mean_span_length, " must be >= 1");
  PLM_CHECK(max_spans >= 1, "random_spans_noise_mask: max_spans ", max_spans, " must be >= 1");
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(length), 0);
  if (length < 2) return mask;  // nothing can be hidden while keeping context
  const index_t noise = std::clamp<index_t>(std::llround(static_cast<double>(length) * density), 1, length - 1);
  const index_t clean = length - noise;
  // Every span needs a non-empty clean run before it, hence spans <= clean.
  const index_t spans = std::clamp<index_t>(std::llround(static_cast<double>(noise) / mean_span_length), 1,
                                            std::min({noise, clean, max_spans}));
  const auto noise_len = detail::random_segmentation(noise, spans, rng);
  const auto clean_len = detail::random_segmentation(clean, spans, rng);
  index_t pos = 0;
  for (index_t s = 0; s < spans; ++s) {
    pos += clean_len[static_cast<std::size_t>(s)];
    for (index_t k = 0; k < noise_len[static_cast<std::size_t>(s)]; ++k) mask[static_cast<std::size_t>(pos++)] = 1;
  }
  return mask;
}

struct SpanCorruption {
  std::vector<std::int32_t> inputs, targets;
  index_t spans = 0;
  index_t masked = 0;  // tokens hidden
};

// tokens (n), mask (n) -> inputs and targets without prefix or eos.
// sentinels[k] is the id of <extra_id_k>.
inline SpanCorruption span_corrupt(const std::vector<std::int32_t>& tokens, const std::vector<std::uint8_t>& mask,
                                   const std::vector<std::int32_t>& sentinels) {
  PLM_CHECK(tokens.size() == mask.size(), "span_corrupt: ", tokens.size(), " tokens but a mask of ", mask.size());
  SpanCorruption r;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (!mask[i]) {
      r.inputs.push_back(tokens[i]);
      continue;
    }
    if (i == 0 || !mask[i - 1]) {
      PLM_CHECK(static_cast<std::size_t>(r.spans) < sentinels.size(), "span_corrupt: span ", r.spans + 1, " needs more than the ",
                sentinels.size(), " sentinel tokens of the vocabulary");
      const std::int32_t s = sentinels[static_cast<std::size_t>(r.spans++)];
      r.inputs.push_back(s);
      r.targets.push_back(s);
    }
    r.targets.push_back(tokens[i]);
    ++r.masked;
  }
  return r;
}

// Inverse of span_corrupt: puts each sentinel's span back into the inputs.
// Tokens after the last sentinel's span in targets that are not sentinels
// (eos, padding) must be stripped by the caller first.
inline std::vector<std::int32_t> span_restore(const std::vector<std::int32_t>& inputs, const std::vector<std::int32_t>& targets,
                                              const std::vector<std::int32_t>& sentinels) {
  auto sentinel_index = [&](std::int32_t id) -> index_t {
    const auto it = std::find(sentinels.begin(), sentinels.end(), id);
    return it == sentinels.end() ? -1 : static_cast<index_t>(it - sentinels.begin());
  };
  // spans[k] = the tokens following sentinel k in targets
  std::vector<std::vector<std::int32_t>> spans;
  for (std::int32_t id : targets) {
    const index_t k = sentinel_index(id);
    if (k >= 0) {
      PLM_CHECK(k == static_cast<index_t>(spans.size()), "span_restore: targets have sentinel ", k, " where ", spans.size(),
                " was expected");
      spans.emplace_back();
    } else {
      PLM_CHECK(!spans.empty(), "span_restore: targets start with token ", id, ", not a sentinel");
      spans.back().push_back(id);
    }
  }
  std::vector<std::int32_t> out;
  for (std::int32_t id : inputs) {
    const index_t k = sentinel_index(id);
    if (k < 0) {
      out.push_back(id);
      continue;
    }
    PLM_CHECK(k < static_cast<index_t>(spans.size()), "span_restore: inputs have sentinel ", k, " but targets only ", spans.size(),
              " spans");
    out.insert(out.end(), spans[static_cast<std::size_t>(k)].begin(), spans[static_cast<std::size_t>(k)].end());
  }
  return out;
}

}  // namespace plm::samplers
