// Checker "one leader per connected group": once the network has been quiet for kLeaderSettle (detection
// and election), every live node of a clique - a group whose nodes all reach each other, as the fault
// injector cut the links - names the clique's lowest address its leader (sampled; once per node).
#pragma once

#include <set>
#include <vector>

#include "simulator/checkers/checker.h"
#include "simulator/fault_injector.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class OneLeader : public Checker {
 public:
  static constexpr const char* kName = "one leader per connected group";
  OneLeader(RunContext& ctx, const FaultInjector& faults) : ctx_(ctx), faults_(faults) {}
  void on_sample(const Sample& s) override;

 private:
  void check(const std::vector<int>& alive);

  RunContext& ctx_;
  const FaultInjector& faults_;
  std::set<int> reported_;  // once per node
};

}  // namespace chorus::sim::checkers
