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
  // JSON objects, as Mattermost stores them (string values): the user's props, notification settings
  // and time zone (the apps read notify_props and timezone from /users/me).
  std::string props = "{}", notify_props = "{}", timezone = "{}";
  bool is_system_admin() const;
  // The user as the user (or an admin) sees it, never with the password hash.
  json::object to_json() const;
  // As `viewer` sees it: another user's notification settings and password date stay private, as in
  // Mattermost's SanitizeProfile.
  json::object to_json_for(const std::string& viewer_id, bool viewer_admin) const;
};
// Columns in the order from_row expects.
inline constexpr const char* kUserColumns =
    "Id, CreateAt, UpdateAt, DeleteAt, Username, Password, Email, EmailVerified, Nickname, FirstName, LastName, "
    "Position, Roles,"
    " Locale, LastPasswordUpdate, Props, NotifyProps, Timezone";
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

// A user's emoji reaction to a post (Reactions table). A removed one stays as a row with DeleteAt set (the
// re-sync and the export see it go); adding it again revives the row. Its update_at is the post's
// update_at of the change that made or removed it.
struct Reaction {
  std::string user_id, post_id, emoji_name, channel_id;
  int64_t create_at = 0, update_at = 0, delete_at = 0;
  json::object to_json() const;
};
inline constexpr const char* kReactionColumns = "UserId, PostId, EmojiName, CreateAt, UpdateAt, DeleteAt, ChannelId";
Reaction reaction_from_row(const std::vector<db::Value>& row);

// An uploaded file (FileInfo table): its bytes, thumbnail and preview are in the shared file store under
// Path, ThumbnailPath and PreviewPath; a row exists only once they are all written.
struct FileInfo {
  std::string id, creator_id, post_id, channel_id;
  int64_t create_at = 0, update_at = 0, delete_at = 0;
  std::string path, thumbnail_path, preview_path, name, extension, mime_type;
  int64_t size = 0, width = 0, height = 0;
  bool has_preview_image = false;
  json::object to_json() const;
};
inline constexpr const char* kFileInfoColumns =
    "Id, CreatorId, PostId, ChannelId, CreateAt, UpdateAt, DeleteAt, Path, ThumbnailPath, PreviewPath, Name, "
    "Extension, MimeType, Size, Width, Height, HasPreviewImage";
FileInfo file_info_from_row(const std::vector<db::Value>& row);

struct Post {
  std::string id;
  int64_t create_at = 0, update_at = 0, edit_at = 0, delete_at = 0;
  std::string user_id, channel_id, root_id, message, type, props = "{}", pending_post_id;
  bool is_pinned = false;
  // Filled by reads that give the apps metadata (App::add_metadata): the thread's reply count and last
  // reply, and the post's reactions (metadata.reactions).
  int64_t reply_count = 0, last_reply_at = 0;
  std::vector<Reaction> reactions;
  std::vector<std::string> file_ids;  // attached at creation (the FileIds column, a JSON array)
  std::vector<FileInfo> files;        // filled with the metadata: metadata.files
  json::object to_json() const;
};
inline constexpr const char* kPostColumns =
    "Id, CreateAt, UpdateAt, EditAt, DeleteAt, UserId, ChannelId, RootId, Message, Type, Props, PendingPostId, "
    "IsPinned, FileIds";
Post post_from_row(const std::vector<db::Value>& row);

struct Status {
  std::string user_id, status = "offline";
  bool manual = false;
  int64_t last_activity_at = 0;
  json::object to_json() const;
};

// A user's preference (Preferences table): the apps keep their settings, DM visibility and favourites here.
struct Preference {
  std::string user_id, category, name, value;
  json::object to_json() const;
};
Preference preference_from_row(const std::vector<db::Value>& row);

// A sidebar category of a user in a team (Favorites, Channels, Direct Messages, or the user's own): the
// apps build the channel sidebar from these and nothing else.
struct SidebarCategory {
  std::string id, user_id, team_id, type, display_name, sorting;
  int64_t sort_order = 0;
  bool muted = false, collapsed = false;
  std::vector<std::string> channel_ids;
  json::object to_json() const;
};
inline constexpr const char* kSidebarCategoryColumns =
    "Id, UserId, TeamId, Type, DisplayName, Sorting, SortOrder, Muted, Collapsed";
SidebarCategory sidebar_category_from_row(const std::vector<db::Value>& row);

// A role and what it grants (server/app/roles.cpp): the apps hide what a user's roles do not permit.
struct Role {
  std::string id, name, display_name, description;
  std::vector<std::string> permissions;
  bool scheme_managed = true, built_in = true;
  json::object to_json() const;
};

// Unread messages and mentions of a user in a team (the sum over the team's channels).
struct TeamUnread {
  std::string team_id;
  int64_t msg_count = 0, mention_count = 0;
  json::object to_json() const;
};

using db::int_at;
using db::text_at;

}  // namespace chorus::app
