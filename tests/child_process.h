// A child process for real-process tests and the load tool (chorusd, nginx, node): spawned with extra
// environment (the parent's MM_ variables left out), its stdout and stderr read line by line without blocking
// (from a pipe, or from the log file it writes), killed (SIGKILL) if still running at the end. No test framework:
// a failure to start throws std::runtime_error with the reason.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace chorus::testing {

using Clock = std::chrono::steady_clock;

struct ChildOptions {
  // stdout and stderr go to this file (created or truncated) instead of a pipe; pump() and the rest read it back.
  std::string output_file;
  bool null_stdin = false;       // stdin from /dev/null instead of the parent's
  bool die_with_parent = false;  // PR_SET_PDEATHSIG: SIGKILL when the spawning thread (the parent) dies
};

// A waitpid status in words: "exit code 3", "killed by signal 9 (Killed)".
inline std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

// A child process whose stdout and stderr we read line by line.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::vector<std::string>& extra_env,
        const ChildOptions& options = {}) {
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e)
      if (std::string(*e).rfind("MM_", 0) != 0) env_strings.emplace_back(*e);
    for (const auto& e : extra_env) env_strings.push_back(e);
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    int out_fd = -1, in_fd = -1, err[2] = {-1, -1};  // the child's stdout and stderr, its stdin, exec's errno
    auto close_fds = [&] {
      for (int fd : {out_fd, in_fd, err[0], err[1]})
        if (fd >= 0) ::close(fd);
    };
    auto fail = [&](const char* what, const std::string& subject) {  // errno is read before anything else runs
      const std::string why = what + subject + ": " + std::strerror(errno);
      close_fds();
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      throw std::runtime_error(why);
    };
    if (options.output_file.empty()) {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe", "");
      fd_ = fds[0];
      out_fd = fds[1];
      ::fcntl(fd_, F_SETFL, O_NONBLOCK);
    } else {
      out_fd = ::open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out_fd < 0) fail("cannot open ", options.output_file);
      fd_ = ::open(options.output_file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) fail("cannot open ", options.output_file);
    }
    if (options.null_stdin && (in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
      fail("cannot open ", "/dev/null");
    if (::pipe2(err, O_CLOEXEC) != 0) fail("pipe", "");

    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // The child: only async-signal-safe calls until exec. If exec fails, its errno goes up the pipe.
      if (options.die_with_parent) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
      }
      if (in_fd >= 0) redirect(in_fd, 0);
      redirect(out_fd, 1);
      redirect(out_fd, 2);
      ::execve(argv[0], argv.data(), envp.data());
      const int e = errno;
      [[maybe_unused]] const auto n = ::write(err[1], &e, sizeof e);
      ::_exit(127);
    }
    if (pid_ < 0) fail("fork", "");
    ::close(err[1]);
    err[1] = -1;
    int exec_errno = 0;
    ssize_t n;
    while ((n = ::read(err[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
    }
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {  // exec failed: the pipe was not closed by it
      ::waitpid(pid_, &status_, 0);
      exited_ = true;
      errno = exec_errno;
      fail("cannot run ", args[0]);
    }
    close_fds();
  }
  ~Child() {
    kill_now();
    if (fd_ >= 0) ::close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads whatever output is available now.
  void pump() {
    char buf[4096];
    while (fd_ >= 0) {
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
  // Every line so far, the last one even without its newline.
  std::vector<std::string> lines() {
    pump();
    std::vector<std::string> all = lines_;
    if (!partial_.empty()) all.push_back(partial_);
    return all;
  }
  void signal(int sig) {
    if (!exited_) ::kill(pid_, sig);
  }
  pid_t pid() const { return pid_; }
  bool running() {
    if (exited_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      status_ = status;
    }
    return !exited_;
  }
  // Once it has exited (running() or wait_exit() saw it): waitpid's status, for describe_exit().
  bool exited() const { return exited_; }
  int status() const { return status_; }
  // Waits for exit at most `ms`; returns the exit code, 128 + the signal that killed it, or -1 on timeout.
  int wait_exit(int ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (running()) {
      if (Clock::now() >= deadline) return -1;
      ::usleep(5000);
    }
    pump();
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  // SIGKILL and reap, if still running.
  void kill_now() {
    if (pid_ <= 0 || !running()) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    exited_ = true;
  }
  std::string output() {
    pump();
    std::string s;
    for (const auto& l : lines_) s += l + "\n";
    return s + partial_;
  }

 private:
  static void redirect(int from, int to) {  // async-signal-safe; a descriptor already in place loses FD_CLOEXEC
    if (from == to)
      ::fcntl(to, F_SETFD, 0);
    else
      ::dup2(from, to);
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::vector<std::string> lines_;
  std::string partial_;
};

// SIGTERM to every child still running, then SIGKILL to each one not gone when `grace` has passed (one
// deadline for all). Returns, per child, whether it needed the SIGKILL.
inline std::vector<bool> stop_children(const std::vector<Child*>& children, std::chrono::milliseconds grace) {
  for (auto* c : children) c->signal(SIGTERM);
  const auto deadline = Clock::now() + grace;
  std::vector<bool> killed(children.size(), false);
  for (size_t i = 0; i < children.size(); ++i) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (children[i]->wait_exit(static_cast<int>(std::max<int64_t>(0, left))) >= 0) continue;
    children[i]->kill_now();
    killed[i] = true;
  }
  return killed;
}

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
