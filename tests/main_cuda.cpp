// plm_cuda_tests: the cross-backend suite. Without a CUDA device it says so
// and exits with 77, which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "plm/cuda.hpp"

int main(int argc, char** argv) {
  if (plm::CudaContext::device_count() == 0) {
    std::printf("plm_cuda_tests: no CUDA device on this machine; the cross-backend tests were built but not run (skipped)\n");
    return 77;
  }
  plm::CudaContext gpu(0, plm::CudaMath::fp32);
  std::printf("plm_cuda_tests: running on %s\n", gpu.device_name().c_str());
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
