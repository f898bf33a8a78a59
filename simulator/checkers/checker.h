// What every checker of a scenario run is: it watches the run through samples (every kTick, while the
// run goes) and judges what is left to judge at the end. scenario_run.cpp calls them in a fixed order,
// which is also the order of their violations when several fall at the same time.
//
// The always-on checkers (scenario.h's kCheckers; each class's kName is the name its violations carry):
//   no_acked_post_lost.h, events_in_order.h, one_leader.h, jobs_once_per_period.h, status_matches_truth.h,
//   no_node_crashes.h, queues_bounded.h
// and the scenario's own expectations (expectations.h).
#pragma once

#include <vector>

#include "server/core/time.h"

namespace chorus::sim::checkers {

struct Sample {
  Duration now;                   // the kernel's time
  Duration t;                     // the scenario's time (from time 0)
  const std::vector<int>& alive;  // the live nodes (started, up)
};

class Checker {
 public:
  virtual ~Checker() = default;
  virtual void on_sample(const Sample&) {}
  virtual void finish() {}
};

}  // namespace chorus::sim::checkers
