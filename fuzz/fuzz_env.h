// A small deterministic Env for the protocol targets (fuzz/): virtual time that moves only when the
// target says so, timers in a queue, one seeded xoshiro, a transport that records what is sent, a database
// that is never reachable and files in memory. Built afresh for every input, so no state outlives one run
// of a target: a crash replays from its input alone.
//
// The simulator's Kernel would do too, but it routes frames between simulated nodes; a target wants to
// hand a node frames "from" any address and look at what the node answers, and a fresh Env per input is
// much cheaper than a fresh Kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/core/database.h"
#include "server/core/env.h"
#include "server/core/log.h"
#include "server/core/random.h"
#include "server/core/transport.h"

namespace chorus::fuzz {

// Log lines are formatted (that is code under test too) and dropped; `count_containing` counts the lines
// that contain a text (a decoder's "malformed" warning, for the round-trip checks).
class CountingSink final : public LogSink {
 public:
  explicit CountingSink(std::string needle = {}) : needle_(std::move(needle)) {}
  void write(const LogRecord& record) override {
    ++lines;
    if (!needle_.empty() && record.message.find(needle_) != std::string_view::npos) ++matching;
  }
  uint64_t lines = 0, matching = 0;

 private:
  std::string needle_;
};

// Every connection attempt fails (the database is away): code above the seam must cope.
class UnreachableDatabase final : public db::Connector {
 public:
  explicit UnreachableDatabase(Env& env) : env_(env) {}
  void connect(const std::string&, const std::string& data_source, const std::string&, Duration,
               std::function<void(db::ConnectOutcome)> done) override {
    env_.post([done = std::move(done), data_source] {
      db::ConnectOutcome out;
      out.error = db::Error{db::Status::unavailable, "fuzz: no database server at " + data_source};
      done(std::move(out));
    });
  }

 private:
  Env& env_;
};

class MemoryFiles final : public FileStore {
 public:
  explicit MemoryFiles(Env& env) : env_(env) {}
  void write(const std::string& path, std::string data, std::function<void(std::string)> done) override {
    files_[path] = std::move(data);
    env_.post([done = std::move(done)] { done(""); });
  }
  void read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) override {
    std::optional<std::string> data;
    if (auto it = files_.find(path); it != files_.end()) data = it->second;
    env_.post([done = std::move(done), data] { done(data, data ? "" : "no file"); });
  }
  void remove(const std::string& path, std::function<void(std::string)> done) override {
    files_.erase(path);
    env_.post([done = std::move(done)] { done(""); });
  }

 private:
  Env& env_;
  std::map<std::string, std::string> files_;
};

class FuzzEnv final : public Env, public Transport {
 public:
  struct Sent {
    std::string to;
    Bytes payload;
  };

  explicit FuzzEnv(std::string name, uint64_t seed = 1, LogSink* sink = nullptr, LogLevel level = LogLevel::debug)
      : name_(std::move(name)), random_(seed), logger_(name_, *this, sink ? *sink : null_sink_, level),
        database_(*this), files_(*this) {}

  // Clock: the wall clock is a fixed day in 2025 plus the monotonic time.
  MonoTime now() const override { return MonoTime{now_us_}; }
  WallTime wall_now() const override { return WallTime{kWallBase + now_us_}; }

  TimerId set_timer(Duration delay, Task fn) override {
    const int64_t d = std::max<int64_t>(0, delay.count());
    const int64_t due = d > kFar - now_us_ ? kFar : now_us_ + d;  // no overflow on absurd delays
    const TimerId id = next_timer_++;
    timers_.emplace(std::make_pair(due, id), std::move(fn));
    due_of_.emplace(id, due);
    return id;
  }
  bool cancel_timer(TimerId id) override {
    auto it = due_of_.find(id);
    if (it == due_of_.end()) return false;
    timers_.erase({it->second, id});
    due_of_.erase(it);
    return true;
  }
  void post(Task fn) override { set_timer(Duration{0}, std::move(fn)); }
  void run_blocking(Task work, Task done) override {
    work();
    post(std::move(done));
  }
  Random& random() override { return random_; }
  Logger& log() override { return logger_; }
  Transport& transport() override { return *this; }
  db::Connector& database() override { return database_; }
  FileStore& files() override { return files_; }
  const std::string& node_name() const override { return name_; }

  // Runs what is due up to now + d, in order (at most max_events callbacks: a target stays fast), then
  // sets the clock to now + d. Returns the number of callbacks run.
  size_t run_for(Duration d, size_t max_events = 10'000) {
    const int64_t until = std::min(kFar - 1, now_us_ + std::max<int64_t>(0, d.count()));
    size_t n = 0;
    while (n < max_events && !timers_.empty() && timers_.begin()->first.first <= until) {
      auto node = timers_.extract(timers_.begin());
      due_of_.erase(node.key().second);
      now_us_ = std::max(now_us_, node.key().first);
      node.mapped()();
      ++n;
    }
    if (n < max_events) now_us_ = std::max(now_us_, until);
    return n;
  }
  size_t run_ready(size_t max_events = 10'000) { return run_for(Duration{0}, max_events); }
  size_t pending_timers() const { return timers_.size(); }

  // Transport: a peer given to add_peer is "connected"; sends to it are kept (up to keep_max) and counted.
  void start(TransportHandler& handler) override { handler_ = &handler; }
  void stop() override { handler_ = nullptr; }
  void add_peer(const std::string& address) override { peers_.insert(address); }
  void remove_peer(const std::string& address) override { peers_.erase(address); }
  SendStatus send(const std::string& peer, std::span<const uint8_t> payload) override {
    if (payload.size() > kDefaultFrameSizeMax) {
      ++stats_.frames_dropped;
      return SendStatus::too_large;
    }
    if (!peers_.contains(peer)) {
      ++stats_.frames_dropped;
      return SendStatus::not_connected;
    }
    ++stats_.frames_sent;
    if (on_send) on_send(peer, payload);
    if (sent.size() < keep_max) sent.push_back(Sent{peer, Bytes(payload.begin(), payload.end())});
    return SendStatus::queued;
  }
  bool connected(const std::string& peer) const override { return peers_.contains(peer); }
  TransportStats stats() const override { return stats_; }

  TransportHandler* handler() const { return handler_; }
  const std::set<std::string>& peers() const { return peers_; }

  std::vector<Sent> sent;
  size_t keep_max = 256;
  std::function<void(const std::string& to, std::span<const uint8_t> payload)> on_send;

 private:
  static constexpr int64_t kWallBase = 1'750'000'000'000'000;  // 2025-06-15, in microseconds
  static constexpr int64_t kFar = std::numeric_limits<int64_t>::max() / 4;

  std::string name_;
  Xoshiro256 random_;
  NullLogSink null_sink_;
  Logger logger_;
  UnreachableDatabase database_;
  MemoryFiles files_;
  int64_t now_us_ = 1'000'000;
  TimerId next_timer_ = 1;
  std::map<std::pair<int64_t, TimerId>, Task> timers_;
  std::map<TimerId, int64_t> due_of_;
  TransportHandler* handler_ = nullptr;
  std::set<std::string> peers_;
  TransportStats stats_;
};

}  // namespace chorus::fuzz
