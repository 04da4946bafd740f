#pragma once
// Philox4x32-10 (Salmon et al., SC'11), counter-based.
//
// A draw is a pure function of (seed, stream, offset): no hidden state, so a
// CPU loop and a CUDA kernel that index draws the same way produce the same
// numbers. Layout follows cuRAND's curand_init(seed, subsequence, offset):
// key = seed, counter = (offset / 4 as 64 bits, stream as 64 bits), and the
// element offset % 4 of the 4-word block. All functions are usable in CUDA
// device code (PLM_HOST_DEVICE).
#include <array>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PLM_HOST_DEVICE __host__ __device__
#else
#define PLM_HOST_DEVICE
#endif

namespace plm {

struct PhiloxBlock {
  std::uint32_t v[4];
};

namespace detail {
PLM_HOST_DEVICE inline void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

// The raw bijection: 10 rounds over a 128-bit counter with a 64-bit key.
PLM_HOST_DEVICE inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::philox_mulhilo(M0, ctr.v[0], hi0, lo0);
    detail::philox_mulhilo(M1, ctr.v[2], hi1, lo1);
    ctr = PhiloxBlock{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// Block number `block` of stream `stream` under `seed`: four 32-bit draws.
PLM_HOST_DEVICE inline PhiloxBlock philox_block(std::uint64_t seed, std::uint64_t stream, std::uint64_t block) {
  PhiloxBlock c{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                 static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
  return philox4x32_10(c, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// Draw number `offset` of a stream (4 draws per block).
PLM_HOST_DEVICE inline std::uint32_t philox_u32(std::uint64_t seed, std::uint64_t stream, std::uint64_t offset) {
  return philox_block(seed, stream, offset >> 2).v[offset & 3];
}

// Uniform float in (0, 1], 24 random bits, exactly as cuRAND's _curand_uniform.
PLM_HOST_DEVICE inline float u32_to_uniform(std::uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f) + (0.5f / 16777216.0f);
}

// A sequential view of one stream for host code: Philox rng(seed, stream); rng.uniform().
class Philox {
 public:
  Philox(std::uint64_t seed = 0, std::uint64_t stream = 0, std::uint64_t offset = 0)
      : seed_(seed), stream_(stream), offset_(offset) {}

  std::uint32_t next_u32() { return philox_u32(seed_, stream_, offset_++); }
  // Uniform in (0, 1].
  float uniform() { return u32_to_uniform(next_u32()); }
  // Uniform integer in [0, n) without modulo bias (Lemire's method).
  std::uint32_t below(std::uint32_t n) {
    std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * n;
    auto lo = static_cast<std::uint32_t>(m);
    if (lo < n) {
      const std::uint32_t t = static_cast<std::uint32_t>(-n) % n;
      while (lo < t) {
        m = static_cast<std::uint64_t>(next_u32()) * n;
        lo = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::uint32_t>(m >> 32);
  }
  // Standard normal by Box-Muller over two draws.
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  std::uint64_t seed() const { return seed_; }
  std::uint64_t stream() const { return stream_; }
  std::uint64_t offset() const { return offset_; }
  void set_offset(std::uint64_t o) { offset_ = o; }

 private:
  std::uint64_t seed_, stream_, offset_;
};

}  // namespace plm
