// The store in the simulator: the same pools, routing, migrations and failover code as production,
// against simulated database servers (SQLite in memory) that stop, get cut off, slow down, lag and are
// promoted. Virtual time, many seeds.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "server/store/schema.h"
#include "server/store/store.h"
#include "simulator/kernel.h"
#include "simulator/sim_database.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

// A node that opens the store at start and records the outcome.
class StoreNode final : public Process {
 public:
  StoreNode(Env& env, config::SqlSettings sql, std::string version = "0.1.0")
      : env_(env), sql_(std::move(sql)), version_(std::move(version)) {}
  void start() override {
    store = std::make_unique<store::Store>(env_, sql_, store::StoreOptions{env_.node_name(), version_, {}});
    store->start([this](db::Error e) {
      started = true;
      start_error = e;
    });
  }
  void stop(Task done) override {
    store.reset();
    done();
  }
  Env& env_;
  config::SqlSettings sql_;
  std::string version_;
  std::unique_ptr<store::Store> store;
  bool started = false;
  db::Error start_error;
};

config::SqlSettings settings(std::vector<std::string> replicas = {}, std::vector<std::string> search = {}) {
  config::SqlSettings s;
  s.DriverName = "postgres";
  s.DataSource = "postgres://chorus:pw@db1:5432/chorus?sslmode=disable";
  for (auto& r : replicas) s.DataSourceReplicas.push_back("postgres://chorus:pw@" + r + ":5432/chorus");
  for (auto& r : search) s.DataSourceSearchReplicas.push_back("postgres://chorus:pw@" + r + ":5432/chorus");
  s.ReplicaMonitorIntervalSeconds = 1;
  s.QueryTimeout = 5;
  s.MaxOpenConns = 8;
  s.MaxIdleConns = 4;
  return s;
}

struct Cluster {
  Cluster(uint64_t seed, int nodes, const config::SqlSettings& sql, std::vector<DbServerOptions> servers) {
    Kernel::Options o;
    o.seed = seed;
    k = std::make_unique<Kernel>(o);
    for (auto& s : servers) k->databases().add(s);
    for (int i = 0; i < nodes; ++i)
      k->add_node(fmt::format("node{}:8074", i + 1), [sql](Env& env) { return std::make_unique<StoreNode>(env, sql); });
  }
  StoreNode& node(NodeIndex i) { return *dynamic_cast<StoreNode*>(k->process(i)); }
  SimDbServer& db(const std::string& name) { return *k->databases().find(name); }
  bool all_started() {
    for (NodeIndex i = 0; i < k->node_count(); ++i)
      if (k->state(i) == NodeState::up && !node(i).started) return false;
    return true;
  }
  // Runs a store call on node i and waits (in virtual time) for its answer.
  db::Outcome call(NodeIndex i, const std::function<void(store::Store&, db::Done)>& op,
                   Duration limit = Duration{60'000'000}) {
    std::optional<db::Outcome> out;
    op(*node(i).store, [&](db::Outcome o) { out = std::move(o); });
    k->run_until([&] { return out.has_value(); }, k->now() + limit);
    if (!out) return db::Outcome{db::Error{db::Status::timeout, "no answer in the test's limit"}, {}};
    return *out;
  }
  std::unique_ptr<Kernel> k;
};

std::vector<DbServerOptions> primary_and(std::vector<std::string> replicas, Duration lag = Duration{0}) {
  std::vector<DbServerOptions> out = {DbServerOptions{.name = "db1"}};
  for (auto& r : replicas) out.push_back(DbServerOptions{.name = r, .primary = "db1", .replication_lag = lag});
  return out;
}

int64_t count_rows(SimDbServer& s, const std::string& sql) {
  auto o = s.execute({db::Statement{sql, {}}}, false);
  EXPECT_TRUE(o.ok()) << o.error.message;
  return o.ok() ? std::get<int64_t>(o.result().rows.at(0).at(0)) : -1;
}

}  // namespace

TEST(StoreSim, ThreeNodesStartingAtOnceMigrateExactlyOnce) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    Cluster c(seed, 3, settings(), primary_and({}));
    for (NodeIndex i = 0; i < 3; ++i) c.k->start(i);
    ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{30'000'000}));
    int applied = 0, migrators = 0;
    for (NodeIndex i = 0; i < 3; ++i) {
      auto& n = c.node(i);
      ASSERT_EQ(n.start_error.status, db::Status::ok) << n.start_error.message;
      EXPECT_EQ(n.store->schema().schema_version, static_cast<int>(store::migrations().size()));
      EXPECT_EQ(n.store->schema_version(), fmt::format("{} (release 0.1)", store::migrations().size()));
      applied += n.store->schema().applied_here;
      migrators += n.store->schema().applied_here > 0;
    }
    EXPECT_EQ(applied, static_cast<int>(store::migrations().size()));
    EXPECT_EQ(migrators, 1);
    EXPECT_EQ(count_rows(c.db("db1"), "SELECT COUNT(*) FROM db_migrations"),
              static_cast<int64_t>(store::migrations().size()));
    EXPECT_EQ(count_rows(c.db("db1"), "SELECT COUNT(*) FROM db_lock"), 0);  // released
  }
}

TEST(StoreSim, AMigratorThatDiesHoldingTheLockIsReplacedAfterTheLease) {
  int recovered = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    Cluster c(seed, 3, settings(), primary_and({}));
    for (NodeIndex i = 0; i < 3; ++i) c.k->start(i);
    // Crash whichever node takes the lock, right after it takes it.
    NodeIndex victim = kNoNode;
    ASSERT_TRUE(c.k->run_until(
        [&] {
          if (count_rows(c.db("db1"), "SELECT COUNT(*) FROM sqlite_master WHERE name = 'db_lock'") == 0) return false;
          auto o = c.db("db1").execute({db::Statement{"SELECT Holder FROM db_lock", {}}}, false);
          if (!o.ok() || o.result().rows.empty()) return false;
          victim = c.k->find(std::get<std::string>(o.result().rows[0][0]));
          return true;
        },
        Duration{10'000'000}));
    ASSERT_NE(victim, kNoNode);
    c.k->crash(victim);
    const auto crashed_at = c.k->now();
    ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, crashed_at + Duration{60'000'000}));
    for (NodeIndex i = 0; i < 3; ++i) {
      if (i == victim) continue;
      ASSERT_EQ(c.node(i).start_error.status, db::Status::ok) << c.node(i).start_error.message;
      EXPECT_EQ(c.node(i).store->schema().schema_version, static_cast<int>(store::migrations().size()));
    }
    // Nothing recorded twice; the lock was taken over after the victim's lease ran out.
    EXPECT_EQ(count_rows(c.db("db1"), "SELECT COUNT(*) FROM db_migrations"),
              static_cast<int64_t>(store::migrations().size()));
    EXPECT_LE((c.k->now() - crashed_at).count(), 20'000'000);
    ++recovered;
  }
  EXPECT_EQ(recovered, 30);
}

TEST(StoreSim, ANewerSchemaWithinOneMinorIsAcceptedBeyondItRefused) {
  EXPECT_TRUE(store::schema_compatible("0.1", "0.1.0").ok());
  EXPECT_TRUE(store::schema_compatible("0.2", "0.1.5").ok());
  EXPECT_TRUE(store::schema_compatible("0.1", "0.3.0").ok());  // older schemas are migrated forward
  const Failure ahead = store::schema_compatible("0.3", "0.1.0");
  EXPECT_NE(ahead.message.find("upgrade this node to 0.2 or later"), std::string::npos) << ahead.message;
  const Failure major = store::schema_compatible("1.0", "0.9.0");
  EXPECT_NE(major.message.find("major versions differ"), std::string::npos) << major.message;

  Cluster c(1, 1, settings(), primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  // A later release migrated the database further.
  ASSERT_TRUE(c.db("db1")
                  .execute({db::Statement{"INSERT INTO db_migrations VALUES (99, 'future', '0.3', 0, 'x')", {}}}, false)
                  .ok());
  c.k->crash(0);
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, c.k->now() + Duration{10'000'000}));
  EXPECT_EQ(c.node(0).start_error.status, db::Status::bad_request);
  EXPECT_NE(c.node(0).start_error.message.find("more than one minor version ahead"), std::string::npos)
      << c.node(0).start_error.message;
}

TEST(StoreSim, ReadsRoundRobinOverReplicasAndSkipAStoppedOne) {
  Cluster c(7, 1, settings({"db2", "db3"}), primary_and({"db2", "db3"}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  ASSERT_TRUE(c.call(0, [](store::Store& s, db::Done d) {
                 s.write({{"INSERT INTO Systems VALUES ('k', 'v')", {}}}, false, d);
               }).ok());
  c.k->run_for(Duration{100'000});  // replication
  auto read = [&] {
    return c.call(0, [](store::Store& s, db::Done d) {
      s.read({{"SELECT Value FROM Systems WHERE Name = 'k'", {}}}, d);
    });
  };
  const auto before1 = c.db("db1").statements_run(), before2 = c.db("db2").statements_run(),
             before3 = c.db("db3").statements_run();
  for (int i = 0; i < 20; ++i) {
    auto o = read();
    ASSERT_TRUE(o.ok()) << o.error.message;
    EXPECT_EQ(std::get<std::string>(o.result().rows.at(0).at(0)), "v");
  }
  EXPECT_EQ(c.db("db1").statements_run(), before1) << "no read should reach the master while replicas are online";
  EXPECT_EQ(c.db("db2").statements_run() - before2, 10u);
  EXPECT_EQ(c.db("db3").statements_run() - before3, 10u);

  // Stop db2 mid-run: no read fails; db2 is marked offline, then used again after it returns.
  c.db("db2").stop();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(read().ok());
  auto status = c.node(0).store->router().status();
  EXPECT_FALSE(status[1].online);
  EXPECT_TRUE(status[2].online);
  c.db("db2").start();
  const auto back_at = c.k->now();
  ASSERT_TRUE(
      c.k->run_until([&] { return c.node(0).store->router().status()[1].online; }, back_at + Duration{5'000'000}));
  EXPECT_LE((c.k->now() - back_at).count(), 1'100'000)
      << "an offline replica is re-checked every ReplicaMonitorIntervalSeconds";
  const auto again2 = c.db("db2").statements_run();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(read().ok());
  EXPECT_GT(c.db("db2").statements_run(), again2);
}

TEST(StoreSim, AReplicaCutOffWithoutTrafficIsFoundByTheMonitor) {
  Cluster c(8, 1, settings({"db2"}), primary_and({"db2"}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  c.k->databases().cut(0, "db2", true);
  const auto cut_at = c.k->now();
  ASSERT_TRUE(
      c.k->run_until([&] { return !c.node(0).store->router().status()[1].online; }, cut_at + Duration{20'000'000}));
  // Probe every 1 s with a probe timeout of 1 s: found within 2 intervals.
  EXPECT_LE((c.k->now() - cut_at).count(), 2'100'000);
  auto o = c.call(0, [](store::Store& s, db::Done d) { s.read({{"SELECT 1", {}}}, d); });
  EXPECT_TRUE(o.ok()) << "reads fall back to the master";
}

TEST(StoreSim, SearchFallsBackFromSearchReplicasToReplicasToTheMaster) {
  Cluster c(9, 1, settings({"db2"}, {"db3"}), primary_and({"db2", "db3"}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  auto search = [&] { return c.call(0, [](store::Store& s, db::Done d) { s.search({{"SELECT 1", {}}}, d); }); };
  auto runs = [&](const char* n) { return c.db(n).statements_run(); };
  auto r1 = runs("db1"), r2 = runs("db2"), r3 = runs("db3");
  ASSERT_TRUE(search().ok());
  EXPECT_EQ(runs("db3"), r3 + 1);  // the search replica
  c.db("db3").stop();
  ASSERT_TRUE(search().ok());
  r2 = runs("db2");
  ASSERT_TRUE(search().ok());
  EXPECT_EQ(runs("db2"), r2 + 1);  // then the read replica
  c.db("db2").stop();
  ASSERT_TRUE(search().ok());
  r1 = runs("db1");
  ASSERT_TRUE(search().ok());
  EXPECT_EQ(runs("db1"), r1 + 1);  // then the master
}

TEST(StoreSim, UnreachableMasterIsFatalUnreachableReplicaStartsOffline) {
  {
    Cluster c(10, 1, settings({"db2"}), primary_and({"db2"}));
    c.db("db1").stop();
    c.k->start(0);
    ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{30'000'000}));
    EXPECT_EQ(c.node(0).start_error.status, db::Status::unavailable);
    EXPECT_NE(c.node(0).start_error.message.find(
                  "cannot reach the master database (SqlSettings.DataSource postgres://chorus:****@db1"),
              std::string::npos)
        << c.node(0).start_error.message;
  }
  {
    Cluster c(11, 1, settings({"db2", "nosuchhost"}), primary_and({"db2"}));
    c.db("db2").stop();
    c.k->start(0);
    ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{30'000'000}));
    ASSERT_EQ(c.node(0).start_error.status, db::Status::ok) << c.node(0).start_error.message;
    auto st = c.node(0).store->router().status();
    EXPECT_FALSE(st[1].online);
    EXPECT_FALSE(st[2].online);
    c.db("db2").start();
    ASSERT_TRUE(
        c.k->run_until([&] { return c.node(0).store->router().status()[1].online; }, c.k->now() + Duration{3'000'000}));
  }
}

TEST(StoreSim, QueryTimeoutCancelsASlowQuery) {
  auto sql = settings();
  sql.QueryTimeout = 2;
  Cluster c(12, 1, sql, primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  c.db("db1").set_slow_factor(100'000);  // 200 us per statement becomes 20 s
  const auto t0 = c.k->now();
  auto o = c.call(0, [](store::Store& s, db::Done d) { s.write({{"SELECT 1", {}}}, false, d); });
  EXPECT_EQ(o.error.status, db::Status::timeout);
  EXPECT_NEAR(static_cast<double>((c.k->now() - t0).count()), 2e6, 1e4);
}

TEST(StoreSim, SixtyFourConcurrentRequestsShareEightConnections) {
  Cluster c(13, 1, settings(), primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  int ok = 0, answered = 0;
  int64_t max_open = 0;
  auto& s = *c.node(0).store;
  for (int i = 0; i < 64; ++i)
    s.write({{"INSERT INTO Systems VALUES ($1, 'v')", {fmt::format("k{}", i)}}}, false, [&](db::Outcome o) {
      ++answered;
      ok += o.ok();
    });
  c.k->run_until(
      [&] {
        max_open = std::max(max_open, s.router().status()[0].pool.open);
        return answered == 64;
      },
      c.k->now() + Duration{10'000'000});
  EXPECT_EQ(ok, 64);
  EXPECT_LE(max_open, 8);
  const auto st = s.router().status()[0].pool;
  EXPECT_GT(st.waited, 0u);
  EXPECT_EQ(st.rejected, 0u);
  EXPECT_LE(st.idle, 4);  // MaxIdleConns
  EXPECT_EQ(count_rows(c.db("db1"), "SELECT COUNT(*) FROM Systems"), 64);
}

TEST(StoreSim, RecycleReplacesEveryConnectionWithoutFailingRequests) {
  Cluster c(14, 1, settings(), primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  auto& s = *c.node(0).store;
  int failed = 0, done = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 8; ++i)
      s.read({{"SELECT 1", {}}}, [&](db::Outcome o) {
        ++done;
        failed += !o.ok();
      });
    if (round == 25) s.recycle();
    c.k->run_for(Duration{2'000});
  }
  c.k->run_for(Duration{1'000'000});
  EXPECT_EQ(done, 400);
  EXPECT_EQ(failed, 0);
  const auto st = s.router().status()[0].pool;
  EXPECT_GT(st.closed, 0u) << "recycle closed the old connections";
  EXPECT_GT(st.opened, st.closed);
}

TEST(StoreSim, ManualFailoverLosesNoAcknowledgedWrite) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    Cluster c(seed, 2, settings({"db2"}), primary_and({"db2"}, Duration{50'000}));
    c.k->start(0);
    c.k->start(1);
    ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
    // Writers on both nodes, all the way through the failover.
    std::vector<std::string> acknowledged;
    int next = 0, failed = 0;
    bool writing = true;
    std::function<void(NodeIndex)> write_one = [&](NodeIndex n) {
      if (!writing) return;
      const std::string key = fmt::format("post{}", next++);
      c.node(n).store->write({{"INSERT INTO Systems VALUES ($1, 'x')", {key}}}, false, [&, key, n](db::Outcome o) {
        if (o.ok())
          acknowledged.push_back(key);
        else
          ++failed;
        c.k->at(c.k->now() + Duration{1'000}, [&, n] { write_one(n); });
      });
    };
    write_one(0);
    write_one(1);
    c.k->run_for(Duration{500'000});
    // The operator's procedure: stop writes reaching the old master (it is going away), let the replica
    // catch up, promote it, point DataSource at it, reload, recycle.
    c.k->databases().cut(0, "db1", true);
    c.k->databases().cut(1, "db1", true);
    c.k->run_for(Duration{200'000});  // > replication lag
    c.db("db2").promote();
    auto sql = settings();
    sql.DataSource = "postgres://chorus:pw@db2:5432/chorus";
    for (NodeIndex n = 0; n < 2; ++n) {
      EXPECT_TRUE(c.node(n).store->reload(sql).empty());
      c.node(n).store->recycle();
    }
    c.k->run_for(Duration{10'000'000});
    writing = false;
    c.k->run_for(Duration{10'000'000});
    ASSERT_GT(acknowledged.size(), 100u);
    for (const auto& key : acknowledged) {
      auto o = c.db("db2").execute({{"SELECT COUNT(*) FROM Systems WHERE Name = $1", {key}}}, false);
      ASSERT_EQ(std::get<int64_t>(o.result().rows[0][0]), 1) << key << " was acknowledged and is not on the new master";
    }
    EXPECT_GT(failed, 0) << "writes in flight to the cut-off master fail (the brief window the guide describes)";
  }
}

TEST(StoreSim, ConnectionsAreReplacedAfterTheirLifetimeAndClosedAfterIdling) {
  auto sql = settings();
  sql.ConnMaxLifetimeMilliseconds = 3'000;
  sql.ConnMaxIdleTimeMilliseconds = 2'000;
  Cluster c(15, 1, sql, primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  auto& s = *c.node(0).store;
  auto pool = [&] { return s.router().status()[0].pool; };
  // Busy for 10 s with one request at a time: one connection, replaced about every 3 s.
  const auto opened_before = pool().opened;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(c.call(0, [](store::Store& st, db::Done d) { st.write({{"SELECT 1", {}}}, false, d); }).ok());
    c.k->run_for(Duration{100'000});
  }
  const auto replaced = pool().opened - opened_before;
  EXPECT_GE(replaced, 3u);
  EXPECT_LE(replaced, 5u);
  // Idle: closed within the idle time plus one sweep.
  EXPECT_GE(pool().idle, 1);
  c.k->run_for(Duration{3'100'000});
  EXPECT_EQ(pool().idle, 0);
  EXPECT_EQ(pool().open, 0);
}

TEST(StoreSim, RaisingMaxOpenConnsServesWaitingRequestsAtOnce) {
  auto sql = settings();
  sql.MaxOpenConns = 1;
  Cluster c(16, 1, sql, primary_and({}));
  c.k->start(0);
  ASSERT_TRUE(c.k->run_until([&] { return c.all_started(); }, Duration{10'000'000}));
  c.db("db1").set_slow_factor(5'000);  // 1 s per statement
  auto& s = *c.node(0).store;
  int done = 0;
  for (int i = 0; i < 5; ++i) s.write({{"SELECT 1", {}}}, false, [&](db::Outcome o) { done += o.ok(); });
  c.k->run_for(Duration{100'000});
  EXPECT_EQ(s.router().status()[0].pool.waiting, 4);
  sql.MaxOpenConns = 5;
  ASSERT_TRUE(s.reload(sql).empty());
  EXPECT_EQ(s.router().status()[0].pool.waiting, 0);
  // One after another they would take 5 s; in parallel about 1 s.
  ASSERT_TRUE(c.k->run_until([&] { return done == 5; }, c.k->now() + Duration{3'000'000}));
}
