// Teams and team members.
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
// Teams.

void App::is_team_member(const std::string& team_id, const std::string& user_id,
                         std::function<void(AppError, bool)> done) {
  // From the master, as every read that decides a permission: a replica may not have the removal yet.
  store_.write(
      {Statement{"SELECT 1 FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0", {team_id, user_id}}},
      false, [alive = alive_, done](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) return done(from_db(o.error), false);
        done({}, !o.result().rows.empty());
      });
}

void App::create_team(const Session& actor, Team team, Callback<Team> done) {
  if (!valid_name(team.name, 2, 64, false, false) || team.name.front() == '-')
    return done(fail<Team>(error(400, "model.team.is_valid.url.app_error",
                                 "Team URL must be 2-64 lowercase letters, numbers or dashes.")));
  if (team.display_name.empty() || team.display_name.size() > 64) return done(fail<Team>(bad_param("display_name")));
  if (team.type != "O" && team.type != "I") return done(fail<Team>(bad_param("type")));
  if (team.description.size() > 255) return done(fail<Team>(bad_param("description")));
  if (team.email.size() > 128) return done(fail<Team>(bad_param("email")));
  team.id = new_id(env_.random());
  team.create_at = team.update_at = now_ms();
  const std::string town = new_id(env_.random()), off = new_id(env_.random());
  const int64_t now = team.create_at;
  std::vector<Statement> s{
      Statement{
          "INSERT INTO Teams (Id, CreateAt, UpdateAt, DisplayName, Name, Description, Email, Type, AllowOpenInvite)"
          " VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)",
          {team.id, now, team.display_name, team.name, team.description, team.email, team.type,
           int64_t{team.allow_open_invite}}},
      // Every team starts with Town Square and Off-Topic, its creator in both (as Mattermost).
      Statement{"INSERT INTO Channels (Id, CreateAt, UpdateAt, TeamId, Type, DisplayName, Name, CreatorId) VALUES"
                " ($1, $3, $3, $4, 'O', 'Town Square', 'town-square', $5), ($2, $3, $3, $4, 'O', 'Off-Topic', "
                "'off-topic', $5)",
                {town, off, now, team.id, actor.user_id}}};
  if (!actor.user_id.empty()) {  // local mode (api.cpp) creates a team with no creator to make a member
    s.push_back(Statement{
        "INSERT INTO TeamMembers (TeamId, UserId, Roles, CreateAt) VALUES ($1, $2, 'team_user team_admin', $3)",
        {team.id, actor.user_id, now}});
    s.push_back(Statement{
        "INSERT INTO ChannelMembers (ChannelId, UserId, Roles, LastUpdateAt) VALUES ($1, $3, 'channel_user', $4),"
        " ($2, $3, 'channel_user', $4)",
        {town, off, actor.user_id, now}});
  }
  store_.write(std::move(s), true, [this, alive = alive_, team, done](db::Outcome o) {
    if (!*alive) return;
    if (o.error.status == db::Status::conflict)
      return done(fail<Team>(
          error(400, "store.sql_team.save_team.existing.app_error", "A team with that name already exists.")));
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
  store_.read({Statement{"SELECT Id FROM Teams WHERE Name = $1", {name}}},
              [this, alive = alive_, actor, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Team>(from_db(o.error)));
                if (o.result().rows.empty()) return done(fail<Team>(not_found("team")));
                get_team(actor, text_at(o.result().rows[0], 0), done);
              });
}

void App::teams_for_user(const Session& actor, const std::string& user_id, Callback<std::vector<Team>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<Team>>(forbidden()));
  store_.read({Statement{"SELECT " + prefixed(kTeamColumns, "t.") +
                             " FROM Teams t JOIN TeamMembers m ON m.TeamId = t.Id WHERE m.UserId = $1 AND m.DeleteAt = "
                             "0 AND t.DeleteAt = 0"
                             " ORDER BY t.DisplayName",
                         {user_id}}},
              rows_as<Team>(alive_, team_from_row, done));
}

void App::teams_unread(const Session& actor, const std::string& user_id, const std::string& team_id,
                       const std::string& exclude_team, Callback<std::vector<TeamUnread>> done) {
  using R = std::vector<TeamUnread>;
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<R>(forbidden()));
  if (!is_valid_id(user_id)) return done(fail<R>(bad_param("user_id")));
  if ((!team_id.empty() && !is_valid_id(team_id)) || (!exclude_team.empty() && !is_valid_id(exclude_team)))
    return done(fail<R>(bad_param("team_id")));
  // Every team of the user's (0 where nothing is unread), summed over its channels: a channel's unread
  // messages are its count less the count the user had seen.
  std::string sql =
      "SELECT t.TeamId, CAST(COALESCE(SUM(CASE WHEN c.TotalMsgCount > m.MsgCount THEN c.TotalMsgCount - m.MsgCount"
      " ELSE 0 END), 0) AS BIGINT), CAST(COALESCE(SUM(m.MentionCount), 0) AS BIGINT) FROM TeamMembers t LEFT JOIN Channels c ON c.TeamId = t.TeamId AND"
      " c.DeleteAt = 0 LEFT JOIN ChannelMembers m ON m.ChannelId = c.Id AND m.UserId = t.UserId"
      " WHERE t.UserId = $1 AND t.DeleteAt = 0";
  std::vector<Value> params{user_id};
  if (!team_id.empty()) {
    params.emplace_back(team_id);
    sql += " AND t.TeamId = $2";
  } else if (!exclude_team.empty()) {
    params.emplace_back(exclude_team);
    sql += " AND t.TeamId <> $2";
  }
  sql += " GROUP BY t.TeamId ORDER BY t.TeamId";
  store_.read({Statement{sql, params}}, [alive = alive_, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<R>(from_db(o.error)));
    R out;
    for (const auto& r : o.result().rows) out.push_back(TeamUnread{text_at(r, 0), int_at(r, 1), int_at(r, 2)});
    done(ok(std::move(out)));
  });
}

void App::list_teams(const Session& actor, Callback<std::vector<Team>> done) {
  // A system admin sees every team; others the open ones.
  const std::string where =
      actor.is_system_admin() ? "DeleteAt = 0" : "DeleteAt = 0 AND Type = 'O' AND AllowOpenInvite = 1";
  store_.read({Statement{std::string("SELECT ") + kTeamColumns + " FROM Teams WHERE " + where +
                             " ORDER BY DisplayName LIMIT 1000",
                         {}}},
              rows_as<Team>(alive_, team_from_row, done));
}

void App::add_team_member(const Session& actor, const std::string& team_id, const std::string& user_id,
                          Callback<TeamMember> done) {
  if (!is_valid_id(team_id)) return done(fail<TeamMember>(bad_param("team_id")));
  if (!is_valid_id(user_id)) return done(fail<TeamMember>(bad_param("user_id")));
  add_team_member_flow(actor, team_id, user_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the team, the actor's roles in it and the user; then the member
// and the team's default channels in one transaction; then the invalidations and the event.
Flow App::add_team_member_flow(Session actor, std::string team_id, std::string user_id, Callback<TeamMember> done) {
  // Who may add: a system admin, a team admin, or anyone joining an open team themselves.
  db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{std::string("SELECT ") + kTeamColumns + " FROM Teams WHERE Id = $1", {team_id}},
                  Statement{"SELECT Roles FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0",
                            {team_id, actor.user_id}},
                  Statement{"SELECT 1 FROM Users WHERE Id = $1", {user_id}}},
                 false, std::move(resume));
  });
  if (!o.ok()) co_return done(fail<TeamMember>(from_db(o.error)));
  if (o.value[0].rows.empty()) co_return done(fail<TeamMember>(not_found("team")));
  if (o.value[2].rows.empty()) co_return done(fail<TeamMember>(not_found("user")));
  const Team team = team_from_row(o.value[0].rows[0]);
  const bool team_admin =
      !o.value[1].rows.empty() && text_at(o.value[1].rows[0], 0).find("team_admin") != std::string::npos;
  const bool self_join = actor.user_id == user_id && team.type == "O" && team.allow_open_invite;
  if (!actor.is_system_admin() && !team_admin && !self_join) co_return done(fail<TeamMember>(forbidden()));
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
  db::Outcome o2 =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!o2.ok()) co_return done(fail<TeamMember>(from_db(o2.error)));
  for (const auto& r : o2.value[2].rows) invalidate(cluster::ClusterEvent::inv_channel_members, text_at(r, 0));
  Event e{"added_to_team", boost::json::object{{"team_id", team_id}, {"user_id", user_id}}};
  e.broadcast.user_id = user_id;
  e.reliable = true;
  publish(std::move(e));
  done(ok(team_member_from_row(o2.value[3].rows.at(0))));
}

void App::remove_team_member(const Session& actor, const std::string& team_id, const std::string& user_id,
                             Callback<Unit> done) {
  if (!is_valid_id(team_id)) return done(fail<Unit>(bad_param("team_id")));
  if (!is_valid_id(user_id)) return done(fail<Unit>(bad_param("user_id")));
  remove_team_member_flow(actor, team_id, user_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the actor's roles in the team; then the user out of the team and
// its channels in one transaction; then the invalidations and the event.
Flow App::remove_team_member_flow(Session actor, std::string team_id, std::string user_id, Callback<Unit> done) {
  db::Outcome o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
    store_.write({Statement{"SELECT Roles FROM TeamMembers WHERE TeamId = $1 AND UserId = $2 AND DeleteAt = 0",
                            {team_id, actor.user_id}}},
                 false, std::move(resume));
  });
  if (!o.ok()) co_return done(fail<Unit>(from_db(o.error)));
  const bool team_admin =
      !o.result().rows.empty() && text_at(o.result().rows[0], 0).find("team_admin") != std::string::npos;
  if (!actor.is_system_admin() && !team_admin && actor.user_id != user_id) co_return done(fail<Unit>(forbidden()));
  std::vector<Statement> s{Statement{"SELECT Id FROM Channels WHERE TeamId = $1", {team_id}},
                           Statement{"DELETE FROM ChannelMembers WHERE UserId = $2"
                                     " AND ChannelId IN (SELECT Id FROM Channels WHERE TeamId = $1)",
                                     {team_id, user_id}},
                           Statement{"UPDATE TeamMembers SET DeleteAt = $3 WHERE TeamId = $1 AND UserId = $2",
                                     {team_id, user_id, now_ms()}}};
  db::Outcome o2 =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!o2.ok()) co_return done(fail<Unit>(from_db(o2.error)));
  for (const auto& r : o2.value[0].rows) invalidate(cluster::ClusterEvent::inv_channel_members, text_at(r, 0));
  Event e{"leave_team", boost::json::object{{"team_id", team_id}, {"user_id", user_id}}};
  e.broadcast.user_id = user_id;
  e.reliable = true;
  publish(std::move(e));
  done(ok(Unit{}));
}

void App::team_members(const Session& actor, const std::string& team_id, int page, int per_page,
                       Callback<std::vector<TeamMember>> done) {
  if (!is_valid_id(team_id)) return done(fail<std::vector<TeamMember>>(bad_param("team_id")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  is_team_member(
      team_id, actor.user_id, [this, alive = alive_, actor, team_id, page, per_page, done](AppError e, bool member) {
        if (!*alive) return;
        if (!e.ok()) return done(fail<std::vector<TeamMember>>(e));
        if (!member && !actor.is_system_admin()) return done(fail<std::vector<TeamMember>>(forbidden()));
        store_.read(
            {Statement{std::string("SELECT ") + kTeamMemberColumns +
                           " FROM TeamMembers WHERE TeamId = $1 AND DeleteAt = 0 ORDER BY UserId LIMIT $2 OFFSET $3",
                       {team_id, static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page}}},
            rows_as<TeamMember>(alive, team_member_from_row, done));
      });
}

void App::team_members_for_user(const Session& actor, const std::string& user_id,
                                Callback<std::vector<TeamMember>> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<std::vector<TeamMember>>(forbidden()));
  store_.read(
      {Statement{std::string("SELECT ") + kTeamMemberColumns + " FROM TeamMembers WHERE UserId = $1 AND DeleteAt = 0",
                 {user_id}}},
      rows_as<TeamMember>(alive_, team_member_from_row, done));
}

}  // namespace chorus::app
