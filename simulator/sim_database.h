// Simulated database servers: each an SQLite database in memory, reached by the nodes' SimEnvs through
// the db::Connector seam, with the faults the HA guide's procedures need.
//
// A server is named by the host of a postgres data source ("db1" in postgres://chorus@db1:5432/chorus)
// or by the path of a sqlite3 one. A request travels to the server (link latency), runs there in
// virtual time (service time, times the slow factor), and its answer travels back to the node's loop.
// Faults: stop (connections fail, new ones are refused), start, cut a node off (its requests vanish,
// its connects time out), slow down, and promote a replica. A replica is read-only and applies its
// primary's committed write batches after its replication lag (asynchronous: a promotion loses what
// had not arrived yet, as with PostgreSQL streaming replication). Only simulator/ and tests.
#pragma once

#include <sqlite3.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/core/database.h"
#include "server/runtime/sqlite_exec.h"
#include "simulator/kernel.h"

namespace chorus::sim {

struct DbServerOptions {
  std::string name;                                                      // host (postgres) or path (sqlite3)
  Duration service_time{200};                                            // per statement
  LatencyModel latency{Duration{150}, Duration{100}, Duration{10'000}};  // one way, node <-> server
  std::string primary;  // set: this server is a streaming replica of that one
  Duration replication_lag{0};
};

class SimDbServer {
 public:
  SimDbServer(Kernel& kernel, DbServerOptions options);
  ~SimDbServer();
  const std::string& name() const { return options_.name; }
  bool up() const { return up_; }
  bool read_only() const { return !options_.primary.empty(); }
  uint32_t epoch() const { return epoch_; }  // bumps on every stop: old connections are dead

  // Faults.
  void stop();
  void start();
  void promote();  // a replica becomes a primary: read-write, no more replication
  void set_slow_factor(double factor) { slow_factor_ = factor; }
  void set_replication_lag(Duration lag) { options_.replication_lag = lag; }
  double slow_factor() const { return slow_factor_; }

  // Runs a batch now (the request has arrived). Also used by tests to inspect the data.
  db::Outcome execute(const std::vector<db::Statement>& statements, bool transaction);
  uint64_t statements_run() const { return statements_run_; }
  Duration service_time(size_t statements) const;
  const DbServerOptions& options() const { return options_; }

 private:
  friend class SimDatabases;
  struct LogEntry {
    int64_t commit_us;
    std::vector<db::Statement> statements;
    bool transaction;
  };
  void replicate_from(SimDbServer& primary);  // applies what is due
  void schedule_apply();
  void ship(std::vector<db::Statement> statements, bool transaction);  // to the replicas' log

  Kernel& kernel_;
  DbServerOptions options_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<runtime::SqliteSession> session_;
  bool up_ = true;
  uint32_t epoch_ = 0;
  double slow_factor_ = 1.0;
  uint64_t statements_run_ = 0;
  std::vector<LogEntry> log_;  // committed write batches (a primary's WAL, for its replicas)
  size_t applied_ = 0;         // replica: entries of the primary's log applied
  bool apply_pending_ = false;
  std::vector<SimDbServer*> replicas_;
  SimDbServer* primary_ = nullptr;
};

// The servers of a simulated run, and the node-side connectors that reach them.
class SimDatabases {
 public:
  explicit SimDatabases(Kernel& kernel) : kernel_(kernel) {}
  SimDbServer& add(DbServerOptions options);
  SimDbServer* find(const std::string& name);
  // Cut (or restore) the path between a node and a server, both ways.
  void cut(NodeIndex node, const std::string& server, bool cut);
  bool is_cut(NodeIndex node, const std::string& server) const;
  // The connector a node's SimEnv hands out.
  std::unique_ptr<db::Connector> connector_for(NodeIndex node, class SimEnv& env);
  Kernel& kernel() { return kernel_; }

 private:
  Kernel& kernel_;
  std::vector<std::unique_ptr<SimDbServer>> servers_;
  std::set<std::pair<NodeIndex, std::string>> cuts_;
};

}  // namespace chorus::sim
