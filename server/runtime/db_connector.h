// The production database drivers behind db::Connector: SQLite files and PostgreSQL (libpq).
//
// PostgreSQL runs on the node's io_context through libpq's asynchronous API (PQconnectStart/Poll,
// PQsendQueryParams, the socket watched by Asio): no thread hand-off per query. A SQLite call runs on the
// loop within a 2 ms budget when it can (one statement or a transaction that never waits for a lock);
// when it would wait or run longer it goes to a small pool of worker threads, and its completion is
// posted back to the loop. Connects and host name resolution run on the workers too. One connection runs
// one operation at a time. Completions still pending when the connector is destroyed are destroyed with
// it (the env still stands then). QueryTimeout: SQLite interrupts the statement from a progress
// handler at the deadline; PostgreSQL sends PQcancel (from a worker: it blocks for a round trip) when
// the loop's timer fires. Only server/runtime and its tests include this header.
#pragma once

#include <memory>

#include "server/core/database.h"
#include "server/core/log.h"

namespace boost::asio {
class io_context;
}

namespace chorus::runtime {

class DbWorkers;

class DbConnector final : public db::Connector {
 public:
  DbConnector(boost::asio::io_context& io, Logger& log, size_t worker_threads);
  ~DbConnector() override;
  void connect(const std::string& driver, const std::string& data_source, const std::string& application_name,
               Duration timeout, std::function<void(db::ConnectOutcome)> done) override;

  struct Shared;

 private:
  std::unique_ptr<DbWorkers> workers_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace chorus::runtime
