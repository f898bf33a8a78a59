// Always-on assertions on the invariants of the distributed code (TigerBeetle's style): checked in
// release builds too, because a broken invariant in a cluster is worse than a stopped node.
//
//   CHORUS_ASSERT(cond);                      // "file:line: assertion failed: cond"
//   CHORUS_ASSERT(cond, "what {}", value);    // with a formatted detail
//
// What a failure does is the process's choice, made once at start: chorusd logs it to stderr and
// aborts (the default); the simulator throws AssertionFailure, which the scenario runner reports as a
// violation of the seed ("no node crashes"), replayable and shrinkable like any other.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace chorus {

struct AssertionFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Called with "file:line: assertion failed: cond (detail)". Must not return (throw or abort).
using AssertHandler = void (*)(const std::string& what);
void set_assert_handler(AssertHandler handler);  // nullptr: the default (stderr, abort)
[[noreturn]] void assertion_failed(const char* file, int line, const char* condition, const std::string& detail);
// The simulator's handler: throws AssertionFailure.
[[noreturn]] void throw_assertion(const std::string& what);

namespace detail {
inline std::string assert_detail() { return {}; }
template <typename... Args>
std::string assert_detail(fmt::format_string<Args...> f, Args&&... args) {
  return fmt::format(f, std::forward<Args>(args)...);
}
}  // namespace detail

}  // namespace chorus

#define CHORUS_ASSERT(cond, ...)                                                                           \
  do {                                                                                                     \
    if (!(cond)) [[unlikely]]                                                                              \
      ::chorus::assertion_failed(__FILE__, __LINE__, #cond, ::chorus::detail::assert_detail(__VA_ARGS__)); \
  } while (0)
