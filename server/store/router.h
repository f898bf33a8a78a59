// Routing of queries to database servers, as Mattermost does it and a little better.
//
// Writes, and reads that must see them, go to the master. Other reads go round-robin over the online
// read replicas (SqlSettings.DataSourceReplicas), else the master. Searches go over the online search
// replicas (DataSourceSearchReplicas), else the read replicas, else the master. A replica that fails with
// a connection error is marked offline at once and the read is retried on the next candidate, so the
// caller does not see the failure; every ReplicaMonitorIntervalSeconds each replica is probed, so a dead
// one is found even without traffic and an offline one comes back as soon as it answers.
//
// At start an unreachable master is fatal (start reports the error); an unreachable replica starts
// offline. reload() applies new SqlSettings (new data sources get new pools; pools whose server is
// unchanged keep their connections and take the new limits); recycle() replaces every connection. Used
// by Store (store.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/config/config.h"
#include "server/core/env.h"
#include "server/store/pool.h"

namespace chorus::store {

enum class Role { master, replica, search };
const char* to_string(Role role);

struct ServerStatus {
  Role role;
  std::string name;  // redacted data source
  bool online = true;
  uint64_t reads = 0;     // statements routed here
  uint64_t failures = 0;  // connection errors seen
  PoolStats pool;
};

// Checks every data source in the settings; each error names its setting
// ("SqlSettings.DataSourceReplicas[1]: ...").
std::vector<std::string> check_data_sources(const config::SqlSettings& sql);

class Router {
 public:
  Router(Env& env, const config::SqlSettings& sql, std::string application_name);
  ~Router();

  // Probes the master (fatal if unreachable) and the replicas (offline if unreachable), then starts the
  // replica monitor. done gets the master's error, if any.
  void start(std::function<void(db::Error)> done);

  void write(std::vector<db::Statement> statements, bool transaction, db::Done done);
  void read(std::vector<db::Statement> statements, db::Done done);
  void search(std::vector<db::Statement> statements, db::Done done);

  void reload(const config::SqlSettings& sql);
  void recycle();
  std::vector<ServerStatus> status() const;
  const config::SqlSettings& settings() const { return sql_; }
  // The SQL dialect the master speaks, learned when it first answered (start).
  db::Dialect dialect() const { return dialect_; }

 private:
  struct Server {
    Role role;
    std::string data_source;
    std::string name;
    std::unique_ptr<Pool> pool;
    bool online = true;
    bool probing = false;
    uint64_t reads = 0;
    uint64_t failures = 0;
  };
  PoolOptions pool_options(const std::string& data_source) const;
  std::shared_ptr<Server> make_server(Role role, const std::string& data_source);
  void rebuild(std::vector<std::shared_ptr<Server>>& servers, Role role, const std::vector<std::string>& sources);
  // Tries candidates in order; a connection error marks a replica offline and moves to the next.
  void read_from(std::vector<std::shared_ptr<Server>> candidates, size_t index, std::vector<db::Statement> statements,
                 db::Done done);
  // The online servers, rotated so that successive calls start at successive servers.
  std::vector<std::shared_ptr<Server>> online(std::vector<std::shared_ptr<Server>>& servers, size_t& cursor);
  void monitor();
  void probe(const std::shared_ptr<Server>& server);
  Duration query_timeout() const { return Duration{sql_.QueryTimeout * 1'000'000}; }

  Env& env_;
  config::SqlSettings sql_;
  db::Dialect dialect_ = db::Dialect::sqlite;
  std::string application_name_;
  // Shared: a read in flight keeps its candidates alive across a reload.
  std::shared_ptr<Server> master_;
  std::vector<std::shared_ptr<Server>> replicas_;
  std::vector<std::shared_ptr<Server>> search_;
  std::vector<std::shared_ptr<Server>> retired_;  // replaced by a reload: kept until their requests finish
  size_t replica_cursor_ = 0;
  size_t search_cursor_ = 0;
  TimerId monitor_timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::store
