// The production FileStore: files under a root directory (FileSettings.Directory, which may be a NAS
// mount shared by the nodes). Writes go to a temporary file that is renamed over the target, off the
// node's loop; completions come back on the loop. Only server/runtime includes this header.
#pragma once

#include <string>

#include "server/core/env.h"

namespace chorus::runtime {

class LocalFiles final : public FileStore {
 public:
  explicit LocalFiles(Env& env) : env_(env) {}
  // The directory the relative paths are under (created on first write).
  void set_root(std::string root) { root_ = std::move(root); }
  void write(const std::string& path, std::string data, std::function<void(std::string)> done) override;
  void read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) override;
  void remove(const std::string& path, std::function<void(std::string)> done) override;

 private:
  Env& env_;
  std::string root_ = "./data/";
};

// False for paths that could leave the root: absolute, empty, or with a ".." part.
bool safe_relative_path(const std::string& path);

}  // namespace chorus::runtime
