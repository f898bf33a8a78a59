// The store on a real SQLite file (the embedded default): the loop's fast path and its fallback to a
// worker when another connection holds the write lock, QueryTimeout through the progress handler, and
// reads and writes from two nodes sharing the file.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "server/runtime/asio_env.h"
#include "server/store/store.h"
#include "tests/run_io.h"

using namespace chorus;

namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("chorus-sqlite-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    sql_.DriverName = "sqlite3";
    sql_.DataSource = (dir_ / "sub" / "chorus.db").string();  // the directory is created on demand
    sql_.QueryTimeout = 1;
  }
  void TearDown() override {
    store_.reset();
    env_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool run_until(const std::function<bool()>& pred, int ms) {
    return chorus::testing::run_io_until(io_, pred, std::chrono::milliseconds(ms));
  }
  void start() {
    runtime::TcpTransportOptions t;
    t.bind_host = "127.0.0.1";
    t.port = 0;
    t.advertise_address = "sqlite-node";
    env_ = std::make_unique<runtime::AsioEnv>(io_, "sqlite-node", sink_, LogLevel::warn, t, 2);
    store_ = std::make_unique<store::Store>(*env_, sql_, store::StoreOptions{"sqlite-node", "0.1.0", {}});
    std::optional<db::Error> e;
    store_->start([&](db::Error err) { e = err; });
    ASSERT_TRUE(run_until([&] { return e.has_value(); }, 10'000));
    ASSERT_EQ(e->status, db::Status::ok) << e->message;
  }
  db::Outcome call(const std::function<void(db::Done)>& op, int ms = 10'000) {
    std::optional<db::Outcome> out;
    op([&](db::Outcome o) { out = std::move(o); });
    if (!run_until([&] { return out.has_value(); }, ms))
      return db::Outcome{db::Error{db::Status::timeout, "no answer"}, {}};
    return *out;
  }

  std::filesystem::path dir_;
  config::SqlSettings sql_;
  boost::asio::io_context io_;
  NullLogSink sink_;
  std::unique_ptr<runtime::AsioEnv> env_;
  std::unique_ptr<store::Store> store_;
};

}  // namespace

TEST_F(SqliteStoreTest, AWriteWaitsForAnotherProcessesLockInsteadOfFailing) {
  start();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(sql_.DataSource.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE; INSERT INTO Systems VALUES ('held', '1')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  // The other connection commits 300 ms from now, from another thread.
  std::thread releaser([other] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr);
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto o = call([&](db::Done d) { store_->write({{"INSERT INTO Systems VALUES ('mine', '2')", {}}}, false, d); });
  releaser.join();
  sqlite3_close(other);
  ASSERT_TRUE(o.ok()) << o.error.message;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250)) << "the write waited for the lock";
  auto r = call([&](db::Done d) {
    store_->read({{"SELECT COUNT(*) FROM Systems WHERE Name IN ('held', 'mine')", {}}}, d);
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<int64_t>(r.result().rows[0][0]), 2);
}

TEST_F(SqliteStoreTest, QueryTimeoutInterruptsALongQuery) {
  start();
  const auto t0 = std::chrono::steady_clock::now();
  auto o = call([&](db::Done d) {
    store_->read({{"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) SELECT "
                   "COUNT(*) FROM c",
                   {}}},
                 d);
  });
  EXPECT_EQ(o.error.status, db::Status::timeout) << o.error.message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
  EXPECT_TRUE(call([&](db::Done d) { store_->read({{"SELECT 1", {}}}, d); }).ok()) << "the connection is still usable";
}

TEST_F(SqliteStoreTest, TransactionsAreAllOrNothingAndExpectRowsGuardsThem) {
  start();
  ASSERT_TRUE(call([&](db::Done d) {
                store_->write({{"INSERT INTO Jobs (Id, Type, CreateAt, Status) VALUES ('j1', 't', 1, 'pending')", {}}},
                              false, d);
              }).ok());
  // Claimed when exactly one row changed: the first claim wins, the second changes nothing and rolls back.
  auto claim = [&](const std::string& worker) {
    return call([&](db::Done d) {
      store_->write({{"UPDATE Jobs SET Status = 'in_progress', WorkerId = $1 WHERE Id = 'j1' AND Status = 'pending'",
                      {worker},
                      1},
                     {"INSERT INTO Systems VALUES ($1, 'claimed')", {worker}}},
                    true, d);
    });
  };
  EXPECT_TRUE(claim("w1").ok());
  auto second = claim("w2");
  EXPECT_EQ(second.error.status, db::Status::conflict);
  auto r = call([&](db::Done d) { store_->read({{"SELECT COUNT(*) FROM Systems WHERE Value = 'claimed'", {}}}, d); });
  EXPECT_EQ(std::get<int64_t>(r.result().rows[0][0]), 1) << "the losing transaction left nothing behind";
  auto dup = call([&](db::Done d) { store_->write({{"INSERT INTO Systems VALUES ('w1', 'again')", {}}}, false, d); });
  EXPECT_EQ(dup.error.status, db::Status::conflict);
  auto bad = call([&](db::Done d) { store_->write({{"INSERT INTO NoSuchTable VALUES (1)", {}}}, false, d); });
  EXPECT_EQ(bad.error.status, db::Status::bad_request);
  EXPECT_NE(bad.error.message.find("no such table"), std::string::npos);
}
