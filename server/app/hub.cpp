#include "server/app/hub.h"
#include "server/core/assert.h"

#include <boost/json.hpp>
#include <functional>
#include <utility>

#include "server/core/ids.h"

namespace chorus::app {

namespace json = boost::json;

namespace {

json::object broadcast_json(const Broadcast& b) {
  json::value omit = nullptr;
  if (!b.omit_users.empty()) {
    json::object o;
    for (const auto& u : b.omit_users) o[u] = true;
    omit = std::move(o);
  }
  return {{"omit_users", omit},   {"user_id", b.user_id}, {"channel_id", b.channel_id},
          {"team_id", b.team_id}, {"connection_id", ""},  {"omit_connection_id", ""}};
}

std::string str_of(const json::object& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

}  // namespace

const std::string& Event::frame_prefix() const {
  if (frame_prefix_cache.empty()) {
    // Mattermost's frame is {"event", "data", "broadcast", "seq"}: everything but the seq, without its
    // closing brace, then `"seq":`.
    std::string whole =
        json::serialize(json::object{{"event", event}, {"data", data}, {"broadcast", broadcast_json(broadcast)}});
    whole.pop_back();
    frame_prefix_cache = std::move(whole) + ",\"seq\":";
  }
  return frame_prefix_cache;
}

std::string event_frame(const Event& event, int64_t seq) {
  const std::string& prefix = event.frame_prefix();
  std::string out;
  out.reserve(prefix.size() + 21);
  out += prefix;
  out += std::to_string(seq);
  out += '}';
  return out;
}

std::string Event::to_cluster() const {
  json::array r;
  for (const auto& u : recipients) r.emplace_back(u);
  json::array omit;
  for (const auto& u : broadcast.omit_users) omit.emplace_back(u);
  return json::serialize(json::object{{"id", id},
                                      {"event", event},
                                      {"data", data},
                                      {"user_id", broadcast.user_id},
                                      {"channel_id", broadcast.channel_id},
                                      {"team_id", broadcast.team_id},
                                      {"omit_users", omit},
                                      {"recipients", r},
                                      {"reliable", reliable},
                                      {"order", json::array{channel_seq, create_at, post_id}},
                                      {"user_seq", user_seq},
                                      {"post_seq", post_seq}});
}

std::optional<Event> Event::from_cluster(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  Event e;
  e.id = str_of(o, "id");
  e.event = str_of(o, "event");
  if (e.event.empty()) return std::nullopt;
  if (auto it = o.find("data"); it != o.end() && it->value().is_object()) e.data = it->value().as_object();
  e.broadcast.user_id = str_of(o, "user_id");
  e.broadcast.channel_id = str_of(o, "channel_id");
  e.broadcast.team_id = str_of(o, "team_id");
  for (const char* key : {"omit_users", "recipients"}) {
    auto it = o.find(key);
    if (it == o.end() || !it->value().is_array()) continue;
    for (const auto& u : it->value().as_array())
      if (u.is_string())
        (std::string(key) == "recipients" ? e.recipients : e.broadcast.omit_users).emplace_back(u.as_string());
  }
  if (auto it = o.find("reliable"); it != o.end() && it->value().is_bool()) e.reliable = it->value().as_bool();
  if (auto it = o.find("user_seq"); it != o.end() && it->value().is_int64() && it->value().as_int64() > 0)
    e.user_seq = it->value().as_int64();
  if (auto it = o.find("post_seq"); it != o.end() && it->value().is_int64() && it->value().as_int64() > 0)
    e.post_seq = it->value().as_int64();
  if (auto it = o.find("order"); it != o.end() && it->value().is_array()) {
    const auto& a = it->value().as_array();
    if (a.size() == 3 && a[0].is_int64() && a[1].is_int64() && a[2].is_string()) {
      e.channel_seq = a[0].as_int64();
      e.create_at = a[1].as_int64();
      e.post_id = a[2].as_string();
    }
  }
  return e;
}

Hub::Hub(Env& env, HubOptions options) : env_(env), options_(std::move(options)) {
  sweep_timer_ = env_.set_timer(Duration{30'000'000}, [this] { sweep(); });
}

Hub::~Hub() {
  *alive_ = false;
  if (sweep_timer_) env_.cancel_timer(sweep_timer_);
}

Hub::Opened Hub::open(const std::string& user_id, const std::string& token, ConnectionSink* sink,
                      const std::string& connection_id, int64_t sequence_number) {
  ++stats_.opened;
  auto it = connection_id.empty() ? conns_.end() : conns_.find(connection_id);
  if (it != conns_.end() && it->second.user_id == user_id) {
    Conn& c = it->second;
    // Resumable when every event from sequence_number on is still held (or none was sent since).
    const bool nothing_missed = sequence_number == c.next_seq;
    const bool held = !c.dead.empty() && c.dead.front().seq <= sequence_number && sequence_number < c.next_seq;
    if (sequence_number > 0 && (nothing_missed || held)) {
      if (c.sink && c.sink != sink) c.sink->close(1000, "resumed elsewhere");
      c.sink = sink;
      c.token = token;
      Opened o{c.id, true, 0};
      for (const auto& sent : c.dead)
        if (sent.seq >= sequence_number) {
          sink->send_text(sent.text);
          ++o.replayed;
        }
      ++stats_.resumed;
      return o;
    }
    // Too old to resume: the old connection is gone for good.
    if (!c.sink) drop(c.id);
  }
  make_room(user_id);
  Conn c;
  c.id = new_id(env_.random());
  c.user_id = user_id;
  c.token = token;
  c.sink = sink;
  const std::string id = c.id;
  by_user_[user_id].insert(id);
  auto& conn = conns_.emplace(id, std::move(c)).first->second;
  Event hello{"hello", json::object{{"server_version", options_.server_version},
                                    {"connection_id", id},
                                    {"server_hostname", options_.hostname}}};
  hello.broadcast.user_id = user_id;
  send(conn, hello, true);
  return Opened{id, false, 0};
}

void Hub::closed(const std::string& connection_id, const ConnectionSink* sink) {
  auto it = conns_.find(connection_id);
  if (it == conns_.end() || it->second.sink != sink) return;
  it->second.sink = nullptr;
  it->second.inactive_since = env_.now();
  make_room(it->second.user_id);
}

// Keeps the hub within its bounds: expired connections go; beyond connections_max the oldest inactive
// one goes; beyond inactive_per_user_max, that user's oldest inactive one.
void Hub::make_room(const std::string& user_id) {
  if (conns_.size() >= options_.connections_max) expire();
  auto oldest_inactive = [&](const std::set<std::string>* among) {
    const Conn* best = nullptr;
    size_t count = 0;
    auto consider = [&](const Conn& c) {
      if (c.sink) return;
      ++count;
      if (!best || c.inactive_since < best->inactive_since) best = &c;
    };
    if (among)
      for (const auto& id : *among) consider(conns_.at(id));
    else
      for (const auto& [id, c] : conns_) consider(c);
    return std::make_pair(best ? best->id : std::string(), count);
  };
  if (conns_.size() >= options_.connections_max) {
    auto [id, n] = oldest_inactive(nullptr);
    if (!id.empty()) drop(id);
  }
  auto u = by_user_.find(user_id);
  if (u == by_user_.end()) return;
  auto [id, n] = oldest_inactive(&u->second);
  if (n > options_.inactive_per_user_max && !id.empty()) drop(id);
}

void Hub::send(Conn& c, const Event& e, bool first) {
  const uint64_t id_hash = e.id.empty() ? 0 : std::hash<std::string>{}(e.id);
  if (!e.id.empty())
    for (const auto& sent : c.dead)
      if (sent.id_hash == id_hash && sent.event_id == e.id)
        return;  // already sent on this connection (a handover overlap)
  if (c.sink && !first) {
    const size_t waiting = c.sink->queued_frames();
    if (waiting >= options_.send_queue_max) {
      // Too slow: close it; it keeps its queue, so the client resumes where it stopped reading.
      ++stats_.closed_slow;
      env_.log().warn("hub: closing connection {} of user {}: {} frames waiting", c.id, c.user_id, waiting);
      ConnectionSink* sink = c.sink;
      c.sink = nullptr;
      c.inactive_since = env_.now();
      sink->close(1008, "send queue full");
    } else if (e.droppable() && waiting >= options_.send_queue_max / 2) {
      ++stats_.dropped_slow;
      return;
    }
  } else if (e.droppable()) {
    return;  // nobody is reading: typing and status are of no use later
  }
  const int64_t seq = c.next_seq++;
  std::string text = event_frame(e, seq);
  if (c.sink) {
    c.sink->send_text(text);
    ++stats_.sent;
  }
  CHORUS_ASSERT(c.dead.empty() || c.dead.back().seq < seq, "connection {}: seq {} after {}", c.id, seq,
                c.dead.back().seq);
  c.dead.push_back(Sent{seq, std::move(text), e.id, id_hash});
  while (c.dead.size() > options_.dead_queue_max) c.dead.pop_front();
  CHORUS_ASSERT(c.dead.size() <= options_.dead_queue_max);
}

bool Hub::in_post_order(const Event& e, const std::vector<std::string>& users) {
  const bool change = e.post_seq > 0;
  if (e.post_id.empty() || (!change && e.event != "posted")) return true;
  auto it = post_seqs_.find(e.post_id);
  if (!change && it == post_seqs_.end()) return true;  // a post whose changes this hub has not seen (most)
  const int64_t seq = change ? e.post_seq : e.create_at;
  if (it != post_seqs_.end() && change && seq == it->second.first) {
    ++stats_.duplicate_post_changes;
    return false;
  }
  if (it != post_seqs_.end() && seq < it->second.first) {
    // The clients have a later state of this post: this one would undo it on their screens.
    stats_.late_post_changes += users.size();
    reset_users(users);
    return false;
  }
  if (change) post_seqs_[e.post_id] = {seq, env_.now()};
  return true;
}

void Hub::deliver(const Event& e) {
  std::vector<std::string> users = e.recipients;
  if (users.empty() && !e.broadcast.user_id.empty()) users.push_back(e.broadcast.user_id);
  if (!in_post_order(e, users)) return;
  if (e.user_seq > 0) {
    // A user's own events in the order of their changes, per kind of state (preferences, sidebar,
    // profile: a late event of one kind undoes nothing of another): one that comes after a later one
    // resets the user's connections here (the clients re-read) rather than undo the later change on
    // screen. After a reset the late seq is the mark (a failover that lost commits moves it back).
    std::vector<std::string> late;
    const MonoTime now = env_.now();
    const std::string family = e.event.starts_with("preferences_")      ? "preferences"
                               : e.event.starts_with("sidebar_category_") ? "sidebar"
                                                                          : e.event;
    for (const auto& u : users) {
      auto& last = user_seqs_[u + '\n' + family];
      if (e.user_seq < last.first) late.push_back(u);
      last = {e.user_seq, now};
    }
    if (!late.empty()) {
      stats_.late_user_events += late.size();
      reset_users(late);
      std::erase_if(users, [&](const std::string& u) { return std::find(late.begin(), late.end(), u) != late.end(); });
    }
  }
  for (const auto& u : users) {
    if (std::find(e.broadcast.omit_users.begin(), e.broadcast.omit_users.end(), u) != e.broadcast.omit_users.end())
      continue;
    if (auto imp = importing_.find(u); imp != importing_.end() && !e.droppable()) imp->second.tainted = true;
    if (auto ex = exported_.find(u); ex != exported_.end() && !e.droppable()) {
      const MonoTime now = env_.now();
      std::erase_if(ex->second, [&](const Exported& x) { return now - x.at >= options_.export_watch; });
      for (const auto& x : ex->second)
        if (on_missed_after_export_) on_missed_after_export_(x.to, x.connection_id, u, e.id);
      if (ex->second.empty()) exported_.erase(ex);
    }
    auto it = by_user_.find(u);
    if (it == by_user_.end()) continue;
    for (const auto& id : std::vector<std::string>(it->second.begin(), it->second.end())) {
      auto c = conns_.find(id);
      if (c != conns_.end()) send(c->second, e);
    }
  }
}

size_t Hub::reset_users(const std::vector<std::string>& user_ids) {
  size_t n = 0;
  for (const auto& user : user_ids) {
    auto it = by_user_.find(user);
    if (it == by_user_.end()) continue;
    for (const auto& id : std::vector<std::string>(it->second.begin(), it->second.end())) {
      auto c = conns_.find(id);
      if (c == conns_.end()) continue;
      ++n;
      ConnectionSink* sink = std::exchange(c->second.sink, nullptr);
      drop(id);
      if (sink) sink->close(1012, "events may have been lost: reconnect and re-sync");
    }
  }
  return n;
}

void Hub::revoke(const std::string& user_id, const std::string& token) {
  auto it = by_user_.find(user_id);
  if (it == by_user_.end()) return;
  for (const auto& id : std::vector<std::string>(it->second.begin(), it->second.end())) {
    auto c = conns_.find(id);
    if (c == conns_.end() || (!token.empty() && c->second.token != token)) continue;
    if (c->second.sink) c->second.sink->close(1008, "session revoked");
    drop(id);
  }
}

void Hub::shutdown() {
  for (auto& [id, c] : conns_)
    if (c.sink) {
      ConnectionSink* sink = c.sink;
      c.sink = nullptr;
      c.inactive_since = env_.now();
      sink->close(1001, "server going away");
    }
}

size_t Hub::reset_all() {
  std::vector<ConnectionSink*> sinks;
  for (auto& [id, c] : conns_)
    if (c.sink) sinks.push_back(std::exchange(c.sink, nullptr));
  const size_t n = conns_.size();
  conns_.clear();
  by_user_.clear();
  for (auto* sink : sinks) sink->close(1012, "events may have been lost: reconnect and re-sync");
  return n;
}

void Hub::drop(const std::string& connection_id) {
  auto it = conns_.find(connection_id);
  if (it == conns_.end()) return;
  auto u = by_user_.find(it->second.user_id);
  if (u != by_user_.end()) {
    u->second.erase(connection_id);
    if (u->second.empty()) by_user_.erase(u);
  }
  conns_.erase(it);
}

void Hub::sweep() {
  sweep_timer_ = env_.set_timer(Duration{30'000'000}, [this] { sweep(); });
  expire();
}

void Hub::expire() {
  const MonoTime now = env_.now();
  std::erase_if(user_seqs_, [&](const auto& kv) { return now - kv.second.second > options_.inactive_keep; });
  std::erase_if(post_seqs_, [&](const auto& kv) { return now - kv.second.second > options_.inactive_keep; });
  for (auto it = exported_.begin(); it != exported_.end();) {
    std::erase_if(it->second, [&](const Exported& x) { return now - x.at >= options_.export_watch; });
    it = it->second.empty() ? exported_.erase(it) : std::next(it);
  }
  std::vector<std::string> expired;
  for (const auto& [id, c] : conns_)
    if (!c.sink && now - c.inactive_since >= options_.inactive_keep) expired.push_back(id);
  for (const auto& id : expired) {
    drop(id);
    ++stats_.expired;
  }
}

std::optional<std::string> Hub::export_queue(const std::string& connection_id, const std::string& user_id,
                                             const std::string& to) {
  auto it = conns_.find(connection_id);
  if (it == conns_.end() || it->second.user_id != user_id) return std::nullopt;
  Conn& c = it->second;
  if (c.sink) {
    // The client is here and elsewhere at once (a half-open socket here): the newer one wins.
    ConnectionSink* sink = c.sink;
    c.sink = nullptr;
    sink->close(1000, "resumed elsewhere");
  }
  json::array dead;
  for (const auto& sent : c.dead) dead.push_back(json::array{sent.seq, sent.text, sent.event_id});
  std::string out =
      json::serialize(json::object{{"id", c.id}, {"user_id", c.user_id}, {"next_seq", c.next_seq}, {"dead", dead}});
  drop(connection_id);
  if (!to.empty()) exported_[user_id].push_back(Exported{connection_id, to, env_.now()});
  return out;
}

bool Hub::missed_after_export(const std::string& connection_id, const std::string& user_id,
                              const std::string& event_id) {
  if (auto imp = importing_.find(user_id); imp != importing_.end()) {
    imp->second.tainted = true;  // the import under way is not resumed
    return true;
  }
  auto it = conns_.find(connection_id);
  if (it == conns_.end() || it->second.user_id != user_id || has_event(connection_id, user_id, event_id))
    return false;
  env_.set_timer(options_.missed_grace, [this, alive = alive_, connection_id, user_id, event_id] {
    if (!*alive) return;
    auto c = conns_.find(connection_id);
    if (c == conns_.end() || c->second.user_id != user_id || has_event(connection_id, user_id, event_id)) return;
    ++stats_.missed_after_export;
    env_.log().info("hub: connection {} lacks event {} that reached the node it came from after the handover: reset",
                    connection_id, event_id);
    ConnectionSink* sink = std::exchange(c->second.sink, nullptr);
    drop(connection_id);
    if (sink) sink->close(1012, "events may have been lost: reconnect and re-sync");
  });
  return true;
}

bool Hub::has_event(const std::string& connection_id, const std::string& user_id, const std::string& event_id) const {
  auto it = conns_.find(connection_id);
  if (it == conns_.end() || it->second.user_id != user_id) return false;
  if (event_id.empty()) return true;  // nothing to compare: assume it came
  for (const auto& sent : it->second.dead)
    if (sent.event_id == event_id) return true;
  return false;
}

bool Hub::import_queue(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return false;
  const auto& o = v.as_object();
  Conn c;
  c.id = str_of(o, "id");
  c.user_id = str_of(o, "user_id");
  auto ns = o.find("next_seq");
  auto dead = o.find("dead");
  if (c.id.empty() || c.user_id.empty() || ns == o.end() || !ns->value().is_int64() || dead == o.end() ||
      !dead->value().is_array())
    return false;
  c.next_seq = ns->value().as_int64();
  for (const auto& e : dead->value().as_array()) {
    if (!e.is_array() || e.as_array().size() != 3 || !e.as_array()[0].is_int64() || !e.as_array()[1].is_string() ||
        !e.as_array()[2].is_string())
      return false;
    std::string id(e.as_array()[2].as_string());
    const uint64_t h = id.empty() ? 0 : std::hash<std::string>{}(id);
    const int64_t seq = e.as_array()[0].as_int64();
    // What a peer hands over must keep the connection's invariants (seqs rising, below next_seq): a
    // malformed handover is refused here, not met by an assertion later.
    if ((!c.dead.empty() && seq <= c.dead.back().seq) || seq >= c.next_seq || seq < 0) return false;
    c.dead.push_back(Sent{seq, std::string(e.as_array()[1].as_string()), std::move(id), h});
  }
  if (c.dead.size() > options_.dead_queue_max || conns_.contains(c.id)) return false;
  c.inactive_since = env_.now();
  by_user_[c.user_id].insert(c.id);
  conns_.emplace(c.id, std::move(c));
  return true;
}

std::map<std::string, std::string> Hub::tokens() const {
  std::map<std::string, std::string> out;
  for (const auto& [id, c] : conns_)
    if (c.sink && !c.token.empty()) out[c.token] = c.user_id;
  return out;
}

bool Hub::end_import(const std::string& user_id) {
  auto it = importing_.find(user_id);
  if (it == importing_.end()) return false;
  const bool tainted = it->second.tainted;
  if (--it->second.pending <= 0) importing_.erase(it);
  return tainted;
}

Hub::Stats Hub::stats() const {
  Stats s = stats_;
  for (const auto& [id, c] : conns_) (c.sink ? s.active : s.inactive)++;
  return s;
}

}  // namespace chorus::app
