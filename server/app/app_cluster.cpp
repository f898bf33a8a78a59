// The cluster bridge: events published to this node's hub and to the other nodes, cache invalidations
// sent and applied, what peers send (on_cluster_message), WebSocket handover (find_connection), and the
// analytics gathered from every node.
#include "server/app/app.h"

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/assert.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

void App::set_messenger(cluster::Messenger* messenger) {
  messenger_ = messenger;
  if (!messenger_) return;
  watch_exports();
  // A peer gathers the cluster's figures: ours.
  messenger_->serve(cluster::ClusterEvent::cluster_stats,
                    [this](const std::string&, const cluster::ClusterMessage&, cluster::Messenger::Reply reply) {
                      const auto h = hub_.stats();
                      reply(cluster::ClusterMessage{"",
                                                    "",
                                                    {{"websocket_connections", std::to_string(h.active)},
                                                     {"inactive_connections", std::to_string(h.inactive)}}});
                    });
  // A peer asks for a connection's queue: hand it over if we hold it for that user (and forget it).
  messenger_->serve(cluster::ClusterEvent::ws_queues,
                    [this](const std::string& from, const cluster::ClusterMessage& m, cluster::Messenger::Reply reply) {
                      auto user = m.props.find("user_id");
                      auto queue =
                          user == m.props.end() ? std::nullopt : hub_.export_queue(m.data, user->second, from);
                      if (queue) env_.log().info("app: handed WebSocket connection {} over to {}", m.data, from);
                      reply(cluster::ClusterMessage{"", queue.value_or(""), {}});
                    });
}

// The race of a handover: an event that reached the new node before its import began, and this node
// after it exported the connection, is in neither copy. This node tells the new one, which resets the
// connection unless it has the event (hub.h: missed_after_export).
void App::watch_exports() {
  hub_.on_missed_after_export(
      [this](const std::string& to, const std::string& connection_id, const std::string& user_id,
             const std::string& event_id) {
        if (!messenger_) return;
        messenger_->send_to(to,
                            cluster::ClusterMessage::of(cluster::ClusterEvent::ws_missed, connection_id,
                                                        {{"user_id", user_id}, {"event_id", event_id}}),
                            cluster::Delivery::reliable);
      });
}

void App::analytics(const Session& actor, Callback<Analytics> done) {
  if (!actor.is_system_admin()) return done(fail<Analytics>(forbidden()));
  analytics_flow(std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the database's counts, then every node's WebSocket connections.
Flow App::analytics_flow(Callback<Analytics> done) {
  std::vector<Statement> counts{Statement{"SELECT COUNT(*) FROM Users WHERE DeleteAt = 0", {}},
                                Statement{"SELECT COUNT(*) FROM Teams WHERE DeleteAt = 0", {}},
                                Statement{"SELECT COUNT(*) FROM Channels WHERE DeleteAt = 0 AND Type = 'O'", {}},
                                Statement{"SELECT COUNT(*) FROM Channels WHERE DeleteAt = 0 AND Type = 'P'", {}},
                                Statement{"SELECT COUNT(*) FROM Posts WHERE DeleteAt = 0", {}}};
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.read(std::move(counts), std::move(resume)); });
  if (!o.ok()) co_return done(fail<Analytics>(from_db(o.error)));
  Analytics a;
  const char* names[] = {"unique_user_count", "team_count", "channel_open_count", "channel_private_count",
                         "post_count"};
  for (size_t i = 0; i < 5; ++i) a.rows.emplace_back(names[i], int_at(o.value[i].rows.at(0), 0));
  const int64_t here = static_cast<int64_t>(hub_.stats().active);
  if (!messenger_) {
    a.rows.emplace_back("total_websocket_connections", here);
    co_return done(ok(std::move(a)));
  }
  cluster::Replies replies = co_await awaiting<cluster::Replies>(alive_, [&](auto resume) {
    messenger_->request(cluster::ClusterMessage::of(cluster::ClusterEvent::cluster_stats), Duration{1'000'000},
                        std::move(resume));
  });
  int64_t total = here;
  for (const auto& [peer, reply] : replies.replies) {
    auto it = reply.props.find("websocket_connections");
    if (it == reply.props.end()) continue;
    try {
      total += std::stoll(it->second);
    } catch (const std::exception&) {
    }
  }
  a.rows.emplace_back("total_websocket_connections", total);
  a.nodes_missing = replies.missing;
  done(ok(std::move(a)));
}

void App::find_connection(const std::string& connection_id, const std::string& user_id, Duration timeout,
                          std::function<void(bool)> done) {
  if (hub_.holds(connection_id)) return done(true);
  if (!messenger_) return done(false);
  // Events for this user that arrive while the queue is on its way would be missing from it: the hub
  // notes them, and then the connection is not resumed (the client gets a hello and re-syncs).
  hub_.begin_import(user_id);
  messenger_->request(
      cluster::ClusterMessage::of(cluster::ClusterEvent::ws_queues, connection_id, {{"user_id", user_id}}), timeout,
      [this, alive = alive_, connection_id, user_id, done](cluster::Replies replies) {
        if (!*alive) return;
        bool imported = false;
        for (const auto& [peer, reply] : replies.replies)
          if (!imported && !reply.data.empty() && hub_.import_queue(reply.data)) {
            env_.log().info("app: took WebSocket connection {} over from {}", connection_id, peer);
            imported = true;
          }
        if (hub_.end_import(user_id) && imported) {
          env_.log().info("app: events for user {} arrived during the handover of {}: not resumed", user_id,
                          connection_id);
          hub_.forget(connection_id);
          return done(false);
        }
        done(hub_.holds(connection_id));
      });
}

// ---------------------------------------------------------------------------------------------------
// Cluster: invalidations and events.

void App::invalidate(cluster::ClusterEvent event, const std::string& id) {
  apply_invalidation(event, id);
  if (!messenger_) return;
  ++stats_.invalidations_sent;
  messenger_->send_to_all(cluster::ClusterMessage::of(event, id), cluster::Delivery::best_effort);
}

void App::apply_invalidation(cluster::ClusterEvent event, const std::string& id) {
  using cluster::ClusterEvent;
  invalidate_fills();  // reads in flight no longer fill the caches
  switch (event) {
    case ClusterEvent::inv_user:
      users_.erase(id);
      break;
    case ClusterEvent::inv_channel:
      channels_.erase(id);
      channel_members_.erase(id);
      break;
    case ClusterEvent::inv_channel_members:
      channel_members_.erase(id);
      break;
    case ClusterEvent::clear_session_user: {
      // id is "user_id" or "user_id token": the user's cached sessions go; the token's sockets close.
      const auto space = id.find(' ');
      const std::string user = id.substr(0, space);
      const std::string token = space == std::string::npos ? "" : id.substr(space + 1);
      sessions_.erase_if([&](const Session& s) { return s.user_id == user; });
      if (!token.empty()) hub_.revoke(user, token);
      break;
    }
    default:
      CHORUS_ASSERT(false, "{} is not an invalidation", cluster::name(event));
  }
}

// The app's part of the cluster's events (server/cluster/wire.h); the node handles config_changed, the
// messenger _open and the requests' servers (set_messenger); a name this version does not know is
// ignored (a newer node's).
void App::on_cluster_message(const std::string& from, const cluster::ClusterMessage& m) {
  using cluster::ClusterEvent;
  const auto kind = m.kind();
  if (!kind) return;
  switch (*kind) {
    case ClusterEvent::publish:
      return on_published(from, m);
    case ClusterEvent::update_status:
      return on_status_update(m);
    case ClusterEvent::inv_user:
    case ClusterEvent::inv_channel:
    case ClusterEvent::inv_channel_members:
    case ClusterEvent::clear_session_user:
      ++stats_.invalidations_received;
      return apply_invalidation(*kind, m.data);
    case ClusterEvent::ws_missed: {
      auto user = m.props.find("user_id");
      auto event = m.props.find("event_id");
      if (user == m.props.end() || event == m.props.end()) return;
      if (hub_.missed_after_export(m.data, user->second, event->second))
        env_.log().info("app: {} got an event for WebSocket connection {} after handing it over here: reset", from,
                        m.data);
      return;
    }
    case ClusterEvent::open:
    case ClusterEvent::config_changed:
    case ClusterEvent::cluster_stats:
    case ClusterEvent::ws_queues:
      return;
  }
}

void App::on_published(const std::string& from, const cluster::ClusterMessage& m) {
  auto event = Event::from_cluster(m.data);
  if (!event) {
    env_.log().warn("app: dropped a malformed publish message from {}", from);
    return;
  }
  ++stats_.events_received;
  sequencer_->on_event(std::move(*event));  // never sent on
}

void App::on_status_update(const cluster::ClusterMessage& m) {
  boost::system::error_code ec;
  auto v = boost::json::parse(m.data, ec);
  if (ec || !v.is_object()) return;
  const auto& o = v.as_object();
  Status s;
  if (auto it = o.find("user_id"); it != o.end() && it->value().is_string()) s.user_id = it->value().as_string();
  if (auto it = o.find("status"); it != o.end() && it->value().is_string()) s.status = it->value().as_string();
  if (auto it = o.find("manual"); it != o.end() && it->value().is_bool()) s.manual = it->value().as_bool();
  if (auto it = o.find("last_activity_at"); it != o.end() && it->value().is_int64())
    s.last_activity_at = it->value().as_int64();
  if (!s.user_id.empty()) statuses_.put(s.user_id, s, env_.now());
}

void App::on_membership_change() {
  // Whatever we missed while a peer was unreachable (or we were), we stop trusting now.
  ++stats_.cache_flushes;
  invalidate_fills();
  sessions_.clear();
  users_.clear();
  channels_.clear();
  channel_members_.clear();
}

void App::publish(Event event) { publish(std::move(event), nullptr); }

void App::publish(Event event, std::function<void()> all_done) {
  ++stats_.events_published;
  if (event.id.empty()) event.id = new_id(env_.random());
  const bool reliable = event.reliable;
  if (messenger_)
    messenger_->send_to_all(cluster::ClusterMessage::of(cluster::ClusterEvent::publish, event.to_cluster()),
                            reliable ? cluster::Delivery::reliable : cluster::Delivery::best_effort,
                            reliable ? std::move(all_done) : nullptr);
  sequencer_->on_event(std::move(event));
  if (all_done && (!messenger_ || !reliable)) all_done();  // (not moved from in that case)
}

}  // namespace chorus::app
