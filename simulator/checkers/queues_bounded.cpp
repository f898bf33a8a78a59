// Checker "queues stay bounded" (simulator/checkers/queues_bounded.h).
#include "simulator/checkers/queues_bounded.h"

namespace chorus::sim::checkers {

namespace {
constexpr int64_t kQueueMax = 10'000;  // Messenger's per-peer queue bound
}  // namespace

void QueuesBounded::on_sample(const Sample& s) {
  for (int n : s.alive) {
    auto* nd = ctx_.c.node(n);
    for (int p = 0; p < ctx_.sc.nodes; ++p) {
      if (p == n) continue;
      const size_t q = nd->messenger().queued(ctx_.c.address(p));
      if (q > static_cast<size_t>(kQueueMax))
        ctx_.violation(kName, fmt::format("n{} holds {} messages for n{}", n, q, p));
    }
  }
}

}  // namespace chorus::sim::checkers
