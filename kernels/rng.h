// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Every random number in sparta is a pure function of (seed, stream, index): no generator state
// advances, so results do not depend on the order of evaluation, the number of threads or how a
// tensor is sharded across ranks. `stream` names the purpose (init of parameter #7, the data
// order of epoch 3, ...); `index` is the global element index.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace sparta::kernels {

#if defined(__CUDACC__)
#define SPARTA_HD __host__ __device__
#else
#define SPARTA_HD
#endif

SPARTA_HD inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr,
                                                    std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

SPARTA_HD inline std::array<uint32_t, 4> philox(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox4x32({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                     static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

// Uniform in (0, 1): never exactly 0 (safe for log) nor 1.
SPARTA_HD inline double u32_to_unit(uint32_t x) {
  return (static_cast<double>(x) + 0.5) / 4294967296.0;
}

SPARTA_HD inline double uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return u32_to_unit(philox(seed, stream, index)[0]);
}

// Standard normal (Box-Muller on the first two words of the block).
SPARTA_HD inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const auto r = philox(seed, stream, index);
  const double u1 = u32_to_unit(r[0]), u2 = u32_to_unit(r[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Gradient noise (../shared/specs/grad-noise.md section 3.4): element i of logical parameter
// `param_id` at optimizer step t. Key (seed_lo, seed_hi ^ purpose); counter (i/4 lo, i/4 hi,
// param_id, t); the block's 4 words give 4 normals by two Box-Muller transforms and element i
// takes number i mod 4. Depends only on (seed, param_id, t, i): any sharding reproduces it.
SPARTA_HD inline void noise_block(uint64_t seed, uint32_t param_id, uint32_t step, uint64_t j,
                                  double out[4]) {
  constexpr uint32_t kNoisePurpose = 0x6E6F6973u;  // "nois"
  const auto w = philox4x32({static_cast<uint32_t>(j), static_cast<uint32_t>(j >> 32), param_id, step},
                            {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32) ^ kNoisePurpose});
  for (int pair = 0; pair < 2; ++pair) {
    // u in (0, 1]: log(u) is finite.
    const double u1 = (static_cast<double>(w[2 * pair]) + 1.0) / 4294967296.0;
    const double u2 = (static_cast<double>(w[2 * pair + 1]) + 1.0) / 4294967296.0;
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    out[2 * pair] = r * std::cos(th);
    out[2 * pair + 1] = r * std::sin(th);
  }
}

SPARTA_HD inline double noise_normal(uint64_t seed, uint32_t param_id, uint32_t step, uint64_t i) {
  double b[4];
  noise_block(seed, param_id, step, i / 4, b);
  return b[i % 4];
}

// Stream ids: a purpose tag in the high 16 bits, a sub-id (parameter number, epoch) below.
enum class RngPurpose : uint64_t {
  init = 1,
  data_order = 2,
  dropout = 3,
  noise = 4,
  sample = 5,
  test = 15
};
constexpr uint64_t rng_stream(RngPurpose p, uint64_t sub) {
  return (static_cast<uint64_t>(p) << 48) | (sub & 0xFFFFFFFFFFFFull);
}

}  // namespace sparta::kernels
