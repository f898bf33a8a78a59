// Peer status: what each node knows of every other - version, schema version, config hash, address,
// hostname, membership state and last contact - and the HA guide's green or red, with the reason.
//
// Each node announces its own information to every member every announce interval, and at once to a
// member that (re)appears alive. A peer is red when it is down (declared dead), when its config hash
// differs from ours, when its version differs from ours, or while we have not heard its status yet;
// green otherwise. Versions are compatible when their major versions match and their minor versions
// differ by at most one (the guide's rolling-upgrade rule); an incompatible peer is red with that reason
// and is logged once per change. It stays a member: the guide's nodes "still attempt the inter-node
// communication", and an operator sees it red in the status until it is upgraded or removed.
#pragma once

#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "server/cluster/membership.h"
#include "server/core/env.h"

namespace chorus::cluster {

struct NodeInfo {
  std::string address;         // gossip address: the node's id
  std::string version;         // "major.minor.patch"
  std::string schema_version;  // as the store reports it
  std::string config_hash;
  std::string hostname;
};

struct PeerStatus {
  NodeInfo info;
  MemberState state = MemberState::alive;
  bool heard = false;     // a status announcement has arrived
  MonoTime last_contact;  // when it last arrived
  MonoTime state_since;   // when membership last changed its state (for a dead peer: when it was declared dead)
  bool green = false;
  std::string reason;  // why red ("" when green)
};

// True when the two versions may run in one cluster: same major, minor within one.
bool versions_compatible(const std::string& a, const std::string& b);

class ClusterStatus {
 public:
  ClusterStatus(Env& env, NodeInfo self, Membership& membership, Duration announce_interval = Duration{5'000'000});
  ~ClusterStatus();

  void start();
  void stop();
  // Our information changed (config reloaded, schema migrated): announce it now.
  void set_self(NodeInfo self);
  const NodeInfo& self() const { return self_; }
  // Status frames (first byte 0x20); false for anything else.
  bool handle_frame(const std::string& from, std::span<const uint8_t> payload);
  // Forward membership changes here.
  void on_member_change(const Member& member);

  // Every member still listed (see above), with green or red computed now, ordered by address.
  std::vector<PeerStatus> peers() const;
  void set_remove_dead_after(Duration d) { remove_dead_after_ = d; }

 private:
  bool announce_to(const std::string& address);  // false: not sent now, retried shortly
  void announce_all();
  PeerStatus evaluate(const std::string& address) const;

  Env& env_;
  NodeInfo self_;
  Membership& membership_;
  Duration interval_;
  Duration remove_dead_after_{3'600'000'000};
  std::map<std::string, PeerStatus> known_;  // by address: what they announced
  std::map<std::string, std::string> logged_reason_;
  TimerId timer_ = 0;
  TimerId retry_timer_ = 0;
  std::set<std::string> unsent_;
  bool running_ = false;
};

}  // namespace chorus::cluster
