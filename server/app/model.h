// The chat model: users, sessions, teams, channels, members, posts and statuses, as rows of the store and
// as Mattermost's JSON (the shapes @mattermost/client reads). Plain data; the app layer decides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "server/core/database.h"

namespace chorus::app {

namespace json = boost::json;

struct User {
  std::string id;
  int64_t create_at = 0, update_at = 0, delete_at = 0;
  std::string username, password_hash, email;
  bool email_verified = false;
  std::string nickname, first_name, last_name, position, roles, locale = "en";
  int64_t last_password_update = 0;
  bool is_system_admin() const;
  // What others may see (never the password hash).
  json::object to_json() const;
};
// Columns in the order from_row expects.
inline constexpr const char* kUserColumns =
    "Id, CreateAt, UpdateAt, DeleteAt, Username, Password, Email, EmailVerified, Nickname, FirstName, LastName, "
    "Position, Roles,"
    " Locale, LastPasswordUpdate";
User user_from_row(const std::vector<db::Value>& row);

struct Session {
  std::string id, token;
  int64_t create_at = 0, expires_at = 0, last_activity_at = 0;
  std::string user_id, device_id, roles;
  bool is_system_admin() const;
  json::object to_json() const;
};
inline constexpr const char* kSessionColumns =
    "Id, Token, CreateAt, ExpiresAt, LastActivityAt, UserId, DeviceId, Roles";
Session session_from_row(const std::vector<db::Value>& row);

struct Team {
  std::string id;
  int64_t create_at = 0, update_at = 0, delete_at = 0;
  std::string display_name, name, description, email, type = "O";
  bool allow_open_invite = false;
  json::object to_json() const;
};
inline constexpr const char* kTeamColumns =
    "Id, CreateAt, UpdateAt, DeleteAt, DisplayName, Name, Description, Email, Type, AllowOpenInvite";
Team team_from_row(const std::vector<db::Value>& row);

struct TeamMember {
  std::string team_id, user_id, roles;
  int64_t delete_at = 0;
  json::object to_json() const;
};
inline constexpr const char* kTeamMemberColumns = "TeamId, UserId, Roles, DeleteAt";
TeamMember team_member_from_row(const std::vector<db::Value>& row);

struct Channel {
  std::string id;
  int64_t create_at = 0, update_at = 0, delete_at = 0;
  std::string team_id, type = "O", display_name, name, header, purpose;
  int64_t last_post_at = 0, total_msg_count = 0;
  std::string creator_id;
  json::object to_json() const;
};
inline constexpr const char* kChannelColumns =
    "Id, CreateAt, UpdateAt, DeleteAt, TeamId, Type, DisplayName, Name, Header, Purpose, LastPostAt, TotalMsgCount, "
    "CreatorId";
Channel channel_from_row(const std::vector<db::Value>& row);

struct ChannelMember {
  std::string channel_id, user_id, roles;
  int64_t last_viewed_at = 0, msg_count = 0, mention_count = 0, last_update_at = 0;
  json::object to_json() const;
};
inline constexpr const char* kChannelMemberColumns =
    "ChannelId, UserId, Roles, LastViewedAt, MsgCount, MentionCount, LastUpdateAt";
ChannelMember channel_member_from_row(const std::vector<db::Value>& row);

struct Post {
  std::string id;
  int64_t create_at = 0, update_at = 0, edit_at = 0, delete_at = 0;
  std::string user_id, channel_id, root_id, message, type, props = "{}", pending_post_id;
  json::object to_json() const;
};
inline constexpr const char* kPostColumns =
    "Id, CreateAt, UpdateAt, EditAt, DeleteAt, UserId, ChannelId, RootId, Message, Type, Props, PendingPostId";
Post post_from_row(const std::vector<db::Value>& row);

struct Status {
  std::string user_id, status = "offline";
  bool manual = false;
  int64_t last_activity_at = 0;
  json::object to_json() const;
};

using db::int_at;
using db::text_at;

}  // namespace chorus::app
