// The simulated side of the seam for one node: its Env and its Transport, backed by the Kernel.
//
// A SimEnv lives as long as one incarnation of a node: a crash destroys it with the node's memory, a
// restart makes a new one. Only simulator/ uses this header.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "server/core/backoff.h"
#include "server/core/env.h"
#include "server/core/transport.h"
#include "simulator/kernel.h"

namespace chorus::sim {

// The shared file storage as one node reaches it: the kernel's map, answers posted to the node's loop.
class SimFiles final : public FileStore {
 public:
  SimFiles(Env& env, std::map<std::string, std::string>& files, Kernel::FileStoreFaults& faults)
      : env_(env), files_(files), faults_(faults) {}
  void write(const std::string& path, std::string data, std::function<void(std::string)> done) override {
    if (path.empty() || path.front() == '/' || path.find("..") != std::string::npos)
      return later([done, path] { done("refused file path \"" + path + "\""); });
    if (faults_.down) return later([done] { done("the file store is unavailable"); });
    // Written when the call completes (a node that dies before never wrote it).
    later([this, done, path, data = std::move(data)]() mutable {
      files_[path] = std::move(data);
      done("");
    });
  }
  void read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) override {
    if (faults_.down) return later([done] { done(std::nullopt, "the file store is unavailable"); });
    later([this, done, path] {
      auto it = files_.find(path);
      std::optional<std::string> data;
      if (it != files_.end()) data = it->second;
      done(data, data ? "" : "no file " + path);
    });
  }
  void remove(const std::string& path, std::function<void(std::string)> done) override {
    if (faults_.down) return later([done] { done("the file store is unavailable"); });
    later([this, done, path] {
      files_.erase(path);
      done("");
    });
  }

 private:
  void later(Task fn) {
    if (faults_.delay > Duration{0})
      env_.set_timer(faults_.delay, std::move(fn));
    else
      env_.post(std::move(fn));
  }
  Env& env_;
  std::map<std::string, std::string>& files_;
  Kernel::FileStoreFaults& faults_;
};

class SimEnv final : public Env, public Transport {
 public:
  SimEnv(Kernel& kernel, NodeIndex self, LogSink& sink, LogLevel level);
  ~SimEnv() override;

  // Env
  MonoTime now() const override;
  WallTime wall_now() const override;
  TimerId set_timer(Duration delay, Task fn) override;
  bool cancel_timer(TimerId id) override;
  void post(Task fn) override { set_timer(Duration{0}, std::move(fn)); }
  // Inline, in seed order; the completion comes as a post.
  void run_blocking(Task work, Task done) override {
    work();
    post(std::move(done));
  }
  Random& random() override;
  Logger& log() override { return logger_; }
  Transport& transport() override { return *this; }
  db::Connector& database() override { return *database_; }
  FileStore& files() override { return files_; }
  const std::string& node_name() const override { return name_; }

  // Transport
  void start(TransportHandler& handler) override;
  void stop() override;
  void add_peer(const std::string& address) override;
  void remove_peer(const std::string& address) override;
  SendStatus send(const std::string& peer, std::span<const uint8_t> payload) override;
  bool connected(const std::string& peer) const override;
  TransportStats stats() const override { return stats_; }

 private:
  friend class Kernel;
  // A timer due at an absolute virtual time (answers from simulated servers).
  TimerId set_timer_virtual(int64_t due_us, Task fn);
  TimerId add_timer(Task fn);

  enum class ConnState { connecting, up, waiting };
  enum class Outcome { up, refused, timeout };
  struct Conn {
    ConnState state = ConnState::connecting;
    NodeIndex target = kNoNode;
    uint32_t target_incarnation = 0;
    uint64_t token = 0;  // identifies the current attempt / connection
    bool reset_pending = false;
    TimerId retry_timer = 0;
    Backoff backoff;
  };
  struct Pending {
    std::string peer;
    Outcome outcome;
    NodeIndex target;
    uint32_t target_incarnation;
  };
  struct TimerSlot {
    Task fn;
    uint32_t generation = 1;
    bool live = false;
  };

  void begin_connect(const std::string& peer, Conn& conn);
  void connect_failed(const std::string& peer, Conn& conn);
  // Kernel callbacks, on this node's loop.
  void fire_timer(TimerId id);
  void on_connect_result(uint64_t token);
  void on_reset(uint64_t token);
  void on_deliver(NodeIndex from, std::span<const uint8_t> payload);
  // Called by the kernel when `dead` lost its incarnation: schedules resets of connections to it.
  void reset_connections_to(NodeIndex dead, uint32_t dead_incarnation);

  Kernel& kernel_;
  NodeIndex self_;
  std::string name_;
  Logger logger_;
  std::vector<TimerSlot> timers_;
  std::vector<uint32_t> free_timers_;
  TransportHandler* handler_ = nullptr;
  bool stopped_ = false;
  std::map<std::string, Conn> conns_;  // ordered: iteration order is part of determinism
  std::map<uint64_t, Pending> pending_;
  uint64_t next_token_ = 1;
  TransportStats stats_;
  std::unique_ptr<db::Connector> database_;
  SimFiles files_{*this, kernel_.files_of(self_), kernel_.file_store_faults()};
};

}  // namespace chorus::sim
