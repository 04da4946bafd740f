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
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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
  nlohmann::json crcs, j;
  try {
    crcs = nlohmann::json::parse(get("plm.crc32"));
    j = nlohmann::json::parse(get("plm.state"));
  } catch (const nlohmann::json::exception& e) {
    PLM_FAIL("load_checkpoint: ", path, ": damaged metadata (", e.what(), ")");
  }
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
    PLM_CHECK(crcs.contains(name) && crcs[name].template get<std::uint32_t>() == crc, "load_checkpoint: ", path, ": tensor '", name,
              "' is damaged (checksum mismatch)");
  }
  for (std::size_t i = 0; i < targets.size(); ++i) upload(loaded[i].data(), targets[i].second);
  TrainingState ts;
  try {
    ts.step = j.at("step").get<std::int64_t>();
    ts.seed = j.at("seed").get<std::uint64_t>();
    ts.epoch = j.at("epoch").get<std::uint64_t>();
    ts.cursor = j.at("cursor").get<std::uint64_t>();
    ts.extra = j.value("extra", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    PLM_FAIL("load_checkpoint: ", path, ": damaged training state (", e.what(), ")");
  }
  return ts;
}

// Refuses a resume whose settings differ from the run that wrote the checkpoint:
// every key of `want` (the settings that shape the run: data, model, seed, ...)
// must equal the one stored in ts.extra["fingerprint"]; the error names the key
// and both values.
inline void check_fingerprint(const std::string& path, const TrainingState& ts, const nlohmann::json& want) {
  const auto have = ts.extra.value("fingerprint", nlohmann::json::object());
  for (auto it = want.begin(); it != want.end(); ++it)
    PLM_CHECK(have.contains(it.key()) && have[it.key()] == it.value(), "--resume: ", path, " was written with ", it.key(), " = ",
              have.value(it.key(), nlohmann::json()).dump(), ", this run has ", it.value().dump());
}

}  // namespace plm::io
