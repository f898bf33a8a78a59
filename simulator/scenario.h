// Scenarios: whole Chorus clusters - nodes, database servers, a load balancer and clients - replayed in
// simulated time through a procedure of the HA guide or a failure, with checkers that are always on.
//
// A scenario file (YAML, scenarios/*.yaml; docs/scenarios.md describes every key) gives the topology,
// the workload, a timeline of operations and faults, optional random faults (swarm testing: each seed
// draws its own schedule from the families and rate given) and expectations. parse_scenario() refuses
// anything it does not understand with file:line:column and what was expected. run_scenario() runs it
// for one seed: the same seed gives the same run, event for event (the trace hash says so).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fault/schedule.h"
#include "server/core/log.h"
#include "server/core/time.h"
#include "simulator/report.h"

namespace chorus::sim {

struct RandomFaults {
  Duration from{0}, until{0};
  double per_second = 0.2;
  fault::SwarmOptions families;  // which families may be drawn (horizon is until - from)
  std::vector<uint32_t> nodes;   // the nodes they may hit (empty: the nodes started at time 0)
};

struct Expectation {
  enum class Kind {
    detect,  // node's death (its first kill, pause, stop or isolation) is seen by every live peer within `bound`
    leader,  // at `at`, every live node (of `viewers`, if given) names `node` as leader
    status,  // at `at`, every live node (of `viewers`) that reaches `node` shows it `colour` (node -1: every live peer)
    max_failed,    // failed client requests, as a share of all (value)
    max_gap,       // a client unserved: from its first failed request (after a success) to a later failure
    max_downtime,  // the same over all clients: failures with no success of anyone between

    max_p99,      // p99 client request latency over the run
    min_jobs,     // completed probe jobs (value)
    max_resyncs,  // WebSocket reconnects that got a new connection instead of resuming (value)
  };
  Kind kind = Kind::detect;
  Duration at{0};
  Duration bound{0};
  int node = -1;
  std::vector<uint32_t> viewers;  // leader, status: only these nodes' views (empty: every live node)
  std::string colour;
  double value = 0;
  int line = 0;      // where the file says it
  std::string text;  // as the report names it
};

struct Scenario {
  std::string name, description, file;
  Duration duration{60'000'000};
  int seeds = 3;  // how many seeds `make test` replays (chorus-sim --seeds overrides)
  // Seeds that once failed, replayed too wherever the scenario's own seeds are (a regression each).
  std::vector<uint64_t> regression_seeds;

  // Topology.
  int nodes = 3;
  std::vector<uint32_t> initial;  // started at time 0 (default: all); the others join with `start`
  std::map<int, std::string> versions;
  std::vector<std::pair<std::string, std::string>> config;  // "Section.Setting" -> JSON value, every node
  int replicas = 0, search_replicas = 0;
  Duration replication_lag{0};
  Duration db_service_time{200};
  Duration health_interval{2'000'000};  // load balancer: ping every upstream this often
  int health_fails = 2;                 // consecutive failed checks before an upstream is taken out
  int workers = 32;                     // capacity model: requests a node serves at once
  Duration service_time{1'000};         // CPU time per request
  Duration boot_time{
      5'000'000};  // an `upgrade` starts the server this long after stopping it (the guide: a restart takes about 5 s)

  // Workload.
  int users = 12;
  int channels = 3;
  int members = 6;         // users per channel
  double post_rate = 4;    // posts per second, all clients together
  double typing_rate = 2;  // typing events per second
  double search_rate = 0;  // post searches per second (they go to the search replicas)
  // What the official apps do besides posting: each user has a direct channel with the next user
  // (posts go there too), reads a channel (POST /channels/members/me/view) and saves a preference,
  // each a Poisson process at its rate.
  bool dms = true;
  double view_rate = 1;        // channel views per second
  double preference_rate = 0.5;  // preference saves per second
  // Conversations: replies to a recent post, reactions toggled on one, edits and deletes of one's own.
  double reply_rate = 0.5;
  double reaction_rate = 1;
  double edit_rate = 0.5;
  double delete_rate = 0.1;
  double file_rate = 0.2;  // posts with a file (uploaded first), per second
  Duration request_timeout{10'000'000};
  Duration job_period{5'000'000};  // the probe job recurs this often (0: no probe job)
  Duration workload_until{0};      // posting stops here (default: duration - 10 s), so delivery can settle

  std::vector<fault::Fault> timeline;  // sorted by time
  // Checkers whose failures are known bugs, filed with their replay commands: their violations are
  // reported as known, not failures, and a test makes sure they still reproduce (so a fix is noticed).
  std::vector<std::pair<std::string, std::string>> known_bugs;  // checker, what the bug is
  std::optional<RandomFaults> random;
  std::vector<Expectation> expect;
};

struct ScenarioParse {
  std::optional<Scenario> scenario;
  std::vector<std::string> errors;  // "file:line:col: what was wrong; expected ..."
};
ScenarioParse parse_scenario_text(const std::string& text, const std::string& file_name);
ScenarioParse parse_scenario_file(const std::string& path);

// The checkers that are always on, by the names their violations carry (known_bugs names them too).
inline constexpr std::array<const char*, 7> kCheckers{"no acknowledged post lost",
                                                      "events in order, never twice",
                                                      "one leader per connected group",
                                                      "recurring jobs run once per period",
                                                      "cluster status matches the truth",
                                                      "no node crashes",
                                                      "queues stay bounded"};

// Bugs a test can inject, each to show that its checker catches it.
enum class Bug {
  none,
  lose_post,          // an acknowledged post is deleted from the database
  two_leaders,        // a node is cut off without the checkers being told (a hidden partition)
  double_job,         // a second job is scheduled for a period that has one (the unique key bypassed)
  wrong_status,       // a node's config change is hidden from its peers' status (stale announcements)
  random_stream_ids,  // message streams with random ids, as before seed 3077's fix (a late frame retires the live
                      // stream)
  failed_assertion,   // an always-on assertion fails in a node's code (a broken invariant)
  no_acks,            // receivers never acknowledge cluster messages: the senders' queues never drain
  duplicate_event,    // a node publishes an acknowledged post's event a second time (a fresh event id)
  unfenced_jobs,      // job steps commit without their fence; a worker paused mid-job wakes after its job was
                      // handed on, and its stale attempt commits its work
};

struct RunOptions {
  uint64_t seed = 1;
  bool keep_trace = false;  // keep the kernel's trace records (replay, divergence)
  Bug bug = Bug::none;
  // Replaces the scenario's timeline and random faults (shrink): the exact schedule to apply.
  std::optional<std::vector<fault::Fault>> schedule;
  LogSink* log = nullptr;                   // the nodes' logs
  std::optional<uint64_t> describe_record;  // with keep_trace: describe this trace record (divergence reports)
};

struct Violation {
  Duration at{0};
  std::string checker;  // "no acknowledged post lost", ...
  std::string what;
  std::string kind;  // how it failed, where a checker tells kinds apart ("acknowledged after the last repair")
};
// The same checker failing the same way (shrink keeps only candidates that do).
bool same_failure(const Violation& a, const Violation& b);

struct RunResult {
  RunRecord record;
  std::vector<Violation> violations;
  std::vector<fault::Fault> schedule;  // what was applied: the timeline and the random faults drawn
  uint64_t trace_hash = 0;
  uint64_t trace_count = 0;
  std::vector<std::string> trace_window;  // with keep_trace: the trace around the first violation
  std::vector<uint64_t> trace_hashes;     // with keep_trace: the running hash after each record
  std::string described_record;           // RunOptions::describe_record, described
  std::vector<Violation> known;           // violations of the scenario's known bugs
  bool ok() const { return violations.empty(); }
};

RunResult run_scenario(const Scenario& scenario, const RunOptions& options);

// Shrinking: the fewest faults of a failing run's schedule (`failed`, from run_scenario with `options`)
// that still make it fail the same way (the first violation's checker and kind), found by removing chunks
// of the schedule - halves, quarters, down to single units (ddmin) - and keeping each removal that still
// fails so. A unit is a fault with its repair (a crash and its node's restart, a pause and its resume, a
// stop and its start), or one fault; the repair phase (the schedule's last instant: random faults repair
// everything there) is always kept. progress(units left, runs).
struct Shrunk {
  std::vector<fault::Fault> schedule;
  std::string checker;  // the first violation's checker, which every kept candidate still trips
  std::string kind;     // and its kind
  int runs = 0;
};
Shrunk shrink_schedule(const Scenario& scenario, const RunOptions& options, const RunResult& failed,
                       const std::function<void(size_t, int)>& progress = {});

// The schedule as a scenario timeline (YAML lines), for shrink's output.
std::string schedule_yaml(const std::vector<fault::Fault>& schedule);

}  // namespace chorus::sim
