// Runs statements on an open SQLite handle: placeholders, binding, rows, transactions, expect_rows,
// a deadline (progress handler), and SQLite's errors mapped to db::Status. Blocking; no threads of its
// own. Shared by the production driver (on worker threads) and the simulator's database servers.
#pragma once

#include <sqlite3.h>

#include <map>
#include <string>
#include <vector>

#include "server/core/database.h"

namespace chorus::runtime {

// Rewrites $1, $2, ... as ?1, ?2, ... outside string literals and quoted identifiers.
std::string sqlite_placeholders(const std::string& sql);

// A statement cache per handle: preparing once per distinct SQL text.
class SqliteSession {
 public:
  explicit SqliteSession(sqlite3* db) : db_(db) {}
  ~SqliteSession();
  SqliteSession(const SqliteSession&) = delete;
  SqliteSession& operator=(const SqliteSession&) = delete;

  // Runs the statements; with `transaction`, inside BEGIN IMMEDIATE ... COMMIT (rolled back on any
  // error). deadline_ns is a steady-clock time in nanoseconds after which the running statement is
  // interrupted (0: none). If `would_wait` is given, the call does not wait for a lock held by another
  // connection, and *would_wait says whether it failed for that reason or by reaching the deadline -
  // in which case nothing it did took effect (only for one statement, or a transaction).
  db::Outcome run(const std::vector<db::Statement>& statements, bool transaction, int64_t deadline_ns,
                  bool* would_wait = nullptr);
  sqlite3* handle() const { return db_; }
  static constexpr int kBusyTimeoutMs = 5000;
  // Waits for another connection's (or process's) lock for up to kBusyTimeoutMs, polling every 100 µs
  // for the first 5 ms, then every millisecond. (SQLite's own busy timeout sleeps 1, 2, 5, 10 ... 100 ms
  // between tries: a write that waits behind another one would wait ten times longer than it holds.)
  static void wait_on_locks(sqlite3* db);

 private:
  db::Outcome run_once(const std::vector<db::Statement>& statements, bool transaction, int64_t deadline_ns);
  sqlite3_stmt* prepare(const std::string& sql, db::Error& error);
  db::Error exec_simple(const char* sql);
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> cache_;
  int last_code_ = 0;  // primary result code of the failure, if any
};

db::Status sqlite_status(int code);

}  // namespace chorus::runtime
