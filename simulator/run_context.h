// What the pieces of one scenario run share (scenario_run.cpp builds one per run and hands it to each):
// the scenario and options, the cluster and its kernel, the result the violations go to, the world the
// workload set up (team, channels, members), the acknowledged posts, and the truth about each node (when
// it last started, which config it loaded). Also the helpers they all use: node control and violations.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "simulator/chat_cluster.h"
#include "simulator/scenario.h"

namespace chorus::sim {

constexpr Duration kTick{100'000};  // clients read their sockets; the checkers sample

inline double secs(Duration d) { return static_cast<double>(d.count()) / 1e6; }
inline std::string fmt_s(Duration d) { return fmt::format("{:.2f}s", secs(d)); }
// A string field of a JSON object ("" when the body is not one or has no such string).
std::string json_field(const std::string& body, const char* key);

// A post its author got a 201 for: the durability and delivery checks look for each one at the end.
struct Acked {
  std::string id;
  int channel = 0, author = 0;
  int64_t k = 0;  // the author's k-th post
  Duration at{0};
  std::string root;  // a reply: its thread's root
  std::string file_id, file_data;  // a post with a file: the file and what was uploaded
};

// A change to a post (edit, delete, reaction added or removed) its client got a 200 for. update_at: the
// post's update_at in the master when the answer came (this change's or a later one's): every member's
// client must end up knowing the post at least that new (by event or re-sync).
struct ChangeAcked {
  std::string post_id, what;
  int channel = 0, client = 0;
  int64_t update_at = 0;
  Duration at{0};
};

struct RunContext {
  RunContext(const Scenario& scenario, const RunOptions& options, ChatCluster& cluster, RunResult& run_result);

  const Scenario& sc;
  const RunOptions& o;
  ChatCluster& c;
  Kernel& k;
  RunResult& result;
  Duration t0{0};                 // the scenario's time 0: setup is done
  std::vector<uint32_t> initial;  // the nodes started at time 0

  // The world the workload runs in (Workload::setup, before time 0).
  std::string admin, team;  // the admin's token, the team's id
  std::vector<std::string> channel_ids;
  std::unordered_map<std::string, int> channel_index;  // channel id -> index
  std::vector<std::vector<int>> members;               // channel index -> its members (client indices)
  std::vector<Acked> acked;                            // in acknowledgement order
  std::unordered_map<std::string, Duration> ack_time;  // post id -> when its author got the 201
  std::vector<ChangeAcked> changes_acked;               // in acknowledgement order
  std::map<int, Duration> preferences_acked_at;        // client -> when its last preference save was acknowledged
  std::unordered_map<std::string, int> origin;         // post message -> the node that handled its request

  // The truth about the nodes, which the checkers hold the nodes' views against.
  std::vector<Duration> start_time;      // of each node's last start (-1: never started)
  std::vector<std::string> loaded_hash;  // of the config.json each node last (re)started or reloaded with
  std::string master = "db1";            // the master the nodes were last (re)started or reloaded with

  // Violations are kept in time order (at: where it is placed; default now), at most 200.
  void violation(const std::string& checker, const std::string& what, std::optional<Duration> at = std::nullopt,
                 std::string kind = {});
  int64_t wall_ms() const;  // the simulated wall clock (the nodes' clocks may be skewed from it)
  bool live(int n) const;   // started and serving, not paused or down
  // What viewer's cluster status shows for peer: green or red; nullopt when it does not list it.
  std::optional<bool> shown_green(int viewer, int peer) const;

  // Node control, for setup and the fault injector.
  void boot(int n);  // starts node n (its config.json is the truth from now)
  // Node n has just (re)started or reloaded from its config.json: the truth's hash, and the master the
  // checkers read.
  void loaded(int n);
  void set_setting(int n, const std::string& key, const std::string& value_json);  // in n's config.json
  void on_node(int n, std::function<void(node::Node&)> fn);  // runs fn on node n's current incarnation
};

}  // namespace chorus::sim
