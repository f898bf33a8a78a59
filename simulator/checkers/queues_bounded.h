// Checker "queues stay bounded": what a node holds for a peer drains once the network lets it. Sampled:
//   - no live node holds more than the Messenger's per-peer bound (the queue enforces it; an assertion
//     in spirit, kept so a change of the bound cannot pass unseen);
//   - once the network has been quiet for kQueueSettle (no cut, loss or pause; detection and new streams
//     have settled), no live node's oldest unacknowledged message to a live peer it reaches has waited
//     longer than kAckAgeMax. Retransmission every 200 ms makes that a few round trips; a stream that
//     never drains (acknowledgements lost for good, a stalled stream as in random-faults seed 42902) grows
//     without end and trips this (tests: the injected bug no_acks). Once per pair.
#pragma once

#include <set>
#include <utility>

#include "simulator/checkers/checker.h"
#include "simulator/fault_injector.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class QueuesBounded : public Checker {
 public:
  static constexpr const char* kName = "queues stay bounded";
  QueuesBounded(RunContext& ctx, const FaultInjector& faults) : ctx_(ctx), faults_(faults) {}
  void on_sample(const Sample& s) override;

 private:
  RunContext& ctx_;
  const FaultInjector& faults_;
  std::set<std::pair<int, int>> reported_;
};

}  // namespace chorus::sim::checkers
