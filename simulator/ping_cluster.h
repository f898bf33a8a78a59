// A simulated cluster of PingNodes under a fault schedule: the foundation's end-to-end workload, used
// by chorus-sim, the determinism tests and the simulator benchmark. Also the generic determinism
// check: run a seed twice and name the first trace record where the runs part.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "fault/schedule.h"
#include "server/cluster/ping.h"
#include "simulator/kernel.h"

namespace chorus::sim {

struct PingClusterSpec {
  uint32_t nodes = 5;
  Duration ping_interval{200'000};
  Duration duration{30'000'000};  // total simulated time
  bool random_faults = true;
  fault::SwarmOptions swarm;  // horizon must be < duration to leave a quiet tail
  LinkConfig link;
  bool keep_trace = true;
  LogSink* log_sink = nullptr;
};

class PingCluster {
 public:
  PingCluster(uint64_t seed, const PingClusterSpec& spec);
  Kernel& kernel() { return *kernel_; }
  std::unique_ptr<Kernel> take_kernel() { return std::move(kernel_); }
  const fault::FaultSchedule& schedule() const { return schedule_; }
  PingNode* node(NodeIndex i) { return dynamic_cast<PingNode*>(kernel_->process(i)); }
  void run() { kernel_->run_until(spec_.duration); }
  // Runs to the end like run(), and returns how long after the last fault was repaired the cluster
  // became fully connected again (nullopt if it never did). The trace is the same as run()'s.
  std::optional<Duration> run_measuring_heal();
  // After the quiet tail: every live node is connected to every other live node.
  bool fully_connected();
  std::string describe_connectivity();

 private:
  PingClusterSpec spec_;
  std::unique_ptr<Kernel> kernel_;
  fault::FaultSchedule schedule_;
};

struct Divergence {
  uint64_t index = 0;  // first trace record that differs
  std::string first_run;
  std::string second_run;
};

// Runs make(seed) twice to completion (the callback builds and runs a kernel and returns it) and
// compares the traces record by record. Nullopt when the runs are identical.
std::optional<Divergence> check_determinism(uint64_t seed,
                                            const std::function<std::unique_ptr<Kernel>(uint64_t)>& make);
std::optional<Divergence> first_divergence(const Kernel& a, const Kernel& b);

}  // namespace chorus::sim
