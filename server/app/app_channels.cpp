// Channels and channel members: the channel and membership caches, read access, and changes.
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

void App::channel_member_ids(const std::string& channel_id,
                             std::function<void(AppError, std::shared_ptr<const std::set<std::string>>)> done) {
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

void App::can_read_channel(const Session& actor, const std::string& channel_id,
                           std::function<void(AppError, std::optional<Channel>)> done) {
  if (!is_valid_id(channel_id)) return done(bad_param("channel_id"), std::nullopt);
  can_read_channel_flow(actor, channel_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the channel, then (unless a system admin) its members, then for a
// public channel the team's membership.
Flow App::can_read_channel_flow(Session actor, std::string channel_id,
                                std::function<void(AppError, std::optional<Channel>)> done) {
  auto [e, c] = co_await awaiting<AppError, std::optional<Channel>>(
      alive_, [&](auto resume) { load_channel(channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(e, std::nullopt);
  if (!c || c->delete_at != 0) co_return done(not_found("channel"), std::nullopt);
  if (actor.is_system_admin()) co_return done({}, c);
  auto [e2, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e2.ok()) co_return done(e2, std::nullopt);
  if (ids->contains(actor.user_id)) co_return done({}, c);
  if (c->type != "O") co_return done(forbidden(), std::nullopt);
  // A plain local for the lambda: clang 14 cannot capture a structured binding, and GCC 12 destroys an
  // init-capture of a lambda inside co_await twice.
  const std::string team_id = c->team_id;
  auto [e3, member] = co_await awaiting<AppError, bool>(
      alive_, [&](auto resume) { is_team_member(team_id, actor.user_id, std::move(resume)); });
  if (!e3.ok()) co_return done(e3, std::nullopt);
  if (!member) co_return done(forbidden(), std::nullopt);
  done({}, c);
}

void App::create_channel(const Session& actor, Channel ch, Callback<Channel> done) {
  if (!is_valid_id(ch.team_id)) return done(fail<Channel>(bad_param("team_id")));
  if (!valid_name(ch.name, 1, 64, true, false))
    return done(fail<Channel>(error(400, "model.channel.is_valid.2_or_more.app_error",
                                    "Name must be 1-64 lowercase letters, numbers, - or _.")));
  if (ch.display_name.empty() || ch.display_name.size() > 64) return done(fail<Channel>(bad_param("display_name")));
  if (ch.type != "O" && ch.type != "P") return done(fail<Channel>(bad_param("type")));
  if (ch.header.size() > 1024 || ch.purpose.size() > 250) return done(fail<Channel>(bad_param("header")));
  create_channel_flow(actor, std::move(ch), std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the creator's team membership, the channel with its creator as
// member, then the event.
Flow App::create_channel_flow(Session actor, Channel ch, Callback<Channel> done) {
  auto [e, member] = co_await awaiting<AppError, bool>(
      alive_, [&](auto resume) { is_team_member(ch.team_id, actor.user_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<Channel>(e));
  if (!member && !actor.is_system_admin()) co_return done(fail<Channel>(forbidden()));
  ch.id = new_id(env_.random());
  ch.create_at = ch.update_at = now_ms();
  ch.creator_id = actor.user_id;
  std::vector<Statement> s{
      Statement{
          "INSERT INTO Channels (Id, CreateAt, UpdateAt, TeamId, Type, DisplayName, Name, Header, Purpose,"
          " CreatorId) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)",
          {ch.id, ch.create_at, ch.team_id, ch.type, ch.display_name, ch.name, ch.header, ch.purpose, ch.creator_id}}};
  if (!actor.user_id.empty())  // (local mode: no creator to make a member)
    s.push_back(Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt)"
                          " VALUES ($1, $2, 'channel_user channel_admin', $3)",
                          {ch.id, actor.user_id, ch.create_at}});
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (o.error.status == db::Status::conflict)
    co_return done(fail<Channel>(error(400, "store.sql_channel.save_channel.exists.app_error",
                                       "A channel with that name already exists on the same team.")));
  if (!o.ok()) co_return done(fail<Channel>(from_db(o.error)));
  Event ev{"channel_created", boost::json::object{{"channel_id", ch.id}, {"team_id", ch.team_id}}};
  ev.broadcast.user_id = ch.creator_id;
  publish(std::move(ev));
  done(ok(ch));
}

void App::get_channel(const Session& actor, const std::string& channel_id, Callback<Channel> done) {
  can_read_channel(actor, channel_id, [done](AppError e, std::optional<Channel> c) {
    if (!e.ok()) return done(fail<Channel>(e));
    done(ok(*c));
  });
}

void App::get_channel_by_name(const Session& actor, const std::string& team_id, const std::string& name,
                              Callback<Channel> done) {
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

void App::public_channels(const Session& actor, const std::string& team_id, int page, int per_page,
                          Callback<std::vector<Channel>> done) {
  if (!is_valid_id(team_id)) return done(fail<std::vector<Channel>>(bad_param("team_id")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  is_team_member(
      team_id, actor.user_id, [this, alive = alive_, actor, team_id, page, per_page, done](AppError e, bool member) {
        if (!*alive) return;
        if (!e.ok()) return done(fail<std::vector<Channel>>(e));
        if (!member && !actor.is_system_admin()) return done(fail<std::vector<Channel>>(forbidden()));
        store_.read(
            {Statement{std::string("SELECT ") + kChannelColumns +
                           " FROM Channels WHERE TeamId = $1 AND Type = 'O' AND DeleteAt = 0 ORDER BY DisplayName "
                           "LIMIT $2 OFFSET $3",
                       {team_id, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
            rows_as<Channel>(alive, channel_from_row, done));
      });
}

void App::channels_for_user(const Session& actor, const std::string& user_id, const std::string& team_id,
                            Callback<std::vector<Channel>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<Channel>>(forbidden()));
  if (!team_id.empty() && !is_valid_id(team_id)) return done(fail<std::vector<Channel>>(bad_param("team_id")));
  const std::string cols = prefixed(kChannelColumns, "c.");
  // A team's list carries the user's direct and group channels too (they are in no team): the apps'
  // sidebar shows them in every team.
  const std::string where = team_id.empty() ? "" : " AND (c.TeamId = $2 OR c.TeamId = '')";
  std::vector<Value> params{user_id};
  if (!team_id.empty()) params.emplace_back(team_id);
  store_.read({Statement{"SELECT " + cols +
                             " FROM Channels c JOIN ChannelMembers m ON m.ChannelId = c.Id WHERE m.UserId = $1 AND "
                             "c.DeleteAt = 0" +
                             where + " ORDER BY c.DisplayName, c.Name",
                         params}},
              rows_as<Channel>(alive_, channel_from_row, done));
}

void App::view_channels(const Session& actor, const std::string& channel_id, const std::string& prev_channel_id,
                        Callback<std::vector<std::pair<std::string, int64_t>>> done) {
  using R = std::vector<std::pair<std::string, int64_t>>;
  if (!is_valid_id(channel_id)) return done(fail<R>(bad_param("channel_id")));
  if (!prev_channel_id.empty() && !is_valid_id(prev_channel_id)) return done(fail<R>(bad_param("prev_channel_id")));
  std::vector<std::string> ids{channel_id};
  if (!prev_channel_id.empty() && prev_channel_id != channel_id) ids.push_back(prev_channel_id);
  const int64_t now = now_ms();
  std::vector<Statement> s;
  // The member catches up with the channel: its message count, no mentions, and a last view at or after
  // the channel's last post (a post's create_at may run a little ahead of the clock) and never earlier
  // than before (a node whose clock is behind must not move the read state back).
  for (const auto& id : ids)
    s.push_back(Statement{
        "UPDATE ChannelMembers SET MsgCount = (SELECT TotalMsgCount FROM Channels WHERE Channels.Id = $2),"
        " MentionCount = 0, LastViewedAt = CASE WHEN LastViewedAt > $3 AND LastViewedAt >= (SELECT LastPostAt FROM"
        " Channels WHERE Channels.Id = $2) THEN LastViewedAt WHEN (SELECT LastPostAt FROM Channels WHERE"
        " Channels.Id = $2) > $3 THEN (SELECT LastPostAt FROM Channels WHERE Channels.Id = $2) ELSE $3 END,"
        " LastUpdateAt = $3"
        " WHERE UserId = $1 AND ChannelId = $2",
        {actor.user_id, id, now}});
  for (const auto& id : ids)
    s.push_back(Statement{"SELECT ChannelId, LastViewedAt FROM ChannelMembers WHERE UserId = $1 AND ChannelId = $2",
                          {actor.user_id, id}});
  store_.write(std::move(s), true, [this, alive = alive_, user = actor.user_id, n = ids.size(), done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<R>(from_db(o.error)));
    R times;
    for (size_t i = n; i < o.value.size(); ++i)
      for (const auto& r : o.value[i].rows) times.emplace_back(text_at(r, 0), int_at(r, 1));
    // Not a member of a channel: nothing changed there, and nothing is said (as Mattermost). The web app
    // reads multiple_channels_viewed, the mobile app either; both are sent.
    boost::json::object channel_times;
    for (const auto& [channel, at] : times) {
      publish_to_user(user, "channel_viewed", {{"channel_id", channel}});
      channel_times[channel] = at;
    }
    if (!times.empty()) publish_to_user(user, "multiple_channels_viewed", {{"channel_times", channel_times}});
    done(ok(std::move(times)));
  });
}

void App::channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                         Callback<ChannelMember> done) {
  if (!is_valid_id(user_id)) return done(fail<ChannelMember>(bad_param("user_id")));
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, user_id, done](AppError e,
                                                                                        std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<ChannelMember>(e));
    store_.read({Statement{std::string("SELECT ") + kChannelMemberColumns +
                               " FROM ChannelMembers WHERE ChannelId = $1 AND UserId = $2",
                           {channel_id, user_id}}},
                [alive, done](db::Outcome o) {
                  if (!*alive) return;
                  if (!o.ok()) return done(fail<ChannelMember>(from_db(o.error)));
                  if (o.result().rows.empty())
                    return done(fail<ChannelMember>(error(404, "app.channel.get_member.missing.app_error",
                                                          "No channel member found for that user ID and channel ID.")));
                  done(ok(channel_member_from_row(o.result().rows[0])));
                });
  });
}

void App::channel_member_count(const Session& actor, const std::string& channel_id, Callback<int64_t> done) {
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, done](AppError e, std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<int64_t>(e));
    store_.read({Statement{"SELECT COUNT(*) FROM ChannelMembers m JOIN Users u ON u.Id = m.UserId WHERE m.ChannelId ="
                           " $1 AND u.DeleteAt = 0",
                           {channel_id}}},
                [alive, done](db::Outcome o) {
                  if (!*alive) return;
                  if (!o.ok()) return done(fail<int64_t>(from_db(o.error)));
                  done(ok(int_at(o.result().rows.at(0), 0)));
                });
  });
}

void App::add_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                             Callback<ChannelMember> done) {
  if (!is_valid_id(user_id)) return done(fail<ChannelMember>(bad_param("user_id")));
  add_channel_member_flow(actor, channel_id, user_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): read access, the channel's members, the user's team membership,
// the member (with the channel's members, the event's recipients), then the invalidation and the event.
Flow App::add_channel_member_flow(Session actor, std::string channel_id, std::string user_id,
                                  Callback<ChannelMember> done) {
  auto [e, c] = co_await awaiting<AppError, std::optional<Channel>>(
      alive_, [&](auto resume) { can_read_channel(actor, channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<ChannelMember>(e));
  if (c->type == "D" || c->type == "G")
    co_return done(fail<ChannelMember>(error(400, "api.channel.add_user_to_channel.type.app_error",
                                             "Can not add user to this channel type.")));
  // Members add others; anyone who can read a public channel may join it.
  auto [e2, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e2.ok()) co_return done(fail<ChannelMember>(e2));
  const bool member = ids->contains(actor.user_id);
  const bool self_join = actor.user_id == user_id && c->type == "O";
  if (!member && !self_join && !actor.is_system_admin()) co_return done(fail<ChannelMember>(forbidden()));
  const std::string team_id = c->team_id;  // a plain local for the lambda (see can_read_channel_flow)
  auto [e3, in_team] = co_await awaiting<AppError, bool>(
      alive_, [&](auto resume) { is_team_member(team_id, user_id, std::move(resume)); });
  if (!e3.ok()) co_return done(fail<ChannelMember>(e3));
  if (!in_team)
    co_return done(fail<ChannelMember>(error(400, "api.channel.add_user.to.channel.failed.deleted.app_error",
                                             "The user is not a member of the channel's team.")));
  const int64_t now = now_ms();
  std::vector<Statement> s{Statement{"INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt)"
                                     " VALUES ($1, $2, 'channel_user', $3) ON CONFLICT (ChannelId, UserId) DO NOTHING",
                                     {c->id, user_id, now}},
                           Statement{std::string("SELECT ") + kChannelMemberColumns +
                                         " FROM ChannelMembers WHERE ChannelId = $1 AND UserId = $2",
                                     {c->id, user_id}},
                           Statement{"SELECT UserId FROM ChannelMembers WHERE ChannelId = $1", {c->id}}};
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!o.ok()) co_return done(fail<ChannelMember>(from_db(o.error)));
  invalidate(cluster::ClusterEvent::inv_channel_members, c->id);
  if (o.value[0].affected > 0) {
    Event ev{"user_added", boost::json::object{{"user_id", user_id}, {"team_id", c->team_id}}};
    ev.broadcast.channel_id = c->id;
    for (const auto& r : o.value[2].rows) ev.recipients.push_back(text_at(r, 0));
    ev.reliable = true;
    publish(std::move(ev));
  }
  done(ok(channel_member_from_row(o.value[1].rows.at(0))));
}

void App::remove_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                                Callback<Unit> done) {
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  remove_channel_member_flow(actor, channel_id, user_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): read access, the channel's members (the event's recipients), the
// removal, then the invalidation and the event.
Flow App::remove_channel_member_flow(Session actor, std::string channel_id, std::string user_id, Callback<Unit> done) {
  auto [e, c] = co_await awaiting<AppError, std::optional<Channel>>(
      alive_, [&](auto resume) { can_read_channel(actor, channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<Unit>(e));
  if (c->type == "D" || c->type == "G")
    co_return done(fail<Unit>(error(400, "api.channel.remove_user_from_channel.type.app_error",
                                    "Can not remove user from this channel type.")));
  if (c->name == "town-square")
    co_return done(fail<Unit>(error(400, "api.channel.remove.default.app_error", "Cannot leave Town Square.")));
  auto [e2, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e2.ok()) co_return done(fail<Unit>(e2));
  if (!ids->contains(actor.user_id) && !actor.is_system_admin()) co_return done(fail<Unit>(forbidden()));
  const std::vector<std::string> recipients(ids->begin(), ids->end());
  db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{"DELETE FROM ChannelMembers WHERE ChannelId = $1 AND UserId = $2", {channel_id, user_id}}},
                 false, std::move(resume));
  });
  if (!o.ok()) co_return done(fail<Unit>(from_db(o.error)));
  invalidate(cluster::ClusterEvent::inv_channel_members, channel_id);
  if (o.result().affected > 0) {
    Event ev{"user_removed",
             boost::json::object{{"user_id", user_id}, {"remover_id", actor.user_id}, {"channel_id", channel_id}}};
    ev.broadcast.channel_id = channel_id;
    ev.recipients = recipients;
    ev.reliable = true;
    publish(std::move(ev));
  }
  done(ok(Unit{}));
}

void App::channel_members(const Session& actor, const std::string& channel_id, int page, int per_page,
                          Callback<std::vector<ChannelMember>> done) {
  per_page = clamp_per_page(per_page, options_.per_page_max);
  can_read_channel(
      actor, channel_id, [this, alive = alive_, channel_id, page, per_page, done](AppError e, std::optional<Channel>) {
        if (!*alive) return;
        if (!e.ok()) return done(fail<std::vector<ChannelMember>>(e));
        store_.read({Statement{std::string("SELECT ") + kChannelMemberColumns +
                                   " FROM ChannelMembers WHERE ChannelId = $1 ORDER BY UserId LIMIT $2 OFFSET $3",
                               {channel_id, static_cast<int64_t>(per_page),
                                static_cast<int64_t>(std::max(page, 0)) * per_page}}},
                    rows_as<ChannelMember>(alive, channel_member_from_row, done));
      });
}

void App::channel_members_for_user(const Session& actor, const std::string& user_id, const std::string& team_id,
                                   Callback<std::vector<ChannelMember>> done, int page, int per_page) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<ChannelMember>>(forbidden()));
  if (!team_id.empty() && !is_valid_id(team_id)) return done(fail<std::vector<ChannelMember>>(bad_param("team_id")));
  const std::string cols = prefixed(kChannelMemberColumns, "m.");
  std::vector<Value> params{user_id};
  std::string sql = "SELECT " + cols +
                    " FROM ChannelMembers m JOIN Channels c ON c.Id = m.ChannelId WHERE m.UserId = $1 AND c.DeleteAt = 0";
  if (!team_id.empty()) {
    params.emplace_back(team_id);
    sql += " AND (c.TeamId = $2 OR c.TeamId = '')";  // with the user's direct and group channels
  }
  sql += " ORDER BY m.ChannelId";
  if (per_page > 0) {
    params.emplace_back(static_cast<int64_t>(clamp_per_page(per_page, 1000)));
    params.emplace_back(static_cast<int64_t>(std::max(page, 0)) * clamp_per_page(per_page, 1000));
    sql += " LIMIT $" + std::to_string(params.size() - 1) + " OFFSET $" + std::to_string(params.size());
  }
  // From the master: this is the apps' re-sync of read state after a reconnect (like posts' `since`), and
  // a replica behind would hand back a view the client has already missed the event of.
  store_.write({Statement{sql, params}}, false, rows_as<ChannelMember>(alive_, channel_member_from_row, done));
}

}  // namespace chorus::app
