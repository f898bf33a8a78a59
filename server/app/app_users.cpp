// Sessions and users: authenticate (cached sessions), sign-up, login, logout, reads, and the periodic
// revalidation of the sessions behind this node's WebSockets.
#include "server/app/app.h"

#include <sstream>

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/assert.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

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
    store_.write({Statement{"SELECT Token FROM Sessions WHERE ExpiresAt > $1 AND Token IN (" + in + ")", params}},
                 false, [this, alive = alive_, batch](db::Outcome o) {
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

// ---------------------------------------------------------------------------------------------------
// Sessions and users.

void App::authenticate(const std::string& token, Callback<Session> done) {
  const auto expired =
      error(401, "api.context.session_expired.app_error", "Invalid or expired session, please login again.");
  if (token.empty() || token.size() > 64) return done(fail<Session>(expired));
  if (const Session* cached = sessions_.get(token, env_.now(), cache_ttl())) {
    ++stats_.cache_hits;
    if (cached->expires_at <= now_ms()) return done(fail<Session>(expired));
    return done(ok(*cached));
  }
  ++stats_.cache_misses;
  // From the master: a session made a moment ago on another node must be found.
  store_.write({Statement{std::string("SELECT ") + kSessionColumns + " FROM Sessions WHERE Token = $1", {token}}},
               false, [this, alive = alive_, token, expired, done, epoch = sessions_.epoch()](db::Outcome o) {
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
    return done(fail<User>(
        error(400, "model.user.is_valid.username.app_error",
              "Username must begin with a letter and contain between 3 to 22 lowercase characters made up of numbers, "
              "letters, and the symbols '.', '-', and '_'.")));
  const auto at = u.email.find('@');
  if (u.email.size() > 128 || at == std::string::npos || at == 0 || at + 1 == u.email.size())
    return done(fail<User>(error(400, "model.user.is_valid.email.app_error", "Invalid email.")));
  if (u.password.size() < 8 || u.password.size() > 72)
    return done(fail<User>(
        error(400, "model.user.is_valid.pwd.app_error", "Your password must contain between 8 and 72 characters.")));
  if (u.first_name.size() > 64 || u.last_name.size() > 64 || u.nickname.size() > 64)
    return done(fail<User>(bad_param("user")));
  if (u.locale.size() > 5) return done(fail<User>(bad_param("locale")));
  create_user_flow(actor && actor->is_system_admin(), std::move(u), std::move(done)).start();
}

// Sign-up, top to bottom (server/core/flow.h): may this user sign up (the first one always may), the
// password's hash, then the user's row; a conflict starts over once, from the count.
Flow App::create_user_flow(bool admin, NewUser u, Callback<User> done) {
  for (bool may_retry = true;; may_retry = false) {
    db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write({Statement{"SELECT COUNT(*) FROM Users", {}}}, false, std::move(resume));
    });
    if (!o.ok()) co_return done(fail<User>(from_db(o.error)));
    const bool first = int_at(o.result().rows.at(0), 0) == 0;
    const auto& team = config_->TeamSettings;
    if (!first && !admin && !team.EnableUserCreation)
      co_return done(
          fail<User>(error(403, "api.user.create_user.signup_email_disabled.app_error", "User sign-up is disabled.")));
    if (!first && !admin && !team.EnableOpenServer)
      co_return done(
          fail<User>(error(403, "api.user.create_user.no_open_server", "This server does not allow open signups.")));
    const std::string hash =
        co_await awaiting<std::string>(alive_, [&](auto resume) { hash_password(u.password, std::move(resume)); });
    if (hash.empty())
      co_return done(fail<User>(error(500, "app.user.hash_password.app_error", "Could not hash the password.")));
    const std::string id = new_id(env_.random());
    const int64_t now = now_ms();
    // The first user becomes system admin. The claim is a row of its own (Systems.FirstUserId), so two
    // nodes creating users at once on an empty database cannot both be first: the second conflicts and
    // starts over, no longer first.
    std::vector<Statement> s{
        Statement{"INSERT INTO Systems (Name, Value) SELECT 'FirstUserId', $1 WHERE NOT EXISTS (SELECT 1 FROM Users)"
                  " AND NOT EXISTS (SELECT 1 FROM Systems WHERE Name = 'FirstUserId')",
                  {id}},
        Statement{"INSERT INTO Users (Id, CreateAt, UpdateAt, Username, Password, Email, Nickname, FirstName, LastName,"
                  " Roles, Locale, LastPasswordUpdate) SELECT $1, $2, $2, $3, $4, $5, $6, $7, $8, CASE WHEN EXISTS"
                  " (SELECT 1 FROM Systems WHERE Name = 'FirstUserId' AND Value = $10)"
                  " THEN 'system_admin system_user' ELSE 'system_user' END, $9, $2",
                  // ($10 repeats $1: PostgreSQL deduces one type per parameter, VARCHAR for Id and TEXT for Value)
                  {id, now, u.username, hash, u.email, u.nickname, u.first_name, u.last_name,
                   u.locale.empty() ? "en" : u.locale, id}},
        Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id = $1", {id}}};
    db::Outcome o2 = co_await awaiting<db::Outcome>(
        alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
    if (o2.error.status == db::Status::conflict) {
      if (may_retry) continue;  // maybe lost the race to be first
      co_return done(fail<User>(
          error(400, "app.user.save.existing.app_error", "An account with that username or email already exists.")));
    }
    if (!o2.ok()) co_return done(fail<User>(from_db(o2.error)));
    co_return done(ok(user_from_row(o2.value.at(2).rows.at(0))));
  }
}

void App::login(const std::string& login_id, const std::string& password, const std::string& device_id,
                Callback<std::pair<User, Session>> done) {
  const auto invalid = error(401, "api.user.login.invalid_credentials_email_username",
                             "Enter a valid email or username and/or password.");
  if (login_id.empty() || login_id.size() > 128 || password.empty() || password.size() > 72)
    return done(fail<std::pair<User, Session>>(invalid));
  std::string lower = login_id;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  login_flow(std::move(lower), password, device_id, invalid, std::move(done)).start();
}

// A login, top to bottom (server/core/flow.h): the user by name or email, the account's lock, the password,
// then the session. As Mattermost: ServiceSettings.MaximumLoginAttempts wrong passwords in a row lock the
// account (the count is in the database: cluster-wide) until its password is set anew; an unknown name
// costs the same bcrypt time as a wrong password, so timing does not tell which names exist.
Flow App::login_flow(std::string login_id, std::string password, std::string device_id, AppError invalid,
                     Callback<std::pair<User, Session>> done) {
  using Logged = std::pair<User, Session>;
  db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{std::string("SELECT ") + kUserColumns +
                                ", FailedAttempts FROM Users WHERE (Username = $1 OR Email = $1) AND DeleteAt = 0",
                            {login_id}}},
                 false, std::move(resume));
  });
  if (!o.ok()) co_return done(fail<Logged>(from_db(o.error)));
  if (o.result().rows.empty()) {
    // A bcrypt setting with no digest never matches, and costs what a real check costs.
    const std::string dummy = fmt::format("$2b${:02}$LTuAMPvpKU3Zs4xR3cz5Gu", options_.bcrypt_cost);
    co_await awaiting<bool>(alive_, [&](auto resume) { check_password(password, dummy, std::move(resume)); });
    co_return done(fail<Logged>(invalid));
  }
  const auto& row = o.result().rows[0];
  const User user = user_from_row(row);
  const int64_t failed = int_at(row, row.size() - 1);
  if (failed >= config_->ServiceSettings.MaximumLoginAttempts)
    co_return done(fail<Logged>(error(401, "api.user.check_user_login_attempts.too_many.app_error",
                                      "Your account is locked because of too many failed password attempts. "
                                      "Please reset your password.")));
  const bool matches = co_await awaiting<bool>(
      alive_, [&](auto resume) { check_password(password, user.password_hash, std::move(resume)); });
  if (!matches) {
    co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write({Statement{"UPDATE Users SET FailedAttempts = FailedAttempts + 1 WHERE Id = $1", {user.id}}}, false,
                   std::move(resume));
    });
    co_return done(fail<Logged>(invalid));
  }
  Session s;
  s.id = new_id(env_.random());
  s.token = new_id(env_.random());
  s.create_at = s.last_activity_at = now_ms();
  s.expires_at = s.create_at + config_->ServiceSettings.SessionLengthWebInHours * 3'600'000;
  s.user_id = user.id;
  s.device_id = device_id;
  s.roles = user.roles;
  std::vector<Statement> writes{
      Statement{"INSERT INTO Sessions (Id, Token, CreateAt, ExpiresAt, LastActivityAt, UserId, DeviceId,"
                " Roles) VALUES ($1, $2, $3, $4, $3, $5, $6, $7)",
                {s.id, s.token, s.create_at, s.expires_at, s.user_id, s.device_id, s.roles}}};
  if (failed > 0) writes.push_back(Statement{"UPDATE Users SET FailedAttempts = 0 WHERE Id = $1", {user.id}});
  db::Outcome o2 = co_await awaiting<db::Outcome>(
      alive_, [&](auto resume) { store_.write(std::move(writes), true, std::move(resume)); });
  if (!o2.ok()) co_return done(fail<Logged>(from_db(o2.error)));
  sessions_.put(s.token, s, env_.now());
  done(ok(std::make_pair(user, s)));
}

void App::update_password(const Session& actor, const std::string& user_id, const std::string& current,
                          const std::string& next, Callback<Unit> done) {
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  if (actor.user_id != user_id && !actor.is_system_admin()) return done(fail<Unit>(forbidden()));
  if (next.size() < 8 || next.size() > 72)
    return done(fail<Unit>(
        error(400, "model.user.is_valid.pwd.app_error", "Your password must contain between 8 and 72 characters.")));
  update_password_flow(actor, user_id, current, next, std::move(done)).start();
}

// Someone else's password needs a system admin; one's own needs the current one (as Mattermost).
Flow App::update_password_flow(Session actor, std::string user_id, std::string current, std::string next,
                               Callback<Unit> done) {
  if (actor.user_id == user_id) {
    db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write({Statement{"SELECT Password FROM Users WHERE Id = $1 AND DeleteAt = 0", {user_id}}}, false,
                   std::move(resume));
    });
    if (!o.ok()) co_return done(fail<Unit>(from_db(o.error)));
    if (o.result().rows.empty()) co_return done(fail<Unit>(not_found("user")));
    const std::string hash = text_at(o.result().rows[0], 0);
    const bool matches =
        co_await awaiting<bool>(alive_, [&](auto resume) { check_password(current, hash, std::move(resume)); });
    if (!matches)
      co_return done(fail<Unit>(
          error(400, "api.user.check_user_password.invalid.app_error", "Login failed because of invalid password.")));
  }
  const std::string hash =
      co_await awaiting<std::string>(alive_, [&](auto resume) { hash_password(next, std::move(resume)); });
  if (hash.empty())
    co_return done(fail<Unit>(error(500, "app.user.hash_password.app_error", "Could not hash the password.")));
  db::Outcome o2 = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{"UPDATE Users SET Password = $2, LastPasswordUpdate = $3, FailedAttempts = 0, UpdateAt = $3"
                            " WHERE Id = $1 AND DeleteAt = 0",
                            {user_id, hash, now_ms()},
                            1}},
                 true, std::move(resume));
  });
  if (o2.error.status == db::Status::conflict) co_return done(fail<Unit>(not_found("user")));
  if (!o2.ok()) co_return done(fail<Unit>(from_db(o2.error)));
  invalidate(cluster::ClusterEvent::inv_user, user_id);
  done(ok(Unit{}));
}

void App::update_user_roles(const Session& actor, const std::string& user_id, const std::string& roles,
                            Callback<Unit> done) {
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  if (!actor.is_system_admin()) return done(fail<Unit>(forbidden()));
  // Only the system roles Chorus has; system_user always (as Mattermost).
  std::string normalized;
  bool user = false, admin = false;
  std::istringstream words(roles);
  for (std::string w; words >> w;) {
    if (w == "system_user")
      user = true;
    else if (w == "system_admin")
      admin = true;
    else
      return done(fail<Unit>(bad_param("roles")));
  }
  if (!user) return done(fail<Unit>(bad_param("roles")));
  normalized = admin ? "system_user system_admin" : "system_user";
  const int64_t now = now_ms();
  store_.write({Statement{"UPDATE Users SET Roles = $2, UpdateAt = $3 WHERE Id = $1 AND DeleteAt = 0",
                          {user_id, normalized, now}, 1},
                Statement{"UPDATE Sessions SET Roles = $2 WHERE UserId = $1", {user_id, normalized}}},
               true, [this, alive = alive_, user_id, done](db::Outcome o) {
                 if (!*alive) return;
                 if (o.error.status == db::Status::conflict) return done(fail<Unit>(not_found("user")));
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 invalidate(cluster::ClusterEvent::inv_user, user_id);
                 invalidate(cluster::ClusterEvent::clear_session_user, user_id);
                 done(ok(Unit{}));
               });
}

void App::set_user_active(const Session& actor, const std::string& user_id, bool active, Callback<Unit> done) {
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  if (!actor.is_system_admin()) return done(fail<Unit>(forbidden()));
  const int64_t now = now_ms();
  std::vector<Statement> s{Statement{active ? "UPDATE Users SET DeleteAt = 0, UpdateAt = $2 WHERE Id = $1"
                                            : "UPDATE Users SET DeleteAt = $2, UpdateAt = $2 WHERE Id = $1",
                                     {user_id, now},
                                     1}};
  if (!active) s.push_back(Statement{"DELETE FROM Sessions WHERE UserId = $1", {user_id}});
  store_.write(std::move(s), true, [this, alive = alive_, user_id, done](db::Outcome o) {
    if (!*alive) return;
    if (o.error.status == db::Status::conflict) return done(fail<Unit>(not_found("user")));
    if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
    invalidate(cluster::ClusterEvent::inv_user, user_id);
    invalidate(cluster::ClusterEvent::clear_session_user, user_id);
    done(ok(Unit{}));
  });
}

void App::logout(const Session& session, Callback<Unit> done) {
  store_.write({Statement{"DELETE FROM Sessions WHERE Token = $1", {session.token}}}, false,
               [this, alive = alive_, session, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 sessions_.erase(session.token);
                 // Every node drops the user's cached sessions and closes this token's sockets.
                 invalidate(cluster::ClusterEvent::clear_session_user, session.user_id + " " + session.token);
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

void App::get_users_by_ids(const Session& actor, const std::vector<std::string>& ids,
                           Callback<std::vector<User>> done) {
  if (ids.empty()) return done(ok(std::vector<User>{}));
  if (ids.size() > 1000) return done(fail<std::vector<User>>(bad_param("user_ids")));
  std::string in;
  std::vector<Value> params;
  for (const auto& id : ids) {
    if (!is_valid_id(id)) return done(fail<std::vector<User>>(bad_param("user_ids")));
    params.emplace_back(id);
    in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  store_.read(
      {Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id IN (" + in + ") ORDER BY Username",
                 params}},
      rows_as<User>(alive_, user_from_row, done));
}

namespace {

// A search term as a LIKE prefix pattern ('\' escapes % and _), lower case.
std::string like_prefix(std::string term) {
  std::string out;
  for (char c : term) {
    const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (l == '%' || l == '_' || l == '\\') out += '\\';
    out += l;
  }
  return out + "%";
}

// The filters of UserQuery and UserSearch as SQL conditions on Users (each adds its parameter).
void add_membership_filters(std::string& sql, std::vector<Value>& params, const std::string& in_team,
                            const std::string& not_in_team, const std::string& in_channel,
                            const std::string& not_in_channel, bool without_team) {
  auto param = [&](const std::string& v) {
    params.emplace_back(v);
    return "$" + std::to_string(params.size());
  };
  if (!in_team.empty())
    sql += " AND Id IN (SELECT UserId FROM TeamMembers WHERE TeamId = " + param(in_team) + " AND DeleteAt = 0)";
  if (!not_in_team.empty())
    sql += " AND Id NOT IN (SELECT UserId FROM TeamMembers WHERE TeamId = " + param(not_in_team) + " AND DeleteAt = 0)";
  if (!in_channel.empty())
    sql += " AND Id IN (SELECT UserId FROM ChannelMembers WHERE ChannelId = " + param(in_channel) + ")";
  if (!not_in_channel.empty())
    sql += " AND Id NOT IN (SELECT UserId FROM ChannelMembers WHERE ChannelId = " + param(not_in_channel) + ")";
  if (without_team) sql += " AND Id NOT IN (SELECT UserId FROM TeamMembers WHERE DeleteAt = 0)";
}

bool ids_ok(std::initializer_list<const std::string*> ids) {
  for (const auto* id : ids)
    if (!id->empty() && !is_valid_id(*id)) return false;
  return true;
}

}  // namespace

void App::list_users(const Session& actor, UserQuery q, Callback<std::vector<User>> done) {
  using R = std::vector<User>;
  if (!ids_ok({&q.in_team, &q.not_in_team, &q.in_channel, &q.not_in_channel}))
    return done(fail<R>(bad_param("in_team, not_in_team, in_channel or not_in_channel")));
  if (q.page < 0 || q.page > 100000) return done(fail<R>(bad_param("page")));
  q.per_page = clamp_per_page(q.per_page, options_.per_page_max);
  std::string sql = std::string("SELECT ") + kUserColumns + " FROM Users WHERE DeleteAt = 0";
  std::vector<Value> params;
  add_membership_filters(sql, params, q.in_team, q.not_in_team, q.in_channel, q.not_in_channel, q.without_team);
  params.emplace_back(static_cast<int64_t>(q.per_page));
  params.emplace_back(static_cast<int64_t>(q.page) * q.per_page);
  sql += " ORDER BY Username LIMIT $" + std::to_string(params.size() - 1) + " OFFSET $" + std::to_string(params.size());
  read_users(actor, {q.in_channel, q.not_in_channel}, {q.in_team, q.not_in_team}, Statement{sql, params},
             std::move(done));
}

Flow App::check_user_filters_flow(Session actor, std::vector<std::string> channels, std::vector<std::string> teams,
                                  std::function<void(AppError)> done) {
  for (const auto& channel : channels) {
    if (channel.empty()) continue;
    auto [e, c] = co_await awaiting<AppError, std::optional<Channel>>(
        alive_, [&](auto resume) { can_read_channel(actor, channel, std::move(resume)); });
    if (!e.ok()) co_return done(e);
  }
  if (actor.is_system_admin()) co_return done({});
  for (const auto& team : teams) {
    if (team.empty()) continue;
    auto [e, member] = co_await awaiting<AppError, bool>(
        alive_, [&](auto resume) { is_team_member(team, actor.user_id, std::move(resume)); });
    if (!e.ok()) co_return done(e);
    if (!member) co_return done(forbidden());
  }
  done({});
}

void App::get_users_by_usernames(const Session& actor, const std::vector<std::string>& usernames,
                                 Callback<std::vector<User>> done) {
  using R = std::vector<User>;
  if (usernames.empty()) return done(ok(R{}));
  if (usernames.size() > 1000) return done(fail<R>(bad_param("usernames")));
  std::string in;
  std::vector<Value> params;
  for (const auto& name : usernames) {
    if (name.empty() || name.size() > 64) return done(fail<R>(bad_param("usernames")));
    params.emplace_back(name);
    in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  store_.read({Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Username IN (" + in +
                             ") ORDER BY Username",
                         params}},
              rows_as<User>(alive_, user_from_row, done));
}

void App::search_users(const Session& actor, UserSearch q, Callback<std::vector<User>> done) {
  using R = std::vector<User>;
  if (!q.term.empty() && q.term.front() == '@') q.term.erase(0, 1);
  if (q.term.size() > 64) return done(fail<R>(bad_param("term")));
  if (!ids_ok({&q.in_team, &q.not_in_team, &q.in_channel, &q.not_in_channel}))
    return done(fail<R>(bad_param("team_id or channel_id")));
  q.limit = std::clamp(q.limit <= 0 ? 100 : q.limit, 1, 100);
  std::string sql = std::string("SELECT ") + kUserColumns + " FROM Users WHERE DeleteAt = 0";
  std::vector<Value> params;
  if (!q.term.empty()) {
    params.emplace_back(like_prefix(q.term));
    const std::string t = "$" + std::to_string(params.size());
    sql += " AND (LOWER(Username) LIKE " + t + " ESCAPE '\\' OR LOWER(FirstName) LIKE " + t +
           " ESCAPE '\\' OR LOWER(LastName) LIKE " + t + " ESCAPE '\\' OR LOWER(Nickname) LIKE " + t +
           " ESCAPE '\\' OR LOWER(Email) LIKE " + t + " ESCAPE '\\')";
  }
  add_membership_filters(sql, params, q.in_team, q.not_in_team, q.in_channel, q.not_in_channel, false);
  params.emplace_back(static_cast<int64_t>(q.limit));
  sql += " ORDER BY Username LIMIT $" + std::to_string(params.size());
  read_users(actor, {q.in_channel, q.not_in_channel}, {q.in_team, q.not_in_team}, Statement{sql, params},
             std::move(done));
}

// Who is in a channel is for those who may read it; who is in a team, for its members: each filter is
// checked, then the users are read.
void App::read_users(const Session& actor, std::vector<std::string> channels, std::vector<std::string> teams,
                     db::Statement query, Callback<std::vector<User>> done) {
  check_user_filters_flow(actor, std::move(channels), std::move(teams),
                          [this, alive = alive_, query = std::move(query), done](AppError e) {
                            if (!*alive) return;
                            if (!e.ok()) return done(fail<std::vector<User>>(e));
                            store_.read({query}, rows_as<User>(alive, user_from_row, done));
                          })
      .start();
}

// In a channel: its members who match, and the team's other members who match (out_of_channel).
void App::autocomplete_users(const Session& actor, UserSearch q, Callback<Autocomplete> done) {
  if (q.in_channel.empty()) {
    return search_users(actor, q, [done](Result<std::vector<User>> r) {
      if (!r.ok()) return done(fail<Autocomplete>(r.error));
      done(ok(Autocomplete{std::move(r.value), {}}));
    });
  }
  UserSearch in = q;
  in.in_team.clear();
  search_users(actor, in, [this, alive = alive_, actor, q, done](Result<std::vector<User>> r) {
    if (!*alive) return;
    if (!r.ok()) return done(fail<Autocomplete>(r.error));
    if (q.in_team.empty()) return done(ok(Autocomplete{std::move(r.value), {}}));
    UserSearch out = q;
    out.not_in_channel = q.in_channel;
    out.in_channel.clear();
    search_users(actor, out, [users = std::move(r.value), done](Result<std::vector<User>> r2) mutable {
      if (!r2.ok()) return done(fail<Autocomplete>(r2.error));
      done(ok(Autocomplete{std::move(users), std::move(r2.value)}));
    });
  });
}

void App::patch_user(const Session& actor, const std::string& user_id, UserPatch patch, Callback<User> done) {
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<User>(e)); })) return;
  auto too_long = [](const std::optional<std::string>& v, size_t max) { return v && v->size() > max; };
  if (too_long(patch.nickname, 64)) return done(fail<User>(bad_param("nickname")));
  if (too_long(patch.first_name, 64)) return done(fail<User>(bad_param("first_name")));
  if (too_long(patch.last_name, 64)) return done(fail<User>(bad_param("last_name")));
  if (too_long(patch.position, 128)) return done(fail<User>(bad_param("position")));
  if (too_long(patch.locale, 5)) return done(fail<User>(bad_param("locale")));
  if (too_long(patch.props, 8192) || too_long(patch.notify_props, 8192) || too_long(patch.timezone, 1024))
    return done(fail<User>(bad_param("props, notify_props or timezone")));
  patch_user_flow(actor, user_id, std::move(patch), std::move(done)).start();
}

// Top to bottom: the update and the row as it now is (one transaction), the invalidation on every node,
// then user_updated to the user's clients.
Flow App::patch_user_flow(Session actor, std::string user_id, UserPatch patch, Callback<User> done) {
  std::string set = "UpdateAt = $2";
  std::vector<Value> params{user_id, now_ms()};
  auto field = [&](const char* column, const std::optional<std::string>& v) {
    if (!v) return;
    params.emplace_back(*v);
    set += std::string(", ") + column + " = $" + std::to_string(params.size());
  };
  field("Nickname", patch.nickname);
  field("FirstName", patch.first_name);
  field("LastName", patch.last_name);
  field("Position", patch.position);
  field("Locale", patch.locale);
  field("Props", patch.props);
  field("NotifyProps", patch.notify_props);
  field("Timezone", patch.timezone);
  db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    std::vector<Statement> s{Statement{"UPDATE Users SET " + set + " WHERE Id = $1 AND DeleteAt = 0", params},
                             Statement{std::string("SELECT ") + kUserColumns + " FROM Users WHERE Id = $1", {user_id}}};
    for (auto& st : user_seq_statements(user_id)) s.push_back(std::move(st));
    store_.write(std::move(s), true, std::move(resume));
  });
  if (!o.ok()) co_return done(fail<User>(from_db(o.error)));
  if (o.value[0].affected == 0 || o.value[1].rows.empty()) co_return done(fail<User>(not_found("user")));
  User user = user_from_row(o.value[1].rows[0]);
  invalidate(cluster::ClusterEvent::inv_user, user_id);
  const int64_t seq = o.value.back().rows.empty() ? 0 : int_at(o.value.back().rows[0], 0);
  publish_to_user(user_id, "user_updated", {{"user", user.to_json()}}, seq);
  done(ok(std::move(user)));
}

void App::attach_device(const Session& actor, const std::string& device_id, Callback<Unit> done) {
  // An empty id is allowed: the mobile app sends one when it has no push token yet.
  if (device_id.size() > 512) return done(fail<Unit>(bad_param("device_id")));
  store_.write({Statement{"UPDATE Sessions SET DeviceId = $2 WHERE Id = $1", {actor.id, device_id}}}, false,
               [alive = alive_, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 done(ok(Unit{}));
               });
}

void App::diagnostic_id(std::function<void(std::string)> done) {
  if (diagnostic_id_) return done(*diagnostic_id_);
  // The first node to ask makes it; every node reads the one that won.
  store_.write({Statement{"INSERT INTO Systems (Name, Value) VALUES ('DiagnosticId', $1) ON CONFLICT (Name) DO NOTHING",
                          {new_id(env_.random())}},
                Statement{"SELECT Value FROM Systems WHERE Name = 'DiagnosticId'"}},
               true, [this, alive = alive_, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok() || o.value[1].rows.empty()) return done("");
                 diagnostic_id_ = text_at(o.value[1].rows[0], 0);
                 done(*diagnostic_id_);
               });
}

}  // namespace chorus::app
