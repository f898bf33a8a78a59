// The job server in whole simulated clusters (real node code, simulated database and network): over
// random fault schedules - leader crashes, worker crashes mid-job, partitions, pauses - every recurring
// period gets exactly one job, each job succeeds once, no job stays in progress, and no period is
// skipped once the cluster has healed. Also the real jobs on simulated data: retention, export, search.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>

#include "server/jobs/job_kinds.h"
#include "server/store/store.h"
#include "simulator/chat_cluster.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;

namespace {

constexpr int64_t kPeriodUs = 2'000'000;

// A recurring test job: one fenced step records (job, attempt, node), then some work time, then done.
void add_probe(node::Node& n, int node) {
  n.job_server().add_kind("probe", [node](std::shared_ptr<jobs::JobRun> run) {
    const std::string period = run->data().count("period") ? run->data().at("period") : "";
    run->step({db::Statement{"INSERT INTO ProbeRuns (JobId, Period, Node) VALUES ($1, $2, $3)",
                             {run->id(), period, int64_t{node}}}},
              10, [run](bool ok, db::Outcome) {
                if (!ok) return;
                run->env().set_timer(Duration{700'000}, [run] {
                  run->step({}, 90, [run](bool ok2, db::Outcome) {
                    if (ok2) run->finish(true, {});
                  });
                });
              });
  });
}

ChatClusterOptions probe_cluster(uint64_t seed) {
  ChatClusterOptions o{.seed = seed, .nodes = 3};
  o.jobs.scheduler_tick = Duration{500'000};
  o.jobs.poll = Duration{200'000};
  o.jobs.stuck_after = Duration{3'000'000};
  o.jobs.recurring = {jobs::Recurring{"probe", Duration{kPeriodUs}}};
  o.setup_node = add_probe;
  return o;
}

std::vector<std::vector<db::Value>> rows(ChatCluster& c, const std::string& sql) {
  auto o = c.kernel().databases().find("db1")->execute({db::Statement{sql, {}}}, false);
  EXPECT_TRUE(o.ok()) << o.error.message;
  return o.ok() ? o.result().rows : std::vector<std::vector<db::Value>>{};
}

int64_t count(ChatCluster& c, const std::string& sql) {
  auto r = rows(c, sql);
  return r.empty() ? -1 : std::get<int64_t>(r.at(0).at(0));
}

// An admin (its token), a team and a channel, created through the API on node 0.
std::tuple<std::string, std::string, std::string> admin_team_channel(ChatCluster& c) {
  const std::string admin = c.signup_and_login(0, "admin");
  auto team = c.call(0, "POST", "/api/v4/teams", R"({"name":"team1","display_name":"T"})", admin);
  const std::string team_id(json::parse(team.body).as_object().at("id").as_string());
  auto ch = c.call(0, "POST", "/api/v4/channels",
                   fmt::format(R"({{"team_id":"{}","name":"c","display_name":"C"}})", team_id), admin);
  return {admin, team_id, std::string(json::parse(ch.body).as_object().at("id").as_string())};
}

}  // namespace

TEST(JobsSim, EveryPeriodRunsOnceThroughLeaderDeathsWorkerCrashesPartitionsAndPauses) {
  int leader_crashes = 0, recovered = 0, fenced = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c(probe_cluster(seed));
    ASSERT_TRUE(
        c.kernel()
            .databases()
            .find("db1")
            ->execute({db::Statement{"CREATE TABLE ProbeRuns (JobId TEXT, Period TEXT, Node INTEGER)", {}}}, false)
            .ok());
    ASSERT_TRUE(c.start_all());
    auto& k = c.kernel();
    auto& rng = k.random();
    // 40 s of faults: every 1-4 s one of crash (the leader half the time), restart, partition, heal, pause.
    const Duration faults_end = k.now() + Duration{40'000'000};
    while (k.now() < faults_end) {
      k.run_for(Duration{rng.uniform_range(1'000'000, 4'000'000)});
      const int victim = static_cast<int>(rng.uniform(3));
      switch (rng.uniform(5)) {
        case 0: {
          int target = victim;
          for (int i = 0; i < 3; ++i)
            if (c.node(i) && c.node(i)->job_server().leader()) target = rng.chance(0.5) ? i : victim;
          if (c.node(target)) {
            leader_crashes += c.node(target)->job_server().leader();
            k.crash(static_cast<NodeIndex>(target));
          }
          break;
        }
        case 1:
          for (int i = 0; i < 3; ++i)
            if (k.state(static_cast<NodeIndex>(i)) == NodeState::down) k.start(static_cast<NodeIndex>(i));
          break;
        case 2:
          k.partition({static_cast<NodeIndex>(victim)});
          break;
        case 3:
          k.heal();
          break;
        case 4:
          if (k.state(static_cast<NodeIndex>(victim)) == NodeState::up) {
            k.pause(static_cast<NodeIndex>(victim));
            k.at(k.now() + Duration{rng.uniform_range(500'000, 5'000'000)},
                 [&k, victim] { k.resume(static_cast<NodeIndex>(victim)); });
          }
          break;
      }
    }
    // Heal everything and let the cluster catch up: detection, recovery (3 s), the last periods.
    k.heal();
    for (int i = 0; i < 3; ++i) {
      if (k.state(static_cast<NodeIndex>(i)) == NodeState::paused) k.resume(static_cast<NodeIndex>(i));
      if (k.state(static_cast<NodeIndex>(i)) == NodeState::down) k.start(static_cast<NodeIndex>(i));
    }
    k.run_for(Duration{15'000'000});
    const auto all =
        rows(c, "SELECT ScheduleKey, Status, Attempts FROM Jobs WHERE Type = 'probe' ORDER BY ScheduleKey");
    ASSERT_GE(all.size(), 20u) << "about one job per 2 s of a 60 s run";
    // Periods are contiguous: none skipped, none twice (the key is unique).
    int64_t prev = -1;
    int finished = 0;
    for (const auto& r : all) {
      const auto& key = std::get<std::string>(r.at(0));
      const int64_t period = std::stoll(key.substr(key.rfind(':') + 1));
      if (prev >= 0) {
        EXPECT_EQ(period, prev + 1) << "period skipped before " << key;
      }
      prev = period;
      const auto& status = std::get<std::string>(r.at(1));
      // The last period or two may still be running now; everything before it has finished, once.
      if (&r < &all[all.size() - 2]) {
        EXPECT_EQ(status, "success") << key << " after " << std::get<int64_t>(r.at(2)) << " attempts";
        finished += status == "success";
      }
    }
    EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Jobs WHERE Type = 'probe' AND Status = 'error'"), 0);
    // Each period's work was committed by one attempt at a time; a second commit only after a recovery.
    const int64_t doubles =
        count(c, "SELECT COUNT(*) FROM (SELECT JobId FROM ProbeRuns GROUP BY JobId HAVING COUNT(*) > 1) x");
    const int64_t retried = count(c, "SELECT COUNT(*) FROM Jobs WHERE Type = 'probe' AND Attempts > 1");
    EXPECT_LE(doubles, retried) << "work committed twice only for jobs that were handed to another attempt";
    for (int i = 0; i < 3; ++i)
      if (c.node(i)) {
        recovered += static_cast<int>(c.node(i)->job_server().stats().recovered);
        fenced += static_cast<int>(c.node(i)->job_server().stats().fenced);
      }
    EXPECT_GT(finished, 0);
  }
  EXPECT_GT(leader_crashes, 5) << "the schedules did kill leaders";
  EXPECT_GT(recovered, 0) << "the schedules did leave jobs of dead workers to recover";
  std::printf("jobs: %d leader crashes, %d jobs recovered by the rule, %d stale attempts fenced out\n", leader_crashes,
              recovered, fenced);
}

TEST(JobsSim, TwoLeadersDuringAPartitionScheduleEachPeriodOnce) {
  ChatCluster c(probe_cluster(41));
  ASSERT_TRUE(
      c.kernel()
          .databases()
          .find("db1")
          ->execute({db::Statement{"CREATE TABLE ProbeRuns (JobId TEXT, Period TEXT, Node INTEGER)", {}}}, false)
          .ok());
  ASSERT_TRUE(c.start_all());
  auto& k = c.kernel();
  k.partition({0});  // node 0 alone is its own leader; nodes 1 and 2 elect node 1
  k.run_for(Duration{5'000'000});
  int leaders = 0;
  for (int i = 0; i < 3; ++i) leaders += c.node(i)->job_server().leader();
  EXPECT_EQ(leaders, 2) << "both sides schedule";
  k.run_for(Duration{10'000'000});
  k.heal();
  k.run_for(Duration{8'000'000});
  // Both leaders scheduled during the partition: one job per period (the unique key), and no period
  // skipped.
  const auto keys = rows(c, "SELECT ScheduleKey FROM Jobs WHERE Type = 'probe' ORDER BY ScheduleKey");
  ASSERT_GE(keys.size(), 10u);
  for (size_t i = 1; i < keys.size(); ++i) {
    const auto& a = std::get<std::string>(keys[i - 1][0]);
    const auto& b = std::get<std::string>(keys[i][0]);
    EXPECT_EQ(std::stoll(b.substr(b.rfind(':') + 1)), std::stoll(a.substr(a.rfind(':') + 1)) + 1) << a << " then " << b;
  }
  EXPECT_EQ(
      count(c,
            "SELECT COUNT(*) FROM Jobs WHERE Type = 'probe' AND Status NOT IN ('success', 'in_progress', 'pending')"),
      0);
}

TEST(JobsSim, RetentionExportAndSearchIndexingWorkOnTheData) {
  ChatClusterOptions o{.seed = 5, .nodes = 2};
  o.jobs.poll = Duration{200'000};
  o.configure = [](config::Config& cfg, int) {
    cfg.DataRetentionSettings.EnableMessageDeletion = true;
    cfg.DataRetentionSettings.MessageRetentionHours = 1;
    cfg.DataRetentionSettings.BatchSize = 7;
    cfg.DataRetentionSettings.TimeBetweenBatchesMilliseconds = 50;
  };
  ChatCluster c(o);
  ASSERT_TRUE(c.start_all());
  const auto [admin, team_id, channel] = admin_team_channel(c);
  for (int i = 0; i < 40; ++i) {
    auto r = c.call(
        i % 2, "POST", "/api/v4/posts",
        fmt::format(R"({{"channel_id":"{}","message":"note {} about zebras, quote \" and comma ,"}})", channel, i),
        admin);
    ASSERT_EQ(r.status, 201) << r.body;
  }
  // Search finds a post as soon as its creation is acknowledged.
  auto found = c.call(1, "POST", "/api/v4/teams/" + team_id + "/posts/search", R"({"terms":"ZEBRAS note"})", admin);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(json::parse(found.body).as_object().at("order").as_array().size(), 40u);
  // A reaction and an edit on the first post (retention takes them with it) and on one that stays (the
  // export shows them).
  const auto before = rows(c, "SELECT Id FROM Posts ORDER BY CreateAt, Id");
  const std::string aged_id = std::get<std::string>(before.front()[0]), kept_id = std::get<std::string>(before[30][0]);
  for (const auto& id : {aged_id, kept_id}) {
    ASSERT_EQ(c.call(0, "POST", "/api/v4/reactions",
                     fmt::format(R"({{"user_id":"{}","post_id":"{}","emoji_name":"tada"}})",
                                 json::parse(c.call(0, "GET", "/api/v4/users/me", "", admin).body).as_object().at("id").as_string(),
                                 id),
                     admin)
                  .status,
              200);
    ASSERT_EQ(c.call(1, "PUT", "/api/v4/posts/" + id + "/patch", R"({"message":"edited note"})", admin).status, 200);
  }
  // And a post with a file (uploaded as the body, Mattermost's simple upload), aged below with the others:
  // retention takes the file's bytes out of the store too.
  auto up = c.call(0, "POST", "/api/v4/files?channel_id=" + channel + "&filename=old.txt", "old bytes", admin);
  ASSERT_EQ(up.status, 201) << up.body;
  const std::string file_id(
      json::parse(up.body).as_object().at("file_infos").as_array()[0].as_object().at("id").as_string());
  auto filed = c.call(0, "POST", "/api/v4/posts",
                      fmt::format(R"({{"channel_id":"{}","message":"filed","file_ids":["{}"]}})", channel, file_id), admin);
  ASSERT_EQ(filed.status, 201) << filed.body;
  const std::string file_path = std::get<std::string>(rows(c, "SELECT Path FROM FileInfo WHERE Id = '" + file_id + "'").at(0)[0]);
  ASSERT_TRUE(c.kernel().shared_files().contains(file_path));
  // Age 25 of them past the limit (1 h), and the post with the file; then retention runs while posts keep
  // coming.
  auto* db = c.kernel().databases().find("db1");
  const int64_t old = c.kernel().options().wall_epoch_us / 1000 - 2 * 3'600'000;
  ASSERT_TRUE(
      db->execute(
            {db::Statement{
                "UPDATE Posts SET CreateAt = $1 WHERE Id IN (SELECT Id FROM Posts ORDER BY CreateAt LIMIT 25)", {old}}},
            false)
          .ok());
  ASSERT_TRUE(db->execute({db::Statement{"UPDATE Posts SET CreateAt = $1 WHERE Id = $2",
                                         {old, std::string(json::parse(filed.body).as_object().at("id").as_string())}}},
                          false)
                  .ok());
  auto job = c.call(0, "POST", "/api/v4/jobs", R"({"type":"data_retention"})", admin);
  ASSERT_EQ(job.status, 201);
  const std::string job_id(json::parse(job.body).as_object().at("id").as_string());
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(c.call(i % 2, "POST", "/api/v4/posts",
                     fmt::format(R"({{"channel_id":"{}","message":"fresh {}"}})", channel, i), admin)
                  .status,
              201);
    c.kernel().run_for(Duration{100'000});
  }
  auto succeeded = [&](const std::string& id) {
    return count(c, "SELECT COUNT(*) FROM Jobs WHERE Status = 'success' AND Id = '" + id + "'") == 1;
  };
  ASSERT_TRUE(c.kernel().run_until([&] { return succeeded(job_id); }, c.kernel().now() + Duration{20'000'000}));
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Posts"), 40 - 25 + 10) << "exactly the posts past the limit are gone";
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Posts WHERE CreateAt = " + std::to_string(old)), 0);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM PostsFts"), 25) << "their index entries too";
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Reactions"), 1) << "and their reactions";
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM PostEdits"), 1) << "and their edit history";
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM FileInfo"), 0) << "and their files";
  EXPECT_FALSE(c.kernel().shared_files().contains(file_path)) << "the file's bytes too";
  auto data =
      json::parse(c.call(0, "GET", "/api/v4/jobs/" + job_id, "", admin).body).as_object().at("data").as_object();
  EXPECT_EQ(data.at("deleted_posts").as_string(), "26");

  // Compliance export of everything left: the files match the database.
  auto ex = c.call(
      1, "POST", "/api/v4/jobs",
      fmt::format(R"({{"type":"message_export","data":{{"start_at":"0","end_at":"{}"}}}})", old + 10 * 3'600'000),
      admin);
  ASSERT_EQ(ex.status, 201) << ex.body;
  const std::string ex_id(json::parse(ex.body).as_object().at("id").as_string());
  ASSERT_TRUE(c.kernel().run_until([&] { return succeeded(ex_id); }, c.kernel().now() + Duration{20'000'000}));
  auto& files = c.kernel().shared_files();
  ASSERT_TRUE(files.contains("export/" + ex_id + ".csv"));
  ASSERT_TRUE(files.contains("export/" + ex_id + ".json"));
  const auto exported = json::parse(files.at("export/" + ex_id + ".json")).as_object().at("posts").as_array();
  const auto db_rows = rows(c, "SELECT Id, Message FROM Posts ORDER BY CreateAt, Id");
  ASSERT_EQ(exported.size(), db_rows.size());
  for (size_t i = 0; i < exported.size(); ++i) {
    EXPECT_EQ(exported[i].as_object().at("post_id").as_string(), std::get<std::string>(db_rows[i][0]));
    EXPECT_EQ(exported[i].as_object().at("message").as_string(), std::get<std::string>(db_rows[i][1]));
    EXPECT_EQ(exported[i].as_object().at("username").as_string(), "admin");
  }
  for (const auto& e : exported) {
    if (e.as_object().at("post_id").as_string() != kept_id) continue;
    EXPECT_EQ(e.as_object().at("message").as_string(), "edited note");
    EXPECT_GT(e.as_object().at("edit_at").as_int64(), 0);
    ASSERT_EQ(e.as_object().at("reactions").as_array().size(), 1u);
    ASSERT_EQ(e.as_object().at("edits").as_array().size(), 1u);
    EXPECT_EQ(std::string(e.as_object().at("edits").as_array()[0].as_object().at("previous_message").as_string()).substr(0, 7),
              "note 30");
  }
  const std::string& csv = files.at("export/" + ex_id + ".csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(db_rows.size() + 1));
  EXPECT_NE(csv.find("\"note 39 about zebras, quote \"\" and comma ,\""), std::string::npos)
      << "quoted as RFC 4180 says";

  // The index loses an entry (and keeps a stale one): the indexing job repairs both.
  ASSERT_TRUE(
      db->execute({db::Statement{
                      "DELETE FROM PostsFts WHERE PostId = (SELECT Id FROM Posts ORDER BY CreateAt DESC LIMIT 1)", {}}},
                  false)
          .ok());
  ASSERT_TRUE(
      db->execute({db::Statement{
                      "INSERT INTO PostsFts (Message, PostId, ChannelId) VALUES ('ghost zebras', 'gone', 'x')", {}}},
                  false)
          .ok());
  auto ix = c.call(0, "POST", "/api/v4/jobs", R"({"type":"search_indexing"})", admin);
  ASSERT_EQ(ix.status, 201);
  const std::string ix_id(json::parse(ix.body).as_object().at("id").as_string());
  ASSERT_TRUE(c.kernel().run_until([&] { return succeeded(ix_id); }, c.kernel().now() + Duration{20'000'000}));
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM PostsFts"), count(c, "SELECT COUNT(*) FROM Posts"));
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM PostsFts WHERE PostId = 'gone'"), 0);
  found = c.call(1, "POST", "/api/v4/teams/" + team_id + "/posts/search", R"({"terms":"fresh"})", admin);
  EXPECT_EQ(json::parse(found.body).as_object().at("order").as_array().size(), 10u);
}

TEST(JobsSim, ACanceledRunningJobStopsAtItsNextStep) {
  ChatClusterOptions o{.seed = 6, .nodes = 2};
  o.jobs.poll = Duration{200'000};
  o.configure = [](config::Config& cfg, int) {
    cfg.DataRetentionSettings.BatchSize = 1;
    cfg.DataRetentionSettings.TimeBetweenBatchesMilliseconds = 500;
  };
  ChatCluster c(o);
  ASSERT_TRUE(c.start_all());
  const auto [admin, team_id, channel] = admin_team_channel(c);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(
        c.call(0, "POST", "/api/v4/posts", fmt::format(R"({{"channel_id":"{}","message":"m{}"}})", channel, i), admin)
            .status,
        201);
  auto job =
      c.call(0, "POST", "/api/v4/jobs", R"({"type":"data_retention","data":{"cutoff":"99999999999999"}})", admin);
  const std::string id(json::parse(job.body).as_object().at("id").as_string());
  ASSERT_TRUE(c.kernel().run_until([&] { return count(c, "SELECT COUNT(*) FROM Posts") <= 17; },
                                   c.kernel().now() + Duration{10'000'000}));
  ASSERT_EQ(c.call(1, "POST", "/api/v4/jobs/" + id + "/cancel", "", admin).status, 200);
  c.kernel().run_for(Duration{3'000'000});
  auto got = json::parse(c.call(0, "GET", "/api/v4/jobs/" + id, "", admin).body).as_object();
  EXPECT_EQ(got.at("status").as_string(), "canceled");
  const int64_t left = count(c, "SELECT COUNT(*) FROM Posts");
  EXPECT_GT(left, 10) << "it stopped deleting";
  c.kernel().run_for(Duration{3'000'000});
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Posts"), left);
}

TEST(JobsSim, LongPausesAndSkewedClocksDoNotMakeALiveJobLookDeadAndACleanStopCostsNoAttempt) {
  ChatClusterOptions o{.seed = 8, .nodes = 3};
  o.jobs.poll = Duration{200'000};
  o.jobs.stuck_after = Duration{3'000'000};
  o.configure = [](config::Config& cfg, int) {
    cfg.DataRetentionSettings.BatchSize = 2;
    cfg.DataRetentionSettings.TimeBetweenBatchesMilliseconds =
        5000;  // longer than stuck_after: the heartbeat covers it
  };
  ChatCluster c(o);
  ASSERT_TRUE(c.start_all());
  auto& k = c.kernel();
  // Every node's clock disagrees with the others' by seconds (more than stuck_after).
  k.set_clock_skew(0, Duration{8'000'000});
  k.set_clock_skew(1, Duration{-7'000'000});
  const auto [admin, team_id, channel] = admin_team_channel(c);
  for (int i = 0; i < 8; ++i)
    ASSERT_EQ(
        c.call(0, "POST", "/api/v4/posts", fmt::format(R"({{"channel_id":"{}","message":"m{}"}})", channel, i), admin)
            .status,
        201);
  const int64_t posts = count(c, "SELECT COUNT(*) FROM Posts");
  auto job =
      c.call(0, "POST", "/api/v4/jobs", R"({"type":"data_retention","data":{"cutoff":"99999999999999"}})", admin);
  const std::string id(json::parse(job.body).as_object().at("id").as_string());
  ASSERT_TRUE(
      k.run_until([&] { return count(c, "SELECT COUNT(*) FROM Posts") < posts; }, k.now() + Duration{5'000'000}));
  // Stop the worker cleanly mid-job: it hands the job back without spending the attempt.
  const auto worker = std::get<std::string>(rows(c, "SELECT WorkerId FROM Jobs WHERE Id = '" + id + "'").at(0).at(0));
  const int w = worker == c.address(0) ? 0 : worker == c.address(1) ? 1 : 2;
  k.stop(static_cast<NodeIndex>(w));
  ASSERT_TRUE(k.run_until(
      [&] {
        return std::get<std::string>(rows(c, "SELECT Status FROM Jobs WHERE Id = '" + id + "'").at(0).at(0)) !=
               "in_progress";
      },
      k.now() + Duration{2'000'000}));
  // Another node takes it and finishes it across pauses longer than stuck_after, on skewed clocks.
  ASSERT_TRUE(k.run_until(
      [&] {
        return std::get<std::string>(rows(c, "SELECT Status FROM Jobs WHERE Id = '" + id + "'").at(0).at(0)) ==
               "success";
      },
      k.now() + Duration{60'000'000}));
  EXPECT_EQ(std::get<int64_t>(rows(c, "SELECT Attempts FROM Jobs WHERE Id = '" + id + "'").at(0).at(0)), 1)
      << "the clean stop cost no attempt";
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM Posts"), 0);
  for (int i = 0; i < 3; ++i) {
    if (c.node(i)) {
      EXPECT_EQ(c.node(i)->job_server().stats().recovered, 0u) << "node " << i << " mistook a live job for a dead one";
    }
  }
}
