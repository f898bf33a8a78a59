// Checker "queues stay bounded": no live node holds more than the Messenger's per-peer bound of messages
// for a peer (sampled).
#pragma once

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"

namespace chorus::sim::checkers {

class QueuesBounded : public Checker {
 public:
  static constexpr const char* kName = "queues stay bounded";
  explicit QueuesBounded(RunContext& ctx) : ctx_(ctx) {}
  void on_sample(const Sample& s) override;

 private:
  RunContext& ctx_;
};

}  // namespace chorus::sim::checkers
