// Determinism: a seed is a complete description of a simulated run. 200 seeds of a 5-node cluster
// under random faults (loss, partitions, crashes, pauses, skew, drift), each run twice, give identical
// traces, and so do 200 seeds of the whole chat cluster (app, store, hub, jobs, simulated databases and
// clients), whose trace covers the SQL with its parameters and results and what every client received; and node code that reaches around the seam (the real clock, its own randomness) is caught by
// the same check, which names the first record where the two runs part.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <set>

#include "server/core/codec.h"
#include "simulator/chat_cluster.h"
#include "simulator/ping_cluster.h"
#include "simulator/scenario.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

PingClusterSpec five_nodes_with_faults() {
  PingClusterSpec spec;
  spec.nodes = 5;
  spec.duration = Duration{20'000'000};
  spec.swarm.horizon = Duration{14'000'000};
  spec.swarm.mean_faults_per_second = 1.0;
  return spec;
}

std::unique_ptr<Kernel> run_ping(uint64_t seed, const PingClusterSpec& spec) {
  PingCluster c(seed, spec);
  c.run();
  return c.take_kernel();
}

}  // namespace

TEST(Determinism, TwoHundredSeedsOfFiveNodesUnderRandomFaultsReplayExactly) {
  const auto spec = five_nodes_with_faults();
  uint64_t faults = 0, events = 0;
  std::set<uint64_t> distinct_hashes;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    PingCluster first(seed, spec);
    first.run();
    faults += first.schedule().faults.size();
    events += first.kernel().events_processed();
    ASSERT_TRUE(first.fully_connected()) << "seed " << seed << " did not heal:\n" << first.describe_connectivity();
    auto second = run_ping(seed, spec);
    auto d = first_divergence(first.kernel(), *second);
    ASSERT_FALSE(d.has_value()) << "seed " << seed << " diverged at record " << d->index << ":\n  " << d->first_run
                                << "\n  " << d->second_run;
    distinct_hashes.insert(first.kernel().trace_hash());
  }
  // The seeds really explored different runs, with real faults in them.
  EXPECT_EQ(distinct_hashes.size(), 200u);
  EXPECT_GT(faults, 200u * 5);
  EXPECT_GT(events, 200u * 1000);
}

TEST(Determinism, EveryFaultFamilyShowsUpAcrossSeeds) {
  std::map<fault::FaultKind, int> seen;
  const auto spec = five_nodes_with_faults();
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    Xoshiro256 r(seed ^ 0x5eed5eed5eed5eedULL);
    for (const auto& f : fault::random_schedule(r, 5, spec.swarm).faults) seen[f.kind]++;
  }
  for (auto kind :
       {fault::FaultKind::crash, fault::FaultKind::restart, fault::FaultKind::pause, fault::FaultKind::resume,
        fault::FaultKind::partition, fault::FaultKind::isolate, fault::FaultKind::block, fault::FaultKind::heal,
        fault::FaultKind::loss, fault::FaultKind::clock_skew, fault::FaultKind::clock_drift})
    EXPECT_GT(seen[kind], 10) << fault::to_string(kind);
}

namespace {

// Node code that breaks the seam on purpose. Each variant reaches for something the Env should give.
enum class Leak { real_clock_in_payload, real_clock_in_timer, own_randomness };

class LeakyNode final : public Process, public TransportHandler {
 public:
  LeakyNode(Env& env, std::string peer, Leak leak) : env_(env), peer_(std::move(peer)), leak_(leak) {}
  void start() override {
    env_.transport().start(*this);
    env_.transport().add_peer(peer_);
    env_.set_timer(Duration{10'000}, [this] { tick(); });
  }
  void stop(Task done) override { done(); }
  void on_frame(const std::string&, std::span<const uint8_t>) override {}
  void on_peer_up(const std::string&) override {}
  void on_peer_down(const std::string&) override {}

 private:
  void tick() {
    ByteWriter w;
    Duration next{10'000};
    switch (leak_) {
      case Leak::real_clock_in_payload:
        w.i64(std::chrono::steady_clock::now().time_since_epoch().count());
        break;
      case Leak::real_clock_in_timer:
        w.u64(1);
        next += Duration{std::chrono::steady_clock::now().time_since_epoch().count() % 1000};
        break;
      case Leak::own_randomness: {
        std::random_device rd;
        w.u64(rd() % 2 == 0 ? 1 : 2);
        break;
      }
    }
    env_.transport().send(peer_, w.bytes());
    env_.set_timer(next, [this] { tick(); });
  }
  Env& env_;
  std::string peer_;
  Leak leak_;
};

std::unique_ptr<Kernel> run_leaky(uint64_t seed, Leak leak) {
  Kernel::Options o;
  o.seed = seed;
  auto k = std::make_unique<Kernel>(o);
  k->add_node("a:1", [leak](Env& env) { return std::make_unique<LeakyNode>(env, "b:1", leak); });
  k->add_node("b:1", [leak](Env& env) { return std::make_unique<LeakyNode>(env, "a:1", leak); });
  k->start(0);
  k->start(1);
  k->run_for(Duration{2'000'000});
  return k;
}

}  // namespace

TEST(Determinism, ReadingTheRealClockInANodeIsCaughtAndLocated) {
  for (Leak leak : {Leak::real_clock_in_payload, Leak::real_clock_in_timer}) {
    auto d = check_determinism(1, [leak](uint64_t seed) { return run_leaky(seed, leak); });
    ASSERT_TRUE(d.has_value()) << "the check missed a node reading the real clock";
    EXPECT_FALSE(d->first_run.empty());
    EXPECT_NE(d->first_run, d->second_run);
    std::printf("caught: runs part at record %llu\n  first:  %s\n  second: %s\n",
                static_cast<unsigned long long>(d->index), d->first_run.c_str(), d->second_run.c_str());
  }
}

TEST(Determinism, DrawingOwnRandomnessInANodeIsCaught) {
  // Each run has a 2^-N chance of drawing the same bits by luck over N ticks; with ~200 ticks, none.
  auto d = check_determinism(1, [](uint64_t seed) { return run_leaky(seed, Leak::own_randomness); });
  EXPECT_TRUE(d.has_value());
}

TEST(Determinism, TheSameNodeCodeWithoutLeaksIsDeterministic) {
  auto d = check_determinism(3, [](uint64_t seed) { return run_ping(seed, five_nodes_with_faults()); });
  EXPECT_FALSE(d.has_value());
}

TEST(Determinism, TwoHundredSeedsOfTheChatClusterUnderRandomFaultsReplayExactly) {
  // The whole node above the seam: posts, sockets, the job server, the databases, under crashes, pauses,
  // partitions, loss and skew. A divergence is replayed with: chorus-sim run FILE --seed N --check-determinism.
  auto p = parse_scenario_text(R"(name: chat-determinism
duration: 12s
topology: {nodes: 3}
workload: {users: 6, channels: 2, members: 4, post_rate: 4, job_period: 2s}
random_faults:
  from: 1s
  until: 9s
  per_second: 0.5
  families: [crash, pause, partition, loss, clock]
)",
                               "chat-determinism.yaml");
  ASSERT_TRUE(p.scenario) << p.errors.front();
  std::set<uint64_t> distinct;
  uint64_t records = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    RunOptions o;
    o.seed = seed;
    const auto first = run_scenario(*p.scenario, o);
    const auto second = run_scenario(*p.scenario, o);
    ASSERT_EQ(first.trace_hash, second.trace_hash) << "seed " << seed << " diverged";
    ASSERT_EQ(first.trace_count, second.trace_count) << "seed " << seed;
    distinct.insert(first.trace_hash);
    records += first.trace_count;
  }
  EXPECT_EQ(distinct.size(), 200u);
  EXPECT_GT(records, 200u * 2'000);  // records per run: network, timers, SQL and its answers, client frames
}

TEST(Determinism, TheTraceCoversWhatClientsReceiveAndTheDatabasesAnswer) {
  // Two runs of one seed that differ only in a database row that nothing writes during the run: the same
  // SQL is sent, but the answers and the clients' copies differ, and so must the trace (before, the trace
  // hashed only the SQL text and the network: the runs looked the same).
  const auto run = [](const std::string& nickname) {
    ChatCluster c({.seed = 3, .nodes = 2});
    EXPECT_TRUE(c.start_all());
    std::string id;
    const std::string token = c.signup_and_login(0, "alice", &id);
    c.kernel().databases().find("db1")->execute(
        {db::Statement{"UPDATE Users SET Nickname = $1 WHERE Id = $2", {nickname, id}}}, false);
    EXPECT_EQ(c.call(1, "GET", "/api/v4/users/" + id, "", token).status, 200);
    return c.kernel().trace_hash();
  };
  EXPECT_EQ(run("al"), run("al"));
  EXPECT_NE(run("al"), run("ally"));
}
