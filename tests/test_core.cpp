// core/: errors, Shape, Tensor and views, bf16, Philox.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "plm/plm.hpp"

using namespace plm;

TEST_CASE("errors carry the message and the source location") {
  try {
    PLM_CHECK(1 + 1 == 3, "arith: ", 1, " + ", 1, " is not ", 3);
    FAIL("no exception");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.rfind("plm: arith: 1 + 1 is not 3 [test_core.cpp:", 0) == 0);
  }
}

TEST_CASE("Shape: rank, numel, rows, printing, validation") {
  Shape s{2, 3, 5};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 30);
  CHECK(s.rows() == 6);
  CHECK(s.cols() == 5);
  CHECK(s[-1] == 5);
  CHECK(s.str() == "(2, 3, 5)");
  CHECK(Shape{7}.str() == "(7,)");
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{4, 0}.numel() == 0);
  CHECK(Shape{2, 3} == Shape{2, 3});
  CHECK(Shape{2, 3} != Shape{3, 2});
  CHECK_THROWS_WITH_AS((Shape{1, 2, 3, 4, 5}), doctest::Contains("rank 5 exceeds"), Error);
  CHECK_THROWS_WITH_AS((Shape{2, -1}), doctest::Contains("negative dimension -1"), Error);
  CHECK_THROWS_WITH_AS(s[3], doctest::Contains("dimension 3 out of range for (2, 3, 5)"), Error);
}

TEST_CASE("Shape: dimensions whose product overflows are refused, naming the shape") {
  const index_t big = index_t(1) << 62;
  CHECK(Shape{big, 1}.numel() == big);
  CHECK(Shape{index_t(1) << 31, index_t(1) << 31, 1}.numel() == big);
  CHECK((Shape{big, 0}).numel() == 0);
  CHECK_THROWS_WITH_AS((Shape{big, 4}), doctest::Contains("Shape: (4611686018427387904, 4) has more than 2^63 - 1 elements"), Error);
  CHECK_THROWS_WITH_AS((Shape{index_t(1) << 31, index_t(1) << 31, 2}), doctest::Contains("(2147483648, 2147483648, 2) has more than"), Error);
  // rows() multiplies all but the last dimension: a zero last dimension does not make the rest safe
  CHECK_THROWS_WITH_AS((Shape{big, 4, 0}), doctest::Contains("product of its dimensions overflows"), Error);
  // a d_model of 2^62 from a config file: the tensors it would size are refused before any allocation
  CHECK_THROWS_AS((Tensor<cpu, float>(Shape{2, 3, big})), Error);
}

TEST_CASE("Tensor: an allocation larger than the machine's memory is a plm::Error saying how much") {
  // 4 TiB: refused by the kernel's overcommit heuristic (and by ASan with allocator_may_return_null=1).
  std::string msg;
  try {
    Tensor<cpu, float> t(Shape{index_t(1) << 40});
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  CHECK(msg.find("out of memory allocating 4398046511104 bytes") != std::string::npos);
  CHECK(msg.find("4096 GiB") != std::string::npos);
}

TEST_CASE("Tensor: ownership, views, reshape, slice, index, resize") {
  Tensor<cpu, float> t(Shape{3, 4});
  for (int i = 0; i < 12; ++i) t.data()[i] = static_cast<float>(i);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  CHECK(t.at(2, 1) == 9.f);
  CHECK_THROWS_WITH_AS(t.at(3, 0), doctest::Contains("index 3 out of range in dimension 0 of (3, 4)"), Error);
  CHECK_THROWS_WITH_AS(t.at(1), doctest::Contains("1 indices for a tensor of shape (3, 4)"), Error);

  auto r = t.reshape(Shape{2, 2, 3});
  CHECK(r.data() == t.data());
  CHECK(r.at(1, 0, 2) == 8.f);
  CHECK_THROWS_WITH_AS(t.reshape(Shape{5, 2}), doctest::Contains("reshape: (3, 4) has 12 elements, (5, 2) needs 10"), Error);

  auto s = t.slice(1, 3);
  CHECK(s.shape() == Shape{2, 4});
  CHECK(s.at(0, 0) == 4.f);
  s.at(1, 3) = -1.f;  // views write through
  CHECK(t.at(2, 3) == -1.f);
  CHECK_THROWS_WITH_AS(t.slice(2, 5), doctest::Contains("rows [2, 5) out of range for (3, 4)"), Error);
  auto row = t[1];
  CHECK(row.shape() == Shape{4});
  CHECK(row.at(2) == 6.f);

  ConstView<cpu, float> cv = t;  // mutable -> const conversion
  CHECK(cv.at(0, 1) == 1.f);

  Tensor<cpu, float> c = t.clone();
  CHECK(c.data() != t.data());
  CHECK(std::memcmp(c.data(), t.data(), 12 * sizeof(float)) == 0);

  float* before = t.data();
  t.resize(Shape{2, 5});  // fits the capacity: no reallocation
  CHECK(t.data() == before);
  CHECK(t.capacity() == 12);
  t.resize(Shape{4, 4});
  CHECK(t.capacity() == 16);

  Tensor<cpu, float> moved = std::move(t);
  CHECK(moved.shape() == Shape{4, 4});
  CHECK(t.empty());
}

TEST_CASE("bf16: round to nearest even, NaN and infinity preserved") {
  CHECK(static_cast<float>(bf16(1.0f)) == 1.0f);
  CHECK(bf16(1.0f).bits == 0x3f80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties go to even (1.0).
  CHECK(static_cast<float>(bf16(1.0f + 1.0f / 256)) == 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1.0078125 and 1.015625: ties to even (1.015625).
  CHECK(static_cast<float>(bf16(1.0f + 3.0f / 256)) == 1.015625f);
  CHECK(static_cast<float>(bf16(1.0f + 1.5f / 256)) == 1.0078125f);
  CHECK(std::isnan(static_cast<float>(bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(static_cast<float>(bf16(std::numeric_limits<float>::infinity()))));
  CHECK(static_cast<float>(bf16(-2.5f)) == -2.5f);
  // relative error of any normal value is at most half a unit in the 8-bit significand: 2^-8
  Philox rng(3);
  for (int i = 0; i < 1000; ++i) {
    const float f = static_cast<float>((rng.uniform() - 0.5) * 1e4);
    CHECK(std::abs(static_cast<float>(bf16(f)) - f) <= std::abs(f) * (1.0f / 256));
  }
}

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  auto kat = [](PhiloxBlock c, std::uint32_t k0, std::uint32_t k1, PhiloxBlock want) {
    const PhiloxBlock got = philox4x32_10(c, k0, k1);
    for (int i = 0; i < 4; ++i) CHECK(got.v[i] == want.v[i]);
  };
  kat({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
  kat({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
      {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
  kat({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
      {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST_CASE("Philox streams: seed layout as cuRAND, independence, reproducibility") {
  // First draws of cuRAND's PHILOX4_32_10 with seed 1234567890123, subsequence 0,
  // offset 0: the seed is the key, the offset the low counter words.
  const std::uint32_t want[4] = {0x450d0f76, 0x73e09021, 0x5bc52c46, 0xed7a649c};
  for (int i = 0; i < 4; ++i) CHECK(philox_u32(1234567890123ULL, 0, i) == want[i]);

  Philox a(7, 1), b(7, 1), c(7, 2), d(8, 1);
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 100; ++i) {
    const auto x = a.next_u32();
    CHECK(x == b.next_u32());
    CHECK(x != c.next_u32());
    CHECK(x != d.next_u32());
    seen.insert(x);
  }
  CHECK(seen.size() == 100);
  // random access equals sequential access
  Philox e(7, 1, 37);
  CHECK(e.next_u32() == philox_u32(7, 1, 37));

  // uniform in (0, 1] with the right mean; below(n) in range and roughly uniform
  Philox u(11);
  double s = 0;
  int hist[5] = {};
  for (int i = 0; i < 100000; ++i) {
    const float f = u.uniform();
    CHECK_FALSE((f <= 0.f || f > 1.f));
    s += f;
    const auto k = u.below(5);
    REQUIRE(k < 5);
    ++hist[k];
  }
  CHECK(std::abs(s / 100000 - 0.5) < 0.005);
  for (int h : hist) CHECK(std::abs(h - 20000) < 600);  // > 4 standard deviations
  double m = 0, v = 0;
  for (int i = 0; i < 100000; ++i) {
    const double z = u.normal();
    m += z;
    v += z * z;
  }
  CHECK(std::abs(m / 100000) < 0.02);
  CHECK(std::abs(v / 100000 - 1) < 0.03);
}

TEST_CASE("thread settings") {
  const int before = num_threads();
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(before);
  CHECK_THROWS_AS(set_num_threads(0), Error);
}
