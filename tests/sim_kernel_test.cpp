// The simulation kernel: virtual time, links (latency, loss, duplication, reordering, partitions),
// connections, crash/restart/pause/resume, clock skew and drift, and the trace.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "server/core/codec.h"
#include "simulator/kernel.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

// A node that records what it sees and does what the test tells it.
class Probe final : public Process, public TransportHandler {
 public:
  struct Frame {
    std::string from;
    uint64_t value;
    MonoTime at;
  };
  Probe(Env& env, std::vector<std::string> peers) : env(env), peers(std::move(peers)) {}
  void start() override {
    env.transport().start(*this);
    for (auto& p : peers) env.transport().add_peer(p);
  }
  void stop(Task done) override {
    env.transport().stop();
    done();
  }
  void on_frame(const std::string& from, std::span<const uint8_t> payload) override {
    ByteReader r(payload);
    frames.push_back(Frame{from, r.u64(), env.now()});
  }
  void on_peer_up(const std::string& peer) override { ups.push_back(peer); }
  void on_peer_down(const std::string& peer) override { downs.push_back(peer); }
  SendStatus send(const std::string& to, uint64_t value) {
    ByteWriter w;
    w.u64(value);
    return env.transport().send(to, w.bytes());
  }
  Env& env;
  std::vector<std::string> peers;
  std::vector<Frame> frames;
  std::vector<std::string> ups, downs;
};

struct Net {
  explicit Net(uint64_t seed, uint32_t n = 2, LinkConfig link = {}) {
    Kernel::Options o;
    o.seed = seed;
    o.default_link = link;
    k = std::make_unique<Kernel>(o);
    std::vector<std::string> all;
    for (uint32_t i = 0; i < n; ++i) all.push_back("n" + std::to_string(i) + ":1");
    for (uint32_t i = 0; i < n; ++i) {
      std::vector<std::string> peers;
      for (uint32_t j = 0; j < n; ++j)
        if (j != i) peers.push_back(all[j]);
      k->add_node(all[i], [peers](Env& env) { return std::make_unique<Probe>(env, peers); });
    }
    for (uint32_t i = 0; i < n; ++i) k->start(i);
    k->run_for(Duration{1'000'000});  // connect (a peer not yet started refuses; the retry follows)
  }
  Probe& p(NodeIndex i) { return *dynamic_cast<Probe*>(k->process(i)); }
  std::string addr(NodeIndex i) { return k->address(i); }
  std::unique_ptr<Kernel> k;
};

}  // namespace

TEST(SimKernel, NodesConnectAfterARoundTrip) {
  Net net(1, 3);
  for (NodeIndex i = 0; i < 3; ++i) EXPECT_EQ(net.p(i).ups.size(), 2u);
}

TEST(SimKernel, LatencyFollowsTheLinkModel) {
  LinkConfig link;
  link.latency = LatencyModel{Duration{1000}, Duration{2000}, Duration{20'000}};
  Net net(2, 2, link);
  // Latency measured on the receiver's clock: its reading when the frame is sent vs when it arrives.
  std::vector<int64_t> receiver_clock_at_send;
  for (int i = 0; i < 4000; ++i) {
    receiver_clock_at_send.push_back(net.k->env(1)->now().us);
    ASSERT_EQ(net.p(0).send(net.addr(1), i), SendStatus::queued);
    net.k->run_for(Duration{100});
  }
  net.k->run_for(Duration{100'000});
  auto& frames = net.p(1).frames;
  ASSERT_EQ(frames.size(), 4000u);
  double sum = 0;
  int64_t lo = INT64_MAX, hi = 0;
  for (auto& f : frames) {
    const int64_t latency = f.at.us - receiver_clock_at_send[f.value];
    sum += static_cast<double>(latency);
    lo = std::min(lo, latency);
    hi = std::max(hi, latency);
  }
  EXPECT_GE(lo, 1000);                 // the floor
  EXPECT_LE(hi, 20'000);               // the cap
  EXPECT_NEAR(sum / 4000, 3000, 150);  // floor + exponential mean
}

TEST(SimKernel, LossDropsAboutTheConfiguredShare) {
  LinkConfig link;
  Net net(3, 2, link);
  net.k->link(0, 1).loss = 0.25;
  for (int i = 0; i < 4000; ++i) net.p(0).send(net.addr(1), i);
  net.k->run_for(Duration{1'000'000});
  const double delivered = static_cast<double>(net.p(1).frames.size()) / 4000;
  EXPECT_NEAR(delivered, 0.75, 0.03);
  const auto& t = net.k->trace();
  EXPECT_GT(std::count_if(t.begin(), t.end(), [](auto& r) { return r.kind == TraceKind::drop_loss; }), 900);
}

TEST(SimKernel, DuplicationDeliversTwice) {
  Net net(4, 2);
  net.k->link(0, 1).duplicate = 0.5;
  for (int i = 0; i < 1000; ++i) net.p(0).send(net.addr(1), i);
  net.k->run_for(Duration{1'000'000});
  EXPECT_NEAR(static_cast<double>(net.p(1).frames.size()), 1500, 80);
}

TEST(SimKernel, ReorderingHappensWithJitterAndReorderDelay) {
  Net net(5, 2);
  net.k->link(0, 1).reorder = 0.2;
  for (int i = 0; i < 500; ++i) net.p(0).send(net.addr(1), i);
  net.k->run_for(Duration{1'000'000});
  auto& f = net.p(1).frames;
  ASSERT_EQ(f.size(), 500u);
  int inversions = 0;
  for (size_t i = 1; i < f.size(); ++i) inversions += f[i].value < f[i - 1].value;
  EXPECT_GT(inversions, 20);
}

TEST(SimKernel, SymmetricPartitionCutsBothWaysAndHeals) {
  Net net(6, 4);
  net.k->partition({0, 1});
  net.p(0).send(net.addr(2), 1);
  net.p(2).send(net.addr(0), 2);
  net.p(0).send(net.addr(1), 3);  // same side: crosses
  net.k->run_for(Duration{100'000});
  EXPECT_TRUE(net.p(2).frames.empty());
  EXPECT_TRUE(net.p(0).frames.empty());
  EXPECT_EQ(net.p(1).frames.size(), 1u);
  net.k->heal();
  net.p(0).send(net.addr(2), 4);
  net.k->run_for(Duration{100'000});
  ASSERT_EQ(net.p(2).frames.size(), 1u);
  EXPECT_EQ(net.p(2).frames[0].value, 4u);
}

TEST(SimKernel, OneWayCutAndIsolationFromSomePeers) {
  Net net(7, 3);
  net.k->block(0, 1);
  net.p(0).send(net.addr(1), 1);
  net.p(1).send(net.addr(0), 2);
  net.k->run_for(Duration{100'000});
  EXPECT_TRUE(net.p(1).frames.empty());
  EXPECT_EQ(net.p(0).frames.size(), 1u);
  net.k->heal();
  net.k->isolate(2, {0});  // 2 cut from 0 only
  net.p(2).send(net.addr(0), 3);
  net.p(2).send(net.addr(1), 4);
  net.k->run_for(Duration{100'000});
  EXPECT_EQ(net.p(0).frames.size(), 1u);  // nothing new from 2
  ASSERT_EQ(net.p(1).frames.size(), 1u);
  EXPECT_EQ(net.p(1).frames[0].value, 4u);
}

TEST(SimKernel, CrashResetsPeersConnectionsLosesMemoryAndRestartReconnects) {
  Net net(8, 3);
  net.p(2).send(net.addr(0), 99);
  net.k->run_for(Duration{50'000});
  ASSERT_EQ(net.p(0).frames.size(), 1u);
  const auto crash_at = net.k->now_us();
  net.k->crash(0);
  EXPECT_EQ(net.k->process(0), nullptr);
  // Peers see the reset within a latency.
  net.k->run_for(Duration{20'000});
  EXPECT_EQ(net.p(1).downs, std::vector<std::string>{net.addr(0)});
  EXPECT_EQ(net.p(2).downs, std::vector<std::string>{net.addr(0)});
  EXPECT_LT(net.k->now_us() - crash_at, 20'001);
  EXPECT_EQ(net.p(1).send(net.addr(0), 1), SendStatus::not_connected);
  // Restart: a new incarnation with empty memory; peers reconnect with backoff.
  net.k->start(0);
  EXPECT_TRUE(net.p(0).frames.empty());
  EXPECT_EQ(net.k->incarnation(0), 1u);
  net.k->run_for(Duration{2'000'000});
  EXPECT_EQ(net.p(1).ups.size(), 2u + 1u);  // initial 2 + reconnect to node 0
  EXPECT_EQ(net.p(0).ups.size(), 2u);
}

TEST(SimKernel, FramesInFlightToACrashedNodeAreDropped) {
  LinkConfig slow;
  slow.latency = LatencyModel{Duration{10'000}, Duration{0}, Duration{10'000}};
  Net net(9, 2, slow);
  net.k->run_for(Duration{100'000});
  net.p(0).send(net.addr(1), 5);
  net.k->crash(1);
  net.k->start(1);  // even a quick restart must not receive the old incarnation's frame
  net.k->run_for(Duration{50'000});
  EXPECT_TRUE(net.p(1).frames.empty());
  const auto& t = net.k->trace();
  EXPECT_TRUE(std::any_of(t.begin(), t.end(), [](auto& r) { return r.kind == TraceKind::drop_down; }));
}

TEST(SimKernel, PausedNodeRunsItsTimersLateAndKeepsConnections) {
  Net net(10, 2);
  Env* env = net.k->env(0);
  std::vector<int64_t> fired;
  const int64_t t0 = net.k->now_us();
  env->set_timer(Duration{100'000}, [&] { fired.push_back(net.k->now_us() - t0); });
  net.k->pause(0);
  net.p(1).send(net.addr(0), 1);
  net.k->run_for(Duration{1'000'000});
  EXPECT_TRUE(fired.empty());
  EXPECT_TRUE(net.p(0).frames.empty());
  EXPECT_TRUE(net.p(1).downs.empty());  // a frozen process does not drop its connections
  net.k->resume(0);
  net.k->run_for(Duration{0});
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], 1'000'000);  // late: at the resume, not at 100 ms
  EXPECT_EQ(net.p(0).frames.size(), 1u);
}

TEST(SimKernel, CancelledTimersDoNotFire) {
  Net net(11, 2);
  Env* env = net.k->env(0);
  int fired = 0;
  auto id = env->set_timer(Duration{1000}, [&] { ++fired; });
  EXPECT_TRUE(env->cancel_timer(id));
  EXPECT_FALSE(env->cancel_timer(id));
  env->set_timer(Duration{1000}, [&] { ++fired; });
  net.k->run_for(Duration{10'000});
  EXPECT_EQ(fired, 1);
}

TEST(SimKernel, ClockSkewMovesOnlyTheWallClockAndDriftChangesRate) {
  Net net(12, 2);
  Env* a = net.k->env(0);
  Env* b = net.k->env(1);
  const auto wall_gap_before = a->wall_now() - b->wall_now();
  EXPECT_LT(std::abs(wall_gap_before.count()), 1000);
  const MonoTime mono_before = a->now();
  net.k->set_clock_skew(0, Duration{5'000'000});
  EXPECT_EQ(a->now(), mono_before);  // monotonic untouched
  EXPECT_NEAR(static_cast<double>((a->wall_now() - b->wall_now()).count()), 5e6, 1000);
  net.k->set_clock_drift_ppm(1, 1000);  // 0.1% fast
  const MonoTime b0 = b->now();
  net.k->run_for(Duration{10'000'000});
  EXPECT_NEAR(static_cast<double>((b->now() - b0).count()), 10'010'000, 2);
  // A drifting node's timer is due on its own clock.
  const MonoTime start = b->now();
  MonoTime fired_at;
  b->set_timer(Duration{1'000'000}, [&] { fired_at = b->now(); });
  net.k->run_for(Duration{2'000'000});
  EXPECT_GE((fired_at - start).count(), 1'000'000);
  EXPECT_LE((fired_at - start).count(), 1'000'002);
}

TEST(SimKernel, ConnectAcrossAPartitionTimesOutAndRetries) {
  Kernel::Options o;
  o.seed = 13;
  Kernel k(o);
  k.add_node("a:1", [](Env& env) { return std::make_unique<Probe>(env, std::vector<std::string>{"b:1"}); });
  k.add_node("b:1", [](Env& env) { return std::make_unique<Probe>(env, std::vector<std::string>{}); });
  k.block(1, 0);  // replies cannot come back
  k.start(0);
  k.start(1);
  k.run_for(Duration{3'000'000});
  auto* a = dynamic_cast<Probe*>(k.process(0));
  EXPECT_TRUE(a->ups.empty());
  const auto& t = k.trace();
  EXPECT_GE(std::count_if(t.begin(), t.end(), [](auto& r) { return r.kind == TraceKind::connect_timeout; }), 2);
  k.heal();
  k.run_for(Duration{3'000'000});
  EXPECT_EQ(a->ups.size(), 1u);
}

TEST(SimKernel, UnknownPeerIsRefusedAndRetriedWithoutCrashing) {
  Kernel::Options o;
  Kernel k(o);
  k.add_node("a:1", [](Env& env) { return std::make_unique<Probe>(env, std::vector<std::string>{"nowhere:1"}); });
  k.start(0);
  k.run_for(Duration{5'000'000});
  auto* a = dynamic_cast<Probe*>(k.process(0));
  EXPECT_TRUE(a->ups.empty());
  EXPECT_EQ(a->send("nowhere:1", 1), SendStatus::not_connected);
}

TEST(SimKernel, CleanStopCallsStopAndResetsPeers) {
  Net net(14, 2);
  net.k->stop(1);
  net.k->run_for(Duration{50'000});
  EXPECT_EQ(net.k->state(1), NodeState::down);
  EXPECT_EQ(net.p(0).downs.size(), 1u);
}

TEST(SimKernel, TraceHashIsAFunctionOfTheSeed) {
  auto run = [](uint64_t seed) {
    Net net(seed, 3);
    net.k->link(0, 1).loss = 0.3;
    for (int i = 0; i < 200; ++i) net.p(i % 3).send(net.addr((i + 1) % 3), i);
    net.k->run_for(Duration{1'000'000});
    return net.k->trace_hash();
  };
  EXPECT_EQ(run(77), run(77));
  EXPECT_NE(run(77), run(78));
}

#include "simulator/faults.h"

TEST(FaultSchedule, BadSchedulesAreRefusedWithTheFaultNamed) {
  Kernel::Options o;
  Kernel k(o);
  k.add_node("a:1", [](Env& env) { return std::make_unique<Probe>(env, std::vector<std::string>{}); });
  k.add_node("b:1", [](Env& env) { return std::make_unique<Probe>(env, std::vector<std::string>{}); });
  fault::FaultSchedule s;
  s.faults.push_back(fault::Fault{Duration{2'000'000}, fault::FaultKind::crash, {5}, {}, 0, Duration{0}});
  s.faults.push_back(fault::Fault{Duration{1'000'000}, fault::FaultKind::block, {0}, {}, 0, Duration{0}});
  s.faults.push_back(fault::Fault{Duration{3'000'000}, fault::FaultKind::loss, {}, {}, 1.5, Duration{0}});
  const auto errors = schedule_faults(k, s);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[0].find("fault 1 (    2.000s crash nodes=5): node 5 does not exist (the cluster has nodes 0 to 1)"),
            std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find("before the fault ahead of it"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("names no peer"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("loss must be from 0 to 1"), std::string::npos) << errors[3];
  k.run_for(Duration{5'000'000});
  EXPECT_EQ(k.state(0), NodeState::down) << "nothing of a refused schedule is applied (nodes were never started)";
}

TEST(FaultSchedule, RandomSchedulesAlwaysPassTheCheck) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    Xoshiro256 r(seed);
    fault::SwarmOptions o;
    o.mean_faults_per_second = 3;
    const auto s = fault::random_schedule(r, 2 + static_cast<uint32_t>(seed % 9), o);
    EXPECT_TRUE(fault::check_schedule(s, 2 + static_cast<uint32_t>(seed % 9)).empty()) << "seed " << seed;
  }
}
