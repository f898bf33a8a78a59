// A log sink for tests: keeps every message, and answers whether one contains a text.
#pragma once

#include <string>
#include <vector>

#include "server/core/log.h"

namespace chorus::testing {

struct CaptureSink : LogSink {
  std::vector<std::string> lines;
  void write(const LogRecord& r) override { lines.emplace_back(r.message); }
  bool contains(const std::string& s) const {
    for (const auto& l : lines)
      if (l.find(s) != std::string::npos) return true;
    return false;
  }
};

}  // namespace chorus::testing
