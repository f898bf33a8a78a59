#include "server/store/router.h"

#include <fmt/format.h>

#include "server/core/data_source.h"

namespace chorus::store {

const char* to_string(Role role) {
  switch (role) {
    case Role::master:
      return "master";
    case Role::replica:
      return "replica";
    case Role::search:
      return "search replica";
  }
  return "?";
}

std::vector<std::string> check_data_sources(const config::SqlSettings& sql) {
  std::vector<std::string> errors;
  auto check = [&](const std::string& setting, const std::string& text) {
    auto parsed = db::parse_data_source(sql.DriverName, text);
    if (!parsed.ok()) errors.push_back(fmt::format("{}: {}", setting, parsed.error.message));
  };
  check("SqlSettings.DataSource", sql.DataSource);
  for (size_t i = 0; i < sql.DataSourceReplicas.size(); ++i)
    check(fmt::format("SqlSettings.DataSourceReplicas[{}]", i), sql.DataSourceReplicas[i]);
  for (size_t i = 0; i < sql.DataSourceSearchReplicas.size(); ++i)
    check(fmt::format("SqlSettings.DataSourceSearchReplicas[{}]", i), sql.DataSourceSearchReplicas[i]);
  return errors;
}

namespace {
std::string redacted(const std::string& driver, const std::string& text) {
  auto parsed = db::parse_data_source(driver, text);
  return parsed.ok() ? parsed.value.redacted() : text;
}
}  // namespace

Router::Router(Env& env, const config::SqlSettings& sql, std::string application_name)
    : env_(env), sql_(sql), application_name_(std::move(application_name)) {
  master_ = make_server(Role::master, sql_.DataSource);
  rebuild(replicas_, Role::replica, sql_.DataSourceReplicas);
  rebuild(search_, Role::search, sql_.DataSourceSearchReplicas);
}

Router::~Router() {
  *alive_ = false;
  if (monitor_timer_) env_.cancel_timer(monitor_timer_);
}

PoolOptions Router::pool_options(const std::string& data_source) const {
  PoolOptions o;
  o.driver = sql_.DriverName;
  o.data_source = data_source;
  o.application_name = application_name_;
  o.max_open = sql_.MaxOpenConns;
  o.max_idle = sql_.MaxIdleConns;
  o.max_lifetime = Duration{sql_.ConnMaxLifetimeMilliseconds * 1000};
  o.max_idle_time = Duration{sql_.ConnMaxIdleTimeMilliseconds * 1000};
  o.connect_timeout = Duration{std::min<int64_t>(sql_.QueryTimeout, 10) * 1'000'000};
  o.acquire_timeout = query_timeout();
  return o;
}

std::shared_ptr<Router::Server> Router::make_server(Role role, const std::string& data_source) {
  auto s = std::make_shared<Server>();
  s->role = role;
  s->data_source = data_source;
  s->name = redacted(sql_.DriverName, data_source);
  s->pool = std::make_unique<Pool>(env_, pool_options(data_source));
  return s;
}

void Router::rebuild(std::vector<std::shared_ptr<Server>>& servers, Role role,
                     const std::vector<std::string>& sources) {
  std::vector<std::shared_ptr<Server>> next;
  for (const auto& ds : sources) {
    auto it = std::find_if(servers.begin(), servers.end(), [&](const auto& s) { return s && s->data_source == ds; });
    if (it != servers.end()) {
      (*it)->pool->set_limits(pool_options(ds));
      next.push_back(std::move(*it));
    } else {
      next.push_back(make_server(role, ds));
    }
  }
  for (auto& old : servers)
    if (old) {
      old->pool->close();
      retired_.push_back(std::move(old));
    }
  servers = std::move(next);
}

void Router::start(std::function<void(db::Error)> done) {
  auto alive = alive_;
  for (auto* list : {&replicas_, &search_})
    for (auto& s : *list) probe(s);
  master_->pool->probe(
      Duration{std::min<int64_t>(sql_.QueryTimeout, 10) * 1'000'000},
      [this, alive, done = std::move(done)](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) {
          done(db::Error{o.error.status, fmt::format("cannot reach the master database (SqlSettings.DataSource {}): {}",
                                                     master_->name, o.error.message)});
          return;
        }
        dialect_ = o.dialect;
        env_.log().info("store: master database {} is reachable", master_->name);
        monitor_timer_ =
            env_.set_timer(Duration{sql_.ReplicaMonitorIntervalSeconds * 1'000'000}, [this] { monitor(); });
        done(db::Error{});
      });
}

void Router::probe(const std::shared_ptr<Server>& server) {
  if (server->probing) return;
  server->probing = true;
  auto alive = alive_;
  server->pool->probe(Duration{std::min<int64_t>(sql_.ReplicaMonitorIntervalSeconds, 5) * 1'000'000},
                      // Weak: the probe's callback lives in the server's own pool (its connection's
                      // operation); owning the server from there made a cycle whose end, at shutdown,
                      // destroyed the pool from inside its own connection's teardown (ASan: a use after
                      // free in Pool::~Pool when a node stopped during a probe).
                      [this, alive, weak = std::weak_ptr<Server>(server)](db::Outcome o) {
                        if (!*alive) return;
                        const auto server = weak.lock();
                        if (!server) return;
                        server->probing = false;
                        if (o.ok() && !server->online) {
                          server->online = true;
                          env_.log().info("store: {} {} is back online", to_string(server->role), server->name);
                        } else if (!o.ok() && server->online) {
                          server->online = false;
                          ++server->failures;
                          server->pool->recycle();  // its connections are suspect
                          env_.log().warn("store: {} {} is offline: {}", to_string(server->role), server->name,
                                          o.error.message);
                        }
                      });
}

void Router::monitor() {
  monitor_timer_ = 0;
  for (auto* list : {&replicas_, &search_})
    for (auto& s : *list) probe(s);
  // Drop retired pools that have finished their requests.
  std::erase_if(retired_, [](const auto& s) {
    const auto st = s->pool->stats();
    return st.busy == 0 && st.waiting == 0;
  });
  monitor_timer_ = env_.set_timer(Duration{sql_.ReplicaMonitorIntervalSeconds * 1'000'000}, [this] { monitor(); });
}

void Router::write(std::vector<db::Statement> statements, bool transaction, db::Done done) {
  master_->pool->run(std::move(statements), transaction, query_timeout(), std::move(done));
}

std::vector<std::shared_ptr<Router::Server>> Router::online(std::vector<std::shared_ptr<Server>>& servers,
                                                            size_t& cursor) {
  std::vector<std::shared_ptr<Server>> out;
  if (servers.empty()) return out;
  const size_t start = cursor++ % servers.size();
  for (size_t i = 0; i < servers.size(); ++i) {
    auto& s = servers[(start + i) % servers.size()];
    if (s->online) out.push_back(s);
  }
  return out;
}

void Router::read(std::vector<db::Statement> statements, db::Done done) {
  auto candidates = online(replicas_, replica_cursor_);
  candidates.push_back(master_);
  read_from(std::move(candidates), 0, std::move(statements), std::move(done));
}

void Router::search(std::vector<db::Statement> statements, db::Done done) {
  auto candidates = online(search_, search_cursor_);
  for (auto& r : online(replicas_, replica_cursor_)) candidates.push_back(std::move(r));
  candidates.push_back(master_);
  read_from(std::move(candidates), 0, std::move(statements), std::move(done));
}

void Router::read_from(std::vector<std::shared_ptr<Server>> candidates, size_t index,
                       std::vector<db::Statement> statements, db::Done done) {
  auto server = candidates[index];
  ++server->reads;
  auto alive = alive_;
  // A failed attempt is retried on the next candidate with the same statements: keep a copy if there is one.
  std::vector<db::Statement> retry_statements;
  if (index + 1 < candidates.size()) retry_statements = statements;
  server->pool->run(std::move(statements), false, query_timeout(),
                    [this, alive, candidates = std::move(candidates), index, server,
                     retry_statements = std::move(retry_statements), done = std::move(done)](db::Outcome o) mutable {
                      if (!*alive) return;
                      const bool last = index + 1 >= candidates.size();
                      // This node's pool refused (queue full, pool retired by a reload): the server is fine, try the
                      // next.
                      if (o.error.status == db::Status::overloaded && !last) {
                        read_from(std::move(candidates), index + 1, std::move(retry_statements), std::move(done));
                        return;
                      }
                      if (o.error.status == db::Status::unavailable && server->role != Role::master) {
                        ++server->failures;
                        if (server->online) {
                          server->online = false;
                          server->pool->recycle();
                          env_.log().warn("store: {} {} is offline: {}", to_string(server->role), server->name,
                                          o.error.message);
                        }
                        if (!last) {
                          read_from(std::move(candidates), index + 1, std::move(retry_statements), std::move(done));
                          return;
                        }
                      }
                      done(std::move(o));
                    });
}

void Router::reload(const config::SqlSettings& sql) {
  const bool master_changed = sql.DataSource != sql_.DataSource || sql.DriverName != sql_.DriverName;
  sql_ = sql;
  if (master_changed) {
    env_.log().info("store: master database changes to {}", redacted(sql_.DriverName, sql_.DataSource));
    master_->pool->close();
    retired_.push_back(std::move(master_));
    master_ = make_server(Role::master, sql_.DataSource);
  } else {
    master_->pool->set_limits(pool_options(sql_.DataSource));
  }
  rebuild(replicas_, Role::replica, sql_.DataSourceReplicas);
  rebuild(search_, Role::search, sql_.DataSourceSearchReplicas);
  for (auto* list : {&replicas_, &search_})
    for (auto& s : *list) probe(s);
}

void Router::recycle() {
  env_.log().info("store: recycling every database connection");
  master_->pool->recycle();
  for (auto* list : {&replicas_, &search_})
    for (auto& s : *list) s->pool->recycle();
}

std::vector<ServerStatus> Router::status() const {
  std::vector<ServerStatus> out;
  auto add = [&](const Server& s) {
    out.push_back(ServerStatus{s.role, s.name, s.online, s.reads, s.failures, s.pool->stats()});
  };
  add(*master_);
  for (const auto& s : replicas_) add(*s);
  for (const auto& s : search_) add(*s);
  return out;
}

}  // namespace chorus::store
