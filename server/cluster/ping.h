// Ping: the first protocol on the seam. Each node keeps a connection to every configured peer, pings
// the connected ones every interval and keeps a round-trip estimate per peer (smoothed RTT and its
// variance, as TCP does: RFC 6298). It runs unchanged on the simulator and on real sockets, which is
// what proves the two sides of the seam equivalent. Membership and failure detection (SWIM) replace
// the static peer list later; this stays as the transport-level liveness view.
//
// Wire messages (payload of one frame): u8 type (1 = ping, 2 = pong), varint seq, i64 the pinger's
// monotonic send time in microseconds (echoed back unchanged, so only the pinger's clock is used).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "server/core/env.h"
#include "server/core/transport.h"

namespace chorus {

struct PeerRtt {
  bool connected = false;
  uint64_t ups = 0;    // times the connection came up
  uint64_t downs = 0;  // times it dropped
  uint64_t pings_sent = 0;
  uint64_t pongs_received = 0;
  int64_t last_rtt_us = -1;
  int64_t srtt_us = -1;  // smoothed, -1 before the first sample
  int64_t rttvar_us = 0;
  MonoTime last_change;  // when connected last changed
};

struct PingEvent {
  enum class Kind { peer_up, peer_down } kind;
  std::string peer;
  MonoTime at;
};

class PingNode final : public Process, public TransportHandler {
 public:
  struct Options {
    Duration interval{200'000};
    // False when another component owns the transport's handler and forwards this node's events.
    bool start_transport = true;
  };

  PingNode(Env& env, std::vector<std::string> peers, Options options);
  ~PingNode() override;

  // Process
  void start() override;
  void stop(Task done) override;

  // TransportHandler
  void on_frame(const std::string& from, std::span<const uint8_t> payload) override;
  void on_peer_up(const std::string& peer) override;
  void on_peer_down(const std::string& peer) override;

  // Peers can change while running (discovery): added ones are connected, removed ones dropped.
  void set_peers(const std::vector<std::string>& peers);
  const std::map<std::string, PeerRtt>& peers() const { return peers_; }
  size_t connected_count() const;
  uint64_t malformed_frames() const { return malformed_; }
  // Observer for connection changes (tests, chorusd's status output). Called on the node's loop.
  void set_listener(std::function<void(const PingEvent&)> listener) { listener_ = std::move(listener); }

 private:
  void tick();
  void connection_changed(const std::string& peer, bool up);

  Env& env_;
  Options options_;
  std::map<std::string, PeerRtt> peers_;
  std::function<void(const PingEvent&)> listener_;
  TimerId tick_timer_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t malformed_ = 0;
  std::set<std::string> unknown_senders_;
  bool running_ = false;
};

}  // namespace chorus
