// A simulated cluster of nodes running membership (SWIM + Lifeguard) and the bully leader: used by the
// membership tests and by `chorus-sim membership`, which measures detection and election times and
// the protocol's message rate as the cluster grows.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/cluster/membership.h"
#include "server/cluster/messages.h"
#include "server/cluster/status.h"
#include "simulator/kernel.h"

namespace chorus::sim {

class MemberNode final : public Process, public TransportHandler {
 public:
  MemberNode(Env& env, std::vector<std::string> seeds, cluster::MembershipOptions options, cluster::NodeInfo info,
             int* deaths);
  void start() override;
  void stop(Task done) override;
  void on_frame(const std::string& from, std::span<const uint8_t> p) override {
    if (!membership->handle_frame(from, p) && !status->handle_frame(from, p)) messenger->handle_frame(from, p);
  }
  void on_peer_up(const std::string&) override {}
  void on_peer_down(const std::string& peer) override { membership->on_connection_lost(peer); }
  cluster::MemberState state_of(const std::string& address) const;

  std::unique_ptr<cluster::Membership> membership;
  std::unique_ptr<cluster::ClusterStatus> status;
  std::unique_ptr<cluster::Messenger> messenger;
  std::vector<std::pair<std::string, std::string>> received;  // (from, data) of every message delivered

 private:
  Env& env_;
  std::vector<std::string> seeds_;
  cluster::MembershipOptions options_;
  cluster::NodeInfo info_;
  int* deaths_;
};

class MemberCluster {
 public:
  // info(i) gives node i's version, schema version and config hash (default: all alike).
  MemberCluster(uint64_t seed, int nodes, double loss = 0, cluster::MembershipOptions options = {},
                std::function<cluster::NodeInfo(int)> info = {});
  Kernel& kernel() { return *k_; }
  MemberNode* node(int i) { return dynamic_cast<MemberNode*>(k_->process(static_cast<NodeIndex>(i))); }
  const std::string& address(int i) const { return addresses_[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(addresses_.size()); }
  bool live(int i) const { return k_->state(static_cast<NodeIndex>(i)) == NodeState::up; }
  // Every live node but `target` sees `target` in state s.
  bool all_see(int target, cluster::MemberState s);
  bool all_alive();
  // Every live node of the group names the group's lowest live address as leader.
  bool one_leader(const std::vector<int>& group);
  int deaths() const { return deaths_; }  // dead declarations, summed over nodes
  // What node i announces from its next start on (an upgrade is a stop, this, and a start).
  void set_info(int i, cluster::NodeInfo info) { infos_[static_cast<size_t>(i)] = std::move(info); }

 private:
  std::unique_ptr<Kernel> k_;
  std::vector<std::string> addresses_;
  std::vector<cluster::NodeInfo> infos_;
  int deaths_ = 0;
};

}  // namespace chorus::sim
