// Schema migrations at start, safe when many nodes start at once on one database.
//
// Every node runs the same steps: create the bookkeeping tables if missing (db_migrations, db_lock);
// read the applied migrations; refuse a schema that is more than one minor version ahead of this binary
// (or of another major version); and if migrations are pending, take the migration lock - a row in
// db_lock with a lease (15 s, refreshed every 5 s while held, so a holder that dies releases it by
// expiry) - re-read, apply each pending migration in its own transaction together with its
// db_migrations row, and release the lock. A node that does not get the lock retries every second until
// the migrations are there. db_migrations' primary key is the last line of defence: a migration can
// never be recorded twice, so even a holder that lost its lease (paused past the lease) cannot apply one
// twice - its transaction fails and it re-reads. Lease times are wall-clock milliseconds of the nodes,
// which the HA guide requires to be NTP-synchronised; skew beyond the lease shortens it, nothing worse.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "server/core/env.h"
#include "server/store/router.h"
#include "server/store/schema.h"

namespace chorus::store {

struct MigrationOptions {
  std::string holder;          // who takes the lock: the node's name
  std::string binary_version;  // "major.minor.patch" of this binary
  Duration lease{15'000'000};
  Duration refresh{5'000'000};
  Duration retry{1'000'000};
  Duration give_up{600'000'000};  // waiting longer than this for another node's migration is an error
};

struct MigrationResult {
  db::Error error;             // set when the node must not start
  int applied_here = 0;        // migrations this node applied
  int schema_version = 0;      // highest migration number in the database
  std::string schema_release;  // release of the newest applied migration ("0.1")
};

// "0.1" and "0.2" are compatible with a 0.1.x binary; "0.3" and "1.0" are not. Exposed for tests.
Failure schema_compatible(const std::string& schema_release, const std::string& binary_version);

class Migrator {
 public:
  Migrator(Env& env, Router& router, const std::vector<Migration>& migrations, MigrationOptions options);
  ~Migrator();
  void run(std::function<void(MigrationResult)> done);

 private:
  void bootstrap();
  void read_applied();
  void try_lock();
  void apply_next(size_t index);
  void release_and_finish(db::Error error);
  void finish(db::Error error);
  void retry_later(void (Migrator::*step)());
  void refresh_lease();

  Env& env_;
  Router& router_;
  const std::vector<Migration> migrations_;  // a copy: the store may add its own
  MigrationOptions options_;
  std::function<void(MigrationResult)> done_;
  MigrationResult result_;
  std::vector<int> applied_;
  std::vector<const Migration*> pending_;
  MonoTime started_;
  bool holding_ = false;
  bool logged_waiting_ = false;
  int bootstrap_attempts_ = 0;
  int failed_version_ = 0;  // the migration whose last attempt failed (retried once after a re-read)
  TimerId timer_ = 0;
  TimerId lease_timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::store
