// A child process for real-process tests (chorusd, nginx, node): spawned with extra environment, its
// stdout and stderr read line by line without blocking, killed (SIGKILL) if still running at the end.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

extern char** environ;

namespace chorus::testing {

using Clock = std::chrono::steady_clock;

// A child process whose stdout and stderr we read line by line.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::vector<std::string>& extra_env) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind("MM_", 0) != 0) env_strings.emplace_back(*e);
    for (const auto& e : extra_env) env_strings.push_back(e);
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    fd_ = fds[0];
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  // Reads whatever output is available now.
  void pump() {
    char buf[4096];
    while (true) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      partial_.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = partial_.find('\n')) != std::string::npos) {
        lines_.push_back(partial_.substr(0, nl));
        partial_.erase(0, nl + 1);
      }
    }
  }
  // Index of the first line at or after `from` containing s, or -1.
  int find(const std::string& s, size_t from = 0) {
    pump();
    for (size_t i = from; i < lines_.size(); ++i)
      if (lines_[i].find(s) != std::string::npos) return static_cast<int>(i);
    return -1;
  }
  size_t line_count() {
    pump();
    return lines_.size();
  }
  void signal(int sig) { ::kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  bool running() {
    if (exited_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      return false;
    }
    return true;
  }
  // Waits for exit at most `ms`; returns the exit status (or -1 on timeout).
  int wait_exit(int ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        pump();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      ::usleep(5000);
    }
    return -1;
  }
  std::string output() {
    pump();
    std::string s;
    for (const auto& l : lines_) s += l + "\n";
    return s + partial_;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::vector<std::string> lines_;
  std::string partial_;
};

// Polls until pred holds or ms pass. Returns the time it took, or -1 on timeout.
inline int64_t wait_ms(const std::function<bool()>& pred, int ms) {
  const auto start = Clock::now();
  while (true) {
    if (pred()) return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    if (Clock::now() - start > std::chrono::milliseconds(ms)) return -1;
    ::usleep(2000);
  }
}

}  // namespace chorus::testing
