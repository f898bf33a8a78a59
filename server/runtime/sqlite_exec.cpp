#include "server/runtime/sqlite_exec.h"

#include <fmt/format.h>

#include <chrono>
#include <thread>

namespace chorus::runtime {

std::string sqlite_placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote) {
      if (c == quote) quote = 0;
      out += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      out += c;
    } else if (c == '$' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out;
}

db::Status sqlite_status(int code) {
  switch (code & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return db::Status::ok;
    case SQLITE_CONSTRAINT:
      return db::Status::conflict;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_INTERRUPT:
      return db::Status::timeout;
    case SQLITE_READONLY:
      return db::Status::read_only;
    case SQLITE_AUTH:
    case SQLITE_PERM:
      return db::Status::auth_failed;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FULL:
      return db::Status::unavailable;
    default:
      return db::Status::bad_request;
  }
}

SqliteSession::~SqliteSession() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
}

namespace {
int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
int progress(void* arg) {
  const int64_t deadline = *static_cast<int64_t*>(arg);
  return deadline != 0 && steady_ns() > deadline ? 1 : 0;  // non-zero interrupts the statement
}
}  // namespace

sqlite3_stmt* SqliteSession::prepare(const std::string& sql, db::Error& error) {
  if (auto it = cache_.find(sql); it != cache_.end()) {
    sqlite3_reset(it->second);
    sqlite3_clear_bindings(it->second);
    return it->second;
  }
  sqlite3_stmt* stmt = nullptr;
  const std::string translated = sqlite_placeholders(sql);
  const int rc = sqlite3_prepare_v2(db_, translated.c_str(), static_cast<int>(translated.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    error = db::Error{sqlite_status(rc), fmt::format("{} (in: {})", sqlite3_errmsg(db_), sql.substr(0, 200))};
    last_code_ = rc & 0xff;
    return nullptr;
  }
  if (cache_.size() >= 128) {  // bounded: drop everything rather than track recency
    for (auto& [s, st] : cache_) sqlite3_finalize(st);
    cache_.clear();
  }
  cache_.emplace(sql, stmt);
  return stmt;
}

db::Error SqliteSession::exec_simple(const char* sql) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
  db::Error e;
  if (rc != SQLITE_OK) {
    e = db::Error{sqlite_status(rc), msg ? msg : sqlite3_errmsg(db_)};
    if (last_code_ == SQLITE_OK) last_code_ = rc & 0xff;
  }
  sqlite3_free(msg);
  return e;
}

namespace {
int fine_busy_wait(void*, int tries) {
  const int64_t slept_us = tries < 50 ? tries * 100LL : 5'000LL + (tries - 50) * 1'000LL;
  if (slept_us >= SqliteSession::kBusyTimeoutMs * 1000LL) return 0;  // give up: SQLITE_BUSY
  std::this_thread::sleep_for(std::chrono::microseconds(tries < 50 ? 100 : 1000));
  return 1;
}
}  // namespace

void SqliteSession::wait_on_locks(sqlite3* db) { sqlite3_busy_handler(db, fine_busy_wait, nullptr); }

db::Outcome SqliteSession::run(const std::vector<db::Statement>& statements, bool transaction, int64_t deadline_ns,
                               bool* would_wait) {
  if (would_wait) {
    *would_wait = false;
    sqlite3_busy_timeout(db_, 0);  // fail at once on a lock instead of waiting
  }
  db::Outcome out = run_once(statements, transaction, deadline_ns);
  if (would_wait) {
    wait_on_locks(db_);
    *would_wait = last_code_ == SQLITE_BUSY || last_code_ == SQLITE_LOCKED || last_code_ == SQLITE_INTERRUPT;
  }
  return out;
}

db::Outcome SqliteSession::run_once(const std::vector<db::Statement>& statements, bool transaction,
                                    int64_t deadline_ns) {
  db::Outcome out;
  last_code_ = SQLITE_OK;
  int64_t deadline = deadline_ns;
  sqlite3_progress_handler(db_, deadline ? 1000 : 0, deadline ? progress : nullptr, &deadline);
  if (transaction) {
    out.error = exec_simple("BEGIN IMMEDIATE");
    if (!out.ok()) {
      sqlite3_progress_handler(db_, 0, nullptr, nullptr);
      return out;
    }
  }
  for (const auto& st : statements) {
    sqlite3_stmt* stmt = prepare(st.sql, out.error);
    if (!stmt) break;
    bool bad_bind = false;
    for (size_t i = 0; i < st.params.size() && !bad_bind; ++i) {
      const int idx = static_cast<int>(i + 1);
      int rc = SQLITE_OK;
      if (std::holds_alternative<db::Null>(st.params[i]))
        rc = sqlite3_bind_null(stmt, idx);
      else if (auto* n = std::get_if<int64_t>(&st.params[i]))
        rc = sqlite3_bind_int64(stmt, idx, *n);
      else if (auto* d = std::get_if<double>(&st.params[i]))
        rc = sqlite3_bind_double(stmt, idx, *d);
      else {
        const auto& s = std::get<std::string>(st.params[i]);
        rc = sqlite3_bind_text(stmt, idx, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) {
        out.error =
            db::Error{db::Status::bad_request, fmt::format("cannot bind parameter ${}: {}", idx, sqlite3_errmsg(db_))};
        bad_bind = true;
      }
    }
    if (bad_bind) break;
    db::ResultSet rs;
    const int ncols = sqlite3_column_count(stmt);
    for (int c = 0; c < ncols; ++c) rs.columns.emplace_back(sqlite3_column_name(stmt, c));
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<db::Value> row;
      row.reserve(ncols);
      for (int c = 0; c < ncols; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(stmt, c));
            break;
          case SQLITE_NULL:
            row.emplace_back(db::Null{});
            break;
          default: {
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
            row.emplace_back(std::string(text ? text : "", static_cast<size_t>(sqlite3_column_bytes(stmt, c))));
          }
        }
      }
      rs.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) {
      out.error = db::Error{sqlite_status(rc), sqlite3_errmsg(db_)};
      last_code_ = rc & 0xff;
      sqlite3_reset(stmt);
      break;
    }
    rs.affected = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(db_);
    sqlite3_reset(stmt);
    if (st.expect_rows >= 0 && rs.affected != st.expect_rows) {
      out.error =
          db::Error{db::Status::conflict, fmt::format("expected {} changed rows, got {}", st.expect_rows, rs.affected)};
      break;
    }
    out.value.push_back(std::move(rs));
  }
  if (transaction) {
    if (out.ok()) {
      out.error = exec_simple("COMMIT");
      if (!out.ok()) exec_simple("ROLLBACK");
    } else {
      exec_simple("ROLLBACK");
    }
  }
  sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  if (!out.ok()) out.value.clear();
  return out;
}

}  // namespace chorus::runtime
