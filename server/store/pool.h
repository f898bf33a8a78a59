// A pool of connections to one database server, on the node's loop.
//
// It honours SqlSettings: MaxOpenConns (open connections, busy or idle), MaxIdleConns (idle ones kept),
// ConnMaxLifetimeMilliseconds (a connection is replaced once this old) and ConnMaxIdleTimeMilliseconds
// (an idle connection is closed once idle this long). A request that finds every connection busy waits
// in a bounded FIFO for at most acquire_timeout. recycle() replaces every connection: idle ones at once,
// busy ones as soon as their request finishes, so nothing in flight fails. A connection that reports
// itself unusable (lost, server gone) is dropped, never reused. Used by the router (router.h).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/core/env.h"

namespace chorus::store {

struct PoolOptions {
  std::string driver;       // SqlSettings.DriverName
  std::string data_source;  // the server's DataSource string
  std::string application_name;
  int64_t max_open = 300;
  int64_t max_idle = 20;
  Duration max_lifetime{3'600'000'000};
  Duration max_idle_time{300'000'000};
  Duration connect_timeout{10'000'000};
  Duration acquire_timeout{10'000'000};
  size_t waiters_max = 10'000;
};

struct PoolStats {
  int64_t open = 0;  // connections open (idle + busy + being opened)
  int64_t idle = 0;
  int64_t busy = 0;
  int64_t waiting = 0;  // requests queued for a connection
  uint64_t opened = 0;  // connections opened in all
  uint64_t closed = 0;  // connections closed in all
  uint64_t connect_failures = 0;
  uint64_t requests = 0;
  uint64_t waited = 0;    // requests that had to queue
  uint64_t rejected = 0;  // requests refused (queue full or acquire timeout)
};

class Pool {
 public:
  Pool(Env& env, PoolOptions options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs the statements on a pooled connection; done is called once, on the loop.
  void run(std::vector<db::Statement> statements, bool transaction, Duration query_timeout, db::Done done);
  // Opens one connection and runs `SELECT 1` on it (start-up check, replica monitor).
  void probe(Duration timeout, db::Done done);
  // Replaces every connection (new settings apply to new connections). Idle ones close now.
  void recycle();
  // New limits; lifetimes apply at the next sweep. The data source does not change (a new Pool does).
  void set_limits(const PoolOptions& options);
  void close();  // closes idle connections and refuses new requests; busy ones close when done

  const PoolOptions& options() const { return options_; }
  PoolStats stats() const;

 private:
  struct Idle {
    std::unique_ptr<db::Connection> conn;
    MonoTime opened_at;
    MonoTime idle_since;
    uint64_t generation;
  };
  struct Request {
    std::vector<db::Statement> statements;
    bool transaction;
    Duration query_timeout;
    db::Done done;
    MonoTime queued_at;
  };
  void dispatch(Request request);
  void open_for(Request request);
  void open_for_waiters();  // while there is room, waiting requests get new connections
  void execute(std::unique_ptr<db::Connection> conn, MonoTime opened_at, uint64_t generation, Request request);
  void release(std::unique_ptr<db::Connection> conn, MonoTime opened_at, uint64_t generation);
  void drop(std::unique_ptr<db::Connection> conn);
  void sweep();
  void schedule_sweep();
  void expire_waiters();

  Env& env_;
  PoolOptions options_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<Idle> idle_;  // most recently used at the back
  std::deque<Request> waiters_;
  int64_t open_ = 0;  // includes connections being opened
  int64_t busy_ = 0;
  uint64_t generation_ = 0;  // bumped by recycle(): older connections are not reused
  bool closed_ = false;
  TimerId sweep_timer_ = 0;
  PoolStats counters_;
};

}  // namespace chorus::store
