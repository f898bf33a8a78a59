// The seam: everything a node does to the world goes through an Env.
//
// One Env per node (per process in production). It gives the node its clocks, timers, randomness,
// logger and node-to-node transport. Two implementations exist: server/runtime (Asio, real sockets,
// the OS clocks) and simulator/ (virtual time, simulated links, one seeded PRNG). Code above the seam
// takes all of these from its Env and never from the OS; tests/seam_check enforces it.
//
// Concurrency: every callback an Env makes for a node (timers, posted work, transport events) runs on
// that node's one event loop, one at a time. Node code therefore needs no locks. See docs/concurrency.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "server/core/database.h"
#include "server/core/log.h"
#include "server/core/random.h"
#include "server/core/time.h"

namespace chorus {

class Transport;

// Shared file storage (FileSettings.DriverName "local": FileSettings.Directory, a directory or a NAS mount;
// "amazons3": an S3 bucket; memory in the simulator, shared by every node and surviving their crashes). Paths are relative, "/"-separated, without "..". Calls
// come back on the node's loop.
class FileStore {
 public:
  virtual ~FileStore() = default;
  // Replaces the file whole (a reader sees the old or the new contents, never a mix). done("") or the error.
  virtual void write(const std::string& path, std::string data, std::function<void(std::string error)> done) = 0;
  // The file's contents, or nullopt and the error.
  virtual void read(const std::string& path,
                    std::function<void(std::optional<std::string> data, std::string error)> done) = 0;
  // Removes the file (a file that is not there is no error). done("") or the error.
  virtual void remove(const std::string& path, std::function<void(std::string error)> done) = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;       // monotonic
  virtual WallTime wall_now() const = 0;  // calendar
};

using TimerId = uint64_t;  // 0 is never a valid timer
using Task = std::function<void()>;

class Env : public Clock {
 public:
  ~Env() override = default;

  // Runs fn on this node's loop once delay has passed on this node's monotonic clock. A paused node's
  // timers fire late, when it resumes.
  virtual TimerId set_timer(Duration delay, Task fn) = 0;
  // Cancels a timer that has not fired. False if it already fired, was cancelled or never existed.
  virtual bool cancel_timer(TimerId id) = 0;
  // Runs fn on this node's loop after the current callback returns (FIFO among posts).
  virtual void post(Task fn) = 0;

  // Runs CPU-heavy work (password hashing) away from the node's loop, then `done` on the loop. `work`
  // must not touch node state: it reads what it captured and writes only into what it owns. The
  // simulator runs it inline, in seed order.
  virtual void run_blocking(Task work, Task done) = 0;

  virtual Random& random() = 0;
  virtual Logger& log() = 0;
  virtual Transport& transport() = 0;
  // Database servers (SQLite files, PostgreSQL; simulated servers in the simulator).
  virtual db::Connector& database() = 0;
  virtual FileStore& files() = 0;

  // The node's name in logs and traces (its advertised gossip address in production).
  virtual const std::string& node_name() const = 0;
};

// The lifecycle a node sees. A node is built on an Env, started once, and either stopped (SIGTERM in
// production, a clean stop in the simulator) or destroyed without warning (a crash: nothing is saved,
// no stop is called). stop() may finish asynchronously and calls done exactly once when drained.
class Process {
 public:
  virtual ~Process() = default;
  virtual void start() = 0;
  virtual void stop(Task done) = 0;
};

}  // namespace chorus
