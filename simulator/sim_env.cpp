#include "simulator/sim_env.h"

#include <cassert>

#include "server/core/codec.h"
#include "simulator/sim_database.h"

namespace chorus::sim {

SimEnv::SimEnv(Kernel& kernel, NodeIndex self, LogSink& sink, LogLevel level)
    : kernel_(kernel), self_(self), name_(kernel.address(self)), logger_(name_, *this, sink, level) {
  database_ = kernel.databases().connector_for(self, *this);
}

SimEnv::~SimEnv() {
  // Pending callbacks can own objects whose destructors call back into this env (cancel a timer):
  // retire every slot first, then destroy the callbacks against a consistent env.
  std::vector<Task> doomed;
  for (auto& t : timers_) {
    if (t.fn) doomed.push_back(std::move(t.fn));
    t.fn = nullptr;
    t.live = false;
  }
  doomed.clear();
}

MonoTime SimEnv::now() const { return MonoTime{kernel_.local_mono_us(self_)}; }

WallTime SimEnv::wall_now() const { return WallTime{kernel_.local_wall_us(self_)}; }

Random& SimEnv::random() { return kernel_.random(); }

// --- timers: a slab of slots; an id is (slot << 32 | generation), never 0.

TimerId SimEnv::set_timer(Duration delay, Task fn) {
  const TimerId id = add_timer(std::move(fn));
  kernel_.push(kernel_.virtual_due(self_, delay), Kernel::EventKind::timer, self_, id);
  return id;
}

TimerId SimEnv::set_timer_virtual(int64_t due_us, Task fn) {
  const TimerId id = add_timer(std::move(fn));
  kernel_.push(due_us, Kernel::EventKind::timer, self_, id);
  return id;
}

TimerId SimEnv::add_timer(Task fn) {
  uint32_t slot;
  if (!free_timers_.empty()) {
    slot = free_timers_.back();
    free_timers_.pop_back();
  } else {
    slot = static_cast<uint32_t>(timers_.size());
    timers_.emplace_back();
  }
  TimerSlot& t = timers_[slot];
  assert(!t.live);
  t.fn = std::move(fn);
  t.live = true;
  return (static_cast<uint64_t>(slot) << 32) | t.generation;
}

bool SimEnv::cancel_timer(TimerId id) {
  const uint32_t slot = static_cast<uint32_t>(id >> 32);
  const uint32_t gen = static_cast<uint32_t>(id);
  if (slot >= timers_.size()) return false;
  TimerSlot& t = timers_[slot];
  if (!t.live || t.generation != gen) return false;
  t.fn = nullptr;
  t.live = false;
  if (++t.generation == 0) t.generation = 1;  // 0 would make a timer id of 0 possible
  free_timers_.push_back(slot);
  return true;
}

void SimEnv::fire_timer(TimerId id) {
  const uint32_t slot = static_cast<uint32_t>(id >> 32);
  const uint32_t gen = static_cast<uint32_t>(id);
  assert(slot < timers_.size());
  TimerSlot& t = timers_[slot];
  if (!t.live || t.generation != gen) return;  // cancelled
  Task fn = std::move(t.fn);
  t.fn = nullptr;
  t.live = false;
  if (++t.generation == 0) t.generation = 1;  // 0 would make a timer id of 0 possible
  free_timers_.push_back(slot);
  kernel_.record(TraceKind::timer, self_, kNoNode, id);
  fn();
}

// --- transport

void SimEnv::start(TransportHandler& handler) {
  assert(handler_ == nullptr);
  handler_ = &handler;
}

void SimEnv::stop() {
  stopped_ = true;
  handler_ = nullptr;
  for (auto& [peer, conn] : conns_)
    if (conn.retry_timer) cancel_timer(conn.retry_timer);
  conns_.clear();
  pending_.clear();
}

void SimEnv::add_peer(const std::string& address) {
  if (stopped_ || conns_.contains(address)) return;
  auto [it, inserted] = conns_.emplace(
      address, Conn{.backoff = Backoff(kernel_.options().reconnect_base, kernel_.options().reconnect_cap)});
  begin_connect(it->first, it->second);
}

void SimEnv::remove_peer(const std::string& address) {
  auto it = conns_.find(address);
  if (it == conns_.end()) return;
  if (it->second.retry_timer) cancel_timer(it->second.retry_timer);
  conns_.erase(it);
}

void SimEnv::begin_connect(const std::string& peer, Conn& conn) {
  conn.state = ConnState::connecting;
  conn.retry_timer = 0;
  conn.reset_pending = false;
  conn.token = next_token_++;
  const NodeIndex target = kernel_.find(peer);
  Pending p{peer, Outcome::refused, target, 0};
  int64_t when = kernel_.now_us();
  if (target == kNoNode) {
    p.outcome = Outcome::refused;  // no such host: fails at once
  } else if (kernel_.link(self_, target).blocked || kernel_.link(target, self_).blocked) {
    p.outcome = Outcome::timeout;
    when += kernel_.options().connect_timeout.count();
  } else {
    const int64_t rtt = (kernel_.sample_latency(self_, target) + kernel_.sample_latency(target, self_)).count();
    when += rtt;
    if (kernel_.state(target) == NodeState::down) {
      p.outcome = Outcome::refused;
    } else {
      p.outcome = Outcome::up;  // a paused process's kernel still completes the handshake
      p.target_incarnation = kernel_.incarnation(target);
    }
  }
  pending_.emplace(conn.token, std::move(p));
  kernel_.push(when, Kernel::EventKind::connect_result, self_, conn.token);
}

void SimEnv::connect_failed(const std::string& peer, Conn& conn) {
  conn.state = ConnState::waiting;
  const Duration delay = conn.backoff.next(kernel_.random());
  const std::string name = peer;
  conn.retry_timer = set_timer(delay, [this, name] {
    auto it = conns_.find(name);
    if (it != conns_.end() && it->second.state == ConnState::waiting) begin_connect(it->first, it->second);
  });
}

void SimEnv::on_connect_result(uint64_t token) {
  auto pit = pending_.find(token);
  if (pit == pending_.end()) return;
  Pending p = std::move(pit->second);
  pending_.erase(pit);
  auto it = conns_.find(p.peer);
  if (it == conns_.end() || it->second.token != token) return;  // removed or superseded
  Conn& conn = it->second;
  if (p.outcome == Outcome::up && kernel_.state(p.target) != NodeState::down &&
      kernel_.incarnation(p.target) == p.target_incarnation) {
    conn.state = ConnState::up;
    conn.target = p.target;
    conn.target_incarnation = p.target_incarnation;
    conn.backoff.reset();
    kernel_.record(TraceKind::connect_up, self_, p.target, token);
    if (handler_) handler_->on_peer_up(p.peer);  // p is a local copy
    return;
  }
  kernel_.record(p.outcome == Outcome::timeout ? TraceKind::connect_timeout : TraceKind::connect_refused, self_,
                 p.target, token);
  connect_failed(it->first, conn);
}

void SimEnv::reset_connections_to(NodeIndex dead, uint32_t dead_incarnation) {
  for (auto& [peer, conn] : conns_) {
    if (conn.state != ConnState::up || conn.target != dead || conn.target_incarnation != dead_incarnation) continue;
    if (conn.reset_pending || kernel_.link(dead, self_).blocked) continue;  // the RST cannot reach us
    conn.reset_pending = true;
    kernel_.push(kernel_.now_us() + kernel_.sample_latency(dead, self_).count(), Kernel::EventKind::reset_notify, self_,
                 conn.token);
  }
}

void SimEnv::on_reset(uint64_t token) {
  for (auto& [peer, conn] : conns_) {
    if (conn.token != token) continue;
    if (conn.state != ConnState::up) return;
    kernel_.record(TraceKind::reset, self_, conn.target, token);
    connect_failed(peer, conn);
    const std::string name = peer;  // the handler may remove_peer(name): do not hand it the map's key
    if (handler_) handler_->on_peer_down(name);
    return;
  }
}

SendStatus SimEnv::send(const std::string& peer, std::span<const uint8_t> payload) {
  auto it = conns_.find(peer);
  if (stopped_ || it == conns_.end() || it->second.state != ConnState::up) {
    ++stats_.frames_dropped;
    return SendStatus::not_connected;
  }
  if (payload.size() > kernel_.options().frame_size_max) {
    ++stats_.frames_dropped;
    return SendStatus::too_large;
  }
  Conn& conn = it->second;
  const NodeIndex to = conn.target;
  ++stats_.frames_sent;
  if (kernel_.state(to) == NodeState::down || kernel_.incarnation(to) != conn.target_incarnation) {
    // The process behind this connection is gone. Its host answers with a reset once the path is open.
    kernel_.record(TraceKind::drop_down, self_, to, fnv1a64(payload));
    if (!conn.reset_pending && !kernel_.link(self_, to).blocked && !kernel_.link(to, self_).blocked) {
      conn.reset_pending = true;
      const int64_t rtt = (kernel_.sample_latency(self_, to) + kernel_.sample_latency(to, self_)).count();
      kernel_.push(kernel_.now_us() + rtt, Kernel::EventKind::reset_notify, self_, conn.token);
    }
    return SendStatus::queued;
  }
  const LinkConfig& link = kernel_.link(self_, to);
  if (link.blocked) {
    kernel_.record(TraceKind::drop_blocked, self_, to, fnv1a64(payload));
    return SendStatus::queued;
  }
  if (link.loss > 0 && kernel_.random().chance(link.loss)) {
    kernel_.record(TraceKind::drop_loss, self_, to, fnv1a64(payload));
    return SendStatus::queued;
  }
  const int copies = (link.duplicate > 0 && kernel_.random().chance(link.duplicate)) ? 2 : 1;
  for (int c = 0; c < copies; ++c) {
    if (c == 1) kernel_.record(TraceKind::duplicate, self_, to, fnv1a64(payload));
    const uint32_t slot = kernel_.alloc_message(self_, to, conn.target_incarnation, payload);
    kernel_.push(kernel_.now_us() + kernel_.sample_latency(self_, to).count(), Kernel::EventKind::deliver, to, slot);
  }
  return SendStatus::queued;
}

bool SimEnv::connected(const std::string& peer) const {
  auto it = conns_.find(peer);
  return it != conns_.end() && it->second.state == ConnState::up;
}

void SimEnv::on_deliver(NodeIndex from, std::span<const uint8_t> payload) {
  if (stopped_ || handler_ == nullptr) return;
  ++stats_.frames_received;
  handler_->on_frame(kernel_.address(from), payload);
}

}  // namespace chorus::sim
