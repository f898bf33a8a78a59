// Runs an io_context until a condition holds or a wall-clock limit passes: the one bounded wait that
// the real-socket and real-database tests use. Tests only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>

namespace chorus::testing {

// True if pred held within `limit`.
inline bool run_io_until(boost::asio::io_context& io, const std::function<bool()>& pred,
                         std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    io.run_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace chorus::testing
