// The WebSocket hub: this node's connections, the events they are sent, and the queues that let a
// client resume after a reconnect - on this node or, through the cluster, on another.
//
// Every event sent on a connection gets the next sequence number of that connection (hello is 0) and is
// kept in the connection's dead queue (the last 128). When the socket goes, the connection turns
// inactive: events still queue up, numbered, for `inactive_keep`. A client that reconnects with
// connection_id and sequence_number gets everything from that number on and no hello; a number no
// longer held (or an unknown connection) gets a new connection and a hello at 0, and the client re-syncs
// over REST. export_queue/import_queue hand an inactive connection to the node the client came back to.
//
// Slow consumers: a connection whose socket has `send_queue_max / 2` frames waiting loses typing and
// status_change events (they take no sequence number); one with `send_queue_max` waiting is closed and
// turns inactive, so its client resumes from the dead queue.
//
// Sockets stay out: a connection is reached through a ConnectionSink (server/api adapts the runtime's
// or the simulator's socket to it). On the node's loop only.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/json/object.hpp>

#include "server/core/env.h"

namespace chorus::app {

struct Broadcast {
  std::string user_id, channel_id, team_id;
  std::vector<std::string> omit_users;
};

struct Event {
  std::string event;
  boost::json::object data;
  Broadcast broadcast;
  std::vector<std::string> recipients;  // user ids, resolved by the publisher (empty: broadcast.user_id)
  bool reliable = false;                // across the cluster
  std::string id;  // unique per publication (set by the publisher): a connection never gets one event twice
  // A posted event's place in its channel (the channel's post count after this post, and its create_at,
  // both from the post's transaction): every node delivers a channel's posts in this order.
  int64_t channel_seq = 0;
  int64_t create_at = 0;
  std::string post_id;
  // An event about one user's own state (preferences, views): the user's event count after this change,
  // from the change's transaction (Users.EventSeq). Events of one user published by different nodes can
  // cross on the way (a partition holds one back); a hub that delivered a later one resets the user's
  // connections instead of delivering an earlier one late, so the apps re-read and never keep an old value.
  int64_t user_seq = 0;
  // A change to a post (post_edited, post_deleted, reaction_added, reaction_removed; post_id set): the
  // post's update_at after it, strictly increasing per post (the change's transaction moves it). Changes
  // of one post made on different nodes can cross on the way: a hub delivers a post's changes in this
  // order, drops a second copy of one it delivered, and resets the recipients' connections instead of
  // delivering one that comes after a later one (or a posted event that comes after a change of its post).
  int64_t post_seq = 0;
  bool droppable() const { return event == "typing" || event == "status_change"; }

  std::string to_cluster() const;
  static std::optional<Event> from_cluster(const std::string& text);

  // The frame up to its seq, serialized once for every connection it goes to (event_frame appends the
  // seq): a post to a channel of N members is serialized once, not N times.
  // Filled on first use: the event must not change once it is being sent.
  const std::string& frame_prefix() const;
  mutable std::string frame_prefix_cache;  // an aggregate keeps its members public
};

class ConnectionSink {
 public:
  virtual ~ConnectionSink() = default;
  virtual void send_text(std::string text) = 0;
  virtual size_t queued_frames() const = 0;
  virtual void close(uint16_t code, std::string reason) = 0;
};

struct HubOptions {
  size_t send_queue_max = 256;
  size_t dead_queue_max = 128;
  Duration inactive_keep{300'000'000};  // 5 min
  size_t connections_max = 200'000;     // active and inactive
  size_t inactive_per_user_max = 32;    // a client reconnecting in a loop cannot pile them up
  Duration export_watch{30'000'000};    // events for a handed-over connection's user are reported this long
  // A reported event may still be on its way here (a sequencer holds posts for their order): the
  // connection is checked again this long after the report, and reset only if it still lacks the event.
  Duration missed_grace{1'000'000};
  std::string server_version = "0.0.0";
  std::string hostname;
};

class Hub {
 public:
  Hub(Env& env, HubOptions options);
  ~Hub();

  struct Opened {
    std::string connection_id;
    bool resumed = false;
    int64_t replayed = 0;  // events resent from the dead queue
  };
  // An authenticated connection. See the header comment for resume; a connection of another user is
  // never resumed.
  Opened open(const std::string& user_id, const std::string& session_token, ConnectionSink* sink,
              const std::string& connection_id, int64_t sequence_number);
  // The socket is gone (closed by either side): the connection turns inactive, unless it has moved to
  // another socket meanwhile (a resume).
  void closed(const std::string& connection_id, const ConnectionSink* sink);
  // Sends to this node's connections of the recipients (minus omit_users).
  void deliver(const Event& event);
  // Closes and forgets the connections of a user (all sessions, or only the one with that token).
  void revoke(const std::string& user_id, const std::string& session_token = "");
  // Going away: every active connection is closed with 1001.
  void shutdown();
  // Events may have been lost (a peer died or restarted with messages for us in flight): every
  // connection is forgotten and its socket closed (1012), so each client reconnects, gets a new
  // connection and a hello, and re-syncs over REST. Returns how many connections were reset.
  size_t reset_all();
  // The same for these users' connections only (a post reached them out of its channel's order).
  size_t reset_users(const std::vector<std::string>& user_ids);

  bool holds(const std::string& connection_id) const { return conns_.contains(connection_id); }
  // The session tokens of the active connections (token -> user), to check them against the database.
  std::map<std::string, std::string> tokens() const;
  // A connection of this user is being fetched from a peer: events for the user meanwhile would be
  // missing from it. end_import says whether any arrived (then the import must not be resumed).
  void begin_import(const std::string& user_id) { ++importing_[user_id].pending; }
  bool end_import(const std::string& user_id);
  void forget(const std::string& connection_id) { drop(connection_id); }
  // An inactive connection of that user, serialized, and forgotten here; nullopt if not held or active.
  // For `export_watch` afterwards, an event for that user that reaches this hub is reported through
  // on_missed_after_export (to: the node it went to): it may have reached the new node before its import
  // began, and then neither copy of the connection has it.
  std::optional<std::string> export_queue(const std::string& connection_id, const std::string& user_id,
                                          const std::string& to = "");
  using MissedAfterExport = std::function<void(const std::string& to, const std::string& connection_id,
                                               const std::string& user_id, const std::string& event_id)>;
  void on_missed_after_export(MissedAfterExport callback) { on_missed_after_export_ = std::move(callback); }
  // The node that exported a connection we imported reports an event it got afterwards: if the
  // connection still lacks it after missed_grace, it is reset (closed 1012 and forgotten, so the client
  // re-syncs); if the import is still under way, it is not resumed. True when it is checked or tainted.
  bool missed_after_export(const std::string& connection_id, const std::string& user_id, const std::string& event_id);
  // Takes over a connection exported by a peer (then open() can resume it). False on bad input.
  bool import_queue(const std::string& text);

  struct Stats {
    uint64_t opened = 0, resumed = 0, sent = 0, dropped_slow = 0, closed_slow = 0, expired = 0;
    uint64_t late_user_events = 0;  // a user's event that came after a later one: the user's connections reset
    uint64_t missed_after_export = 0;  // imported connections reset: an event reached only the exporter
    uint64_t late_post_changes = 0;    // a post's change (or post) that came after a later change: recipients reset
    uint64_t duplicate_post_changes = 0;  // a change delivered here already (a republication): dropped
    size_t active = 0, inactive = 0;
  };
  Stats stats() const;

 private:
  struct Sent {
    int64_t seq;
    std::string text;      // the frame as sent
    std::string event_id;  // to refuse a second copy of the same event
    uint64_t id_hash = 0;  // of event_id: compared first (a send scans the dead queue)
  };
  struct Conn {
    std::string id, user_id, token;
    int64_t next_seq = 0;
    std::deque<Sent> dead;           // oldest first
    ConnectionSink* sink = nullptr;  // null while inactive
    MonoTime inactive_since{};
  };
  void send(Conn& c, const Event& e, bool first = false);
  void drop(const std::string& connection_id);
  void sweep();
  void expire();
  void make_room(const std::string& user_id);

  Env& env_;
  HubOptions options_;
  std::map<std::string, Conn> conns_;
  std::map<std::string, std::set<std::string>> by_user_;
  // Per user and kind of event: the last user_seq delivered here and when (the sweep forgets it after
  // inactive_keep).
  std::unordered_map<std::string, std::pair<int64_t, MonoTime>> user_seqs_;
  // Per post that changed: the last post_seq delivered here and when (forgotten as user_seqs_ are).
  std::unordered_map<std::string, std::pair<int64_t, MonoTime>> post_seqs_;
  // False when the event must not be delivered (a duplicate, or late: its recipients are reset).
  bool in_post_order(const Event& e, const std::vector<std::string>& users);
  TimerId sweep_timer_ = 0;
  Stats stats_;
  struct Importing {
    int pending = 0;
    bool tainted = false;
  };
  std::map<std::string, Importing> importing_;
  struct Exported {
    std::string connection_id, to;
    MonoTime at;
  };
  std::map<std::string, std::vector<Exported>> exported_;  // by user, for export_watch
  MissedAfterExport on_missed_after_export_;
  bool has_event(const std::string& connection_id, const std::string& user_id, const std::string& event_id) const;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// One event as a client receives it: {"event","data","broadcast","seq"}.
std::string event_frame(const Event& event, int64_t seq);

}  // namespace chorus::app
