// The scenario's own expectations (Scenario::expect; docs/scenarios.md): detection of a node's death
// (sampled), the leader and status a given time should show (checked at that time), and the measures of
// the whole run (failed requests, gaps, downtime, p99, jobs, re-syncs; judged at the end). Each becomes a
// report row; a failed one is a violation of "expect (line N)".
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "simulator/checkers/checker.h"
#include "simulator/fault_injector.h"
#include "simulator/run_context.h"
#include "simulator/sim_client.h"

namespace chorus::sim {
class RunMetrics;
}

namespace chorus::sim::checkers {

class JobsOncePerPeriod;

class Expectations : public Checker {
 public:
  Expectations(RunContext& ctx, const FaultInjector& faults, const SimClients& clients, RunMetrics& metrics,
               const JobsOncePerPeriod& jobs)
      : ctx_(ctx), faults_(faults), clients_(clients), metrics_(metrics), jobs_(jobs) {}
  void on_sample(const Sample& s) override;
  void finish() override;  // after the jobs checker's: min_jobs counts what it found

  // node -> how long after its first death every live peer saw it dead (detect expectations only).
  const std::map<int, Duration>& detected() const { return detected_; }

 private:
  void detection(const std::vector<int>& alive, Duration t);
  void check_at(const Expectation& x, const std::vector<int>& alive);
  void result(const Expectation& x, bool ok, const std::string& detail);

  RunContext& ctx_;
  const FaultInjector& faults_;
  const SimClients& clients_;
  RunMetrics& metrics_;
  const JobsOncePerPeriod& jobs_;
  std::map<int, Duration> detected_;
  std::set<const Expectation*> done_;  // the timed ones checked
};

}  // namespace chorus::sim::checkers
