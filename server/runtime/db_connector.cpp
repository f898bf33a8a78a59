// The production database drivers (db_connector.h). Over 700 lines on purpose: SQLite and PostgreSQL share
// the worker pool, the completion bookkeeping and the error mapping, and libpq's connect and query state
// machines read best next to each other; split, they would need a private header of their internals.
#include "server/runtime/db_connector.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sqlite3.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
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
namespace {
struct PgConnect;
}  // namespace

struct DbConnector::Shared {
  Shared(asio::io_context& io, Logger& log, DbWorkers* workers) : io(io), log(log), workers(workers) {}
  asio::io_context& io;
  Logger& log;
  DbWorkers* workers;
  std::atomic<bool> alive{true};
  // Completions not yet run, on the loop only. The connector's destructor destroys them while the env
  // still stands: a completion can own the last reference to a store object whose destructor cancels an
  // env timer, and handlers the io_context abandons are destroyed after the env is gone.
  uint64_t next_pending = 0;
  std::map<uint64_t, std::function<void(void*)>> pending;
  std::vector<std::weak_ptr<PgConnect>> connects;  // PostgreSQL connects under way

  // Runs job on a worker, then then_fn(result) on the loop (unless the connector is gone). Connections
  // must not outlive their connector (the store is destroyed before the env).
  template <typename R>
  void offload(std::function<R()> job, std::function<void(R)> then_fn, const std::shared_ptr<Shared>& self) {
    assert(alive);
    const uint64_t id = ++next_pending;
    pending.emplace(id, [then_fn = std::move(then_fn)](void* r) mutable { then_fn(std::move(*static_cast<R*>(r))); });
    workers->submit([self, id, job = std::move(job)]() mutable {
      auto result = std::make_shared<R>(job());
      asio::post(self->io, [self, id, result]() mutable {
        auto it = self->pending.find(id);
        if (it == self->pending.end()) return;
        auto fn = std::move(it->second);
        self->pending.erase(it);
        if (self->alive) fn(result.get());
      });
    });
  }
};

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
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

constexpr Duration kInlineBudget{2'000};  // µs the loop may spend in one SQLite call

class SqliteConnection final : public db::Connection {
 public:
  SqliteConnection(std::shared_ptr<DbConnector::Shared> shared, std::shared_ptr<SqliteHandle> h, std::string server)
      : shared_(std::move(shared)), handle_(std::move(h)), server_(std::move(server)) {}
  // The fast path runs on the loop itself, within a small budget (kInlineBudget): it never waits for
  // another connection's lock and is interrupted at the budget. Only batches that leave no trace when
  // stopped (one statement, or a transaction) take it. When it cannot finish - a lock, the budget - the
  // call goes to a worker thread with the busy timeout and the remaining QueryTimeout, as every other
  // call does. So the loop is held for at most the budget, and a point query costs no thread hand-off.
  void run(std::vector<db::Statement> statements, bool transaction, Duration timeout, db::Done done) override {
    auto h = handle_;
    const int64_t deadline = timeout.count() > 0 ? steady_ns() + timeout.count() * 1000 : 0;
    auto usable = usable_;
    if (transaction || statements.size() == 1) {
      const int64_t budget = steady_ns() + kInlineBudget.count() * 1000;
      bool would_wait = false;
      db::Outcome o =
          h->session->run(statements, transaction, deadline ? std::min(deadline, budget) : budget, &would_wait);
      if (!would_wait || (deadline && steady_ns() >= deadline)) {
        if (o.error.status == db::Status::unavailable) *usable = false;
        asio::post(shared_->io, [done = std::move(done), o = std::move(o)]() mutable { done(std::move(o)); });
        return;
      }
    }
    shared_->offload<db::Outcome>([h, statements = std::move(statements), transaction,
                                   deadline] { return h->session->run(statements, transaction, deadline); },
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
  const int rc = sqlite3_open_v2(ds.path.c_str(), &h->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    out.error = db::Error{db::Status::unavailable, fmt::format("cannot open SQLite database {}: {}", ds.path,
                                                               h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc))};
    return out;
  }
  h->session = std::make_unique<SqliteSession>(h->db);
  // The busy timeout comes first: several local processes may be opening (and switching to WAL) the
  // same new file at once. WAL: readers never block the writer.
  SqliteSession::wait_on_locks(h->db);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
    char* msg = nullptr;
    // Switching a new file to WAL needs it to itself for a moment; when another process is doing the
    // same, SQLite answers "locked" at once (no busy handler for this one). Retried for up to the busy
    // timeout, on this worker thread.
    int rc2 = sqlite3_exec(h->db, pragma, nullptr, nullptr, &msg);
    for (int waited_ms = 0; (rc2 == SQLITE_BUSY || rc2 == SQLITE_LOCKED) && waited_ms < SqliteSession::kBusyTimeoutMs;
         waited_ms += 20) {
      sqlite3_free(msg);
      msg = nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      rc2 = sqlite3_exec(h->db, pragma, nullptr, nullptr, &msg);
    }
    if (rc2 != SQLITE_OK) {
      out.error = db::Error{db::Status::unavailable,
                            fmt::format("cannot set up SQLite database {} ({}): {}", ds.path, pragma, msg ? msg : "")};
      sqlite3_free(msg);
      return out;
    }
  }
  out.value = std::make_unique<SqliteConnection>(shared, h, ds.server_name());
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

db::Value pg_value(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return db::Null{};
  const char* v = PQgetvalue(r, row, col);
  switch (PQftype(r, col)) {
    case 20:
    case 21:
    case 23:
      return static_cast<int64_t>(std::strtoll(v, nullptr, 10));  // int8, int2, int4
    case 16:
      return static_cast<int64_t>(v[0] == 't' ? 1 : 0);  // bool
    case 700:
    case 701:
    case 1700:
      return std::strtod(v, nullptr);  // float4, float8, numeric
    default:
      return std::string(v, static_cast<size_t>(PQgetlength(r, row, col)));
  }
}

// PostgreSQL runs on the node's loop through libpq's asynchronous API: no thread hand-off per query.
// The connection's socket is watched with a stream_descriptor, which never owns the fd (libpq does).
// Everything here runs on the loop except PQcancel and host name resolution, which block and go to a
// worker with their own data (never the PgState).
struct PgState : std::enable_shared_from_this<PgState> {
  PgState(std::shared_ptr<DbConnector::Shared> shared, PGconn* conn)
      : shared(std::move(shared)),
        conn(conn),
        socket(this->shared->io),
        timer(this->shared->io),
        grace(this->shared->io) {}
  ~PgState() { close(); }

  void close() {
    boost::system::error_code ec;
    timer.cancel();
    grace.cancel();
    if (socket.is_open()) {
      socket.cancel(ec);
      socket.release();
    }
    if (conn) PQfinish(conn);
    conn = nullptr;
  }
  // Binds the descriptor to libpq's current socket. While connecting libpq may close its socket and
  // open another that gets the same number, so `force` re-registers it before every wait.
  bool bind_socket(bool force) {
    const int fd = PQsocket(conn);
    if (fd < 0) return false;
    if (socket.is_open() && socket.native_handle() == fd && !force) return true;
    if (socket.is_open()) {
      boost::system::error_code ec;
      socket.cancel(ec);
      socket.release();
    }
    boost::system::error_code ec;
    socket.assign(fd, ec);
    return !ec;
  }
  void wait(asio::posix::stream_descriptor::wait_type type, std::function<void(bool)> then) {
    socket.async_wait(type, [self = shared_from_this(), then = std::move(then)](const boost::system::error_code& ec) {
      if (!self->conn) return;  // closed meanwhile
      then(!ec);
    });
  }

  std::shared_ptr<DbConnector::Shared> shared;
  PGconn* conn;
  asio::posix::stream_descriptor socket;
  asio::steady_timer timer;  // connect timeout, then each operation's QueryTimeout
  asio::steady_timer grace;  // after a cancel request: the hard deadline
  bool busy = false;
  bool broken = false;
  uint64_t operation = 0;  // bumps per run(): a late timer of an earlier run does nothing
};

struct PgOperation {
  std::vector<db::Statement> statements;
  bool transaction = false;
  size_t next = 0;  // next statement to send
  enum class Phase { begin, statements, commit, rollback } phase = Phase::statements;
  PGresult* first = nullptr;  // the current command's result, while waiting for the rest of it
  db::Outcome outcome;
  db::Done done;
  bool finished = false;
  ~PgOperation() {
    if (first) PQclear(first);
  }
};

// A cancel request needs its own PGcancel: the connection may be closed while the worker sends it.
void send_cancel(const std::shared_ptr<DbConnector::Shared>& shared, PGconn* conn) {
  PGcancel* c = PQgetCancel(conn);
  if (!c) return;
  shared->workers->submit([c] {
    char err[256];
    PQcancel(c, err, sizeof err);
    PQfreeCancel(c);
  });
}

class PgConnection final : public db::Connection {
 public:
  PgConnection(std::shared_ptr<PgState> state, std::string server)
      : state_(std::move(state)), server_(std::move(server)) {}
  ~PgConnection() override {
    // A query in flight keeps the state alive until its callbacks run; they see `broken`.
    state_->broken = true;
    if (!state_->busy) state_->close();
  }

  void run(std::vector<db::Statement> statements, bool transaction, Duration timeout, db::Done done) override {
    auto st = state_;
    assert(!st->busy);
    auto op = std::make_shared<PgOperation>();
    op->statements = std::move(statements);
    op->transaction = transaction;
    op->phase = transaction ? PgOperation::Phase::begin : PgOperation::Phase::statements;
    op->done = std::move(done);
    st->busy = true;
    const uint64_t id = ++st->operation;
    if (timeout.count() > 0) {
      st->timer.expires_after(timeout);
      st->timer.async_wait([st, op, id](const boost::system::error_code& ec) {
        if (ec || st->operation != id || op->finished || !st->conn || !st->shared->alive) return;
        // QueryTimeout: ask the server to cancel; if no answer comes within the grace period (the path
        // to the server is gone), give up on the connection: the caller hears `timeout` either way.
        send_cancel(st->shared, st->conn);
        st->grace.expires_after(std::chrono::seconds(2));
        st->grace.async_wait([st, op, id](const boost::system::error_code& e) {
          if (e || st->operation != id || op->finished) return;
          st->broken = true;
          op->outcome.error =
              db::Error{db::Status::timeout, "the query timed out and the server did not answer the cancel request"};
          finish(st, op);
          st->close();
        });
      });
    }
    // Always asynchronous: the caller never hears back from inside run().
    asio::post(st->shared->io, [st, op] {
      if (st->broken || !st->conn || PQstatus(st->conn) != CONNECTION_OK) {
        op->outcome.error = db::Error{db::Status::unavailable, "the connection is closed"};
        return finish(st, op);
      }
      step(st, op);
    });
  }
  // An idle connection whose server went away is noticed here, before a request is sent on it.
  bool usable() const override {
    auto& st = *state_;
    if (st.broken || !st.conn) return false;
    if (!st.busy && (!PQconsumeInput(st.conn) || PQstatus(st.conn) != CONNECTION_OK)) st.broken = true;
    return !st.broken;
  }
  const std::string& server() const override { return server_; }

 private:
  static void finish(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op) {
    if (op->finished) return;
    op->finished = true;
    st->busy = false;
    st->timer.cancel();
    st->grace.cancel();
    if (!op->outcome.ok()) op->outcome.value.clear();
    op->outcome.dialect = db::Dialect::postgres;
    if (st->conn && PQstatus(st->conn) != CONNECTION_OK) st->broken = true;
    auto done = std::move(op->done);
    done(std::move(op->outcome));
  }

  static void fail(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op, db::Error error) {
    if (op->outcome.ok()) op->outcome.error = std::move(error);
    if (op->transaction && op->phase != PgOperation::Phase::rollback && op->phase != PgOperation::Phase::begin &&
        !st->broken && PQstatus(st->conn) == CONNECTION_OK) {
      op->phase = PgOperation::Phase::rollback;
      send(st, op, "ROLLBACK", {});
      return;
    }
    finish(st, op);
  }

  // Sends the next command of the operation, or finishes it.
  static void step(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op) {
    using Phase = PgOperation::Phase;
    switch (op->phase) {
      case Phase::begin:
        return send(st, op, "BEGIN", {});
      case Phase::statements:
        if (op->next < op->statements.size()) {
          const auto& s = op->statements[op->next];
          return send(st, op, s.sql, s.params);
        }
        if (op->transaction) {
          op->phase = Phase::commit;
          return send(st, op, "COMMIT", {});
        }
        return finish(st, op);
      case Phase::commit:
      case Phase::rollback:
        return finish(st, op);
    }
  }

  static void send(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op, const std::string& sql,
                   const std::vector<db::Value>& params) {
    if (op->finished) return;
    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      if (std::holds_alternative<db::Null>(p)) continue;
      if (auto* n = std::get_if<int64_t>(&p))
        texts[i] = std::to_string(*n);
      else if (auto* d = std::get_if<double>(&p))
        texts[i] = fmt::format("{}", *d);
      else
        texts[i] = std::get<std::string>(p);
      values[i] = texts[i].c_str();
    }
    if (!PQsendQueryParams(st->conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                           nullptr, 0)) {
      st->broken = true;
      return fail(st, op, db::Error{db::Status::unavailable, trimmed(PQerrorMessage(st->conn))});
    }
    flush(st, op);
  }

  static void flush(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op) {
    if (op->finished) return;
    const int f = PQflush(st->conn);
    if (f < 0) {
      st->broken = true;
      return fail(st, op, db::Error{db::Status::unavailable, trimmed(PQerrorMessage(st->conn))});
    }
    if (f == 1) {
      // More to send. The server may be waiting for us to read: take in what it sent, then flush again.
      st->wait(asio::posix::stream_descriptor::wait_write, [st, op](bool ok) {
        if (!ok) return lost(st, op);
        PQconsumeInput(st->conn);
        flush(st, op);
      });
      return;
    }
    collect(st, op);
  }

  // Takes the command's results without ever blocking: PQgetResult only when PQisBusy says it would
  // not; otherwise wait for the socket and read more.
  static void collect(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op) {
    if (op->finished) return;
    if (!PQconsumeInput(st->conn)) {
      st->broken = true;
      return fail(st, op, db::Error{db::Status::unavailable, trimmed(PQerrorMessage(st->conn))});
    }
    while (!PQisBusy(st->conn)) {
      PGresult* r = PQgetResult(st->conn);
      if (!r) {  // the command is complete
        PGresult* first = op->first;
        op->first = nullptr;
        handle(st, op, first);
        PQclear(first);
        return;
      }
      if (!op->first)
        op->first = r;
      else
        PQclear(r);
    }
    st->wait(asio::posix::stream_descriptor::wait_read, [st, op](bool ok) {
      if (!ok) return lost(st, op);
      collect(st, op);
    });
  }

  static void lost(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op) {
    st->broken = true;
    fail(st, op, db::Error{db::Status::unavailable, "the connection to the server was lost"});
  }

  static void handle(const std::shared_ptr<PgState>& st, const std::shared_ptr<PgOperation>& op, PGresult* r) {
    using Phase = PgOperation::Phase;
    if (op->finished) return;
    const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (op->phase == Phase::rollback) return finish(st, op);
    if (!ok) {
      const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
      const bool bad = PQstatus(st->conn) == CONNECTION_BAD;
      if (bad) st->broken = true;
      return fail(st, op,
                  db::Error{pg_status(state, bad), trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(st->conn))});
    }
    if (op->phase == Phase::begin) {
      op->phase = Phase::statements;
      return step(st, op);
    }
    if (op->phase == Phase::commit) return finish(st, op);
    // A statement's result.
    db::ResultSet rs;
    const int ncols = PQnfields(r), nrows = PQntuples(r);
    for (int c = 0; c < ncols; ++c) rs.columns.emplace_back(PQfname(r, c));
    rs.rows.reserve(static_cast<size_t>(nrows));
    for (int row = 0; row < nrows; ++row) {
      std::vector<db::Value> values;
      values.reserve(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c) values.push_back(pg_value(r, row, c));
      rs.rows.push_back(std::move(values));
    }
    // Changed rows, as SQLite counts them: none for a SELECT, the command's count otherwise.
    const char* tuples = PQcmdTuples(r);
    const bool is_select = std::string_view(PQcmdStatus(r)).starts_with("SELECT");
    rs.affected = (is_select || !tuples || !*tuples) ? 0 : std::strtoll(tuples, nullptr, 10);
    const auto& stmt = op->statements[op->next];
    if (stmt.expect_rows >= 0 && rs.affected != stmt.expect_rows)
      return fail(st, op,
                  db::Error{db::Status::conflict,
                            fmt::format("expected {} changed rows, got {}", stmt.expect_rows, rs.affected)});
    op->outcome.value.push_back(std::move(rs));
    ++op->next;
    step(st, op);
  }

  static std::string trimmed(std::string msg) {
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg;
  }

  std::shared_ptr<PgState> state_;
  std::string server_;
};

bool libpq_option(const std::string& key) {
  static const char* known[] = {"sslmode",          "sslcert",          "sslkey",
                                "sslrootcert",      "sslcrl",           "sslpassword",
                                "connect_timeout",  "options",          "target_session_attrs",
                                "keepalives",       "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "gssencmode",
                                "krbsrvname",       "channel_binding",  "client_encoding",
                                "passfile",         "service"};
  for (const char* k : known)
    if (key == k) return true;
  return false;
}

struct PgConnect {
  std::shared_ptr<PgState> state;
  std::function<void(db::ConnectOutcome)> done;
  std::string server;
  bool finished = false;
};

void pg_connect_finish(const std::shared_ptr<PgConnect>& c, db::Error error) {
  if (c->finished) return;
  c->finished = true;
  c->state->timer.cancel();
  db::ConnectOutcome out;
  if (error.status == db::Status::ok) {
    PQsetnonblocking(c->state->conn, 1);
    out.value = std::make_unique<PgConnection>(c->state, c->server);
  } else {
    out.error = std::move(error);
    c->state->close();
  }
  c->done(std::move(out));
}

void pg_connect_poll(const std::shared_ptr<PgConnect>& c) {
  if (c->finished || !c->state->conn) return;
  auto& st = *c->state;
  const auto poll = PQconnectPoll(st.conn);
  if (poll == PGRES_POLLING_OK) return pg_connect_finish(c, db::Error{});
  if (poll == PGRES_POLLING_FAILED || !st.bind_socket(/*force=*/true)) {
    std::string msg = PQerrorMessage(st.conn);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    const bool auth =
        msg.find("authentication failed") != std::string::npos || msg.find("no password supplied") != std::string::npos;
    return pg_connect_finish(c, db::Error{auth ? db::Status::auth_failed : db::Status::unavailable,
                                          fmt::format("cannot connect to PostgreSQL at {}: {}", c->server, msg)});
  }
  const auto type = poll == PGRES_POLLING_WRITING ? asio::posix::stream_descriptor::wait_write
                                                  : asio::posix::stream_descriptor::wait_read;
  st.wait(type, [c](bool) { pg_connect_poll(c); });
}

bool is_ip_literal(const std::string& host) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Starts the non-blocking connect once the host's address is known (hostaddr: libpq does no lookup).
void pg_connect_start(const db::DataSource& ds, const std::string& hostaddr, const std::string& app_name,
                      Duration limit, const std::shared_ptr<DbConnector::Shared>& shared,
                      std::function<void(db::ConnectOutcome)> done) {
  std::vector<std::pair<std::string, std::string>> kv = {
      {"host", ds.host}, {"port", std::to_string(ds.port)}, {"dbname", ds.database}, {"application_name", app_name}};
  if (!hostaddr.empty()) kv.emplace_back("hostaddr", hostaddr);
  if (!ds.user.empty()) kv.emplace_back("user", ds.user);
  if (!ds.password.empty()) kv.emplace_back("password", ds.password);
  for (const auto& [k, v] : ds.options)
    if (libpq_option(k) && k != "connect_timeout") kv.emplace_back(k, v);  // lib/pq-only options mean nothing to libpq
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kv) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  auto c = std::make_shared<PgConnect>();
  std::erase_if(shared->connects, [](const std::weak_ptr<PgConnect>& w) { return w.expired(); });
  shared->connects.push_back(c);
  c->state = std::make_shared<PgState>(shared, PQconnectStartParams(keys.data(), values.data(), 0));
  c->done = std::move(done);
  c->server = ds.server_name();
  if (!c->state->conn || PQstatus(c->state->conn) == CONNECTION_BAD) {
    std::string msg = c->state->conn ? PQerrorMessage(c->state->conn) : "out of memory";
    asio::post(shared->io, [c, msg] {
      pg_connect_finish(
          c, db::Error{db::Status::unavailable, "cannot connect to PostgreSQL at " + c->server + ": " + msg});
    });
    return;
  }
  c->state->timer.expires_after(limit);
  c->state->timer.async_wait([c, limit](const boost::system::error_code& ec) {
    if (ec) return;
    pg_connect_finish(
        c, db::Error{db::Status::unavailable, fmt::format("cannot connect to PostgreSQL at {}: no answer within {} ms",
                                                          c->server, to_ms(limit))});
  });
  if (!c->state->bind_socket(true)) {
    asio::post(shared->io, [c] { pg_connect_poll(c); });
    return;
  }
  // libpq's first step after PQconnectStart is to wait until the socket is writable.
  c->state->wait(asio::posix::stream_descriptor::wait_write, [c](bool) { pg_connect_poll(c); });
}

void open_pg(const db::DataSource& ds, const std::string& app_name, Duration timeout,
             const std::shared_ptr<DbConnector::Shared>& shared, std::function<void(db::ConnectOutcome)> done) {
  // The connect's limit: the caller's, or the data source's connect_timeout if smaller (0 means none there).
  Duration limit = timeout.count() > 0 ? timeout : Duration{10'000'000};
  if (auto it = ds.options.find("connect_timeout"); it != ds.options.end()) {
    const Duration own{std::stoll(it->second) * 1'000'000};
    if (own.count() > 0) limit = std::min(limit, own);
  }
  if (ds.host.empty() || ds.host[0] == '/' || is_ip_literal(ds.host)) {
    pg_connect_start(ds, "", app_name, limit, shared, std::move(done));
    return;
  }
  // A host name: resolve it on a worker (getaddrinfo blocks), then connect on the loop.
  shared->offload<std::string>(
      [host = ds.host]() -> std::string {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        std::string addr;
        if (getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0 && res) {
          char text[INET6_ADDRSTRLEN] = {};
          const void* src = res->ai_family == AF_INET
                                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr)
                                : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr);
          if (inet_ntop(res->ai_family, src, text, sizeof text)) addr = text;
          freeaddrinfo(res);
        }
        return addr;
      },
      [ds, app_name, limit, shared, done = std::move(done)](std::string addr) mutable {
        if (addr.empty()) {
          db::ConnectOutcome out;
          out.error = db::Error{
              db::Status::unavailable,
              fmt::format("cannot connect to PostgreSQL at {}: cannot resolve host \"{}\"", ds.server_name(), ds.host)};
          return done(std::move(out));
        }
        pg_connect_start(ds, addr, app_name, limit, shared, std::move(done));
      },
      shared);
}

}  // namespace

DbConnector::DbConnector(asio::io_context& io, Logger& log, size_t worker_threads)
    : workers_(std::make_unique<DbWorkers>(worker_threads)),
      shared_(std::make_shared<Shared>(io, log, workers_.get())) {}

DbConnector::~DbConnector() {
  shared_->alive = false;
  workers_.reset();  // finishes queued calls and joins: nothing posts to the loop after this
  // What waits for a completion goes now, while the env stands (see Shared::pending).
  auto pending = std::move(shared_->pending);
  shared_->pending.clear();
  pending.clear();
  for (const auto& w : shared_->connects)
    if (auto c = w.lock()) {
      c->finished = true;
      auto done = std::move(c->done);
      c->done = nullptr;
    }
  shared_->connects.clear();
}

void DbConnector::connect(const std::string& driver, const std::string& data_source,
                          const std::string& application_name, Duration timeout,
                          std::function<void(db::ConnectOutcome)> done) {
  auto parsed = db::parse_data_source(driver, data_source);
  if (!parsed.ok()) {
    asio::post(shared_->io, [done = std::move(done), error = parsed.error.message] {
      db::ConnectOutcome out;
      out.error = db::Error{db::Status::bad_request, error};
      done(std::move(out));
    });
    return;
  }
  if (parsed.value.dialect == db::Dialect::postgres) {
    open_pg(parsed.value, application_name, timeout, shared_, std::move(done));
    return;
  }
  auto shared = shared_;
  // ConnectOutcome holds a unique_ptr: carry it through a shared_ptr across threads.
  using Holder = std::shared_ptr<db::ConnectOutcome>;
  shared_->offload<Holder>(
      [ds = parsed.value, shared]() -> Holder { return std::make_shared<db::ConnectOutcome>(open_sqlite(ds, shared)); },
      [done = std::move(done)](Holder h) { done(std::move(*h)); }, shared_);
}

}  // namespace chorus::runtime
