// Checker "no node crashes" (simulator/checkers/no_node_crashes.h).
#include "simulator/checkers/no_node_crashes.h"

namespace chorus::sim::checkers {

void NoNodeCrashes::on_sample(const Sample& s) {
  // A node that should serve does, within a minute of its start.
  for (int n = 0; n < ctx_.sc.nodes; ++n) {
    const Duration started = ctx_.start_time[static_cast<size_t>(n)];
    if (ctx_.k.state(static_cast<NodeIndex>(n)) != NodeState::up || started < Duration{0}) continue;
    auto* nd = ctx_.c.node(n);
    if ((!nd || !nd->started()) && s.now - started > Duration{60'000'000} && !not_serving_reported_.count(n)) {
      not_serving_reported_.insert(n);
      ctx_.violation(kName, fmt::format("n{} was started {} ago and does not serve", n, fmt_s(s.now - started)));
    }
  }
}

}  // namespace chorus::sim::checkers
