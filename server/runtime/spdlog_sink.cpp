#include "server/runtime/spdlog_sink.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace chorus::runtime {

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  return out;
}

SpdlogSink::SpdlogSink(bool json) : json_(json) {
  // A logger of our own (not registered globally), printing exactly the line we format.
  logger_ = std::make_shared<spdlog::logger>("chorus", std::make_shared<spdlog::sinks::stdout_sink_mt>());
  logger_->set_pattern("%v");
  logger_->set_level(spdlog::level::trace);
  logger_->flush_on(spdlog::level::trace);
}

SpdlogSink::~SpdlogSink() { logger_->flush(); }

void SpdlogSink::write(const LogRecord& r) {
  const std::string line = format_log_line(r);
  if (!json_) {
    logger_->info("{}", line);
    return;
  }
  // The ISO timestamp is the first field of the plain line.
  const std::string timestamp = line.substr(0, line.find(' '));
  std::string level(to_string(r.level));
  for (auto& c : level) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  logger_->info(R"({{"timestamp":"{}","level":"{}","msg":"{}","node":"{}","mono_us":{}}})", timestamp, level,
                json_escape(r.message), json_escape(r.node), r.mono.us);
}

}  // namespace chorus::runtime
