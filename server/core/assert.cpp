#include "server/core/assert.h"

#include <cstdio>
#include <cstdlib>

namespace chorus {

namespace {
AssertHandler g_handler = nullptr;
}

void set_assert_handler(AssertHandler handler) { g_handler = handler; }

void throw_assertion(const std::string& what) { throw AssertionFailure(what); }

void assertion_failed(const char* file, int line, const char* condition, const std::string& detail) {
  std::string where = file;
  if (const auto at = where.find("server/"); at != std::string::npos) where = where.substr(at);
  const std::string what =
      fmt::format("{}:{}: assertion failed: {}{}", where, line, condition, detail.empty() ? "" : " (" + detail + ")");
  if (g_handler) g_handler(what);  // throws
  std::fprintf(stderr, "%s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace chorus
