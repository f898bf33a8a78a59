#include "server/store/migrations.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace chorus::store {

namespace {

bool parse_major_minor(const std::string& v, int& major, int& minor) {
  const auto dot = v.find('.');
  if (dot == std::string::npos) return false;
  const auto end2 = v.find('.', dot + 1);
  const std::string a = v.substr(0, dot),
                    b = v.substr(dot + 1, end2 == std::string::npos ? std::string::npos : end2 - dot - 1);
  auto r1 = std::from_chars(a.data(), a.data() + a.size(), major);
  auto r2 = std::from_chars(b.data(), b.data() + b.size(), minor);
  return r1.ec == std::errc() && r2.ec == std::errc() && !a.empty() && !b.empty();
}

db::Statement stmt(std::string sql, std::vector<db::Value> params = {}, int64_t expect = -1) {
  return db::Statement{std::move(sql), std::move(params), expect};
}

const char* kLockId = "migrations";

}  // namespace

Failure schema_compatible(const std::string& schema_release, const std::string& binary_version) {
  int smaj = 0, smin = 0, bmaj = 0, bmin = 0;
  if (!parse_major_minor(schema_release, smaj, smin) || !parse_major_minor(binary_version, bmaj, bmin))
    return Failure{
        fmt::format("cannot compare schema release \"{}\" with binary version \"{}\"", schema_release, binary_version)};
  if (smaj != bmaj)
    return Failure{fmt::format("the database schema is at release {} and this binary is {}: major versions differ",
                               schema_release, binary_version)};
  if (smin > bmin + 1)
    return Failure{
        fmt::format("the database schema is at release {}, more than one minor version ahead of this binary "
                    "({}): upgrade this node to {}.{} or later",
                    schema_release, binary_version, smaj, smin - 1)};
  return {};
}

Migrator::Migrator(Env& env, Router& router, const std::vector<Migration>& migrations, MigrationOptions options)
    : env_(env), router_(router), migrations_(migrations), options_(std::move(options)) {}

Migrator::~Migrator() {
  *alive_ = false;
  if (timer_) env_.cancel_timer(timer_);
  if (lease_timer_) env_.cancel_timer(lease_timer_);
}

void Migrator::run(std::function<void(MigrationResult)> done) {
  done_ = std::move(done);
  started_ = env_.now();
  bootstrap();
}

void Migrator::retry_later(void (Migrator::*step)()) {
  if (env_.now() - started_ > options_.give_up) {
    finish(db::Error{
        db::Status::timeout,
        fmt::format("gave up waiting for the schema migration after {} s (is another node stuck holding the lock?)",
                    to_ms(options_.give_up) / 1000)});
    return;
  }
  timer_ = env_.set_timer(options_.retry, [this, step] {
    timer_ = 0;
    (this->*step)();
  });
}

void Migrator::bootstrap() {
  auto alive = alive_;
  router_.write({stmt("CREATE TABLE IF NOT EXISTS db_migrations (Version INTEGER PRIMARY KEY, Name TEXT NOT NULL,"
                      " Release VARCHAR(16) NOT NULL, AppliedAt BIGINT NOT NULL, AppliedBy TEXT NOT NULL)"),
                 stmt("CREATE TABLE IF NOT EXISTS db_lock (Id VARCHAR(64) PRIMARY KEY, Holder TEXT NOT NULL, ExpireAt "
                      "BIGINT NOT NULL)")},
                false, [this, alive](db::Outcome o) {
                  if (!*alive) return;
                  // Nodes creating the same table at the same instant can collide (PostgreSQL reports a
                  // duplicate key in its catalog, or a duplicate table): retry a few times.
                  if (!o.ok() && o.error.status != db::Status::unavailable && ++bootstrap_attempts_ < 5) {
                    env_.log().info("store: creating the migration tables collided ({}); retrying", o.error.message);
                    return retry_later(&Migrator::bootstrap);
                  }
                  if (!o.ok())
                    return finish(db::Error{o.error.status, "cannot create the migration tables: " + o.error.message});
                  read_applied();
                });
}

void Migrator::read_applied() {
  auto alive = alive_;
  router_.write({stmt("SELECT Version, Release FROM db_migrations ORDER BY Version")}, false,
                [this, alive](db::Outcome o) {
                  if (!*alive) return;
                  if (!o.ok())
                    return release_and_finish(
                        db::Error{o.error.status, "cannot read the applied migrations: " + o.error.message});
                  applied_.clear();
                  result_.schema_version = 0;
                  result_.schema_release.clear();
                  for (const auto& row : o.result().rows) {
                    const int v = static_cast<int>(std::get<int64_t>(row[0]));
                    applied_.push_back(v);
                    if (v >= result_.schema_version) {
                      result_.schema_version = v;
                      result_.schema_release = std::get<std::string>(row[1]);
                    }
                  }
                  if (!result_.schema_release.empty()) {
                    if (Failure why = schema_compatible(result_.schema_release, options_.binary_version); !why.ok())
                      return release_and_finish(db::Error{db::Status::bad_request, why.message});
                  }
                  pending_.clear();
                  for (const auto& m : migrations_)
                    if (std::find(applied_.begin(), applied_.end(), m.version) == applied_.end())
                      pending_.push_back(&m);
                  if (pending_.empty()) return release_and_finish(db::Error{});
                  if (holding_) return apply_next(0);
                  try_lock();
                });
}

void Migrator::try_lock() {
  auto alive = alive_;
  const int64_t now_ms = env_.wall_now().millis();
  const int64_t expire_ms = now_ms + to_ms(options_.lease);
  router_.write({stmt("INSERT INTO db_lock (Id, Holder, ExpireAt) VALUES ($1, $2, $3) ON CONFLICT (Id) DO UPDATE"
                      " SET Holder = excluded.Holder, ExpireAt = excluded.ExpireAt WHERE db_lock.ExpireAt < $4",
                      {std::string(kLockId), options_.holder, expire_ms, now_ms})},
                false, [this, alive](db::Outcome o) {
                  if (!*alive) return;
                  if (!o.ok() && o.error.status != db::Status::conflict)
                    return finish(db::Error{o.error.status, "cannot take the migration lock: " + o.error.message});
                  if (o.ok() && o.result().affected == 1) {
                    holding_ = true;
                    env_.log().info("store: took the migration lock; {} migrations pending", pending_.size());
                    lease_timer_ = env_.set_timer(options_.refresh, [this] { refresh_lease(); });
                    return read_applied();  // re-read under the lock: another node may have just finished
                  }
                  if (!logged_waiting_) {
                    env_.log().info("store: another node holds the migration lock; waiting for it");
                    logged_waiting_ = true;
                  }
                  retry_later(&Migrator::read_applied);
                });
}

void Migrator::refresh_lease() {
  lease_timer_ = 0;
  if (!holding_) return;
  auto alive = alive_;
  const int64_t expire_ms = env_.wall_now().millis() + to_ms(options_.lease);
  router_.write(
      {stmt("UPDATE db_lock SET ExpireAt = $1 WHERE Id = $2 AND Holder = $3",
            {expire_ms, std::string(kLockId), options_.holder})},
      false, [this, alive](db::Outcome o) {
        if (!*alive || !holding_) return;
        if (o.ok() && o.result().affected == 0)
          env_.log().warn(
              "store: lost the migration lock (lease expired); db_migrations' key still prevents a double migration");
        lease_timer_ = env_.set_timer(options_.refresh, [this] { refresh_lease(); });
      });
}

void Migrator::apply_next(size_t index) {
  if (index >= pending_.size()) return release_and_finish(db::Error{});
  const Migration& m = *pending_[index];
  std::vector<db::Statement> statements;
  for (const auto& sql : m.statements) statements.push_back(stmt(sql));
  for (const auto& sql : router_.dialect() == db::Dialect::postgres ? m.postgres : m.sqlite)
    statements.push_back(stmt(sql));
  statements.push_back(
      stmt("INSERT INTO db_migrations (Version, Name, Release, AppliedAt, AppliedBy) VALUES ($1, $2, $3, $4, $5)",
           {static_cast<int64_t>(m.version), std::string(m.name), std::string(m.introduced_in),
            env_.wall_now().millis(), options_.holder}));
  auto alive = alive_;
  router_.write(std::move(statements), true, [this, alive, index, &m](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) {
      // Either another node recorded it first (we lost the lease: nothing was applied twice), or the
      // migration itself failed. Re-read: if it is still unrecorded, it failed, and so do we.
      if (failed_version_ == m.version) {
        return release_and_finish(
            db::Error{o.error.status, fmt::format("migration {} ({}) failed: {}", m.version, m.name, o.error.message)});
      }
      failed_version_ = m.version;
      env_.log().warn("store: migration {} did not apply ({}); checking whether another node applied it", m.version,
                      o.error.message);
      return read_applied();
    }
    ++result_.applied_here;
    result_.schema_version = std::max(result_.schema_version, m.version);
    result_.schema_release = m.introduced_in;
    env_.log().info("store: applied migration {} ({})", m.version, m.name);
    apply_next(index + 1);
  });
}

void Migrator::release_and_finish(db::Error error) {
  if (!holding_) return finish(std::move(error));
  holding_ = false;
  if (lease_timer_) env_.cancel_timer(lease_timer_);
  lease_timer_ = 0;
  auto alive = alive_;
  router_.write({stmt("DELETE FROM db_lock WHERE Id = $1 AND Holder = $2", {std::string(kLockId), options_.holder})},
                false, [this, alive, error = std::move(error)](db::Outcome) {
                  if (*alive) finish(error);  // a failed release expires with the lease
                });
}

void Migrator::finish(db::Error error) {
  result_.error = std::move(error);
  if (result_.error.status == db::Status::ok)
    env_.log().info("store: schema at migration {} (release {}); {} applied by this node", result_.schema_version,
                    result_.schema_release, result_.applied_here);
  auto done = std::move(done_);
  done_ = nullptr;
  if (done) done(result_);
}

}  // namespace chorus::store
