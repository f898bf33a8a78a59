// The simulated clients of a scenario run: WebSocket connect, resume, ping, reconnect and re-sync, as the
// official client does (simulator/sim_client.h).
#include "simulator/sim_client.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdlib>

#include "simulator/checkers/events_in_order.h"
#include "simulator/load_balancer.h"
#include "simulator/run_metrics.h"

namespace chorus::sim {

namespace json = boost::json;

namespace {
constexpr Duration kPing{30'000'000};  // the official client's WebSocket ping
}  // namespace

SimClients::SimClients(RunContext& ctx, LoadBalancer& lb, RunMetrics& metrics, checkers::EventsInOrder& order)
    : ctx_(ctx), lb_(lb), metrics_(metrics), order_(order) {}

void SimClients::synced_now() {
  for (auto& cl : clients_) cl.synced_at_ms = ctx_.wall_ms() - kResyncMarginMs;
}

void SimClients::start() {
  auto& k = ctx_.k;
  for (auto& cl : clients_) {
    const int i = cl.index;
    k.at(ctx_.t0 + Duration{static_cast<int64_t>(k.random().uniform(1'000'000))},
         [this, i] { connect(clients_[static_cast<size_t>(i)]); });
  }
}

void SimClients::tick() {
  for (auto& cl : clients_) pump(cl);
}

void SimClients::request(int i, std::string method, std::string target, std::string body,
                         std::function<void(int, const std::string&)> done) {
  const Duration sent = ctx_.k.now();
  std::string token = clients_[static_cast<size_t>(i)].token;
  auto answered = [this, i, sent, m = method, t = target, done = std::move(done)](int status, const std::string& b) {
    metrics_.on_answer(clients_[static_cast<size_t>(i)], sent, m, t, status, b);
    done(status, b);
  };
  lb_.request(std::move(method), std::move(target), std::move(body), std::move(token), std::move(answered));
}

void SimClients::drop_on(uint32_t n) {
  for (auto& cl : clients_)
    if (cl.socket && cl.socket->session && cl.socket->node == n) ctx_.c.disconnect(*cl.socket);
}

ClientTotals SimClients::totals() const {
  ClientTotals t;
  for (const auto& cl : clients_) {
    t.ok += cl.ok;
    t.failed += cl.failed;
    t.gap = std::max(t.gap, cl.longest_gap);
    t.resumes += cl.resumes;
    t.resyncs += cl.resyncs;
    t.reconnects += cl.reconnects;
    t.delivered += cl.have.size();
    t.open += cl.socket && cl.socket->session && !cl.socket->close_code;
  }
  return t;
}

void SimClients::connect(Client& cl) {
  auto& k = ctx_.k;
  // The pending reconnect is this call, whatever it finds: an attempt still under way (a paused node's
  // upgrade) must be able to schedule the next one when it fails (random-faults seed 11564: it could
  // not, and the client never connected again).
  cl.reconnect_pending = false;
  if (cl.connecting || (cl.socket && cl.socket->session && !cl.socket->close_code)) return;
  if (!lb_.up()) return closed(cl);
  for (int n : lb_.upstreams()) {
    if (!ctx_.c.node(n)) continue;  // refused: the next upstream
    if (k.state(static_cast<NodeIndex>(n)) == NodeState::paused) {
      // The upgrade request hangs; the client gives up after its timeout.
      if (cl.socket && !cl.socket->session) cl.socket.reset();  // an upstream that refused before this one
      cl.connecting = true;
      const int i = cl.index;
      k.at(k.now() + ctx_.sc.request_timeout, [this, i] {
        auto& c = clients_[static_cast<size_t>(i)];
        c.connecting = false;
        closed(c);
      });
      return;
    }
    if (cl.socket && cl.socket->session) ctx_.c.disconnect(*cl.socket);
    const bool resuming = !cl.connection_id.empty();
    cl.socket = ctx_.c.connect(n, cl.token, cl.connection_id, resuming ? cl.next_seq : 0);
    cl.read = 0;
    cl.reply_seq = 2;  // the challenge took 1
    cl.ping_outstanding = false;
    cl.next_ping = k.now() + kPing;
    if (!cl.socket->session) continue;
    return;
  }
  closed(cl);
}

// The official client's onclose: count the failure, back off, jitter, reconnect.
void SimClients::closed(Client& cl) {
  auto& k = ctx_.k;
  if (cl.reconnect_pending) return;
  cl.reconnect_pending = true;
  ++cl.connect_fails;
  ++cl.reconnects;
  int64_t retry = 3'000'000;
  if (cl.connect_fails > 7) retry = std::min<int64_t>(retry * cl.connect_fails * cl.connect_fails, 300'000'000);
  retry += static_cast<int64_t>(k.random().uniform(2'000'000));
  const int i = cl.index;
  k.at(k.now() + Duration{retry}, [this, i] { connect(clients_[static_cast<size_t>(i)]); });
}

void SimClients::pump(Client& cl) {
  auto& k = ctx_.k;
  if (!cl.socket) return;
  auto& frames = cl.socket->received;
  for (; cl.read < frames.size(); ++cl.read) on_frame(cl, frames[cl.read]);
  const bool broken = cl.socket->close_code.has_value() || !cl.socket->node_alive();
  if (broken) {
    if (cl.socket->session) ctx_.c.disconnect(*cl.socket);
    cl.socket.reset();
    return closed(cl);
  }
  if (k.now() >= cl.next_ping && cl.socket->session) {
    if (cl.ping_outstanding) {  // no pong within a ping interval: re-establish
      ctx_.c.disconnect(*cl.socket);
      cl.socket.reset();
      return closed(cl);
    }
    cl.ping_outstanding = true;
    cl.ping_seq = cl.reply_seq++;
    // To a paused node the ping sits in the socket's buffers: no pong, and the next interval reconnects.
    if (k.state(cl.socket->node) == NodeState::up)
      ctx_.c.send(*cl.socket, fmt::format(R"({{"action":"ping","seq":{}}})", cl.ping_seq));
    cl.next_ping = k.now() + kPing;
  }
}

void SimClients::on_frame(Client& cl, const std::string& text) {
  // Typing and status frames: the event name and seq are enough, without a parse (the fan-out of a
  // busy cluster is most of a client's frames).
  if (text.find("\"event\":\"typing\"") != std::string::npos ||
      text.find("\"event\":\"status_change\"") != std::string::npos) {
    const auto at = text.rfind("\"seq\":");
    if (at != std::string::npos && text.find("\"seq_reply\"") == std::string::npos) {
      return check_seq(cl, std::strtoll(text.c_str() + at + 6, nullptr, 10));
    }
  }
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object())
    return ctx_.violation("WebSocket protocol", fmt::format("client {} got a frame that is not a JSON object: {}",
                                                            cl.index, text.substr(0, 80)));
  const auto& o = v.as_object();
  if (const auto* reply = o.if_contains("seq_reply")) {
    if (reply->is_int64() && reply->as_int64() == cl.ping_seq) cl.ping_outstanding = false;
    return;
  }
  const auto* ev = o.if_contains("event");
  if (!ev || !ev->is_string()) return;
  const std::string event(ev->as_string());
  const int64_t seq = o.contains("seq") && o.at("seq").is_int64() ? o.at("seq").as_int64() : -1;
  if (event == "hello") {
    const std::string id(o.at("data").as_object().at("connection_id").as_string());
    cl.connect_fails = 0;
    if (!cl.connection_id.empty() && id != cl.connection_id) {
      ++cl.resyncs;
      resync(cl);
    } else if (!cl.connection_id.empty()) {
      ++cl.resumes;
    }
    if (id != cl.connection_id) {
      order_.on_new_connection(cl);
      cl.preference_event_last = 0;
    }
    cl.connection_id = id;
    cl.next_seq = seq + 1;
    return;
  }
  check_seq(cl, seq);
  if (event == "channel_viewed") {
    const auto* id = o.at("data").as_object().if_contains("channel_id");
    if (id && id->is_string())
      if (auto ch = ctx_.channel_index.find(std::string(id->as_string())); ch != ctx_.channel_index.end())
        cl.viewed_event_at[ch->second] = ctx_.k.now();
    return;
  }
  if (event == "preferences_changed") {
    const auto* data = o.at("data").as_object().if_contains("preferences");
    if (!data || !data->is_string()) return;
    boost::system::error_code ec2;
    auto prefs = json::parse(data->as_string(), ec2);
    if (ec2 || !prefs.is_array()) return;
    for (const auto& p : prefs.as_array()) {
      const auto& po = p.as_object();
      if (po.at("category").as_string() != "sim" || po.at("name").as_string() != "counter") continue;
      const int64_t value = std::strtoll(std::string(po.at("value").as_string()).c_str(), nullptr, 10);
      order_.on_preference(cl, value);
      cl.preference_seen = std::max<int64_t>(cl.preference_seen, value);
    }
    return;
  }
  if (event == "post_edited" || event == "post_deleted" || event == "reaction_added" || event == "reaction_removed") {
    const auto& data = o.at("data").as_object();
    const bool reaction = event.starts_with("reaction_");
    const auto* field = data.if_contains(reaction ? "reaction" : "post");
    boost::system::error_code ec2;
    auto v2 = field && field->is_string() ? json::parse(field->as_string(), ec2) : json::value();
    if (ec2 || !v2.is_object())
      return ctx_.violation("WebSocket protocol",
                            fmt::format("client {} got {} without a {} object", cl.index, event, reaction ? "reaction" : "post"));
    const auto& x = v2.as_object();
    const std::string post_id(x.at(reaction ? "post_id" : "id").as_string());
    order_.on_post_change(cl, post_id, event, x.at("update_at").to_number<int64_t>());
    return reaction ? on_reaction(cl, event, x) : learn_post(cl, x);
  }
  if (event != "posted") return;
  const auto post = json::parse(o.at("data").as_object().at("post").as_string()).as_object();
  const std::string id(post.at("id").as_string());
  const std::string message(post.at("message").as_string());
  const auto ch = ctx_.channel_index.find(std::string(post.at("channel_id").as_string()));
  const int64_t create_at =
      post.contains("create_at") && post.at("create_at").is_int64() ? post.at("create_at").as_int64() : 0;
  order_.on_posted(cl, id, message, ch == ctx_.channel_index.end() ? -1 : ch->second, create_at);
  cl.have.insert(id);
  metrics_.on_delivered(id);
}

void SimClients::learn_post(Client& cl, const json::object& post) {
  const auto num = [&](const char* key) {
    const auto* v = post.if_contains(key);
    return v && v->is_number() ? v->to_number<int64_t>() : int64_t{0};
  };
  const int64_t update_at = num("update_at");
  const auto* id = post.if_contains("id");
  if (!id || !id->is_string()) return;
  const auto* meta = post.if_contains("metadata");
  const auto* reactions = meta && meta->is_object() ? meta->as_object().if_contains("reactions") : nullptr;
  const bool changed = update_at > num("create_at") || num("delete_at") != 0 || (reactions && reactions->is_array());
  auto it = cl.known.find(std::string(id->as_string()));
  if (!changed && it == cl.known.end()) return;  // as posted: nothing to remember
  auto& k = cl.known[std::string(id->as_string())];
  // An older state is ignored (a re-sync's read raced a newer event); the same one replaces what the
  // events built (a whole post is complete; an entry begun by a reaction event may lack earlier ones).
  if (update_at < k.update_at) return;
  k.update_at = update_at;
  k.delete_at = num("delete_at");
  const auto* message = post.if_contains("message");
  k.message = message && message->is_string() ? std::string(message->as_string()) : "";
  k.message_known = true;
  k.reactions.clear();
  if (reactions && reactions->is_array())
    for (const auto& r : reactions->as_array())
      if (r.is_object() && r.as_object().contains("user_id") && r.as_object().contains("emoji_name"))
        k.reactions.insert(std::string(r.as_object().at("user_id").as_string()) + " " +
                           std::string(r.as_object().at("emoji_name").as_string()));
}

void SimClients::on_reaction(Client& cl, const std::string& event, const json::object& r) {
  auto& k = cl.known[std::string(r.at("post_id").as_string())];
  const int64_t update_at = r.at("update_at").to_number<int64_t>();
  if (update_at <= k.update_at) return;
  k.update_at = update_at;
  const std::string key = std::string(r.at("user_id").as_string()) + " " + std::string(r.at("emoji_name").as_string());
  if (event == "reaction_added")
    k.reactions.insert(key);
  else
    k.reactions.erase(key);
}

// Each event's seq is the next one on its connection (the checker says so when it is not).
void SimClients::check_seq(Client& cl, int64_t seq) {
  order_.on_event(cl, seq);
  cl.next_seq = seq + 1;
}

// A re-sync's read failed: the whole re-sync again in 2 s (once, however many of its reads failed).
void SimClients::resync_later(Client& cl) {
  if (cl.resync_retry) return;
  cl.resync_retry = true;
  const int i = cl.index;
  ctx_.k.at(ctx_.k.now() + Duration{2'000'000}, [this, i] {
    auto& c = clients_[static_cast<size_t>(i)];
    c.resync_retry = false;
    resync(c);
  });
}

// What the apps do on a new connection: read their preferences and channel memberships again, and each
// channel's posts since the last sync.
void SimClients::resync(Client& cl) {
  // Since the previous re-sync, not since the last disconnect: events can be lost while a socket still
  // looks healthy (a peer declared its node dead; the reset comes when the peer's new stream arrives),
  // and a client that asks only from its disconnect misses them (random-faults seed 3 showed it).
  const int64_t since = cl.synced_at_ms;
  cl.synced_at_ms = ctx_.wall_ms() - kResyncMarginMs;  // the margin: another node's clock may lag
  const int i = cl.index;
  // The apps read the user's preferences again too (a category's list: [] before the first save).
  request(i, "GET", "/api/v4/users/me/preferences/sim", "", [this, i](int status, const std::string& body) {
    if (status != 200) return;
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_array()) return;
    auto& c = clients_[static_cast<size_t>(i)];
    for (const auto& p : v.as_array())
      if (p.is_object() && p.as_object().contains("name") && p.as_object().at("name") == "counter")
        c.preference_seen = std::max<int64_t>(
            c.preference_seen, std::strtoll(std::string(p.as_object().at("value").as_string()).c_str(), nullptr, 10));
  });
  // And the memberships (the apps' entry reads them: last_viewed_at, the read state).
  request(i, "GET", "/api/v4/users/me/teams/" + ctx_.team + "/channels/members", "",
          [this, i, sent = ctx_.k.now()](int status, const std::string& body) {
            auto& c = clients_[static_cast<size_t>(i)];
            if (status != 200) return resync_later(c);
            boost::system::error_code ec;
            auto v = json::parse(body, ec);
            if (!ec && v.is_array()) c.members_read_at = std::max(c.members_read_at, sent);
          });
  for (int ch : cl.channels) {
    request(i, "GET",
            fmt::format("/api/v4/channels/{}/posts?since={}&per_page=200", ctx_.channel_ids[static_cast<size_t>(ch)],
                        since),
            "", [this, i, since](int status, const std::string& body) {
              auto& c = clients_[static_cast<size_t>(i)];
              if (status != 200) {
                c.synced_at_ms = std::min(c.synced_at_ms, since);  // the next re-sync covers it
                return resync_later(c);
              }
              boost::system::error_code ec;
              auto v = json::parse(body, ec);
              if (ec || !v.is_object() || !v.as_object().contains("posts")) return;
              for (const auto& [id, p] : v.as_object().at("posts").as_object()) {
                c.have.insert(std::string(id));
                if (p.is_object()) learn_post(c, p.as_object());
              }
            });
  }
}

}  // namespace chorus::sim
