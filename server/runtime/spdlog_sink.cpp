#include "server/runtime/spdlog_sink.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

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

LogLevel LogOutputs::min_level() const {
  if (console && file) return std::min(console_level, file_level);
  if (file) return file_level;
  return console ? console_level : LogLevel::error;
}

std::string log_file_path(const std::string& file_location) {
  const std::string dir = file_location.empty() ? "logs" : file_location;
  if (dir.size() > 4 && dir.compare(dir.size() - 4, 4, ".log") == 0) return dir;
  return (std::filesystem::path(dir) / "chorus.log").string();
}

namespace {
std::shared_ptr<spdlog::logger> plain_logger(spdlog::sink_ptr sink) {
  // A logger of our own (not registered globally), printing exactly the line we format.
  auto logger = std::make_shared<spdlog::logger>("chorus", std::move(sink));
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::trace);
  return logger;
}

std::string json_line(const LogRecord& r, const std::string& plain) {
  // The ISO timestamp is the first field of the plain line.
  const std::string timestamp = plain.substr(0, plain.find(' '));
  std::string level(to_string(r.level));
  for (auto& c : level) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return fmt::format(R"({{"timestamp":"{}","level":"{}","msg":"{}","node":"{}","mono_us":{}}})", timestamp, level,
                     json_escape(r.message), json_escape(r.node), r.mono.us);
}
}  // namespace

SpdlogSink::SpdlogSink(bool json) {
  outputs_.console_json = json;
  outputs_.console_level = LogLevel::debug;  // the Logger filters
  console_ = plain_logger(std::make_shared<spdlog::sinks::stdout_sink_mt>());
}

SpdlogSink::SpdlogSink(const LogOutputs& outputs) : outputs_(outputs) {
  console_ = plain_logger(std::make_shared<spdlog::sinks::stdout_sink_mt>());
  if (!outputs_.file) return;
  try {
    const auto parent = std::filesystem::path(outputs_.file_path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    file_ = plain_logger(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
        outputs_.file_path, outputs_.file_max_bytes, outputs_.file_backups));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot write the log file " + outputs_.file_path +
                             " (LogSettings.FileLocation): " + e.what());
  }
}

SpdlogSink::~SpdlogSink() {
  console_->flush();
  if (file_) file_->flush();
}

void SpdlogSink::configure(const LogOutputs& next) {
  const bool file = outputs_.file;
  const std::string path = outputs_.file_path;
  outputs_ = next;
  outputs_.file = file && next.file;  // off now, or on and unchanged: the file opened at start
  outputs_.file_path = path;
}

void SpdlogSink::write(const LogRecord& r) {
  const std::string line = format_log_line(r);
  if (outputs_.console && r.level >= outputs_.console_level)
    console_->info("{}", outputs_.console_json ? json_line(r, line) : line);
  if (file_ && outputs_.file && r.level >= outputs_.file_level)
    file_->info("{}", outputs_.file_json ? json_line(r, line) : line);
}

}  // namespace chorus::runtime
