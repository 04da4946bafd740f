// The harness bodies compiled once, with the fuzzer's instrumentation, into
// the library every fuzz_<name> program links (tests/fuzz/CMakeLists.txt):
// one extern "C" entry per harness, so the programs' own sources stay tiny.
// With PLM_FUZZ_VERBOSE set, each input's outcome goes to stderr ("accepted",
// or the plm::Error that refused it): fuzz_<name> -runs=0 <corpus dir> then
// shows how deep a corpus reaches.
#include <cstdio>
#include <cstdlib>

#include "harnesses.hpp"

namespace {
const bool verbose = std::getenv("PLM_FUZZ_VERBOSE") != nullptr;

int report(int rc) {
  if (verbose) std::fprintf(stderr, "plm-fuzz: %s\n", plm::fuzz::first_error().empty() ? "accepted" : plm::fuzz::first_error().c_str());
  return rc;
}
}  // namespace

#define PLM_FUZZ_ENTRY(name) \
  extern "C" int plm_fuzz_##name(const std::uint8_t* data, std::size_t size) { return report(plm::fuzz::fuzz_##name(data, size)); }

PLM_FUZZ_ENTRY(fasta)
PLM_FUZZ_ENTRY(fasta_gz_raw)
PLM_FUZZ_ENTRY(fasta_gz)
PLM_FUZZ_ENTRY(safetensors)
PLM_FUZZ_ENTRY(config)
PLM_FUZZ_ENTRY(tokenizer_json)
PLM_FUZZ_ENTRY(vocab_file)
PLM_FUZZ_ENTRY(labelled)
PLM_FUZZ_ENTRY(checkpoint)
PLM_FUZZ_ENTRY(metrics)
PLM_FUZZ_ENTRY(weights_index)
