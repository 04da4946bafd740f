// libFuzzer entry of the vocab_file harness (the body: plm::fuzz::fuzz_vocab_file in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_vocab_file(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_vocab_file(data, size); }
