// The job server on real processes and real PostgreSQL: data retention removes exactly the posts past
// the limit while posts keep coming; a compliance export matches the database; search (PostgreSQL
// full-text) finds a post as soon as its creation is acknowledged; a worker process killed mid-job
// leads to the job being handed to the other node by the rule and finished there.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/http_client.h"
#include "tests/pg_fixture.h"

using namespace chorus::testing;
namespace json = boost::json;

namespace {

std::string str(const HttpResponse& r, const char* key) {
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains(key) || !v.as_object().at(key).is_string()) return "";
  return std::string(v.as_object().at(key).as_string());
}

}  // namespace

TEST(JobsPg, RetentionExportSearchAndAWorkerKilledMidJob) {
  PgCluster pg;
  pg.start(0);
  const std::string db = pg.create_database("jobs");
  const auto dir = std::filesystem::temp_directory_path() / ("chorus-jobs-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "files");
  const std::string config = (dir / "config.json").string();
  std::ofstream(config) << R"({
    "SqlSettings": {"DriverName": "postgres", "DataSource": ")"
                        << pg.data_source(0, db) << R"("},
    "ClusterSettings": {"Enable": true, "ClusterName": "jobs-test", "OverrideHostname": "127.0.0.1", "BindAddress": "127.0.0.1"},
    "DataRetentionSettings": {"EnableMessageDeletion": true, "MessageRetentionHours": 1, "BatchSize": 5, "TimeBetweenBatchesMilliseconds": 300},
    "JobSettings": {"WorkerTimeoutSeconds": 3},
    "FileSettings": {"Directory": ")"
                        << (dir / "files").string() << R"("},
    "TeamSettings": {"EnableOpenServer": true},
    "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO"}
  })";
  const auto ports = chorus::testing::free_ports(4);  // at once: one by one can repeat
  const uint16_t api[2] = {ports[0], ports[1]}, gossip[2] = {ports[2], ports[3]};
  std::unique_ptr<Child> nodes[2];
  for (int i = 0; i < 2; ++i)
    nodes[i] = std::make_unique<Child>(
        std::vector<std::string>{CHORUSD_PATH, "--config", config},
        std::vector<std::string>{"MM_SERVICESETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(api[i]),
                                 "MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(gossip[i])});
  const std::string g0 = "127.0.0.1:" + std::to_string(gossip[0]), g1 = "127.0.0.1:" + std::to_string(gossip[1]);
  ASSERT_GE(wait_ms(
                [&] {
                  return nodes[0]->find("status: " + g1 + " is green") >= 0 &&
                         nodes[1]->find("status: " + g0 + " is green") >= 0;
                },
                20000),
            0)
      << nodes[0]->output() << nodes[1]->output();

  ASSERT_EQ(http_request(api[0], "POST", "/api/v4/users",
                         R"({"username":"admin","email":"a@example.com","password":"password-admin"})")
                .status,
            201);
  const std::string token =
      http_request(api[1], "POST", "/api/v4/users/login", R"({"login_id":"admin","password":"password-admin"})")
          .header("Token");
  ASSERT_FALSE(token.empty());
  const std::string team =
      str(http_request(api[0], "POST", "/api/v4/teams", R"({"name":"jobs","display_name":"Jobs"})", token), "id");
  const std::string channel =
      str(http_request(api[0], "POST", "/api/v4/channels",
                       R"({"team_id":")" + team + R"(","name":"work","display_name":"Work"})", token),
          "id");
  ASSERT_FALSE(channel.empty());
  auto post = [&](int node, const std::string& message) {
    return http_request(api[node], "POST", "/api/v4/posts",
                        R"({"channel_id":")" + channel + R"(","message":")" + message + R"("})", token);
  };
  auto count = [&](const std::string& sql) { return std::stoll(pg.psql(0, sql, db)); };
  auto wait_job = [&](const std::string& id, int ms) {
    return wait_ms([&] { return pg.psql(0, "SELECT Status FROM Jobs WHERE Id = '" + id + "'", db) == "success"; }, ms);
  };

  // Search: the full-text index is written with the post, so the other node finds it at once.
  ASSERT_EQ(post(0, "the quarterly zeppelin report").status, 201);
  auto found = http_request(api[1], "POST", "/api/v4/teams/" + team + "/posts/search",
                            R"({"terms":"Zeppelin quarterly"})", token);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(json::parse(found.body).as_object().at("order").as_array().size(), 1u) << found.body;

  // Retention: 30 more posts, 20 of them aged past the limit (1 h); the job runs while 10 more arrive.
  for (int i = 0; i < 30; ++i) ASSERT_EQ(post(i % 2, "post " + std::to_string(i)).status, 201);
  pg.psql(0,
          "UPDATE Posts SET CreateAt = CreateAt - 7200000 WHERE Id IN (SELECT Id FROM Posts WHERE Message LIKE 'post "
          "%' ORDER BY CreateAt LIMIT 20)",
          db);
  const auto job = http_request(api[0], "POST", "/api/v4/jobs", R"({"type":"data_retention"})", token);
  ASSERT_EQ(job.status, 201) << job.body;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(post(i % 2, "fresh " + std::to_string(i)).status, 201);
  ASSERT_GE(wait_job(str(job, "id"), 20000), 0) << pg.psql(0, "SELECT Status, Data FROM Jobs", db);
  EXPECT_EQ(count("SELECT count(*) FROM Posts"), 1 + 30 - 20 + 10) << "exactly the posts past the limit are gone";
  EXPECT_EQ(count("SELECT count(*) FROM Posts WHERE CreateAt < (extract(epoch from now()) * 1000 - 3600000)::bigint"),
            0);
  EXPECT_EQ(count("SELECT count(*) FROM PostsFts"), count("SELECT count(*) FROM Posts"))
      << "their index entries went with them";

  // Compliance export of everything: the JSON file has the database's posts, in order.
  const auto ex = http_request(api[1], "POST", "/api/v4/jobs",
                               R"({"type":"message_export","data":{"start_at":"0","end_at":"99999999999999"}})", token);
  ASSERT_EQ(ex.status, 201) << ex.body;
  ASSERT_GE(wait_job(str(ex, "id"), 20000), 0) << pg.psql(0, "SELECT Status, Data FROM Jobs", db);
  std::ifstream in(dir / "files" / "export" / (str(ex, "id") + ".json"));
  ASSERT_TRUE(in) << "the export file is in FileSettings.Directory";
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto exported = json::parse(text).as_object().at("posts").as_array();
  const std::string ids = pg.psql(0, "SELECT string_agg(Id, ',' ORDER BY CreateAt, Id) FROM Posts", db);
  std::string got;
  for (const auto& p : exported) got += (got.empty() ? "" : ",") + std::string(p.as_object().at("post_id").as_string());
  EXPECT_EQ(got, ids);
  EXPECT_TRUE(std::filesystem::exists(dir / "files" / "export" / (str(ex, "id") + ".csv")));

  // A worker killed mid-job: 40 posts to delete in batches of 5, 300 ms apart (about 2.4 s of work).
  for (int i = 0; i < 40; ++i) ASSERT_EQ(post(i % 2, "doomed " + std::to_string(i)).status, 201);
  pg.psql(0, "UPDATE Posts SET CreateAt = CreateAt - 7200000 WHERE Message LIKE 'doomed %'", db);
  const auto slow = http_request(api[0], "POST", "/api/v4/jobs", R"({"type":"data_retention"})", token);
  const std::string slow_id = str(slow, "id");
  std::string worker;
  ASSERT_GE(wait_ms(
                [&] {
                  worker = pg.psql(
                      0, "SELECT WorkerId FROM Jobs WHERE Id = '" + slow_id + "' AND Status = 'in_progress'", db);
                  return !worker.empty() && count("SELECT count(*) FROM Posts WHERE Message LIKE 'doomed %'") < 40;
                },
                10000),
            0);
  const int victim = worker == g0 ? 0 : 1;
  nodes[victim]->signal(SIGKILL);
  nodes[victim]->wait_exit(2000);
  // The survivor becomes the leader (if it was not), finds the job silent for 3 s, gives it back to the
  // queue, claims it and finishes it: attempt 2.
  ASSERT_GE(wait_job(slow_id, 20000), 0) << nodes[1 - victim]->output();
  EXPECT_EQ(pg.psql(0, "SELECT Attempts FROM Jobs WHERE Id = '" + slow_id + "'", db), "2");
  EXPECT_EQ(pg.psql(0, "SELECT WorkerId FROM Jobs WHERE Id = '" + slow_id + "'", db), victim == 0 ? g1 : g0);
  EXPECT_EQ(count("SELECT count(*) FROM Posts WHERE Message LIKE 'doomed %'"), 0);
  EXPECT_GE(nodes[1 - victim]->find("recovered 1 job(s) whose worker stopped reporting"), 0)
      << nodes[1 - victim]->output();

  // Bad input: an unknown type, bad data, cancelling a finished job.
  EXPECT_EQ(http_request(api[1 - victim], "POST", "/api/v4/jobs", R"({"type":"nope"})", token).status, 400);
  EXPECT_EQ(
      http_request(api[1 - victim], "POST", "/api/v4/jobs", R"({"type":"message_export","data":[1]})", token).status,
      400);
  EXPECT_EQ(http_request(api[1 - victim], "POST", "/api/v4/jobs/" + slow_id + "/cancel", "", token).status, 400);
  nodes[1 - victim]->signal(SIGTERM);
  EXPECT_EQ(nodes[1 - victim]->wait_exit(5000), 0);
  std::filesystem::remove_all(dir);
}
