// Checker "recurring jobs run once per period": at the end, from the master database's Jobs table and the
// probe job's record of its runs (ProbeRuns): no period was run by two jobs, no job succeeded without its
// work or did it more often than it was attempted, none is stuck, and no period was skipped. And the fence:
// each run records the job's Attempts as its transaction saw it (Latest), which must be the run's own
// attempt (a worker given up on, paused or cut off, must not commit when it wakes); no attempt runs twice.
#pragma once

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class JobsOncePerPeriod : public Checker {
 public:
  static constexpr const char* kName = "recurring jobs run once per period";
  explicit JobsOncePerPeriod(RunContext& ctx) : ctx_(ctx) {}
  void finish() override;
  int done() const { return done_; }  // probe jobs completed (after finish)

 private:
  RunContext& ctx_;
  int done_ = 0;
};

}  // namespace chorus::sim::checkers
