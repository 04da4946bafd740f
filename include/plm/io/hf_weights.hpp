#pragma once
// The weights of a Hugging Face model directory, as save_pretrained writes them:
//
//   model.safetensors                              one file, or
//   model.safetensors.index.json + model-0000N-of-0000M.safetensors   sharded
//                                                  (the layout above a few GB)
//
// ModelWeights opens either (or one .safetensors file named directly) and
// reads tensors by name, in the stored dtype converted to the destination's
// (F32, F16, BF16, F64, ...), one tensor at a time straight into the
// destination: loading never holds a second copy of the model. Only the
// headers of the shards stay in memory.
//
// The index is checked against the shards before anything is read: every
// tensor the index names must be in the shard it names, no shard may hold a
// tensor the index does not list or lists elsewhere, and shard names must be
// plain file names in the directory. A directory that holds only PyTorch
// pickles (pytorch_model.bin) is refused: unpickling can run arbitrary code,
// so plm does not read them; the message gives the one-line conversion.
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plm/core/error.hpp"
#include "plm/core/json.hpp"
#include "plm/io/atomic_file.hpp"
#include "plm/io/safetensors.hpp"

namespace plm::io {

class ModelWeights {
 public:
  static constexpr const char* single_name = "model.safetensors";
  static constexpr const char* index_name = "model.safetensors.index.json";

  // dir_or_file: a model directory, a .safetensors file, or an index .json file.
  explicit ModelWeights(const std::string& dir_or_file) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(dir_or_file, ec)) {
      const fs::path dir(dir_or_file);
      if (fs::exists(dir / single_name, ec)) open_single((dir / single_name).string());
      else if (fs::exists(dir / index_name, ec)) open_index((dir / index_name).string());
      else refuse_directory(dir);
    } else if (dir_or_file.size() > 5 && dir_or_file.compare(dir_or_file.size() - 5, 5, ".json") == 0) {
      open_index(dir_or_file);
    } else {
      refuse_pickle_file(dir_or_file);
      open_single(dir_or_file);
    }
  }

  // What the weights are: the file, or the index of a sharded checkpoint (for messages).
  const std::string& path() const { return path_; }
  bool sharded() const { return index_; }
  std::size_t num_files() const { return shards_.size(); }

  // Every tensor, shard by shard, in file order.
  const std::vector<TensorInfo>& tensors() const { return all_; }
  const TensorInfo* find(const std::string& name) const {
    const auto it = where_.find(name);
    return it == where_.end() ? nullptr : shards_[it->second]->find(name);
  }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // The file that holds tensor `name`.
  const std::string& file_of(const std::string& name) const { return shard(name).path(); }

  // Reads tensor `name` into dst (shape must match), converting dtypes as SafetensorsReader::read does.
  template <class T>
  void read(const std::string& name, TensorView<cpu, T> dst) const {
    shard(name).read<T>(name, dst);
  }

 private:
  const SafetensorsReader& shard(const std::string& name) const {
    const auto it = where_.find(name);
    PLM_CHECK(it != where_.end(), "weights: ", path_, " has no tensor '", name, "'");
    return *shards_[it->second];
  }

  void add_shard(const std::string& file) {
    shards_.push_back(std::make_unique<SafetensorsReader>(file));
    const std::size_t k = shards_.size() - 1;
    for (const TensorInfo& t : shards_[k]->tensors()) {
      const auto [it, fresh] = where_.emplace(t.name, k);
      if (!fresh)
        PLM_FAIL("weights: tensor '", t.name, "' is in both ", shards_[it->second]->path(), " and ", file, " (a mixed-up checkpoint?)");
      all_.push_back(t);
    }
  }

  void open_single(const std::string& file) {
    path_ = file;
    add_shard(file);
  }

  void open_index(const std::string& index_path) {
    namespace fs = std::filesystem;
    path_ = index_path;
    index_ = true;
    const JsonLimits limits{std::size_t{64} << 20, 8};  // ~100 bytes per tensor name: room for a million tensors
    const detail::InputFile f(index_path, "weights index");
    PLM_CHECK(f.size() <= limits.max_bytes, "weights index: ", index_path, ": ", f.size(), " bytes exceeds the limit of ",
              limits.max_bytes);
    const nlohmann::json j = parse_json(f.read_all(), "weights index", index_path, limits);
    PLM_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(), "weights index: ", index_path,
              ": expected an object with a \"weight_map\" object (tensor name -> shard file), as save_pretrained writes");
    const nlohmann::json& map = j.at("weight_map");
    PLM_CHECK(!map.empty(), "weights index: ", index_path, ": \"weight_map\" is empty");
    std::map<std::string, std::string> shard_of;  // tensor -> shard file name
    std::vector<std::string> order;               // shard file names, first appearance
    for (const auto& [name, file] : map.items()) {
      PLM_CHECK(file.is_string(), "weights index: ", index_path, ": the shard of tensor '", name, "' must be a string, got ", file.type_name());
      const std::string s = file.get<std::string>();
      PLM_CHECK(!s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos && s != "." && s != "..",
                "weights index: ", index_path, ": shard '", s, "' of tensor '", name,
                "' is not a plain file name (shards must sit next to the index)");
      if (std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);
      shard_of.emplace(name, s);
    }
    check_shard_numbering(index_path, order);
    const fs::path dir = fs::path(index_path).parent_path();
    for (const std::string& s : order) add_shard((dir / s).string());
    // The index and the shards must agree tensor by tensor.
    for (const auto& [name, file] : shard_of) {
      const auto it = where_.find(name);
      PLM_CHECK(it != where_.end(), "weights index: ", index_path, ": tensor '", name, "' is listed in shard ", file, ", which does not hold it");
      const std::string held = fs::path(shards_[it->second]->path()).filename().string();
      PLM_CHECK(held == file, "weights index: ", index_path, ": tensor '", name, "' is listed in ", file, " but is in ", held);
    }
    for (const TensorInfo& t : all_)
      PLM_CHECK(shard_of.count(t.name), "weights index: ", index_path, ": shard ", file_of(t.name), " holds tensor '", t.name,
                "', which the index does not list (a shard of another checkpoint?)");
  }

  // Shards named as save_pretrained names them, <stem>-<k>-of-<n>.safetensors,
  // say how many there are: an index that names only some of them (a truncated
  // or hand-edited index) would load a partial model, so every k in 1..n must
  // be listed. Names of other forms are taken as they are.
  static void check_shard_numbering(const std::string& index_path, const std::vector<std::string>& shards) {
    std::map<std::pair<std::string, std::string>, std::vector<std::string>> groups;  // (stem, n) -> k, as written
    std::map<std::pair<std::string, std::string>, unsigned long> count;
    const std::string ext = ".safetensors";
    const auto digits = [](const std::string& t) {
      return !t.empty() && t.size() <= 9 && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    for (const std::string& s : shards) {
      if (s.size() <= ext.size() || s.compare(s.size() - ext.size(), ext.size(), ext) != 0) continue;
      const std::string base = s.substr(0, s.size() - ext.size());
      const std::size_t of = base.rfind("-of-");
      if (of == std::string::npos) continue;
      const std::string n = base.substr(of + 4);
      const std::size_t dash = base.rfind('-', of == 0 ? 0 : of - 1);
      if (dash == std::string::npos || dash >= of) continue;
      const std::string k = base.substr(dash + 1, of - dash - 1);
      if (!digits(n) || !digits(k)) continue;
      const unsigned long kn = std::stoul(k), nn = std::stoul(n);
      PLM_CHECK(kn >= 1 && kn <= nn, "weights index: ", index_path, ": shard ", s, " is numbered ", kn, " of ", nn);
      const auto key = std::make_pair(base.substr(0, dash), n);
      groups[key].push_back(k);
      count[key] = nn;
    }
    for (const auto& [key, ks] : groups) {
      const unsigned long n = count.at(key);
      if (ks.size() == n) continue;
      std::string missing;
      std::vector<unsigned long> have;
      for (const std::string& k : ks) have.push_back(std::stoul(k));
      for (unsigned long k = 1; k <= n && missing.size() < 200; ++k)
        if (std::find(have.begin(), have.end(), k) == have.end()) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
      PLM_FAIL("weights index: ", index_path, ": the shards are numbered \"of ", key.second, "\" but the index names ", ks.size(),
               " of them (not listed: ", missing, "); the index is incomplete or from another checkpoint");
    }
  }

  static std::string conversion_hint(const std::string& dir) {
    return "convert it once to safetensors with transformers: python3 -c \"import sys, transformers as t; "
           "t.AutoModel.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])\" " +
           dir + " " + dir + "-safetensors (AutoModelForSeq2SeqLM for an encoder-decoder)";
  }
  [[noreturn]] static void refuse_directory(const std::filesystem::path& dir) {
    std::error_code ec;
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
      if (std::filesystem::exists(dir / pickle, ec))
        PLM_FAIL("weights: ", dir.string(), " holds ", pickle, " but no ", single_name, " or ", index_name,
                 ": PyTorch .bin files are pickles, which can run code when loaded, so plm does not read them; ",
                 conversion_hint(dir.string()));
    PLM_FAIL("weights: ", dir.string(), " has neither ", single_name, " nor ", index_name,
             " (expected a Hugging Face model directory as save_pretrained writes it)");
  }
  static void refuse_pickle_file(const std::string& file) {
    const std::string name = std::filesystem::path(file).filename().string();
    const auto ends_with = [&](const char* ext) {
      const std::string e(ext);
      return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
    };
    if (ends_with(".bin") || ends_with(".pt") || ends_with(".pth"))
      PLM_FAIL("weights: ", file, " is a PyTorch pickle, which can run code when loaded, so plm does not read it; ",
               conversion_hint(std::filesystem::path(file).parent_path().string()));
  }

  std::string path_;
  bool index_ = false;
  std::vector<std::unique_ptr<SafetensorsReader>> shards_;
  std::map<std::string, std::size_t> where_;  // tensor -> shard
  std::vector<TensorInfo> all_;
};

}  // namespace plm::io
