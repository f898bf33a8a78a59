// Direct channels (two users, or one user's notes to self) and group channels (3 to 8 users): channels of
// no team, found by a name made of their members, so that any node, asked twice or by both users at
// once, gives the same channel.
#include "server/app/app.h"

#include <openssl/sha.h>

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

namespace {

// Mattermost's names: "<id1>__<id2>" (sorted) for a direct channel, the SHA-1 (hex) of the sorted ids
// for a group channel.
std::string direct_name(const std::vector<std::string>& sorted) {
  return sorted.size() == 1 ? sorted[0] + "__" + sorted[0] : sorted[0] + "__" + sorted[1];
}

std::string group_name(const std::vector<std::string>& sorted) {
  std::string joined;
  for (const auto& id : sorted) joined += id;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace

void App::create_direct_channel(const Session& actor, const std::string& user_a, const std::string& user_b,
                                Callback<Channel> done) {
  if (!is_valid_id(user_a) || !is_valid_id(user_b)) return done(fail<Channel>(bad_param("user_id")));
  if (actor.user_id != user_a && actor.user_id != user_b && !actor.is_system_admin())
    return done(fail<Channel>(forbidden()));
  create_dm_flow(actor, {user_a, user_b}, std::move(done)).start();
}

void App::create_group_channel(const Session& actor, std::vector<std::string> user_ids, Callback<Channel> done) {
  for (const auto& id : user_ids)
    if (!is_valid_id(id)) return done(fail<Channel>(bad_param("user_ids")));
  if (std::find(user_ids.begin(), user_ids.end(), actor.user_id) == user_ids.end()) user_ids.push_back(actor.user_id);
  std::sort(user_ids.begin(), user_ids.end());
  user_ids.erase(std::unique(user_ids.begin(), user_ids.end()), user_ids.end());
  if (user_ids.size() < 3 || user_ids.size() > 8)
    return done(fail<Channel>(error(400, "api.channel.create_group.bad_size.app_error",
                                    "Group message channels must contain at least 3 and no more than 8 users.")));
  create_dm_flow(actor, std::move(user_ids), std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the users (each must exist), then in one transaction the channel
// (unless it exists) and its members, then the event to them when the channel is new.
Flow App::create_dm_flow(Session actor, std::vector<std::string> ids, Callback<Channel> done) {
  const bool group = ids.size() > 2;
  const std::vector<std::string> given = ids;  // a direct channel's event names them in the order asked
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::string in;
  std::vector<Value> params;
  for (const auto& id : ids) {
    params.emplace_back(id);
    in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  db::Outcome users = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{"SELECT Id, Username FROM Users WHERE DeleteAt = 0 AND Id IN (" + in + ") ORDER BY Username",
                            params}},
                 false, std::move(resume));
  });
  if (!users.ok()) co_return done(fail<Channel>(from_db(users.error)));
  if (users.result().rows.size() != ids.size())
    co_return done(fail<Channel>(error(400,
                                       group ? "api.channel.create_group.bad_user.app_error"
                                             : "api.channel.create_direct_channel.invalid_user.app_error",
                                       "One of the users does not exist.")));
  std::string display;  // a group's names, as Mattermost shows them
  if (group)
    for (const auto& r : users.result().rows) display += (display.empty() ? "" : ", ") + text_at(r, 1);
  if (display.size() > 64) display.resize(64);  // as Mattermost (usernames are ASCII: no character is cut)
  Channel ch;
  ch.id = new_id(env_.random());
  ch.create_at = ch.update_at = now_ms();
  ch.type = group ? "G" : "D";
  ch.name = group ? group_name(ids) : direct_name(ids);
  ch.display_name = display;
  ch.creator_id = actor.user_id;
  std::vector<Statement> s{Statement{
      "INSERT INTO Channels (Id, CreateAt, UpdateAt, TeamId, Type, DisplayName, Name, CreatorId)"
      " VALUES ($1, $2, $2, '', $3, $4, $5, $6) ON CONFLICT (Name, TeamId) DO NOTHING",
      {ch.id, ch.create_at, ch.type, ch.display_name, ch.name, ch.creator_id}}};
  for (const auto& id : ids)
    s.push_back(Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) SELECT Id, $2,"
                          " 'channel_user', $3 FROM Channels WHERE Name = $1 AND TeamId = ''"
                          " ON CONFLICT (ChannelId, UserId) DO NOTHING",
                          {ch.name, id, ch.create_at}});
  s.push_back(
      Statement{std::string("SELECT ") + kChannelColumns + " FROM Channels WHERE Name = $1 AND TeamId = ''", {ch.name}});
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!o.ok()) co_return done(fail<Channel>(from_db(o.error)));
  if (o.value.back().rows.empty())
    co_return done(fail<Channel>(error(500, "app.channel.create_direct_channel.internal_error",
                                       "The channel was not found after it was made.")));
  const Channel stored = channel_from_row(o.value.back().rows[0]);
  if (o.value[0].affected > 0) {
    invalidate(cluster::ClusterEvent::inv_channel_members, stored.id);
    boost::json::object data;
    if (group) {
      boost::json::array teammates;
      for (const auto& id : ids) teammates.emplace_back(id);
      data["teammate_ids"] = boost::json::serialize(teammates);
    } else {
      // As Mattermost: the first user of the request is the creator, the second the teammate.
      data["creator_id"] = given[0];
      data["teammate_id"] = given.size() > 1 ? given[1] : given[0];
    }
    Event ev{group ? "group_added" : "direct_added", std::move(data)};
    ev.broadcast.channel_id = stored.id;
    ev.recipients = ids;
    ev.reliable = true;
    publish(std::move(ev));
  }
  done(ok(stored));
}

void App::group_channel_profiles(const Session& actor, const std::vector<std::string>& channel_ids,
                                 Callback<std::vector<std::pair<std::string, std::vector<User>>>> done) {
  using R = std::vector<std::pair<std::string, std::vector<User>>>;
  if (channel_ids.empty()) return done(ok(R{}));
  if (channel_ids.size() > 1000) return done(fail<R>(bad_param("channel_ids")));
  std::string in;
  std::vector<Value> params{actor.user_id};
  for (const auto& id : channel_ids) {
    if (!is_valid_id(id)) return done(fail<R>(bad_param("channel_ids")));
    params.emplace_back(id);
    in += (in.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  // Only group channels the asker is in.
  store_.read({Statement{"SELECT m.ChannelId, " + prefixed(kUserColumns, "u.") +
                             " FROM ChannelMembers m JOIN Users u ON u.Id = m.UserId JOIN Channels c ON c.Id ="
                             " m.ChannelId WHERE c.Type = 'G' AND m.ChannelId IN (" +
                             in + ") AND m.ChannelId IN (SELECT ChannelId FROM ChannelMembers WHERE UserId = $1)"
                                  " ORDER BY m.ChannelId, u.Username",
                         params}},
              [alive = alive_, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<R>(from_db(o.error)));
                R out;
                for (const auto& r : o.result().rows) {
                  const std::string channel = text_at(r, 0);
                  if (out.empty() || out.back().first != channel) out.emplace_back(channel, std::vector<User>{});
                  out.back().second.push_back(user_from_row(std::vector<db::Value>(r.begin() + 1, r.end())));
                }
                done(ok(std::move(out)));
              });
}

}  // namespace chorus::app
