// What one scenario run looked like, and the pages made from it: a Markdown summary and an SVG timeline
// per scenario run, and an index of a whole run of scenarios. Pure functions of the record: no
// simulator headers, so the renderer builds and is tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace chorus::sim {

struct RunRecord {
  std::string scenario;     // the scenario's name
  std::string description;  // one paragraph, from the scenario file
  std::string file;         // the scenario file, as given
  uint64_t seed = 0;
  double duration_s = 0;           // simulated seconds
  double wall_s = 0;               // wall seconds the run took
  double setup_wall_s = 0;         // of which: the setup before time 0 (users with bcrypt, team, channels, logins)
  std::vector<std::string> nodes;  // a name per node lane ("n0 10.0.0.1:8074")

  // The cluster sampled at regular times. state: 'u' up, 'd' down, 'p' paused, '-' not (yet) part of
  // the cluster. colour: how the other live nodes see it: 'g' green, 'r' red, '?' nobody live to say.
  // leader: the node most live nodes name as leader (-1: none).
  struct Sample {
    double t = 0;
    std::string state;
    std::string colour;
    int leader = -1;
  };
  std::vector<Sample> samples;

  // Operations and faults of the timeline (explicit and random), as applied.
  struct Mark {
    double t = 0;
    std::string text;        // "kill n1", "partition [n0] | [n1 n2]", ...
    std::vector<int> nodes;  // the lanes it touches (empty: the whole cluster)
  };
  std::vector<Mark> marks;

  // Client requests per time bucket, as the clients saw them.
  struct Bucket {
    double t = 0;  // bucket start
    int ok = 0;
    int failed = 0;
  };
  double bucket_s = 1;
  std::vector<Bucket> availability;

  std::vector<std::pair<std::string, std::string>> metrics;  // name, value (already formatted)

  struct Check {
    std::string name;  // "no acknowledged post lost", "expect: detect n1 within 3s", ...
    bool passed = true;
    std::string detail;  // the measured figure, or the first violation
  };
  std::vector<Check> checks;
  bool passed() const {
    for (const auto& c : checks)
      if (!c.passed) return false;
    return true;
  }
};

// A self-contained SVG: a lane per node (up / down / paused / not in the cluster, leader band, red or
// green band), the marks as vertical lines with their text, and a client availability lane (share of
// requests that failed per bucket), with a time axis in seconds.
std::string render_svg(const RunRecord& run);

// The Markdown summary: what the scenario is, seed and the command that replays it, checks (pass or
// fail with details), metrics, the timeline of marks, and the SVG (by file name, relative).
std::string render_markdown(const RunRecord& run, const std::string& svg_file_name);

// One row per scenario of a whole run (over its seeds).
struct IndexRow {
  std::string scenario;
  std::string description;
  std::string page;  // the Markdown page of its representative run, relative to the index
  int seeds = 0;
  int failed_seeds = 0;
  std::vector<uint64_t> failing;  // seeds that failed
  double simulated_s = 0;         // over all seeds
  double wall_s = 0;
  double setup_wall_s = 0;  // of which: setup before each run's time 0
};
// The index page: a table of scenarios (pass/fail, seeds, speed), and how to reproduce the run.
std::string render_index(const std::vector<IndexRow>& rows, const std::string& command);

}  // namespace chorus::sim
