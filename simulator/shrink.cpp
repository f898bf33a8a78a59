// Shrinking a failing run's fault schedule (scenario.h's shrink_schedule): ddmin over units - a fault with
// its repair, or one fault - keeping each removal that still fails the same way.
#include <algorithm>
#include <set>

#include "simulator/fault_injector.h"
#include "simulator/scenario.h"

namespace chorus::sim {

namespace {

// The schedule cut into what shrink removes together: a fault with its repair (a crash and the restart
// of that node, ...), or one fault. The repair phase - the faults at the schedule's last instant, where
// a random-faults scenario repairs everything - is never removed: without it a run fails for another
// reason (a partition that never heals) and the shrunk file reproduces something else.
std::vector<std::vector<size_t>> shrink_units(const std::vector<fault::Fault>& schedule) {
  std::vector<std::vector<size_t>> units;
  if (schedule.empty()) return units;
  const Duration repair_phase = schedule.back().at;
  std::vector<bool> taken(schedule.size(), false);
  for (size_t i = 0; i < schedule.size(); ++i) {
    if (taken[i] || schedule[i].at >= repair_phase) continue;
    taken[i] = true;
    std::vector<size_t> unit{i};
    if (const auto repair = FaultInjector::repair_of(schedule[i].kind)) {
      for (size_t j = i + 1; j < schedule.size(); ++j)
        if (!taken[j] && schedule[j].kind == *repair && schedule[j].nodes == schedule[i].nodes &&
            schedule[j].text == schedule[i].text) {
          if (schedule[j].at < repair_phase) {
            taken[j] = true;
            unit.push_back(j);
          }
          break;
        }
    }
    units.push_back(std::move(unit));
  }
  return units;
}

}  // namespace

bool same_failure(const Violation& a, const Violation& b) { return a.checker == b.checker && a.kind == b.kind; }

Shrunk shrink_schedule(const Scenario& scenario, const RunOptions& options, const RunResult& failed,
                       const std::function<void(size_t, int)>& progress) {
  Shrunk out;
  out.schedule = failed.schedule;
  if (failed.violations.empty()) return out;
  out.checker = failed.violations.front().checker;
  out.kind = failed.violations.front().kind;
  const Violation& target = failed.violations.front();
  // ddmin over units (see shrink_units); a candidate counts only when it fails the same way.
  auto units = shrink_units(failed.schedule);
  auto schedule_of = [&](const std::vector<std::vector<size_t>>& kept) {
    std::set<size_t> removed;
    for (const auto& u : units) removed.insert(u.begin(), u.end());
    for (const auto& u : kept)
      for (size_t i : u) removed.erase(i);
    std::vector<fault::Fault> s;
    for (size_t i = 0; i < failed.schedule.size(); ++i)
      if (!removed.count(i)) s.push_back(failed.schedule[i]);
    return s;
  };
  auto fails = [&](const std::vector<fault::Fault>& schedule) {
    RunOptions t = options;
    t.schedule = schedule;
    t.keep_trace = false;
    ++out.runs;
    const auto r = run_scenario(scenario, t);
    return std::any_of(r.violations.begin(), r.violations.end(),
                       [&](const Violation& v) { return same_failure(v, target); });
  };
  auto kept = units;
  for (size_t chunk = std::max<size_t>(1, kept.size() / 2);; chunk /= 2) {
    bool removed = true;
    while (removed && !kept.empty()) {
      removed = false;
      for (size_t at = 0; at < kept.size(); at += chunk) {
        auto candidate = kept;
        candidate.erase(candidate.begin() + static_cast<long>(at),
                        candidate.begin() + static_cast<long>(std::min(kept.size(), at + chunk)));
        auto schedule = schedule_of(candidate);
        if (fails(schedule)) {
          kept = std::move(candidate);
          out.schedule = std::move(schedule);
          removed = true;
          if (progress) progress(kept.size(), out.runs);
          break;
        }
      }
    }
    if (chunk <= 1) break;
  }
  return out;
}

}  // namespace chorus::sim
