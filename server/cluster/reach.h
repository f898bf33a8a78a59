// Which side of a lasting partition serves: the rule that keeps a node cut off from its peers (but not
// from the load balancer or the database) from serving clients who would then silently miss every post
// made on the other side.
//
// Every node writes, with each discovery poll, a heartbeat to its ClusterDiscovery row: Beat (a counter),
// Reach (the nodes its membership holds alive: its connected group, itself included) and CutOff (whether
// it has stopped serving). The database is the one channel both sides of a gossip partition still share.
//
// The rule, evaluated by each node X on every poll: X is cut off when some node Y that X's membership
// holds dead
//   - is alive all the same: its Beat has moved on by at least `beats_alive` since X lost Y (a crashed
//     node stops beating; a paused one too; so a death is never taken for a partition), and
//   - reaches a larger group than X does (more nodes, or as many with a lower lowest address), and that
//     group leaves X out (a Reach that names X was written before Y lost X, or the cut is one-way: it
//     proves nothing about a partition).
// The group with the largest (size, lowest address) key is never cut off, so a split of any shape leaves
// one side serving; in a split into halves the half with the lowest address serves.
//
// A cut-off node answers /system/ping as unhealthy (the load balancer's health check takes it out),
// refuses requests and WebSocket upgrades with 503, and closes its WebSockets so its clients reconnect to
// a node that serves. When Y is seen to stop serving (its CutOff turns 1), every node that holds Y dead
// resets its WebSockets once: their clients re-sync, and so get what Y acknowledged before it stopped.
// When the partition heals, Y rejoins X's group and X serves again at once.
//
// Pure logic (no I/O): the node feeds it its membership view and the rows it read.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace chorus::cluster {

// One other node's heartbeat, as read from ClusterDiscovery.
struct Heartbeat {
  std::string address;
  int64_t beat = 0;
  std::set<std::string> reach;  // its connected group, itself included (empty: an older node that does not say)
  bool cut_off = false;
};

struct ReachVerdict {
  bool cut_off = false;
  std::string reason;                        // why, for the log and the ping (empty when serving)
  std::vector<std::string> stopped_serving;  // nodes we hold dead that have just reported CutOff
};

class ReachRule {
 public:
  explicit ReachRule(int64_t beats_alive = 2) : beats_alive_(beats_alive) {}

  // `group`: this node and the members its membership holds alive. `rows`: the other nodes' fresh rows.
  ReachVerdict evaluate(const std::string& self, const std::set<std::string>& group, const std::vector<Heartbeat>& rows);

  bool cut_off() const { return cut_off_; }

 private:
  int64_t beats_alive_;
  std::map<std::string, int64_t> beat_when_lost_;  // nodes held dead: their Beat when we first saw them so
  std::map<std::string, bool> seen_cut_off_;       // their CutOff as last read
  bool cut_off_ = false;
};

// Orders groups: the larger wins, then the one with the lower lowest address.
bool reaches_more(const std::set<std::string>& a, const std::set<std::string>& b);

}  // namespace chorus::cluster
