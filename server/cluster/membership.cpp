#include "server/cluster/membership.h"
#include "server/core/assert.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "server/cluster/wire.h"
#include "server/core/codec.h"
#include "server/core/transport.h"

namespace chorus::cluster {

namespace {
constexpr uint8_t kPing = to_byte(FrameType::member_ping), kAck = to_byte(FrameType::member_ack),
                  kPingReq = to_byte(FrameType::member_ping_req), kGossip = to_byte(FrameType::member_gossip);
constexpr int kDeadGossipEvery = 5;  // ticks between messages to one member declared dead
}  // namespace

const char* to_string(MemberState s) {
  switch (s) {
    case MemberState::alive:
      return "alive";
    case MemberState::suspect:
      return "suspect";
    case MemberState::dead:
      return "dead";
  }
  return "?";
}

Membership::Membership(Env& env, std::string self, uint64_t generation, MembershipOptions options,
                       std::function<void(const Member&)> on_change, std::function<void(const std::string&)> on_leader)
    : env_(env),
      self_(std::move(self)),
      generation_(generation),
      options_(options),
      on_change_(std::move(on_change)),
      on_leader_(std::move(on_leader)),
      leader_(self_) {
  assert(options_.probe_timeout < options_.probe_interval);
  assert(options_.suspicion_min <= options_.suspicion_max);
}

Membership::~Membership() {
  *alive_ = false;
  stop();
}

void Membership::start() {
  running_ = true;
  env_.log().info("membership: started as {} (generation {}); leader is now {}", self_, generation_, leader_);
  tick_timer_ = env_.set_timer(options_.probe_interval, [this] { tick(); });
}

void Membership::stop() {
  running_ = false;
  for (TimerId* t : {&tick_timer_, &probe_timer_}) {
    if (*t) env_.cancel_timer(*t);
    *t = 0;
  }
  for (auto& [addr, s] : suspicions_)
    if (s.timer) env_.cancel_timer(s.timer);
  suspicions_.clear();
}

void Membership::leave() {
  if (running_) {
    env_.log().info("membership: leaving the cluster");
    disseminate(Update{self_, generation_, incarnation_, MemberState::dead});
  }
  stop();
}

void Membership::add_seed(const std::string& address) {
  if (address == self_ || members_.contains(address)) return;
  if (address.size() > 255) {  // every frame carries addresses as str(255): peers would drop ours as malformed
    env_.log().warn("membership: ignoring a member address of {} bytes (at most 255)", address.size());
    return;
  }
  Member m;
  m.address = address;
  m.since = env_.now();
  members_.emplace(address, m);
  env_.transport().add_peer(address);
  recompute_leader();
}

// ---- wire

namespace {
void put(ByteWriter& w, const std::string& address, uint64_t generation, uint64_t incarnation, MemberState state) {
  w.str(address);
  w.varint(generation);
  w.varint(incarnation);
  w.u8(static_cast<uint8_t>(state));
}
}  // namespace

void Membership::send(const std::string& to, uint8_t type, uint64_t seq, const std::string& target,
                      const Update* extra) {
  ByteWriter w;
  w.u8(type);
  w.varint(seq);
  w.str(target);
  put(w, self_, generation_, incarnation_, MemberState::alive);
  // `extra` always goes; then the piggyback: the most recent updates that still have repeats left.
  const size_t n = std::min(options_.piggyback_max, gossip_.size());
  w.varint(n + (extra ? 1 : 0));
  if (extra) put(w, extra->address, extra->generation, extra->incarnation, extra->state);
  for (size_t i = 0; i < n; ++i) {
    Queued& q = gossip_[gossip_.size() - 1 - i];
    put(w, q.update.address, q.update.generation, q.update.incarnation, q.update.state);
    --q.remaining;
  }
  std::erase_if(gossip_, [](const Queued& q) { return q.remaining <= 0; });
  ++messages_sent_;
  env_.transport().send(to, w.bytes());
}

bool Membership::handle_frame(const std::string& from, std::span<const uint8_t> payload) {
  if (payload.empty() || payload[0] < kPing || payload[0] > kGossip) return false;
  ByteReader r(payload);
  const uint8_t type = r.u8();
  const uint64_t seq = r.varint();
  const std::string target = r.str(255);
  Update sender{r.str(255), r.varint(), r.varint(), static_cast<MemberState>(r.u8())};
  std::vector<Update> updates(std::min<uint64_t>(r.varint(), 64));
  for (auto& u : updates) u = Update{r.str(255), r.varint(), r.varint(), static_cast<MemberState>(r.u8())};
  // A record at the top of a counter could never be superseded (a refutation or a restart needs one more).
  auto supersedable = [](const Update& u) { return u.generation < UINT64_MAX && u.incarnation < UINT64_MAX; };
  bool states_ok = sender.state == MemberState::alive && supersedable(sender);
  for (const auto& u : updates) states_ok &= static_cast<uint8_t>(u.state) <= 2 && supersedable(u);
  if (!r.done() || !states_ok || sender.address.empty()) {
    env_.log().warn("membership: dropped a malformed message of {} bytes from {}", payload.size(), from);
    return true;
  }
  if (!running_) return true;
  apply(sender, sender.address);
  // It talks, yet we hold it dead (it was paused, or cut off): tell it, so it refutes and rejoins.
  if (auto it = members_.find(sender.address);
      it != members_.end() && it->second.state != MemberState::alive && it->second.generation >= sender.generation) {
    const Update record = update_of(it->second);
    send(sender.address, kGossip, 0, "", &record);
  }
  for (const auto& u : updates) apply(u, sender.address);
  switch (type) {
    case kPing:
      send(sender.address, kAck, seq);
      break;
    case kAck:
      if (seq == probe_seq_ && sender.address == probe_target_) {
        probe_acked_ = true;
        local_health_ = std::max(0, local_health_ - 1);
      } else if (auto f = forwards_.find(seq); f != forwards_.end()) {
        // An ack for a ping we sent on someone's behalf: pass it on, carrying the target's news.
        send(f->second.first, kAck, f->second.second, "", &sender);
        forwards_.erase(f);
      } else {
        // A late ack to one of our own earlier probes, or to an indirect probe: the target is alive.
        if (seq == probe_seq_) probe_acked_ = true;
      }
      break;
    case kPingReq: {
      if (target.empty() || target == self_) break;
      const uint64_t s = next_seq_++;
      forwards_[s] = {sender.address, seq};
      send(target, kPing, s);
      env_.set_timer(options_.probe_interval, [this, alive = alive_, s] {
        if (*alive) forwards_.erase(s);
      });
      break;
    }
    case kGossip:
      break;
  }
  return true;
}

void Membership::on_connection_lost(const std::string& address) {
  auto it = members_.find(address);
  if (!running_ || it == members_.end() || it->second.state != MemberState::alive) return;
  const Update u{address, it->second.generation, it->second.incarnation, MemberState::suspect};
  if (apply(u, self_)) disseminate(u);
}

// ---- state

bool Membership::apply(const Update& u, const std::string& reporter) {
  if (u.address == self_) {
    // A record of an earlier life of ours with a later generation (our wall clock is behind where it
    // was when we last started): move our generation past it, like a Lamport clock, and announce.
    if (u.generation > generation_) {
      generation_ = u.generation + 1;
      incarnation_ = 0;
      env_.log().info("membership: a previous run of this node had a later generation; now generation {}", generation_);
      gossip_.push_back(Queued{self_update(), options_.gossip_repeat});
      disseminate(self_update());
      return false;
    }
    // Someone suspects (or buried) us: refute with a higher incarnation, and slow our own probing a
    // little - being suspected usually means we were the slow one (Lifeguard's local health).
    if (u.generation == generation_ && u.state != MemberState::alive && u.incarnation >= incarnation_) {
      incarnation_ = u.incarnation + 1;
      local_health_ = std::min(options_.local_health_max, local_health_ + 1);
      env_.log().info("membership: refuting a {} report about us with incarnation {}", to_string(u.state),
                      incarnation_);
      gossip_.push_back(Queued{self_update(), options_.gossip_repeat});
      disseminate(self_update());
    }
    return false;
  }
  auto it = members_.find(u.address);
  if (it == members_.end()) {
    if (members_.size() >= options_.members_max) {
      env_.log().warn("membership: ignoring {}: already {} members (members_max)", u.address, members_.size());
      return false;
    }
    add_seed(u.address);
    it = members_.find(u.address);
  }
  Member& m = it->second;
  bool accept = false;
  if (!m.heard || u.generation != m.generation) {
    accept = !m.heard || u.generation > m.generation;
  } else {
    switch (u.state) {
      case MemberState::alive:
        accept = u.incarnation > m.incarnation;
        break;
      case MemberState::suspect:
        accept = (m.state == MemberState::alive && u.incarnation >= m.incarnation) ||
                 (m.state == MemberState::suspect && u.incarnation > m.incarnation);
        if (!accept && m.state == MemberState::suspect && u.incarnation == m.incarnation)
          start_suspicion(m, reporter);  // a confirmation
        break;
      case MemberState::dead:
        accept = (m.state != MemberState::dead && u.incarnation >= m.incarnation) ||
                 (m.state == MemberState::dead && u.incarnation > m.incarnation);
        // Its own word that it left, after a peer's report that it died: the same death, now known clean.
        if (!accept && m.state == MemberState::dead && reporter == u.address && u.incarnation == m.incarnation)
          m.left = true;
        break;
    }
  }
  if (!accept) return false;
  const MemberState before = m.state;
  const bool was_heard = m.heard;
  const uint64_t generation_before = m.generation;
  m.generation = u.generation;
  m.incarnation = u.incarnation;
  m.state = u.state;
  m.heard = true;
  m.left = u.state == MemberState::dead && reporter == u.address;
  if (u.state == MemberState::suspect) {
    auto s = suspicions_.find(u.address);
    if (s != suspicions_.end() && s->second.timer) env_.cancel_timer(s->second.timer);
    suspicions_.erase(u.address);
    start_suspicion(m, reporter);
  } else if (auto s = suspicions_.find(u.address); s != suspicions_.end()) {
    if (s->second.timer) env_.cancel_timer(s->second.timer);
    suspicions_.erase(s);
  }
  gossip_.push_back(Queued{u, options_.gossip_repeat});
  if (before != m.state || !was_heard || generation_before != m.generation) {
    m.since = env_.now();
    if (before != m.state)
      env_.log().info("membership: {} is {} (generation {}, incarnation {}){}", m.address, to_string(m.state),
                      m.generation, m.incarnation, m.left ? ": it left the cluster" : "");
    if (on_change_) on_change_(m);  // a state change, a member first heard from, or a restart
    recompute_leader();
  }
  return true;
}

void Membership::start_suspicion(Member& m, const std::string& reporter) {
  Suspicion& s = suspicions_[m.address];
  const bool fresh = s.timer == 0 && s.reporters.empty();
  if (fresh) s.started = env_.now();
  if (reporter != self_ && !s.reporters.insert(reporter).second && !fresh) return;  // nothing new
  // Lifeguard: max at first, shrinking towards min as independent confirmations (C of K) arrive.
  const double c = static_cast<double>(s.reporters.size());
  const double k = static_cast<double>(std::max(1, options_.suspicion_confirmations));
  const double span = static_cast<double>((options_.suspicion_max - options_.suspicion_min).count());
  const int64_t timeout =
      std::max(options_.suspicion_min.count(),
               options_.suspicion_max.count() - static_cast<int64_t>(span * std::log(c + 1) / std::log(k + 1)));
  const Duration remaining = std::max(Duration{0}, Duration{timeout} - (env_.now() - s.started));
  if (s.timer) env_.cancel_timer(s.timer);
  s.timer = env_.set_timer(remaining, [this, addr = m.address, gen = m.generation, inc = m.incarnation] {
    suspicion_expired(addr, gen, inc);
  });
}

void Membership::suspicion_expired(const std::string& address, uint64_t generation, uint64_t incarnation) {
  auto s = suspicions_.find(address);
  if (s != suspicions_.end()) s->second.timer = 0;
  auto it = members_.find(address);
  if (it == members_.end() || it->second.state != MemberState::suspect || it->second.generation != generation ||
      it->second.incarnation != incarnation)
    return;
  const Update u{address, generation, incarnation, MemberState::dead};
  if (apply(u, self_)) disseminate(u);
}

void Membership::disseminate(const Update& u) {
  // Suspicions, deaths and refutations go to every member at once (the clusters are small), each
  // message carrying the update itself; the piggyback queue (filled by apply) repeats it on later
  // messages for whoever missed these.
  for (const auto& [addr, m] : members_)
    if (m.state != MemberState::dead || addr == u.address) send(addr, kGossip, 0, "", &u);
}

void Membership::recompute_leader() {
  std::string lowest = self_;
  for (const auto& [addr, m] : members_)
    if (m.state != MemberState::dead && addr < lowest) lowest = addr;
  if (lowest == leader_) return;
  leader_ = lowest;
  for (const auto& [addr, m] : members_)  // the bully rule: the lowest address not declared dead, us included
    CHORUS_ASSERT(m.state == MemberState::dead || !(addr < leader_), "leader {} but {} is live", leader_, addr);
  env_.log().info("membership: leader is now {}", leader_);
  if (on_leader_) on_leader_(leader_);
}

// ---- probing

void Membership::tick() {
  tick_timer_ = 0;
  if (!running_) return;
  tick_timer_ = env_.set_timer(scaled(options_.probe_interval), [this] { tick(); });
  // Now and then, a word to one member declared dead: if it is back (paused, partitioned), it learns
  // that and rejoins.
  if (next_seq_ % kDeadGossipEvery == 0) {
    std::vector<std::string> dead;
    for (const auto& [addr, m] : members_)
      if (m.state == MemberState::dead) dead.push_back(addr);
    if (!dead.empty()) send(dead[env_.random().uniform(dead.size())], kGossip, 0);
  }
  // The next target of a shuffled round-robin over the members not declared dead.
  std::string target;
  for (int attempts = 0; attempts < 2 && target.empty(); ++attempts) {
    while (rotation_index_ < rotation_.size() && target.empty()) {
      const auto& a = rotation_[rotation_index_++];
      auto it = members_.find(a);
      if (it != members_.end() && it->second.state != MemberState::dead) target = a;
    }
    if (target.empty()) {
      rotation_.clear();
      for (const auto& [addr, m] : members_)
        if (m.state != MemberState::dead) rotation_.push_back(addr);
      for (size_t i = rotation_.size(); i > 1; --i) std::swap(rotation_[i - 1], rotation_[env_.random().uniform(i)]);
      rotation_index_ = 0;
    }
  }
  // The previous probe's interval is over: no ack, direct or indirect, means a suspicion.
  if (!probe_acked_) probe_failed(probe_seq_);
  if (target.empty()) {
    ++next_seq_;
    return;
  }
  probe_seq_ = next_seq_++;
  probe_target_ = target;
  probe_acked_ = false;
  send(target, kPing, probe_seq_);
  if (probe_timer_) env_.cancel_timer(probe_timer_);
  probe_timer_ = env_.set_timer(scaled(options_.probe_timeout), [this, seq = probe_seq_] { probe_timed_out(seq); });
}

void Membership::probe_timed_out(uint64_t seq) {
  probe_timer_ = 0;
  if (seq != probe_seq_ || probe_acked_ || !running_) return;
  // Ask others to try: a slow link between us and the target must not get it declared dead.
  std::vector<std::string> helpers;
  for (const auto& [addr, m] : members_)
    if (addr != probe_target_ && m.state == MemberState::alive) helpers.push_back(addr);
  for (size_t i = helpers.size(); i > 1; --i) std::swap(helpers[i - 1], helpers[env_.random().uniform(i)]);
  helpers.resize(std::min<size_t>(helpers.size(), static_cast<size_t>(options_.indirect_probes)));
  for (const auto& h : helpers) send(h, kPingReq, seq, probe_target_);
  // The verdict comes at the next tick: the end of this probe interval.
}

void Membership::probe_failed(uint64_t seq) {
  if (seq != probe_seq_ || probe_acked_ || !running_) return;
  probe_acked_ = true;  // settled
  auto it = members_.find(probe_target_);
  if (it == members_.end() || it->second.state != MemberState::alive) return;
  const Update u{probe_target_, it->second.generation, it->second.incarnation, MemberState::suspect};
  if (apply(u, self_)) disseminate(u);
}

}  // namespace chorus::cluster
