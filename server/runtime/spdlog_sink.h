// The production log sink (LogSettings): spdlog to the console and to a file, each with its own level
// and form - plain lines, or JSON lines in the shape of Mattermost's (timestamp, level, msg, plus node and
// mono_us) - and the file rotated by size (FileMaxSizeMB, FileMaxBackups kept). Every line names the node.
// Levels and forms change on a config reload (configure); where the file is takes a restart. Only
// server/runtime.
#pragma once

#include <memory>
#include <string>

#include "server/core/log.h"

namespace spdlog {
class logger;
}

namespace chorus::runtime {

struct LogOutputs {
  bool console = true;
  LogLevel console_level = LogLevel::info;
  bool console_json = false;
  bool file = false;
  LogLevel file_level = LogLevel::info;
  bool file_json = true;
  std::string file_path;  // the file itself (log_file_path)
  size_t file_max_bytes = 100u << 20;
  size_t file_backups = 10;
  LogLevel min_level() const;  // what the Logger must let through
};

// LogSettings.FileLocation as Mattermost reads it: a directory ("" is ./logs) holding chorus.log, or a
// path ending in ".log" naming the file itself.
std::string log_file_path(const std::string& file_location);

class SpdlogSink final : public LogSink {
 public:
  explicit SpdlogSink(bool json);  // the console alone
  // Opens (and creates the directories of) the file when outputs.file; throws std::runtime_error naming
  // the path when it cannot.
  explicit SpdlogSink(const LogOutputs& outputs);
  ~SpdlogSink() override;
  void write(const LogRecord& record) override;
  // New levels and forms; turning the file on or moving it needs a restart (it stays as it was).
  void configure(const LogOutputs& outputs);
  const LogOutputs& outputs() const { return outputs_; }

 private:
  LogOutputs outputs_;
  std::shared_ptr<spdlog::logger> console_;
  std::shared_ptr<spdlog::logger> file_;
};

// Escapes a string for a JSON string literal (without the quotes).
std::string json_escape(std::string_view s);

}  // namespace chorus::runtime
