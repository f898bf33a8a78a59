#include "server/store/store.h"

#include <fmt/format.h>

namespace chorus::store {

Store::Store(Env& env, const config::SqlSettings& sql, StoreOptions options) : env_(env), options_(std::move(options)) {
  router_ = std::make_unique<Router>(env_, sql, "chorus:" + options_.node_name);
}

Store::~Store() {
  *alive_ = false;
  migrator_.reset();
  router_.reset();
}

void Store::start(std::function<void(db::Error)> done) {
  auto alive = alive_;
  router_->start([this, alive, done = std::move(done)](db::Error error) mutable {
    if (!*alive) return;
    if (error.status != db::Status::ok) return done(error);
    MigrationOptions m = options_.migration;
    m.holder = options_.node_name;
    m.binary_version = options_.binary_version;
    std::vector<Migration> all = migrations();
    all.insert(all.end(), options_.extra_migrations.begin(), options_.extra_migrations.end());
    migrator_ = std::make_unique<Migrator>(env_, *router_, all, m);
    migrator_->run([this, alive, done = std::move(done)](MigrationResult result) {
      if (!*alive) return;
      schema_ = result;
      done(result.error);
    });
  });
}

std::vector<std::string> Store::reload(const config::SqlSettings& sql) {
  auto errors = check_data_sources(sql);
  if (errors.empty()) router_->reload(sql);
  return errors;
}

std::string Store::schema_version() const {
  if (schema_.schema_version == 0) return "";
  return fmt::format("{} (release {})", schema_.schema_version, schema_.schema_release);
}

}  // namespace chorus::store
