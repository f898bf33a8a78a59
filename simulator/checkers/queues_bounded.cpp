// Checker "queues stay bounded" (simulator/checkers/queues_bounded.h).
#include "simulator/checkers/queues_bounded.h"

#include "server/cluster/messages.h"

namespace chorus::sim::checkers {

namespace {
constexpr Duration kQueueSettle{10'000'000};  // after the last change of the network or the nodes
constexpr Duration kAckAgeMax{5'000'000};       // the oldest unacknowledged message, once settled
}  // namespace

void QueuesBounded::on_sample(const Sample& s) {
  const size_t queue_max = cluster::MessengerOptions{}.queue_max;  // the bound every node's queue enforces
  const bool settled = faults_.quiet() && s.now - faults_.last_change() >= kQueueSettle;
  for (int n : s.alive) {
    auto* nd = ctx_.c.node(n);
    for (int p = 0; p < ctx_.sc.nodes; ++p) {
      if (p == n || reported_.count({n, p})) continue;
      const std::string& peer = ctx_.c.address(p);
      const size_t q = nd->messenger().queued(peer);
      if (q > queue_max) {
        reported_.insert({n, p});
        ctx_.violation(kName, fmt::format("n{} holds {} messages for n{}", n, q, p));
        continue;
      }
      if (!settled || !ctx_.live(p) || !faults_.reachable(n, p)) continue;
      const Duration age = nd->messenger().oldest_unacked_age(peer);
      if (age > kAckAgeMax) {
        reported_.insert({n, p});
        ctx_.violation(kName, fmt::format("n{}'s oldest message for n{} has waited {} unacknowledged ({} queued), "
                                          "{} after the network settled",
                                          n, p, fmt_s(age), q, fmt_s(s.now - faults_.last_change())));
      }
    }
  }
}

}  // namespace chorus::sim::checkers
