// Database servers, as the seam gives them: open a connection to a server named by a data source, run
// statements on it, and be called back on the node's loop.
//
// Production (server/runtime): SQLite files and PostgreSQL through libpq, each call run on a worker
// thread and its completion posted back to the node's loop. Simulation (simulator/): servers that are
// SQLite databases in memory, which the simulator can stop, cut off, slow down, lag and promote. The
// store (server/store: pools, routing, migrations) sits above this interface and runs on both.
//
// SQL is written once for both dialects with $1, $2, ... placeholders. Values are NULL, 64-bit integers,
// doubles or text (booleans are stored as 0/1 integers, so both dialects agree).
#pragma once

#include <charconv>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "server/core/result.h"
#include "server/core/time.h"

namespace chorus::db {

struct Null {
  bool operator==(const Null&) const = default;
};
using Value = std::variant<Null, int64_t, double, std::string>;
std::string to_string(const Value& v);

// Reading a result row: text ("" for NULL, integers in decimal), or an integer (0 for NULL or non-numbers).
inline std::string text_at(const std::vector<Value>& row, size_t i) {
  const auto& v = row.at(i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  return "";
}
inline int64_t int_at(const std::vector<Value>& row, size_t i) {
  const auto& v = row.at(i);
  if (const auto* n = std::get_if<int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  if (const auto* s = std::get_if<std::string>(&v)) {
    int64_t out = 0;
    const auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
    if (ec == std::errc() && ptr == s->data() + s->size()) return out;
  }
  return 0;
}

struct Statement {
  std::string sql;
  std::vector<Value> params;
  // In a transaction: if set and the statement changes a different number of rows, the transaction
  // rolls back and fails with Status::conflict (an optimistic check, e.g. "claimed when exactly one row").
  int64_t expect_rows = -1;
};

struct ResultSet {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
  int64_t affected = 0;  // rows changed by INSERT/UPDATE/DELETE
};

enum class Status {
  ok,
  unavailable,  // cannot connect, or the connection was lost: try another server or later
  overloaded,   // this node's pool refused the request (queue full, pool closed): the server is fine
  timeout,      // cancelled after the query timeout
  conflict,     // unique/constraint violation, or an expect_rows check failed
  read_only,    // a write reached a read-only server (a replica)
  auth_failed,  // the server refused our credentials
  bad_request,  // the SQL or its parameters are wrong (a bug, or bad input that got this far)
};
const char* to_string(Status s);

// The store's error (server/core/result.h): a Status to route and retry on, and the server's text.
struct Error {
  Status status = Status::ok;
  std::string message;
  bool ok() const { return status == Status::ok; }
};

enum class Dialect { sqlite, postgres };

// What statements gave: a Result whose value is one ResultSet per statement.
struct Outcome : Result<std::vector<ResultSet>, Error> {
  Dialect dialect = Dialect::sqlite;  // what the server that answered speaks (the simulator's are SQLite)
  const ResultSet& result() const { return value.at(0); }
};

using Done = std::function<void(Outcome)>;

// One open connection to one server. Used by one operation at a time (the pool sees to that).
class Connection {
 public:
  virtual ~Connection() = default;
  // Runs the statements one after another; with `transaction`, as one transaction (all or nothing).
  // Calls done once, on the node's loop. After `timeout`, the running statement is cancelled.
  virtual void run(std::vector<Statement> statements, bool transaction, Duration timeout, Done done) = 0;
  // False once the connection is known to be unusable (lost, closed); the pool then drops it.
  virtual bool usable() const = 0;
  // The server this connection reaches, as given to connect (for logs and routing).
  virtual const std::string& server() const = 0;
};

using ConnectOutcome = Result<std::unique_ptr<Connection>, Error>;

// Opens connections. `driver` is SqlSettings.DriverName ("sqlite3" or "postgres"); `data_source` is the
// setting's string; `application_name` tags the session on the server (pg_stat_activity).
class Connector {
 public:
  virtual ~Connector() = default;
  virtual void connect(const std::string& driver, const std::string& data_source, const std::string& application_name,
                       Duration timeout, std::function<void(ConnectOutcome)> done) = 0;
};

}  // namespace chorus::db
