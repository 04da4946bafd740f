// libFuzzer entry of the tokenizer_json harness (the body: plm::fuzz::fuzz_tokenizer_json in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_tokenizer_json(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_tokenizer_json(data, size); }
