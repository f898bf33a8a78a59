// Checker "no node crashes": a node that should serve does, within a minute of its start (sampled). Its
// other violations come from elsewhere, under the same name: a node that gives up (ChatClusterOptions::
// on_fatal) and node code that throws or fails an always-on assertion (scenario_run.cpp).
#pragma once

#include <set>

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class NoNodeCrashes : public Checker {
 public:
  static constexpr const char* kName = "no node crashes";
  explicit NoNodeCrashes(RunContext& ctx) : ctx_(ctx) {}
  void on_sample(const Sample& s) override;

 private:
  RunContext& ctx_;
  std::set<int> not_serving_reported_;  // once per node
};

}  // namespace chorus::sim::checkers
