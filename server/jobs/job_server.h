// The job server: the cluster leader schedules recurring jobs, workers on every node run them, and
// nothing runs twice.
//
// Scheduling (JobSettings.RunScheduler, on the leader only): each recurring type has a period; period k
// of a type is the job with ScheduleKey "type:k" (zero-padded), created with INSERT ... ON CONFLICT DO
// NOTHING. So scheduling is idempotent per period: two leaders during a partition create one job. A
// leader creates every period from the last one scheduled up to now (at most `catch_up_max`), so a new
// leader, or a cluster that healed, skips no period and repeats none.
//
// Working (JobSettings.RunJobs): a worker claims the oldest pending job with
//   UPDATE Jobs SET Status='in_progress', WorkerId=me, Attempts=Attempts+1 ... WHERE Id=? AND
//   Status='pending' AND Attempts=? (claimed when exactly one row changed),
// and from then on every change it makes goes in a transaction that first re-checks (Id, WorkerId,
// Attempts, Status='in_progress') with the same exactly-one-row rule: the attempt number is a fencing
// token. A worker that was presumed dead but wakes up can no longer commit anything. Each committed step
// refreshes LastActivityAt and Progress; a cancel_requested job stops at its next step and is canceled.
//
// A running job commits a fence-only step at least every `heartbeat`, also while its work pauses.
//
// The rule for a job whose worker died (no activity for `stuck_after`), applied by the leader: given back
// to the queue (pending) while it has had fewer than `attempts_max` attempts, else failed (error). A stuck
// cancel_requested job becomes canceled. Mattermost leaves such jobs stuck. "No activity" is judged on
// the leader's own monotonic clock: it watches each running job's LastActivityAt and acts when the value
// has not changed for `stuck_after`, so clock skew between nodes cannot make a live job look dead.
// A node that stops cleanly hands its running job back to the queue without spending an attempt.
//
// Periods follow the leader's wall clock: a leader whose clock runs ahead creates (and runs) a period
// early, never twice, and no period is skipped.
//
// Jobs (server/jobs/job_kinds.h): data retention, compliance export, search indexing.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/config/config.h"
#include "server/core/env.h"

namespace chorus::store {
class Store;
}

namespace chorus::jobs {

struct Recurring {
  std::string type;
  Duration period;
  Duration offset{0};        // periods start at offset + k * period (wall clock, UTC)
  bool latest_only = false;  // after an outage, only the current period (a full pass covers the missed ones)
};

struct JobServerOptions {
  std::string worker_id;  // this node (its gossip address)
  Duration scheduler_tick{1'000'000};
  Duration poll{1'000'000};          // a worker looks for pending jobs (with jitter)
  Duration heartbeat{2'000'000};     // a long step refreshes LastActivityAt at least this often
  Duration stuck_after{15'000'000};  // no activity for this long: the worker is presumed dead
  int attempts_max = 3;
  int catch_up_max = 1000;           // periods created at once after an outage
  std::vector<Recurring> recurring;  // empty: from the config (see recurring_from_config)
  // An injected bug for the simulator's tests (chorus-sim --bug unfenced_jobs): a step's fence checks only
  // that the job exists, so a worker whose attempt was handed on still commits (the jobs checker must see it).
  bool unfenced = false;
};

// The recurring jobs the config asks for: data retention daily at DeletionJobStartTime (when
// EnableMessageDeletion), the search index check daily at 03:00.
std::vector<Recurring> recurring_from_config(const config::Config& config);

// What a running job may do. Every step it commits goes through `step`, fenced by its attempt.
class JobRun {
 public:
  virtual ~JobRun() = default;
  // False once the run has ended or its server is gone: a kind's pending timers check it first.
  virtual bool active() const = 0;
  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  const std::map<std::string, std::string>& data() const { return data_; }
  int64_t attempt() const { return attempt_; }  // 1, 2, ...: the fencing token
  // Commits `statements` in one transaction after the fence check, with the job's progress (0-100).
  // done(true) when committed; done(false) when the job lost its claim or was asked to stop (the run must
  // end: call finish only if the reason was not a lost claim - the server handles both).
  virtual void step(std::vector<db::Statement> statements, int progress,
                    std::function<void(bool ok, db::Outcome)> done) = 0;
  // Ends the run: success (with result data) or error (with a reason).
  virtual void finish(bool success, std::map<std::string, std::string> result) = 0;
  virtual Env& env() = 0;
  virtual store::Store& store() = 0;
  virtual const config::Config& config() const = 0;

 protected:
  std::string id_, type_;
  std::map<std::string, std::string> data_;
  int64_t attempt_ = 0;
};

// A kind of job: starts a run, which ends with finish() (or by losing its claim).
using JobKind = std::function<void(std::shared_ptr<JobRun> run)>;

class JobServer {
 public:
  JobServer(Env& env, store::Store& store, const config::Config& config, JobServerOptions options);
  ~JobServer();

  void add_kind(const std::string& type, JobKind kind);
  void set_config(const config::Config& config) { config_ = &config; }
  // Membership tells us when this node is (or stops being) the leader.
  void set_leader(bool leader);
  void start();
  void stop();

  struct Stats {
    uint64_t scheduled = 0, claimed = 0, succeeded = 0, failed = 0, canceled = 0, fenced = 0, recovered = 0;
    std::map<std::pair<std::string, std::string>, uint64_t> ended;  // (type, status): jobs this node ended so
  };
  const Stats& stats() const { return stats_; }
  bool leader() const { return leader_; }

  class Run;

 private:
  void tick();  // scheduler and recovery (leader)
  void watch_running(int64_t epoch);
  void poll();  // worker
  void schedule(const Recurring& r);
  void recover();
  void claim(const std::string& id, int64_t attempts, const std::string& type, const std::string& data);

  Env& env_;
  store::Store& store_;
  const config::Config* config_;
  JobServerOptions options_;
  std::map<std::string, JobKind> kinds_;
  bool leader_ = false;
  bool running_ = false;
  bool busy_ = false;        // one job at a time per node
  int ticks_in_flight_ = 0;  // a slow database does not pile up scheduler queries
  // The leader's view of running jobs: LastActivityAt last seen, and when (its monotonic clock) it changed.
  struct Seen {
    int64_t activity = 0;
    MonoTime since;
  };
  std::map<std::string, Seen> watched_;
  std::shared_ptr<Run> current_;
  TimerId tick_timer_ = 0, poll_timer_ = 0;
  Stats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// "type:000000000123": the ScheduleKey of period k.
std::string schedule_key(const std::string& type, int64_t period);

}  // namespace chorus::jobs
