// Loopback ports for tests and the load tool (bench/chorus_load.cpp): TCP ports on 127.0.0.1 that nothing
// listens on right now (the OS picks them), for processes that must be told their ports before they start;
// and a plain client connection to one.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace chorus::testing {

// n distinct ports: every one is held bound until all are found, so the OS cannot hand out one twice.
// Throws std::runtime_error when the OS gives none.
inline std::vector<uint16_t> free_ports(size_t n) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  auto close_all = [&fds] {
    for (int fd : fds) ::close(fd);
  };
  for (size_t i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const std::string why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      close_all();
      throw std::runtime_error("cannot find a free port on 127.0.0.1: " + why);
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  close_all();
  return ports;
}

inline uint16_t free_port() { return free_ports(1).front(); }

// A connected socket to 127.0.0.1:port, or -1 (refused). The caller closes it.
inline int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Something listens on 127.0.0.1:port (a process the test started is ready).
inline bool accepts(uint16_t port) {
  const int fd = connect_loopback(port);
  if (fd >= 0) ::close(fd);
  return fd >= 0;
}

}  // namespace chorus::testing
