// The fault injector of a scenario run: it owns every fault kind. It builds the schedule (the timeline, or
// the options' schedule, with this seed's random faults), applies each fault at its time - to the kernel,
// the nodes, the database servers, the load balancer or the clients - marks it in the report, and injects
// the bug a test asks for (RunOptions::bug). It keeps the truth about the network the faults made (which
// links are cut, the loss, when the last change was), and the checkers ask it rather than the kernel: an
// injected bug's hidden partition is cut in the kernel only, so the checkers catch what it does.
#pragma once

#include <optional>
#include <vector>

#include "fault/schedule.h"
#include "simulator/run_context.h"

namespace chorus::sim {

class LoadBalancer;
class SimClients;

class FaultInjector {
 public:
  FaultInjector(RunContext& ctx, LoadBalancer& lb, SimClients& clients);

  // The schedule (RunResult::schedule), each fault set for its time from time 0; the change clock starts.
  void schedule();
  // The injected bug (RunOptions::bug), at 2/5 of the scenario's duration.
  void schedule_bug();
  void publish_again();   // duplicate_event
  void pause_a_worker();  // unfenced_jobs

  // What the checkers ask.
  bool reachable(int a, int b) const;                    // no cut either way
  bool one_way(int a, int b) const;                      // cut one way only
  bool quiet() const { return loss_ == 0; }              // no link loses frames
  Duration last_change() const { return last_change_; }  // when a fault or an operation last changed something
  // When node n first died in the schedule (its first kill, pause, stop or isolation; -1: never).
  Duration first_death(int n) const;
  // The repair a fault waits for (a crash its node's restart, a pause its resume, ...), if it has one.
  static std::optional<fault::FaultKind> repair_of(fault::FaultKind kind);

 private:
  std::vector<fault::Fault> plan() const;
  void apply(const fault::Fault& f, bool retry = false);
  void mark(const fault::Fault& f);
  void reload(int n, node::Node& nd);
  void cut(int a, int b) { cut_[static_cast<size_t>(a * ctx_.sc.nodes + b)] = true; }
  bool is_cut(int a, int b) const { return cut_[static_cast<size_t>(a * ctx_.sc.nodes + b)]; }

  RunContext& ctx_;
  LoadBalancer& lb_;
  SimClients& clients_;
  std::vector<bool> cut_;  // a -> b at a * nodes + b
  double loss_ = 0;
  Duration last_change_{0};
  int bug_node_ = -1;  // wrong_status: the node whose change its peers do not see
};

}  // namespace chorus::sim
