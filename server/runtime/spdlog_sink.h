// The production log sink: spdlog to the console, as plain lines or JSON lines (LogSettings.ConsoleJson,
// in the shape of Mattermost's: timestamp, level, msg, plus node and mono). Only server/runtime.
#pragma once

#include <memory>

#include "server/core/log.h"

namespace spdlog {
class logger;
}

namespace chorus::runtime {

class SpdlogSink final : public LogSink {
 public:
  explicit SpdlogSink(bool json);
  ~SpdlogSink() override;
  void write(const LogRecord& record) override;

 private:
  bool json_;
  std::shared_ptr<spdlog::logger> logger_;
};

// Escapes a string for a JSON string literal (without the quotes).
std::string json_escape(std::string_view s);

}  // namespace chorus::runtime
