// Scenario files (simulator/scenario_parse.cpp: parse_scenario_text): YAML as docs/scenarios.md describes
// it. The parser promises to refuse anything it does not understand with file:line:column, so besides
// the sanitizers: no exception may leave it (libFuzzer reports one as a crash), a refusal always says
// why, and a parsed scenario's timeline lies within the scenario and prints (schedule_yaml, shrink's output).
//
// Input: the file's text. Seeds: scenarios/*.yaml (fuzz/run.sh seeds copies them) and the ones below.
#include "fuzz_input.h"
#include "simulator/scenario.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

void write_seeds(SeedWriter& w) {
  w.add("minimal", "name: minimal\nduration: 10s\n");
  w.add("timeline", R"(name: timeline
description: every kind of timeline entry
duration: 60s
seeds: 2
topology:
  nodes: 4
  initial: [0, 1, 2]
  replicas: 1
  versions: {3: 0.2.0}
  config: {ClusterSettings.ReadOnlyConfig: false}
workload: {users: 6, channels: 2, members: 3, post_rate: 2, typing_rate: 1}
timeline:
  - {at: 5s, kill: 1}
  - {at: 8s, restart: 1}
  - {at: 10s, partition: [0]}
  - {at: 12s, heal: true}
  - {at: 13s, isolate: {node: 2, from: [0, 1]}}
  - {at: 14s, cut: {from: 0, to: 1}}
  - {at: 15s, heal: true}
  - {at: 16s, pause: 2}
  - {at: 17s, resume: 2}
  - {at: 18s, loss: 0.1}
  - {at: 19s, loss: 0}
  - {at: 20s, skew: {node: 1, by: 300ms}}
  - {at: 21s, drift: {node: 1, ppm: 50}}
  - {at: 22s, start: {node: 3, version: 0.2.0}}
  - {at: 23s, set_config: {nodes: [0, 1], setting: SqlSettings.MaxOpenConns, value: 50}}
  - {at: 24s, reload: [0, 1]}
  - {at: 25s, recycle: [0]}
  - {at: 26s, db_stop: db1}
  - {at: 27s, db_start: db1}
  - {at: 28s, db_lag: {db: replica1, lag: 2s}}
  - {at: 29s, db_slow: {db: db1, factor: 3}}
  - {at: 30s, lb_only: [0, 1]}
  - {at: 31s, lb_all: true}
  - {at: 32s, drop_clients: 0}
  - {at: 33s, stop: 3}
expect:
  - {detect: {node: 1, within: 3s}}
  - {leader: {at: 40s, node: 0}}
  - {max_failed: 0.05}
)");
  w.add("random-faults", R"(name: random
duration: 120s
random: {from: 10s, until: 100s, per_second: 0.5, nodes: [0, 1, 2]}
)");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_scenario", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = sim::parse_scenario_text(text, "fuzz.yaml");
  if (!parsed.scenario) {
    if (parsed.errors.empty()) property_failed("refused without saying why");
    return 0;
  }
  const auto& s = *parsed.scenario;
  // Entries are in the file's order (an `upgrade` adds its start boot_time later: the injector sorts), and
  // all within the scenario.
  for (const auto& f : s.timeline)
    if (f.at < Duration{0} || f.at > s.duration) property_failed("a timeline entry outside the scenario");
  (void)sim::schedule_yaml(s.timeline);
  for (const auto& f : s.timeline) (void)fault::to_string(f);
  return 0;
}
