// Time as the seam gives it: a monotonic clock and a wall clock, kept apart.
//
// MonoTime only moves forward and is what timeouts and round trips are measured with. WallTime is the
// calendar (epoch microseconds); it can be skewed or jump, and is only for stamping records (CreateAt,
// LastPingAt, log lines). Neither is ever read from the OS outside server/runtime and simulator/: a
// component gets them from its Env. Any layer may include this header.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>

namespace chorus {

using Duration = std::chrono::microseconds;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Microseconds on a node's monotonic clock (arbitrary origin, never decreases on one node).
struct MonoTime {
  int64_t us = 0;
  auto operator<=>(const MonoTime&) const = default;
  MonoTime operator+(Duration d) const { return MonoTime{us + d.count()}; }
  MonoTime operator-(Duration d) const { return MonoTime{us - d.count()}; }
  Duration operator-(MonoTime o) const { return Duration{us - o.us}; }
};

// Microseconds since the Unix epoch on a node's wall clock (may be skewed against other nodes).
struct WallTime {
  int64_t us = 0;
  auto operator<=>(const WallTime&) const = default;
  int64_t millis() const { return us / 1000; }
  WallTime operator+(Duration d) const { return WallTime{us + d.count()}; }
  Duration operator-(WallTime o) const { return Duration{us - o.us}; }
};

inline int64_t to_ms(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

}  // namespace chorus
