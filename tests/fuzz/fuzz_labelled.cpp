// libFuzzer entry of the labelled harness (the body: plm::fuzz::fuzz_labelled in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_labelled(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_labelled(data, size); }
