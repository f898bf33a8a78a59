// Simulator throughput: timer-plus-message events per second on one core, with every event traced
// and hashed (as in a real run), and the foundation's ping cluster under faults in simulated seconds
// per wall second.
#include <benchmark/benchmark.h>

#include "server/core/codec.h"
#include "simulator/kernel.h"
#include "simulator/ping_cluster.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

// Each tick: one timer event, one frame to the next peer (one delivery event). Nothing else.
class FloodNode final : public Process, public TransportHandler {
 public:
  FloodNode(Env& env, std::vector<std::string> peers) : env_(env), peers_(std::move(peers)) {}
  void start() override {
    env_.transport().start(*this);
    for (auto& p : peers_) env_.transport().add_peer(p);
    for (int chain = 0; chain < 4; ++chain) env_.set_timer(Duration{1000 + chain * 250}, [this] { tick(); });
  }
  void stop(Task done) override { done(); }
  void on_frame(const std::string&, std::span<const uint8_t> p) override { received_ += p.size(); }
  void on_peer_up(const std::string&) override {}
  void on_peer_down(const std::string&) override {}

 private:
  void tick() {
    const uint8_t payload[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    env_.transport().send(peers_[next_++ % peers_.size()], payload);
    env_.set_timer(Duration{1000}, [this] { tick(); });
  }
  Env& env_;
  std::vector<std::string> peers_;
  size_t next_ = 0;
  uint64_t received_ = 0;
};

void BM_SimTimerPlusMessageEvents(benchmark::State& state) {
  const int nodes = static_cast<int>(state.range(0));
  uint64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Kernel::Options o;
    o.seed = 1;
    o.keep_trace = false;  // hash only, as in long runs
    Kernel k(o);
    std::vector<std::string> addrs;
    for (int i = 0; i < nodes; ++i) addrs.push_back("n" + std::to_string(i) + ":1");
    for (int i = 0; i < nodes; ++i) {
      std::vector<std::string> peers;
      for (int j = 0; j < nodes; ++j)
        if (j != i) peers.push_back(addrs[j]);
      k.add_node(addrs[i], [peers](Env& env) { return std::make_unique<FloodNode>(env, peers); });
    }
    for (int i = 0; i < nodes; ++i) k.start(i);
    k.run_for(Duration{10'000});  // connections up
    const uint64_t before = k.events_processed();
    state.ResumeTiming();
    k.run_for(Duration{2'000'000});
    events += k.events_processed() - before;
  }
  state.SetItemsProcessed(static_cast<int64_t>(events));
  state.counters["events_per_s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SimTimerPlusMessageEvents)->Arg(5)->Arg(25)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SimPingClusterUnderFaults(benchmark::State& state) {
  PingClusterSpec spec;
  spec.nodes = static_cast<uint32_t>(state.range(0));
  spec.duration = Duration{60'000'000};
  spec.swarm.horizon = Duration{45'000'000};
  spec.keep_trace = false;
  uint64_t seed = 1, events = 0;
  double simulated_s = 0;
  for (auto _ : state) {
    PingCluster c(seed++, spec);
    c.run();
    events += c.kernel().events_processed();
    simulated_s += 60;
  }
  state.counters["events_per_s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
  state.counters["sim_s_per_wall_s"] = benchmark::Counter(simulated_s, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SimPingClusterUnderFaults)->Arg(5)->Arg(25)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
