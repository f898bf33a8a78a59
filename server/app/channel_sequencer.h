// Every node delivers a channel's posts to its WebSocket clients in the channel's commit order, whichever
// nodes the posts were made on and in whatever order their events arrive (docs/api.md).
//
// A posted event carries its channel_seq: the channel's post count from the post's own transaction. The
// sequencer delivers seq `next`, then `next + 1`, ...:
//   - the first post of a channel this node sees waits `first_wait` for others made just before it, then
//     the gathered posts go out in order (a gap among them is treated as below);
//   - a post ahead of a gap waits `gap_wait`; then the missing posts (create_at between the last one
//     delivered and the waiting one) are fetched from the master and delivered in their place, and what
//     waited follows; their own events, if they come later, are dropped (the last `recent_max` delivered
//     post ids are remembered); a read that fails is tried again `gap_wait` later, and after
//     `fill_attempts` failures what waited goes out and its recipients' connections are reset (below);
//   - a post that comes after its place was passed (its gap was filled without it, the master being
//     away, or it is older than what is remembered) cannot be delivered in order and must not be lost:
//     its recipients' connections are reset, so their clients re-sync.
// A change of a post (post_seq set: an edit, delete or reaction) that comes while the channel has posts
// held or a gap being read waits behind them, in arrival order, and goes out once nothing is held: a
// change made a moment after its post (a reaction to a post seconds old) then never reaches a socket
// before the post (which the hub would have to answer with a reset). Other events that are not posts
// (or carry no seq) go straight through.
//
// Bounded: a channel with nothing held, no timer and no fetch under way, and no post for `idle_evict`, is
// forgotten (swept at most once per `idle_evict / 4`, on a post's arrival: no timer of its own). Its next
// post is then "the first post of a channel this node sees" again. A duplicate of a post delivered before
// the eviction would go out twice; the messenger drops duplicates within a stream, so that needs a
// stream replaced in the middle of an idle period of `idle_evict` (10 minutes by default).
//
// Runs on the node's loop; all I/O is the caller's (deliver, reset, fetch). Used by app::App; tested
// directly with crafted event orders (tests/channel_sequencer_test.cpp).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/app/hub.h"
#include "server/core/env.h"

namespace chorus::app {

struct SequencerOptions {
  Duration gap_wait{300'000};        // a post ahead of a gap waits this long for the missing ones
  Duration first_wait{50'000};       // the first post of a channel seen here waits this long for earlier ones
  size_t recent_max = 64;            // delivered post ids remembered per channel (a late duplicate is dropped)
  Duration idle_evict{600'000'000};  // an idle channel's entry is forgotten after this long
  int fill_attempts = 3;             // reads of a gap (gap_wait apart) before its recipients are reset
};

class ChannelSequencer {
 public:
  using Deliver = std::function<void(const Event&)>;
  // A post came after its place: reset its recipients' connections; returns how many.
  using Reset = std::function<size_t(const Event&)>;
  // The posts of `channel` with after < create_at < before, oldest first, as events to deliver; nullopt
  // when they cannot be read (tried again; in the end the waiting posts go out and their recipients reset).
  using Fetched = std::function<void(std::optional<std::vector<Event>>)>;
  using Fetch = std::function<void(const std::string& channel, int64_t after, int64_t before, Fetched done)>;

  ChannelSequencer(Env& env, SequencerOptions options, Deliver deliver, Reset reset, Fetch fetch);
  ~ChannelSequencer();
  ChannelSequencer(const ChannelSequencer&) = delete;
  ChannelSequencer& operator=(const ChannelSequencer&) = delete;

  void on_event(Event event);

  uint64_t posts_filled() const { return posts_filled_; }  // delivered from a fetch
  uint64_t late_resets() const { return late_resets_; }    // posts that came after their place
  uint64_t gaps_reset() const { return gaps_reset_; }      // gaps unreadable fill_attempts times
  uint64_t evicted() const { return evicted_; }            // idle channels forgotten
  size_t channels() const { return channels_.size(); }
  // The next seq to deliver in `channel` (0: none seen yet), and how many wait: for tests and reports.
  int64_t next(const std::string& channel) const;
  size_t held(const std::string& channel) const;

 private:
  struct Channel {
    int64_t next = 0;               // the seq to deliver next (0: nothing seen yet)
    int64_t last_create_at = 0;     // of the last post delivered
    std::map<int64_t, Event> held;  // ahead of a gap, by seq
    TimerId timer = 0;
    bool fetching = false;
    int fill_failures = 0;           // reads of the current gap that failed
    std::deque<std::string> recent;  // post ids delivered lately (oldest first)
    std::deque<Event> changes;       // post changes waiting for what is held (arrival order)
    std::set<std::string> recent_set;
    MonoTime last_post;  // when its last post arrived
  };
  void evict_idle();
  void deliver_post(Channel& c, const Event& event);
  void release_held(const std::string& channel);
  void release_changes(Channel& c);
  void arm_gap_timer(const std::string& channel);
  void fill_gap(const std::string& channel);

  Env& env_;
  SequencerOptions options_;
  Deliver deliver_;
  Reset reset_;
  Fetch fetch_;
  std::map<std::string, Channel> channels_;
  uint64_t posts_filled_ = 0, late_resets_ = 0, evicted_ = 0, gaps_reset_ = 0;
  MonoTime last_sweep_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::app
