// Membership (SWIM + Lifeguard) and the bully leader, in the simulator over many seeds: crashed nodes
// are declared dead by every peer within 3 s, a lossy or slow link does not get a healthy node declared
// dead, a paused node is declared dead and welcomed back, and every connected group ends up with exactly
// one leader, its lowest address.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>

#include "server/cluster/membership.h"
#include "simulator/kernel.h"
#include "simulator/membership_cluster.h"

using namespace chorus;
using namespace chorus::sim;
using cluster::MemberState;

namespace {

// The simulator's membership cluster, with short names for the tests.
struct Cluster : MemberCluster {
  Cluster(uint64_t seed, int n, double loss = 0) : MemberCluster(seed, n, loss), k(&kernel()) {
    for (int i = 0; i < n; ++i) addrs.push_back(address(i));
  }
  Kernel* k;
  std::vector<std::string> addrs;
};

std::vector<int> range(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

TEST(Membership, ACrashedNodeIsDeclaredDeadByEveryPeerWithinThreeSeconds) {
  for (int n : {3, 5, 9}) {
    std::vector<double> seconds;
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      Cluster c(seed, n);
      ASSERT_TRUE(c.k->run_until([&] { return c.all_alive() && c.one_leader(range(n)); }, Duration{5'000'000}))
          << "n=" << n << " seed " << seed;
      c.k->run_for(Duration{2'000'000});
      const int victim = static_cast<int>(c.k->random().uniform(static_cast<uint64_t>(n)));
      c.k->crash(victim);
      const auto t0 = c.k->now();
      ASSERT_TRUE(c.k->run_until([&] { return c.all_see(victim, MemberState::dead); }, t0 + Duration{10'000'000}))
          << "n=" << n << " seed " << seed;
      seconds.push_back(static_cast<double>((c.k->now() - t0).count()) / 1e6);
      EXPECT_EQ(c.deaths(), n - 1) << "only the victim dies, once per peer (n=" << n << " seed " << seed << ")";
    }
    std::printf("n=%d: crash declared dead by all peers in p50 %.2f s, p99 %.2f s, max %.2f s\n", n,
                percentile(seconds, 0.5), percentile(seconds, 0.99), percentile(seconds, 1.0));
    EXPECT_LE(percentile(seconds, 0.99), 3.0) << "n=" << n;
  }
}

TEST(Membership, FivePercentLossOrASlowLinkNeverGetsAHealthyNodeDeclaredDead) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Cluster lossy(seed, 5, 0.05);
    lossy.k->run_for(Duration{60'000'000});
    EXPECT_EQ(lossy.deaths(), 0) << "5% loss, seed " << seed;
    EXPECT_TRUE(lossy.all_alive());

    Cluster slow(seed, 5);
    for (int a : {0, 1}) {
      LinkConfig& l = slow.k->link(a, 1 - a);  // 150 ms each way between nodes 0 and 1: beyond the probe timeout
      l.latency = LatencyModel{Duration{150'000}, Duration{20'000}, Duration{400'000}};
    }
    slow.k->run_for(Duration{60'000'000});
    EXPECT_EQ(slow.deaths(), 0) << "slow link, seed " << seed;
  }
}

TEST(Membership, APausedNodeIsDeclaredDeadThenWelcomedBack) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Cluster c(seed, 5);
    ASSERT_TRUE(c.k->run_until([&] { return c.all_alive(); }, Duration{5'000'000}));
    c.k->run_for(Duration{1'000'000});
    c.k->pause(2);
    const auto t0 = c.k->now();
    ASSERT_TRUE(c.k->run_until([&] { return c.all_see(2, MemberState::dead); }, t0 + Duration{10'000'000}))
        << "seed " << seed << " now " << c.k->now().count() << " events " << c.k->events_processed()
        << " state seen by 0: " << cluster::to_string(c.node(0)->state_of(c.addrs[2]));
    EXPECT_LE((c.k->now() - t0).count(), 3'000'000) << "seed " << seed;
    c.k->run_for(Duration{2'000'000});
    c.k->resume(2);
    const auto t1 = c.k->now();
    ASSERT_TRUE(c.k->run_until([&] { return c.all_alive(); }, t1 + Duration{10'000'000}))
        << "not welcomed back, seed " << seed;
    std::printf("seed %llu: paused node dead after %.2f s, back after %.2f s\n", static_cast<unsigned long long>(seed),
                static_cast<double>((t1 - t0).count() - 2'000'000) / 1e6,
                static_cast<double>((c.k->now() - t1).count()) / 1e6);
  }
}

TEST(Election, EveryConnectedGroupHasExactlyOneLeaderItsLowestAddress) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Cluster c(seed, 5);
    ASSERT_TRUE(c.k->run_until([&] { return c.one_leader(range(5)); }, Duration{5'000'000}));
    EXPECT_EQ(c.node(3)->membership->leader(), "10.0.0.1:8074");
    // Halves: each side elects its own lowest.
    c.k->partition({0, 1});
    ASSERT_TRUE(c.k->run_until(
        [&] {
          return c.one_leader({0, 1}) && c.one_leader({2, 3, 4});
        },
        c.k->now() + Duration{10'000'000}))
        << "seed " << seed;
    EXPECT_EQ(c.node(4)->membership->leader(), "10.0.0.3:8074");
    // Healed: one leader again.
    c.k->heal();
    ASSERT_TRUE(
        c.k->run_until([&] { return c.all_alive() && c.one_leader(range(5)); }, c.k->now() + Duration{15'000'000}))
        << "seed " << seed;
    // The leader dies: the next lowest takes over; back (a new generation), it takes the lead again.
    c.k->crash(0);
    ASSERT_TRUE(c.k->run_until([&] { return c.one_leader({1, 2, 3, 4}); }, c.k->now() + Duration{5'000'000}));
    EXPECT_EQ(c.node(2)->membership->leader(), "10.0.0.2:8074");
    c.k->run_for(Duration{1'000'000});
    c.k->start(0);
    ASSERT_TRUE(
        c.k->run_until([&] { return c.all_alive() && c.one_leader(range(5)); }, c.k->now() + Duration{10'000'000}))
        << "seed " << seed;
  }
}

TEST(Membership, MalformedMessagesAreDroppedAndChangeNothing) {
  Cluster c(1, 3);
  c.k->run_for(Duration{2'000'000});
  for (const std::vector<uint8_t>& junk :
       std::vector<std::vector<uint8_t>>{{0x10}, {0x11, 1}, {0x12, 0xff, 0xff}, {0x13, 0, 0, 0, 0, 0, 0, 9}}) {
    EXPECT_TRUE(c.node(0)->membership->handle_frame("10.0.0.2:8074", junk));
  }
  EXPECT_FALSE(
      c.node(0)->membership->handle_frame("10.0.0.2:8074", std::vector<uint8_t>{0x01, 2}));  // not a membership message
  c.k->run_for(Duration{2'000'000});
  EXPECT_TRUE(c.all_alive());
}

#include <rapidcheck/gtest.h>

#include "simulator/faults.h"

// After any random fault schedule (crashes, pauses, partitions, one-way cuts, loss, clock skew and
// drift) is repaired, and the network has been stable for 10 s, every live node is seen alive by every
// other, and they all name the lowest live address as leader.
RC_GTEST_PROP(ElectionProperty, AfterFaultsStopAllLiveNodesAgreeOnTheLowest, ()) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const int n = *rc::gen::inRange(3, 8);
  Cluster c(seed, n);
  Xoshiro256 r(seed ^ 0xfa17);
  fault::SwarmOptions swarm;
  swarm.horizon = Duration{15'000'000};
  swarm.mean_faults_per_second = 1.0;
  const auto schedule = fault::random_schedule(r, static_cast<uint32_t>(n), swarm);
  RC_ASSERT(sim::schedule_faults(*c.k, schedule).empty());
  c.k->run_until(Duration{15'000'000});
  // Every crashed node is back by the horizon (the schedule restarts them); let the network settle.
  const bool settled = c.k->run_until([&] { return c.all_alive() && c.one_leader(range(n)); }, Duration{25'000'000});
  if (!settled) {
    std::string view;
    for (int i = 0; i < n; ++i) {
      view += fmt::format("node {} ({}): leader {}, inc {}; sees", i, static_cast<int>(c.k->state(i)),
                          c.node(i) ? c.node(i)->membership->leader() : "-",
                          c.node(i) ? c.node(i)->membership->incarnation() : 0);
      if (c.node(i))
        for (const auto& [a, m] : c.node(i)->membership->members())
          view += fmt::format(" {}={}/g{}/i{}", a, cluster::to_string(m.state), m.generation % 100000, m.incarnation);
      view += "\n";
    }
    RC_LOG() << "seed " << seed << " n " << n << "\n" << fault::to_string(schedule) << view;
  }
  RC_ASSERT(settled);
}

TEST(PeerStatus, GreenWhenAlikeRedWithTheReasonWhenVersionConfigOrLifeDiffer) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    // Node 3 runs another config; node 4 the next minor version; node 2 a version two minors ahead.
    MemberCluster mc(seed, 5, 0, {}, [](int i) {
      cluster::NodeInfo n{"", "0.1.0", "2 (release 0.1)", "hash-a", fmt::format("host{}", i)};
      if (i == 3) n.config_hash = "hash-b";
      if (i == 4) n.version = "0.2.0";
      if (i == 2) n.version = "0.3.1";
      return n;
    });
    auto& k = mc.kernel();
    k.run_for(Duration{3'000'000});
    auto seen = [&](int observer, int peer) {
      for (const auto& p : mc.node(observer)->status->peers())
        if (p.info.address == mc.address(peer)) return p.green ? std::string("green") : p.reason;
      return std::string("missing");
    };
    EXPECT_EQ(seen(0, 1), "green") << "seed " << seed;
    EXPECT_EQ(seen(0, 3), "config hash differs from ours");
    EXPECT_EQ(seen(0, 4), "version 0.2.0 differs from ours (0.1.0)");
    EXPECT_EQ(seen(0, 2), "version 0.3.1 is incompatible with ours (0.1.0): more than one minor version apart");
    EXPECT_EQ(seen(3, 0), "config hash differs from ours") << "red is symmetric";
    // The status carries what the peer announced.
    for (const auto& p : mc.node(0)->status->peers())
      if (p.info.address == mc.address(1)) {
        EXPECT_EQ(p.info.hostname, "host1");
        EXPECT_EQ(p.info.schema_version, "2 (release 0.1)");
      }
    // Down is red; back is green again.
    k.crash(1);
    ASSERT_TRUE(k.run_until([&] { return seen(0, 1) == "down"; }, k.now() + Duration{3'000'000}));
    k.start(1);
    ASSERT_TRUE(k.run_until([&] { return seen(0, 1) == "green"; }, k.now() + Duration{3'000'000})) << seen(0, 1);
  }
  EXPECT_TRUE(cluster::versions_compatible("5.27.1", "5.27.2"));
  EXPECT_TRUE(cluster::versions_compatible("5.26.4", "5.27.1"));
  EXPECT_FALSE(cluster::versions_compatible("5.25.5", "5.27.0"));  // the guide's examples
  EXPECT_FALSE(cluster::versions_compatible("6.0.0", "5.9.0"));
  EXPECT_FALSE(cluster::versions_compatible("garbage", "5.9.0"));
}

// Rolling upgrades, as the HA guide does them: one node at a time is stopped, upgraded and started
// again, in a random order. At every moment at least N-1 nodes serve and every serving node names a
// serving leader (allowing the moments it takes news to cross the network); at the end every node is
// green. An upgrade that jumps more than one minor version is flagged: the status says "incompatible"
// while old and new run side by side.
RC_GTEST_PROP(RollingUpgradeProperty, OneNodeAtATimeKeepsALeaderAndEndsGreen, ()) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const int n = *rc::gen::inRange(3, 7);
  const bool too_far = *rc::gen::inRange(0, 4) == 0;
  const std::string target = too_far ? "0.3.0" : "0.2.0";
  MemberCluster c(seed, n);
  auto& k = c.kernel();
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[i] = i;
  Xoshiro256 r(seed);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[r.uniform(i)]);
  RC_ASSERT(k.run_until([&] { return c.all_alive() && c.one_leader(range(n)); }, Duration{10'000'000}));
  k.run_for(Duration{3'000'000});  // a settled cluster: everyone has heard from everyone

  int violations = 0;
  bool flagged = false;
  std::vector<Duration> started(static_cast<size_t>(n), Duration{0});  // each node's last start
  Duration quiet_until{0};  // news of the last stop or start is still travelling until then
  std::function<void()> check = [&] {
    if (k.now() >= quiet_until) {
      // Serving: up, and held alive (not suspected, not declared dead) by every other node up for 2 s
      // or more (one that has just started is still learning who is there). The harness takes one node
      // down at a time; that the others stay in service is the cluster's doing.
      int serving = 0;
      for (int i = 0; i < n; ++i) {
        bool held = c.live(i);
        for (int j = 0; j < n && held; ++j)
          if (j != i && c.live(j) && k.now() - started[static_cast<size_t>(j)] >= Duration{2'000'000})
            held = c.node(j)->state_of(c.address(i)) == cluster::MemberState::alive;
        serving += held;
      }
      if (serving < n - 1 && violations++ == 0)
        RC_LOG() << "at " << k.now().count() << " us only " << serving << " of " << n << " nodes serve\n";
      for (int i = 0; i < n; ++i) {
        if (!c.live(i)) continue;
        const std::string& leader = c.node(i)->membership->leader();
        bool leader_serves = false;
        for (int j = 0; j < n; ++j) leader_serves |= c.live(j) && c.address(j) == leader;
        if (!leader_serves && violations++ == 0)
          RC_LOG() << "at " << k.now().count() << " us node " << c.address(i) << " names " << leader
                   << " which does not serve\n";
        for (const auto& p : c.node(i)->status->peers()) flagged |= p.reason.find("incompatible") != std::string::npos;
      }
    }
    k.at(k.now() + Duration{50'000}, check);
  };
  check();
  for (int victim : order) {
    k.stop(static_cast<NodeIndex>(victim));
    quiet_until = k.now() + Duration{300'000};
    k.run_for(Duration{1'000'000 + static_cast<int64_t>(r.uniform(2'000'000))});  // the upgrade itself
    auto info = cluster::NodeInfo{"", target, "2 (release 0.1)", "same-config", "host"};
    c.set_info(victim, info);
    k.start(static_cast<NodeIndex>(victim));
    started[static_cast<size_t>(victim)] = k.now();
    quiet_until = k.now() + Duration{300'000};
    k.run_for(Duration{3'000'000});
  }
  RC_ASSERT(violations == 0);
  const bool green = k.run_until(
      [&] {
        for (int i = 0; i < n; ++i)
          for (const auto& p : c.node(i)->status->peers())
            if (!p.green) return false;
        return true;
      },
      k.now() + Duration{10'000'000});
  RC_ASSERT(green);
  RC_ASSERT(flagged == too_far);
}

// Detection accuracy and completeness: in a network that loses up to 5% of frames but is otherwise
// stable, no live, reachable node is ever declared dead; and a node that then crashes (its connections
// reset) or hangs (silence only) is declared dead by every peer within 3 s.
RC_GTEST_PROP(DetectionProperty, NoFalseDeathsUnderLossAndEveryCrashFoundWithinThreeSeconds, ()) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const int n = *rc::gen::inRange(3, 10);
  const double loss = *rc::gen::inRange(0, 51) / 1000.0;
  const bool hang = *rc::gen::arbitrary<bool>();
  MemberCluster c(seed, n, loss);
  auto& k = c.kernel();
  k.run_for(Duration{20'000'000});
  RC_ASSERT(c.deaths() == 0);
  const int victim = static_cast<int>(k.random().uniform(static_cast<uint64_t>(n)));
  if (hang)
    k.pause(static_cast<NodeIndex>(victim));
  else
    k.crash(static_cast<NodeIndex>(victim));
  const auto t0 = k.now();
  RC_ASSERT(k.run_until([&] { return c.all_see(victim, cluster::MemberState::dead); }, t0 + Duration{3'000'000}));
  RC_ASSERT(c.deaths() == n - 1);
}
