// What the report measures of a scenario run besides the checkers' verdicts: each client request's outcome
// (the availability lane, latency, each client's longest gap and the cluster's downtime), the delay from
// a post's acknowledgement to its event, the sampled lanes (leader, node states, status colours), and at
// the end the checkers' report rows and the metrics table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"
#include "simulator/sim_client.h"

namespace chorus::sim {

namespace checkers {
class EventsInOrder;
class JobsOncePerPeriod;
class Expectations;
}  // namespace checkers

class RunMetrics {
 public:
  explicit RunMetrics(RunContext& ctx);

  // Client cl's request (sent at `sent`) was answered with status (0: it timed out).
  void on_answer(Client& cl, Duration sent, const std::string& method, const std::string& target, int status,
                 const std::string& body);
  // A posted event reached a client.
  void on_delivered(const std::string& post_id);
  // The report's lanes, every kReportSample.
  void on_sample(const checkers::Sample& s);

  // Request latency at percentile p (0..1), in microseconds.
  int64_t latency(double p);
  // The longest stretch of failures with no success of any client between.
  Duration downtime() const { return downtime_; }

  // The always-on checkers as report rows, ahead of the expectations' rows, and the metrics table.
  void finish(const SimClients& clients, const checkers::EventsInOrder& order, const checkers::JobsOncePerPeriod& jobs,
              const checkers::Expectations& expectations);

 private:
  RunContext& ctx_;
  std::vector<RunRecord::Bucket> availability_;  // requests ok and failed, per second
  std::vector<int64_t> latencies_;
  bool sorted_ = false;
  Duration downtime_{0}, last_global_ok_{0}, global_stretch_start_{-1};
  std::vector<std::string> failures_;  // the first few failed requests
  Duration delivery_delay_{0};         // longest from a 201 to the post's event on any connection
};

}  // namespace chorus::sim
