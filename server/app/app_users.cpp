// Sessions and users: authenticate (cached sessions), sign-up, login, logout, reads, and the periodic
// revalidation of the sessions behind this node's WebSockets.
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

void App::list_users(const Session& actor, int page, int per_page, Callback<std::vector<User>> done) {
  per_page = clamp_per_page(per_page, options_.per_page_max);
  store_.read({Statement{std::string("SELECT ") + kUserColumns +
                             " FROM Users WHERE DeleteAt = 0 ORDER BY Username LIMIT $1 OFFSET $2",
                         {static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
              rows_as<User>(alive_, user_from_row, done));
}

}  // namespace chorus::app
