#include "server/app/app.h"
#include "server/core/assert.h"

#include <crypt.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <boost/json.hpp>

#include "server/cluster/messages.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

namespace {

using db::Statement;
using db::Value;

AppError error(int status, std::string id, std::string message, std::string detailed = "") {
  return AppError{status, std::move(id), std::move(message), std::move(detailed)};
}

template <class T>
Result<T> fail(AppError e) {
  return Result<T>{std::move(e), T{}};
}

template <class T>
Result<T> ok(T value) {
  return Result<T>{AppError{}, std::move(value)};
}

bool valid_name(const std::string& s, size_t min, size_t max, bool allow_underscore, bool allow_dot) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (allow_underscore && c == '_') || (allow_dot && c == '.');
    if (!ok) return false;
  }
  return true;
}

// "Id, CreateAt" with prefix "t." -> "t.Id, t.CreateAt" (for joins).
std::string prefixed(const char* columns, const char* prefix) {
  std::string out, cols = columns;
  size_t pos = 0;
  while (pos < cols.size()) {
    const size_t end = std::min(cols.find(',', pos), cols.size());
    std::string name = cols.substr(pos, end - pos);
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    out += (out.empty() ? "" : ", ") + std::string(prefix) + name;
    pos = end + 1;
  }
  return out;
}

// Constant-time comparison of two strings of the same length.
bool same_secret(const char* a, const std::string& b) {
  if (std::strlen(a) != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

int clamp_per_page(int per_page, int max) { return std::clamp(per_page <= 0 ? 60 : per_page, 1, max); }

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '"') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  if (out.size() > 16) out.resize(16);
  return out;
}

}  // namespace

AppError bad_param(const std::string& name) {
  return error(400, "api.context.invalid_param.app_error", "Invalid or missing " + name + " parameter in request body or URL.");
}
AppError not_found(const std::string& what) {
  return error(404, "app." + what + ".missing.app_error", "Unable to find the " + what + ".");
}
AppError forbidden() {
  return error(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.");
}
AppError from_db(const db::Error& e) {
  switch (e.status) {
    case db::Status::ok:
      return {};
    case db::Status::conflict:
      return error(400, "store.sql.conflict.app_error", "The change conflicts with existing data.", e.message);
    case db::Status::timeout:
      return error(504, "store.sql.timeout.app_error", "The database did not answer in time.", e.message);
    case db::Status::bad_request:
      return error(500, "store.sql.bad_request.app_error", "The database refused a request.", e.message);
    default:
      return error(503, "store.sql.unavailable.app_error", "The database is unavailable; try again.", e.message);
  }
}

namespace {
// A store callback that turns every row into a T for `done` (nothing happens once the App is gone).
template <class T>
db::Done rows_as(std::shared_ptr<bool> alive, T (*from_row)(const std::vector<db::Value>&), Callback<std::vector<T>> done) {
  return [alive = std::move(alive), from_row, done = std::move(done)](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<std::vector<T>>(from_db(o.error)));
    std::vector<T> out;
    out.reserve(o.result().rows.size());
    for (const auto& r : o.result().rows) out.push_back(from_row(r));
    done(ok(std::move(out)));
  };
}
}  // namespace

App::App(Env& env, store::Store& store, const config::Config& config, Hub& hub, AppOptions options)
    : env_(env), store_(store), config_(&config), hub_(hub), options_(options) {
  sequencer_ = std::make_unique<ChannelSequencer>(
      env_, SequencerOptions{options_.gap_wait, options_.first_wait}, [this](const Event& e) { hub_.deliver(e); },
      [this](const Event& late) { return hub_.reset_users(late.recipients); },
      [this](const std::string& channel, int64_t after, int64_t before, ChannelSequencer::Fetched done) {
        fetch_posts_between(channel, after, before, std::move(done));
      });
  revalidate_timer_ = env_.set_timer(options_.cache_ttl, [this] { revalidate_sockets(); });
}

App::~App() {
  *alive_ = false;
  if (revalidate_timer_) env_.cancel_timer(revalidate_timer_);
}

void App::revalidate_sockets() {
  revalidate_timer_ = env_.set_timer(options_.cache_ttl, [this] { revalidate_sockets(); });
  const auto held = hub_.tokens();  // token -> user, of the active connections
  if (held.empty()) return;
  // In batches of 500 tokens: those still valid come back; the others' sockets close.
  std::vector<std::pair<std::string, std::string>> all(held.begin(), held.end());
  for (size_t from = 0; from < all.size(); from += 500) {
    std::vector<Value> params{now_ms()};
    std::string in;
    auto batch = std::make_shared<std::map<std::string, std::string>>();
    for (size_t i = from; i < std::min(all.size(), from + 500); ++i) {
      params.emplace_back(all[i].first);
      in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
      (*batch)[all[i].first] = all[i].second;
    }
    store_.write({Statement{"SELECT Token FROM Sessions WHERE ExpiresAt > $1 AND Token IN (" + in + ")", params}}, false,
                 [this, alive = alive_, batch](db::Outcome o) {
                   if (!*alive || !o.ok()) return;  // a database hiccup revokes nothing
                   for (const auto& r : o.result().rows) batch->erase(text_at(r, 0));
                   for (const auto& [token, user] : *batch) {
                     env_.log().info("app: closing the WebSockets of a revoked or expired session of user {}", user);
                     sessions_.erase(token);
                     hub_.revoke(user, token);
                   }
                 });
  }
}

void App::set_messenger(cluster::Messenger* messenger) {
  messenger_ = messenger;
  if (!messenger_) return;
  // A peer gathers the cluster's figures: ours.
  messenger_->serve("cluster_stats", [this](const std::string&, const cluster::ClusterMessage&, cluster::Messenger::Reply reply) {
    const auto h = hub_.stats();
    reply(cluster::ClusterMessage{"", "", {{"websocket_connections", std::to_string(h.active)}, {"inactive_connections", std::to_string(h.inactive)}}});
  });
  // A peer asks for a connection's queue: hand it over if we hold it for that user (and forget it).
  messenger_->serve("ws_queues", [this](const std::string& from, const cluster::ClusterMessage& m, cluster::Messenger::Reply reply) {
    auto user = m.props.find("user_id");
    auto queue = user == m.props.end() ? std::nullopt : hub_.export_queue(m.data, user->second);
    if (queue) env_.log().info("app: handed WebSocket connection {} over to {}", m.data, from);
    reply(cluster::ClusterMessage{"", queue.value_or(""), {}});
  });
}

void App::analytics(const Session& actor, Callback<Analytics> done) {
  if (!actor.is_system_admin()) return done(fail<Analytics>(forbidden()));
  std::vector<Statement> counts{Statement{"SELECT COUNT(*) FROM Users WHERE DeleteAt = 0", {}},
                                Statement{"SELECT COUNT(*) FROM Teams WHERE DeleteAt = 0", {}},
                                Statement{"SELECT COUNT(*) FROM Channels WHERE DeleteAt = 0 AND Type = 'O'", {}},
                                Statement{"SELECT COUNT(*) FROM Channels WHERE DeleteAt = 0 AND Type = 'P'", {}},
                                Statement{"SELECT COUNT(*) FROM Posts WHERE DeleteAt = 0", {}}};
  store_.read(std::move(counts), [this, alive = alive_, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<Analytics>(from_db(o.error)));
    Analytics a;
    const char* names[] = {"unique_user_count", "team_count", "channel_open_count", "channel_private_count", "post_count"};
    for (size_t i = 0; i < 5; ++i) a.rows.emplace_back(names[i], int_at(o.results[i].rows.at(0), 0));
    const int64_t here = static_cast<int64_t>(hub_.stats().active);
    if (!messenger_) {
      a.rows.emplace_back("total_websocket_connections", here);
      return done(ok(std::move(a)));
    }
    messenger_->request(cluster::ClusterMessage{"cluster_stats", "", {}}, Duration{1'000'000},
                        [alive, here, a, done](cluster::Replies replies) mutable {
                          if (!*alive) return;
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
                        });
  });
}

void App::find_connection(const std::string& connection_id, const std::string& user_id, Duration timeout, std::function<void(bool)> done) {
  if (hub_.holds(connection_id)) return done(true);
  if (!messenger_) return done(false);
  // Events for this user that arrive while the queue is on its way would be missing from it: the hub
  // notes them, and then the connection is not resumed (the client gets a hello and re-syncs).
  hub_.begin_import(user_id);
  messenger_->request(cluster::ClusterMessage{"ws_queues", connection_id, {{"user_id", user_id}}}, timeout,
                      [this, alive = alive_, connection_id, user_id, done](cluster::Replies replies) {
                        if (!*alive) return;
                        bool imported = false;
                        for (const auto& [peer, reply] : replies.replies)
                          if (!imported && !reply.data.empty() && hub_.import_queue(reply.data)) {
                            env_.log().info("app: took WebSocket connection {} over from {}", connection_id, peer);
                            imported = true;
                          }
                        if (hub_.end_import(user_id) && imported) {
                          env_.log().info("app: events for user {} arrived during the handover of {}: not resumed", user_id, connection_id);
                          hub_.forget(connection_id);
                          return done(false);
                        }
                        done(hub_.holds(connection_id));
                      });
}

int64_t App::now_ms() const { return env_.wall_now().us / 1000; }

bool App::postgres() const { return store_.router().dialect() == db::Dialect::postgres; }

Duration App::cache_ttl() const {
  return std::min(options_.cache_ttl, Duration{config_->ServiceSettings.SessionCacheInMinutes * 60'000'000});
}

void App::invalidate_fills() {
  sessions_.invalidate();
  users_.invalidate();
  channels_.invalidate();
  channel_members_.invalidate();
}

// ---------------------------------------------------------------------------------------------------
// Cluster: invalidations and events.

void App::invalidate(const std::string& event, const std::string& id) {
  apply_invalidation(event, id);
  if (!messenger_) return;
  ++stats_.invalidations_sent;
  messenger_->send_to_all(cluster::ClusterMessage{event, id, {}}, cluster::Delivery::best_effort);
}

void App::apply_invalidation(const std::string& event, const std::string& id) {
  invalidate_fills();  // reads in flight no longer fill the caches
  if (event == "inv_user") {
    users_.erase(id);
  } else if (event == "inv_channel") {
    channels_.erase(id);
    channel_members_.erase(id);
  } else if (event == "inv_channel_members") {
    channel_members_.erase(id);
  } else if (event == "clear_session_user") {
    // id is "user_id" or "user_id token": the user's cached sessions go; the token's sockets close.
    const auto space = id.find(' ');
    const std::string user = id.substr(0, space);
    const std::string token = space == std::string::npos ? "" : id.substr(space + 1);
    sessions_.erase_if([&](const Session& s) { return s.user_id == user; });
    if (!token.empty()) hub_.revoke(user, token);
  }
}

void App::on_cluster_message(const std::string& from, const cluster::ClusterMessage& m) {
  if (m.event == "publish") {
    auto event = Event::from_cluster(m.data);
    if (!event) {
      env_.log().warn("app: dropped a malformed publish message from {}", from);
      return;
    }
    ++stats_.events_received;
    sequencer_->on_event(std::move(*event));  // never sent on
  } else if (m.event == "update_status") {
    boost::system::error_code ec;
    auto v = boost::json::parse(m.data, ec);
    if (ec || !v.is_object()) return;
    const auto& o = v.as_object();
    Status s;
    if (auto it = o.find("user_id"); it != o.end() && it->value().is_string()) s.user_id = it->value().as_string();
    if (auto it = o.find("status"); it != o.end() && it->value().is_string()) s.status = it->value().as_string();
    if (auto it = o.find("manual"); it != o.end() && it->value().is_bool()) s.manual = it->value().as_bool();
    if (auto it = o.find("last_activity_at"); it != o.end() && it->value().is_int64()) s.last_activity_at = it->value().as_int64();
    if (!s.user_id.empty()) statuses_.put(s.user_id, s, env_.now());
  } else if (m.event.rfind("inv_", 0) == 0 || m.event == "clear_session_user") {
    ++stats_.invalidations_received;
    apply_invalidation(m.event, m.data);
  }
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

void App::publish(Event event) {
  ++stats_.events_published;
  if (event.id.empty()) event.id = new_id(env_.random());
  if (messenger_)
    messenger_->send_to_all(cluster::ClusterMessage{"publish", event.to_cluster(), {}},
                            event.reliable ? cluster::Delivery::reliable : cluster::Delivery::best_effort);
  sequencer_->on_event(std::move(event));
}

// ---------------------------------------------------------------------------------------------------
// Posts in channel order on every node.

// The posts of a channel with after < create_at < before, as posted events to its members (the
// sequencer's gap fill): nullopt when the master, the channel or its members cannot be read.
void App::fetch_posts_between(const std::string& channel, int64_t after, int64_t before, ChannelSequencer::Fetched done) {
  store_.write({Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE ChannelId = $1 AND CreateAt > $2 AND CreateAt < $3 ORDER BY CreateAt ASC LIMIT 1000",
                          {channel, after, before}}},
               false, [this, alive = alive_, channel, done](db::Outcome out) {
                 if (!*alive) return;
                 if (!out.ok()) return done(std::nullopt);
                 std::vector<Post> posts;
                 for (const auto& row : out.result().rows) posts.push_back(post_from_row(row));
                 if (posts.empty()) return done(std::vector<Event>{});
                 load_channel(channel, [this, alive, channel, posts, done](AppError e, std::optional<Channel> c) {
                   if (!*alive) return;
                   if (!e.ok() || !c) return done(std::nullopt);
                   channel_member_ids(channel, [this, alive, posts, c, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) {
                     if (!*alive) return;
                     if (!e2.ok()) return done(std::nullopt);
                     const std::vector<std::string> recipients(ids->begin(), ids->end());
                     std::vector<Event> filled;
                     for (const auto& p : posts) {
                       Event ev = posted_event(*c, p, recipients);
                       ev.id = new_id(env_.random());
                       filled.push_back(std::move(ev));
                     }
                     done(std::move(filled));
                   });
                 });
               });
}

// ---------------------------------------------------------------------------------------------------
// Passwords (bcrypt, off the loop).

void App::hash_password(const std::string& password, std::function<void(std::string)> done) {
  std::array<char, 16> salt_bytes;
  for (auto& b : salt_bytes) b = static_cast<char>(env_.random().next_u64());
  auto out = std::make_shared<std::string>();
  const int cost = options_.bcrypt_cost;
  env_.run_blocking(
      [password, salt_bytes, cost, out] {
        char setting[CRYPT_GENSALT_OUTPUT_SIZE];
        if (!crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), salt_bytes.data(), static_cast<int>(salt_bytes.size()), setting,
                              sizeof setting))
          return;
        auto data = std::make_unique<crypt_data>();
        const char* hash = crypt_rn(password.c_str(), setting, data.get(), sizeof(crypt_data));
        if (hash && hash[0] == '$') *out = hash;
      },
      [out, done = std::move(done)] { done(*out); });
}

void App::check_password(const std::string& password, const std::string& hash, std::function<void(bool)> done) {
  auto matches = std::make_shared<bool>(false);
  env_.run_blocking(
      [password, hash, matches] {
        if (hash.rfind("$2", 0) != 0) return;
        auto data = std::make_unique<crypt_data>();
        const char* again = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
        *matches = again && same_secret(again, hash);
      },
      [matches, done = std::move(done)] { done(*matches); });
}

// ---------------------------------------------------------------------------------------------------
// Sessions and users.

void App::authenticate(const std::string& token, Callback<Session> done) {
  const auto expired = error(401, "api.context.session_expired.app_error", "Invalid or expired session, please login again.");
  if (token.empty() || token.size() > 64) return done(fail<Session>(expired));
  if (const Session* cached = sessions_.get(token, env_.now(), cache_ttl())) {
    ++stats_.cache_hits;
    if (cached->expires_at <= now_ms()) return done(fail<Session>(expired));
    return done(ok(*cached));
  }
  ++stats_.cache_misses;
  // From the master: a session made a moment ago on another node must be found.
  store_.write({Statement{std::string("SELECT ") + kSessionColumns + " FROM Sessions WHERE Token = $1", {token}}}, false,
               [this, alive = alive_, token, expired, done, epoch = sessions_.epoch()](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Session>(from_db(o.error)));
                 if (o.result().rows.empty()) return done(fail<Session>(expired));
                 Session s = session_from_row(o.result().rows[0]);
                 if (s.expires_at <= now_ms()) return done(fail<Session>(expired));
                 // Not cached if an invalidation happened while we read: it may be about this very session.
                 sessions_.fill(token, s, env_.now(), epoch);
                 done(ok(std::move(s)));
               });
}

void App::create_user(const Session* actor, NewUser u, Callback<User> done) {
  for (auto& c : u.username) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : u.email) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!valid_name(u.username, 3, 22, true, true) || !(u.username[0] >= 'a' && u.username[0] <= 'z'))
    return done(fail<User>(error(400, "model.user.is_valid.username.app_error",
                                 "Username must begin with a letter and contain between 3 to 22 lowercase characters made up of numbers, "
                                 "letters, and the symbols '.', '-', and '_'.")));
  const auto at = u.email.find('@');
  if (u.email.size() > 128 || at == std::string::npos || at == 0 || at + 1 == u.email.size())
    return done(fail<User>(error(400, "model.user.is_valid.email.app_error", "Invalid email.")));
  if (u.password.size() < 8 || u.password.size() > 72)
    return done(fail<User>(error(400, "model.user.is_valid.pwd.app_error", "Your password must contain between 8 and 72 characters.")));
  if (u.first_name.size() > 64 || u.last_name.size() > 64 || u.nickname.size() > 64) return done(fail<User>(bad_param("user")));
  if (u.locale.size() > 5) return done(fail<User>(bad_param("locale")));
  create_user_checked(actor && actor->is_system_admin(), std::move(u), true, std::move(done));
}

void App::create_user_checked(bool admin, NewUser u, bool may_retry, Callback<User> done) {
  store_.write({Statement{"SELECT COUNT(*) FROM Users", {}}}, false, [this, alive = alive_, u, admin, may_retry, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<User>(from_db(o.error)));
    const bool first = int_at(o.result().rows.at(0), 0) == 0;
    const auto& team = config_->TeamSettings;
    if (!first && !admin && !team.EnableUserCreation)
      return done(fail<User>(error(403, "api.user.create_user.signup_email_disabled.app_error", "User sign-up is disabled.")));
    if (!first && !admin && !team.EnableOpenServer)
      return done(fail<User>(error(403, "api.user.create_user.no_open_server", "This server does not allow open signups.")));
    hash_password(u.password, [this, alive, u, admin, may_retry, done](std::string hash) {
      if (!*alive) return;
      if (hash.empty()) return done(fail<User>(error(500, "app.user.hash_password.app_error", "Could not hash the password.")));
      const std::string id = new_id(env_.random());
      const int64_t now = now_ms();
      // The first user becomes system admin. The claim is a row of its own (Systems.FirstUserId), so two
      // nodes creating users at once on an empty database cannot both be first: the second conflicts and
      // starts over, no longer first.
      std::vector<Statement> s{
          Statement{"INSERT INTO Systems (Name, Value) SELECT 'FirstUserId', $1 WHERE NOT EXISTS (SELECT 1 FROM Users)"
                    " AND NOT EXISTS (SELECT 1 FROM Systems WHERE Name = 'FirstUserId')",
                    {id}},
          Statement{"INSERT INTO Users (Id, CreateAt, UpdateAt, Username, Password, Email, Nickname, FirstName, LastName, Roles, Locale,"
                    " LastPasswordUpdate) SELECT $1, $2, $2, $3, $4, $5, $6, $7, $8, CASE WHEN EXISTS (SELECT 1 FROM Systems WHERE"
                    " Name = 'FirstUserId' AND Value = $10) THEN 'system_admin system_user' ELSE 'system_user' END, $9, $2",
                    // ($10 repeats $1: PostgreSQL deduces one type per parameter, VARCHAR for Id and TEXT for Value)
                    {id, now, u.username, hash, u.email, u.nickname, u.first_name, u.last_name, u.locale.empty() ? "en" : u.locale, id}},
          Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id = $1", {id}}};
      store_.write(std::move(s), true, [this, alive, u, admin, may_retry, done](db::Outcome o) {
        if (!*alive) return;
        if (o.error.status == db::Status::conflict) {
          if (may_retry) return create_user_checked(admin, u, false, done);  // maybe lost the race to be first
          return done(fail<User>(error(400, "app.user.save.existing.app_error", "An account with that username or email already exists.")));
        }
        if (!o.ok()) return done(fail<User>(from_db(o.error)));
        done(ok(user_from_row(o.results.at(2).rows.at(0))));
      });
    });
  });
}

void App::login(const std::string& login_id, const std::string& password, const std::string& device_id,
                Callback<std::pair<User, Session>> done) {
  const auto invalid = error(401, "api.user.login.invalid_credentials_email_username", "Enter a valid email or username and/or password.");
  if (login_id.empty() || login_id.size() > 128 || password.empty() || password.size() > 72)
    return done(fail<std::pair<User, Session>>(invalid));
  std::string lower = login_id;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  store_.write({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE (Username = $1 OR Email = $1) AND DeleteAt = 0", {lower}}},
               false, [this, alive = alive_, password, device_id, invalid, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<std::pair<User, Session>>(from_db(o.error)));
                 if (o.result().rows.empty()) return done(fail<std::pair<User, Session>>(invalid));
                 User user = user_from_row(o.result().rows[0]);
                 const std::string hash = user.password_hash;
                 check_password(password, hash, [this, alive, user, device_id, invalid, done](bool matches) {
                   if (!*alive) return;
                   if (!matches) return done(fail<std::pair<User, Session>>(invalid));
                   Session s;
                   s.id = new_id(env_.random());
                   s.token = new_id(env_.random());
                   s.create_at = s.last_activity_at = now_ms();
                   s.expires_at = s.create_at + config_->ServiceSettings.SessionLengthWebInHours * 3'600'000;
                   s.user_id = user.id;
                   s.device_id = device_id;
                   s.roles = user.roles;
                   store_.write({Statement{"INSERT INTO Sessions (Id, Token, CreateAt, ExpiresAt, LastActivityAt, UserId, DeviceId, Roles)"
                                           " VALUES ($1, $2, $3, $4, $3, $5, $6, $7)",
                                           {s.id, s.token, s.create_at, s.expires_at, s.user_id, s.device_id, s.roles}}},
                                false, [this, alive, user, s, done](db::Outcome o2) {
                                  if (!*alive) return;
                                  if (!o2.ok()) return done(fail<std::pair<User, Session>>(from_db(o2.error)));
                                  sessions_.put(s.token, s, env_.now());
                                  done(ok(std::make_pair(user, s)));
                                });
                 });
               });
}

void App::logout(const Session& session, Callback<Unit> done) {
  store_.write({Statement{"DELETE FROM Sessions WHERE Token = $1", {session.token}}}, false,
               [this, alive = alive_, session, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 sessions_.erase(session.token);
                 // Every node drops the user's cached sessions and closes this token's sockets.
                 invalidate("clear_session_user", session.user_id + " " + session.token);
                 done(ok(Unit{}));
               });
}

void App::get_user(const Session& actor, const std::string& user_id, Callback<User> done) {
  if (!is_valid_id(user_id)) return done(fail<User>(bad_param("user_id")));
  if (const User* cached = users_.get(user_id, env_.now(), cache_ttl())) {
    ++stats_.cache_hits;
    return done(ok(*cached));
  }
  ++stats_.cache_misses;
  store_.read({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id = $1", {user_id}}},
              [this, alive = alive_, user_id, done, epoch = users_.epoch()](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<User>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<User>(not_found("user")));
                User u = user_from_row(o.result().rows[0]);
                users_.fill(user_id, u, env_.now(), epoch);
                done(ok(std::move(u)));
              });
}

void App::get_user_by_username(const Session& actor, const std::string& username, Callback<User> done) {
  if (username.empty() || username.size() > 64) return done(fail<User>(bad_param("username")));
  store_.read({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Username = $1", {username}}},
              [alive = alive_, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<User>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<User>(not_found("user")));
                done(ok(user_from_row(o.result().rows[0])));
              });
}

void App::get_users_by_ids(const Session& actor, const std::vector<std::string>& ids, Callback<std::vector<User>> done) {
  if (ids.empty()) return done(ok(std::vector<User>{}));
  if (ids.size() > 1000) return done(fail<std::vector<User>>(bad_param("user_ids")));
  std::string in;
  std::vector<Value> params;
  for (const auto& id : ids) {
    if (!is_valid_id(id)) return done(fail<std::vector<User>>(bad_param("user_ids")));
    params.emplace_back(id);
    in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  store_.read({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id IN (" + in + ") ORDER BY Username", params}},
              rows_as<User>(alive_, user_from_row, done));
}

void App::list_users(const Session& actor, int page, int per_page, Callback<std::vector<User>> done) {
  per_page = clamp_per_page(per_page, options_.per_page_max);
  store_.read({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE DeleteAt = 0 ORDER BY Username LIMIT $1 OFFSET $2",
                         {static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
              rows_as<User>(alive_, user_from_row, done));
}

// ---------------------------------------------------------------------------------------------------
// Teams.

void App::is_team_member(const std::string& team_id, const std::string& user_id, std::function<void(AppError, bool)> done) {
  // From the master, as every read that decides a permission: a replica may not have the removal yet.
  store_.write({Statement{"SELECT 1 FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0", {team_id, user_id}}}, false,
              [alive = alive_, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(from_db(o.error), false);
                done({}, !o.result().rows.empty());
              });
}

void App::create_team(const Session& actor, Team team, Callback<Team> done) {
  if (!valid_name(team.name, 2, 64, false, false) || team.name.front() == '-')
    return done(fail<Team>(error(400, "model.team.is_valid.url.app_error", "Team URL must be 2-64 lowercase letters, numbers or dashes.")));
  if (team.display_name.empty() || team.display_name.size() > 64) return done(fail<Team>(bad_param("display_name")));
  if (team.type != "O" && team.type != "I") return done(fail<Team>(bad_param("type")));
  if (team.description.size() > 255) return done(fail<Team>(bad_param("description")));
  if (team.email.size() > 128) return done(fail<Team>(bad_param("email")));
  team.id = new_id(env_.random());
  team.create_at = team.update_at = now_ms();
  const std::string town = new_id(env_.random()), off = new_id(env_.random());
  const int64_t now = team.create_at;
  std::vector<Statement> s{
      Statement{"INSERT INTO Teams (Id, CreateAt, UpdateAt, DisplayName, Name, Description, Email, Type, AllowOpenInvite)"
                " VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)",
                {team.id, now, team.display_name, team.name, team.description, team.email, team.type, int64_t{team.allow_open_invite}}},
      Statement{"INSERT INTO TeamMembers (TeamId, UserId, Roles, CreateAt) VALUES ($1, $2, 'team_user team_admin', $3)",
                {team.id, actor.user_id, now}},
      // Every team starts with Town Square and Off-Topic, its creator in both (as Mattermost).
      Statement{"INSERT INTO Channels (Id, CreateAt, UpdateAt, TeamId, Type, DisplayName, Name, CreatorId) VALUES"
                " ($1, $3, $3, $4, 'O', 'Town Square', 'town-square', $5), ($2, $3, $3, $4, 'O', 'Off-Topic', 'off-topic', $5)",
                {town, off, now, team.id, actor.user_id}},
      Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) VALUES ($1, $3, 'channel_user', $4),"
                " ($2, $3, 'channel_user', $4)",
                {town, off, actor.user_id, now}}};
  store_.write(std::move(s), true, [this, alive = alive_, team, done](db::Outcome o) {
    if (!*alive) return;
    if (o.error.status == db::Status::conflict)
      return done(fail<Team>(error(400, "store.sql_team.save_team.existing.app_error", "A team with that name already exists.")));
    if (!o.ok()) return done(fail<Team>(from_db(o.error)));
    done(ok(team));
  });
}

void App::get_team(const Session& actor, const std::string& team_id, Callback<Team> done) {
  if (!is_valid_id(team_id)) return done(fail<Team>(bad_param("team_id")));
  store_.read({Statement{std::string("SELECT ") + kTeamColumns + " FROM Teams WHERE Id = $1", {team_id}}},
              [this, alive = alive_, actor, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Team>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<Team>(not_found("team")));
                Team t = team_from_row(o.result().rows[0]);
                if (actor.is_system_admin() || (t.type == "O" && t.allow_open_invite)) return done(ok(std::move(t)));
                is_team_member(t.id, actor.user_id, [t, done](AppError e, bool member) {
                  if (!e.ok()) return done(fail<Team>(e));
                  if (!member) return done(fail<Team>(forbidden()));
                  done(ok(t));
                });
              });
}

void App::get_team_by_name(const Session& actor, const std::string& name, Callback<Team> done) {
  if (!valid_name(name, 1, 64, false, false)) return done(fail<Team>(bad_param("name")));
  store_.read({Statement{"SELECT Id FROM Teams WHERE Name = $1", {name}}}, [this, alive = alive_, actor, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<Team>(from_db(o.error)));
    if (o.result().rows.empty()) return done(fail<Team>(not_found("team")));
    get_team(actor, text_at(o.result().rows[0], 0), done);
  });
}

void App::teams_for_user(const Session& actor, const std::string& user_id, Callback<std::vector<Team>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<Team>>(forbidden()));
  store_.read({Statement{"SELECT " + prefixed(kTeamColumns, "t.") +
                             " FROM Teams t JOIN TeamMembers m ON m.TeamId = t.Id WHERE m.UserId = $1 AND m.DeleteAt = 0 AND t.DeleteAt = 0"
                             " ORDER BY t.DisplayName",
                         {user_id}}},
              rows_as<Team>(alive_, team_from_row, done));
}

void App::list_teams(const Session& actor, Callback<std::vector<Team>> done) {
  // A system admin sees every team; others the open ones.
  const std::string where = actor.is_system_admin() ? "DeleteAt = 0" : "DeleteAt = 0 AND Type = 'O' AND AllowOpenInvite = 1";
  store_.read({Statement{std::string("SELECT ") + kTeamColumns + " FROM Teams WHERE " + where + " ORDER BY DisplayName LIMIT 1000", {}}},
              rows_as<Team>(alive_, team_from_row, done));
}

void App::add_team_member(const Session& actor, const std::string& team_id, const std::string& user_id, Callback<TeamMember> done) {
  if (!is_valid_id(team_id)) return done(fail<TeamMember>(bad_param("team_id")));
  if (!is_valid_id(user_id)) return done(fail<TeamMember>(bad_param("user_id")));
  // Who may add: a system admin, a team admin, or anyone joining an open team themselves.
  store_.write({Statement{std::string("SELECT ") + kTeamColumns + " FROM Teams WHERE Id = $1", {team_id}},
                Statement{"SELECT Roles FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0", {team_id, actor.user_id}},
                Statement{"SELECT 1 FROM Users WHERE Id = $1", {user_id}}},
               false, [this, alive = alive_, actor, team_id, user_id, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<TeamMember>(from_db(o.error)));
                 if (o.results[0].rows.empty()) return done(fail<TeamMember>(not_found("team")));
                 if (o.results[2].rows.empty()) return done(fail<TeamMember>(not_found("user")));
                 const Team team = team_from_row(o.results[0].rows[0]);
                 const bool team_admin = !o.results[1].rows.empty() && text_at(o.results[1].rows[0], 0).find("team_admin") != std::string::npos;
                 const bool self_join = actor.user_id == user_id && team.type == "O" && team.allow_open_invite;
                 if (!actor.is_system_admin() && !team_admin && !self_join) return done(fail<TeamMember>(forbidden()));
                 const int64_t now = now_ms();
                 std::vector<Statement> s{
                     Statement{"INSERT INTO TeamMembers (TeamId, UserId, Roles, CreateAt) VALUES ($1, $2, 'team_user', $3)"
                               " ON CONFLICT (TeamId, UserId) DO UPDATE SET DeleteAt = 0, Roles = 'team_user'",
                               {team_id, user_id, now}},
                     Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) SELECT Id, $2, 'channel_user', $3"
                               " FROM Channels WHERE TeamId = $1 AND Name IN ('town-square', 'off-topic') AND DeleteAt = 0"
                               " ON CONFLICT (ChannelId, UserId) DO NOTHING",
                               {team_id, user_id, now}},
                     Statement{"SELECT Id FROM Channels WHERE TeamId = $1 AND Name IN ('town-square', 'off-topic')", {team_id}},
                     Statement{std::string("SELECT ") + kTeamMemberColumns + " FROM TeamMembers WHERE TeamId = $1 AND UserId = $2",
                               {team_id, user_id}}};
                 store_.write(std::move(s), true, [this, alive, team_id, user_id, done](db::Outcome o2) {
                   if (!*alive) return;
                   if (!o2.ok()) return done(fail<TeamMember>(from_db(o2.error)));
                   for (const auto& r : o2.results[2].rows) invalidate("inv_channel_members", text_at(r, 0));
                   Event e{"added_to_team", boost::json::object{{"team_id", team_id}, {"user_id", user_id}}};
                   e.broadcast.user_id = user_id;
                   e.reliable = true;
                   publish(std::move(e));
                   done(ok(team_member_from_row(o2.results[3].rows.at(0))));
                 });
               });
}

void App::remove_team_member(const Session& actor, const std::string& team_id, const std::string& user_id, Callback<Unit> done) {
  if (!is_valid_id(team_id)) return done(fail<Unit>(bad_param("team_id")));
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  store_.write({Statement{"SELECT Roles FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0", {team_id, actor.user_id}}}, false,
               [this, alive = alive_, actor, team_id, user_id, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 const bool team_admin = !o.result().rows.empty() && text_at(o.result().rows[0], 0).find("team_admin") != std::string::npos;
                 if (!actor.is_system_admin() && !team_admin && actor.user_id != user_id) return done(fail<Unit>(forbidden()));
                 std::vector<Statement> s{
                     Statement{"SELECT Id FROM Channels WHERE TeamId = $1", {team_id}},
                     Statement{"DELETE FROM ChannelMembers WHERE UserId = $2 AND ChannelId IN (SELECT Id FROM Channels WHERE TeamId = $1)",
                               {team_id, user_id}},
                     Statement{"UPDATE TeamMembers SET DeleteAt = $3 WHERE TeamId = $1 AND UserId = $2", {team_id, user_id, now_ms()}}};
                 store_.write(std::move(s), true, [this, alive, team_id, user_id, done](db::Outcome o2) {
                   if (!*alive) return;
                   if (!o2.ok()) return done(fail<Unit>(from_db(o2.error)));
                   for (const auto& r : o2.results[0].rows) invalidate("inv_channel_members", text_at(r, 0));
                   Event e{"leave_team", boost::json::object{{"team_id", team_id}, {"user_id", user_id}}};
                   e.broadcast.user_id = user_id;
                   e.reliable = true;
                   publish(std::move(e));
                   done(ok(Unit{}));
                 });
               });
}

void App::team_members(const Session& actor, const std::string& team_id, int page, int per_page, Callback<std::vector<TeamMember>> done) {
  if (!is_valid_id(team_id)) return done(fail<std::vector<TeamMember>>(bad_param("team_id")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  is_team_member(team_id, actor.user_id, [this, alive = alive_, actor, team_id, page, per_page, done](AppError e, bool member) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<std::vector<TeamMember>>(e));
    if (!member && !actor.is_system_admin()) return done(fail<std::vector<TeamMember>>(forbidden()));
    store_.read({Statement{std::string("SELECT ") + kTeamMemberColumns +
                               " FROM TeamMembers WHERE TeamId = $1 AND DeleteAt = 0 ORDER BY UserId LIMIT $2 OFFSET $3",
                           {team_id, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
                rows_as<TeamMember>(alive, team_member_from_row, done));
  });
}

void App::team_members_for_user(const Session& actor, const std::string& user_id, Callback<std::vector<TeamMember>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<TeamMember>>(forbidden()));
  store_.read({Statement{std::string("SELECT ") + kTeamMemberColumns + " FROM TeamMembers WHERE UserId = $1 AND DeleteAt = 0", {user_id}}},
              rows_as<TeamMember>(alive_, team_member_from_row, done));
}

// ---------------------------------------------------------------------------------------------------
// Channels.

void App::load_channel(const std::string& channel_id, std::function<void(AppError, std::optional<Channel>)> done) {
  if (const Channel* cached = channels_.get(channel_id, env_.now(), cache_ttl())) {
    ++stats_.cache_hits;
    return done({}, *cached);
  }
  ++stats_.cache_misses;
  store_.read({Statement{std::string("SELECT ") + kChannelColumns + " FROM Channels WHERE Id = $1", {channel_id}}},
              [this, alive = alive_, channel_id, done, epoch = channels_.epoch()](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(from_db(o.error), std::nullopt);
                if (o.result().rows.empty()) return done({}, std::nullopt);
                Channel c = channel_from_row(o.result().rows[0]);
                channels_.fill(channel_id, c, env_.now(), epoch);
                done({}, std::move(c));
              });
}

void App::channel_member_ids(const std::string& channel_id, std::function<void(AppError, std::shared_ptr<const std::set<std::string>>)> done) {
  if (const auto* cached = channel_members_.get(channel_id, env_.now(), cache_ttl())) {
    ++stats_.cache_hits;
    return done({}, *cached);
  }
  ++stats_.cache_misses;
  // From the master: a member added a moment ago on another node must be able to post.
  store_.write({Statement{"SELECT UserId FROM ChannelMembers WHERE ChannelId = $1", {channel_id}}}, false,
               [this, alive = alive_, channel_id, done, epoch = channel_members_.epoch()](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(from_db(o.error), nullptr);
                 auto ids = std::make_shared<std::set<std::string>>();
                 for (const auto& r : o.result().rows) ids->insert(text_at(r, 0));
                 channel_members_.fill(channel_id, ids, env_.now(), epoch);
                 done({}, ids);
               });
}

void App::can_read_channel(const Session& actor, const std::string& channel_id, std::function<void(AppError, std::optional<Channel>)> done) {
  if (!is_valid_id(channel_id)) return done(bad_param("channel_id"), std::nullopt);
  load_channel(channel_id, [this, alive = alive_, actor, channel_id, done](AppError e, std::optional<Channel> c) {
    if (!*alive) return;
    if (!e.ok()) return done(e, std::nullopt);
    if (!c || c->delete_at != 0) return done(not_found("channel"), std::nullopt);
    if (actor.is_system_admin()) return done({}, c);
    channel_member_ids(channel_id, [this, alive, actor, c, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) {
      if (!*alive) return;
      if (!e2.ok()) return done(e2, std::nullopt);
      if (ids->contains(actor.user_id)) return done({}, c);
      if (c->type != "O") return done(forbidden(), std::nullopt);
      is_team_member(c->team_id, actor.user_id, [c, done](AppError e3, bool member) {
        if (!e3.ok()) return done(e3, std::nullopt);
        if (!member) return done(forbidden(), std::nullopt);
        done({}, c);
      });
    });
  });
}

void App::create_channel(const Session& actor, Channel ch, Callback<Channel> done) {
  if (!is_valid_id(ch.team_id)) return done(fail<Channel>(bad_param("team_id")));
  if (!valid_name(ch.name, 1, 64, true, false))
    return done(fail<Channel>(error(400, "model.channel.is_valid.2_or_more.app_error", "Name must be 1-64 lowercase letters, numbers, - or _.")));
  if (ch.display_name.empty() || ch.display_name.size() > 64) return done(fail<Channel>(bad_param("display_name")));
  if (ch.type != "O" && ch.type != "P") return done(fail<Channel>(bad_param("type")));
  if (ch.header.size() > 1024 || ch.purpose.size() > 250) return done(fail<Channel>(bad_param("header")));
  is_team_member(ch.team_id, actor.user_id, [this, alive = alive_, actor, ch, done](AppError e, bool member) mutable {
    if (!*alive) return;
    if (!e.ok()) return done(fail<Channel>(e));
    if (!member && !actor.is_system_admin()) return done(fail<Channel>(forbidden()));
    ch.id = new_id(env_.random());
    ch.create_at = ch.update_at = now_ms();
    ch.creator_id = actor.user_id;
    std::vector<Statement> s{
        Statement{"INSERT INTO Channels (Id, CreateAt, UpdateAt, TeamId, Type, DisplayName, Name, Header, Purpose, CreatorId)"
                  " VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)",
                  {ch.id, ch.create_at, ch.team_id, ch.type, ch.display_name, ch.name, ch.header, ch.purpose, ch.creator_id}},
        Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) VALUES ($1, $2, 'channel_user channel_admin', $3)",
                  {ch.id, actor.user_id, ch.create_at}}};
    store_.write(std::move(s), true, [this, alive, ch, done](db::Outcome o) {
      if (!*alive) return;
      if (o.error.status == db::Status::conflict)
        return done(fail<Channel>(error(400, "store.sql_channel.save_channel.exists.app_error", "A channel with that name already exists on the same team.")));
      if (!o.ok()) return done(fail<Channel>(from_db(o.error)));
      Event e{"channel_created", boost::json::object{{"channel_id", ch.id}, {"team_id", ch.team_id}}};
      e.broadcast.user_id = ch.creator_id;
      publish(std::move(e));
      done(ok(ch));
    });
  });
}

void App::get_channel(const Session& actor, const std::string& channel_id, Callback<Channel> done) {
  can_read_channel(actor, channel_id, [done](AppError e, std::optional<Channel> c) {
    if (!e.ok()) return done(fail<Channel>(e));
    done(ok(*c));
  });
}

void App::get_channel_by_name(const Session& actor, const std::string& team_id, const std::string& name, Callback<Channel> done) {
  if (!is_valid_id(team_id)) return done(fail<Channel>(bad_param("team_id")));
  if (!valid_name(name, 1, 64, true, false)) return done(fail<Channel>(bad_param("channel_name")));
  store_.read({Statement{"SELECT Id FROM Channels WHERE TeamId = $1 AND Name = $2 AND DeleteAt = 0", {team_id, name}}},
              [this, alive = alive_, actor, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Channel>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<Channel>(not_found("channel")));
                get_channel(actor, text_at(o.result().rows[0], 0), done);
              });
}

void App::public_channels(const Session& actor, const std::string& team_id, int page, int per_page, Callback<std::vector<Channel>> done) {
  if (!is_valid_id(team_id)) return done(fail<std::vector<Channel>>(bad_param("team_id")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  is_team_member(team_id, actor.user_id, [this, alive = alive_, actor, team_id, page, per_page, done](AppError e, bool member) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<std::vector<Channel>>(e));
    if (!member && !actor.is_system_admin()) return done(fail<std::vector<Channel>>(forbidden()));
    store_.read({Statement{std::string("SELECT ") + kChannelColumns +
                               " FROM Channels WHERE TeamId = $1 AND Type = 'O' AND DeleteAt = 0 ORDER BY DisplayName LIMIT $2 OFFSET $3",
                           {team_id, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
                rows_as<Channel>(alive, channel_from_row, done));
  });
}

void App::channels_for_user(const Session& actor, const std::string& user_id, const std::string& team_id, Callback<std::vector<Channel>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<Channel>>(forbidden()));
  if (!is_valid_id(team_id)) return done(fail<std::vector<Channel>>(bad_param("team_id")));
  const std::string cols = prefixed(kChannelColumns, "c.");
  store_.read({Statement{"SELECT " + cols +
                             " FROM Channels c JOIN ChannelMembers m ON m.ChannelId = c.Id WHERE m.UserId = $1 AND c.TeamId = $2 AND c.DeleteAt = 0"
                             " ORDER BY c.DisplayName",
                         {user_id, team_id}}},
              rows_as<Channel>(alive_, channel_from_row, done));
}

void App::add_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id, Callback<ChannelMember> done) {
  if (!is_valid_id(user_id)) return done(fail<ChannelMember>(bad_param("user_id")));
  can_read_channel(actor, channel_id, [this, alive = alive_, actor, channel_id, user_id, done](AppError e, std::optional<Channel> c) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<ChannelMember>(e));
    // Members add others; anyone who can read a public channel may join it.
    channel_member_ids(channel_id, [this, alive, actor, c, user_id, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) {
      if (!*alive) return;
      if (!e2.ok()) return done(fail<ChannelMember>(e2));
      const bool member = ids->contains(actor.user_id);
      const bool self_join = actor.user_id == user_id && c->type == "O";
      if (!member && !self_join && !actor.is_system_admin()) return done(fail<ChannelMember>(forbidden()));
      is_team_member(c->team_id, user_id, [this, alive, c, user_id, actor, done](AppError e3, bool in_team) {
        if (!*alive) return;
        if (!e3.ok()) return done(fail<ChannelMember>(e3));
        if (!in_team)
          return done(fail<ChannelMember>(error(400, "api.channel.add_user.to.channel.failed.deleted.app_error",
                                                "The user is not a member of the channel's team.")));
        const int64_t now = now_ms();
        std::vector<Statement> s{Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) VALUES ($1, $2, 'channel_user', $3)"
                                           " ON CONFLICT (ChannelId, UserId) DO NOTHING",
                                           {c->id, user_id, now}},
                                 Statement{std::string("SELECT ") + kChannelMemberColumns + " FROM ChannelMembers WHERE ChannelId = $1 AND UserId = $2",
                                           {c->id, user_id}},
                                 Statement{"SELECT UserId FROM ChannelMembers WHERE ChannelId = $1", {c->id}}};
        store_.write(std::move(s), true, [this, alive, c, user_id, actor, done](db::Outcome o) {
          if (!*alive) return;
          if (!o.ok()) return done(fail<ChannelMember>(from_db(o.error)));
          invalidate("inv_channel_members", c->id);
          if (o.results[0].affected > 0) {
            Event ev{"user_added", boost::json::object{{"user_id", user_id}, {"team_id", c->team_id}}};
            ev.broadcast.channel_id = c->id;
            for (const auto& r : o.results[2].rows) ev.recipients.push_back(text_at(r, 0));
            ev.reliable = true;
            publish(std::move(ev));
          }
          done(ok(channel_member_from_row(o.results[1].rows.at(0))));
        });
      });
    });
  });
}

void App::remove_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id, Callback<Unit> done) {
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  can_read_channel(actor, channel_id, [this, alive = alive_, actor, channel_id, user_id, done](AppError e, std::optional<Channel> c) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<Unit>(e));
    if (c->name == "town-square") return done(fail<Unit>(error(400, "api.channel.remove.default.app_error", "Cannot leave Town Square.")));
    channel_member_ids(channel_id, [this, alive, actor, channel_id, user_id, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) {
      if (!*alive) return;
      if (!e2.ok()) return done(fail<Unit>(e2));
      if (!ids->contains(actor.user_id) && !actor.is_system_admin()) return done(fail<Unit>(forbidden()));
      std::vector<std::string> recipients(ids->begin(), ids->end());
      store_.write({Statement{"DELETE FROM ChannelMembers WHERE ChannelId = $1 AND UserId = $2", {channel_id, user_id}}}, false,
                   [this, alive, actor, channel_id, user_id, recipients, done](db::Outcome o) {
                     if (!*alive) return;
                     if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                     invalidate("inv_channel_members", channel_id);
                     if (o.result().affected > 0) {
                       Event ev{"user_removed", boost::json::object{{"user_id", user_id}, {"remover_id", actor.user_id}, {"channel_id", channel_id}}};
                       ev.broadcast.channel_id = channel_id;
                       ev.recipients = recipients;
                       ev.reliable = true;
                       publish(std::move(ev));
                     }
                     done(ok(Unit{}));
                   });
    });
  });
}

void App::channel_members(const Session& actor, const std::string& channel_id, int page, int per_page, Callback<std::vector<ChannelMember>> done) {
  per_page = clamp_per_page(per_page, options_.per_page_max);
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, page, per_page, done](AppError e, std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<std::vector<ChannelMember>>(e));
    store_.read({Statement{std::string("SELECT ") + kChannelMemberColumns + " FROM ChannelMembers WHERE ChannelId = $1 ORDER BY UserId LIMIT $2 OFFSET $3",
                           {channel_id, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
                rows_as<ChannelMember>(alive, channel_member_from_row, done));
  });
}

void App::channel_members_for_user(const Session& actor, const std::string& user_id, const std::string& team_id,
                                   Callback<std::vector<ChannelMember>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<ChannelMember>>(forbidden()));
  if (!is_valid_id(team_id)) return done(fail<std::vector<ChannelMember>>(bad_param("team_id")));
  const std::string cols = prefixed(kChannelMemberColumns, "m.");
  store_.read({Statement{"SELECT " + cols + " FROM ChannelMembers m JOIN Channels c ON c.Id = m.ChannelId WHERE m.UserId = $1 AND c.TeamId = $2",
                         {user_id, team_id}}},
              rows_as<ChannelMember>(alive_, channel_member_from_row, done));
}

// ---------------------------------------------------------------------------------------------------
// Posts.

Event posted_event(const Channel& c, const Post& post, const std::vector<std::string>& recipients) {
  Event ev{"posted", boost::json::object{{"channel_display_name", c.display_name},
                                         {"channel_name", c.name},
                                         {"channel_type", c.type},
                                         {"post", boost::json::serialize(post.to_json())},
                                         {"sender_name", ""},
                                         {"set_online", true},
                                         {"team_id", c.team_id}}};
  ev.broadcast.channel_id = c.id;
  ev.recipients = recipients;
  ev.reliable = true;
  ev.create_at = post.create_at;
  ev.post_id = post.id;
  return ev;
}

void App::create_post(const Session& actor, Post post, Callback<Post> done) {
  if (!is_valid_id(post.channel_id)) return done(fail<Post>(bad_param("channel_id")));
  if (post.message.empty() || post.message.size() > 16383)
    return done(fail<Post>(error(400, "model.post.is_valid.msg.app_error", "Message must be 1 to 16383 characters.")));
  if (!post.root_id.empty() && !is_valid_id(post.root_id)) return done(fail<Post>(bad_param("root_id")));
  if (post.pending_post_id.size() > 64) return done(fail<Post>(bad_param("pending_post_id")));
  load_channel(post.channel_id, [this, alive = alive_, actor, post, done](AppError e, std::optional<Channel> c) mutable {
    if (!*alive) return;
    if (!e.ok()) return done(fail<Post>(e));
    if (!c || c->delete_at != 0) return done(fail<Post>(not_found("channel")));
    channel_member_ids(c->id, [this, alive, actor, post, c, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) mutable {
      if (!*alive) return;
      if (!e2.ok()) return done(fail<Post>(e2));
      if (!ids->contains(actor.user_id)) return done(fail<Post>(forbidden()));
      post.id = new_id(env_.random());
      post.user_id = actor.user_id;
      const std::vector<std::string> recipients(ids->begin(), ids->end());
      // create_at is this node's clock, but never before the channel's last post: posts in a channel
      // are ordered as they were made even across nodes whose clocks disagree. One transaction: the
      // channel row moves LastPostAt forward (locking it on PostgreSQL; SQLite serialises writers), and
      // the post takes that time. No read first, so concurrent posters queue instead of retrying.
      const int64_t now = now_ms();
      std::vector<Statement> s{
          Statement{"UPDATE Channels SET LastPostAt = CASE WHEN LastPostAt < $2 THEN $2 ELSE LastPostAt + 1 END,"
                    " TotalMsgCount = TotalMsgCount + 1 WHERE Id = $1",
                    {post.channel_id, now}, 1},
          Statement{"INSERT INTO Posts (Id, CreateAt, UpdateAt, UserId, ChannelId, RootId, Message, Type, Props, PendingPostId)"
                    " SELECT $1, LastPostAt, LastPostAt, $2, Id, $3, $4, $5, $6, $7 FROM Channels WHERE Id = $8",
                    {post.id, post.user_id, post.root_id, post.message, post.type, post.props, post.pending_post_id, post.channel_id}, 1},
          Statement{"SELECT p.CreateAt, c.TotalMsgCount FROM Posts p, Channels c WHERE p.Id = $1 AND c.Id = $2", {post.id, post.channel_id}}};
      // The search index, in the same transaction: search finds a post once its creation is acknowledged.
      if (postgres())
        s.push_back(Statement{"INSERT INTO PostsFts (PostId, ChannelId, Body) VALUES ($1, $2, to_tsvector('simple', $3))",
                              {post.id, post.channel_id, post.message}});
      else
        s.push_back(Statement{"INSERT INTO PostsFts (Message, PostId, ChannelId) VALUES ($1, $2, $3)", {post.message, post.id, post.channel_id}});
      const bool queued = in_channel_order(post.channel_id, [this, alive, s = std::move(s), post, c, recipients, done](std::function<void()> next) mutable {
      store_.write(std::move(s), true, [this, alive, post, c, recipients, done, next](db::Outcome o) mutable {
        if (!*alive) return;
        next();  // this post's place is settled: the channel's next write may go
        if (o.error.status == db::Status::conflict && !post.pending_post_id.empty()) {
          // A retry of a post already made (same pending id, on any node): answer with the first one.
          store_.write({Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE UserId = $1 AND PendingPostId = $2",
                                  {post.user_id, post.pending_post_id}}},
                       false, [alive, done, error = o.error](db::Outcome o2) {
                         if (!*alive) return;
                         if (o2.ok() && !o2.result().rows.empty()) return done(ok(post_from_row(o2.result().rows[0])));
                         done(fail<Post>(from_db(o2.ok() ? error : o2.error)));
                       });
          return;
        }
        if (!o.ok()) return done(fail<Post>(from_db(o.error)));
        post.create_at = post.update_at = int_at(o.results[2].rows.at(0), 0);
        Event ev = posted_event(*c, post, recipients);
        ev.channel_seq = int_at(o.results[2].rows.at(0), 1);
        publish(std::move(ev));
        done(ok(post));
      });
      });
      if (!queued)
        done(fail<Post>(error(503, "api.post.create_post.too_many_waiting.app_error",
                              "Too many posts to this channel are waiting to be written on this server; try again.")));
    });
  });
}

bool App::in_channel_order(const std::string& channel_id, std::function<void(std::function<void()> next)> write) {
  if (auto it = channel_writes_.find(channel_id); it != channel_writes_.end() && it->second.size() >= options_.channel_write_queue_max) {
    ++stats_.channel_writes_refused;
    return false;
  }
  auto& queue = channel_writes_[channel_id];
  auto run = [this, alive = alive_, channel_id, write = std::move(write)]() mutable {
    write([this, alive, channel_id] {
      if (!*alive) return;
      auto it = channel_writes_.find(channel_id);
      if (it == channel_writes_.end()) return;
      it->second.pop_front();
      if (it->second.empty()) {
        channel_writes_.erase(it);
      } else {
        env_.post([front = it->second.front()]() mutable { front(); });  // not inside this write's callback
      }
    });
  };
  queue.push_back(std::move(run));
  if (queue.size() == 1) {
    auto first = queue.front();  // a copy: a write that ends at once pops the queue's entry
    first();
  }
  return true;
}

void App::get_post(const Session& actor, const std::string& post_id, Callback<Post> done) {
  if (!is_valid_id(post_id)) return done(fail<Post>(bad_param("post_id")));
  store_.read({Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE Id = $1 AND DeleteAt = 0", {post_id}}},
              [this, alive = alive_, actor, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Post>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<Post>(not_found("post")));
                Post p = post_from_row(o.result().rows[0]);
                can_read_channel(actor, p.channel_id, [p, done](AppError e, std::optional<Channel>) {
                  if (!e.ok()) return done(fail<Post>(e));
                  done(ok(p));
                });
              });
}

void App::get_posts(const Session& actor, const std::string& channel_id, PostQuery q, Callback<PostList> done) {
  q.per_page = clamp_per_page(q.per_page, options_.per_page_max);
  if (q.page < 0 || q.page > 100000) return done(fail<PostList>(bad_param("page")));
  if ((!q.before.empty() && !is_valid_id(q.before)) || (!q.after.empty() && !is_valid_id(q.after)))
    return done(fail<PostList>(bad_param("before/after")));
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, q, done](AppError e, std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<PostList>(e));
    const std::string cols = std::string("SELECT ") + kPostColumns + " FROM Posts WHERE ChannelId = $1 AND ";
    const int64_t limit = q.per_page, offset = static_cast<int64_t>(q.page) * q.per_page;
    auto finish = [alive, done, q](db::Outcome o, bool ascending) {
      if (!*alive) return;
      if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
      PostList list;
      for (const auto& r : o.results.back().rows) list.posts.push_back(post_from_row(r));
      if (ascending) std::reverse(list.posts.begin(), list.posts.end());
      done(ok(std::move(list)));
    };
    if (q.since > 0) {
      // The re-sync after a reconnect: every post changed since, from the master (no replica lag).
      store_.write({Statement{cols + "UpdateAt >= $2 ORDER BY CreateAt DESC, Id DESC LIMIT 1000", {channel_id, q.since}}}, false,
                   [finish](db::Outcome o) { finish(std::move(o), false); });
    } else if (!q.before.empty() || !q.after.empty()) {
      const bool before = !q.before.empty();
      const std::string pivot = before ? q.before : q.after;
      const std::string cmp = before ? "(CreateAt < $2 OR (CreateAt = $2 AND Id < $3))" : "(CreateAt > $2 OR (CreateAt = $2 AND Id > $3))";
      store_.read({Statement{"SELECT CreateAt FROM Posts WHERE Id = $1", {pivot}}},
                  [this, alive, cols, cmp, before, pivot, channel_id, limit, offset, finish, done](db::Outcome o) {
                    if (!*alive) return;
                    if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
                    if (o.result().rows.empty()) return done(ok(PostList{}));
                    const int64_t at = int_at(o.result().rows[0], 0);
                    store_.read({Statement{cols + cmp + (before ? " ORDER BY CreateAt DESC, Id DESC" : " ORDER BY CreateAt ASC, Id ASC") +
                                               " LIMIT $4 OFFSET $5",
                                           {channel_id, at, pivot, limit, offset}}},
                                [finish, before](db::Outcome o2) { finish(std::move(o2), !before); });
                  });
    } else {
      store_.read({Statement{cols + "DeleteAt = 0 ORDER BY CreateAt DESC, Id DESC LIMIT $2 OFFSET $3", {channel_id, limit, offset}}},
                  [finish](db::Outcome o) { finish(std::move(o), false); });
    }
  });
}

void App::search_posts(const Session& actor, const std::string& team_id, const std::string& terms, bool is_or, int page, int per_page,
                       Callback<PostList> done) {
  if (!is_valid_id(team_id)) return done(fail<PostList>(bad_param("team_id")));
  const auto words = words_of(terms);
  if (words.empty()) return done(fail<PostList>(bad_param("terms")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  // The full-text index (server/jobs/job_kinds.h): PostgreSQL's tsvector, SQLite's FTS5. Words are
  // matched whole (case-folded), all of them or, with is_or_search, any.
  std::string query;
  for (const auto& w : words) {
    if (postgres()) {
      query += (query.empty() ? "" : (is_or ? " or " : " ")) + w;
    } else {
      std::string quoted = "\"";
      for (char ch : w) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      query += (query.empty() ? "" : (is_or ? " OR " : " AND ")) + quoted + "\"";
    }
  }
  std::vector<Value> params{actor.user_id, team_id, query, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page};
  const std::string cols = prefixed(kPostColumns, "p.");
  // Only channels the searcher belongs to, in that team.
  const std::string match = postgres() ? "JOIN PostsFts f ON f.PostId = p.Id WHERE f.Body @@ websearch_to_tsquery('simple', $3)"
                                       : "WHERE p.Id IN (SELECT PostId FROM PostsFts WHERE PostsFts MATCH $3)";
  const std::string sql = "SELECT " + cols +
                          " FROM Posts p JOIN ChannelMembers m ON m.ChannelId = p.ChannelId AND m.UserId = $1"
                          " JOIN Channels c ON c.Id = p.ChannelId AND c.TeamId = $2 " + match +
                          " AND p.DeleteAt = 0 ORDER BY p.CreateAt DESC LIMIT $4 OFFSET $5";
  store_.search({Statement{sql, params}}, [alive = alive_, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
    PostList list;
    for (const auto& r : o.result().rows) list.posts.push_back(post_from_row(r));
    done(ok(std::move(list)));
  });
}

// ---------------------------------------------------------------------------------------------------
// Statuses and typing.

void App::get_status(const Session& actor, const std::string& user_id, Callback<Status> done) {
  if (!is_valid_id(user_id)) return done(fail<Status>(bad_param("user_id")));
  if (const Status* cached = statuses_.get(user_id, env_.now(), cache_ttl())) return done(ok(*cached));
  store_.read({Statement{"SELECT UserId, Status, Manual, LastActivityAt FROM Status WHERE UserId = $1", {user_id}}},
              [this, alive = alive_, user_id, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Status>(from_db(o.error)));
                Status s;
                s.user_id = user_id;
                if (!o.result().rows.empty()) {
                  const auto& r = o.result().rows[0];
                  s.status = text_at(r, 1);
                  s.manual = int_at(r, 2) != 0;
                  s.last_activity_at = int_at(r, 3);
                }
                statuses_.put(user_id, s, env_.now());
                done(ok(s));
              });
}

void App::get_statuses(const Session& actor, const std::vector<std::string>& user_ids, Callback<std::vector<Status>> done) {
  if (user_ids.size() > 1000) return done(fail<std::vector<Status>>(bad_param("user_ids")));
  auto out = std::make_shared<std::vector<Status>>();
  auto remaining = std::make_shared<size_t>(user_ids.size());
  auto failed = std::make_shared<bool>(false);
  if (user_ids.empty()) return done(ok(std::vector<Status>{}));
  for (const auto& id : user_ids)
    get_status(actor, id, [out, remaining, failed, done](Result<Status> r) {
      if (*failed) return;
      if (!r.ok()) {
        *failed = true;
        return done(fail<std::vector<Status>>(r.error));
      }
      out->push_back(r.value);
      if (--*remaining == 0) done(ok(std::move(*out)));
    });
}

void App::set_status(const Session& actor, const std::string& user_id, const std::string& status, Callback<Status> done) {
  if (!is_valid_id(user_id)) return done(fail<Status>(bad_param("user_id")));
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<Status>(forbidden()));
  if (status != "online" && status != "away" && status != "dnd" && status != "offline") return done(fail<Status>(bad_param("status")));
  Status s{user_id, status, true, now_ms()};
  store_.write({Statement{"INSERT INTO Status (UserId, Status, Manual, LastActivityAt) VALUES ($1, $2, 1, $3)"
                          " ON CONFLICT (UserId) DO UPDATE SET Status = $2, Manual = 1, LastActivityAt = $3",
                          {user_id, status, s.last_activity_at}}},
               false, [this, alive = alive_, s, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Status>(from_db(o.error)));
                 statuses_.put(s.user_id, s, env_.now());
                 if (messenger_)
                   messenger_->send_to_all(cluster::ClusterMessage{"update_status", boost::json::serialize(s.to_json()), {}},
                                           cluster::Delivery::best_effort);
                 Event ev{"status_change", boost::json::object{{"status", s.status}, {"user_id", s.user_id}}};
                 ev.broadcast.user_id = s.user_id;
                 publish(std::move(ev));
                 done(ok(s));
               });
}

void App::user_typing(const Session& actor, const std::string& channel_id, const std::string& parent_id) {
  if (!is_valid_id(channel_id)) return;
  channel_member_ids(channel_id, [this, alive = alive_, actor, channel_id, parent_id](AppError e, std::shared_ptr<const std::set<std::string>> ids) {
    if (!*alive || !e.ok() || !ids->contains(actor.user_id)) return;
    Event ev{"typing", boost::json::object{{"parent_id", parent_id}, {"user_id", actor.user_id}}};
    ev.broadcast.channel_id = channel_id;
    ev.broadcast.omit_users = {actor.user_id};
    ev.recipients.assign(ids->begin(), ids->end());
    publish(std::move(ev));
  });
}

}  // namespace chorus::app
