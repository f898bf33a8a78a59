// Real PostgreSQL 15 for tests: a primary and streaming replicas (pg_basebackup -R) on loopback, run by
// an unprivileged user (initdb refuses root), in a temporary directory, stopped and removed at the end.
// If PostgreSQL cannot start, start() throws with the reason and the server's log: tests fail, never skip.
#pragma once

#include <string>
#include <vector>

namespace chorus::testing {

class PgCluster {
 public:
  PgCluster();
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Initialises and starts the primary (server 0) with database "chorus", role "chorus" (password
  // "chorus-pw"), then `replicas` streaming replicas (servers 1..n).
  void start(int replicas);
  // A new, empty database on the primary, once every running standby has it too; returns its name.
  std::string create_database(const std::string& name);

  std::string data_source(int server, const std::string& database = "chorus",
                          const std::string& password = "chorus-pw") const;
  int port(int server) const { return servers_.at(server).port; }
  size_t size() const { return servers_.size(); }

  // crash: immediate shutdown (as a crash); otherwise a clean (fast) shutdown, which first sends every
  // committed change to the standbys.
  void stop(int server, bool crash = true);
  void restart(int server);  // start again after stop
  void promote(int server);  // a standby becomes a primary
  void freeze(int server);   // SIGSTOP the server and all its processes (a hung machine)
  void thaw(int server);     // SIGCONT
  // Runs SQL on a server as the superuser; returns the output (unaligned, tuples only). Throws on error.
  std::string psql(int server, const std::string& sql, const std::string& database = "chorus") const;
  // Waits until a replica has replayed everything the primary has written (bounded).
  void wait_caught_up(int replica, int timeout_ms = 10'000) const;

 private:
  struct Server {
    std::string dir;
    int port = 0;
    bool running = false;
  };
  std::string run_as_pg(const std::string& command) const;  // throws with output on failure
  void start_server(int server);
  std::string root_;
  std::string user_;
  std::string socket_dir_;
  std::vector<Server> servers_;
};

}  // namespace chorus::testing
