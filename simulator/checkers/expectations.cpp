// The scenario's own expectations (simulator/checkers/expectations.h).
#include "simulator/checkers/expectations.h"

#include <algorithm>

#include "simulator/checkers/jobs_once_per_period.h"
#include "simulator/run_metrics.h"

namespace chorus::sim::checkers {

using K = Expectation::Kind;

namespace {
bool viewed_by(const Expectation& x, int n) {
  return x.viewers.empty() ||
         std::find(x.viewers.begin(), x.viewers.end(), static_cast<uint32_t>(n)) != x.viewers.end();
}
}  // namespace

void Expectations::on_sample(const Sample& s) {
  detection(s.alive, s.t);
  for (const auto& x : ctx_.sc.expect) {
    const bool timed = x.kind == K::leader || x.kind == K::status;
    if (timed && s.t >= x.at && !done_.count(&x)) {
      done_.insert(&x);
      check_at(x, s.alive);
    }
  }
}

void Expectations::detection(const std::vector<int>& alive, Duration t) {
  for (const auto& x : ctx_.sc.expect) {
    if (x.kind != K::detect || detected_.count(x.node)) continue;
    const Duration fault_at = faults_.first_death(x.node);
    if (fault_at < Duration{0} || t < fault_at) continue;
    bool all = true;
    int peers = 0;
    for (int n : alive) {
      if (n == x.node) continue;
      ++peers;
      const auto& members = ctx_.c.node(n)->membership().members();
      auto it = members.find(ctx_.c.address(x.node));
      if (it != members.end() && it->second.state != cluster::MemberState::dead) all = false;
    }
    if (all && peers > 0) detected_[x.node] = t - fault_at;
  }
}

void Expectations::check_at(const Expectation& x, const std::vector<int>& alive) {
  auto& c = ctx_.c;
  if (x.kind == K::leader) {
    std::vector<std::string> wrong;
    for (int n : alive)
      if (viewed_by(x, n) && c.node(n)->membership().leader() != c.address(x.node))
        wrong.push_back(fmt::format("n{} names {}", n, c.node(n)->membership().leader()));
    result(x, wrong.empty(), wrong.empty() ? "yes" : fmt::format("{}", fmt::join(wrong, "; ")));
  } else if (x.kind == K::status) {
    std::vector<std::string> wrong;
    const bool want_green = x.colour == "green";
    for (int v : alive)
      for (int p = 0; p < ctx_.sc.nodes; ++p) {
        if (p == v || !viewed_by(x, v) || (x.node >= 0 && p != x.node) || (x.node < 0 && !ctx_.live(p))) continue;
        if (!faults_.reachable(v, p)) continue;
        const auto shown = ctx_.shown_green(v, p);
        const bool green = shown && *shown;
        if (green != want_green)
          wrong.push_back(fmt::format("n{} shows n{} {}", v, p, !shown ? "nowhere" : (green ? "green" : "red")));
      }
    result(x, wrong.empty(), wrong.empty() ? "yes" : fmt::format("{}", fmt::join(wrong, "; ")));
  }
}

void Expectations::result(const Expectation& x, bool ok, const std::string& detail) {
  ctx_.result.record.checks.push_back(RunRecord::Check{"expect: " + x.text, ok, detail});
  if (!ok) ctx_.violation("expect (line " + std::to_string(x.line) + ")", x.text + ": " + detail);
}

// The expectations measured over the run.
void Expectations::finish() {
  const ClientTotals t = clients_.totals();
  const double failed_share = t.failed_share();
  for (const auto& x : ctx_.sc.expect) {
    switch (x.kind) {
      case K::detect: {
        auto it = detected_.find(x.node);
        result(x, it != detected_.end() && it->second <= x.bound,
               it == detected_.end() ? "never (or never failed)" : fmt_s(it->second));
        break;
      }
      case K::max_failed:
        result(x, failed_share <= x.value,
               fmt::format("{:.2f}% ({} of {})", failed_share * 100, t.failed, t.ok + t.failed));
        break;
      case K::max_gap:
        result(x, t.gap <= x.bound, fmt_s(t.gap));
        break;
      case K::max_downtime:
        result(x, metrics_.downtime() <= x.bound, fmt_s(metrics_.downtime()));
        break;
      case K::max_p99: {
        const int64_t p99 = metrics_.latency(0.99);
        result(x, Duration{p99} <= x.bound, fmt::format("{:.1f} ms", static_cast<double>(p99) / 1000));
        break;
      }
      case K::min_jobs:
        result(x, jobs_.done() >= static_cast<int>(x.value), std::to_string(jobs_.done()));
        break;
      case K::max_resyncs:
        result(x, t.resyncs <= static_cast<int>(x.value), std::to_string(t.resyncs));
        break;
      case K::leader:
      case K::status:
        if (!done_.count(&x)) result(x, false, "the scenario ended before this time");
        break;
    }
  }
}

}  // namespace chorus::sim::checkers
