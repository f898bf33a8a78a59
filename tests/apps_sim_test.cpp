// What the official apps need, across a simulated cluster (real node code, simulated database and links,
// virtual time): the client config and its one DiagnosticId, preferences and their events crossing nodes,
// direct channels asked for on two nodes at once, views that zero the unread counts every node reads,
// sidebar categories, the posts around the last read with their cursors, and bad input that changes
// nothing. Over several seeds where the outcome could depend on timing.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <set>

#include "simulator/chat_cluster.h"
#include "tests/api_test_helpers.h"
#include "tests/chat_world.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;
using namespace chorus::testing;

namespace {


int64_t team_unread(ChatCluster& c, int node, const std::string& token, const std::string& team) {
  auto r = c.call(node, "GET", "/api/v4/users/me/teams/unread", "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  const auto v = body(r);
  for (const auto& t : v.as_array())
    if (str(t, "team_id") == team) return t.as_object().at("msg_count").as_int64();
  return -1;
}

}  // namespace

TEST(AppsSim, ClientConfigAndLicenseGiveWhatTheAppsReadWithOneDiagnosticIdOnEveryNode) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 3});
    ASSERT_TRUE(c.start_all());
    // Every node asked at once: the first to write the id wins, and all answer it.
    std::vector<api::Response> answers(3);
    for (int n = 0; n < 3; ++n)
      c.call_async(n, "GET", "/api/v4/config/client?format=old", "", "",
                   [&answers, n](api::Response r) { answers[static_cast<size_t>(n)] = std::move(r); });
    c.kernel().run_for(Duration{2'000'000});
    std::set<std::string> ids;
    for (const auto& r : answers) {
      ASSERT_EQ(r.status, 200) << r.body;
      auto v = body(r);
      for (const auto& [k, value] : v.as_object()) EXPECT_TRUE(value.is_string()) << k << " is not a string";
      ids.insert(str(v, "DiagnosticId"));
      EXPECT_EQ(str(v, "Version"), "10.11.0");
      EXPECT_EQ(str(v, "EnableSignInWithUsername"), "true");
      EXPECT_EQ(str(v, "ChorusVersion"), c.version(0));
      EXPECT_EQ(header(r, "X-Version-Id").rfind("10.11.0.", 0), 0u);
    }
    EXPECT_EQ(ids.size(), 1u);
    EXPECT_FALSE(ids.begin()->empty());
    auto license = c.call(1, "GET", "/api/v4/license/client?format=old");
    EXPECT_EQ(str(body(license), "IsLicensed"), "false");
    expect_error(c.call(0, "GET", "/api/v4/config/client"), 501);
  }
}

TEST(AppsSim, APreferenceSavedOnOneNodeReachesTheUsersSocketOnAnotherAndReadsBackThere) {
  ChatCluster c({.seed = 3, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto second = c.call(1, "POST", "/api/v4/users/login", obj({{"login_id", "alice"}, {"password", "password-alice"}}));
  const std::string a2 = header(second, "Token");
  auto sock = c.connect(1, a2);
  const std::string prefs =
      obj(json::array{{{"user_id", w.a_id}, {"category", "display_settings"}, {"name", "use_military_time"},
                       {"value", "true"}}});
  ASSERT_EQ(c.call(0, "PUT", "/api/v4/users/me/preferences", prefs, w.a).status, 200);
  c.kernel().run_for(Duration{500'000});
  auto changed = events_of(*sock, "preferences_changed");
  ASSERT_EQ(changed.size(), 1u);
  auto list = json::parse(data_of(changed[0]).at("preferences").as_string()).as_array();
  EXPECT_EQ(str(list.at(0), "value"), "true");
  auto got = c.call(1, "GET", "/api/v4/users/me/preferences/display_settings/name/use_military_time", "", a2);
  EXPECT_EQ(str(body(got), "value"), "true");

  // Bad input changes nothing: an upper-case category, another user's preference, too many at once.
  expect_error(c.call(0, "PUT", "/api/v4/users/me/preferences",
                      obj(json::array{{{"user_id", w.a_id}, {"category", "Display"}, {"name", "x"}, {"value", "1"}}}),
                      w.a),
               400, "model.preference.is_valid.category");
  expect_error(c.call(0, "PUT", "/api/v4/users/me/preferences",
                      obj(json::array{{{"user_id", w.b_id}, {"category", "display_settings"}, {"name", "x"},
                                       {"value", "1"}}}),
                      w.a),
               403);
  expect_error(c.call(0, "PUT", "/api/v4/users/" + w.b_id + "/preferences", prefs, w.b), 403);
  json::array many;
  for (int i = 0; i < 101; ++i)
    many.push_back(json::object{{"user_id", w.a_id}, {"category", "x"}, {"name", std::to_string(i)}, {"value", "1"}});
  expect_error(c.call(0, "PUT", "/api/v4/users/me/preferences", obj(many), w.a), 400);
  expect_error(c.call(0, "PUT", "/api/v4/users/me/preferences", "{not json", w.a), 400);
  auto all = c.call(0, "GET", "/api/v4/users/me/preferences", "", w.a);
  EXPECT_EQ(body(all).as_array().size(), 1u) << all.body;

  ASSERT_EQ(c.call(1, "POST", "/api/v4/users/me/preferences/delete", prefs, a2).status, 200);
  c.kernel().run_for(Duration{500'000});
  EXPECT_EQ(events_of(*sock, "preferences_deleted").size(), 1u);
  expect_error(c.call(0, "GET", "/api/v4/users/me/preferences/display_settings/name/use_military_time", "", w.a), 404);
}

TEST(AppsSim, ADirectChannelAskedForOnTwoNodesAtOnceIsOneChannelAndItsEventsReachBoth) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 2});
    ASSERT_TRUE(c.start_all());
    World w = make_world(c);
    auto sa = c.connect(0, w.a);
    auto sb = c.connect(1, w.b);
    api::Response ra, rb;
    c.call_async(0, "POST", "/api/v4/channels/direct", obj(json::array{w.b_id, w.a_id}), w.a,
                 [&ra](api::Response r) { ra = std::move(r); });
    c.call_async(1, "POST", "/api/v4/channels/direct", obj(json::array{w.a_id, w.b_id}), w.b,
                 [&rb](api::Response r) { rb = std::move(r); });
    c.kernel().run_for(Duration{2'000'000});
    ASSERT_EQ(ra.status, 201) << ra.body;
    ASSERT_EQ(rb.status, 201) << rb.body;
    const std::string dm = str(body(ra), "id");
    EXPECT_EQ(str(body(rb), "id"), dm);
    EXPECT_EQ(str(body(ra), "type"), "D");
    EXPECT_EQ(str(body(ra), "name"), std::min(w.a_id, w.b_id) + "__" + std::max(w.a_id, w.b_id));
    // One channel made: one direct_added to each of them, whoever won.
    EXPECT_EQ(events_of(*sa, "direct_added").size(), 1u);
    EXPECT_EQ(events_of(*sb, "direct_added").size(), 1u);
    // It is in both users' team channel lists and their Direct Messages category, on either node.
    for (const auto& [node, token] : {std::pair{0, w.a}, std::pair{1, w.b}}) {
      auto list = c.call(node, "GET", "/api/v4/users/me/teams/" + w.team + "/channels", "", token);
      bool found = false;
      const auto channels = body(list);
      for (const auto& ch : channels.as_array()) found = found || str(ch, "id") == dm;
      EXPECT_TRUE(found) << list.body;
      auto cats = c.call(1 - node, "GET", "/api/v4/users/me/teams/" + w.team + "/channels/categories", "", token);
      const auto cv = body(cats);
      for (const auto& k : cv.as_object().at("categories").as_array()) {
        const auto& ids = k.as_object().at("channel_ids").as_array();
        const bool has = std::find(ids.begin(), ids.end(), json::value(dm)) != ids.end();
        EXPECT_EQ(has, str(k, "type") == "direct_messages") << cats.body;
      }
    }
    // Messages cross the nodes.
    ASSERT_EQ(c.call(1, "POST", "/api/v4/posts", obj({{"channel_id", dm}, {"message", "hi alice"}}), w.b).status, 201);
    c.kernel().run_for(Duration{1'000'000});
    EXPECT_EQ(events_of(*sa, "posted").size(), 1u);
  }
}

TEST(AppsSim, DirectAndGroupChannelsRefuseBadInputAndChangeNothing) {
  ChatCluster c({.seed = 2, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  const std::string ghost = "ybndrfg8ejkmcpqxot1uwisza3";
  expect_error(c.call(0, "POST", "/api/v4/channels/direct", obj(json::array{ghost, w.a_id}), w.a), 400,
               "api.channel.create_direct_channel.invalid_user");
  expect_error(c.call(0, "POST", "/api/v4/channels/direct", obj(json::array{"nope", w.a_id}), w.a), 400);
  expect_error(c.call(0, "POST", "/api/v4/channels/direct", obj(json::array{w.a_id}), w.a), 400);
  expect_error(c.call(0, "POST", "/api/v4/channels/group", obj(json::array{w.b_id}), w.a), 400,
               "api.channel.create_group.bad_size");
  auto mine = c.call(0, "GET", "/api/v4/users/me/channels", "", w.a);
  const auto mv = body(mine);
  for (const auto& ch : mv.as_array()) EXPECT_NE(str(ch, "type"), "D") << mine.body;
  // Notes to oneself are a direct channel of one member.
  auto self = c.call(0, "POST", "/api/v4/channels/direct", obj(json::array{w.a_id, w.a_id}), w.a);
  ASSERT_EQ(self.status, 201) << self.body;
  EXPECT_EQ(str(body(self), "name"), w.a_id + "__" + w.a_id);
  auto stats = c.call(1, "GET", "/api/v4/channels/" + str(body(self), "id") + "/stats", "", w.a);
  EXPECT_EQ(body(stats).as_object().at("member_count").as_int64(), 1);
  // A direct channel has no other members to add.
  expect_error(c.call(0, "POST", "/api/v4/channels/" + str(body(self), "id") + "/members", obj({{"user_id", w.b_id}}),
                      w.a),
               400);
}

TEST(AppsSim, ViewingAChannelOnOneNodeZeroesItsUnreadOnEveryNodeAndTellsTheUsersSockets) {
  ChatCluster c({.seed = 4, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sa = c.connect(1, w.a);  // alice reads on node 0, her socket is on node 1
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(c.call(1, "POST", "/api/v4/posts", obj({{"channel_id", w.channel}, {"message", fmt::format("m{}", i)}}),
                     w.b)
                  .status,
              201);
  c.kernel().run_for(Duration{1'000'000});
  const int64_t before = team_unread(c, 1, w.a, w.team);
  EXPECT_GE(before, 3);
  auto member = c.call(1, "GET", "/api/v4/channels/" + w.channel + "/members/me", "", w.a);
  EXPECT_EQ(body(member).as_object().at("msg_count").as_int64(), 0);
  auto view = c.call(0, "POST", "/api/v4/channels/members/me/view", obj({{"channel_id", w.channel}}), w.a);
  ASSERT_EQ(view.status, 200) << view.body;
  EXPECT_TRUE(body(view).as_object().at("last_viewed_at_times").as_object().contains(w.channel));
  c.kernel().run_for(Duration{1'000'000});
  auto viewed = events_of(*sa, "channel_viewed");
  ASSERT_EQ(viewed.size(), 1u);
  EXPECT_EQ(std::string(data_of(viewed[0]).at("channel_id").as_string()), w.channel);
  EXPECT_EQ(events_of(*sa, "multiple_channels_viewed").size(), 1u);
  EXPECT_EQ(team_unread(c, 1, w.a, w.team), before - 3);
  EXPECT_EQ(team_unread(c, 0, w.a, w.team), before - 3);
  // The posts around the last read: all three read, nothing after; the cursors say where the list ends.
  auto around = c.call(1, "GET",
                       "/api/v4/users/" + w.a_id + "/channels/" + w.channel + "/posts/unread?limit_before=2&limit_after=5",
                       "", w.a);
  ASSERT_EQ(around.status, 200) << around.body;
  auto list = body(around).as_object();
  EXPECT_EQ(list.at("order").as_array().size(), 2u);
  EXPECT_EQ(str(list, "next_post_id"), "");
  EXPECT_NE(str(list, "prev_post_id"), "");  // m0, before the two newest
  // Paging by page carries the cursors too.
  auto page = c.call(0, "GET", "/api/v4/channels/" + w.channel + "/posts?page=1&per_page=1", "", w.a);
  auto p = body(page).as_object();
  ASSERT_EQ(p.at("order").as_array().size(), 1u);
  EXPECT_NE(str(p, "next_post_id"), "");
  EXPECT_NE(str(p, "prev_post_id"), "");
  // Bad input: another user's view, a malformed channel id.
  expect_error(c.call(0, "POST", "/api/v4/channels/members/" + w.b_id + "/view", obj({{"channel_id", w.channel}}), w.a),
               403);
  expect_error(c.call(0, "POST", "/api/v4/channels/members/me/view", obj({{"channel_id", "x"}}), w.a), 400);
}

TEST(AppsSim, SidebarCategoriesStartWithTheDefaultsAndAMoveOnOneNodeShowsOnTheOther) {
  ChatCluster c({.seed = 5, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sock = c.connect(1, w.a);
  const std::string path = "/api/v4/users/me/teams/" + w.team + "/channels/categories";
  auto first = c.call(0, "GET", path, "", w.a);
  ASSERT_EQ(first.status, 200) << first.body;
  auto cats = body(first).as_object().at("categories").as_array();
  ASSERT_EQ(cats.size(), 3u);
  EXPECT_EQ(str(cats[0], "type"), "favorites");
  EXPECT_EQ(str(cats[1], "type"), "channels");
  EXPECT_EQ(str(cats[2], "type"), "direct_messages");
  // Every channel of hers in the team is in Channels (the team's two defaults and "general").
  const auto& in_channels = cats[1].as_object().at("channel_ids").as_array();
  EXPECT_TRUE(std::find(in_channels.begin(), in_channels.end(), json::value(w.channel)) != in_channels.end());
  // Favourite it on node 0; node 1 answers the same and her socket there hears of it.
  json::object fav = cats[0].as_object();
  fav["channel_ids"] = json::array{json::value(w.channel)};
  auto moved = c.call(0, "PUT", path, obj(json::array{fav}), w.a);
  ASSERT_EQ(moved.status, 200) << moved.body;
  c.kernel().run_for(Duration{500'000});
  EXPECT_EQ(events_of(*sock, "sidebar_category_updated").size(), 1u);
  auto after = body(c.call(1, "GET", path, "", w.a)).as_object().at("categories").as_array();
  EXPECT_EQ(after[0].as_object().at("channel_ids").as_array(), json::array{json::value(w.channel)});
  const auto& rest = after[1].as_object().at("channel_ids").as_array();
  EXPECT_TRUE(std::find(rest.begin(), rest.end(), json::value(w.channel)) == rest.end());
  // The order: reversed, then read back; one that leaves a category out is refused.
  json::array order{str(after[2], "id"), str(after[1], "id"), str(after[0], "id")};
  ASSERT_EQ(c.call(1, "PUT", path + "/order", obj(order), w.a).status, 200);
  EXPECT_EQ(body(c.call(0, "GET", path + "/order", "", w.a)).as_array(), order);
  expect_error(c.call(0, "PUT", path + "/order", obj(json::array{order[0]}), w.a), 400);
  // A channel she is not in, or someone else's category: refused, nothing moved.
  const auto before_bad = body(c.call(0, "GET", path, "", w.a)).as_object().at("categories").as_array();
  json::object bad = after[1].as_object();
  bad["channel_ids"] = json::array{json::value("ybndrfg8ejkmcpqxot1uwisza3")};
  expect_error(c.call(0, "PUT", path, obj(json::array{bad}), w.a), 400, "app.channel.sidebar_categories");
  expect_error(c.call(0, "PUT", "/api/v4/users/" + w.b_id + "/teams/" + w.team + "/channels/categories",
                      obj(json::array{fav}), w.b),
               404);
  auto still = body(c.call(0, "GET", path, "", w.a)).as_object().at("categories").as_array();
  EXPECT_EQ(still, before_bad) << "a refused change changed nothing";
}

// A preference event held back between two nodes reaches the user's node after the next change's event:
// delivered, it would leave the app showing the older value. The hub resets the user's connection there
// instead (1012), and the client re-reads.
TEST(AppsSim, AUsersPreferenceEventThatComesAfterALaterOneResetsTheConnectionInsteadOfUndoingIt) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 3});
    ASSERT_TRUE(c.start_all());
    World w = make_world(c);
    auto sock = c.connect(2, w.a);
    c.kernel().run_for(Duration{200'000});
    auto save = [&](int node, const std::string& value) {
      return c.call(node, "PUT", "/api/v4/users/me/preferences",
                    obj(json::array{{{"user_id", w.a_id}, {"category", "sim"}, {"name", "n"}, {"value", value}}}), w.a);
    };
    c.kernel().block(0, 2);  // node 0's messages to node 2 wait (reliable: retried until the link heals)
    ASSERT_EQ(save(0, "old").status, 200);
    ASSERT_EQ(save(1, "new").status, 200);
    c.kernel().run_for(Duration{1'000'000});
    auto changed = events_of(*sock, "preferences_changed");
    ASSERT_EQ(changed.size(), 1u);
    EXPECT_NE(data_of(changed[0]).at("preferences").as_string().find("new"), std::string::npos);
    c.kernel().heal();
    c.kernel().run_for(Duration{5'000'000});
    EXPECT_EQ(events_of(*sock, "preferences_changed").size(), 1u) << "the older value is never delivered after";
    EXPECT_EQ(sock->close_code, std::optional<uint16_t>(1012)) << "the connection is reset: the client re-reads";
    EXPECT_GE(c.node(2)->hub().stats().late_user_events, 1u);
    auto now = c.call(2, "GET", "/api/v4/users/me/preferences/sim/name/n", "", w.a);
    EXPECT_EQ(str(body(now), "value"), "new");
  }
}
