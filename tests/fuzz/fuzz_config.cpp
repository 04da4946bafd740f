// libFuzzer entry of the config harness (the body: plm::fuzz::fuzz_config in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_config(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_config(data, size); }
