// libFuzzer entry of the safetensors harness (the body: plm::fuzz::fuzz_safetensors in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_safetensors(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_safetensors(data, size); }
