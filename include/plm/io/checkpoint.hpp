#pragma once
// Training checkpoints: model parameters, optimizer state (or any other named
// tensors), RNG and data position, and the step, in one safetensors file.
//
//   model.<parameter name>   the parameters, in the model's dtype
//   state.<name>             extra tensors (optimizer moments, ...)
//   __metadata__             plm.checkpoint (format version), plm.dtype,
//                            plm.state (TrainingState as JSON), plm.crc32
//                            (a CRC-32 of every tensor's bytes)
//
// The file is written to a temporary name, fsynced and renamed, so a crash
// leaves either the previous checkpoint or the new one, never a torn file.
// Loading checks the format, the dtype, every tensor's name, shape and
// checksum, and names what does not match: a checkpoint of another model or a
// damaged file is refused before any parameter is overwritten.
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/json.hpp"
#include "plm/io/safetensors.hpp"
#include "plm/io/training_state.hpp"
#include "plm/nn/parameters.hpp"

namespace plm::io {

template <class B, class T>
struct NamedTensor {
  std::string name;
  TensorView<B, T> view;
};

namespace detail {
inline std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}
inline constexpr const char* checkpoint_format = "plm-training-checkpoint-1";
}  // namespace detail

template <class B, class T>
void save_checkpoint(const std::string& path, const nn::ParameterSet<B, T>& params, const std::vector<NamedTensor<B, T>>& state,
                     const TrainingState& ts) {
  SafetensorsWriter w;
  std::vector<Tensor<cpu, T>> host;  // device tensors are copied to the host first
  host.reserve(static_cast<std::size_t>(params.size()) + state.size());
  nlohmann::json crcs = nlohmann::json::object();
  auto add = [&](const std::string& name, ConstView<B, T> v) {
    ConstView<cpu, T> h;
    if constexpr (std::is_same_v<B, cpu>) {
      h = v;
    } else {
      host.emplace_back(v.shape());
      download(v, host.back().data());
      h = host.back().cview();
    }
    crcs[name] = detail::crc32(h.data(), static_cast<std::size_t>(h.numel()) * sizeof(T));
    w.add<T>(name, h);
  };
  for (index_t i = 0; i < params.size(); ++i) add("model." + params.entry(i).name, params.value(i));
  for (const auto& s : state) add("state." + s.name, s.view);
  nlohmann::json j = {{"step", ts.step}, {"seed", ts.seed}, {"epoch", ts.epoch}, {"cursor", ts.cursor}, {"extra", ts.extra}};
  w.set_metadata("plm.checkpoint", detail::checkpoint_format);
  w.set_metadata("plm.dtype", std::string(dtype_name(dtype_of_v<T>)));
  w.set_metadata("plm.state", j.dump());
  w.set_metadata("plm.crc32", crcs.dump());
  w.write(path);
}

// Restores parameters and state tensors in place and returns the TrainingState.
template <class B, class T>
TrainingState load_checkpoint(const std::string& path, nn::ParameterSet<B, T>& params, const std::vector<NamedTensor<B, T>>& state) {
  const SafetensorsReader f(path);
  const auto& meta = f.metadata();
  auto get = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    PLM_CHECK(it != meta.end(), "load_checkpoint: ", path, " is not a plm training checkpoint (no ", key, " in its metadata)");
    return it->second;
  };
  PLM_CHECK(get("plm.checkpoint") == detail::checkpoint_format, "load_checkpoint: ", path, " has format '", get("plm.checkpoint"),
            "', expected '", detail::checkpoint_format, "'");
  PLM_CHECK(get("plm.dtype") == dtype_name(dtype_of_v<T>), "load_checkpoint: ", path, " holds ", get("plm.dtype"),
            " tensors but the model is ", dtype_name(dtype_of_v<T>));
  const nlohmann::json crcs = parse_json(get("plm.crc32"), "load_checkpoint", path + ": metadata plm.crc32");
  const nlohmann::json j = parse_json(get("plm.state"), "load_checkpoint", path + ": metadata plm.state");
  PLM_CHECK(crcs.is_object(), "load_checkpoint: ", path, ": metadata plm.crc32 is not a JSON object (damaged file?)");
  // Names first: nothing is overwritten unless the whole file matches.
  std::vector<std::pair<std::string, TensorView<B, T>>> targets;
  for (index_t i = 0; i < params.size(); ++i) targets.emplace_back("model." + params.entry(i).name, params.value(i));
  for (const auto& s : state) targets.emplace_back("state." + s.name, s.view);
  std::vector<std::string> missing, extra, shape_errors;
  for (const auto& [name, v] : targets) {
    const TensorInfo* info = f.find(name);
    if (!info) {
      missing.push_back(name);
      continue;
    }
    bool same = static_cast<int>(info->shape.size()) == v.rank();
    for (int d = 0; same && d < v.rank(); ++d) same = info->shape[static_cast<std::size_t>(d)] == v.dim(d);
    if (!same) shape_errors.push_back(name + " (file " + nlohmann::json(info->shape).dump() + ", model " + v.shape().str() + ")");
  }
  for (const auto& info : f.tensors()) {
    bool known = false;
    for (const auto& t : targets) known = known || t.first == info.name;
    if (!known) extra.push_back(info.name);
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    return v.size() > 8 ? s + ", ... (" + std::to_string(v.size()) + " in all)" : s;
  };
  PLM_CHECK(missing.empty(), "load_checkpoint: ", path, " lacks ", missing.size(), " tensor(s): ", list(missing),
            " (a checkpoint of another model or optimizer?)");
  PLM_CHECK(extra.empty(), "load_checkpoint: ", path, " has ", extra.size(), " tensor(s) this run does not: ", list(extra));
  PLM_CHECK(shape_errors.empty(), "load_checkpoint: ", path, ": shapes differ for ", list(shape_errors));
  // Read everything into host buffers and verify checksums before touching the model.
  std::vector<Tensor<cpu, T>> loaded;
  loaded.reserve(targets.size());
  for (const auto& [name, v] : targets) {
    loaded.emplace_back(v.shape());
    f.read<T>(name, loaded.back().view());
    const std::uint32_t crc = detail::crc32(loaded.back().data(), static_cast<std::size_t>(v.numel()) * sizeof(T));
    const auto stored = crcs.find(name);
    PLM_CHECK(stored != crcs.end() && stored->is_number_unsigned(), "load_checkpoint: ", path, ": tensor '", name,
              "' has no checksum in the metadata (plm.crc32)");
    PLM_CHECK(stored->template get<std::uint64_t>() == crc, "load_checkpoint: ", path, ": tensor '", name, "' is damaged (checksum mismatch)");
  }
  for (std::size_t i = 0; i < targets.size(); ++i) upload(loaded[i].data(), targets[i].second);
  TrainingState ts;
  try {
    // Integers only: get<>() casts a float such as 1e300, which is undefined
    // behaviour, and wraps a negative counter (found by tests/fuzz).
    const auto integer = [&](const char* key, bool non_negative) -> const nlohmann::json& {
      const nlohmann::json& v = j.at(key);
      PLM_CHECK(non_negative ? v.is_number_unsigned() : v.is_number_integer(), "load_checkpoint: ", path,
                ": damaged training state (", key, " is ", json_excerpt(v), ", not ",
                non_negative ? "a non-negative integer" : "an integer", ")");
      return v;
    };
    ts.step = integer("step", false).template get<std::int64_t>();
    ts.seed = integer("seed", true).template get<std::uint64_t>();
    ts.epoch = integer("epoch", true).template get<std::uint64_t>();
    ts.cursor = integer("cursor", true).template get<std::uint64_t>();
    ts.extra = j.value("extra", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    PLM_FAIL("load_checkpoint: ", path, ": damaged training state (", e.what(), ")");
  }
  PLM_CHECK(ts.extra.is_object(), "load_checkpoint: ", path, ": damaged training state (extra is ", ts.extra.type_name(), ", not an object)");
  return ts;
}

// Refuses a resume whose settings differ from the run that wrote the checkpoint:
// every key of `want` (the settings that shape the run: data, model, seed, ...)
// must equal the one stored in ts.extra["fingerprint"]; the error names the key
// and both values.
inline void check_fingerprint(const std::string& path, const TrainingState& ts, const nlohmann::json& want) {
  const auto f = ts.extra.is_object() ? ts.extra.find("fingerprint") : ts.extra.end();
  PLM_CHECK(f == ts.extra.end() || f->is_object(), "--resume: ", path, ": damaged training state (extra.fingerprint is ", f->type_name(),
            ", not an object)");
  const nlohmann::json have = f == ts.extra.end() ? nlohmann::json::object() : *f;
  for (auto it = want.begin(); it != want.end(); ++it) {
    const auto h = have.find(it.key());
    PLM_CHECK(h != have.end() && *h == it.value(), "--resume: ", path, " was written with ", it.key(), " = ",
              h == have.end() ? std::string("null") : json_excerpt(*h), ", this run has ", json_excerpt(it.value()));
  }
}

// A value of a loaded TrainingState's extra, checked: a key that is missing or
// holds another type (or an integer T cannot hold) is a plm::Error naming the
// file and the key, never undefined behaviour (const operator[], a float cast
// to an integer) or a bare nlohmann type_error. T: bool, an integer or floating
// type, or anything else nlohmann::json converts to.
template <class T>
T extra_value(const std::string& path, const TrainingState& ts, const std::string& key) {
  const auto it = ts.extra.is_object() ? ts.extra.find(key) : ts.extra.end();
  PLM_CHECK(it != ts.extra.end(), "load_checkpoint: ", path, ": the training state has no '", key, "' (extra.", key,
            "): a checkpoint of another program?");
  const nlohmann::json& v = *it;
  bool fits = true;
  if constexpr (std::is_same_v<T, bool>) {
    fits = v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    using L = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
      fits = v.template get<std::uint64_t>() <= static_cast<std::uint64_t>(L::max());
    } else if (v.is_number_integer()) {
      const auto x = v.template get<std::int64_t>();
      fits = x < 0 ? L::is_signed && x >= static_cast<std::int64_t>(L::min()) : static_cast<std::uint64_t>(x) <= static_cast<std::uint64_t>(L::max());
    } else {
      fits = false;
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    fits = v.is_number();
  }
  PLM_CHECK(fits, "load_checkpoint: ", path, ": extra.", key, " = ", json_excerpt(v), " has the wrong type");
  try {
    return v.template get<T>();
  } catch (const nlohmann::json::exception& e) {
    PLM_FAIL("load_checkpoint: ", path, ": extra.", key, " = ", json_excerpt(v), " has the wrong type (", e.what(), ")");
  }
}

}  // namespace plm::io
