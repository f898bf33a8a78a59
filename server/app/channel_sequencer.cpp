#include "server/app/channel_sequencer.h"

#include "server/core/assert.h"

namespace chorus::app {

ChannelSequencer::ChannelSequencer(Env& env, SequencerOptions options, Deliver deliver, Reset reset, Fetch fetch)
    : env_(env), options_(options), deliver_(std::move(deliver)), reset_(std::move(reset)), fetch_(std::move(fetch)) {}

// Timers still armed find alive_ false and do nothing (as the node's other timers at its teardown).
ChannelSequencer::~ChannelSequencer() { *alive_ = false; }

int64_t ChannelSequencer::next(const std::string& channel) const {
  auto it = channels_.find(channel);
  return it == channels_.end() ? 0 : it->second.next;
}

size_t ChannelSequencer::held(const std::string& channel) const {
  auto it = channels_.find(channel);
  return it == channels_.end() ? 0 : it->second.held.size();
}

void ChannelSequencer::on_event(Event event) {
  if (event.post_seq > 0 && !event.broadcast.channel_id.empty()) {
    auto it = channels_.find(event.broadcast.channel_id);
    if (it != channels_.end() && (!it->second.held.empty() || it->second.fetching))
      return it->second.changes.push_back(std::move(event));
    return deliver_(event);
  }
  if (event.event != "posted" || event.channel_seq <= 0 || event.broadcast.channel_id.empty()) return deliver_(event);
  evict_idle();
  const std::string channel = event.broadcast.channel_id;
  Channel& o = channels_[channel];
  o.last_post = env_.now();
  if (o.recent_set.contains(event.post_id)) return;  // delivered already (read from the database to fill a gap)
  if (o.next == 0) {
    // The first post of this channel this node sees: others made just before it may still be on their
    // way. Everything is held for a moment (first_wait), then goes out in channel order.
    o.held.emplace(event.channel_seq, std::move(event));
    if (o.timer == 0)
      o.timer = env_.set_timer(options_.first_wait, [this, alive = alive_, channel] {
        if (!*alive) return;
        Channel& oo = channels_[channel];
        oo.timer = 0;
        if (oo.held.empty()) return;
        oo.next = oo.held.begin()->first;
        release_held(channel);
        arm_gap_timer(channel);  // a gap among what was gathered
      });
    return;
  }
  if (event.channel_seq == o.next) {
    deliver_post(o, event);
    return release_held(channel);
  }
  if (event.channel_seq < o.next) {
    // Late, and its place was not filled (this node started after it was made, or the master was away
    // when the gap was filled): delivering it now would break the channel's order, dropping it would
    // lose it. Its recipients' connections reset, so their clients re-sync.
    ++late_resets_;
    const size_t n = reset_(event);
    if (n > 0)
      env_.log().info(
          "app: post {} came after its place in channel {}: {} WebSocket connections reset so their clients re-sync",
          event.post_id, channel, n);
    return;
  }
  o.held.emplace(event.channel_seq, std::move(event));
  arm_gap_timer(channel);
}

void ChannelSequencer::evict_idle() {
  const MonoTime now = env_.now();
  if (now - last_sweep_ < options_.idle_evict / 4) return;
  last_sweep_ = now;
  for (auto it = channels_.begin(); it != channels_.end();) {
    const Channel& c = it->second;
    if (c.held.empty() && c.timer == 0 && !c.fetching && now - c.last_post >= options_.idle_evict) {
      it = channels_.erase(it);
      ++evicted_;
    } else {
      ++it;
    }
  }
}

void ChannelSequencer::arm_gap_timer(const std::string& channel) {
  Channel& o = channels_[channel];
  if (o.timer != 0 || o.fetching || o.held.empty()) return;
  o.timer = env_.set_timer(options_.gap_wait, [this, alive = alive_, channel] {
    if (!*alive) return;
    channels_[channel].timer = 0;
    fill_gap(channel);
  });
}

void ChannelSequencer::deliver_post(Channel& o, const Event& event) {
  deliver_(event);
  const int64_t before = o.next;
  o.next = std::max(o.next, event.channel_seq + 1);
  CHORUS_ASSERT(o.next >= before && o.next > 0, "channel order went from {} to {}", before, o.next);
  o.last_create_at = std::max(o.last_create_at, event.create_at);
  if (!event.post_id.empty() && o.recent_set.insert(event.post_id).second) {
    o.recent.push_back(event.post_id);
    while (o.recent.size() >
           options_.recent_max) {  // beyond this a late event resets its recipients instead (safe, rarer)
      o.recent_set.erase(o.recent.front());
      o.recent.pop_front();
    }
  }
}

void ChannelSequencer::release_held(const std::string& channel) {
  Channel& o = channels_[channel];
  if (o.next == 0) return;  // still gathering the first posts
  while (!o.held.empty() && o.held.begin()->first <= o.next) {
    Event e = std::move(o.held.begin()->second);
    o.held.erase(o.held.begin());
    if (!o.recent_set.contains(e.post_id)) deliver_post(o, e);
  }
  if (o.held.empty() && o.timer) {
    env_.cancel_timer(o.timer);
    o.timer = 0;
  }
  release_changes(o);
  CHORUS_ASSERT(o.timer == 0 || !o.held.empty(), "channel {}: a timer armed with nothing held", channel);
  CHORUS_ASSERT(o.held.empty() || o.held.begin()->first > o.next, "channel {}: seq {} held at or below next {}",
                channel, o.held.begin()->first, o.next);
}

void ChannelSequencer::release_changes(Channel& o) {
  if (!o.held.empty() || o.fetching) return;
  while (!o.changes.empty()) {
    Event e = std::move(o.changes.front());
    o.changes.pop_front();
    deliver_(e);
  }
}

// The posts between the last delivered and the first waiting one, from the master, delivered in their
// place (their own events, when they come, are dropped). Then what waited goes.
void ChannelSequencer::fill_gap(const std::string& channel) {
  Channel& o = channels_[channel];
  if (o.held.empty() || o.fetching) return;
  o.fetching = true;
  const int64_t upto = o.held.begin()->second.create_at;
  const int64_t upto_seq = o.held.begin()->first;
  fetch_(channel, o.last_create_at, upto,
         [this, alive = alive_, channel, upto_seq](std::optional<std::vector<Event>> filled) {
           if (!*alive) return;
           Channel& oo = channels_[channel];
           oo.fetching = false;
           if (!filled && !oo.held.empty()) {
             // Unreadable (the master is away): try again after gap_wait, up to fill_attempts in all. Then
             // what waited goes out rather than wait on, and its recipients' connections reset first, so
             // their clients re-sync and get the posts of the gap over REST: skipped, never lost.
             if (++oo.fill_failures < options_.fill_attempts) return arm_gap_timer(channel);
             ++gaps_reset_;
             const size_t n = reset_(oo.held.begin()->second);
             env_.log().warn(
                 "app: the posts before {} in channel {} could not be read after {} attempts: {} "
                 "WebSocket connections reset so their clients re-sync",
                 oo.held.begin()->second.post_id, channel, oo.fill_failures, n);
           }
           oo.fill_failures = 0;
           if (filled)
             for (auto& e : *filled)
               if (!oo.recent_set.contains(e.post_id)) {
                 ++posts_filled_;
                 deliver_post(oo, e);
               }
           oo.next = std::max(oo.next, upto_seq);
           release_held(channel);
           if (!oo.held.empty() && oo.timer == 0) fill_gap(channel);  // another gap further on
         });
}

}  // namespace chorus::app
