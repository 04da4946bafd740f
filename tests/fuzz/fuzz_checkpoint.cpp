// libFuzzer entry of the checkpoint harness (the body: plm::fuzz::fuzz_checkpoint in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_checkpoint(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_checkpoint(data, size); }
