// What an operator reads from the cluster, in the simulator (issue 16): GET /cluster/status keeps a dead
// node listed red, with when it was last seen, until it comes back, leaves cleanly or has been dead for
// ClusterSettings.RemoveDeadNodesAfterSeconds; settings Chorus does not know survive a save through the API,
// show in GET /config and count in the config hash; restart-only settings changed in the file are named.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "simulator/chat_cluster.h"
#include "tests/api_test_helpers.h"
#include "tests/chat_world.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;
using namespace chorus::testing;

namespace {

// node id -> its row, as node i lists them.
std::map<std::string, json::object> status_rows(ChatCluster& c, int i, const std::string& token) {
  auto r = c.call(i, "GET", "/api/v4/cluster/status", "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  std::map<std::string, json::object> rows;
  const json::value parsed = json::parse(r.body);
  for (const auto& row : parsed.as_array())
    rows[std::string(row.as_object().at("id").as_string())] = row.as_object();
  return rows;
}

std::string text(const json::object& o, const char* key) { return std::string(o.at(key).as_string()); }

}  // namespace

TEST(OperatorsSim, ADeadNodeStaysRedWithItsLastSightUntilRemovedAndACleanLeaveLeavesAtOnce) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ChatCluster c({.seed = seed, .nodes = 4, .configure = [](config::Config& cfg, int) {
                     cfg.ClusterSettings.RemoveDeadNodesAfterSeconds = 30;
                   }});
    ASSERT_TRUE(c.start_all());
    World w = make_world(c);
    c.kernel().run_for(Duration{6'000'000});  // status announcements
    auto rows = status_rows(c, 0, w.a);
    ASSERT_EQ(rows.size(), 4u);
    for (const auto& [id, row] : rows) {
      EXPECT_EQ(text(row, "status"), "green") << id << ": " << text(row, "reason");
      EXPECT_EQ(row.at("last_seen").as_int64(), c.kernel().env(0)->wall_now().millis()) << id;
    }
    EXPECT_EQ(text(rows.at(c.address(0)), "state"), "self");
    EXPECT_TRUE(rows.at(c.address(0)).at("leader").as_bool()) << "the lowest address leads";

    // Node 3 dies: within 2 s every survivor lists it red, "down", seen last about when it died.
    const int64_t died = c.kernel().env(0)->wall_now().millis();
    c.kernel().crash(3);
    const auto at = c.kernel().now();
    ASSERT_TRUE(c.kernel().run_until(
        [&] {
          for (int i = 0; i < 3; ++i) {
            const auto& p = c.node(i)->status().peers();
            bool red = false;
            for (const auto& s : p) red |= s.info.address == c.address(3) && !s.green && s.reason == "down";
            if (!red) return false;
          }
          return true;
        },
        at + Duration{2'000'000}))
        << "a dead node is red everywhere within 2 s";
    for (int i = 0; i < 3; ++i) {
      const auto dead = status_rows(c, i, w.a).at(c.address(3));
      EXPECT_EQ(text(dead, "status"), "red");
      EXPECT_EQ(text(dead, "reason"), "down");
      EXPECT_EQ(text(dead, "state"), "dead");
      EXPECT_FALSE(dead.at("leader").as_bool());
      EXPECT_GE(dead.at("last_seen").as_int64(), died);
      EXPECT_LE(dead.at("last_seen").as_int64(), died + 2000);
    }

    // Node 2 leaves cleanly (SIGTERM): gone from every list at once, not red.
    c.kernel().stop(2);
    c.kernel().run_for(Duration{1'000'000});
    for (int i = 0; i < 2; ++i) {
      rows = status_rows(c, i, w.a);
      EXPECT_FALSE(rows.contains(c.address(2))) << "node " << i << " still lists the node that left";
      EXPECT_TRUE(rows.contains(c.address(3))) << "the dead one stays";
    }
    // 30 s after its death the dead node is no longer listed either.
    c.kernel().run_for(Duration{30'000'000});
    rows = status_rows(c, 0, w.a);
    EXPECT_EQ(rows.size(), 2u);
    EXPECT_FALSE(rows.contains(c.address(3)));
  }
}

TEST(OperatorsSim, SettingsChorusDoesNotKnowSurviveASaveShowInTheConfigAndCountInTheHash) {
  ChatCluster c({.seed = 7, .nodes = 2, .per_node_config = true});
  // Both files: what the simulator writes, plus settings of Mattermost's that Chorus does not implement.
  auto with_unknowns = [](const std::string& file, int plugin_value) {
    json::object o = json::parse(file).as_object();
    o["ClusterSettings"].as_object()["ReadOnlyConfig"] = false;
    o["ServiceSettings"].as_object()["EnableCustomEmoji"] = true;
    o["PluginSettings"] = json::object{{"Enable", true},
                                       {"Plugins", json::object{{"com.example", json::object{{"level", plugin_value}}}}}};
    return json::serialize(o);
  };
  for (int i = 0; i < 2; ++i) c.node_config_file(i) = with_unknowns(c.node_config_file(i), 1);
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  c.kernel().run_for(Duration{6'000'000});
  for (const auto& [id, row] : status_rows(c, 0, w.a)) EXPECT_EQ(text(row, "status"), "green") << id;

  // GET /config shows them.
  auto got = c.call(0, "GET", "/api/v4/config", "", w.a);
  ASSERT_EQ(got.status, 200);
  const auto cfg = json::parse(got.body).as_object();
  EXPECT_EQ(cfg.at("PluginSettings").as_object().at("Plugins").as_object().at("com.example").as_object().at("level"),
            json::value(1));
  EXPECT_TRUE(cfg.at("ServiceSettings").as_object().at("EnableCustomEmoji").as_bool());

  // A save through the API writes them back as they were (and the change it was for).
  const json::value before = json::parse(c.node_config_file(0));
  auto saved = c.call(0, "PUT", "/api/v4/config/patch",
                      json::serialize(json::object{{"TeamSettings", json::object{{"SiteName", "Renamed"}}}}), w.a);
  ASSERT_EQ(saved.status, 200) << saved.body;
  const json::value after = json::parse(c.node_config_file(0));
  const auto& a = after.as_object();
  const auto& b = before.as_object();
  EXPECT_EQ(a.at("PluginSettings"), b.at("PluginSettings"));
  EXPECT_EQ(a.at("ServiceSettings").as_object().at("EnableCustomEmoji"),
            b.at("ServiceSettings").as_object().at("EnableCustomEmoji"));
  EXPECT_EQ(a.at("TeamSettings").as_object().at("SiteName").as_string(), "Renamed");
  for (const auto& [section, settings] : b)
    for (const auto& [name, value] : settings.as_object())
      if (!(section == "TeamSettings" && name == "SiteName"))
        EXPECT_EQ(a.at(section).as_object().at(name), value) << section << "." << name << " changed in the save";

  // Two files that differ only in a setting Chorus does not know: red, both ways.
  c.node_config_file(1) = with_unknowns(c.node_config_file(0), 2);
  ASSERT_EQ(c.call(1, "POST", "/api/v4/config/reload", "", w.a).status, 200);
  c.kernel().run_for(Duration{6'000'000});
  for (int i = 0; i < 2; ++i) {
    const auto rows = status_rows(c, i, w.a);
    const auto& other = rows.at(c.address(1 - i));
    EXPECT_EQ(text(other, "status"), "red") << "node " << i;
    EXPECT_EQ(text(other, "reason"), "config hash differs from ours") << "node " << i;
  }
}

TEST(OperatorsSim, ARestartOnlySettingChangedInTheFileIsNamedUntilTheFileAgreesAgain) {
  ChatCluster c({.seed = 8, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  const std::string original = c.config_file();
  json::object o = json::parse(original).as_object();
  o["ServiceSettings"].as_object()["ListenAddress"] = ":9065";
  c.config_file() = json::serialize(o);
  ASSERT_EQ(c.call(0, "POST", "/api/v4/config/reload", "", w.a).status, 200);
  auto self = status_rows(c, 0, w.a).at(c.address(0));
  EXPECT_EQ(text(self, "status"), "red");
  ASSERT_EQ(self.at("restart_required").as_array().size(), 1u);
  EXPECT_EQ(self.at("restart_required").as_array()[0].as_string(), "ServiceSettings.ListenAddress");
  EXPECT_NE(text(self, "reason").find("ServiceSettings.ListenAddress"), std::string::npos);
  c.config_file() = original;
  ASSERT_EQ(c.call(0, "POST", "/api/v4/config/reload", "", w.a).status, 200);
  self = status_rows(c, 0, w.a).at(c.address(0));
  EXPECT_EQ(text(self, "status"), "green");
  EXPECT_TRUE(self.at("restart_required").as_array().empty());
}

TEST(OperatorsSim, TheDatabaseStatusListsTheMasterAndReplicasForAdminsOnly) {
  ChatCluster c({.seed = 9, .nodes = 2, .replicas = {"replica1"}});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  expect_error(c.call(0, "GET", "/api/v4/cluster/database", "", w.b), 403);
  auto r = c.call(0, "GET", "/api/v4/cluster/database", "", w.a);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto o = json::parse(r.body).as_object();
  const auto& servers = o.at("servers").as_array();
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0].as_object().at("role").as_string(), "master");
  EXPECT_EQ(servers[1].as_object().at("role").as_string(), "replica");
  for (const auto& s : servers) {
    const auto& so = s.as_object();
    EXPECT_TRUE(so.at("online").as_bool());
    EXPECT_GE(so.at("pool").as_object().at("opened").to_number<int64_t>(), 1);
    EXPECT_EQ(std::string(so.at("name").as_string()).find("pw"), std::string::npos) << "no credentials";
  }
}
