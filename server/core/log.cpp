#include "server/core/log.h"

#include <algorithm>
#include <cctype>
#include <ctime>

#include "server/core/env.h"

namespace chorus {

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO";
    case LogLevel::warn:
      return "WARN";
    case LogLevel::error:
      return "ERROR";
  }
  return "?";
}

bool parse_log_level(std::string_view text, LogLevel& out) {
  std::string upper(text);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper == "DEBUG")
    out = LogLevel::debug;
  else if (upper == "INFO")
    out = LogLevel::info;
  else if (upper == "WARN" || upper == "WARNING")
    out = LogLevel::warn;
  else if (upper == "ERROR")
    out = LogLevel::error;
  else
    return false;
  return true;
}

void Logger::write(LogLevel level, std::string_view message) {
  LogRecord record{level, node_, clock_.now(), clock_.wall_now(), message};
  sink_->write(record);
}

std::string format_log_line(const LogRecord& r) {
  // Calendar conversion of a given instant (no clock is read here).
  const int64_t secs = r.wall.us >= 0 ? r.wall.us / 1'000'000 : (r.wall.us - 999'999) / 1'000'000;
  const int64_t micros = r.wall.us - secs * 1'000'000;
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {:>10.3f} {:<5} [{}] {}", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros / 1000,
                     static_cast<double>(r.mono.us) / 1e6, to_string(r.level), r.node, r.message);
}

}  // namespace chorus
