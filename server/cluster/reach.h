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
//   - is alive all the same: its Beat has moved on by at least `beats_alive` since X lost Y and is still
//     moving (it moved within the last `stale_polls` evaluations): a crashed or paused node stops
//     beating, so a death is never taken for a partition; and
//   - reaches a larger group than X does (more nodes, or as many with a lower lowest address), and that
//     group leaves X out (a Reach that names X was written before Y lost X, or the cut is one-way: it
//     proves nothing about a partition).
//   - and Y's group has at least two nodes, or the cluster has only two: when gossip fails everywhere (a
//     firewall on the gossip port, a key mismatch) every group is a single node, and cutting all but one
//     off would leave one node carrying every client; then nobody is cut off.
// The group with the largest (size, lowest address) key is never cut off, so a split into fully
// connected groups leaves one side serving; of two halves, the half with the lowest address serves.
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
  std::string id;  // the ClusterDiscovery row: a restart is a new row whose Beat starts again
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
  explicit ReachRule(int64_t beats_alive = 2, int stale_polls = 3)
      : beats_alive_(beats_alive), stale_polls_(stale_polls) {}

  // `group`: this node and the members its membership holds alive. `rows`: the other nodes' fresh rows.
  ReachVerdict evaluate(const std::string& self, const std::set<std::string>& group,
                        const std::vector<Heartbeat>& rows);

  bool cut_off() const { return cut_off_; }

 private:
  int64_t beats_alive_;
  int stale_polls_;
  std::map<std::string, int64_t> beat_when_lost_;  // rows of nodes held dead: their Beat when we first saw them so
  struct Seen {
    int64_t beat = 0;
    int unchanged = 0;  // evaluations since the Beat last moved
  };
  std::map<std::string, Seen> seen_;          // every row's Beat: a row that stops beating proves nothing
  std::map<std::string, bool> seen_cut_off_;  // their CutOff as last read
  bool cut_off_ = false;
};

// Orders groups: the larger wins, then the one with the lower lowest address.
bool reaches_more(const std::set<std::string>& a, const std::set<std::string>& b);

}  // namespace chorus::cluster
