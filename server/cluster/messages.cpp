#include "server/cluster/messages.h"

#include <algorithm>

#include "server/core/assert.h"
#include "server/core/codec.h"
#include "server/core/transport.h"

namespace chorus::cluster {

namespace {
constexpr uint8_t kData = to_byte(FrameType::message_data), kAck = to_byte(FrameType::message_ack);
constexpr uint8_t kReliable = 1;

std::vector<uint8_t> encode(uint64_t stream, uint64_t seq, bool reliable, const ClusterMessage& m) {
  ByteWriter w;
  w.u8(kData);
  w.u64(stream);
  w.varint(seq);
  w.u8(reliable ? kReliable : 0);
  w.str(m.event);
  w.str(m.data);
  w.varint(m.props.size());
  for (const auto& [k, v] : m.props) {
    w.str(k);
    w.str(v);
  }
  return w.take();
}
}  // namespace

Messenger::Messenger(Env& env, Membership& membership, MessengerOptions options)
    : env_(env), membership_(membership), options_(options) {
  timer_ = env_.set_timer(options_.retry_interval, [this] { retransmit(); });
}

Messenger::~Messenger() {
  *alive_ = false;
  if (timer_) env_.cancel_timer(timer_);
  for (auto& [id, p] : pending_)
    if (p.timer) env_.cancel_timer(p.timer);
}

namespace {
// Props that carry the request/response correlation; callers' props never start with "_".
constexpr const char* kRequestId = "_request";
constexpr const char* kReplyTo = "_reply_to";
constexpr std::string_view kOpen =
    name(ClusterEvent::open);              // opens a stream (see on_member_change); never handed to subscribers
constexpr const char* kMissed = "missed";  // on _open: the sender dropped or skipped reliable messages for us
}  // namespace

void Messenger::serve(const std::string& event, Responder respond) { responders_[event] = std::move(respond); }

void Messenger::request(const ClusterMessage& request, Duration timeout, std::function<void(Replies)> done,
                        std::vector<std::string> peers) {
  if (peers.empty())
    for (const auto& [addr, m] : membership_.members())
      if (m.state != MemberState::dead) peers.push_back(addr);
  const uint64_t id = next_request_++;
  Pending& p = pending_[id];
  p.done = std::move(done);
  ClusterMessage m = request;
  m.props[kRequestId] = std::to_string(id);
  const auto& members = membership_.members();
  for (const auto& peer : peers) {
    auto known = members.find(peer);
    const bool live = known != members.end() && known->second.state != MemberState::dead;
    if (live && enqueue(peer, m, Delivery::reliable, nullptr))
      p.waiting.insert(peer);
    else
      p.replies.missing.push_back(peer);
  }
  if (p.waiting.empty()) {
    env_.post([this, id, alive = alive_] {
      if (*alive) finish(id);
    });
    return;
  }
  p.timer = env_.set_timer(timeout, [this, id] {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    it->second.timer = 0;
    finish(id);
  });
}

void Messenger::finish(uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer) env_.cancel_timer(p.timer);
  for (const auto& peer : p.waiting) p.replies.missing.push_back(peer);
  std::sort(p.replies.missing.begin(), p.replies.missing.end());
  p.done(std::move(p.replies));
}

void Messenger::on_request(const std::string& from, const ClusterMessage& message) {
  auto it = responders_.find(message.event);
  const std::string id = message.props.at(kRequestId);
  auto reply = [this, from, id, event = message.event, alive = alive_,
                once = std::make_shared<bool>(false)](ClusterMessage answer) {
    if (!*alive || *once) return;
    *once = true;
    answer.event = event;
    answer.props[kReplyTo] = id;
    enqueue(from, answer, Delivery::reliable, nullptr);
  };
  if (it == responders_.end()) {
    env_.log().warn("messages: {} asked for \"{}\", which this node does not serve", from, message.event);
    reply(ClusterMessage{"", "", {{"error", "not served"}}});
    return;
  }
  ClusterMessage request = message;
  request.props.erase(kRequestId);
  it->second(from, request, reply);
}

void Messenger::on_reply(const std::string& from, const ClusterMessage& message) {
  uint64_t id = 0;
  try {
    id = std::stoull(message.props.at(kReplyTo));
  } catch (const std::exception&) {
    return;
  }
  auto it = pending_.find(id);
  if (it == pending_.end() || !it->second.waiting.erase(from)) return;  // late, or not asked
  ClusterMessage reply = message;
  reply.props.erase(kReplyTo);
  it->second.replies.replies[from] = std::move(reply);
  if (it->second.waiting.empty()) finish(id);
}

void Messenger::subscribe(const std::string& event, Handler handler) { handlers_.emplace(event, std::move(handler)); }

void Messenger::settle(const std::shared_ptr<Waiter>& w) {
  if (w && w->remaining > 0 && --w->remaining == 0 && w->done) {
    auto done = std::move(w->done);
    w->done = nullptr;
    done();
  }
}

bool Messenger::enqueue(const std::string& peer, const ClusterMessage& message, Delivery delivery,
                        const std::shared_ptr<Waiter>& waiter) {
  if (message.data.size() > options_.data_size_max) {
    env_.log().warn("messages: refused a {} message of {} bytes (limit {})", message.event, message.data.size(),
                    options_.data_size_max);
    return false;
  }
  ++stats_.sent;
  if (delivery == Delivery::best_effort) {
    env_.transport().send(peer, encode(0, 0, false, message));
    return true;
  }
  // A stream belongs to one life of the peer: it begins anew when the peer's generation changes
  // (on_member_change). A peer whose generation we do not know yet (a seed address not heard from) gets
  // no stream: its acknowledgements could come from an earlier life, and a stream the earlier life
  // acknowledged would then stall the new one forever (random-faults seed 42902). It is told what it
  // missed when it is heard from (the _open).
  auto member = membership_.members().find(peer);
  if (member == membership_.members().end() || member->second.generation == 0) {
    ++stats_.refused_unknown;
    missed_.insert(peer);
    return false;
  }
  Out& out = out_[peer];
  if (out.unacked.size() >= options_.queue_max) {
    // Refused: the peer would miss it without knowing (a post's event lost for every client there). As
    // for a peer declared dead, its stream ends - what it had not acknowledged is dropped, the waiters are
    // told - and a new one begins, whose opening says it missed messages: its node resets its clients
    // when the new stream reaches it, and they re-sync. The queue then holds one message, not queue_max.
    ++stats_.refused_full;
    env_.log().warn(
        "messages: the queue to {} is full ({} unacknowledged): refused a {} message; a new stream "
        "begins, so the peer's clients re-sync",
        peer, out.unacked.size(), message.event);
    drop_stream(peer);
    open_stream(peer);
    return false;
  }
  if (out.stream == 0) out.stream = new_stream();
  const uint64_t seq = out.next_seq++;
  Outgoing o{seq, env_.now(), encode(out.stream, seq, true, message), {}};
  if (waiter) o.waiters.push_back(waiter);
  env_.transport().send(peer, o.frame);
  CHORUS_ASSERT(out.unacked.empty() || out.unacked.back().seq < seq, "seq {} after {}", seq, out.unacked.back().seq);
  out.unacked.push_back(std::move(o));
  CHORUS_ASSERT(out.unacked.size() <= options_.queue_max);
  return true;
}

uint64_t Messenger::new_stream() {
  if (options_.random_stream_ids) return env_.random().next_u64() | 1;  // the injected bug (see MessengerOptions)
  if (life_ == 0 || counter_of(streams_begun_ + 1) == 0) {  // first stream, or the counter wrapped: a new life
    life_ = (env_.random().next_u64() >> 24) | 1;
    streams_begun_ = 0;
  }
  ++streams_begun_;
  return (life_ << 24) | streams_begun_;
}

bool Messenger::is_stale(const In& in, uint64_t stream) {
  if (std::find(in.retired_lives.begin(), in.retired_lives.end(), life_of(stream)) != in.retired_lives.end())
    return true;
  return in.stream != 0 && life_of(stream) == life_of(in.stream) && counter_of(stream) < counter_of(in.stream);
}

size_t Messenger::send_to_all(const ClusterMessage& message, Delivery delivery, std::function<void()> all_done) {
  std::vector<std::string> peers;
  for (const auto& [addr, m] : membership_.members()) {
    if (m.state != MemberState::dead)
      peers.push_back(addr);
    else if (delivery == Delivery::reliable)
      missed_.insert(addr);  // told when it is held alive again
  }
  // (best effort frames carry stream 0: they are not numbered)
  std::shared_ptr<Waiter> waiter;
  if (all_done && delivery == Delivery::reliable)
    waiter = std::make_shared<Waiter>(Waiter{peers.size() + 1, std::move(all_done)});
  size_t queued = 0;
  for (const auto& p : peers) {
    if (enqueue(p, message, delivery, waiter))
      ++queued;
    else
      settle(waiter);  // refused for this peer: it will never acknowledge
  }
  settle(waiter);  // the +1: every peer has been given its share
  return queued;
}

bool Messenger::send_to(const std::string& peer, const ClusterMessage& message, Delivery delivery) {
  return enqueue(peer, message, delivery, nullptr);
}

size_t Messenger::queued(const std::string& peer) const {
  auto it = out_.find(peer);
  return it == out_.end() ? 0 : it->second.unacked.size();
}

Duration Messenger::oldest_unacked_age(const std::string& peer) const {
  auto it = out_.find(peer);
  if (it == out_.end() || it->second.unacked.empty()) return Duration{0};
  return env_.now() - it->second.unacked.front().queued_at;
}

void Messenger::retransmit() {
  timer_ = env_.set_timer(options_.retry_interval, [this] { retransmit(); });
  for (auto& [peer, out] : out_) {
    // The oldest few unacknowledged: enough to fill a gap; the ack then moves the window.
    size_t n = 0;
    for (auto& o : out.unacked) {
      if (++n > 64) break;
      env_.transport().send(peer, o.frame);
      ++stats_.retransmitted;
    }
  }
}

void Messenger::on_member_change(const Member& member) {
  // A peer declared dead, or restarted (a new generation: its memory of our stream is gone), gets a
  // fresh stream; what it had not acknowledged is lost for it, and its waiters are told.
  // A generation of 0 is not known yet (a seed address, or one we suspected before hearing from it):
  // no restart can be told from it, and it is not held alive until it is heard from.
  uint64_t& known = generations_[member.address];
  const bool restarted = known != 0 && member.generation != 0 && member.generation != known;
  if (member.generation != 0) known = member.generation;
  const bool alive = member.state != MemberState::dead && member.generation != 0;
  auto was = held_alive_.try_emplace(member.address, false).first;
  const bool opens = alive && (!was->second || restarted);  // first sight, back from the dead, or a new life
  was->second = alive;
  if (opens) {
    if (restarted) drop_stream(member.address);
    open_stream(member.address);  // now rather than with the next real message
  }
  if (alive) return;
  drop_stream(member.address);
}

// The opening of a stream says whether the peer missed anything: a reliable message dropped
// unacknowledged or refused, or one sent to everyone while the peer was held dead or unknown.
void Messenger::open_stream(const std::string& peer) {
  ClusterMessage open = ClusterMessage::of(ClusterEvent::open);
  if (missed_.erase(peer)) open.props[kMissed] = "1";
  enqueue(peer, open, Delivery::reliable, nullptr);
}

void Messenger::drop_stream(const std::string& peer) {
  std::vector<uint64_t> settled;
  for (auto& [id, p] : pending_)
    if (p.waiting.erase(peer)) {
      p.replies.missing.push_back(peer);
      if (p.waiting.empty()) settled.push_back(id);
    }
  for (uint64_t id : settled) finish(id);
  auto it = out_.find(peer);
  if (it == out_.end()) return;
  if (!it->second.unacked.empty()) missed_.insert(peer);
  for (auto& o : it->second.unacked) {
    ++stats_.dropped_peer_dead;
    for (auto& w : o.waiters) settle(w);
  }
  out_.erase(it);
}

void Messenger::deliver(const std::string& from, const ClusterMessage& message) {
  if (message.event == kOpen) {
    // The sender says we missed something (a reliable message dropped unacknowledged, or sent to all
    // while it held us dead): our clients re-sync. Not when this _open began a stream that replaced
    // another: that switch reset them already, after everything the _open reports. An _open later in
    // its stream does need it: the stream began before the losses it reports (a reply sent while the
    // sender held us dead opened it; random-faults seed 43735).
    const In& in = in_[from];
    const bool covered_by_switch = in.told && in.delivered == 0;
    if (message.props.contains(kMissed) && !covered_by_switch && on_new_stream_) on_new_stream_(from, false);
    return;
  }
  ++stats_.delivered;
  if (message.props.contains(kRequestId)) return on_request(from, message);
  if (message.props.contains(kReplyTo)) return on_reply(from, message);
  auto range = handlers_.equal_range(message.event);
  for (auto it = range.first; it != range.second; ++it) it->second(from, message);
  if (!message.event.empty()) {
    auto all = handlers_.equal_range("");
    for (auto it = all.first; it != all.second; ++it) it->second(from, message);
  }
}

bool Messenger::handle_frame(const std::string& from, std::span<const uint8_t> payload) {
  if (payload.empty() || (payload[0] != kData && payload[0] != kAck)) return false;
  ByteReader r(payload);
  const uint8_t type = r.u8();
  if (type == kAck) {
    const uint64_t stream = r.u64();
    const uint64_t upto = r.varint();
    if (!r.done()) {
      env_.log().warn("messages: dropped a malformed ack from {}", from);
      return true;
    }
    auto it = out_.find(from);
    if (it == out_.end() || stream != it->second.stream) return true;  // for a stream we have reset
    auto& q = it->second.unacked;
    while (!q.empty() && q.front().seq <= upto) {
      for (auto& w : q.front().waiters) settle(w);
      q.pop_front();
    }
    return true;
  }
  const uint64_t stream = r.u64();
  const uint64_t seq = r.varint();
  const uint8_t flags = r.u8();
  ClusterMessage m;
  m.event = r.str(255);
  m.data = r.str(options_.data_size_max);
  const uint64_t nprops = r.varint();
  for (uint64_t i = 0; i < nprops && i < 256 && r.ok(); ++i) {
    std::string k = r.str(255);
    m.props[k] = r.str(64 * 1024);
  }
  if (!r.done() || nprops > 256) {
    env_.log().warn("messages: dropped a malformed message of {} bytes from {}", payload.size(), from);
    return true;
  }
  if (!(flags & kReliable)) {
    deliver(from, m);
    return true;
  }
  In& in = in_[from];
  if (in.stream != stream) {  // the sender restarted, or declared us dead (or this is the first we hear): a new stream
    if (is_stale(in, stream)) {
      ++stats_.stale_stream;  // a late frame of a stream the sender has replaced
      return true;
    }
    const bool replaced = in.stream != 0;
    auto retired = std::move(in.retired_lives);
    if (replaced && life_of(in.stream) != life_of(stream)) retired.push_back(life_of(in.stream));
    while (retired.size() > 16) retired.pop_front();
    in = In{};
    in.stream = stream;
    in.retired_lives = std::move(retired);
    ++stats_.streams_begun;
    in.told = replaced;
    if (replaced && on_new_stream_) on_new_stream_(from, true);
  }
  if (seq <= in.delivered) {
    ++stats_.duplicates;
  } else if (seq == in.delivered + 1) {
    deliver(from, m);
    in.delivered = seq;
    for (auto e = in.early.begin(); e != in.early.end() && e->first == in.delivered + 1; e = in.early.erase(e)) {
      deliver(from, e->second);
      in.delivered = e->first;
    }
  } else if (seq - in.delivered <= options_.receive_window) {
    if (!in.early.emplace(seq, std::move(m)).second) ++stats_.duplicates;
  }  // beyond the window: dropped; the sender retransmits it later
  if (options_.no_acks) return true;  // the injected bug (MessengerOptions::no_acks)
  ByteWriter w;
  w.u8(kAck);
  w.u64(stream);
  w.varint(in.delivered);
  env_.transport().send(from, w.bytes());
  return true;
}

}  // namespace chorus::cluster
