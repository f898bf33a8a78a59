#include "simulator/faults.h"

#include <cassert>

namespace chorus::sim {

bool apply_fault(Kernel& k, const fault::Fault& f) {
  if (!fault::is_network_or_process_fault(f.kind)) return false;
  using fault::FaultKind;
  auto first = [&] {
    assert(!f.nodes.empty() && f.nodes[0] < k.node_count());
    return static_cast<NodeIndex>(f.nodes[0]);
  };
  switch (f.kind) {
    case FaultKind::crash:
      k.crash(first());
      break;
    case FaultKind::restart:
      if (k.state(first()) == NodeState::down) k.start(first());
      break;
    case FaultKind::pause:
      k.pause(first());
      break;
    case FaultKind::resume:
      k.resume(first());
      break;
    case FaultKind::partition:
      k.partition(std::vector<NodeIndex>(f.nodes.begin(), f.nodes.end()));
      break;
    case FaultKind::isolate:
      k.isolate(first(), std::vector<NodeIndex>(f.peers.begin(), f.peers.end()));
      break;
    case FaultKind::block:
      assert(!f.peers.empty());
      k.block(first(), f.peers[0]);
      break;
    case FaultKind::heal:
      k.heal();
      break;
    case FaultKind::loss:
      for (NodeIndex a = 0; a < k.node_count(); ++a)
        for (NodeIndex b = 0; b < k.node_count(); ++b) k.link(a, b).loss = f.value;
      k.record(TraceKind::link_change, kNoNode, kNoNode, static_cast<uint64_t>(f.value * 1e6));
      break;
    case FaultKind::clock_skew:
      k.set_clock_skew(first(), f.amount);
      break;
    case FaultKind::clock_drift:
      k.set_clock_drift_ppm(first(), f.value);
      break;
    default:
      return false;
  }
  return true;
}

std::vector<std::string> schedule_faults(Kernel& kernel, const fault::FaultSchedule& schedule) {
  auto errors = fault::check_schedule(schedule, static_cast<uint32_t>(kernel.node_count()));
  for (const auto& f : schedule.faults)
    if (!fault::is_network_or_process_fault(f.kind))
      errors.push_back(fault::to_string(f) + ": an operation for the scenario runner, not the kernel");
  if (!errors.empty()) return errors;
  for (const auto& f : schedule.faults) kernel.at(f.at, [&kernel, f] { apply_fault(kernel, f); });
  return {};
}

}  // namespace chorus::sim
