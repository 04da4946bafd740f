// A downstream program on plm's CUDA backend: a product on the GPU checked
// against the CPU, or, without a GPU, proof that it builds, links and starts.
#include <plm/cuda.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace plm;
  if (CudaContext::device_count() == 0) {
    std::printf("consumer_cuda: built and linked; no CUDA device here, nothing run on a GPU\n");
    return 0;
  }
  CudaContext gpu(0, CudaMath::fp32);
  Tensor<cpu, float> a(Shape{3, 4}), b(Shape{4, 2}), c(Shape{3, 2}), g(Shape{3, 2});
  for (index_t i = 0; i < a.numel(); ++i) a.data()[i] = 0.5f * float(i) - 1.f;
  for (index_t i = 0; i < b.numel(); ++i) b.data()[i] = 1.f - 0.25f * float(i);
  ops<cpu>::matmul<float>(a, false, b, false, c);
  Tensor<cuda, float> da(a.shape()), db(b.shape()), dc(c.shape());
  upload(a.data(), da.view());
  upload(b.data(), db.view());
  ops<cuda>::matmul<float>(da, false, db, false, dc);
  download(dc.cview(), g.data());
  for (index_t i = 0; i < c.numel(); ++i)
    if (std::abs(c.data()[i] - g.data()[i]) > 1e-5f) {
      std::printf("consumer_cuda: GPU product differs from the CPU at %ld\n", long(i));
      return 1;
    }
  std::printf("consumer_cuda: GPU product matches the CPU on %s\n", gpu.device_name().c_str());
  return 0;
}
