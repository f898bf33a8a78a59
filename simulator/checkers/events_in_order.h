// Checker "events in order, never twice": on each WebSocket connection every event's seq is the next one,
// no post arrives twice, and a channel's posts arrive in create_at order (they are committed with strictly
// increasing create_at, and every node delivers them in that order: the channel sequencer). The clients
// tell it what each connection receives (simulator/sim_client.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "simulator/checkers/checker.h"
#include "simulator/run_context.h"
#include "simulator/sim_client.h"

namespace chorus::sim::checkers {

class EventsInOrder : public Checker {
 public:
  static constexpr const char* kName = "events in order, never twice";
  explicit EventsInOrder(RunContext& ctx) : ctx_(ctx) {}

  // cl got a hello with a new connection id (before it takes it): what the connection got starts afresh.
  void on_new_connection(const Client& cl);
  // An event with seq arrived on cl's connection (cl.next_seq is the one due).
  void on_event(const Client& cl, int64_t seq);
  // A posted event arrived on cl's connection (channel: its index, -1 when unknown).
  void on_posted(const Client& cl, const std::string& id, const std::string& message, int channel, int64_t create_at);

  // A preferences_changed event showed client cl's counter at `value` (its saves are one at a time, so
  // on one connection the values only grow: a repeat is an event twice, a smaller one out of order).
  void on_preference(Client& cl, int64_t value);
  // A change of a post (post_edited, post_deleted, reaction_added, reaction_removed) with the post's
  // update_at after it: on one connection a post's changes come once each, in the order they were made.
  void on_post_change(const Client& cl, const std::string& post_id, const std::string& event, int64_t update_at);

  int64_t crossed() const { return crossed_; }  // posts out of channel order on a connection

 private:
  struct Connection {
    std::unordered_set<std::string> seen;                           // post ids
    std::map<int, std::pair<int64_t, std::string>> last_create_at;  // channel -> newest (create_at, message)
    std::unordered_map<std::string, int64_t> post_changes;           // post id -> newest update_at
  };
  Connection& of(const Client& cl);

  RunContext& ctx_;
  std::vector<Connection> connections_;  // each client's current connection
  int64_t crossed_ = 0;
};

}  // namespace chorus::sim::checkers
