// Checker "cluster status matches the truth": once the network has been quiet for kStatusSettle (detection,
// election and a status announcement), every live node shows each peer as the truth says - green when it
// is live, reachable, and runs the viewer's version with the viewer's config hash; red otherwise, and not
// green when down or cut off (sampled once a second; once per viewer and peer).
#pragma once

#include <set>
#include <utility>
#include <vector>

#include "simulator/checkers/checker.h"
#include "simulator/fault_injector.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class StatusMatchesTruth : public Checker {
 public:
  static constexpr const char* kName = "cluster status matches the truth";
  StatusMatchesTruth(RunContext& ctx, const FaultInjector& faults) : ctx_(ctx), faults_(faults) {}
  void on_sample(const Sample& s) override;

 private:
  void check(const std::vector<int>& alive);
  bool expected_green(int viewer, int peer) const;

  RunContext& ctx_;
  const FaultInjector& faults_;
  std::set<std::pair<int, int>> reported_;  // (viewer, peer)
};

}  // namespace chorus::sim::checkers
