#include "simulator/kernel.h"

#include <fmt/format.h>

#include <cassert>
#include <cmath>

#include "server/core/codec.h"
#include "simulator/sim_database.h"
#include "simulator/sim_env.h"

namespace chorus::sim {

const char* to_string(TraceKind kind) {
  switch (kind) {
    case TraceKind::deliver:
      return "deliver";
    case TraceKind::drop_loss:
      return "drop(loss)";
    case TraceKind::drop_blocked:
      return "drop(partition)";
    case TraceKind::drop_down:
      return "drop(receiver down)";
    case TraceKind::duplicate:
      return "duplicate";
    case TraceKind::timer:
      return "timer";
    case TraceKind::connect_up:
      return "connect";
    case TraceKind::connect_refused:
      return "connect refused";
    case TraceKind::connect_timeout:
      return "connect timeout";
    case TraceKind::reset:
      return "connection reset";
    case TraceKind::crash:
      return "crash";
    case TraceKind::stop:
      return "stop";
    case TraceKind::restart:
      return "start";
    case TraceKind::pause:
      return "pause";
    case TraceKind::resume:
      return "resume";
    case TraceKind::clock_skew:
      return "clock skew";
    case TraceKind::clock_drift:
      return "clock drift";
    case TraceKind::link_change:
      return "link change";
    case TraceKind::action:
      return "action";
    case TraceKind::db:
      return "database";
    case TraceKind::client:
      return "client received";
  }
  return "?";
}

Kernel::Kernel(Options options)
    : options_(options), random_(options.seed), databases_(std::make_unique<SimDatabases>(*this)) {}

Kernel::~Kernel() {
  // Destroy processes before their envs (a process may cancel timers or stop its transport on the way out).
  for (auto& n : nodes_) n.process.reset();
  for (auto& n : nodes_) n.env.reset();
  databases_.reset();
}

Kernel::Node& Kernel::node(NodeIndex i) {
  assert(i < nodes_.size());
  return nodes_[i];
}
const Kernel::Node& Kernel::node(NodeIndex i) const {
  assert(i < nodes_.size());
  return nodes_[i];
}

NodeIndex Kernel::add_node(std::string address, ProcessFactory factory) {
  assert(!by_address_.contains(address));
  const NodeIndex index = static_cast<NodeIndex>(nodes_.size());
  Node n;
  n.address = address;
  n.factory = std::move(factory);
  // Each node's monotonic clock has its own origin (its machine's uptime), so code that compares
  // monotonic times across nodes shows up as a bug.
  n.anchor_local_us = static_cast<double>(random_.uniform(1'000'000'000'000ULL));
  n.anchor_virtual_us = now_us_;
  n.anchor_wall_us = static_cast<double>(options_.wall_epoch_us + now_us_);
  nodes_.push_back(std::move(n));
  by_address_[address] = index;
  // Grow the link matrix, keeping existing links.
  const size_t count = nodes_.size();
  std::vector<LinkConfig> grown(count * count, options_.default_link);
  for (size_t from = 0; from + 1 < count; ++from)
    for (size_t to = 0; to + 1 < count; ++to) grown[from * count + to] = links_[from * (count - 1) + to];
  links_ = std::move(grown);
  return index;
}

const std::string& Kernel::address(NodeIndex i) const { return node(i).address; }

NodeIndex Kernel::find(const std::string& address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? kNoNode : it->second;
}

NodeState Kernel::state(NodeIndex i) const { return node(i).state; }
uint32_t Kernel::incarnation(NodeIndex i) const { return node(i).incarnation; }
Process* Kernel::process(NodeIndex i) { return node(i).state == NodeState::down ? nullptr : node(i).process.get(); }
Env* Kernel::env(NodeIndex i) { return node(i).state == NodeState::down ? nullptr : node(i).env.get(); }

// --- clocks

int64_t Kernel::local_mono_us(NodeIndex i) const {
  const Node& n = node(i);
  return static_cast<int64_t>(n.anchor_local_us + static_cast<double>(now_us_ - n.anchor_virtual_us) * n.rate);
}

int64_t Kernel::local_wall_us(NodeIndex i) const {
  const Node& n = node(i);
  return static_cast<int64_t>(n.anchor_wall_us + static_cast<double>(now_us_ - n.anchor_virtual_us) * n.rate) +
         n.skew_us;
}

int64_t Kernel::virtual_due(NodeIndex i, Duration local_delay) const {
  const double rate = node(i).rate;
  const int64_t d =
      local_delay.count() <= 0 ? 0 : static_cast<int64_t>(std::ceil(static_cast<double>(local_delay.count()) / rate));
  return now_us_ + d;
}

void Kernel::set_clock_skew(NodeIndex i, Duration skew) {
  node(i).skew_us = skew.count();
  record(TraceKind::clock_skew, i, kNoNode, static_cast<uint64_t>(skew.count()));
}

void Kernel::set_clock_drift_ppm(NodeIndex i, double ppm) {
  assert(ppm > -100'000 && ppm < 100'000);
  Node& n = node(i);
  n.anchor_local_us = static_cast<double>(local_mono_us(i));
  n.anchor_wall_us = static_cast<double>(local_wall_us(i) - n.skew_us);
  n.anchor_virtual_us = now_us_;
  n.rate = 1.0 + ppm / 1e6;
  record(TraceKind::clock_drift, i, kNoNode, static_cast<uint64_t>(static_cast<int64_t>(ppm * 1000)));
}

// --- links

LinkConfig& Kernel::link(NodeIndex from, NodeIndex to) {
  assert(from < nodes_.size() && to < nodes_.size());
  return links_[from * nodes_.size() + to];
}

void Kernel::set_link(NodeIndex from, NodeIndex to, const LinkConfig& config) {
  link(from, to) = config;
  record(TraceKind::link_change, from, to, config.blocked ? 1 : 0);
}

void Kernel::block(NodeIndex from, NodeIndex to) {
  link(from, to).blocked = true;
  record(TraceKind::link_change, from, to, 1);
}

void Kernel::unblock(NodeIndex from, NodeIndex to) {
  link(from, to).blocked = false;
  record(TraceKind::link_change, from, to, 0);
}

void Kernel::partition(const std::vector<NodeIndex>& side) {
  std::vector<bool> in(nodes_.size(), false);
  for (NodeIndex i : side) in[i] = true;
  for (NodeIndex a = 0; a < nodes_.size(); ++a)
    for (NodeIndex b = 0; b < nodes_.size(); ++b)
      if (in[a] != in[b]) link(a, b).blocked = true;
  record(TraceKind::link_change, kNoNode, kNoNode, side.size());
}

void Kernel::isolate(NodeIndex i, const std::vector<NodeIndex>& from) {
  for (NodeIndex p : from) {
    if (p == i) continue;
    link(i, p).blocked = true;
    link(p, i).blocked = true;
  }
  record(TraceKind::link_change, i, kNoNode, from.size());
}

void Kernel::heal() {
  for (auto& l : links_) l.blocked = false;
  record(TraceKind::link_change, kNoNode, kNoNode, 0);
}

Duration Kernel::sample_latency(NodeIndex from, NodeIndex to) {
  const LinkConfig& l = link(from, to);
  int64_t us = l.latency.draw_us(random_);
  if (l.reorder > 0 && random_.chance(l.reorder)) us += l.reorder_delay.count();
  return l.latency.capped(us);
}

// --- lifecycle

void Kernel::start(NodeIndex i) {
  Node& n = node(i);
  assert(n.state == NodeState::down);
  n.state = NodeState::up;
  LogSink& sink = options_.log_sink ? *options_.log_sink : null_sink_;
  n.env = std::make_unique<SimEnv>(*this, i, sink, options_.log_level);
  record(TraceKind::restart, i, kNoNode, n.incarnation);
  n.process = n.factory(*n.env);
  n.process->start();
}

void Kernel::notify_resets_for(NodeIndex dead) {
  const uint32_t old_incarnation = node(dead).incarnation;
  for (NodeIndex j = 0; j < nodes_.size(); ++j) {
    if (j == dead || nodes_[j].state == NodeState::down) continue;
    nodes_[j].env->reset_connections_to(dead, old_incarnation);
  }
}

void Kernel::crash(NodeIndex i) {
  assert(running_node_ != i && "a node cannot crash itself from its own callback: use Kernel::at");
  Node& n = node(i);
  if (n.state == NodeState::down) return;
  record(TraceKind::crash, i, kNoNode, n.incarnation);
  notify_resets_for(i);
  teardown(i);
}

void Kernel::teardown(NodeIndex i) {
  Node& n = node(i);
  // What simulated servers hold for this node goes first, while its env still stands.
  auto releases = std::move(n.releases);
  n.releases.clear();
  for (auto& r : releases) r.release();
  releases.clear();
  // Destroy first: whatever the destructors schedule belongs to the old incarnation and goes stale.
  n.process.reset();
  n.env.reset();
  ++n.incarnation;  // every event scheduled for the old incarnation is now stale
  n.state = NodeState::down;
  for (const Event& e : n.held) {
    if (e.kind != EventKind::deliver) continue;
    const Message& m = messages_[e.id];
    record(TraceKind::drop_down, m.from, m.to, fnv1a64(m.payload));
    free_message(static_cast<uint32_t>(e.id));
  }
  n.held.clear();
}

void Kernel::stop(NodeIndex i) {
  Node& n = node(i);
  if (n.state != NodeState::up) return;
  const uint32_t inc = n.incarnation;
  record(TraceKind::stop, i, kNoNode, inc);
  n.process->stop([this, i, inc] {
    // Tear down outside the node's own callback: the process may still be on the stack.
    at(now(), [this, i, inc] {
      Node& m = node(i);
      if (m.incarnation != inc || m.state == NodeState::down) return;
      notify_resets_for(i);
      teardown(i);
    });
  });
}

void Kernel::pause(NodeIndex i) {
  Node& n = node(i);
  if (n.state != NodeState::up) return;
  n.state = NodeState::paused;
  record(TraceKind::pause, i, kNoNode, 0);
}

void Kernel::resume(NodeIndex i) {
  Node& n = node(i);
  if (n.state != NodeState::paused) return;
  n.state = NodeState::up;
  record(TraceKind::resume, i, kNoNode, n.held.size());
  std::vector<Event> held = std::move(n.held);
  n.held.clear();
  for (Event e : held) {
    e.time_us = now_us_;
    e.seq = seq_++;
    queue_.push(e);
  }
}

// --- events

void Kernel::push(int64_t time_us, EventKind kind, NodeIndex node_index, uint64_t id) {
  assert(time_us >= now_us_);
  const uint32_t inc = node_index == kNoNode ? 0 : node(node_index).incarnation;
  queue_.push(Event{time_us, seq_++, id, node_index, inc, kind});
}

void Kernel::at(Duration t, Task fn) {
  uint64_t slot;
  if (!free_actions_.empty()) {
    slot = free_actions_.back();
    free_actions_.pop_back();
    actions_[slot] = std::move(fn);
  } else {
    slot = actions_.size();
    actions_.push_back(std::move(fn));
  }
  push(std::max(t.count(), now_us_), EventKind::action, kNoNode, slot);
}

void Kernel::call_on_node(NodeIndex i, uint32_t incarnation, int64_t time_us, Task fn) {
  Node& n = node(i);
  if (n.incarnation != incarnation || n.state == NodeState::down) return;
  n.env->set_timer_virtual(std::max(time_us, now_us_), std::move(fn));
}

uint32_t Kernel::alloc_message(NodeIndex from, NodeIndex to, uint32_t to_incarnation,
                               std::span<const uint8_t> payload) {
  uint32_t slot;
  if (!free_messages_.empty()) {
    slot = free_messages_.back();
    free_messages_.pop_back();
  } else {
    slot = static_cast<uint32_t>(messages_.size());
    messages_.emplace_back();
  }
  Message& m = messages_[slot];
  m.from = from;
  m.to = to;
  m.to_incarnation = to_incarnation;
  m.payload.assign(payload.begin(), payload.end());  // reuses the slot's buffer: no allocation once warm
  return slot;
}

void Kernel::free_message(uint32_t slot) {
  messages_[slot].payload.clear();
  free_messages_.push_back(slot);
}

bool Kernel::step() {
  if (queue_.empty()) return false;
  Event e = queue_.top();
  queue_.pop();
  assert(e.time_us >= now_us_);
  now_us_ = e.time_us;
  ++events_processed_;
  dispatch(e);
  return true;
}

void Kernel::dispatch(const Event& e) {
  if (e.kind == EventKind::action) {
    Task fn = std::move(actions_[e.id]);
    actions_[e.id] = nullptr;
    free_actions_.push_back(e.id);
    record(TraceKind::action, kNoNode, kNoNode, e.id);
    fn();
    return;
  }
  Node& n = node(e.node);
  const bool stale = n.incarnation != e.incarnation || n.state == NodeState::down;
  if (stale) {
    if (e.kind == EventKind::deliver) {
      const Message& m = messages_[e.id];
      record(TraceKind::drop_down, m.from, m.to, fnv1a64(m.payload));
      free_message(static_cast<uint32_t>(e.id));
    }
    return;
  }
  if (n.state == NodeState::paused) {
    n.held.push_back(e);
    return;
  }
  SimEnv& env = *n.env;
  running_node_ = e.node;
  struct Clear {
    NodeIndex& r;
    ~Clear() { r = kNoNode; }
  } clear{running_node_};
  switch (e.kind) {
    case EventKind::timer:
      env.fire_timer(e.id);
      break;
    case EventKind::deliver: {
      // The slot is freed after the handler: sends made from it cannot reuse it meanwhile. The payload's
      // buffer stays put even if messages_ grows (moving a vector keeps its heap buffer).
      const uint32_t slot = static_cast<uint32_t>(e.id);
      const NodeIndex from = messages_[slot].from;
      const std::span<const uint8_t> payload(messages_[slot].payload);
      record(TraceKind::deliver, from, e.node, fnv1a64(payload));
      env.on_deliver(from, payload);
      free_message(slot);
      break;
    }
    case EventKind::connect_result:
      env.on_connect_result(e.id);
      break;
    case EventKind::reset_notify:
      env.on_reset(e.id);
      break;
    case EventKind::action:
      break;
  }
}

void Kernel::run_until(Duration t) {
  while (!queue_.empty() && queue_.top().time_us <= t.count()) step();
  if (t.count() > now_us_) now_us_ = t.count();
}

bool Kernel::run_until(const std::function<bool()>& pred, Duration t) {
  if (pred()) return true;
  while (!queue_.empty() && queue_.top().time_us <= t.count()) {
    step();
    if (pred()) return true;
  }
  if (t.count() > now_us_) now_us_ = t.count();
  return pred();
}

// --- trace

void Kernel::record(TraceKind kind, NodeIndex a, NodeIndex b, uint64_t detail) {
  // Two mixing rounds over all five fields (time fits in 56 bits for over 2,000 simulated years).
  const uint64_t h = hash_mix(trace_hash_, static_cast<uint64_t>(now_us_) ^ (static_cast<uint64_t>(kind) << 56));
  trace_hash_ = hash_mix(h, ((static_cast<uint64_t>(a) << 32) | b) ^ (detail * 0x9e3779b97f4a7c15ULL));
  ++trace_count_;
  if (options_.keep_trace && trace_.size() < options_.trace_records_max) {
    trace_.push_back(TraceRecord{now_us_, kind, a, b, detail});
    trace_hashes_.push_back(trace_hash_);
  }
}

std::string Kernel::describe(const TraceRecord& r) const {
  auto name = [&](NodeIndex i) {
    return i == kNoNode ? std::string("-") : (i < nodes_.size() ? nodes_[i].address : fmt::format("#{}", i));
  };
  return fmt::format("t={:.6f}s {} {} -> {} detail={:#x}", static_cast<double>(r.time_us) / 1e6, to_string(r.kind),
                     name(r.a), name(r.b), r.detail);
}

}  // namespace chorus::sim
