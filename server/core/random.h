// Randomness as the seam gives it: one small interface, and the draws built on it.
//
// Components never seed their own generator: they draw from the Random their Env hands them. In
// production that is the operating system's CSPRNG (SystemRandom, server/runtime/asio_env.h): secrets
// (tokens, salts, the cluster key) and ids come from it. In the simulator every node draws from the one
// xoshiro256** of the run, seeded by the run's seed, so a seed replays the same choices. Any layer may use it.
#pragma once

#include <cstdint>

namespace chorus {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() = 0;

  // Uniform in [0, n). n must be > 0.
  uint64_t uniform(uint64_t n);
  // Uniform in [lo, hi]. lo <= hi.
  int64_t uniform_range(int64_t lo, int64_t hi);
  // Uniform in [0, 1).
  double unit();
  // True with probability p (p <= 0 never, p >= 1 always, and no draw is taken in those cases).
  bool chance(double p);
  // Exponentially distributed with the given mean (>= 0).
  double exponential(double mean);
};

// xoshiro256** (Blackman and Vigna): fast, small state, good statistical quality. Deterministic.
class Xoshiro256 final : public Random {
 public:
  explicit Xoshiro256(uint64_t seed);
  uint64_t next_u64() override;

 private:
  uint64_t s_[4];
};

// SplitMix64 step: spreads a seed into well-mixed words; also a decent 64-bit mixing function.
uint64_t splitmix64(uint64_t& state);

}  // namespace chorus
