#include "simulator/ping_cluster.h"

#include <fmt/format.h>

#include <cassert>

#include "simulator/faults.h"

namespace chorus::sim {

PingCluster::PingCluster(uint64_t seed, const PingClusterSpec& spec) : spec_(spec) {
  Kernel::Options options;
  options.seed = seed;
  options.keep_trace = spec.keep_trace;
  options.default_link = spec.link;
  options.log_sink = spec.log_sink;
  kernel_ = std::make_unique<Kernel>(options);
  std::vector<std::string> addresses;
  for (uint32_t i = 0; i < spec.nodes; ++i) addresses.push_back(fmt::format("node{}:8074", i + 1));
  for (uint32_t i = 0; i < spec.nodes; ++i) {
    kernel_->add_node(addresses[i], [addresses, interval = spec.ping_interval](Env& env) {
      return std::make_unique<PingNode>(env, addresses, PingNode::Options{interval});
    });
  }
  for (uint32_t i = 0; i < spec.nodes; ++i) kernel_->start(i);
  if (spec.random_faults) {
    // The schedule has its own generator, derived from the seed, so it is data independent of the run.
    Xoshiro256 schedule_random(seed ^ 0x5eed5eed5eed5eedULL);
    schedule_ = fault::random_schedule(schedule_random, spec.nodes, spec.swarm);
    const auto errors = schedule_faults(*kernel_, schedule_);
    assert(errors.empty() && "random_schedule made a schedule check_schedule refuses");
    (void)errors;
  }
}

std::optional<Duration> PingCluster::run_measuring_heal() {
  const Duration repaired = spec_.random_faults ? schedule_.repaired_at : Duration{0};
  kernel_->run_until(repaired);
  std::optional<Duration> heal;
  if (kernel_->run_until([this] { return fully_connected(); }, spec_.duration)) heal = kernel_->now() - repaired;
  kernel_->run_until(spec_.duration);
  return heal;
}

bool PingCluster::fully_connected() {
  for (NodeIndex i = 0; i < kernel_->node_count(); ++i) {
    if (kernel_->state(i) != NodeState::up) return false;
    PingNode* n = node(i);
    if (n == nullptr || n->connected_count() != kernel_->node_count() - 1) return false;
  }
  return true;
}

std::string PingCluster::describe_connectivity() {
  std::string s;
  for (NodeIndex i = 0; i < kernel_->node_count(); ++i) {
    PingNode* n = node(i);
    s += fmt::format(
        "{}: {}", kernel_->address(i),
        n ? fmt::format("{} of {} peers connected", n->connected_count(), kernel_->node_count() - 1) : "down");
    if (n) {
      for (const auto& [peer, rtt] : n->peers())
        if (rtt.srtt_us >= 0) s += fmt::format(", {} srtt {:.2f} ms", peer, rtt.srtt_us / 1000.0);
    }
    s += "\n";
  }
  return s;
}

std::optional<Divergence> first_divergence(const Kernel& a, const Kernel& b) {
  if (a.trace_hash() == b.trace_hash() && a.trace_count() == b.trace_count()) return std::nullopt;
  const auto& ha = a.trace_hashes();
  const auto& hb = b.trace_hashes();
  const size_t common = std::min(ha.size(), hb.size());
  size_t i = 0;
  while (i < common && ha[i] == hb[i]) ++i;
  Divergence d;
  d.index = i;
  d.first_run = i < a.trace().size() ? a.describe(a.trace()[i]) : "(end of trace)";
  d.second_run = i < b.trace().size() ? b.describe(b.trace()[i]) : "(end of trace)";
  return d;
}

std::optional<Divergence> check_determinism(uint64_t seed,
                                            const std::function<std::unique_ptr<Kernel>(uint64_t)>& make) {
  auto first = make(seed);
  auto second = make(seed);
  return first_divergence(*first, *second);
}

}  // namespace chorus::sim
