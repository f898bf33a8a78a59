// Discovery through the ClusterDiscovery table, as Mattermost does it.
//
// At start a node deletes stale rows of its cluster, deletes any row with its own identity (a previous
// run that died), and inserts its row: Id, Type "mattermost_app", ClusterName, Hostname, GossipPort,
// CreateAt, LastPingAt. It refreshes LastPingAt every refresh interval and reads the rows of its own
// Type and ClusterName every poll interval; a row whose LastPingAt is older than stale_after is ignored
// (and deleted at the next start of any node). A clean stop deletes the row. Nodes of another
// ClusterName never see each other. All queries go to the master.
//
// With each poll a node also writes its heartbeat (Beat + 1, Reach, CutOff: see reach.h) and hands every
// fresh row's heartbeat to on_heartbeats, so the node can tell a dead peer from one cut off by a partition.
//
// One difference from Mattermost: a row is identified by (Type, ClusterName, Hostname, GossipPort), not
// (Type, ClusterName, Hostname), so several nodes may share a host (one machine, tests, containers).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/cluster/reach.h"
#include "server/core/env.h"
#include "server/store/store.h"

namespace chorus::cluster {

struct DiscoveredNode {
  std::string id;
  std::string hostname;
  int64_t gossip_port = 0;
  int64_t create_at_ms = 0;
  int64_t last_ping_at_ms = 0;
  std::string address() const { return hostname + ":" + std::to_string(gossip_port); }
};

struct DiscoveryOptions {
  std::string cluster_name;
  std::string hostname;  // OverrideHostname / first IPv4 / OS hostname, resolved by the runtime
  int64_t gossip_port = 8074;
  Duration refresh{10'000'000};         // LastPingAt (Mattermost: 60 s)
  Duration poll{2'000'000};             // how often peers are read: how soon a new server is found
  Duration stale_after{1'800'000'000};  // 30 min, as Mattermost
};

inline constexpr const char* kDiscoveryType = "mattermost_app";

class Discovery {
 public:
  // on_peers is called on the loop with the live peers (not this node) whenever the set changes.
  Discovery(Env& env, store::Store& store, DiscoveryOptions options,
            std::function<void(const std::vector<DiscoveredNode>&)> on_peers);
  ~Discovery();

  // The heartbeat's content from now on: this node's advertised address, the others it reaches, and
  // whether it has stopped serving. Written with the next poll.
  void set_reach(const std::string& self, const std::set<std::string>& group, bool cut_off);
  // Every successful poll: the heartbeats of the other fresh rows that carry one.
  void on_heartbeats(std::function<void(const std::vector<Heartbeat>&)> callback) {
    on_heartbeats_ = std::move(callback);
  }

  void start(std::function<void(db::Error)> done);  // registered (or the error)
  void stop(std::function<void()> done);            // row deleted (best effort)

  const std::string& id() const { return id_; }
  const std::vector<DiscoveredNode>& peers() const { return peers_; }

 private:
  void refresh();
  void poll();

  Env& env_;
  store::Store& store_;
  DiscoveryOptions options_;
  std::function<void(const std::vector<DiscoveredNode>&)> on_peers_;
  std::function<void(const std::vector<Heartbeat>&)> on_heartbeats_;
  std::string reach_;  // Reach column: this node's address first, then the others it reaches
  bool cut_off_ = false;
  std::string id_;
  std::vector<DiscoveredNode> peers_;
  TimerId refresh_timer_ = 0;
  TimerId poll_timer_ = 0;
  bool running_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::cluster
