// Uses plm the way a downstream project would and checks one result, so the
// consumer tests fail if the package links but does not work.
#include <plm/plm.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace plm;
  Tensor<cpu, float> a(Shape{2, 3}), b(Shape{3, 2}), c(Shape{2, 2});
  for (int i = 0; i < 6; ++i) {
    a.data()[i] = static_cast<float>(i + 1);  // [[1 2 3] [4 5 6]]
    b.data()[i] = static_cast<float>(6 - i);  // [[6 5] [4 3] [2 1]]
  }
  ops<cpu>::matmul(a, false, b, false, c);
  const float want[4] = {20, 14, 56, 41};
  for (int i = 0; i < 4; ++i)
    if (std::abs(c.data()[i] - want[i]) > 1e-5f) {
      std::printf("consumer: wrong product at %d: %f\n", i, c.data()[i]);
      return 1;
    }
  try {
    Tensor<cpu, float> bad(Shape{4, 4});
    ops<cpu>::matmul(a, false, bad, false, c);
    std::printf("consumer: a shape error was not reported\n");
    return 1;
  } catch (const Error& e) {
    std::printf("consumer: ok (%s)\n", e.what());
  }
  return 0;
}
