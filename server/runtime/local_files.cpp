#include "server/runtime/local_files.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace chorus::runtime {

namespace fs = std::filesystem;

bool safe_relative_path(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (const auto& part : fs::path(path))
    if (part == "..") return false;
  return true;
}

void LocalFiles::write(const std::string& path, std::string data, std::function<void(std::string)> done) {
  if (!safe_relative_path(path))
    return done("refused file path \"" + path + "\": it must stay under FileSettings.Directory");
  auto error = std::make_shared<std::string>();
  const fs::path target = fs::path(root_) / path;
  env_.run_blocking(
      [target, data = std::move(data), error] {
        std::error_code ec;
        fs::create_directories(target.parent_path(), ec);
        const fs::path tmp = target.string() + ".tmp";
        {
          std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
          out.write(data.data(), static_cast<std::streamsize>(data.size()));
          if (!out.flush()) {
            *error = "cannot write " + tmp.string();
            return;
          }
        }
        fs::rename(tmp, target, ec);
        if (ec) *error = "cannot replace " + target.string() + ": " + ec.message();
      },
      [error, done = std::move(done)] { done(*error); });
}

void LocalFiles::read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) {
  if (!safe_relative_path(path)) return done(std::nullopt, "refused file path \"" + path + "\"");
  auto out = std::make_shared<std::optional<std::string>>();
  const fs::path target = fs::path(root_) / path;
  env_.run_blocking(
      [target, out] {
        std::ifstream in(target, std::ios::binary);
        if (!in) return;
        std::stringstream ss;
        ss << in.rdbuf();
        *out = ss.str();
      },
      [out, target, done = std::move(done)] { done(*out, out->has_value() ? "" : "cannot read " + target.string()); });
}

void LocalFiles::remove(const std::string& path, std::function<void(std::string)> done) {
  if (!safe_relative_path(path)) return done("refused file path \"" + path + "\"");
  auto error = std::make_shared<std::string>();
  const fs::path target = fs::path(root_) / path;
  env_.run_blocking(
      [target, error] {
        std::error_code ec;
        fs::remove(target, ec);
        if (ec) *error = "cannot remove " + target.string() + ": " + ec.message();
      },
      [error, done = std::move(done)] { done(*error); });
}

}  // namespace chorus::runtime
