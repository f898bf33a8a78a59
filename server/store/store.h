// The store: everything a node keeps in the database, reached through one object.
//
// It owns the router (master, read replicas, search replicas, with health checks and pools) and runs
// the migrations at start. start() fails when the master cannot be reached, when the schema is newer
// than this binary allows, or when a migration fails: the node must then not serve. Above it, app code
// calls write() for changes and for reads that must see them, read() for other reads and search() for
// searches. Runs unchanged on the simulator and in production: all it needs is an Env.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/config/config.h"
#include "server/core/env.h"
#include "server/store/migrations.h"
#include "server/store/router.h"

namespace chorus::store {

struct StoreOptions {
  std::string node_name;
  std::string binary_version;
  MigrationOptions migration;  // holder and binary_version are filled from the two above
  // Migrations after the built-in ones: what a later release adds (the simulator's schema upgrades).
  std::vector<Migration> extra_migrations;
};

class Store {
 public:
  Store(Env& env, const config::SqlSettings& sql, StoreOptions options);
  ~Store();

  void start(std::function<void(db::Error)> done);

  void write(std::vector<db::Statement> statements, bool transaction, db::Done done) {
    router_->write(std::move(statements), transaction, std::move(done));
  }
  void read(std::vector<db::Statement> statements, db::Done done) {
    router_->read(std::move(statements), std::move(done));
  }
  void search(std::vector<db::Statement> statements, db::Done done) {
    router_->search(std::move(statements), std::move(done));
  }

  // Config reload: new data sources and limits. Errors (bad data sources) leave the store unchanged.
  std::vector<std::string> reload(const config::SqlSettings& sql);
  void recycle() { router_->recycle(); }

  Router& router() { return *router_; }
  const MigrationResult& schema() const { return schema_; }
  // "2 (release 0.1)": what this node sees of the schema, for peer status.
  std::string schema_version() const;

 private:
  Env& env_;
  StoreOptions options_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Migrator> migrator_;
  MigrationResult schema_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::store
