#include "server/runtime/db_connector.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "server/core/data_source.h"
#include "server/runtime/sqlite_exec.h"

namespace chorus::runtime {

namespace asio = boost::asio;

// A fixed pool of threads running blocking database calls.
class DbWorkers {
 public:
  explicit DbWorkers(size_t n) {
    for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~DbWorkers() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping and drained
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// What jobs and connections share with the connector. It owns no threads, so it may be released on any
// thread; `alive` (touched only on the loop) says whether the connector, and so `workers`, still exist.
struct DbConnector::Shared {
  Shared(asio::io_context& io, Logger& log, DbWorkers* workers) : io(io), log(log), workers(workers) {}
  asio::io_context& io;
  Logger& log;
  DbWorkers* workers;
  std::atomic<bool> alive{true};

  // Runs job on a worker, then then_fn(result) on the loop (unless the connector is gone). Connections
  // must not outlive their connector (the store is destroyed before the env).
  template <typename R>
  void offload(std::function<R()> job, std::function<void(R)> then_fn, const std::shared_ptr<Shared>& self) {
    assert(alive);
    workers->submit([self, job = std::move(job), then_fn = std::move(then_fn)]() mutable {
      auto result = std::make_shared<R>(job());
      asio::post(self->io, [self, result, then_fn = std::move(then_fn)]() mutable {
        if (self->alive) then_fn(std::move(*result));
      });
    });
  }
};

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------- SQLite

struct SqliteHandle {
  sqlite3* db = nullptr;
  std::unique_ptr<SqliteSession> session;
  ~SqliteHandle() {
    session.reset();
    if (db) sqlite3_close_v2(db);
  }
};

class SqliteConnection final : public db::Connection {
 public:
  SqliteConnection(std::shared_ptr<DbConnector::Shared> shared, std::shared_ptr<SqliteHandle> h, std::string server)
      : shared_(std::move(shared)), handle_(std::move(h)), server_(std::move(server)) {}
  void run(std::vector<db::Statement> statements, bool transaction, Duration timeout, db::Done done) override {
    auto h = handle_;
    const int64_t deadline = timeout.count() > 0 ? steady_ns() + timeout.count() * 1000 : 0;
    auto usable = usable_;
    shared_->offload<db::Outcome>(
        [h, statements = std::move(statements), transaction, deadline] { return h->session->run(statements, transaction, deadline); },
        [usable, done = std::move(done)](db::Outcome o) {
          if (o.error.status == db::Status::unavailable) *usable = false;
          done(std::move(o));
        },
        shared_);
  }
  bool usable() const override { return *usable_; }
  const std::string& server() const override { return server_; }

 private:
  std::shared_ptr<DbConnector::Shared> shared_;
  std::shared_ptr<SqliteHandle> handle_;
  std::shared_ptr<bool> usable_ = std::make_shared<bool>(true);
  std::string server_;
};

db::ConnectOutcome open_sqlite(const db::DataSource& ds, const std::shared_ptr<DbConnector::Shared>& shared) {
  db::ConnectOutcome out;
  std::error_code ec;
  const auto parent = std::filesystem::path(ds.path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  auto h = std::make_shared<SqliteHandle>();
  const int rc = sqlite3_open_v2(ds.path.c_str(), &h->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    out.error = db::Error{db::Status::unavailable, fmt::format("cannot open SQLite database {}: {}", ds.path, h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc))};
    return out;
  }
  h->session = std::make_unique<SqliteSession>(h->db);
  // The busy timeout comes first: several local processes may be opening (and switching to WAL) the
  // same new file at once. WAL: readers never block the writer.
  sqlite3_busy_timeout(h->db, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
    char* msg = nullptr;
    if (sqlite3_exec(h->db, pragma, nullptr, nullptr, &msg) != SQLITE_OK) {
      out.error = db::Error{db::Status::unavailable, fmt::format("cannot set up SQLite database {} ({}): {}", ds.path, pragma, msg ? msg : "")};
      sqlite3_free(msg);
      return out;
    }
  }
  out.connection = std::make_unique<SqliteConnection>(shared, h, ds.server_name());
  return out;
}

// ---------------- PostgreSQL

db::Status pg_status(const char* sqlstate, bool connection_bad) {
  if (connection_bad) return db::Status::unavailable;
  if (!sqlstate) return db::Status::unavailable;
  const std::string s(sqlstate);
  if (s.rfind("23", 0) == 0 || s == "40001" || s == "40P01") return db::Status::conflict;
  if (s == "25006") return db::Status::read_only;
  if (s == "57014") return db::Status::timeout;
  if (s.rfind("28", 0) == 0) return db::Status::auth_failed;
  if (s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s.rfind("53", 0) == 0) return db::Status::unavailable;
  return db::Status::bad_request;
}

struct PgHandle {
  PGconn* conn = nullptr;
  PGcancel* cancel = nullptr;
  std::mutex cancel_mu;
  ~PgHandle() {
    if (cancel) PQfreeCancel(cancel);
    if (conn) PQfinish(conn);
  }
};

db::Value pg_value(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return db::Null{};
  const char* v = PQgetvalue(r, row, col);
  switch (PQftype(r, col)) {
    case 20: case 21: case 23: return static_cast<int64_t>(std::strtoll(v, nullptr, 10));  // int8, int2, int4
    case 16: return static_cast<int64_t>(v[0] == 't' ? 1 : 0);                            // bool
    case 700: case 701: case 1700: return std::strtod(v, nullptr);                        // float4, float8, numeric
    default: return std::string(v, static_cast<size_t>(PQgetlength(r, row, col)));
  }
}

db::Outcome pg_run(PgHandle& h, const std::vector<db::Statement>& statements, bool transaction) {
  db::Outcome out;
  auto fail_from = [&](PGresult* r) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const bool bad = PQstatus(h.conn) == CONNECTION_BAD;
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(h.conn);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    out.error = db::Error{pg_status(state, bad), msg};
  };
  auto simple = [&](const char* sql) {
    PGresult* r = PQexec(h.conn, sql);
    const bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok && out.ok()) fail_from(r);
    PQclear(r);
    return ok;
  };
  if (transaction && !simple("BEGIN")) return out;
  for (const auto& st : statements) {
    std::vector<std::string> texts(st.params.size());
    std::vector<const char*> values(st.params.size(), nullptr);
    for (size_t i = 0; i < st.params.size(); ++i) {
      const auto& p = st.params[i];
      if (std::holds_alternative<db::Null>(p)) continue;
      if (auto* n = std::get_if<int64_t>(&p)) texts[i] = std::to_string(*n);
      else if (auto* d = std::get_if<double>(&p)) texts[i] = fmt::format("{}", *d);
      else texts[i] = std::get<std::string>(p);
      values[i] = texts[i].c_str();
    }
    PGresult* r = PQexecParams(h.conn, st.sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
    const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      fail_from(r);
      PQclear(r);
      break;
    }
    db::ResultSet rs;
    const int ncols = PQnfields(r), nrows = PQntuples(r);
    for (int c = 0; c < ncols; ++c) rs.columns.emplace_back(PQfname(r, c));
    rs.rows.reserve(static_cast<size_t>(nrows));
    for (int row = 0; row < nrows; ++row) {
      std::vector<db::Value> values_row;
      values_row.reserve(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c) values_row.push_back(pg_value(r, row, c));
      rs.rows.push_back(std::move(values_row));
    }
    // Changed rows, as SQLite counts them: none for a SELECT, the command's count otherwise.
    const char* tuples = PQcmdTuples(r);
    const bool is_select = std::string_view(PQcmdStatus(r)).starts_with("SELECT");
    rs.affected = (is_select || !tuples || !*tuples) ? 0 : std::strtoll(tuples, nullptr, 10);
    PQclear(r);
    if (st.expect_rows >= 0 && rs.affected != st.expect_rows) {
      out.error = db::Error{db::Status::conflict, fmt::format("expected {} changed rows, got {}", st.expect_rows, rs.affected)};
      break;
    }
    out.results.push_back(std::move(rs));
  }
  if (transaction && PQstatus(h.conn) == CONNECTION_OK) {
    if (out.ok()) simple("COMMIT");
    else {
      PGresult* r = PQexec(h.conn, "ROLLBACK");
      PQclear(r);
    }
  }
  if (!out.ok()) out.results.clear();
  return out;
}

class PgConnection final : public db::Connection {
 public:
  PgConnection(std::shared_ptr<DbConnector::Shared> shared, std::shared_ptr<PgHandle> h, std::string server)
      : shared_(std::move(shared)), handle_(std::move(h)), server_(std::move(server)) {}
  void run(std::vector<db::Statement> statements, bool transaction, Duration timeout, db::Done done) override {
    auto h = handle_;
    auto usable = usable_;
    // QueryTimeout: the loop sends a cancel request if the call is still running at the deadline.
    auto timer = std::make_shared<asio::steady_timer>(shared_->io, timeout);
    auto finished = std::make_shared<bool>(false);
    if (timeout.count() > 0) {
      timer->async_wait([h, finished, shared = shared_](const boost::system::error_code& ec) {
        if (ec || *finished || !shared->alive) return;
        // PQcancel blocks for a round trip to the server: do it on a worker.
        shared->workers->submit([h] {
          std::lock_guard lock(h->cancel_mu);
          char err[256];
          if (h->cancel) PQcancel(h->cancel, err, sizeof err);
        });
      });
    }
    shared_->offload<db::Outcome>(
        [h, statements = std::move(statements), transaction] { return pg_run(*h, statements, transaction); },
        [usable, timer, finished, h, done = std::move(done)](db::Outcome o) {
          *finished = true;
          timer->cancel();
          if (PQstatus(h->conn) != CONNECTION_OK) *usable = false;
          done(std::move(o));
        },
        shared_);
  }
  bool usable() const override { return *usable_; }
  const std::string& server() const override { return server_; }

 private:
  std::shared_ptr<DbConnector::Shared> shared_;
  std::shared_ptr<PgHandle> handle_;
  std::shared_ptr<bool> usable_ = std::make_shared<bool>(true);
  std::string server_;
};

bool libpq_option(const std::string& key) {
  static const char* known[] = {"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "connect_timeout",
                                "options", "target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "gssencmode", "krbsrvname", "channel_binding",
                                "client_encoding", "passfile", "service"};
  for (const char* k : known)
    if (key == k) return true;
  return false;
}

db::ConnectOutcome open_pg(const db::DataSource& ds, const std::string& app_name, Duration timeout, const std::shared_ptr<DbConnector::Shared>& shared) {
  db::ConnectOutcome out;
  std::vector<std::pair<std::string, std::string>> kv = {
      {"host", ds.host}, {"port", std::to_string(ds.port)}, {"dbname", ds.database}, {"application_name", app_name}};
  if (!ds.user.empty()) kv.emplace_back("user", ds.user);
  if (!ds.password.empty()) kv.emplace_back("password", ds.password);
  bool has_timeout = false;
  for (const auto& [k, v] : ds.options) {
    if (!libpq_option(k)) continue;  // lib/pq-only options (binary_parameters, ...) mean nothing to libpq
    kv.emplace_back(k, v);
    has_timeout |= k == "connect_timeout";
  }
  if (!has_timeout) kv.emplace_back("connect_timeout", std::to_string(std::max<int64_t>(1, to_ms(timeout) / 1000)));
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  auto h = std::make_shared<PgHandle>();
  h->conn = PQconnectdbParams(keys.data(), values.data(), 0);
  if (!h->conn || PQstatus(h->conn) != CONNECTION_OK) {
    std::string msg = h->conn ? PQerrorMessage(h->conn) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    const bool auth = msg.find("password authentication failed") != std::string::npos || msg.find("no password supplied") != std::string::npos ||
                      msg.find("authentication failed") != std::string::npos;
    out.error = db::Error{auth ? db::Status::auth_failed : db::Status::unavailable,
                          fmt::format("cannot connect to PostgreSQL at {}: {}", ds.server_name(), msg)};
    return out;
  }
  h->cancel = PQgetCancel(h->conn);
  out.connection = std::make_unique<PgConnection>(shared, h, ds.server_name());
  return out;
}

}  // namespace

DbConnector::DbConnector(asio::io_context& io, Logger& log, size_t worker_threads)
    : workers_(std::make_unique<DbWorkers>(worker_threads)), shared_(std::make_shared<Shared>(io, log, workers_.get())) {}

DbConnector::~DbConnector() {
  shared_->alive = false;
  workers_.reset();  // finishes queued calls and joins: nothing posts to the loop after this
}

void DbConnector::connect(const std::string& driver, const std::string& data_source, const std::string& application_name,
                          Duration timeout, std::function<void(db::ConnectOutcome)> done) {
  auto parsed = db::parse_data_source(driver, data_source);
  if (!parsed.source) {
    asio::post(shared_->io, [done = std::move(done), error = parsed.error] {
      db::ConnectOutcome out;
      out.error = db::Error{db::Status::bad_request, error};
      done(std::move(out));
    });
    return;
  }
  auto shared = shared_;
  // ConnectOutcome holds a unique_ptr: carry it through a shared_ptr across threads.
  using Holder = std::shared_ptr<db::ConnectOutcome>;
  shared_->offload<Holder>(
      [ds = *parsed.source, application_name, timeout, shared]() -> Holder {
        return std::make_shared<db::ConnectOutcome>(ds.dialect == db::Dialect::sqlite ? open_sqlite(ds, shared)
                                                                                       : open_pg(ds, application_name, timeout, shared));
      },
      [done = std::move(done)](Holder h) { done(std::move(*h)); }, shared_);
}

}  // namespace chorus::runtime
