#include "simulator/sim_database.h"

#include <fmt/format.h>

#include <cassert>
#include <cctype>

#include "server/core/codec.h"
#include "server/core/data_source.h"
#include "simulator/sim_env.h"

namespace chorus::sim {

namespace {

bool is_write(const std::string& sql) {
  size_t i = 0;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
  return word != "SELECT" && word != "EXPLAIN";
}

bool has_write(const std::vector<db::Statement>& statements) {
  for (const auto& s : statements)
    if (is_write(s.sql)) return true;
  return false;
}

db::Outcome failure(db::Status status, std::string message) {
  db::Outcome o;
  o.error = db::Error{status, std::move(message)};
  return o;
}

uint64_t hash_text(const std::string& text, uint64_t h) {
  return fnv1a64(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), h);
}

// The trace covers what a node asked (SQL and parameters) and what it was answered (status and rows).
uint64_t sql_hash(const std::vector<db::Statement>& statements) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& s : statements) {
    h = hash_text(s.sql, h);
    for (const auto& v : s.params) h = hash_text(db::to_string(v) + '\x1f', h);
  }
  return h;
}

uint64_t outcome_hash(const db::Outcome& o) {
  uint64_t h = hash_text(std::string(db::to_string(o.error.status)) + o.error.message, 0xcbf29ce484222325ULL);
  for (const auto& rs : o.value) {
    h = hash_text(std::to_string(rs.affected) + '\x1e', h);
    for (const auto& row : rs.rows)
      for (const auto& v : row) h = hash_text(db::to_string(v) + '\x1f', h);
  }
  return h;
}

}  // namespace

// ---------------- the server

SimDbServer::SimDbServer(Kernel& kernel, DbServerOptions options) : kernel_(kernel), options_(std::move(options)) {
  const int rc = sqlite3_open(":memory:", &db_);
  assert(rc == SQLITE_OK);
  (void)rc;
  session_ = std::make_unique<runtime::SqliteSession>(db_);
}

SimDbServer::~SimDbServer() {
  session_.reset();
  sqlite3_close(db_);
}

Duration SimDbServer::service_time(size_t statements) const {
  return Duration{static_cast<int64_t>(
      static_cast<double>(options_.service_time.count() * static_cast<int64_t>(statements)) * slow_factor_)};
}

void SimDbServer::stop() {
  if (!up_) return;
  up_ = false;
  ++epoch_;
  kernel_.record(TraceKind::db, kNoNode, kNoNode, 0xd0);
}

void SimDbServer::start() {
  if (up_) return;
  up_ = true;
  kernel_.record(TraceKind::db, kNoNode, kNoNode, 0xd1);
  if (primary_) schedule_apply();
}

void SimDbServer::promote() {
  if (!primary_) return;
  auto& siblings = primary_->replicas_;
  siblings.erase(std::remove(siblings.begin(), siblings.end(), this), siblings.end());
  primary_ = nullptr;
  options_.primary.clear();
  kernel_.record(TraceKind::db, kNoNode, kNoNode, 0xd2);
}

db::Outcome SimDbServer::execute(const std::vector<db::Statement>& statements, bool transaction) {
  statements_run_ += statements.size();
  const bool writes = has_write(statements);
  if (writes && read_only())
    return failure(db::Status::read_only,
                   "cannot execute a write in a read-only transaction (this server is a replica)");
  if (!writes || replicas_.empty()) return session_->run(statements, transaction, 0);
  if (transaction) {
    db::Outcome o = session_->run(statements, true, 0);
    if (o.ok()) ship(statements, true);
    return o;
  }
  // Outside a transaction each statement commits on its own: ship exactly those that did, so a batch
  // that fails half-way leaves the replicas as it leaves the primary.
  db::Outcome all;
  for (const auto& st : statements) {
    db::Outcome one = session_->run({st}, false, 0);
    if (!one.ok()) {
      all.error = one.error;
      all.value.clear();
      return all;
    }
    if (is_write(st.sql)) ship({st}, false);
    all.value.push_back(std::move(one.value.at(0)));
  }
  return all;
}

void SimDbServer::ship(std::vector<db::Statement> statements, bool transaction) {
  log_.push_back(LogEntry{kernel_.now_us(), std::move(statements), transaction});
  for (SimDbServer* r : replicas_) r->schedule_apply();
}

void SimDbServer::schedule_apply() {
  // One pending apply at a time, due when the oldest unapplied entry is: no event chains pile up.
  if (apply_pending_ || !primary_ || applied_ >= primary_->log_.size()) return;
  apply_pending_ = true;
  const int64_t due = std::max(kernel_.now_us(), primary_->log_[applied_].commit_us + options_.replication_lag.count());
  kernel_.at(Duration{due}, [this] {
    apply_pending_ = false;
    if (primary_ && up_) replicate_from(*primary_);
  });
}

void SimDbServer::replicate_from(SimDbServer& primary) {
  const int64_t now = kernel_.now_us();
  while (applied_ < primary.log_.size() && primary.log_[applied_].commit_us + options_.replication_lag.count() <= now) {
    const auto& e = primary.log_[applied_++];
    session_->run(e.statements, e.transaction, 0);
    if (!replicas_.empty()) ship(e.statements, e.transaction);  // cascading replicas
  }
  schedule_apply();
}

// ---------------- the registry

SimDbServer& SimDatabases::add(DbServerOptions options) {
  assert(find(options.name) == nullptr);
  servers_.push_back(std::make_unique<SimDbServer>(kernel_, std::move(options)));
  SimDbServer& s = *servers_.back();
  if (!s.options_.primary.empty()) {
    SimDbServer* p = find(s.options_.primary);
    assert(p != nullptr && "a replica's primary must be added first");
    s.primary_ = p;
    p->replicas_.push_back(&s);
    s.applied_ = p->log_.size();
    // A new replica starts as a copy of its primary (pg_basebackup): copy the database.
    sqlite3_backup* b = sqlite3_backup_init(s.db_, "main", p->db_, "main");
    if (b) {
      sqlite3_backup_step(b, -1);
      sqlite3_backup_finish(b);
    }
  }
  return s;
}

SimDbServer* SimDatabases::find(const std::string& name) {
  for (auto& s : servers_)
    if (s->name() == name) return s.get();
  return nullptr;
}

void SimDatabases::cut(NodeIndex node, const std::string& server, bool is_cut) {
  if (is_cut)
    cuts_.insert({node, server});
  else
    cuts_.erase({node, server});
  kernel_.record(TraceKind::link_change, node, kNoNode, is_cut ? 0xdc : 0xdd);
}

bool SimDatabases::is_cut(NodeIndex node, const std::string& server) const { return cuts_.contains({node, server}); }

// ---------------- node side

namespace {

struct CallState {
  bool answered = false;
  TimerId timeout_timer = 0;
};

class SimDbConnection final : public db::Connection {
 public:
  SimDbConnection(SimDatabases& dbs, SimEnv& env, NodeIndex node, SimDbServer& server)
      : dbs_(dbs), env_(env), node_(node), server_(server), epoch_(server.epoch()), name_(server.name()) {}

  void run(std::vector<db::Statement> statements, bool transaction, Duration timeout, db::Done done) override {
    Kernel& k = dbs_.kernel();
    if (!*usable_) {
      env_.post([done = std::move(done)] { done(failure(db::Status::unavailable, "the connection is closed")); });
      return;
    }
    auto state = std::make_shared<CallState>();
    auto shared_done = std::make_shared<db::Done>(std::move(done));
    auto usable = usable_;
    // The caller's timeout (QueryTimeout): the answer may never come (a cut network, a stuck server).
    if (timeout.count() > 0) {
      state->timeout_timer = env_.set_timer(timeout, [state, shared_done, usable] {
        if (state->answered) return;
        state->answered = true;
        *usable = false;  // the statement's fate on the server is unknown: do not reuse this connection
        (*shared_done)(failure(db::Status::timeout, "the query timed out"));
      });
    }
    const int64_t arrive = k.now_us() + sample(k);
    const uint32_t incarnation = k.incarnation(node_);
    SimDbServer* server = &server_;
    const uint32_t epoch = epoch_;
    NodeIndex node = node_;
    SimDatabases* dbs = &dbs_;
    // The answer's callback belongs to the node: the kernel empties this box if the node is torn down
    // before the answer gets back (the query still runs on the server, as it would).
    auto box = std::make_shared<std::shared_ptr<db::Done>>(shared_done);
    k.release_at_teardown(node_, box);
    k.at(Duration{arrive}, [dbs, server, epoch, node, incarnation, state, box, usable,
                            statements = std::move(statements), transaction]() {
      Kernel& k = dbs->kernel();
      if (dbs->is_cut(node, server->name())) return;  // lost on the way: the timeout answers
      k.record(TraceKind::db, node, kNoNode, sql_hash(statements));
      db::Outcome o;
      int64_t reply = k.now_us() + server->options().latency.sample(k.random()).count();
      if (!server->up() || server->epoch() != epoch) {
        o = failure(db::Status::unavailable, fmt::format("server {} closed the connection", server->name()));
        *usable = false;
      } else {
        o = server->execute(statements, transaction);
        reply += server->service_time(statements.size()).count();
      }
      k.record(TraceKind::db, node, kNoNode, outcome_hash(o));
      std::shared_ptr<db::Done> done = std::move(*box);
      if (!done) return;  // the node is gone
      k.call_on_node(node, incarnation, reply, [state, done, o = std::move(o)]() mutable {
        if (state->answered) return;
        state->answered = true;
        (*done)(std::move(o));
      });
    });
  }
  bool usable() const override { return *usable_ && server_.epoch() == epoch_; }
  const std::string& server() const override { return name_; }

 private:
  int64_t sample(Kernel& k) const { return server_.options().latency.sample(k.random()).count(); }
  SimDatabases& dbs_;
  SimEnv& env_;
  NodeIndex node_;
  SimDbServer& server_;
  uint32_t epoch_;
  std::string name_;
  std::shared_ptr<bool> usable_ = std::make_shared<bool>(true);
};

class SimDbConnector final : public db::Connector {
 public:
  SimDbConnector(SimDatabases& dbs, SimEnv& env, NodeIndex node) : dbs_(dbs), env_(env), node_(node) {}
  void connect(const std::string& driver, const std::string& data_source, const std::string& application_name,
               Duration timeout, std::function<void(db::ConnectOutcome)> done) override {
    auto parsed = db::parse_data_source(driver, data_source);
    auto shared_done = std::make_shared<std::function<void(db::ConnectOutcome)>>(std::move(done));
    if (!parsed.ok()) {
      env_.post([shared_done, error = parsed.error.message] {
        (*shared_done)(db::ConnectOutcome{db::Error{db::Status::bad_request, error}, nullptr});
      });
      return;
    }
    const std::string name = parsed.value.dialect == db::Dialect::postgres ? parsed.value.host : parsed.value.path;
    SimDbServer* server = dbs_.find(name);
    if (!server) {
      env_.post([shared_done, name] {
        (*shared_done)(db::ConnectOutcome{
            db::Error{db::Status::unavailable, fmt::format("could not resolve host \"{}\"", name)}, nullptr});
      });
      return;
    }
    Kernel& k = dbs_.kernel();
    auto state = std::make_shared<CallState>();
    state->timeout_timer = env_.set_timer(timeout, [state, shared_done, name] {
      if (state->answered) return;
      state->answered = true;
      (*shared_done)(db::ConnectOutcome{
          db::Error{db::Status::unavailable, fmt::format("timeout connecting to {}", name)}, nullptr});
    });
    const int64_t arrive = k.now_us() + server->options().latency.sample(k.random()).count();
    const uint32_t incarnation = k.incarnation(node_);
    SimDatabases* dbs = &dbs_;
    SimEnv* env = &env_;
    NodeIndex node = node_;
    auto box = std::make_shared<decltype(shared_done)>(shared_done);  // emptied if the node is torn down first
    k.release_at_teardown(node_, box);
    k.at(Duration{arrive}, [dbs, env, server, node, incarnation, state, box]() {
      Kernel& k = dbs->kernel();
      auto shared_done = std::move(*box);
      if (!shared_done || dbs->is_cut(node, server->name()) || k.incarnation(node) != incarnation) return;
      const int64_t reply = k.now_us() + server->options().latency.sample(k.random()).count();
      const bool up = server->up();
      // env is alive while the incarnation is (checked again when the answer lands).
      k.call_on_node(node, incarnation, reply, [dbs, env, server, node, up, state, shared_done]() {
        if (state->answered) return;
        state->answered = true;
        if (!up) {
          (*shared_done)(db::ConnectOutcome{
              db::Error{db::Status::unavailable, fmt::format("connection to {} refused", server->name())}, nullptr});
          return;
        }
        (*shared_done)(db::ConnectOutcome{db::Error{}, std::make_unique<SimDbConnection>(*dbs, *env, node, *server)});
      });
    });
  }

 private:
  SimDatabases& dbs_;
  SimEnv& env_;
  NodeIndex node_;
};

}  // namespace

std::unique_ptr<db::Connector> SimDatabases::connector_for(NodeIndex node, SimEnv& env) {
  return std::make_unique<SimDbConnector>(*this, env, node);
}

}  // namespace chorus::sim
