// Checker "recurring jobs run once per period" (simulator/checkers/jobs_once_per_period.h).
#include "simulator/checkers/jobs_once_per_period.h"

#include <algorithm>
#include <map>
#include <set>

namespace chorus::sim::checkers {

void JobsOncePerPeriod::finish() {
  if (ctx_.sc.job_period <= Duration{0}) return;
  auto* db = ctx_.k.databases().find(ctx_.master);
  if (!db) return;
  auto jobs = db->execute(
      {db::Statement{"SELECT Id, ScheduleKey, Status, Attempts, LastActivityAt FROM Jobs WHERE Type = 'probe'", {}}},
      false);
  auto runs = db->execute({db::Statement{"SELECT JobId, Period, Attempt, Latest, Node FROM ProbeRuns", {}}}, false);
  if (!jobs.ok() || !runs.ok())
    return ctx_.violation(kName, "the jobs tables cannot be read: " + jobs.error.message + runs.error.message);
  std::map<std::string, std::set<std::string>> jobs_of_period;
  std::map<std::string, int> runs_of_job;
  std::set<std::pair<std::string, int64_t>> attempts_run;
  for (const auto& r : runs.result().rows) {
    const auto& job = std::get<std::string>(r.at(0));
    const int64_t attempt = std::get<int64_t>(r.at(2)), latest = std::get<int64_t>(r.at(3));
    jobs_of_period[std::get<std::string>(r.at(1))].insert(job);
    ++runs_of_job[job];
    // The fence: a run commits only while its attempt holds the job. A later attempt holding it when this
    // one committed means a worker that had been given up on wrote anyway.
    if (latest != attempt)
      ctx_.violation(kName, fmt::format("job {}: attempt {} (on {}) committed its run while attempt {} held the job",
                                        job, attempt, std::get<std::string>(r.at(4)), latest));
    if (!attempts_run.insert({job, attempt}).second)
      ctx_.violation(kName, fmt::format("job {}: attempt {} committed its run twice", job, attempt));
  }
  for (const auto& [period, ids] : jobs_of_period)
    if (ids.size() > 1) ctx_.violation(kName, fmt::format("period {} was run by {} jobs", period, ids.size()));
  std::vector<int64_t> periods;
  const int64_t now_ms = ctx_.wall_ms();
  for (const auto& r : jobs.result().rows) {
    const auto& id = std::get<std::string>(r.at(0));
    const auto& key = std::get<std::string>(r.at(1));
    const auto& status = std::get<std::string>(r.at(2));
    const int64_t attempts = std::get<int64_t>(r.at(3));
    const int64_t activity = std::get<int64_t>(r.at(4));
    const auto colon = key.rfind(':');
    if (colon != std::string::npos) {
      try {
        periods.push_back(std::stoll(key.substr(colon + 1)));
      } catch (const std::exception&) {
      }
    }
    if (status == "success") {
      ++done_;
      if (!runs_of_job.count(id)) ctx_.violation(kName, fmt::format("job {} ({}) succeeded without its work", id, key));
    }
    if (runs_of_job[id] > attempts)
      ctx_.violation(
          kName, fmt::format("job {} ({}) did its work {} times in {} attempts", id, key, runs_of_job[id], attempts));
    if ((status == "in_progress" || status == "pending") && activity > 0 && now_ms - activity > 30'000)
      ctx_.violation(kName,
                     fmt::format("job {} ({}) is stuck {} since {:.1f} s", id, key, status, (now_ms - activity) / 1e3));
  }
  std::sort(periods.begin(), periods.end());
  for (size_t i = 1; i < periods.size(); ++i)
    if (periods[i] != periods[i - 1] + 1 && periods[i] != periods[i - 1])
      ctx_.violation(kName, fmt::format("periods {} to {} were skipped", periods[i - 1] + 1, periods[i] - 1));
}

}  // namespace chorus::sim::checkers
