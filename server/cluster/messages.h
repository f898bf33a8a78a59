// Cluster messages between nodes: best effort, or reliable (ordered per peer, retried until
// acknowledged or the peer is declared dead), with bounded queues and an option to learn when every
// peer has the message. As in Mattermost, a message is an event name, data and string properties;
// receivers never send a received message on. Events (publish, update_status, inv_*, config_changed,
// ...) are the callers' business: this layer only carries them.
//
// Reliable delivery: each sender numbers its messages per receiver within a stream, begun anew when
// either side restarts or the sender declares the receiver dead, so numbering never mixes two streams.
// A stream id is the sender's life (40 random bits, drawn once per process) and a counter of the
// streams that life began (24 bits): a receiver can tell a newer stream from a late frame of an older one
// (random-faults seed 3077: a late first frame of a dropped stream, taken for a new one, retired the live
// stream for good). A sender opens a stream (an internal "_open" message) as soon as it holds a peer
// alive, so the peer learns at once that messages sent while it was dead or unknown never came
// (random-faults seed 14211: a restarted node's clients missed a post a peer made before it saw the node). The receiver
// delivers in sequence, holds a bounded window of early arrivals, drops duplicates, and acknowledges cumulatively. The
// sender retransmits what is unacknowledged every retry interval. A peer declared dead gets nothing more: its queue is
// dropped and the waiters are told. Frames: 0x30 data, 0x31 ack.
//
// Request/response pairs (cluster_stats, ws_queues, ...): a request goes reliably to the chosen peers
// with a request id in its props; each peer's server for that event answers once, reliably, and the
// asker collects the replies until every peer has answered, has been declared dead, or the timeout
// passes. The caller then gets what came and learns which peers stayed silent: never a hang.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "server/cluster/membership.h"
#include "server/cluster/wire.h"
#include "server/core/env.h"

namespace chorus::cluster {

struct ClusterMessage {
  std::string event;  // a ClusterEvent's name (server/cluster/wire.h); empty in a reply
  std::string data;
  std::map<std::string, std::string> props;

  static ClusterMessage of(ClusterEvent e, std::string data = {}, std::map<std::string, std::string> props = {}) {
    return ClusterMessage{std::string(name(e)), std::move(data), std::move(props)};
  }
  // The event, when this version knows its name.
  std::optional<ClusterEvent> kind() const { return cluster_event(event); }
};

enum class Delivery { best_effort, reliable };

struct MessengerOptions {
  Duration retry_interval{200'000};
  size_t queue_max = 10'000;        // unacknowledged reliable messages per peer
  size_t receive_window = 1'024;    // early arrivals held per sender
  size_t data_size_max = 1u << 20;  // bytes of data in one message
  // An injected bug for the simulator's tests (chorus-sim --bug random_stream_ids): stream ids drawn at
  // random, as before random-faults seed 3077, so a late frame of a dropped stream can retire the live one.
  bool random_stream_ids = false;
  // An injected bug (chorus-sim --bug no_acks): a receiver delivers but never acknowledges, so its senders'
  // queues only grow and age (the "queues stay bounded" checker must catch it).
  bool no_acks = false;
};

// The outcome of a request: a reply per peer that answered in time; the rest are `missing`.
struct Replies {
  std::map<std::string, ClusterMessage> replies;
  std::vector<std::string> missing;
};

struct MessengerStats {
  uint64_t sent = 0, retransmitted = 0, delivered = 0, duplicates = 0, refused_full = 0, dropped_peer_dead = 0;
  uint64_t stale_stream = 0;     // frames of a stream the sender had replaced, ignored
  uint64_t streams_begun = 0;    // senders' streams that began here (first ones and replacements)
  uint64_t refused_unknown = 0;  // reliable messages not sent: the peer's generation is not known yet
};

class Messenger {
 public:
  using Handler = std::function<void(const std::string& from, const ClusterMessage& message)>;

  Messenger(Env& env, Membership& membership, MessengerOptions options = {});
  ~Messenger();

  // Handlers per event name; "" receives every event.
  void subscribe(const std::string& event, Handler handler);
  // To every member not declared dead. With `all_done`, called once every one of them has acknowledged
  // it or has been declared dead (reliable only). Returns the number of peers it was queued for.
  size_t send_to_all(const ClusterMessage& message, Delivery delivery, std::function<void()> all_done = {});
  bool send_to(const std::string& peer, const ClusterMessage& message, Delivery delivery);

  // Frames 0x30/0x31; false for anything else.
  bool handle_frame(const std::string& from, std::span<const uint8_t> payload);
  // Forward membership changes here (a dead peer's queue is dropped).
  void on_member_change(const Member& member);
  // A sender's stream began and we missed messages of it: a new stream after it declared us dead or
  // restarted (`replaced` true: whatever it had not acknowledged is lost), or a first stream whose
  // opening says the sender dropped or skipped reliable messages for us (`replaced` false: we restarted
  // while it held our earlier life, or it held us dead). The callback lets the node make its clients
  // re-sync. A sender opens a stream to a peer as soon as it holds it alive (first sight, back from the
  // dead, a new generation), so this comes within a round trip of that, not with its next real message.
  void on_new_stream(std::function<void(const std::string& from, bool replaced)> callback) {
    on_new_stream_ = std::move(callback);
  }

  // Serves requests for `event`: `respond` is called with the request and must call `reply` once
  // (now or later, on this node's loop). One server per event.
  using Reply = std::function<void(ClusterMessage)>;
  using Responder = std::function<void(const std::string& from, const ClusterMessage& request, Reply reply)>;
  void serve(const std::string& event, Responder respond);
  void serve(ClusterEvent event, Responder respond) { serve(std::string(name(event)), std::move(respond)); }
  // Asks every live peer (or `peers` when given) and calls done once with what came back within
  // `timeout`. With no one to ask, done runs at once (posted) with no replies.
  void request(const ClusterMessage& request, Duration timeout, std::function<void(Replies)> done,
               std::vector<std::string> peers = {});

  const MessengerStats& stats() const { return stats_; }
  size_t queued(const std::string& peer) const;
  // How long the oldest of those has waited for its acknowledgement (0 when none waits).
  Duration oldest_unacked_age(const std::string& peer) const;

 private:
  struct Waiter {
    size_t remaining;
    std::function<void()> done;
  };
  struct Outgoing {
    uint64_t seq;
    MonoTime queued_at;
    std::vector<uint8_t> frame;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };
  struct Out {
    uint64_t stream = 0;  // anew per peer and per reset (new_stream): a receiver orders streams
    uint64_t next_seq = 1;
    std::deque<Outgoing> unacked;
  };
  struct In {
    uint64_t stream = 0;
    uint64_t delivered = 0;  // highest seq delivered in order
    std::map<uint64_t, ClusterMessage> early;
    // Lives of this sender that a newer one replaced: a late frame of one must not switch us back to it
    // (we would then wait forever, on the new stream, for numbers we had already delivered). Within one
    // life the stream counter orders streams.
    std::deque<uint64_t> retired_lives;
    bool told = false;  // on_new_stream was called when this stream replaced another
  };
  // A stream id's parts (see the top of this file).
  static uint64_t life_of(uint64_t stream) { return stream >> 24; }
  static uint64_t counter_of(uint64_t stream) { return stream & 0xFF'FFFF; }
  uint64_t new_stream();
  // Whether `stream` is older than the receiver's current one: ignore its frames.
  static bool is_stale(const In& in, uint64_t stream);
  struct Pending {
    std::set<std::string> waiting;
    Replies replies;
    TimerId timer = 0;
    std::function<void(Replies)> done;
  };
  void on_request(const std::string& from, const ClusterMessage& message);
  void on_reply(const std::string& from, const ClusterMessage& message);
  void finish(uint64_t id);
  void drop_stream(const std::string& peer);  // its unacknowledged messages are lost; waiters and requests told
  void open_stream(const std::string& peer);  // the first message of the peer's next stream: _open
  bool enqueue(const std::string& peer, const ClusterMessage& message, Delivery delivery,
               const std::shared_ptr<Waiter>& waiter);
  void retransmit();
  void deliver(const std::string& from, const ClusterMessage& message);
  static void settle(const std::shared_ptr<Waiter>& w);

  Env& env_;
  Membership& membership_;
  MessengerOptions options_;
  std::map<std::string, uint64_t> generations_;  // last known generation per peer
  uint64_t life_ = 0;                            // this process's life, drawn at the first stream
  uint64_t streams_begun_ = 0;                   // streams this life began (the counter part of an id)
  std::map<std::string, Out> out_;
  std::map<std::string, In> in_;
  std::multimap<std::string, Handler> handlers_;
  TimerId timer_ = 0;
  MessengerStats stats_;
  std::map<std::string, Responder> responders_;
  std::map<uint64_t, Pending> pending_;  // requests awaiting replies, by id
  uint64_t next_request_ = 1;
  std::function<void(const std::string& from, bool replaced)> on_new_stream_;
  std::map<std::string, bool> held_alive_;  // per peer: whether we held it alive at its last change
  std::set<std::string> missed_;  // peers for which reliable messages were dropped or skipped since their stream
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::cluster
