// Checker "no acknowledged post lost": at the end, every post whose author got a 201 is in the master
// database (durable) and held by every member of its channel (delivered, by event or re-sync). Each
// violation's kind says whether the first post concerned was acknowledged during the faults or after the
// last repair (shrink keeps a candidate schedule only when it fails the same way). The same for
// acknowledged preference saves and channel views, and for changes of posts (edits, deletes, reactions):
// each reaches every member's client, and a client that holds a changed post as new as the master holds
// what the master holds.
#pragma once

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"
#include "simulator/sim_client.h"

namespace chorus::sim::checkers {

class NoAckedPostLost : public Checker {
 public:
  static constexpr const char* kName = "no acknowledged post lost";
  NoAckedPostLost(RunContext& ctx, const SimClients& clients) : ctx_(ctx), clients_(clients) {}
  void finish() override;

 private:
  void check_changes(Duration repaired_at);
  void check_files(Duration repaired_at);
  RunContext& ctx_;
  const SimClients& clients_;
};

}  // namespace chorus::sim::checkers
