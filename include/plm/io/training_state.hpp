#pragma once
// Where a training run stands, as a checkpoint stores it (checkpoint.hpp).
// Kept apart from the checkpoint code so that a data stream can write its
// cursor into it without depending on models or safetensors.
#include <cstdint>

#include <nlohmann/json.hpp>

namespace plm::io {

// Where a run stands: enough to continue it exactly.
struct TrainingState {
  std::int64_t step = 0;        // optimizer steps done
  std::uint64_t seed = 0;       // the run's seed (Philox key of every draw)
  std::uint64_t epoch = 0;      // data epoch
  std::uint64_t cursor = 0;     // the data stream's position inside the epoch (its unit is the stream's)
  nlohmann::json extra = nlohmann::json::object();  // anything else the loop wants back (options, best loss, ...)
};

}  // namespace plm::io
