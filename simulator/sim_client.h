// The simulated clients of a scenario run, which behave as the official client (npm @mattermost/client):
// REST calls through the load balancer with a timeout, one WebSocket that resumes with connection_id and
// sequence_number, reconnects 3 s plus up to 2 s of jitter after a close (backing off as failures add up:
// 3 s x fails^2 past 7 fails, capped at 5 min), pings every 30 s and reconnects when a ping goes
// unanswered, and re-syncs over REST (posts since its last sync) when the server issues a new connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <map>
#include <set>
#include <unordered_set>
#include <vector>

#include <boost/json/object.hpp>

#include "simulator/run_context.h"

namespace chorus::sim {

class LoadBalancer;
class RunMetrics;
namespace checkers {
class EventsInOrder;
}

// A re-sync asks from this long before the last one: nodes' clocks may disagree (random faults skew them
// up to 10 s).
constexpr int64_t kResyncMarginMs = 15'000;

struct Client {
  int index = 0;
  std::string user_id, token;
  std::vector<int> channels;
  // WebSocket
  std::unique_ptr<SimSocket> socket;
  size_t read = 0;
  bool connecting = false;  // an attempt is on its way (a paused upstream: it hangs)
  bool reconnect_pending = false;
  int connect_fails = 0;
  std::string connection_id;
  int64_t next_seq = 0;
  int64_t ping_seq = 0;
  bool ping_outstanding = false;
  Duration next_ping{0};
  int64_t reply_seq = 1;
  // Data
  std::unordered_set<std::string> have;  // post ids received (events or re-syncs)
  int64_t synced_at_ms = 0;              // a re-sync asks for the posts since this (wall ms)
  bool post_in_flight = false;
  int64_t posts_made = 0;
  // Preferences: the client saves "sim"/"counter" with 1, 2, 3, ... (one save in flight); it holds a value
  // once a preferences_changed event or a re-sync's GET of its preferences showed it (or a later one).
  bool preference_in_flight = false;
  int64_t preferences_made = 0, preference_acked = 0, preference_seen = 0;
  int64_t preference_event_last = 0;  // the newest value a preferences_changed on this connection showed
  // Saves whose outcome the client never learned (a timeout, a 5xx): they may commit later, after a
  // newer save, so their events may come after the newer one's, and the database may end with them.
  std::set<int64_t> preference_unsure;
  // Views: each acknowledged one (channel index, when it was sent and acknowledged) must reach the
  // client: a channel_viewed for that channel after it was sent, or a re-sync's read of the memberships
  // sent after it was acknowledged.
  struct View {
    int channel = 0;
    Duration sent{0}, acked{0};
  };
  std::vector<View> views_acked;
  std::map<int, Duration> viewed_event_at;  // channel -> the last channel_viewed received
  Duration members_read_at{-1};             // when the last re-sync read of the memberships that worked was sent
  // Posts that changed: the newest state of each this client knows (from change events and re-syncs; a
  // post never changed is not here). reactions: "user_id emoji_name".
  struct Known {
    int64_t update_at = 0, delete_at = 0;
    std::string message;
    bool message_known = false;  // learnt from a whole post (an entry made by a reaction event has none)
    std::set<std::string> reactions;
  };
  std::unordered_map<std::string, Known> known;
  bool change_in_flight = false;
  int64_t edits_made = 0;
  // Availability
  int ok = 0, failed = 0;
  Duration last_ok{0};         // the last successful answer
  Duration stretch_start{-1};  // the first failed request since then was sent (-1: none)
  Duration longest_gap{0};
  int resumes = 0, resyncs = 0, reconnects = 0;
  bool resync_retry = false;
};

// The clients summed up, for the expectations and the report.
struct ClientTotals {
  int ok = 0, failed = 0;  // requests
  Duration gap{0};         // the longest gap of any client
  int resumes = 0, resyncs = 0, reconnects = 0;
  size_t delivered = 0;  // posts held
  int open = 0;          // clients with an open WebSocket
  double failed_share() const { return ok + failed ? static_cast<double>(failed) / (ok + failed) : 0; }
};

class SimClients {
 public:
  SimClients(RunContext& ctx, LoadBalancer& lb, RunMetrics& metrics, checkers::EventsInOrder& order);

  std::vector<Client>& all() { return clients_; }
  const std::vector<Client>& all() const { return clients_; }
  Client& at(size_t i) { return clients_[i]; }
  void add(Client cl) { clients_.push_back(std::move(cl)); }
  // Every client has all posts up to now (time 0: setup is done).
  void synced_now();

  // The clients connect over the first second.
  void start();
  // Every client reads its socket (and pings, and notices a broken connection).
  void tick();
  // A REST call of client i through the load balancer; its outcome counts for the client's availability.
  void request(int i, std::string method, std::string target, std::string body,
               std::function<void(int status, const std::string& body)> done);
  // Every client WebSocket on node n drops (the clients' network blips; the node is fine).
  void drop_on(uint32_t n);
  ClientTotals totals() const;

 private:
  void connect(Client& cl);
  void closed(Client& cl);
  void pump(Client& cl);
  void on_frame(Client& cl, const std::string& text);
  void check_seq(Client& cl, int64_t seq);
  void resync(Client& cl);
  void resync_later(Client& cl);
  // A post as an event or a re-sync shows it (a JSON object): kept when it changed and is newer than known.
  void learn_post(Client& cl, const boost::json::object& post);
  void on_reaction(Client& cl, const std::string& event, const boost::json::object& reaction);

  RunContext& ctx_;
  LoadBalancer& lb_;
  RunMetrics& metrics_;
  checkers::EventsInOrder& order_;
  std::vector<Client> clients_;
};

}  // namespace chorus::sim
