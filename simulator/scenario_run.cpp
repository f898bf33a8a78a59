// One scenario, one seed: the orchestration of a run. The cluster (real node code on the simulator) is
// set up with its servers and first nodes, the workload's world is created, and from time 0 the pieces
// run side by side in simulated time until the scenario's end, when the checkers judge and the report is
// filled in. Each piece has its own file:
//   run_context.h       what the pieces share (the cluster, the result, the truth about the nodes)
//   load_balancer.h     the HA guide's NGINX: health checks, round robin, capacity, retries
//   sim_client.h        the clients, as the official client: WebSocket resume, reconnect, re-sync
//   workload.h          the team, channels and users; posts, typing and searches
//   fault_injector.h    the schedule, every fault kind applied, the injected bugs, the network's truth
//   checkers/           the always-on checkers and the scenario's expectations (checkers/checker.h)
//   run_metrics.h       the report's lanes, rows and metrics
//   shrink.cpp          shrinking a failing schedule
// Every call that touches the kernel (timers, random draws, messages, requests) happens in a fixed order,
// so the same seed gives the same run, event for event.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "server/core/assert.h"
#include "server/jobs/job_server.h"
#include "server/store/schema.h"
#include "simulator/chat_cluster.h"
#include "simulator/checkers/events_in_order.h"
#include "simulator/checkers/expectations.h"
#include "simulator/checkers/jobs_once_per_period.h"
#include "simulator/checkers/no_acked_post_lost.h"
#include "simulator/checkers/no_node_crashes.h"
#include "simulator/checkers/one_leader.h"
#include "simulator/checkers/queues_bounded.h"
#include "simulator/checkers/status_matches_truth.h"
#include "simulator/fault_injector.h"
#include "simulator/load_balancer.h"
#include "simulator/run_context.h"
#include "simulator/run_metrics.h"
#include "simulator/scenario.h"
#include "simulator/sim_client.h"
#include "simulator/workload.h"

namespace chorus::sim {

namespace {

std::vector<store::Migration> simulator_migrations(const std::string& version) {
  // The probe job's record of its runs, for every version; and a release 0.2 with a schema change.
  // Numbered after the server's own migrations, whatever their count.
  const int next = static_cast<int>(store::migrations().size()) + 1;
  std::vector<store::Migration> out{
      {next,
       "simulator: the probe job's record of its runs",
       "0.1",
       // Latest: the job's Attempts when the run committed (the fence makes it the run's own attempt).
       {"CREATE TABLE ProbeRuns (JobId TEXT NOT NULL, Period TEXT NOT NULL, Node TEXT NOT NULL, "
        "Attempt BIGINT NOT NULL, Latest BIGINT NOT NULL)"}}};
  int major = 0, minor = 0, patch = 0;
  std::sscanf(version.c_str(), "%d.%d.%d", &major, &minor, &patch);
  if (major > 0 || minor >= 2)
    out.push_back({next + 1,
                   "simulator: release 0.2's schema change (bookmarks)",
                   "0.2",
                   {"CREATE TABLE SimBookmarks (UserId VARCHAR(26) NOT NULL, PostId VARCHAR(26) NOT NULL, "
                    "CreateAt BIGINT NOT NULL, PRIMARY KEY (PostId, UserId))"}});
  return out;
}

class Run {
 public:
  Run(const Scenario& sc, const RunOptions& o)
      : c_(cluster_options(sc, o)),
        ctx_(sc, o, c_, result_),
        k_(c_.kernel()),
        metrics_(ctx_),
        lb_(ctx_),
        order_(ctx_),
        clients_(ctx_, lb_, metrics_, order_),
        workload_(ctx_, clients_),
        faults_(ctx_, lb_, clients_),
        queues_(ctx_, faults_),
        crashes_(ctx_),
        leader_(ctx_, faults_),
        status_(ctx_, faults_),
        acked_(ctx_, clients_),
        jobs_(ctx_),
        expectations_(ctx_, faults_, clients_, metrics_, jobs_) {
    result_.record.scenario = sc.name;
    result_.record.description = sc.description;
    result_.record.file = sc.file;
    result_.record.seed = o.seed;
    result_.record.duration_s = secs(sc.duration);
    for (int i = 0; i < sc.nodes; ++i) result_.record.nodes.push_back(fmt::format("n{} {}", i, c_.address(i)));
  }

  RunResult go() {
    const auto wall0 = std::chrono::steady_clock::now();
    try {
      if (setup()) {
        result_.record.setup_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
        schedule();
        k_.run_until(ctx_.t0 + ctx_.sc.duration);
        finish();
      }
    } catch (const AssertionFailure& e) {
      // An always-on assertion (server/core/assert.h): where chorusd would abort, the seed fails here.
      ctx_.violation(checkers::NoNodeCrashes::kName, e.what(), std::nullopt, "assertion");
    } catch (const std::exception& e) {
      ctx_.violation(checkers::NoNodeCrashes::kName, fmt::format("the node code threw: {}", e.what()));
    }
    result_.record.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    // A known bug's violations are reported as known, not as failures.
    std::vector<Violation> failing;
    const auto& known_bugs = ctx_.sc.known_bugs;
    for (auto& v : result_.violations) {
      const bool known =
          std::any_of(known_bugs.begin(), known_bugs.end(), [&](const auto& kb) { return kb.first == v.checker; });
      (known ? result_.known : failing).push_back(std::move(v));
    }
    result_.violations = std::move(failing);
    if (!result_.violations.empty() && result_.record.passed())  // stopped before the end (setup, an exception)
      result_.record.checks.push_back(
          RunRecord::Check{result_.violations.front().checker, false, result_.violations.front().what});
    result_.trace_hash = k_.trace_hash();
    result_.trace_count = k_.trace_count();
    const auto& o = ctx_.o;
    if (o.keep_trace && !result_.violations.empty()) trace_window(ctx_.t0 + result_.violations.front().at);
    if (o.keep_trace) {
      result_.trace_hashes = k_.trace_hashes();
      if (o.describe_record && *o.describe_record < k_.trace().size()) {
        const auto& r = k_.trace()[*o.describe_record];
        result_.described_record = fmt::format("{:.6f}s {}", secs(Duration{r.time_us} - ctx_.t0), k_.describe(r));
      }
    }
    return std::move(result_);
  }

 private:
  // on_fatal reaches ctx_ later, once built.
  ChatClusterOptions cluster_options(const Scenario& sc, const RunOptions& o) {
    ChatClusterOptions co;
    co.seed = o.seed;
    co.nodes = sc.nodes;
    for (int i = 1; i <= sc.replicas; ++i) co.replicas.push_back(fmt::format("replica{}", i));
    co.discovery_only = true;
    co.per_node_config = true;
    co.keep_trace = o.keep_trace;
    co.db_service_time = sc.db_service_time;
    co.log_sink = o.log;
    co.versions.assign(static_cast<size_t>(sc.nodes), "0.1.0");
    for (const auto& [n, v] : sc.versions) co.versions[static_cast<size_t>(n)] = v;
    co.migrations_for = simulator_migrations;
    co.messenger.random_stream_ids = o.bug == Bug::random_stream_ids;  // the injected bug, in every node from the start
    co.messenger.no_acks = o.bug == Bug::no_acks;
    co.jobs.unfenced = o.bug == Bug::unfenced_jobs;
    co.on_fatal = [this](int n, const std::string& why) {
      ctx_.violation(checkers::NoNodeCrashes::kName, fmt::format("n{} exited: {}", n, why));
    };
    if (sc.job_period > Duration{0}) co.jobs.recurring = {jobs::Recurring{"probe", sc.job_period}};
    co.jobs.stuck_after = Duration{10'000'000};
    co.configure = [&sc](config::Config& c, int) {
      for (int i = 1; i <= sc.search_replicas; ++i)
        c.SqlSettings.DataSourceSearchReplicas.push_back(fmt::format("search{}", i));
      c.ServiceSettings.SiteURL = "http://chorus.example.com";
    };
    co.setup_node = [](node::Node& n, int) {
      // A recurring probe: some work time, then its record, committed under the job's fence.
      n.job_server().add_kind("probe", [&n](std::shared_ptr<jobs::JobRun> run) {
        run->step({}, 10, [run, &n](bool ok, db::Outcome) {
          if (!ok) return;
          run->env().set_timer(Duration{300'000}, [run, &n] {
            if (!run->active()) return;
            const std::string period = run->data().count("period") ? run->data().at("period") : "";
            run->step({db::Statement{"INSERT INTO ProbeRuns (JobId, Period, Node, Attempt, Latest)"
                                     " VALUES ($1, $2, $3, $4, (SELECT Attempts FROM Jobs WHERE Id = $1))",
                                     {run->id(), period, n.membership().self(), run->attempt()}}},
                      100, [run](bool ok2, db::Outcome) {
                        if (ok2) run->finish(true, {});
                      });
          });
        });
      });
    };
    return co;
  }

  // ---- setup: servers, the first nodes, then the workload's world (before the scenario's time 0)

  bool setup() {
    const auto& sc = ctx_.sc;
    auto& dbs = k_.databases();
    for (int i = 1; i <= sc.replicas; ++i)
      dbs.find(fmt::format("replica{}", i))->set_replication_lag(sc.replication_lag);
    for (int i = 1; i <= sc.search_replicas; ++i)
      dbs.add(DbServerOptions{.name = fmt::format("search{}", i),
                              .service_time = sc.db_service_time,
                              .primary = "db1",
                              .replication_lag = sc.replication_lag});
    // Every node's config.json: the scenario's settings on top of the base.
    for (int i = 0; i < sc.nodes; ++i)
      for (const auto& [key, value] : sc.config) ctx_.set_setting(i, key, value);
    ctx_.initial = sc.initial;
    if (ctx_.initial.empty())
      for (int i = 0; i < sc.nodes; ++i) ctx_.initial.push_back(static_cast<uint32_t>(i));
    const auto& initial = ctx_.initial;
    for (uint32_t n : initial) ctx_.boot(static_cast<int>(n));
    const bool up = k_.run_until(
        [&] {
          for (uint32_t n : initial) {
            auto* nd = c_.node(static_cast<int>(n));
            if (!nd || !nd->started()) return false;
            int alive = 0;
            for (const auto& [addr, m] : nd->membership().members()) alive += m.state == cluster::MemberState::alive;
            if (alive < static_cast<int>(initial.size()) - 1) return false;
          }
          return true;
        },
        k_.now() + Duration{60'000'000});
    if (!up) {
      ctx_.violation("setup", "the initial nodes did not start and find each other within 60 s");
      return false;
    }
    if (!workload_.setup(static_cast<int>(initial[0]))) return false;
    ctx_.t0 = k_.now();
    clients_.synced_now();
    return true;
  }

  // ---- from time 0: faults, clients, workload, load balancer, samples, the injected bug (in this order)

  void schedule() {
    faults_.schedule();
    clients_.start();
    workload_.start();
    lb_.start();
    k_.at(ctx_.t0, [this] { tick(); });
    faults_.schedule_bug();
  }

  void tick() {
    clients_.tick();
    sample();
    if (k_.now() + kTick <= ctx_.t0 + ctx_.sc.duration) k_.at(k_.now() + kTick, [this] { tick(); });
  }

  void sample() {
    const Duration now = k_.now();
    std::vector<int> alive;
    for (int n = 0; n < ctx_.sc.nodes; ++n)
      if (ctx_.live(n)) alive.push_back(n);
    const checkers::Sample s{now, now - ctx_.t0, alive};
    for (auto* checker : checkers_) checker->on_sample(s);
    metrics_.on_sample(s);
  }

  // ---- the end: what the clients got last, the checkers' verdicts, the report

  void finish() {
    clients_.tick();
    for (auto* checker : checkers_) checker->finish();
    metrics_.finish(clients_, order_, jobs_, expectations_);
  }

  void trace_window(Duration at) {
    const auto& trace = k_.trace();
    auto it = std::lower_bound(trace.begin(), trace.end(), at.count(),
                               [](const TraceRecord& r, int64_t t) { return r.time_us < t; });
    auto from = it - std::min<long>(40, it - trace.begin());
    auto to = it + std::min<long>(10, trace.end() - it);
    for (auto i = from; i != to; ++i)
      result_.trace_window.push_back(
          fmt::format("{:>10.3f}s  {}", secs(Duration{i->time_us} - ctx_.t0), k_.describe(*i)));
  }

  ChatCluster c_;  // first: destroyed last, after the clients' sockets
  RunResult result_;
  RunContext ctx_;
  Kernel& k_;
  RunMetrics metrics_;
  LoadBalancer lb_;
  checkers::EventsInOrder order_;
  SimClients clients_;
  Workload workload_;
  FaultInjector faults_;
  checkers::QueuesBounded queues_;
  checkers::NoNodeCrashes crashes_;
  checkers::OneLeader leader_;
  checkers::StatusMatchesTruth status_;
  checkers::NoAckedPostLost acked_;
  checkers::JobsOncePerPeriod jobs_;
  checkers::Expectations expectations_;
  // Sampled and finished in this order (their violations at the same time are reported so): the jobs
  // checker finishes before the expectations, which count the jobs it found.
  const std::vector<checkers::Checker*> checkers_{&queues_, &crashes_, &leader_, &status_,
                                                  &order_,  &acked_,   &jobs_,   &expectations_};
};

}  // namespace

RunResult run_scenario(const Scenario& scenario, const RunOptions& options) {
  set_assert_handler(throw_assertion);  // a failed assertion fails the seed instead of aborting chorus-sim
  Run run(scenario, options);
  return run.go();
}

}  // namespace chorus::sim
