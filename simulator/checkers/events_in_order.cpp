// Checker "events in order, never twice" (simulator/checkers/events_in_order.h).
#include "simulator/checkers/events_in_order.h"

namespace chorus::sim::checkers {

EventsInOrder::Connection& EventsInOrder::of(const Client& cl) {
  const auto i = static_cast<size_t>(cl.index);
  if (connections_.size() <= i) connections_.resize(i + 1);
  return connections_[i];
}

void EventsInOrder::on_new_connection(const Client& cl) {
  auto& conn = of(cl);
  conn.seen.clear();
  conn.last_create_at.clear();
  conn.post_changes.clear();
}

void EventsInOrder::on_event(const Client& cl, int64_t seq) {
  if (seq != cl.next_seq)
    ctx_.violation(kName, fmt::format("client {} on connection {}: event seq {} where {} was next", cl.index,
                                      cl.connection_id, seq, cl.next_seq));
}

void EventsInOrder::on_posted(const Client& cl, const std::string& id, const std::string& message, int channel,
                              int64_t create_at) {
  auto& conn = of(cl);
  if (!conn.seen.insert(id).second)
    ctx_.violation(kName, fmt::format("client {} got post {} twice on connection {}", cl.index, id, cl.connection_id));
  if (channel < 0) return;
  // A connection gets a channel's posts in create_at order.
  auto& last = conn.last_create_at[channel];
  if (create_at <= last.first) {
    ++crossed_;
    const auto origin = ctx_.origin.find(message);
    ctx_.violation(kName, fmt::format("client {} on connection {}: in channel {}, \"{}\" (create_at {}, through n{}) "
                                      "arrived after \"{}\" (create_at {})",
                                      cl.index, cl.connection_id, channel, message, create_at,
                                      origin == ctx_.origin.end() ? -1 : origin->second, last.second, last.first));
  }
  if (create_at > last.first) last = {create_at, message};
}

void EventsInOrder::on_preference(Client& cl, int64_t value) {
  // A save whose outcome the client never learned may commit after a newer one: its event comes later,
  // in commit order. Anything else that goes back is an event twice or out of order.
  if (value <= cl.preference_event_last && !(value < cl.preference_event_last && cl.preference_unsure.contains(value)))
    ctx_.violation(kName, fmt::format("client {} on connection {}: preferences_changed with counter {} after {}",
                                      cl.index, cl.connection_id, value, cl.preference_event_last));
  cl.preference_event_last = std::max(cl.preference_event_last, value);
}

}  // namespace chorus::sim::checkers

namespace chorus::sim::checkers {

void EventsInOrder::on_post_change(const Client& cl, const std::string& post_id, const std::string& event,
                                   int64_t update_at) {
  auto& last = of(cl).post_changes[post_id];
  if (update_at <= last)
    ctx_.violation(kName, fmt::format("client {} on connection {}: {} of post {} at {} after its change at {}", cl.index,
                                      cl.connection_id, event, post_id, update_at, last));
  last = std::max(last, update_at);
}

}  // namespace chorus::sim::checkers
