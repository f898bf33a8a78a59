// Discovery through the ClusterDiscovery table, in the simulator: nodes of one ClusterName find each
// other, another cluster's nodes stay apart, a clean stop removes the row, a crashed node's row goes
// stale and is ignored, then cleaned by the next node that starts.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <set>

#include "server/cluster/discovery.h"
#include "server/core/ids.h"
#include "simulator/kernel.h"
#include "simulator/sim_database.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

class DiscoveringNode final : public Process {
 public:
  DiscoveringNode(Env& env, std::string cluster, int64_t port) : env_(env), cluster_(std::move(cluster)), port_(port) {}
  void start() override {
    config::SqlSettings sql;
    sql.DriverName = "postgres";
    sql.DataSource = "postgres://chorus@db1:5432/chorus";
    store = std::make_unique<store::Store>(env_, sql, store::StoreOptions{env_.node_name(), "0.1.0", {}});
    store->start([this](db::Error e) {
      ASSERT_EQ(e.status, db::Status::ok) << e.message;
      cluster::DiscoveryOptions o;
      o.cluster_name = cluster_;
      o.hostname = "10.0.0.1";  // every node on one host: the port tells them apart
      o.gossip_port = port_;
      o.poll = Duration{1'000'000};
      o.refresh = Duration{2'000'000};
      o.stale_after = Duration{10'000'000};
      discovery =
          std::make_unique<cluster::Discovery>(env_, *store, o, [this](const std::vector<cluster::DiscoveredNode>& p) {
            seen.clear();
            for (const auto& n : p) seen.push_back(n.address());
          });
      discovery->start([this](db::Error e2) { registered = e2.status == db::Status::ok; });
    });
  }
  void stop(Task done) override {
    discovery->stop([this, done] {
      discovery.reset();
      store.reset();
      done();
    });
  }
  Env& env_;
  std::string cluster_;
  int64_t port_;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<cluster::Discovery> discovery;
  std::vector<std::string> seen;
  bool registered = false;
};

struct World {
  explicit World(uint64_t seed) {
    Kernel::Options o;
    o.seed = seed;
    k = std::make_unique<Kernel>(o);
    k->databases().add(DbServerOptions{.name = "db1"});
  }
  NodeIndex add(const std::string& cluster, int64_t port) {
    return k->add_node(fmt::format("10.0.0.1:{}", port),
                       [cluster, port](Env& env) { return std::make_unique<DiscoveringNode>(env, cluster, port); });
  }
  DiscoveringNode& n(NodeIndex i) { return *dynamic_cast<DiscoveringNode*>(k->process(i)); }
  int64_t rows() {
    auto o = k->databases().find("db1")->execute({{"SELECT COUNT(*) FROM ClusterDiscovery", {}}}, false);
    return std::get<int64_t>(o.result().rows[0][0]);
  }
  std::unique_ptr<Kernel> k;
};

}  // namespace

TEST(Discovery, NodesOfOneClusterFindEachOtherAndNoOneElse) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    World w(seed);
    for (int p = 0; p < 3; ++p) w.add("production", 8074 + p);
    const NodeIndex other = w.add("staging", 9000);
    for (NodeIndex i = 0; i < 4; ++i) w.k->start(i);
    ASSERT_TRUE(w.k->run_until(
        [&] {
          for (NodeIndex i = 0; i < 3; ++i)
            if (w.n(i).seen.size() != 2) return false;
          return w.n(other).registered;
        },
        Duration{10'000'000}))
        << "seed " << seed;
    for (NodeIndex i = 0; i < 3; ++i)
      for (const auto& a : w.n(i).seen) EXPECT_NE(a, "10.0.0.1:9000");
    EXPECT_TRUE(w.n(other).seen.empty());
    EXPECT_EQ(w.rows(), 4);
  }
}

TEST(Discovery, CleanStopRemovesTheRowCrashLeavesItToGoStale) {
  World w(3);
  for (int p = 0; p < 3; ++p) w.add("production", 8074 + p);
  for (NodeIndex i = 0; i < 3; ++i) w.k->start(i);
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.size() == 2; }, Duration{10'000'000}));
  w.k->stop(2);
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.size() == 1 && w.n(1).seen.size() == 1; },
                             w.k->now() + Duration{5'000'000}));
  EXPECT_EQ(w.rows(), 2);
  // A crash leaves the row; it is ignored once LastPingAt is older than stale_after (10 s here)...
  w.k->crash(1);
  w.k->run_for(Duration{5'000'000});
  EXPECT_EQ(w.n(0).seen.size(), 1u) << "still fresh";
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.empty(); }, w.k->now() + Duration{15'000'000}));
  EXPECT_EQ(w.rows(), 2);
  // ...and deleted by the next node that starts.
  w.k->start(2);
  ASSERT_TRUE(
      w.k->run_until([&] { return w.n(2).registered && w.n(0).seen.size() == 1; }, w.k->now() + Duration{5'000'000}));
  EXPECT_EQ(w.rows(), 2);
  EXPECT_EQ(w.n(0).seen[0], "10.0.0.1:8076");
}

TEST(Discovery, ARestartedNodeReplacesItsOwnOldRow) {
  World w(4);
  w.add("production", 8074);
  w.add("production", 8075);
  w.k->start(0);
  w.k->start(1);
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.size() == 1; }, Duration{10'000'000}));
  const std::string old_id = w.n(1).discovery->id();
  w.k->crash(1);
  w.k->start(1);
  ASSERT_TRUE(w.k->run_until([&] { return w.n(1).registered; }, w.k->now() + Duration{5'000'000}));
  EXPECT_NE(w.n(1).discovery->id(), old_id);
  EXPECT_EQ(w.rows(), 2) << "the old row of the same host and port was replaced, not kept beside the new one";
}

TEST(Ids, AreMattermostShaped) {
  Xoshiro256 r(5);
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const auto id = new_id(r);
    EXPECT_TRUE(is_valid_id(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_FALSE(is_valid_id("short"));
  EXPECT_FALSE(is_valid_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
}

// ---- which side of a lasting partition serves (server/cluster/reach.h), driven with crafted heartbeats

namespace {
cluster::Heartbeat beat(const std::string& address, int64_t n, std::set<std::string> reach, bool cut_off = false) {
  return cluster::Heartbeat{"", address, n, std::move(reach), cut_off};
}
}  // namespace

TEST(ReachRule, AnIsolatedNodeIsCutOffOnceItsPeersProveAliveAndTheMajorityStaysServing) {
  cluster::ReachRule isolated, majority;
  const std::set<std::string> all{"a", "b", "c"}, bc{"b", "c"};
  // Before the cut: everyone in everyone's group.
  EXPECT_FALSE(isolated.evaluate("a", all, {beat("b", 1, all), beat("c", 1, all)}).cut_off);
  // The cut: a holds b and c dead; they keep beating and reach two nodes.
  EXPECT_FALSE(isolated.evaluate("a", {"a"}, {beat("b", 2, bc), beat("c", 2, bc)}).cut_off) << "not yet proven alive";
  EXPECT_FALSE(isolated.evaluate("a", {"a"}, {beat("b", 3, bc), beat("c", 3, bc)}).cut_off);
  const auto v = isolated.evaluate("a", {"a"}, {beat("b", 4, bc), beat("c", 4, bc)});
  EXPECT_TRUE(v.cut_off);
  EXPECT_NE(v.reason.find("b reaches 2 node(s)"), std::string::npos) << v.reason;
  // b holds a dead; a beats too, but reaches fewer: b serves, and learns when a stops serving.
  EXPECT_FALSE(majority.evaluate("b", bc, {beat("a", 2, {"a"}), beat("c", 2, bc)}).cut_off);
  EXPECT_FALSE(majority.evaluate("b", bc, {beat("a", 5, {"a"}), beat("c", 5, bc)}).cut_off);
  const auto stopped = majority.evaluate("b", bc, {beat("a", 6, {"a"}, true), beat("c", 6, bc)});
  EXPECT_FALSE(stopped.cut_off);
  EXPECT_EQ(stopped.stopped_serving, (std::vector<std::string>{"a"}));
  EXPECT_TRUE(majority.evaluate("b", bc, {beat("a", 7, {"a"}, true), beat("c", 7, bc)}).stopped_serving.empty())
      << "once";
  // The heal: b and c are in a's group again, a serves at once.
  EXPECT_FALSE(isolated.evaluate("a", all, {beat("b", 5, all), beat("c", 5, all)}).cut_off);
}

TEST(ReachRule, ADeadPeerIsNeverTakenForAPartition) {
  cluster::ReachRule r;
  const std::set<std::string> all{"a", "b", "c"};
  r.evaluate("b", all, {beat("a", 1, all), beat("c", 1, all)});
  // a crashed: its row keeps its last beat and reach (3 nodes, more than b's 2) until it goes stale.
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(r.evaluate("b", {"b", "c"}, {beat("a", 1, all), beat("c", 2 + i, {"b", "c"})}).cut_off);
}

TEST(ReachRule, EverySplitLeavesExactlyTheLargestGroupServingAndHalvesGoToTheLowestAddress) {
  // Any split of five nodes into groups: every node evaluates its own group against the others' rows.
  const std::vector<std::vector<std::set<std::string>>> splits{
      {{"a", "b"}, {"c", "d"}},         // halves of four: a's half serves
      {{"a"}, {"b", "c", "d"}, {"e"}},  // the three serve
      {{"a", "e"}, {"b", "c"}, {"d"}},  // two twos: a's pair serves
      {{"a"}, {"b"}},                   // a cluster of two split: a serves
  };
  for (const auto& groups : splits) {
    std::map<std::string, cluster::ReachRule> rules;
    std::map<std::string, bool> cut;
    for (int round = 1; round <= 4; ++round)
      for (const auto& g : groups)
        for (const auto& self : g) {
          std::vector<cluster::Heartbeat> rows;
          for (const auto& other : groups)
            for (const auto& n : other)
              if (n != self) rows.push_back(beat(n, round, other));
          cut[self] = rules[self].evaluate(self, g, rows).cut_off;
        }
    std::set<std::string> serving;
    for (const auto& [n, c] : cut)
      if (!c) serving.insert(n);
    std::set<std::string> best;
    for (const auto& g : groups)
      if (best.empty() || cluster::reaches_more(g, best)) best = g;
    EXPECT_EQ(serving, best);
  }
}

TEST(ReachRule, WhenGossipFailsEverywhereNobodyIsCutOff) {
  // Every group a single node (a firewall on the gossip port, a key mismatch): cutting all but the
  // lowest off would leave one node carrying every client. In three or more nodes nobody is cut off.
  std::map<std::string, cluster::ReachRule> rules;
  for (int round = 1; round <= 5; ++round)
    for (const std::string self : {"a", "b", "c"}) {
      std::vector<cluster::Heartbeat> rows;
      for (const std::string n : {"a", "b", "c"})
        if (n != self) rows.push_back(beat(n, round, {n}));
      EXPECT_FALSE(rules[self].evaluate(self, {self}, rows).cut_off) << self << " round " << round;
    }
}

TEST(ReachRule, APeerThatRestartsOnTheServingSideStillCountsAsAlive) {
  // Its new row's Beat starts again from 0: counting goes by row, so the restarted peer proves itself
  // alive after two beats of its new row, and its old row (frozen) proves nothing.
  cluster::ReachRule a;
  const std::set<std::string> bc{"b", "c"};
  auto row = [](std::string id, std::string addr, int64_t n, std::set<std::string> reach) {
    return cluster::Heartbeat{std::move(id), std::move(addr), n, std::move(reach), false};
  };
  a.evaluate("a", {"a"}, {row("b1", "b", 500, bc), row("c1", "c", 500, bc)});
  EXPECT_TRUE(a.evaluate("a", {"a"}, {row("b1", "b", 502, bc), row("c1", "c", 502, bc)}).cut_off);
  // b and c restart (new rows, Beat from 1); b's old row lingers, frozen, and proves nothing after a few
  // polls; the new rows keep a cut off.
  for (int64_t n = 1; n <= 8; ++n)
    EXPECT_TRUE(a.evaluate("a", {"a"}, {row("b1", "b", 502, bc), row("b2", "b", n, bc), row("c2", "c", n, bc)}).cut_off)
        << "poll " << n << ": the serving side is alive in its new rows";
  // Had b and c died instead (rows frozen), a serves again once the rows are seen to stand still.
  cluster::ReachRule d;
  d.evaluate("a", {"a"}, {row("b1", "b", 500, bc)});
  EXPECT_TRUE(d.evaluate("a", {"a"}, {row("b1", "b", 502, bc)}).cut_off);
  bool serves = false;
  for (int i = 0; i < 4 && !serves; ++i) serves = !d.evaluate("a", {"a"}, {row("b1", "b", 502, bc)}).cut_off;
  EXPECT_TRUE(serves) << "a frozen row stops proving anything";
  // A row re-inserted under the same id with a lower Beat starts the count again rather than never.
  cluster::ReachRule r;
  r.evaluate("a", {"a"}, {row("b1", "b", 900, bc)});
  EXPECT_FALSE(r.evaluate("a", {"a"}, {row("b1", "b", 1, bc)}).cut_off);
  EXPECT_TRUE(r.evaluate("a", {"a"}, {row("b1", "b", 3, bc)}).cut_off);
}

TEST(ReachRule, AnOlderNodeWithoutAReachNeverCutsAnyoneOff) {
  cluster::ReachRule r;
  for (int i = 1; i < 6; ++i) EXPECT_FALSE(r.evaluate("b", {"b"}, {beat("a", i, {})}).cut_off);
}

TEST(ReachRule, AReachThatNamesUsProvesNothing) {
  // Random-faults seeds 10679 and 11234: c was partitioned, came back and wrote a Reach of all three,
  // then paused before a and b saw it alive again. Its row beats on and names a and b: it is not on the
  // other side of a partition from them, so they must not cut themselves off.
  cluster::ReachRule a;
  const std::set<std::string> all{"a", "b", "c"};
  a.evaluate("a", {"a", "b"}, {beat("b", 1, {"a", "b"}), beat("c", 1, {"c"})});
  for (int i = 2; i < 8; ++i)
    EXPECT_FALSE(a.evaluate("a", {"a", "b"}, {beat("b", i, {"a", "b"}), beat("c", i, all)}).cut_off) << i;
}
