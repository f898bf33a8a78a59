// Scenarios: every file in scenarios/ over its seeds with every checker on; each checker shown to catch
// the bug it guards (injected); bad scenario files refused with file:line:column and what was expected;
// runs that replay exactly; shrinking; the shrunk timeline written back as YAML that parses to the same.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "simulator/forked_pool.h"
#include "simulator/scenario.h"

using namespace chorus;
using namespace chorus::sim;

namespace {

std::string scenarios_dir() { return std::string(CHORUS_SOURCE_DIR) + "/scenarios"; }

std::vector<std::string> scenario_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(scenarios_dir()))
    if (e.path().extension() == ".yaml") out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

Scenario load(const std::string& file) {
  auto p = parse_scenario_file(scenarios_dir() + "/" + file);
  EXPECT_TRUE(p.errors.empty()) << fmt::format("{}", fmt::join(p.errors, "\n"));
  return p.scenario ? *p.scenario : Scenario{};
}

std::string describe(const RunResult& r) {
  std::string s;
  for (const auto& v : r.violations)
    s += fmt::format("  {:.3f}s [{}] {}\n", static_cast<double>(v.at.count()) / 1e6, v.checker, v.what);
  return s;
}

bool tripped(const RunResult& r, const std::string& checker) {
  return std::any_of(r.violations.begin(), r.violations.end(),
                     [&](const Violation& v) { return v.checker == checker; });
}

// A short scenario for the checker and shrink tests: a kill and a restart under a steady workload.
Scenario small(const std::string& extra = "") {
  const std::string text = R"(name: small
duration: 30s
topology: {nodes: 3}
workload: {users: 6, channels: 2, members: 4, post_rate: 3, job_period: 3s}
timeline:
  - {at: 6s, kill: 2}
  - {at: 14s, restart: 2}
)" + extra;
  auto p = parse_scenario_text(text, "small.yaml");
  EXPECT_TRUE(p.errors.empty()) << fmt::format("{}", fmt::join(p.errors, "\n"));
  return *p.scenario;
}

}  // namespace

// ---- every scenario file, over its seeds (make test: the `seeds` each file names)

class ScenarioFile : public testing::TestWithParam<std::string> {};

TEST_P(ScenarioFile, PassesOverItsSeedsWithEveryCheckerOn) {
  const Scenario sc = load(GetParam());
  ASSERT_FALSE(sc.name.empty());
  int known = 0;
  std::vector<uint64_t> seeds;
  for (uint64_t seed = 1; seed <= static_cast<uint64_t>(sc.seeds); ++seed) seeds.push_back(seed);
  seeds.insert(seeds.end(), sc.regression_seeds.begin(), sc.regression_seeds.end());
  for (uint64_t seed : seeds) {
    RunOptions o;
    o.seed = seed;
    const auto r = run_scenario(sc, o);
    EXPECT_TRUE(r.ok()) << sc.name << " seed " << seed << " failed:\n"
                        << describe(r) << "replay: chorus-sim run scenarios/" << GetParam() << " --seed " << seed;
    known += !r.known.empty();
    // Nothing to check is not a pass: the run served clients, and every check has a row.
    EXPECT_GT(r.record.availability.size(), 0u) << sc.name;
    // Every always-on checker has its row, by name (a checker dropped from the run cannot pass unseen).
    std::set<std::string> rows;
    for (const auto& c : r.record.checks) rows.insert(c.name);
    for (const char* name : kCheckers) EXPECT_TRUE(rows.count(name)) << sc.name << ": no row for \"" << name << "\"";
  }
  // A known bug must still show; when it stops showing, the scenario file is told so (remove known_bugs).
  if (!sc.known_bugs.empty()) {
    EXPECT_GT(known, 0) << sc.name << ": its known bug no longer reproduces";
  }
}

// A test name from any file name: letters and digits kept, the rest '_', and the file's place appended
// where two files would get one name. A stray file (a shrunk copy, a typo) is one failing case; a name
// gtest refuses would abort the whole binary.
std::string scenario_test_name(const std::vector<std::string>& files, size_t index) {
  auto clean = [](const std::string& file) {
    std::string name = file.substr(0, file.rfind('.'));
    for (char& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    return name.empty() ? std::string("_") : name;
  };
  const std::string name = clean(files[index]);
  for (size_t i = 0; i < files.size(); ++i)
    if (i != index && clean(files[i]) == name) return name + "_" + std::to_string(index);
  return name;
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioFile, testing::ValuesIn(scenario_files()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return scenario_test_name(scenario_files(), info.index);
                         });

TEST(ScenarioFiles, AnyFileNameMakesAUniqueValidTestName) {
  const std::vector<std::string> files{"random-faults.yaml", "random-faults.shrunk-3077.yaml", "random_faults.yaml",
                                       "été.yaml", ".yaml"};
  std::set<std::string> names;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string n = scenario_test_name(files, i);
    EXPECT_TRUE(std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    })) << n;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), files.size());
}

// ---- each checker catches the bug it guards

TEST(ScenarioCheckers, EachInjectedBugTripsItsCheckerAndOnlyARunWithoutItPasses) {
  const Scenario sc = small();
  RunOptions o;
  o.seed = 7;
  const auto clean = run_scenario(sc, o);
  ASSERT_TRUE(clean.ok()) << describe(clean);
  const std::pair<Bug, const char*> cases[] = {
      {Bug::lose_post, "no acknowledged post lost"},
      {Bug::two_leaders, "one leader per connected group"},
      {Bug::double_job, "recurring jobs run once per period"},
      {Bug::wrong_status, "cluster status matches the truth"},
      {Bug::failed_assertion, "no node crashes"},
      {Bug::no_acks, "queues stay bounded"},
      {Bug::duplicate_event, "events in order, never twice"},
      {Bug::unfenced_jobs, "recurring jobs run once per period"},
  };
  // Every always-on checker has a bug of its own here (two for the jobs: a double schedule, a broken fence).
  std::set<std::string> covered;
  for (const auto& [bug, checker] : cases) covered.insert(checker);
  EXPECT_EQ(covered, std::set<std::string>(kCheckers.begin(), kCheckers.end()));
  for (const auto& [bug, checker] : cases) {
    SCOPED_TRACE(checker);
    RunOptions b = o;
    b.bug = bug;
    const auto r = run_scenario(sc, b);
    EXPECT_TRUE(tripped(r, checker)) << "the checker missed its bug; the run's violations:\n" << describe(r);
    // The report says so too.
    bool row_failed = false;
    for (const auto& c : r.record.checks) row_failed = row_failed || (c.name == checker && !c.passed);
    EXPECT_TRUE(row_failed);
    EXPECT_FALSE(r.record.passed());
  }
}

TEST(ScenarioCheckers, AFailedAssertionIsAViolationOfTheSeedThatShrinksAndReplays) {
  // server/core/assert.h: where chorusd would abort, the simulator fails the seed with file:line.
  Scenario sc = small();
  RunOptions o;
  o.seed = 4;
  o.bug = Bug::failed_assertion;
  const auto r = run_scenario(sc, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.violations.front().checker, "no node crashes");
  EXPECT_EQ(r.violations.front().kind, "assertion");
  EXPECT_NE(r.violations.front().what.find("assertion failed: 1 + 1 == 3 (injected by --bug failed_assertion)"),
            std::string::npos)
      << r.violations.front().what;
  EXPECT_EQ(run_scenario(sc, o).trace_hash, r.trace_hash) << "replays exactly";
  const auto shrunk = shrink_schedule(sc, o, r);
  EXPECT_EQ(shrunk.kind, "assertion");
  EXPECT_LE(shrunk.schedule.size(), 1u) << "the kill at 6 s is not needed; the restart is the repair phase";
}

TEST(ScenarioCheckers, ExpectationsFailWhenTheirBoundsAreNotMet) {
  // n2 is killed at 6 s: an expectation that it is leader, or that the run has no failed request at all
  // within an impossible gap, must fail - with the expectation's line in the report.
  const Scenario sc = small(R"(expect:
  - leader: {at: 10s, is: 2}
  - detect: {node: 2, within: 0.001s}
  - status: {at: 10s, node: 2, colour: green}
)");
  RunOptions o;
  o.seed = 3;
  const auto r = run_scenario(sc, o);
  int expectations = 0;
  for (const auto& v : r.violations) expectations += v.checker.rfind("expect (line ", 0) == 0;
  EXPECT_EQ(expectations, 3) << describe(r);
}

TEST(ScenarioCheckers, AKnownBugIsReportedAsKnownNotAsAFailure) {
  const Scenario sc = small("known_bugs:\n  - {checker: no acknowledged post lost, bug: the injected lose_post}\n");
  RunOptions o;
  o.seed = 7;
  o.bug = Bug::lose_post;
  const auto r = run_scenario(sc, o);
  EXPECT_TRUE(r.ok()) << describe(r);
  ASSERT_FALSE(r.known.empty());
  EXPECT_EQ(r.known.front().checker, "no acknowledged post lost");
}

// ---- determinism, replay, shrink

TEST(ScenarioReplay, ASeedReplaysEventForEventAndAnotherSeedDiffers) {
  const Scenario sc = small();
  RunOptions o;
  o.seed = 11;
  const auto a = run_scenario(sc, o);
  const auto b = run_scenario(sc, o);
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.trace_count, b.trace_count);
  EXPECT_EQ(a.record.metrics, b.record.metrics);
  o.seed = 12;
  EXPECT_NE(run_scenario(sc, o).trace_hash, a.trace_hash);
  // With the trace kept, a failing run shows the records around its first violation.
  o.seed = 11;
  o.bug = Bug::two_leaders;
  o.keep_trace = true;
  const auto t = run_scenario(sc, o);
  ASSERT_FALSE(t.ok());
  EXPECT_FALSE(t.trace_window.empty());
  EXPECT_EQ(t.trace_hashes.size(), t.trace_count);
}

TEST(ScenarioShrink, CutsTheScheduleToTheFaultsTheFailureNeeds) {
  // The lost post does not depend on any fault: every fault of a random schedule shrinks away.
  Scenario sc = small(
      "random_faults: {from: 2s, until: 18s, per_second: 0.5, families: [crash, pause, partition, loss, clock]}\n");
  RunOptions o;
  o.seed = 5;
  o.bug = Bug::lose_post;
  const auto failed = run_scenario(sc, o);
  ASSERT_FALSE(failed.ok());
  ASSERT_GT(failed.schedule.size(), 4u);
  const auto shrunk = shrink_schedule(sc, o, failed);
  EXPECT_EQ(shrunk.checker, "no acknowledged post lost");
  // Every fault shrinks away but the repair phase (the schedule's last instant), which is always kept.
  ASSERT_FALSE(shrunk.schedule.empty());
  for (const auto& f : shrunk.schedule) EXPECT_EQ(f.at, failed.schedule.back().at) << schedule_yaml(shrunk.schedule);
  // The shrunk schedule, written as a scenario file and read back, fails the same way (checker and kind).
  const auto replayed = run_scenario(
      *parse_scenario_text("name: shrunk\nduration: 30s\ntopology: {nodes: 3}\n"
                           "workload: {users: 6, channels: 2, members: 4, post_rate: 3, job_period: 3s}\n" +
                               schedule_yaml(shrunk.schedule),
                           "shrunk.yaml")
           .scenario,
      o);
  ASSERT_FALSE(replayed.ok());
  EXPECT_TRUE(std::any_of(replayed.violations.begin(), replayed.violations.end(), [&](const Violation& v) {
    return same_failure(v, failed.violations.front());
  })) << describe(replayed);
  // And a failure that needs a fault keeps it with its repair: n2 shown green at 10 s fails only if n2
  // is killed at 6 s; its restart at 14 s is the schedule's repair phase.
  Scenario needs = small("expect:\n  - status: {at: 10s, node: 2, colour: green}\n");
  RunOptions n;
  n.seed = 5;
  const auto f2 = run_scenario(needs, n);
  ASSERT_FALSE(f2.ok());
  const auto s2 = shrink_schedule(needs, n, f2);
  ASSERT_EQ(s2.schedule.size(), 2u) << schedule_yaml(s2.schedule);
  EXPECT_EQ(s2.schedule.front().kind, fault::FaultKind::crash);
  EXPECT_EQ(s2.schedule.back().kind, fault::FaultKind::restart);
}

TEST(ScenarioShrink, AFaultGoesWithItsRepairAndOnlyTheSameKindOfFailureCounts) {
  // A crash of n1 at 8 s and its restart at 12 s are one unit; a pause of n0 and its resume another;
  // the heal at 20 s (the last instant) is the repair phase. Each unit is removed whole or not at all.
  Scenario sc = small("");
  RunOptions o;
  o.seed = 3;
  o.schedule = std::vector<fault::Fault>{
      {Duration{8'000'000}, fault::FaultKind::crash, {1}, {}, 0, Duration{0}, ""},
      {Duration{9'000'000}, fault::FaultKind::pause, {0}, {}, 0, Duration{0}, ""},
      {Duration{10'000'000}, fault::FaultKind::partition, {2}, {}, 0, Duration{0}, ""},
      {Duration{11'000'000}, fault::FaultKind::resume, {0}, {}, 0, Duration{0}, ""},
      {Duration{12'000'000}, fault::FaultKind::restart, {1}, {}, 0, Duration{0}, ""},
      {Duration{20'000'000}, fault::FaultKind::heal, {}, {}, 0, Duration{0}, ""},
  };
  o.bug = Bug::lose_post;
  const auto failed = run_scenario(sc, o);
  ASSERT_FALSE(failed.ok());
  const auto shrunk = shrink_schedule(sc, o, failed);
  ASSERT_EQ(shrunk.schedule.size(), 1u) << schedule_yaml(shrunk.schedule);
  EXPECT_EQ(shrunk.schedule.front().kind, fault::FaultKind::heal);
  // The kind is part of the failure: the same checker failing another way is not the same failure.
  Violation a{Duration{0}, "no acknowledged post lost", "x", "acknowledged after the last repair"};
  Violation b{Duration{0}, "no acknowledged post lost", "y", "acknowledged during faults"};
  EXPECT_FALSE(same_failure(a, b));
  EXPECT_TRUE(same_failure(a, Violation{Duration{1}, a.checker, "z", a.kind}));
}

TEST(ScenarioShrink, TheShrunkTimelineIsYamlThatParsesToTheSameSchedule) {
  Scenario sc =
      small("random_faults: {from: 2s, until: 18s, per_second: 1, families: [crash, pause, partition, loss, clock]}\n");
  RunOptions o;
  o.seed = 9;
  const auto r = run_scenario(sc, o);
  const std::string text = "name: again\nduration: 30s\ntopology: {nodes: 3}\n" + schedule_yaml(r.schedule);
  auto p = parse_scenario_text(text, "again.yaml");
  ASSERT_TRUE(p.errors.empty()) << fmt::format("{}", fmt::join(p.errors, "\n")) << "\n" << text;
  ASSERT_EQ(p.scenario->timeline.size(), r.schedule.size());
  for (size_t i = 0; i < r.schedule.size(); ++i) {
    const auto& a = r.schedule[i];
    const auto& b = p.scenario->timeline[i];
    EXPECT_EQ(fault::to_string(a), fault::to_string(b));
    EXPECT_EQ(a.peers, b.peers);
    EXPECT_DOUBLE_EQ(a.value, b.value);
  }
}

// ---- bad scenario files: file, line, column and what was expected

TEST(ScenarioParse, BadFilesAreRefusedWithFileLineAndWhatWasExpected) {
  struct Case {
    const char* text;
    const char* where;     // "file:line:col" prefix expected
    const char* expected;  // part of the message
  };
  const Case cases[] = {
      {"name: x\ntopolgy: {nodes: 3}\n",
       "bad.yaml:2:1:", "unknown key \"topolgy\" in the scenario; expected one of: name, description"},
      {"name: x\ntimeline:\n  - {at: 5s, kil: 1}\n",
       "bad.yaml:3:14:", "unknown operation \"kil\"; expected one of: kill, restart"},
      {"name: x\ntimeline:\n  - {at: 10s, kill: 1}\n  - {at: 5s, restart: 1}\n",
       "bad.yaml:4:10:", "time 5s is before the previous entry's 10s; the timeline must be in time order"},
      {"name: x\ntopology: {nodes: 3}\ntimeline:\n  - {at: 5s, kill: 7}\n",
       "bad.yaml:4:20:", "node 7 does not exist; the topology has nodes 0 to 2"},
      {"name: x\nduration: 30 seconds\n", "bad.yaml:2:11:", "unknown unit \" seconds\""},
      {"name: x\nrandom_faults: {families: [crash, meteor]}\n",
       "bad.yaml:2:35:", "unknown fault family \"meteor\"; expected one of: crash, pause"},
      {"name: x\nexpect:\n  - {detect: {node: 1, within: 3s}}\n  - {max_gapp: 3s}\n",
       "bad.yaml:4:6:", "unknown expectation \"max_gapp\""},
      {"name: x\ntimeline:\n  - {at: 5s, db_stop: replica3}\n",
       "bad.yaml:3:23:", "database server \"replica3\" does not exist"},
      {"name: x\ntimeline: [ {at: 5s\n", "bad.yaml:", ""},  // YAML syntax
      {"name: x\nworkload: {users: 3, members: 5}\n", "bad.yaml:2:31:", "members (5) cannot exceed users (3)"},
      {"name: x\nexpect:\n  - {status: {at: 5s, colour: blue}}\n", "bad.yaml:3:31:", "colour is red or green"},
      {"topology: {nodes: 3}\n", "bad.yaml:1:1:", "the scenario has no name"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto p = parse_scenario_text(c.text, "bad.yaml");
    ASSERT_FALSE(p.scenario.has_value());
    ASSERT_EQ(p.errors.size(), 1u);
    EXPECT_EQ(p.errors[0].rfind(c.where, 0), 0u) << p.errors[0];
    EXPECT_NE(p.errors[0].find(c.expected), std::string::npos) << p.errors[0];
  }
  auto missing = parse_scenario_file("/nonexistent/scenario.yaml");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0], "/nonexistent/scenario.yaml: cannot read the file");
}

// ---- seeds on several worker processes (chorus-sim run --jobs, make soak)

TEST(ForkedPool, EveryItemComesBackOnceAndAWorkerThatDiesCostsOnlyItsItem) {
  std::map<size_t, std::optional<std::string>> got;
  run_forked(
      40, 3,
      [](size_t i) {
        if (i == 7 || i == 8) std::abort();  // a run that dies (an assertion, a crash); 8 and 7 on two workers
        return "item " + std::to_string(i);
      },
      [&](size_t i, const std::optional<std::string>& r) {
        EXPECT_TRUE(got.emplace(i, r).second) << "item " << i << " twice";
      });
  ASSERT_EQ(got.size(), 40u);
  for (const auto& [i, r] : got) {
    if (i == 7 || i == 8) {
      EXPECT_FALSE(r.has_value()) << i;
    } else {
      EXPECT_EQ(r, "item " + std::to_string(i));
    }
  }
  // One process: everything in order, here.
  std::vector<size_t> order;
  run_forked(
      5, 1, [](size_t i) { return std::to_string(i); },
      [&](size_t i, const std::optional<std::string>&) { order.push_back(i); });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}
