// The store's overhead: point reads and writes through Store (pool, router, worker thread, completion
// on the node's loop) against the same statements through raw sqlite3 and raw libpq calls, in one run;
// and the pool under 64 concurrent requests. PostgreSQL is started here (tests/pg_fixture.h) and stopped
// at exit. Results: reports/bench.md (make bench).
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <optional>

#include "server/runtime/asio_env.h"
#include "server/store/store.h"
#include "tests/pg_fixture.h"

using namespace chorus;

namespace {

// Started on first use, stopped by its static destructor at exit.
chorus::testing::PgCluster& pg() {
  static std::unique_ptr<chorus::testing::PgCluster> cluster = [] {
    auto c = std::make_unique<chorus::testing::PgCluster>();
    c->start(0);
    return c;
  }();
  return *cluster;
}

std::string sqlite_path() {
  static std::string path = [] {
    auto dir = std::filesystem::temp_directory_path() / ("chorus-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return (dir / "bench.db").string();
  }();
  return path;
}

// A node with a started store, on an io_context this thread runs.
struct StoreNode {
  explicit StoreNode(const config::SqlSettings& sql) {
    runtime::TcpTransportOptions t;
    t.bind_host = "127.0.0.1";
    t.port = 0;
    t.advertise_address = "bench";
    env = std::make_unique<runtime::AsioEnv>(io, "bench", sink, LogLevel::error, t, 8);
    store = std::make_unique<store::Store>(*env, sql, store::StoreOptions{"bench", "0.1.0", {}});
    std::optional<db::Error> e;
    store->start([&](db::Error err) { e = err; });
    while (!e) io.run_one();
    if (e->status != db::Status::ok) throw std::runtime_error(e->message);
    wait(write({{"INSERT INTO Systems VALUES ('k', 'v') ON CONFLICT (Name) DO NOTHING", {}}}));
  }
  ~StoreNode() {
    store.reset();
    env.reset();
  }
  std::optional<db::Outcome>& read(std::vector<db::Statement> s) {
    result.reset();
    store->read(std::move(s), [this](db::Outcome o) { result = std::move(o); });
    return result;
  }
  std::optional<db::Outcome>& write(std::vector<db::Statement> s) {
    result.reset();
    store->write(std::move(s), false, [this](db::Outcome o) { result = std::move(o); });
    return result;
  }
  void wait(std::optional<db::Outcome>& r) {
    while (!r) io.run_one();
    if (!r->ok()) throw std::runtime_error(r->error.message);
  }
  boost::asio::io_context io;
  NullLogSink sink;
  std::unique_ptr<runtime::AsioEnv> env;
  std::unique_ptr<store::Store> store;
  std::optional<db::Outcome> result;
};

config::SqlSettings sqlite_settings() {
  config::SqlSettings s;
  s.DriverName = "sqlite3";
  s.DataSource = sqlite_path();
  return s;
}

config::SqlSettings pg_settings() {
  config::SqlSettings s;
  s.DriverName = "postgres";
  s.DataSource = pg().data_source(0);
  return s;
}

const char* kRead = "SELECT Value FROM Systems WHERE Name = $1";
const char* kWrite =
    "INSERT INTO Systems (Name, Value) VALUES ($1, $2) ON CONFLICT (Name) DO UPDATE SET Value = excluded.Value";

// ---- SQLite

void BM_SqliteRawPointRead(benchmark::State& state) {
  StoreNode setup(sqlite_settings());  // schema and row
  sqlite3* db = nullptr;
  sqlite3_open_v2(sqlite_path().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT Value FROM Systems WHERE Name = ?1", -1, &st, nullptr);
  for (auto _ : state) {
    sqlite3_bind_text(st, 1, "k", 1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) state.SkipWithError("no row");
    benchmark::DoNotOptimize(sqlite3_column_text(st, 0));
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}
BENCHMARK(BM_SqliteRawPointRead)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_SqliteStorePointRead(benchmark::State& state) {
  StoreNode n(sqlite_settings());
  for (auto _ : state) n.wait(n.read({{kRead, {std::string("k")}}}));
}
BENCHMARK(BM_SqliteStorePointRead)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_SqliteRawPointWrite(benchmark::State& state) {
  StoreNode setup(sqlite_settings());
  sqlite3* db = nullptr;
  sqlite3_open_v2(sqlite_path().c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(
      db, "INSERT INTO Systems (Name, Value) VALUES (?1, ?2) ON CONFLICT (Name) DO UPDATE SET Value = excluded.Value",
      -1, &st, nullptr);
  int64_t i = 0;
  for (auto _ : state) {
    const std::string v = std::to_string(i++);
    sqlite3_bind_text(st, 1, "wr", 2, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) state.SkipWithError("write failed");
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
}
BENCHMARK(BM_SqliteRawPointWrite)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_SqliteStorePointWrite(benchmark::State& state) {
  StoreNode n(sqlite_settings());
  int64_t i = 0;
  for (auto _ : state) n.wait(n.write({{kWrite, {std::string("ws"), std::to_string(i++)}}}));
}
BENCHMARK(BM_SqliteStorePointWrite)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

// ---- PostgreSQL

PGconn* raw_pg() {
  PGconn* c = PQconnectdb(
      ("postgresql://chorus:chorus-pw@127.0.0.1:" + std::to_string(pg().port(0)) + "/chorus?sslmode=disable").c_str());
  if (PQstatus(c) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c));
  return c;
}

void BM_PgRawPointRead(benchmark::State& state) {
  StoreNode setup(pg_settings());
  PGconn* c = raw_pg();
  const char* values[1] = {"k"};
  for (auto _ : state) {
    PGresult* r = PQexecParams(c, kRead, 1, nullptr, values, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) state.SkipWithError("no row");
    benchmark::DoNotOptimize(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(c);
}
BENCHMARK(BM_PgRawPointRead)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_PgStorePointRead(benchmark::State& state) {
  StoreNode n(pg_settings());
  for (auto _ : state) n.wait(n.read({{kRead, {std::string("k")}}}));
}
BENCHMARK(BM_PgStorePointRead)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_PgRawPointWrite(benchmark::State& state) {
  StoreNode setup(pg_settings());
  PGconn* c = raw_pg();
  int64_t i = 0;
  for (auto _ : state) {
    const std::string v = std::to_string(i++);
    const char* values[2] = {"wr", v.c_str()};
    PGresult* r = PQexecParams(c, kWrite, 2, nullptr, values, nullptr, nullptr, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) state.SkipWithError(PQresultErrorMessage(r));
    PQclear(r);
  }
  PQfinish(c);
}
BENCHMARK(BM_PgRawPointWrite)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

void BM_PgStorePointWrite(benchmark::State& state) {
  StoreNode n(pg_settings());
  int64_t i = 0;
  for (auto _ : state) n.wait(n.write({{kWrite, {std::string("ws"), std::to_string(i++)}}}));
}
BENCHMARK(BM_PgStorePointWrite)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);

// ---- the pool under 64 concurrent requests: 64 reads always in flight, MaxOpenConns = state.range(0).

void BM_PgPool64Concurrent(benchmark::State& state) {
  auto sql = pg_settings();
  sql.MaxOpenConns = state.range(0);
  sql.MaxIdleConns = state.range(0);
  StoreNode n(sql);
  int64_t completed = 0, failed = 0, issued = 0;
  const int64_t target_per_iteration = 640;
  // Warm up: open the pool's connections (SCRAM authentication costs milliseconds each) before timing.
  for (int i = 0; i < 64; ++i) {
    ++issued;
    n.store->read({{kRead, {std::string("k")}}}, [&](db::Outcome) { ++completed; });
  }
  while (completed < issued) n.io.run_one();
  completed = issued = 0;
  for (auto _ : state) {
    // Keep 64 requests in flight until this iteration's share has been issued, then drain.
    const int64_t goal = issued + target_per_iteration;
    std::function<void()> issue = [&] {
      ++issued;
      n.store->read({{kRead, {std::string("k")}}}, [&](db::Outcome o) {
        ++completed;
        failed += !o.ok();
        if (issued < goal) issue();
      });
    };
    for (int i = 0; i < 64; ++i) issue();
    while (completed < issued) n.io.run_one();
  }
  const auto st = n.store->router().status()[0].pool;
  state.SetItemsProcessed(completed);
  state.counters["failed"] = static_cast<double>(failed);
  state.counters["max_open"] = static_cast<double>(sql.MaxOpenConns);
  state.counters["opened"] = static_cast<double>(st.opened);
  state.counters["waited_share"] = st.requests ? static_cast<double>(st.waited) / static_cast<double>(st.requests) : 0;
}
BENCHMARK(BM_PgPool64Concurrent)
    ->Arg(8)
    ->Arg(32)
    ->Arg(64)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->Repetitions(3)
    ->ReportAggregatesOnly(true);

}  // namespace
