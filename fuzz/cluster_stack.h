// The cluster side of one node on a FuzzEnv, wired as server/node/node.cpp wires it: membership, status,
// messages and ping, each frame handed to its protocol by its first byte (Node::on_frame), membership
// changes forwarded to status and messages. And a tiny cluster of such stacks that talk to each other,
// whose frames are the targets' seeds: real frames from the real encoders.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "fuzz_env.h"
#include "server/cluster/membership.h"
#include "server/cluster/messages.h"
#include "server/cluster/ping.h"
#include "server/cluster/status.h"
#include "server/cluster/wire.h"
#include "server/core/codec.h"

namespace chorus::fuzz {

inline const std::vector<std::string>& cluster_addresses() {
  static const std::vector<std::string> a{"10.0.0.1:8074", "10.0.0.2:8074", "10.0.0.3:8074", "10.0.0.4:8074"};
  return a;
}

struct StackOptions {
  std::string self = "10.0.0.1:8074";
  std::vector<std::string> peers;  // seeds, and the ping layer's peers
  uint64_t generation = 1'700'000'000'000'000;
  std::string version = "0.1.0";
  std::string config_hash = "hash";
  uint64_t seed = 1;
  LogSink* sink = nullptr;
};

class ClusterStack final : public TransportHandler {
 public:
  explicit ClusterStack(const StackOptions& o)
      : env(o.self, o.seed, o.sink),
        membership(
            env, o.self, o.generation, cluster::MembershipOptions{},
            [this](const cluster::Member& m) {
              status.on_member_change(m);
              messenger.on_member_change(m);
            }),
        status(env, cluster::NodeInfo{o.self, o.version, "9", o.config_hash, "host"}, membership),
        messenger(env, membership),
        ping(env, o.peers, PingNode::Options{Duration{200'000}, false}) {
    env.start(*this);
    for (const auto& p : o.peers) membership.add_seed(p);
  }
  ~ClusterStack() override {
    status.stop();
    membership.stop();
  }

  void start() {
    ping.start();
    membership.start();
    status.start();
    for (const auto& p : env.peers()) ping.on_peer_up(p);
  }

  // Node::on_frame.
  void on_frame(const std::string& from, std::span<const uint8_t> payload) override {
    using cluster::FrameType;
    switch (cluster::frame_type(payload).value_or(FrameType::ping)) {
      case FrameType::member_ping:
      case FrameType::member_ack:
      case FrameType::member_ping_req:
      case FrameType::member_gossip:
        membership.handle_frame(from, payload);
        return;
      case FrameType::status:
        status.handle_frame(from, payload);
        return;
      case FrameType::message_data:
      case FrameType::message_ack:
        messenger.handle_frame(from, payload);
        return;
      case FrameType::ping:
      case FrameType::pong:
        ping.on_frame(from, payload);
        return;
    }
  }
  void on_peer_up(const std::string& peer) override { ping.on_peer_up(peer); }
  void on_peer_down(const std::string& peer) override {
    ping.on_peer_down(peer);
    membership.on_connection_lost(peer);
  }

  FuzzEnv env;
  cluster::Membership membership;
  cluster::ClusterStatus status;
  cluster::Messenger messenger;
  PingNode ping;
};

// A membership frame as Membership::send writes it: type, seq, target, the sender's record, then updates.
struct MemberRecord {
  std::string address;
  uint64_t generation = 0, incarnation = 0;
  uint8_t state = 0;  // alive, suspect, dead
};
inline Bytes member_frame(cluster::FrameType type, uint64_t seq, const std::string& target, const MemberRecord& sender,
                          const std::vector<MemberRecord>& updates = {}) {
  ByteWriter w;
  auto put = [&](const MemberRecord& r) {
    w.str(r.address);
    w.varint(r.generation);
    w.varint(r.incarnation);
    w.u8(r.state);
  };
  w.u8(cluster::to_byte(type));
  w.varint(seq);
  w.str(target);
  put(sender);
  w.varint(updates.size());
  for (const auto& u : updates) put(u);
  return w.take();
}

// A few stacks that send each other every frame (no loss), stepped together in virtual time. `frames`
// collects what was sent: (from, to, payload).
class TinyCluster {
 public:
  explicit TinyCluster(int n) {
    const auto& a = cluster_addresses();
    for (int i = 0; i < n; ++i) {
      StackOptions o;
      o.self = a[static_cast<size_t>(i)];
      for (int j = 0; j < n; ++j)
        if (j != i) o.peers.push_back(a[static_cast<size_t>(j)]);
      o.generation += static_cast<uint64_t>(i);
      o.seed = static_cast<uint64_t>(i + 1);
      stacks.push_back(std::make_unique<ClusterStack>(o));
      stacks.back()->env.on_send = [this, from = o.self](const std::string& to, std::span<const uint8_t> p) {
        queue.emplace_back(from, to, Bytes(p.begin(), p.end()));
        frames.emplace_back(from, to, Bytes(p.begin(), p.end()));
      };
    }
    for (auto& s : stacks) s->start();
  }
  ClusterStack* find(const std::string& address) {
    for (auto& s : stacks)
      if (s->env.node_name() == address) return s.get();
    return nullptr;
  }
  // Steps of 1 ms: every stack runs its timers, then the frames sent meanwhile arrive.
  void run_for(Duration d) {
    for (int64_t t = 0; t < d.count(); t += 1000) {
      for (auto& s : stacks) s->env.run_for(Duration{1000});
      while (!queue.empty()) {
        auto [from, to, payload] = std::move(queue.front());
        queue.pop_front();
        if (auto* s = find(to)) s->on_frame(from, payload);
      }
    }
  }

  std::vector<std::unique_ptr<ClusterStack>> stacks;
  std::deque<std::tuple<std::string, std::string, Bytes>> queue;
  std::vector<std::tuple<std::string, std::string, Bytes>> frames;
};

// Real frames of every type: a three-node cluster that comes up, exchanges status, messages (best effort,
// reliable, a request and its replies) and pings.
inline std::vector<std::tuple<std::string, std::string, Bytes>> real_cluster_frames() {
  TinyCluster c(3);
  c.stacks[1]->messenger.serve(cluster::ClusterEvent::cluster_stats,
                               [](const std::string&, const cluster::ClusterMessage&, cluster::Messenger::Reply reply) {
                                 reply(cluster::ClusterMessage{"", "", {{"websocket_connections", "3"}}});
                               });
  c.run_for(Duration{1'000'000});
  auto& m = c.stacks[0]->messenger;
  m.send_to_all(cluster::ClusterMessage::of(cluster::ClusterEvent::inv_user, "u1"), cluster::Delivery::best_effort);
  m.send_to_all(cluster::ClusterMessage::of(cluster::ClusterEvent::publish, R"({"id":"e1","event":"posted"})"),
                cluster::Delivery::reliable);
  m.request(cluster::ClusterMessage::of(cluster::ClusterEvent::cluster_stats), Duration{500'000}, [](cluster::Replies) {});
  c.run_for(Duration{500'000});
  return c.frames;
}

}  // namespace chorus::fuzz
