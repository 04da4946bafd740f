// libFuzzer entry of the weights_index harness (the body: plm::fuzz::fuzz_weights_index in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_weights_index(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_weights_index(data, size); }
