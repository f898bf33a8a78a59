#include "server/cluster/ping.h"

#include <cassert>
#include <cstdlib>

#include "server/cluster/wire.h"
#include "server/core/codec.h"

namespace chorus {

namespace {
constexpr uint8_t kPing = cluster::to_byte(cluster::FrameType::ping);
constexpr uint8_t kPong = cluster::to_byte(cluster::FrameType::pong);

Bytes encode(uint8_t type, uint64_t seq, int64_t sent_us) {
  ByteWriter w;
  w.u8(type);
  w.varint(seq);
  w.i64(sent_us);
  return w.take();
}
}  // namespace

PingNode::PingNode(Env& env, std::vector<std::string> peers, Options options) : env_(env), options_(options) {
  assert(options_.interval.count() > 0);
  for (auto& p : peers)
    if (p != env_.node_name()) peers_.emplace(std::move(p), PeerRtt{});
}

PingNode::~PingNode() {
  if (tick_timer_) env_.cancel_timer(tick_timer_);
}

void PingNode::start() {
  assert(!running_);
  running_ = true;
  if (options_.start_transport) env_.transport().start(*this);
  for (auto& [peer, _] : peers_) env_.transport().add_peer(peer);
  env_.log().info("ping: started with {} peers, interval {} ms", peers_.size(), to_ms(options_.interval));
  tick_timer_ = env_.set_timer(options_.interval, [this] { tick(); });
}

void PingNode::stop(Task done) {
  running_ = false;
  if (tick_timer_) env_.cancel_timer(tick_timer_);
  tick_timer_ = 0;
  if (options_.start_transport) env_.transport().stop();
  env_.log().info("ping: stopped");
  done();
}

void PingNode::tick() {
  tick_timer_ = 0;
  if (!running_) return;
  const MonoTime now = env_.now();
  for (auto& [peer, rtt] : peers_) {
    if (!rtt.connected) continue;
    const Bytes msg = encode(kPing, next_seq_++, now.us);
    if (env_.transport().send(peer, msg) == SendStatus::queued) ++rtt.pings_sent;
  }
  tick_timer_ = env_.set_timer(options_.interval, [this] { tick(); });
}

void PingNode::on_frame(const std::string& from, std::span<const uint8_t> payload) {
  ByteReader r(payload);
  const uint8_t type = r.u8();
  const uint64_t seq = r.varint();
  const int64_t sent_us = r.i64();
  if (!r.done() || (type != kPing && type != kPong)) {
    ++malformed_;
    env_.log().warn("ping: dropped a malformed frame of {} bytes from {}", payload.size(), from);
    return;
  }
  if (type == kPing) {
    // Answer on our own connection to the sender, if we have one.
    env_.transport().send(from, encode(kPong, seq, sent_us));
    return;
  }
  auto it = peers_.find(from);
  if (it == peers_.end()) {
    // The peer advertises another address than the one we were given for it: say so once.
    if (unknown_senders_.insert(from).second)
      env_.log().warn(
          "ping: pong from {}, which is not a configured peer (does its advertised address differ from --peer?)", from);
    return;
  }
  PeerRtt& p = it->second;
  // A send time of ours is within the last minute: anything else is refused before the subtraction, which
  // could overflow (a pong is the peer's bytes).
  const int64_t now = env_.now().us;
  if (sent_us > now || sent_us < now - 60'000'000) {
    ++malformed_;
    return;  // not a send time of ours
  }
  const int64_t rtt = now - sent_us;
  ++p.pongs_received;
  p.last_rtt_us = rtt;
  if (p.srtt_us < 0) {
    p.srtt_us = rtt;
    p.rttvar_us = rtt / 2;
  } else {
    p.rttvar_us = (3 * p.rttvar_us + std::llabs(p.srtt_us - rtt)) / 4;
    p.srtt_us = (7 * p.srtt_us + rtt) / 8;
  }
}

void PingNode::on_peer_up(const std::string& peer) { connection_changed(peer, true); }
void PingNode::on_peer_down(const std::string& peer) { connection_changed(peer, false); }

void PingNode::connection_changed(const std::string& peer, bool up) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  it->second.connected = up;
  ++(up ? it->second.ups : it->second.downs);
  it->second.last_change = env_.now();
  env_.log().info("ping: peer {} {}", peer, up ? "up" : "down");
  if (listener_) listener_(PingEvent{up ? PingEvent::Kind::peer_up : PingEvent::Kind::peer_down, peer, env_.now()});
}

void PingNode::set_peers(const std::vector<std::string>& peers) {
  std::set<std::string> wanted;
  for (const auto& p : peers)
    if (p != env_.node_name()) wanted.insert(p);
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    env_.log().info("ping: peer {} removed", it->first);
    if (running_) env_.transport().remove_peer(it->first);
    it = peers_.erase(it);
  }
  for (const auto& p : wanted) {
    if (peers_.contains(p)) continue;
    env_.log().info("ping: peer {} added", p);
    peers_.emplace(p, PeerRtt{});
    if (!running_) continue;
    env_.transport().add_peer(p);
    // Another component may have connected to it already: its up event has passed.
    if (env_.transport().connected(p)) connection_changed(p, true);
  }
}

size_t PingNode::connected_count() const {
  size_t n = 0;
  for (const auto& [_, p] : peers_) n += p.connected ? 1 : 0;
  return n;
}

}  // namespace chorus
