// What the report measures of a scenario run: request outcomes, lanes, rows and metrics
// (simulator/run_metrics.h).
#include "simulator/run_metrics.h"

#include <algorithm>
#include <map>

#include "simulator/checkers/events_in_order.h"
#include "simulator/checkers/expectations.h"
#include "simulator/checkers/jobs_once_per_period.h"

namespace chorus::sim {

namespace {
constexpr Duration kReportSample{500'000};  // the report's lanes
}  // namespace

RunMetrics::RunMetrics(RunContext& ctx) : ctx_(ctx) {}

void RunMetrics::on_answer(Client& cl, Duration sent, const std::string& method, const std::string& target, int status,
                           const std::string& body) {
  // A 404 is an answer too: a post changed by one client while another deleted it.
  const bool ok = (status >= 200 && status < 300) || status == 404;
  const Duration now = ctx_.k.now();
  const auto bucket = static_cast<size_t>(std::max<int64_t>(0, (now - ctx_.t0).count()) / 1'000'000);
  if (availability_.size() <= bucket) availability_.resize(bucket + 1);
  if (ok) {
    ++availability_[bucket].ok;
    ++cl.ok;
    latencies_.push_back((now - sent).count());
    sorted_ = false;
    cl.last_ok = now;
    cl.stretch_start = Duration{-1};
    last_global_ok_ = now;
    global_stretch_start_ = Duration{-1};
  } else {
    ++availability_[bucket].failed;
    ++cl.failed;
    // A stretch of failures begins when its first failed request was sent; it ends at a success. At
    // each failure: this client has not been served since the later of the stretch's start and its last
    // success - nor the cluster, counting every client's successes (idle time before a stretch is not
    // counted; a request still waiting when another one succeeds is not downtime).
    if (cl.stretch_start < Duration{0}) cl.stretch_start = sent;
    if (global_stretch_start_ < Duration{0}) global_stretch_start_ = sent;
    cl.longest_gap = std::max(cl.longest_gap, now - std::max(cl.last_ok, cl.stretch_start));
    downtime_ = std::max(downtime_, now - std::max(last_global_ok_, global_stretch_start_));
    if (failures_.size() < 5)
      failures_.push_back(fmt::format("{} {} -> {} {}", method, target.substr(0, 60), status, body.substr(0, 120)));
  }
}

void RunMetrics::on_delivered(const std::string& post_id) {
  if (const auto a = ctx_.ack_time.find(post_id); a != ctx_.ack_time.end())
    delivery_delay_ = std::max(delivery_delay_, ctx_.k.now() - a->second);
}

void RunMetrics::on_sample(const checkers::Sample& s) {
  if ((s.now - ctx_.t0).count() % kReportSample.count() >= kTick.count()) return;
  RunRecord::Sample r;
  r.t = secs(s.t);
  std::map<std::string, int> votes;
  for (int n : s.alive) ++votes[ctx_.c.node(n)->membership().leader()];
  int best = 0;
  for (const auto& [addr, count] : votes)
    if (count > best) {
      best = count;
      r.leader = static_cast<int>(ctx_.k.find(addr));
    }
  for (int n = 0; n < ctx_.sc.nodes; ++n) {
    const auto st = ctx_.k.state(static_cast<NodeIndex>(n));
    r.state += ctx_.start_time[static_cast<size_t>(n)] < Duration{0} ? '-'
               : st == NodeState::paused                             ? 'p'
               : st == NodeState::up                                 ? 'u'
                                                                     : 'd';
    int red = 0, green = 0;
    for (int v : s.alive) {
      if (v == n) continue;
      const auto shown = ctx_.shown_green(v, n);
      if (!shown) continue;
      (*shown ? green : red)++;
    }
    r.colour += red + green == 0 ? '?' : red > green ? 'r' : 'g';
  }
  ctx_.result.record.samples.push_back(r);
}

int64_t RunMetrics::latency(double p) {
  if (!sorted_) std::sort(latencies_.begin(), latencies_.end());
  sorted_ = true;
  if (latencies_.empty()) return 0;
  return latencies_[std::min(latencies_.size() - 1, static_cast<size_t>(p * static_cast<double>(latencies_.size())))];
}

void RunMetrics::finish(const SimClients& clients, const checkers::EventsInOrder& order,
                        const checkers::JobsOncePerPeriod& jobs, const checkers::Expectations& expectations) {
  auto& result = ctx_.result;
  const auto& known_bugs = ctx_.sc.known_bugs;
  // The always-on checkers, as report rows, ahead of the expectations.
  std::vector<RunRecord::Check> rows;
  for (const char* name : kCheckers) {
    std::string first;
    int count = 0;
    for (const auto& v : result.violations)
      if (v.checker == name && count++ == 0) first = v.what;
    const auto known =
        std::find_if(known_bugs.begin(), known_bugs.end(), [&](const auto& kb) { return kb.first == name; });
    if (known != known_bugs.end())
      rows.push_back(RunRecord::Check{
          std::string(name) + " (KNOWN BUG)", true,
          count == 0 ? "did not show in this run; the bug: " + known->second
                     : fmt::format("KNOWN BUG ({}): {} violations; first: {}", known->second, count, first)});
    else
      rows.push_back(RunRecord::Check{name, count == 0,
                                      count == 0 ? "held" : fmt::format("{} violations; first: {}", count, first)});
  }
  for (const auto& v : result.violations)
    if (v.checker == "setup" || v.checker == "WebSocket protocol" || v.checker == "config reload")
      rows.push_back(RunRecord::Check{v.checker, false, v.what});
  rows.insert(rows.end(), result.record.checks.begin(), result.record.checks.end());
  result.record.checks = std::move(rows);

  const ClientTotals t = clients.totals();
  auto& m = result.record.metrics;
  m.emplace_back("clients / nodes", fmt::format("{} / {}", clients.all().size(), ctx_.sc.nodes));
  m.emplace_back("clients with an open WebSocket at the end", std::to_string(t.open));
  m.emplace_back("requests ok / failed",
                 fmt::format("{} / {} ({:.2f}% failed)", t.ok, t.failed, t.failed_share() * 100));
  m.emplace_back("request latency p50 / p99 / max", fmt::format("{:.1f} / {:.1f} / {:.1f} ms", latency(0.5) / 1e3,
                                                                latency(0.99) / 1e3, latency(1.0) / 1e3));
  m.emplace_back("longest client gap", fmt_s(t.gap));
  m.emplace_back("longest cluster downtime", fmt_s(downtime_));
  m.emplace_back("posts acknowledged", std::to_string(ctx_.acked.size()));
  m.emplace_back("posts held by clients", std::to_string(t.delivered));
  m.emplace_back("WebSocket reconnects / resumes / re-syncs",
                 fmt::format("{} / {} / {}", t.reconnects, t.resumes, t.resyncs));
  m.emplace_back("probe jobs completed", std::to_string(jobs.done()));
  m.emplace_back("longest from acknowledgement to event", fmt_s(delivery_delay_));
  m.emplace_back("posts out of channel order on a connection", std::to_string(order.crossed()));
  uint64_t filled = 0;
  for (int n = 0; n < ctx_.sc.nodes; ++n)
    if (auto* nd = ctx_.c.node(n)) filled += nd->app().stats().posts_filled;
  m.emplace_back("posts read from the database to fill a gap (live nodes)", std::to_string(filled));
  for (const auto& [n, d] : expectations.detected()) m.emplace_back(fmt::format("detection of n{}", n), fmt_s(d));
  for (size_t i = 0; i < failures_.size(); ++i) m.emplace_back(fmt::format("failed request {}", i + 1), failures_[i]);
  m.emplace_back("trace", fmt::format("{} events, hash {:016x}", ctx_.k.trace_count(), ctx_.k.trace_hash()));
  for (size_t i = 0; i < availability_.size(); ++i) availability_[i].t = static_cast<double>(i);
  result.record.availability = std::move(availability_);
}

}  // namespace chorus::sim
