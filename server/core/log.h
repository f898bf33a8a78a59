// Logging stamped with the node's name and the seam's time.
//
// A Logger belongs to one node. It takes its timestamps from the node's Env (virtual time in the
// simulator), so log lines of a simulated run replay exactly. Where the lines go is a LogSink: spdlog in
// production (server/runtime), memory or stderr in the simulator. Any layer may log.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "server/core/time.h"

namespace chorus {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };
std::string_view to_string(LogLevel level);
// Parses Mattermost's level names (DEBUG, INFO, WARN, ERROR; any case). False when unknown.
bool parse_log_level(std::string_view text, LogLevel& out);

struct LogRecord {
  LogLevel level;
  std::string_view node;
  MonoTime mono;
  WallTime wall;
  std::string_view message;
};

class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void write(const LogRecord& record) = 0;
};

// A sink that discards everything (benchmarks, quiet simulations).
class NullLogSink final : public LogSink {
 public:
  void write(const LogRecord&) override {}
};

class Clock;

class Logger {
 public:
  Logger(std::string node, const Clock& clock, LogSink& sink, LogLevel min_level = LogLevel::info)
      : node_(std::move(node)), clock_(clock), sink_(&sink), min_level_(min_level) {}

  const std::string& node() const { return node_; }
  void set_level(LogLevel level) { min_level_ = level; }
  void set_sink(LogSink& sink) { sink_ = &sink; }
  bool enabled(LogLevel level) const { return level >= min_level_; }

  template <typename... Args>
  void debug(fmt::format_string<Args...> f, Args&&... args) {
    emit(LogLevel::debug, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... args) {
    emit(LogLevel::info, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> f, Args&&... args) {
    emit(LogLevel::warn, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> f, Args&&... args) {
    emit(LogLevel::error, f, std::forward<Args>(args)...);
  }

 private:
  template <typename... Args>
  void emit(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
    if (!enabled(level)) return;
    write(level, fmt::format(f, std::forward<Args>(args)...));
  }
  void write(LogLevel level, std::string_view message);

  std::string node_;
  const Clock& clock_;
  LogSink* sink_;
  LogLevel min_level_;
};

// Formats a record as one line: "<wall ISO-8601> <mono s> <LEVEL> [node] message".
std::string format_log_line(const LogRecord& record);

}  // namespace chorus
