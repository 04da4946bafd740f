// libFuzzer entry of the fasta harness (the body: plm::fuzz::fuzz_fasta in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_fasta(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_fasta(data, size); }
