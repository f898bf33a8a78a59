// Capped exponential backoff with jitter, for reconnects (both transports use it).
//
// The n-th consecutive failure waits a delay drawn uniformly from [d/2, d], where d = min(cap, base*2^n)
// ("equal jitter": never zero, never synchronised). Any layer may use it; randomness comes from the Env.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>

#include "server/core/random.h"
#include "server/core/time.h"

namespace chorus {

class Backoff {
 public:
  Backoff(Duration base, Duration cap) : base_(base), cap_(cap) { assert(base.count() > 0 && cap >= base); }

  Duration next(Random& random) {
    int64_t ceiling = base_.count();
    for (int i = 0; i < attempts_ && ceiling < cap_.count(); ++i) ceiling *= 2;  // at most 63 doublings
    ceiling = std::min(ceiling, cap_.count());
    if (attempts_ < 64) ++attempts_;
    return Duration{random.uniform_range(ceiling / 2, ceiling)};
  }
  void reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  Duration base_;
  Duration cap_;
  int attempts_ = 0;
};

}  // namespace chorus
