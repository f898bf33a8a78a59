// A fault schedule as data: what goes wrong, when, and to which nodes.
//
// The same schedule drives the simulator (simulator/faults.h applies it to a Kernel) and, later, the
// injector for real processes (signals, network namespaces). Keeping it data makes a failing run's
// faults printable, replayable and shrinkable. random_schedule() draws one for a seed in the spirit of
// swarm testing: each seed enables a random subset of fault families at random rates, then ends with
// every fault repaired and a quiet period, so safety is checked throughout and liveness at the end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "server/core/random.h"
#include "server/core/time.h"

namespace chorus::fault {

enum class FaultKind {
  crash,        // nodes[0] loses its memory
  restart,      // nodes[0] boots again
  pause,        // nodes[0] freezes (SIGSTOP)
  resume,       // nodes[0] continues (SIGCONT)
  partition,    // nodes are cut from the rest, both ways
  isolate,      // nodes[0] is cut from peers, both ways
  block,        // one-way: nodes[0] -> peers[0] is cut
  heal,         // every cut is repaired
  loss,         // every link loses `value` of its frames (0 repairs)
  clock_skew,   // nodes[0]'s wall clock is off by `amount`
  clock_drift,  // nodes[0]'s clocks run `value` ppm fast (negative: slow)
  // Operations of the HA guide's procedures (the simulator's scenario runner applies these; the real
  // injector will map them to systemctl, file edits and the admin API):
  stop,          // nodes[0] shuts down cleanly (SIGTERM)
  start,         // nodes[0] starts (a new server, or one that was stopped); `text`: its version, if it changes
  set_config,    // nodes' config.json: `text` is "Section.Setting=JSON value"; not loaded until reload or restart
  reload,        // nodes[0] reloads its config.json from disk
  recycle,       // nodes[0] recycles its database connections
  db_stop,       // database server `text` stops
  db_start,      // database server `text` starts
  db_lag,        // replica `text` applies its primary's writes `amount` late
  db_slow,       // database server `text` serves `value` times slower
  db_promote,    // replica `text` becomes a primary
  lb_only,       // the load balancer sends new requests only to `nodes` (empty: to every node again)
  lb_stop,       // the load balancer stops: every client request fails
  lb_start,      // the load balancer starts again
  drop_clients,  // every client WebSocket on nodes[0] drops (the clients' network blips; the node is fine)
  files_down,    // the shared file store (NAS or S3) fails every call
  files_up,      // the shared file store answers again
  files_slow,    // the shared file store takes `amount` longer per call (0 repairs)
};
const char* to_string(FaultKind kind);

struct Fault {
  Duration at{0};
  FaultKind kind = FaultKind::heal;
  std::vector<uint32_t> nodes;
  std::vector<uint32_t> peers;
  double value = 0;
  Duration amount{0};
  std::string text;  // a version, a database server, or a config setting
};
std::string to_string(const Fault& fault);

struct FaultSchedule {
  std::vector<Fault> faults;  // sorted by time
  Duration repaired_at{0};    // from here on every fault is repaired
};
std::string to_string(const FaultSchedule& schedule);

struct SwarmOptions {
  Duration horizon{20'000'000};  // faults are injected in [0, horizon); all repaired at horizon
  double mean_faults_per_second = 0.5;
  bool allow_crash = true;
  bool allow_pause = true;
  bool allow_partition = true;
  bool allow_loss = true;
  bool allow_clock = true;
};

// True for the kinds that only the simulator's kernel needs (crash ... clock_drift).
bool is_network_or_process_fault(FaultKind kind);

// Problems with a schedule for `node_count` nodes: node numbers out of range, faults out of time order,
// a fault missing the nodes or peers it needs, values out of range. Empty when it can be applied.
std::vector<std::string> check_schedule(const FaultSchedule& schedule, uint32_t node_count);

// A random schedule for `node_count` nodes: each seed enables each allowed family with probability 1/2
// (at least one), weights them at random, and places faults as a Poisson process. Every crash is
// followed by a restart and every pause by a resume; partitions and loss are healed; skew stays.
FaultSchedule random_schedule(Random& random, uint32_t node_count, const SwarmOptions& options);

}  // namespace chorus::fault
