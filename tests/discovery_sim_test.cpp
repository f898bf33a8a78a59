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
      discovery = std::make_unique<cluster::Discovery>(env_, *store, o, [this](const std::vector<cluster::DiscoveredNode>& p) {
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
    return k->add_node(fmt::format("10.0.0.1:{}", port), [cluster, port](Env& env) { return std::make_unique<DiscoveringNode>(env, cluster, port); });
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
    ASSERT_TRUE(w.k->run_until([&] {
      for (NodeIndex i = 0; i < 3; ++i)
        if (w.n(i).seen.size() != 2) return false;
      return w.n(other).registered;
    }, Duration{10'000'000})) << "seed " << seed;
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
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.size() == 1 && w.n(1).seen.size() == 1; }, w.k->now() + Duration{5'000'000}));
  EXPECT_EQ(w.rows(), 2);
  // A crash leaves the row; it is ignored once LastPingAt is older than stale_after (10 s here)...
  w.k->crash(1);
  w.k->run_for(Duration{5'000'000});
  EXPECT_EQ(w.n(0).seen.size(), 1u) << "still fresh";
  ASSERT_TRUE(w.k->run_until([&] { return w.n(0).seen.empty(); }, w.k->now() + Duration{15'000'000}));
  EXPECT_EQ(w.rows(), 2);
  // ...and deleted by the next node that starts.
  w.k->start(2);
  ASSERT_TRUE(w.k->run_until([&] { return w.n(2).registered && w.n(0).seen.size() == 1; }, w.k->now() + Duration{5'000'000}));
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
  return cluster::Heartbeat{address, n, std::move(reach), cut_off};
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
  EXPECT_TRUE(majority.evaluate("b", bc, {beat("a", 7, {"a"}, true), beat("c", 7, bc)}).stopped_serving.empty()) << "once";
  // The heal: b and c are in a's group again, a serves at once.
  EXPECT_FALSE(isolated.evaluate("a", all, {beat("b", 5, all), beat("c", 5, all)}).cut_off);
}

TEST(ReachRule, ADeadPeerIsNeverTakenForAPartition) {
  cluster::ReachRule r;
  const std::set<std::string> all{"a", "b", "c"};
  r.evaluate("b", all, {beat("a", 1, all), beat("c", 1, all)});
  // a crashed: its row keeps its last beat and reach (3 nodes, more than b's 2) until it goes stale.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(r.evaluate("b", {"b", "c"}, {beat("a", 1, all), beat("c", 2 + i, {"b", "c"})}).cut_off);
}

TEST(ReachRule, EverySplitLeavesExactlyTheLargestGroupServingAndHalvesGoToTheLowestAddress) {
  // Any split of five nodes into groups: every node evaluates its own group against the others' rows.
  const std::vector<std::vector<std::set<std::string>>> splits{
      {{"a", "b"}, {"c", "d"}},             // halves of four: a's half serves
      {{"a"}, {"b"}, {"c"}},                // three alone: a serves
      {{"a"}, {"b", "c", "d"}, {"e"}},      // the three serve
      {{"a", "e"}, {"b", "c"}, {"d"}},      // two twos: a's pair serves
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
  for (int i = 2; i < 8; ++i) EXPECT_FALSE(a.evaluate("a", {"a", "b"}, {beat("b", i, {"a", "b"}), beat("c", i, all)}).cut_off) << i;
}
