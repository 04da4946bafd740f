// libFuzzer entry of the metrics harness (the body: plm::fuzz::fuzz_metrics in harnesses.hpp).
#include <cstddef>
#include <cstdint>

extern "C" int plm_fuzz_metrics(const std::uint8_t* data, std::size_t size);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return plm_fuzz_metrics(data, size); }
