// A temporary directory for tests and the load tool: a fresh one (mkdtemp) under the system's temporary
// directory, removed with everything in it at the end.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace chorus::testing {

class TempDir {
 public:
  // The directory is <tmp>/<prefix>XXXXXX. Throws std::runtime_error when it cannot be made.
  explicit TempDir(const std::string& prefix = "chorus-") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (!::mkdtemp(pattern.data()))
      throw std::runtime_error("cannot create a temporary directory: " + std::string(std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace chorus::testing
