// No acknowledged post is lost, under faults: simulated clients post and listen on WebSockets the way the
// official client does (reconnect with connection_id and sequence_number; on a new connection, re-sync
// over REST with since=) while nodes crash and restart and are cut off. After healing, every post that
// was acknowledged (201) is in the database and has reached every member's client, and no connection
// ever got an event twice or out of sequence.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <set>

#include "simulator/chat_cluster.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;

namespace {

struct Client {
  std::string user_id, token;
  int node = 0;
  std::unique_ptr<SimSocket> socket;
  size_t read = 0;  // frames of `socket` already processed
  std::string connection_id;
  int64_t next_seq = 0;
  int64_t synced_at = 0;        // wall ms of the last re-sync
  std::set<std::string> posts;  // post ids this client has (events and re-syncs)
  int gaps = 0, duplicates = 0, resumes = 0, resyncs = 0;
  std::set<std::string> seen_on_connection;
};

struct Harness {
  ChatCluster& c;
  std::string channel, team;
  std::vector<Client> clients;
  std::set<std::string> acknowledged;
  int failed_posts = 0;

  int64_t wall_ms() { return (c.kernel().options().wall_epoch_us + c.kernel().now().count()) / 1000; }
  int live_node(int preferred) {
    for (int k = 0; k < c.size(); ++k) {
      const int n = (preferred + k) % c.size();
      if (c.node(n) && c.node(n)->started()) return n;
    }
    return -1;
  }

  // Reads what arrived; on a broken socket, reconnects (through the "load balancer": the home node if
  // up, else the next live one) with the connection id and next sequence number.
  void pump(Client& cl) {
    if (cl.socket) {
      auto& frames = cl.socket->received;
      for (; cl.read < frames.size(); ++cl.read) {
        auto v = json::parse(frames[cl.read]);
        auto& o = v.as_object();
        if (!o.contains("event")) continue;
        const std::string event(o.at("event").as_string());
        const int64_t seq = o.at("seq").as_int64();
        if (event == "hello") {
          const std::string id(o.at("data").as_object().at("connection_id").as_string());
          if (!cl.connection_id.empty() && id != cl.connection_id)
            resync(cl);  // a new connection: missed events are gone
          cl.connection_id = id;
          cl.next_seq = 0;
          cl.seen_on_connection.clear();
        }
        if (seq != cl.next_seq) ++cl.gaps;
        cl.next_seq = seq + 1;
        if (event == "posted") {
          const auto post = json::parse(o.at("data").as_object().at("post").as_string()).as_object();
          const std::string id(post.at("id").as_string());
          if (!cl.seen_on_connection.insert(id).second) ++cl.duplicates;
          cl.posts.insert(id);
        }
      }
    }
    const bool broken = !cl.socket || cl.socket->close_code.has_value() || !cl.socket->node_alive();
    if (!broken) return;
    const int n = live_node(cl.node);
    if (n < 0) return;
    if (cl.socket && cl.socket->session) c.disconnect(*cl.socket);
    const bool resuming = !cl.connection_id.empty();
    cl.resumes += resuming;
    cl.socket = c.connect(n, cl.token, cl.connection_id, resuming ? cl.next_seq : 0);
    cl.read = 0;
  }

  void resync(Client& cl) {
    const int n = live_node(cl.node);
    if (n < 0) return;
    ++cl.resyncs;
    const int64_t since = cl.synced_at;
    cl.synced_at = wall_ms() - 60'000;  // generous: clocks of other nodes may lag
    auto r = c.call(n, "GET", fmt::format("/api/v4/channels/{}/posts?since={}", channel, since), "", cl.token,
                    Duration{5'000'000});
    if (r.status != 200) {
      cl.synced_at = since;  // try again at the next hello
      return;
    }
    const auto list = json::parse(r.body);
    for (const auto& [id, p] : list.as_object().at("posts").as_object()) cl.posts.insert(std::string(id));
  }
};

}  // namespace

TEST(ChatFaultsSim, NoAcknowledgedPostIsLostThroughCrashesRestartsAndPartitions) {
  int total_acknowledged = 0, total_resumes = 0, total_resyncs = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 3});
    ASSERT_TRUE(c.start_all());
    Harness h{c};
    std::string admin_id;
    const std::string admin = c.signup_and_login(0, "admin", &admin_id);
    auto team = c.call(0, "POST", "/api/v4/teams", R"({"name":"team1","display_name":"T"})", admin);
    h.team = std::string(json::parse(team.body).as_object().at("id").as_string());
    auto ch = c.call(0, "POST", "/api/v4/channels",
                     fmt::format(R"({{"team_id":"{}","name":"general2","display_name":"G"}})", h.team), admin);
    h.channel = std::string(json::parse(ch.body).as_object().at("id").as_string());
    for (int i = 0; i < 5; ++i) {
      const std::string name = fmt::format("user{}", i);
      auto u = c.call(
          0, "POST", "/api/v4/users",
          fmt::format(R"({{"username":"{}","email":"{}@e.com","password":"password-{}"}})", name, name, name), admin);
      const std::string uid(json::parse(u.body).as_object().at("id").as_string());
      ASSERT_EQ(c.call(0, "POST", "/api/v4/teams/" + h.team + "/members",
                       fmt::format(R"({{"team_id":"{}","user_id":"{}"}})", h.team, uid), admin)
                    .status,
                201);
      ASSERT_EQ(c.call(0, "POST", "/api/v4/channels/" + h.channel + "/members",
                       fmt::format(R"({{"user_id":"{}"}})", uid), admin)
                    .status,
                201);
      auto login = c.call(i % 3, "POST", "/api/v4/users/login",
                          fmt::format(R"({{"login_id":"{}","password":"password-{}"}})", name, name));
      Client cl;
      cl.user_id = uid;
      for (const auto& [k, v] : login.headers)
        if (k == "Token") cl.token = v;
      cl.node = i % 3;
      cl.synced_at = h.wall_ms() - 60'000;
      h.clients.push_back(std::move(cl));
    }
    auto& k = c.kernel();
    auto& rng = k.random();
    for (auto& cl : h.clients) h.pump(cl);
    k.run_for(Duration{200'000});
    // 30 s: a post every 50-150 ms from a random client; a fault every 2-5 s; clients pump every 100 ms.
    const Duration end = k.now() + Duration{30'000'000};
    Duration next_fault = k.now() + Duration{2'000'000};
    int seq = 0;
    while (k.now() < end) {
      auto& author = h.clients[rng.uniform(h.clients.size())];
      const int n = h.live_node(author.node);
      if (n >= 0) {
        const std::string msg = fmt::format("p{}", seq++);
        c.call_async(n, "POST", "/api/v4/posts", fmt::format(R"({{"channel_id":"{}","message":"{}"}})", h.channel, msg),
                     author.token, [&h](api::Response r) {
                       if (r.status == 201)
                         h.acknowledged.insert(std::string(json::parse(r.body).as_object().at("id").as_string()));
                       else
                         ++h.failed_posts;
                     });
      }
      k.run_for(Duration{rng.uniform_range(50'000, 150'000)});
      for (auto& cl : h.clients) h.pump(cl);
      if (k.now() >= next_fault) {
        next_fault = k.now() + Duration{rng.uniform_range(2'000'000, 5'000'000)};
        const auto victim = static_cast<NodeIndex>(rng.uniform(3));
        switch (rng.uniform(4)) {
          case 0:
            if (k.state(victim) == NodeState::up) k.crash(victim);
            break;
          case 1:
            for (NodeIndex i = 0; i < 3; ++i)
              if (k.state(i) == NodeState::down) k.start(i);
            break;
          case 2:
            k.partition({victim});
            break;
          case 3:
            k.heal();
            break;
        }
      }
    }
    // Heal, restart, and let every client reconnect and re-sync.
    k.heal();
    for (NodeIndex i = 0; i < 3; ++i)
      if (k.state(i) == NodeState::down) k.start(i);
    for (int round = 0; round < 100; ++round) {
      k.run_for(Duration{100'000});
      for (auto& cl : h.clients) h.pump(cl);
    }
    ASSERT_GT(h.acknowledged.size(), 50u);
    // Durable: every acknowledged post is in the database.
    auto* db = c.kernel().databases().find("db1");
    auto stored = db->execute({db::Statement{"SELECT Id FROM Posts", {}}}, false);
    std::set<std::string> in_db;
    for (const auto& r : stored.result().rows) in_db.insert(std::get<std::string>(r.at(0)));
    for (const auto& id : h.acknowledged)
      EXPECT_TRUE(in_db.contains(id)) << "acknowledged post " << id << " is not in the database";
    // Delivered: every member's client has every acknowledged post (events, resume or re-sync), and no
    // connection saw a gap it did not repair or an event twice.
    for (const auto& cl : h.clients) {
      size_t missing = 0;
      for (const auto& id : h.acknowledged) missing += !cl.posts.contains(id);
      EXPECT_EQ(missing, 0u) << "client of " << cl.user_id << " misses " << missing << " acknowledged posts";
      EXPECT_EQ(cl.duplicates, 0) << "an event twice on one connection";
      EXPECT_EQ(cl.gaps, 0) << "a gap in a connection's sequence";
      total_resumes += cl.resumes;
      total_resyncs += cl.resyncs;
    }
    total_acknowledged += static_cast<int>(h.acknowledged.size());
  }
  std::printf("chat under faults: %d acknowledged posts, %d reconnects, %d re-syncs after a new connection\n",
              total_acknowledged, total_resumes, total_resyncs);
  EXPECT_GT(total_resyncs, 0) << "the faults did cost some clients their connection";
}
