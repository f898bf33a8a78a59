// The world most API tests on the simulated cluster start from: Alice (the first user: system admin) logged
// in on one node, Bob (made by her) on another, both in the team "eng" and its open channel "general".
#pragma once

#include <string>

#include "simulator/chat_cluster.h"
#include "tests/api_test_helpers.h"

namespace chorus::testing {

struct World {
  std::string a, b, a_id, b_id, team, channel;  // tokens, user ids, the team's and the channel's ids
};

// The data of an event frame a socket received.
inline boost::json::object data_of(const std::string& frame) {
  return boost::json::parse(frame).as_object().at("data").as_object();
}

inline World make_world(sim::ChatCluster& c, int a_node = 0, int b_node = 1) {
  World w;
  w.a = c.signup_and_login(a_node, "alice", &w.a_id);
  // The admin creates the second user (the server is not open).
  auto created = c.call(a_node, "POST", "/api/v4/users",
                        obj({{"username", "bob"}, {"email", "bob@example.com"}, {"password", "password-bob"}}), w.a);
  EXPECT_EQ(created.status, 201) << created.body;
  auto login = c.call(b_node, "POST", "/api/v4/users/login", obj({{"login_id", "bob"}, {"password", "password-bob"}}));
  EXPECT_EQ(login.status, 200) << login.body;
  w.b = header(login, "Token");
  w.b_id = field(login, "id");
  auto team = c.call(a_node, "POST", "/api/v4/teams",
                     obj({{"name", "eng"}, {"display_name", "Engineering"}, {"type", "O"}}), w.a);
  EXPECT_EQ(team.status, 201) << team.body;
  w.team = field(team, "id");
  auto member = c.call(a_node, "POST", "/api/v4/teams/" + w.team + "/members",
                       obj({{"team_id", w.team}, {"user_id", w.b_id}}), w.a);
  EXPECT_EQ(member.status, 201) << member.body;
  auto ch = c.call(a_node, "POST", "/api/v4/channels",
                   obj({{"team_id", w.team}, {"name", "general"}, {"display_name", "General"}, {"type", "O"}}), w.a);
  EXPECT_EQ(ch.status, 201) << ch.body;
  w.channel = field(ch, "id");
  auto add = c.call(a_node, "POST", "/api/v4/channels/" + w.channel + "/members", obj({{"user_id", w.b_id}}), w.a);
  EXPECT_EQ(add.status, 201) << add.body;
  return w;
}

}  // namespace chorus::testing
