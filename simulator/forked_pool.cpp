#include "simulator/forked_pool.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace chorus::sim {

namespace {

bool write_all(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// A worker's stream: records of (u64 index, u64 length, bytes), parsed as they arrive.
struct Worker {
  pid_t pid = -1;
  int fd = -1;
  std::string buffer;
  size_t next_item = 0;  // the next index this worker owes (items come in order)
};

}  // namespace

void run_forked(size_t count, int jobs, const std::function<std::string(size_t)>& work,
                const std::function<void(size_t, const std::optional<std::string>&)>& done, int item_seconds_max) {
  if (jobs <= 1 || count <= 1) {
    for (size_t i = 0; i < count; ++i) done(i, work(i));
    return;
  }
  const size_t stride = std::min(count, static_cast<size_t>(jobs));
  std::vector<Worker> workers(stride);
  // A worker for items first, first + stride, ...; false when it cannot be started.
  auto spawn = [&](Worker& wk, size_t first) {
    std::fflush(nullptr);  // nothing buffered is written twice by the child
    int fds[2];
    if (::pipe(fds) != 0) return false;
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      for (const auto& other : workers)  // the other workers' pipes are the parent's business
        if (other.fd >= 0) ::close(other.fd);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a worker never outlives its parent
      for (size_t i = first; i < count; i += stride) {
        ::alarm(static_cast<unsigned>(item_seconds_max));  // a run that hangs dies; its item is reported
        const std::string result = work(i);
        ::alarm(0);
        const uint64_t header[2] = {i, result.size()};
        if (!write_all(fds[1], header, sizeof header) || !write_all(fds[1], result.data(), result.size())) ::_exit(3);
      }
      std::fflush(nullptr);
      ::_exit(0);
    }
    ::close(fds[1]);
    if (pid < 0) {
      ::close(fds[0]);
      return false;
    }
    wk = Worker{pid, fds[0], {}, first};
    return true;
  };
  for (size_t w = 0; w < stride; ++w)
    if (!spawn(workers[w], w)) {
      std::perror("chorus-sim: cannot start a worker");
      for (size_t i = w; i < count; i += stride) done(i, work(i));  // its share runs here
    }
  char chunk[1 << 16];
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> which;
    for (size_t w = 0; w < workers.size(); ++w)
      if (workers[w].fd >= 0) {
        fds.push_back({workers[w].fd, POLLIN, 0});
        which.push_back(w);
      }
    if (fds.empty()) break;
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("chorus-sim: poll");
      break;
    }
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      Worker& wk = workers[which[k]];
      const ssize_t got = ::read(wk.fd, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got > 0) {
        wk.buffer.append(chunk, static_cast<size_t>(got));
        while (wk.buffer.size() >= 16) {
          uint64_t header[2];
          std::memcpy(header, wk.buffer.data(), sizeof header);
          if (wk.buffer.size() < 16 + header[1]) break;
          done(header[0], wk.buffer.substr(16, header[1]));
          wk.buffer.erase(0, 16 + header[1]);
          wk.next_item = header[0] + stride;
        }
        continue;
      }
      // End of the stream: the worker finished, or died in the item it owed next (an abort in a run).
      // That item is reported missing and a new worker takes the rest of its share.
      ::close(wk.fd);
      wk.fd = -1;
      ::waitpid(wk.pid, nullptr, 0);
      if (wk.next_item >= count) continue;
      done(wk.next_item, std::nullopt);
      const size_t rest = wk.next_item + stride;
      if (rest < count && !spawn(wk, rest)) {
        std::perror("chorus-sim: cannot restart a worker");
        for (size_t i = rest; i < count; i += stride) done(i, std::nullopt);
      }
    }
  }
  // Only after a poll failure: stop the rest rather than leave them running.
  for (auto& wk : workers)
    if (wk.fd >= 0) {
      ::kill(wk.pid, SIGKILL);
      ::close(wk.fd);
      ::waitpid(wk.pid, nullptr, 0);
    }
}

}  // namespace chorus::sim
