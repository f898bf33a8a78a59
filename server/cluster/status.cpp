#include "server/cluster/status.h"

#include <fmt/format.h>

#include <charconv>

#include "server/cluster/wire.h"
#include "server/core/codec.h"
#include "server/core/transport.h"

namespace chorus::cluster {

namespace {
constexpr uint8_t kStatus = to_byte(FrameType::status);

bool major_minor(const std::string& v, int& major, int& minor) {
  const auto dot = v.find('.');
  if (dot == std::string::npos) return false;
  const auto dot2 = v.find('.', dot + 1);
  const std::string a = v.substr(0, dot),
                    b = v.substr(dot + 1, dot2 == std::string::npos ? std::string::npos : dot2 - dot - 1);
  return !a.empty() && !b.empty() && std::from_chars(a.data(), a.data() + a.size(), major).ec == std::errc() &&
         std::from_chars(b.data(), b.data() + b.size(), minor).ec == std::errc();
}
}  // namespace

bool versions_compatible(const std::string& a, const std::string& b) {
  int amaj, amin, bmaj, bmin;
  if (!major_minor(a, amaj, amin) || !major_minor(b, bmaj, bmin)) return false;
  return amaj == bmaj && std::abs(amin - bmin) <= 1;
}

ClusterStatus::ClusterStatus(Env& env, NodeInfo self, Membership& membership, Duration announce_interval)
    : env_(env), self_(std::move(self)), membership_(membership), interval_(announce_interval) {}

ClusterStatus::~ClusterStatus() { stop(); }

void ClusterStatus::start() {
  running_ = true;
  announce_all();
}

void ClusterStatus::stop() {
  running_ = false;
  for (TimerId* t : {&timer_, &retry_timer_}) {
    if (*t) env_.cancel_timer(*t);
    *t = 0;
  }
}

void ClusterStatus::set_self(NodeInfo self) {
  self_ = std::move(self);
  if (running_) announce_all();
}

bool ClusterStatus::announce_to(const std::string& address) {
  ByteWriter w;
  w.u8(kStatus);
  w.str(self_.address);
  w.str(self_.version);
  w.str(self_.schema_version);
  w.str(self_.config_hash);
  w.str(self_.hostname);
  if (env_.transport().send(address, w.bytes()) == SendStatus::queued) return true;
  // Not connected yet (a member we just heard of): try again shortly rather than at the next round.
  unsent_.insert(address);
  if (!retry_timer_ && running_)
    retry_timer_ = env_.set_timer(Duration{250'000}, [this] {
      retry_timer_ = 0;
      auto again = std::move(unsent_);
      unsent_.clear();
      for (const auto& a : again) {
        auto m = membership_.members().find(a);
        if (m != membership_.members().end() && m->second.state != MemberState::dead) announce_to(a);
      }
    });
  return false;
}

void ClusterStatus::announce_all() {
  if (timer_) env_.cancel_timer(timer_);
  timer_ = 0;
  if (!running_) return;
  for (const auto& [addr, m] : membership_.members())
    if (m.state != MemberState::dead) announce_to(addr);
  timer_ = env_.set_timer(interval_, [this] {
    timer_ = 0;
    announce_all();
  });
}

bool ClusterStatus::handle_frame(const std::string& from, std::span<const uint8_t> payload) {
  if (payload.empty() || payload[0] != kStatus) return false;
  ByteReader r(payload);
  r.u8();
  NodeInfo info;
  info.address = r.str(255);
  info.version = r.str(64);
  info.schema_version = r.str(64);
  info.config_hash = r.str(128);
  info.hostname = r.str(255);
  if (!r.done() || info.address.empty()) {
    env_.log().warn("status: dropped a malformed status message of {} bytes from {}", payload.size(), from);
    return true;
  }
  PeerStatus& p = known_[info.address];
  p.info = std::move(info);
  p.heard = true;
  p.last_contact = env_.now();
  // Say what a peer's status is when it first arrives and whenever its colour or reason changes.
  const PeerStatus now = evaluate(p.info.address);
  auto last = logged_reason_.find(p.info.address);
  if (last == logged_reason_.end() || last->second != now.reason) {
    if (!now.reason.empty())
      env_.log().warn("status: {} is red: {}", p.info.address, now.reason);
    else
      env_.log().info("status: {} is green", p.info.address);
    logged_reason_[p.info.address] = now.reason;
  }
  return true;
}

void ClusterStatus::on_member_change(const Member& member) {
  if (running_ && member.state == MemberState::alive) announce_to(member.address);  // a newcomer or a return
}

PeerStatus ClusterStatus::evaluate(const std::string& address) const {
  PeerStatus p;
  if (auto it = known_.find(address); it != known_.end()) p = it->second;
  p.info.address = address;
  auto m = membership_.members().find(address);
  p.state = m == membership_.members().end() ? MemberState::dead : m->second.state;
  if (m != membership_.members().end()) p.state_since = m->second.since;
  if (p.state == MemberState::dead)
    p.reason = "down";
  else if (!p.heard)
    p.reason = "no status received yet";
  else if (p.info.version != self_.version)
    p.reason = versions_compatible(p.info.version, self_.version)
                   ? fmt::format("version {} differs from ours ({})", p.info.version, self_.version)
                   : fmt::format("version {} is incompatible with ours ({}): more than one minor version apart",
                                 p.info.version, self_.version);
  else if (p.info.config_hash != self_.config_hash)
    p.reason = "config hash differs from ours";
  p.green = p.reason.empty();
  return p;
}

std::vector<PeerStatus> ClusterStatus::peers() const {
  std::vector<PeerStatus> out;
  const MonoTime now = env_.now();
  for (const auto& [addr, m] : membership_.members()) {
    if (m.state == MemberState::dead && (m.left || now - m.since >= remove_dead_after_)) continue;
    out.push_back(evaluate(addr));
  }
  return out;
}

}  // namespace chorus::cluster
