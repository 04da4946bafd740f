#pragma once
// Parameter groups: per-parameter learning-rate multiplier and weight decay,
// chosen by name prefix (first matching rule wins). Fine-tuning uses this for
// a backbone multiplier, e.g. groups.add("encoder.", {0.1}).
#include <optional>
#include <string>
#include <vector>

#include "plm/nn/parameters.hpp"

namespace plm::optim {

struct GroupSettings {
  double lr_multiplier = 1.0;
  bool weight_decay = true;
};

class ParamGroups {
 public:
  // Parameters whose name starts with prefix get these settings.
  ParamGroups& add(std::string prefix, GroupSettings s) {
    rules_.push_back({std::move(prefix), s});
    return *this;
  }
  // Rank-1 parameters (norm weights, biases) are exempt from weight decay,
  // whatever rule matches them, unless decay_vectors is set: decaying a norm's
  // scale towards 0 fights the norm.
  bool decay_vectors = false;

  template <class B, class T>
  std::vector<GroupSettings> resolve(const nn::ParameterSet<B, T>& ps) const {
    std::vector<GroupSettings> out;
    for (const auto& e : ps.entries()) {
      GroupSettings s;
      for (const auto& r : rules_)
        if (e.name.rfind(r.prefix, 0) == 0) {
          s = r.settings;
          break;
        }
      // A rule sets the multiplier and can switch decay off; it never turns
      // decay on for a vector: groups.add("encoder.", {0.1}) for a slower
      // backbone must not start shrinking its norm scales.
      if (e.shape.rank() <= 1 && !decay_vectors) s.weight_decay = false;
      out.push_back(s);
    }
    return out;
  }

 private:
  struct Rule {
    std::string prefix;
    GroupSettings settings;
  };
  std::vector<Rule> rules_;
};

// The range an optimizer works on: `range`, checked against the set, or every parameter.
template <class B, class T>
nn::ParamRange checked_range(const nn::ParameterSet<B, T>& ps, const std::optional<nn::ParamRange>& range) {
  if (!range) return ps.all();
  PLM_CHECK(range->begin >= 0 && range->begin <= range->end && range->end <= ps.size(), "optimizer: parameter range [", range->begin, ", ",
            range->end, ") outside the set's ", ps.size(), " parameters");
  return *range;
}

// Elements of the parameters in `r`.
template <class B, class T>
index_t range_numel(const nn::ParameterSet<B, T>& ps, nn::ParamRange r) {
  if (r.size() == 0) return 0;
  const auto& last = ps.entry(r.end - 1);
  return last.offset + last.shape.numel() - ps.entry(r.begin).offset;
}

}  // namespace plm::optim
