// chorus-sim: runs simulated Chorus clusters from seeds, checks them, and says how to replay a failure.
// (Over 700 lines on purpose: the command line of every subcommand, its help and its output formats, in
// one place, so that what a user types and reads is in one file; the work itself is in simulator/.)
//
//   chorus-sim run FILE... [--seed N | --seeds A..B] [--jobs N] [--report DIR] [--soak-report FILE]
//   [--check-determinism]
//       scenario files (scenarios/*.yaml): whole clusters with a load balancer and clients through the
//       HA guide's procedures and failures, every checker on; a progress line, then a summary table.
//   chorus-sim replay FILE --seed N     the run again, with the trace around its first violation
//   chorus-sim shrink FILE --seed N     the fewest faults of that run's schedule that still fail
//   chorus-sim swarm                    the foundation's ping cluster under random faults
//   chorus-sim membership               detection and election times per cluster size
//   chorus-sim list [DIR]               the scenario files of a folder with their descriptions
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "simulator/forked_pool.h"
#include "simulator/membership_cluster.h"
#include "simulator/ping_cluster.h"
#include "simulator/scenario.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include <fstream>
#include <numeric>

namespace {

bool parse_seeds(const std::string& text, uint64_t& first, uint64_t& last) {
  const auto dots = text.find("..");
  try {
    if (dots == std::string::npos) {
      first = last = std::stoull(text);
    } else {
      first = std::stoull(text.substr(0, dots));
      last = std::stoull(text.substr(dots + 2));
    }
  } catch (const std::exception&) {
    return false;
  }
  return first <= last;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Detection and election times and the protocol's cost at rest, per cluster size, over seeds.
int run_membership_report(const std::vector<int>& sizes, uint64_t first, uint64_t last, const std::string& report) {
  std::string md = "# Membership: failure detection and leader election (simulator)\n\n";
  md += fmt::format(
      "Seeds {}..{} per size; LAN links (100 us + exp(400 us) one way); default settings: probe every 200 ms, "
      "probe timeout 100 ms, 3 indirect probes, suspicion 0.4-1.5 s (Lifeguard). Reproduce: "
      "`chorus-sim membership --nodes {} --seeds {}..{}`.\n\n",
      first, last, fmt::join(sizes, ","), first, last);
  md +=
      "- detection: a random non-leader node crashes (its connections reset); time until every live peer has declared "
      "it dead.\n"
      "- hung: a node freezes (no reset, only silence, as SIGSTOP or a dead host); time until every peer has declared "
      "it dead.\n"
      "- election: then the leader crashes; time until every survivor names the lowest live address.\n"
      "- messages: sent per node per second at rest (10 s, nobody failing), all message kinds.\n\n";
  md +=
      "| nodes | detection p50 | p99 | max | hung p50 | p99 | max | election p50 | p99 | max | messages / node / s |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  bool ok = true;
  for (int n : sizes) {
    std::vector<double> detection, election, hang, rate;
    for (uint64_t seed = first; seed <= last; ++seed) {
      chorus::sim::MemberCluster c(seed, n);
      auto& k = c.kernel();
      std::vector<int> everyone(static_cast<size_t>(n));
      std::iota(everyone.begin(), everyone.end(), 0);
      if (!k.run_until([&] { return c.all_alive() && c.one_leader(everyone); }, chorus::Duration{20'000'000})) {
        std::printf("n=%d seed %llu: the cluster did not settle\n", n, static_cast<unsigned long long>(seed));
        ok = false;
        continue;
      }
      k.run_for(chorus::Duration{2'000'000});
      auto sent = [&] {
        uint64_t total = 0;
        for (int i = 0; i < n; ++i)
          if (c.live(i)) total += c.node(i)->membership->messages_sent();
        return total;
      };
      const uint64_t before = sent();
      k.run_for(chorus::Duration{10'000'000});
      rate.push_back(static_cast<double>(sent() - before) / n / 10.0);
      // The lowest address leads; crash someone else first.
      int leader = 0;
      for (int i = 1; i < n; ++i)
        if (c.address(i) < c.address(leader)) leader = i;
      int victim = static_cast<int>(k.random().uniform(static_cast<uint64_t>(n - 1)));
      if (victim >= leader) ++victim;
      k.crash(static_cast<chorus::sim::NodeIndex>(victim));
      auto t0 = k.now();
      if (!k.run_until([&] { return c.all_see(victim, chorus::cluster::MemberState::dead); },
                       t0 + chorus::Duration{30'000'000}))
        ok = false;
      detection.push_back(static_cast<double>((k.now() - t0).count()) / 1e6);
      k.run_for(chorus::Duration{1'000'000});
      k.crash(static_cast<chorus::sim::NodeIndex>(leader));
      t0 = k.now();
      if (!k.run_until([&] { return c.one_leader(everyone); }, t0 + chorus::Duration{30'000'000})) ok = false;
      election.push_back(static_cast<double>((k.now() - t0).count()) / 1e6);
      // A hung node (paused: no connection reset, only silence), found by probing alone. It needs a
      // live node besides itself to notice: four nodes at least.
      if (n < 4) continue;
      k.run_for(chorus::Duration{2'000'000});
      int hung = -1;
      for (int i = 0; i < n && hung < 0; ++i)
        if (c.live(i) && i != victim && i != leader) hung = i;
      k.pause(static_cast<chorus::sim::NodeIndex>(hung));
      t0 = k.now();
      if (!k.run_until([&] { return c.all_see(hung, chorus::cluster::MemberState::dead); },
                       t0 + chorus::Duration{30'000'000}))
        ok = false;
      hang.push_back(static_cast<double>((k.now() - t0).count()) / 1e6);
    }
    auto secs = [&](const std::vector<double>& v, double p) {
      return v.empty() ? std::string("-") : fmt::format("{:.2f} s", percentile(v, p));
    };
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1f} |\n", n, secs(detection, 0.5),
                      secs(detection, 0.99), secs(detection, 1.0), secs(hang, 0.5), secs(hang, 0.99), secs(hang, 1.0),
                      secs(election, 0.5), secs(election, 0.99), secs(election, 1.0), percentile(rate, 0.5));
    std::printf("n=%d done\n", n);
  }
  md +=
      "\nFor comparison: the HA guide's inter-node check declares a node down after 15-30 s; memberlist's LAN "
      "defaults take about 5-6 s in a 3-node cluster.\n";
  std::printf("%s", md.c_str());
  if (!report.empty()) {
    std::ofstream(report) << md;
    std::printf("wrote %s\n", report.c_str());
  }
  return ok ? 0 : 1;
}

// ---- scenarios

struct ScenarioCli {
  std::vector<std::string> files;
  std::string file;
  uint64_t seed = 0;
  std::string seeds;
  std::string report;
  bool determinism = false;
  int jobs = 1;
  std::string soak_report;
  std::string bug;
  std::string out;
  bool logs = false;
};

bool parse_bug(const std::string& name, chorus::sim::Bug& bug) {
  using chorus::sim::Bug;
  if (name.empty())
    bug = Bug::none;
  else if (name == "lose_post")
    bug = Bug::lose_post;
  else if (name == "two_leaders")
    bug = Bug::two_leaders;
  else if (name == "double_job")
    bug = Bug::double_job;
  else if (name == "wrong_status")
    bug = Bug::wrong_status;
  else if (name == "random_stream_ids")
    bug = Bug::random_stream_ids;
  else if (name == "failed_assertion")
    bug = Bug::failed_assertion;
  else if (name == "no_acks")
    bug = Bug::no_acks;
  else if (name == "duplicate_event")
    bug = Bug::duplicate_event;
  else if (name == "unfenced_jobs")
    bug = Bug::unfenced_jobs;
  else {
    std::fprintf(stderr,
                 "chorus-sim: unknown --bug \"%s\"; expected lose_post, two_leaders, double_job, wrong_status, "
                 "random_stream_ids, failed_assertion, no_acks, duplicate_event or unfenced_jobs\n",
                 name.c_str());
    return false;
  }
  return true;
}

std::optional<chorus::sim::Scenario> load(const std::string& file) {
  auto parsed = chorus::sim::parse_scenario_file(file);
  for (const auto& e : parsed.errors) std::fprintf(stderr, "%s\n", e.c_str());
  return parsed.scenario;
}

std::string bug_flag(const std::string& bug) { return bug.empty() ? "" : " --bug " + bug; }

// One seed's outcome, as a worker process sends it: failed, the seconds, and what to print.
struct SeedOutcome {
  bool failed = false;
  double simulated_s = 0, wall_s = 0, setup_wall_s = 0;
  std::string text;  // the failure's violations and the commands to replay it

  std::string encode() const {
    return fmt::format("{} {} {} {}\n{}", failed ? 1 : 0, simulated_s, wall_s, setup_wall_s, text);
  }
  static SeedOutcome decode(const std::string& s) {
    SeedOutcome o;
    int f = 0;
    std::sscanf(s.c_str(), "%d %lf %lf %lf", &f, &o.simulated_s, &o.wall_s, &o.setup_wall_s);
    o.failed = f != 0;
    const auto nl = s.find('\n');
    if (nl != std::string::npos) o.text = s.substr(nl + 1);
    return o;
  }
};

std::string violations_text(const chorus::sim::RunResult& r, size_t max) {
  std::string out;
  for (size_t i = 0; i < r.violations.size() && i < max; ++i)
    out += fmt::format("    {:8.3f}s  [{}] {}\n", static_cast<double>(r.violations[i].at.count()) / 1e6,
                       r.violations[i].checker, r.violations[i].what);
  if (r.violations.size() > max) out += fmt::format("    ... and {} more\n", r.violations.size() - max);
  return out;
}

void print_violations(const chorus::sim::RunResult& r, size_t max) {
  std::printf("%s", violations_text(r, max).c_str());
}

SeedOutcome run_seed(const chorus::sim::Scenario& sc, uint64_t s, chorus::sim::Bug bug, const ScenarioCli& cli) {
  chorus::sim::RunOptions o;
  o.seed = s;
  o.bug = bug;
  auto r = chorus::sim::run_scenario(sc, o);
  SeedOutcome out;
  std::string problem;
  if (cli.determinism) {
    auto again = chorus::sim::run_scenario(sc, o);
    out.simulated_s += again.record.duration_s;
    out.wall_s += again.record.wall_s;
    out.setup_wall_s += again.record.setup_wall_s;
    if (again.trace_hash != r.trace_hash || again.trace_count != r.trace_count) {
      // Run both again keeping the traces, find the first record where they part, and name it.
      chorus::sim::RunOptions k = o;
      k.keep_trace = true;
      auto a = chorus::sim::run_scenario(sc, k);
      auto b = chorus::sim::run_scenario(sc, k);
      size_t i = 0;
      while (i < a.trace_hashes.size() && i < b.trace_hashes.size() && a.trace_hashes[i] == b.trace_hashes[i]) ++i;
      k.describe_record = i;
      auto da = chorus::sim::run_scenario(sc, k);
      auto db = chorus::sim::run_scenario(sc, k);
      problem =
          fmt::format("nondeterministic: the two runs part at trace record {}:\n      first:  {}\n      second: {}", i,
                      da.described_record, db.described_record);
    }
  }
  out.simulated_s += r.record.duration_s;
  out.wall_s += r.record.wall_s;
  out.setup_wall_s += r.record.setup_wall_s;
  out.failed = !r.ok() || !problem.empty();
  if (out.failed) {
    const auto n = static_cast<unsigned long long>(s);
    const std::string flag = bug_flag(cli.bug);
    out.text =
        fmt::format("[{}] seed {} FAILED ({} violations)\n", sc.name, n, r.violations.size()) + violations_text(r, 5);
    if (!problem.empty()) out.text += "    " + problem + "\n";
    out.text += fmt::format("  replay:  chorus-sim run {} --seed {}{}\n", sc.file, n, flag);
    out.text += fmt::format("  trace:   chorus-sim replay {} --seed {}{}\n", sc.file, n, flag);
    out.text += fmt::format("  shrink:  chorus-sim shrink {} --seed {}{}\n", sc.file, n, flag);
  }
  return out;
}

int scenario_run(const ScenarioCli& cli) {
  chorus::sim::Bug bug;
  if (!parse_bug(cli.bug, bug)) return 2;
  std::vector<chorus::sim::Scenario> scenarios;
  for (const auto& f : cli.files) {
    auto sc = load(f);
    if (!sc) return 2;
    scenarios.push_back(std::move(*sc));
  }
  const bool tty = isatty(fileno(stderr));
  const auto wall_start = std::chrono::steady_clock::now();
  uint64_t seeds_first = 0, seeds_last = 0;
  if (!cli.seeds.empty() && !parse_seeds(cli.seeds, seeds_first, seeds_last)) {
    std::fprintf(stderr, "chorus-sim: --seeds expects A..B with A <= B, got \"%s\"\n", cli.seeds.c_str());
    return 2;
  }
  // Every (scenario, seed) to run, in order; workers take every jobs-th.
  std::vector<std::pair<size_t, uint64_t>> items;
  std::vector<chorus::sim::IndexRow> rows(scenarios.size());
  for (size_t i = 0; i < scenarios.size(); ++i) {
    const auto& sc = scenarios[i];
    uint64_t first = 1, last = static_cast<uint64_t>(sc.seeds);
    if (cli.seed) first = last = cli.seed;
    if (!cli.seeds.empty()) {
      first = seeds_first;
      last = seeds_last;
    }
    for (uint64_t s = first; s <= last; ++s) items.emplace_back(i, s);
    if (!cli.seed && cli.seeds.empty())
      for (uint64_t s : sc.regression_seeds)
        if (s > last) items.emplace_back(i, s);  // the file's own seeds: 1..seeds and its regressions
    rows[i].scenario = sc.name;
    rows[i].description = sc.description;
  }
  size_t finished = 0;
  int failed_total = 0;
  std::vector<std::string> failures;              // for the soak report
  std::set<std::pair<size_t, uint64_t>> crashed;  // seeds whose worker died: not run again here
  auto progress = [&] {
    if (!tty) return;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    std::fprintf(stderr, "\r\033[K%zu of %zu runs, %d failed, %.0f s", finished, items.size(), failed_total, wall);
  };
  chorus::sim::run_forked(
      items.size(), cli.jobs,
      [&](size_t k) {
        const auto& [i, s] = items[k];
        return run_seed(scenarios[i], s, bug, cli).encode();
      },
      [&](size_t k, const std::optional<std::string>& result) {
        const auto& [i, s] = items[k];
        auto& row = rows[i];
        SeedOutcome o;
        if (result) {
          o = SeedOutcome::decode(*result);
        } else {
          o.failed = true;
          o.text = fmt::format(
              "[{}] seed {} FAILED: its worker process died (a crash in the run, or over 10 minutes)\n  replay:  "
              "chorus-sim run {} --seed {}{}\n",
              scenarios[i].name, s, scenarios[i].file, s, bug_flag(cli.bug));
          crashed.insert({i, s});
        }
        ++finished;
        row.seeds++;
        row.simulated_s += o.simulated_s;
        row.wall_s += o.wall_s;
        row.setup_wall_s += o.setup_wall_s;
        if (o.failed) {
          row.failed_seeds++;
          row.failing.push_back(s);
          ++failed_total;
          failures.push_back(o.text);
          if (tty) std::fprintf(stderr, "\r\033[K");
          std::printf("%s", o.text.c_str());
          std::fflush(stdout);
        }
        progress();
      });
  if (tty) std::fprintf(stderr, "\r\033[K");
  for (size_t i = 0; i < scenarios.size(); ++i) {
    auto& row = rows[i];
    std::sort(row.failing.begin(), row.failing.end());
    std::printf("[%s] %d seeds, %d failed, %.0f simulated s in %.1f wall s (%.0fx)\n", row.scenario.c_str(), row.seeds,
                row.failed_seeds, row.simulated_s, row.wall_s, row.wall_s > 0 ? row.simulated_s / row.wall_s : 0.0);
    if (!cli.report.empty() && row.seeds > 0) {
      // The page shows the first failing seed, else the first seed: run it again here for its record.
      chorus::sim::RunOptions o;
      const auto first = std::find_if(items.begin(), items.end(), [i](const auto& item) { return item.first == i; });
      o.seed = first->second;
      for (uint64_t s : row.failing)
        if (!crashed.count({i, s})) {  // the first failing seed that can run here without taking the parent down
          o.seed = s;
          break;
        }
      o.bug = bug;
      const auto r = chorus::sim::run_scenario(scenarios[i], o);
      std::filesystem::create_directories(cli.report);
      const std::string base = row.scenario;
      std::ofstream(cli.report + "/" + base + ".svg") << chorus::sim::render_svg(r.record);
      std::ofstream(cli.report + "/" + base + ".md") << chorus::sim::render_markdown(r.record, base + ".svg");
      row.page = base + ".md";
    }
  }
  std::fflush(stdout);
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  // The summary table.
  size_t width = 8;
  for (const auto& r : rows) width = std::max(width, r.scenario.size());
  std::string table = fmt::format("\n{:<{}}  {:>6}  {:>6}  {:>10}  {:>8}  {:>7}  {}\n", "scenario", width, "seeds",
                                  "failed", "simulated", "wall", "speed", "speed after setup");
  double sim_total = 0;
  int seeds_total = 0;
  for (const auto& r : rows) {
    const double run_s = r.wall_s - r.setup_wall_s;
    table +=
        fmt::format("{:<{}}  {:>6}  {:>6}  {:>9.0f}s  {:>7.1f}s  {:>6.0f}x  {:>6.0f}x{}\n", r.scenario, width, r.seeds,
                    r.failed_seeds, r.simulated_s, r.wall_s, r.wall_s > 0 ? r.simulated_s / r.wall_s : 0.0,
                    run_s > 0 ? r.simulated_s / run_s : 0.0, r.failed_seeds ? "  FAILED" : "");
    sim_total += r.simulated_s;
    seeds_total += r.seeds;
  }
  table += fmt::format("{:<{}}  {:>6}  {:>6}  {:>9.0f}s  {:>7.1f}s  {:>6.0f}x\n", "total", width, seeds_total,
                       failed_total, sim_total, wall_s, wall_s > 0 ? sim_total / wall_s : 0.0);
  std::printf("%s", table.c_str());
  std::string command = "chorus-sim run";
  for (const auto& f : cli.files) command += " " + f;
  if (!cli.seeds.empty()) command += " --seeds " + cli.seeds;
  if (cli.seed) command += fmt::format(" --seed {}", cli.seed);
  if (cli.determinism) command += " --check-determinism";
  if (cli.jobs > 1) command += fmt::format(" --jobs {}", cli.jobs);
  if (!cli.report.empty()) {
    std::ofstream(cli.report + "/index.md") << chorus::sim::render_index(rows, command + " --report " + cli.report);
    std::printf("report: %s/index.md\n", cli.report.c_str());
  }
  if (!cli.soak_report.empty()) {
    std::string md = "# Soak: every scenario over many seeds\n\n";
    md += fmt::format(
        "`{}` ({} worker processes, release build): {} runs, {} failed, {:.0f} simulated s in {:.0f} wall s ({:.0f}x "
        "real time "
        "on all workers together).\n\n",
        command, std::max(1, cli.jobs), seeds_total, failed_total, sim_total, wall_s,
        wall_s > 0 ? sim_total / wall_s : 0.0);
    md +=
        "| scenario | seeds | failed | simulated s | wall s (summed over workers) | speed per worker "
        "|\n|---|---:|---:|---:|---:|---:|\n";
    for (const auto& r : rows)
      md += fmt::format("| {} | {} | {} | {:.0f} | {:.1f} | {:.0f}x |\n", r.scenario, r.seeds, r.failed_seeds,
                        r.simulated_s, r.wall_s, r.wall_s > 0 ? r.simulated_s / r.wall_s : 0.0);
    md += failures.empty() ? "\nNo seed failed.\n" : "\n## Failures\n\n```\n";
    for (const auto& f : failures) md += f;
    if (!failures.empty()) md += "```\n";
    std::ofstream(cli.soak_report) << md;
    std::printf("wrote %s\n", cli.soak_report.c_str());
  }
  return failed_total == 0 ? 0 : 1;
}

// The nodes' logs on stdout, stamped with each node's own (virtual, possibly skewed) clock.
class PrintSink final : public chorus::LogSink {
 public:
  void write(const chorus::LogRecord& r) override {
    // The node's wall clock (skew included), in seconds since 2026-01-01 (virtual time 0).
    std::printf("  %10.3f %-5s [%.*s] %.*s\n", static_cast<double>(r.wall.us - 1'767'225'600'000'000) / 1e6,
                std::string(chorus::to_string(r.level)).c_str(), static_cast<int>(r.node.size()), r.node.data(),
                static_cast<int>(r.message.size()), r.message.data());
  }
};

// One scenario file and the options of one seed (replay, shrink); nullopt after printing why not.
std::optional<std::pair<chorus::sim::Scenario, chorus::sim::RunOptions>> one_seed(const ScenarioCli& cli) {
  chorus::sim::RunOptions o;
  if (!parse_bug(cli.bug, o.bug)) return std::nullopt;
  auto sc = load(cli.file);
  if (!sc) return std::nullopt;
  o.seed = cli.seed;
  return std::make_pair(std::move(*sc), o);
}

int scenario_replay(const ScenarioCli& cli) {
  auto loaded = one_seed(cli);
  if (!loaded) return 2;
  auto& [scenario, o] = *loaded;
  const auto* sc = &scenario;
  o.keep_trace = true;
  PrintSink sink;
  if (cli.logs) o.log = &sink;
  auto r = chorus::sim::run_scenario(*sc, o);
  std::printf("%s, seed %llu: %s; trace %llu records, hash %016llx\n", sc->name.c_str(),
              static_cast<unsigned long long>(cli.seed), r.ok() ? "passed" : "FAILED",
              static_cast<unsigned long long>(r.trace_count), static_cast<unsigned long long>(r.trace_hash));
  std::printf("\nschedule (scenario time):\n%s", chorus::sim::schedule_yaml(r.schedule).c_str());
  if (r.ok()) return 0;
  std::printf("\nviolations:\n");
  print_violations(r, 20);
  std::printf("\nthe trace around the first violation (%.3f s):\n",
              static_cast<double>(r.violations.front().at.count()) / 1e6);
  for (const auto& line : r.trace_window) std::printf("  %s\n", line.c_str());
  return 1;
}

int scenario_shrink(const ScenarioCli& cli) {
  auto loaded = one_seed(cli);
  if (!loaded) return 2;
  auto& [scenario, o] = *loaded;
  const auto* sc = &scenario;
  auto first = chorus::sim::run_scenario(*sc, o);
  if (first.ok()) {
    std::printf("%s, seed %llu passes: nothing to shrink\n", sc->name.c_str(),
                static_cast<unsigned long long>(cli.seed));
    return 0;
  }
  const auto& v = first.violations.front();
  const std::string how = v.kind.empty() ? v.checker : v.checker + ": " + v.kind;
  std::printf("seed %llu fails [%s] with %zu faults in its schedule; shrinking...\n",
              static_cast<unsigned long long>(cli.seed), how.c_str(), first.schedule.size());
  const bool tty = isatty(fileno(stderr));  // progress on a terminal only: no control codes in a log
  auto shrunk = chorus::sim::shrink_schedule(*sc, o, first, [tty](size_t left, int runs) {
    if (tty) std::fprintf(stderr, "\r\033[K  %zu units left (%d runs)", left, runs);
  });
  if (tty) std::fprintf(stderr, "\r\033[K");
  const auto& current = shrunk.schedule;
  std::printf("shrunk from %zu to %zu faults in %d runs; still fails [%s]:\n%s", first.schedule.size(), current.size(),
              shrunk.runs, how.c_str(), chorus::sim::schedule_yaml(current).c_str());
  // The shrunk scenario: the same file without random faults, with this timeline.
  YAML::Node root = YAML::LoadFile(cli.file);
  root.remove("random_faults");
  root.remove("timeline");
  YAML::Emitter e;
  e << root;
  // By default in the working directory, never beside the scenario: a stray file in scenarios/ would be
  // picked up by make sim and the tests as a scenario that always fails.
  const std::string stem = std::filesystem::path(cli.file).stem().string();
  const std::string out = cli.out.empty() ? fmt::format("{}.shrunk-{}.yaml", stem, cli.seed) : cli.out;
  std::ofstream(out) << "# " << sc->name << ", seed " << cli.seed << ", shrunk by chorus-sim shrink\n"
                     << e.c_str() << "\n"
                     << chorus::sim::schedule_yaml(current);
  std::printf("wrote %s; replay: chorus-sim run %s --seed %llu%s\n", out.c_str(), out.c_str(),
              static_cast<unsigned long long>(cli.seed), bug_flag(cli.bug).c_str());
  return 1;
}

}  // namespace

// `chorus-sim list [DIR]`: the scenario files of a folder (default scenarios/) with their descriptions; a
// file that does not parse is listed with its first error. 0 when every file parses, 2 otherwise.
int scenario_list(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".yaml") files.push_back(e.path().string());
  if (ec) {
    std::fprintf(stderr, "chorus-sim: cannot list %s: %s\n", dir.c_str(), ec.message().c_str());
    return 2;
  }
  std::sort(files.begin(), files.end());
  int bad = 0;
  for (const auto& f : files) {
    auto parsed = chorus::sim::parse_scenario_file(f);
    if (!parsed.scenario) {
      ++bad;
      std::printf("%s\n    does not parse: %s\n", f.c_str(), parsed.errors.empty() ? "?" : parsed.errors[0].c_str());
      continue;
    }
    std::string description = parsed.scenario->description;
    while (!description.empty() && (description.back() == '\n' || description.back() == ' ')) description.pop_back();
    std::printf("%s (%d seeds)\n    %s\n", f.c_str(), parsed.scenario->seeds, description.c_str());
  }
  if (files.empty()) std::printf("no scenario files (*.yaml) in %s\n", dir.c_str());
  return bad ? 2 : 0;
}

int main(int argc, char** argv) {
  CLI::App app{"chorus-sim: deterministic simulation of Chorus clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("chorus-sim ") + CHORUS_VERSION);
  app.footer(
      "Exit codes: 0 every seed passed (or the listed files parse); 1 a seed failed; 2 bad usage, a file that does\n"
      "not parse, an unknown --bug or bad --seeds (docs/scenarios.md).");
  const std::vector<std::string> subcommands = {"run", "replay", "shrink", "list", "swarm", "membership"};
  if (argc > 1 && argv[1][0] != '-' &&
      std::find(subcommands.begin(), subcommands.end(), std::string(argv[1])) == subcommands.end()) {
    std::string names;
    for (const auto& n : subcommands) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "chorus-sim: unknown subcommand \"%s\"; expected one of: %s (chorus-sim --help)\n", argv[1],
                 names.c_str());
    return 2;
  }
  auto* run = app.add_subcommand("swarm", "run the ping cluster under random faults for one or more seeds");
  uint64_t seed = 1;
  std::string seeds;
  uint32_t nodes = 5;
  double duration_s = 30;
  double faults_until_s = 20;
  bool determinism = false;
  bool verbose = false;
  run->add_option("--seed", seed, "one seed")->capture_default_str();
  run->add_option("--seeds", seeds, "a range of seeds, A..B (inclusive)");
  run->add_option("--nodes", nodes, "cluster size")->check(CLI::Range(2u, 200u))->capture_default_str();
  run->add_option("--duration", duration_s, "simulated seconds per run")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  run->add_option("--faults-until", faults_until_s,
                  "faults are injected until this simulated second; then all is repaired")
      ->capture_default_str();
  run->add_flag("--check-determinism", determinism, "run every seed twice and compare the traces");
  run->add_flag("--verbose,-v", verbose, "print the fault schedule and final connectivity of every seed");
  auto* mem =
      app.add_subcommand("membership", "measure failure detection and election times, and the protocol's message rate");
  std::vector<int> sizes = {3, 5, 9, 25};
  std::string mem_seeds = "1..50";
  std::string report;
  mem->add_option("--nodes", sizes, "cluster sizes")->delimiter(',')->capture_default_str();
  mem->add_option("--seeds", mem_seeds, "seeds, A..B")->capture_default_str();
  mem->add_option("--report", report, "also write the Markdown table to this file");
  ScenarioCli sc_cli;
  auto* srun = app.add_subcommand("run", "run scenario files over seeds, every checker on");
  srun->add_option("files", sc_cli.files, "scenario files (scenarios/*.yaml)")->required()->check(CLI::ExistingFile);
  srun->add_option("--seed", sc_cli.seed, "one seed");
  srun->add_option("--seeds", sc_cli.seeds, "a range of seeds, A..B (default: 1..the scenario's own `seeds`)");
  srun->add_option("--report", sc_cli.report,
                   "write a Markdown page and an SVG timeline per scenario, and an index, to this folder");
  srun->add_flag("--check-determinism", sc_cli.determinism,
                 "run every seed twice and name the first trace record where the runs part");
  srun->add_option("--jobs,-j", sc_cli.jobs, "worker processes: seeds run in parallel (default 1)")
      ->check(CLI::Range(1, 256));
  srun->add_option("--soak-report", sc_cli.soak_report,
                   "write a Markdown summary of the run (seeds, failures, speed) to this file");
  srun->add_option("--bug", sc_cli.bug,
                   "inject a bug to see its checker fail: lose_post, two_leaders, double_job, wrong_status, "
                   "random_stream_ids, failed_assertion");
  auto* replay = app.add_subcommand("replay", "run one seed again and show the trace around its first violation");
  replay->add_option("file", sc_cli.file, "scenario file")->required()->check(CLI::ExistingFile);
  replay->add_option("--seed", sc_cli.seed, "the seed")->required();
  replay->add_option("--bug", sc_cli.bug, "the injected bug, if the failing run had one");
  replay->add_flag("--logs", sc_cli.logs, "print the nodes' logs as they run (node-local times)");
  auto* shrink =
      app.add_subcommand("shrink", "cut a failing run's fault schedule down to the fewest faults that still fail");
  shrink->add_option("file", sc_cli.file, "scenario file")->required()->check(CLI::ExistingFile);
  shrink->add_option("--seed", sc_cli.seed, "the failing seed")->required();
  shrink->add_option("--out", sc_cli.out,
                     "write the shrunk scenario here (default: NAME.shrunk-SEED.yaml in the working directory)");
  shrink->add_option("--bug", sc_cli.bug, "the injected bug, if the failing run had one");
  std::string list_dir = "scenarios";
  auto* list = app.add_subcommand("list", "the scenario files of a folder with their descriptions");
  list->add_option("dir", list_dir, "the folder (default: scenarios)");
  CLI11_PARSE(app, argc, argv);

  if (list->parsed()) return scenario_list(list_dir);
  if (srun->parsed()) return scenario_run(sc_cli);
  if (replay->parsed()) return scenario_replay(sc_cli);
  if (shrink->parsed()) return scenario_shrink(sc_cli);

  if (mem->parsed()) {
    uint64_t a = 0, b = 0;
    if (!parse_seeds(mem_seeds, a, b)) {
      std::fprintf(stderr, "chorus-sim: --seeds expects A..B with A <= B, got \"%s\"\n", mem_seeds.c_str());
      return 2;
    }
    for (int n : sizes)
      if (n < 3 || n > 400) {
        std::fprintf(stderr, "chorus-sim: --nodes values must be from 3 to 400, got %d\n", n);
        return 2;
      }
    return run_membership_report(sizes, a, b, report);
  }

  uint64_t first = seed, last = seed;
  if (!seeds.empty() && !parse_seeds(seeds, first, last)) {
    std::fprintf(stderr, "chorus-sim: --seeds expects A..B with A <= B, got \"%s\"\n", seeds.c_str());
    return 2;
  }
  if (faults_until_s >= duration_s) {
    std::fprintf(stderr,
                 "chorus-sim: --faults-until (%g) must be before --duration (%g): the quiet tail checks healing\n",
                 faults_until_s, duration_s);
    return 2;
  }

  chorus::sim::PingClusterSpec spec;
  spec.nodes = nodes;
  spec.duration = chorus::Duration{static_cast<int64_t>(duration_s * 1e6)};
  spec.swarm.horizon = chorus::Duration{static_cast<int64_t>(faults_until_s * 1e6)};
  spec.keep_trace = determinism;

  const auto wall_start = std::chrono::steady_clock::now();
  uint64_t failures = 0, events = 0, faults = 0;
  std::map<std::string, uint64_t> faults_by_kind;
  std::vector<double> heal_ms;
  std::vector<std::string> failed_lines;
  for (uint64_t s = first; s <= last; ++s) {
    chorus::sim::PingCluster cluster(s, spec);
    const auto heal = cluster.run_measuring_heal();
    if (heal) heal_ms.push_back(static_cast<double>(heal->count()) / 1000.0);
    events += cluster.kernel().events_processed();
    faults += cluster.schedule().faults.size();
    for (const auto& f : cluster.schedule().faults) faults_by_kind[chorus::fault::to_string(f.kind)]++;
    std::string problem;
    if (!cluster.fully_connected())
      problem = "cluster did not heal after the faults stopped:\n" + cluster.describe_connectivity();
    if (problem.empty() && determinism) {
      auto make = [&](uint64_t sd) {
        chorus::sim::PingCluster c(sd, spec);
        c.run();
        return c.take_kernel();
      };
      auto other = make(s);
      if (auto d = chorus::sim::first_divergence(cluster.kernel(), *other))
        problem = fmt::format("nondeterministic: runs part at trace record {}:\n  first:  {}\n  second: {}", d->index,
                              d->first_run, d->second_run);
    }
    if (verbose) {
      std::printf("seed %llu: %zu faults, trace hash %016llx\n%s%s", static_cast<unsigned long long>(s),
                  cluster.schedule().faults.size(), static_cast<unsigned long long>(cluster.kernel().trace_hash()),
                  chorus::fault::to_string(cluster.schedule()).c_str(), cluster.describe_connectivity().c_str());
    }
    if (!problem.empty()) {
      ++failures;
      const std::string replay =
          fmt::format("chorus-sim swarm --seed {} --nodes {} --duration {} --faults-until {}{} -v", s, nodes,
                      duration_s, faults_until_s, determinism ? " --check-determinism" : "");
      failed_lines.push_back(fmt::format("seed {} FAILED: {}\n  replay: {}", s, problem, replay));
      std::printf("%s\n", failed_lines.back().c_str());
    }
    if (!verbose && (s - first + 1) % 50 == 0)
      std::printf("  ... %llu of %llu seeds run, %llu failed\n", static_cast<unsigned long long>(s - first + 1),
                  static_cast<unsigned long long>(last - first + 1), static_cast<unsigned long long>(failures));
  }
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const uint64_t count = last - first + 1;
  const double simulated_s = duration_s * static_cast<double>(count) * (determinism ? 2 : 1);
  std::printf("\nchorus-sim: %llu seeds (%llu..%llu), %u nodes, %.0f simulated s each, %llu faults injected in all\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(last), nodes, duration_s, static_cast<unsigned long long>(faults));
  std::printf("  passed %llu, failed %llu%s\n", static_cast<unsigned long long>(count - failures),
              static_cast<unsigned long long>(failures), determinism ? " (each seed run twice, traces compared)" : "");
  std::string kinds;
  for (const auto& [kind, n] : faults_by_kind) kinds += fmt::format("{}{} {}", kinds.empty() ? "" : ", ", n, kind);
  std::printf("  faults: %s\n", kinds.c_str());
  if (!heal_ms.empty()) {
    std::sort(heal_ms.begin(), heal_ms.end());
    auto pct = [&](double p) {
      return heal_ms[std::min(heal_ms.size() - 1, static_cast<size_t>(p * static_cast<double>(heal_ms.size())))];
    };
    std::printf(
        "  after the last repair every node was connected to every other again within: p50 %.0f ms, p99 %.0f ms, max "
        "%.0f ms\n",
        pct(0.5), pct(0.99), heal_ms.back());
  }
  std::printf("  %llu events in %.2f s wall: %.0fx real time\n", static_cast<unsigned long long>(events), wall_s,
              wall_s > 0 ? simulated_s / wall_s : 0.0);
  return failures == 0 ? 0 : 1;
}
