#include "server/app/model.h"

#include <boost/json.hpp>

namespace chorus::app {

namespace {
bool has_role(const std::string& roles, const std::string& role) {
  size_t pos = 0;
  while (pos <= roles.size()) {
    const size_t end = roles.find(' ', pos);
    const std::string word = roles.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (word == role) return true;
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return false;
}
// A stored JSON object ({} when the text is not one).
json::object object_or_empty(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}
}  // namespace

bool User::is_system_admin() const { return has_role(roles, "system_admin"); }
bool Session::is_system_admin() const { return has_role(roles, "system_admin"); }

json::object User::to_json() const {
  return {
      {"id", id},
      {"create_at", create_at},
      {"update_at", update_at},
      {"delete_at", delete_at},
      {"username", username},
      {"auth_data", ""},
      {"auth_service", ""},
      {"email", email},
      {"email_verified", email_verified},
      {"nickname", nickname},
      {"first_name", first_name},
      {"last_name", last_name},
      {"position", position},
      {"roles", roles},
      {"locale", locale},
      {"timezone", object_or_empty(timezone)},
      {"notify_props", object_or_empty(notify_props)},
      {"props", object_or_empty(props)},
      {"last_password_update", last_password_update},
      {"is_bot", false},
      {"mfa_active", false}};
}

json::object User::to_json_for(const std::string& viewer_id, bool viewer_admin) const {
  json::object o = to_json();
  if (viewer_id != id && !viewer_admin) {
    o["notify_props"] = json::object{};
    o["last_password_update"] = 0;
  }
  return o;
}

User user_from_row(const std::vector<db::Value>& r) {
  User u;
  u.id = text_at(r, 0);
  u.create_at = int_at(r, 1);
  u.update_at = int_at(r, 2);
  u.delete_at = int_at(r, 3);
  u.username = text_at(r, 4);
  u.password_hash = text_at(r, 5);
  u.email = text_at(r, 6);
  u.email_verified = int_at(r, 7) != 0;
  u.nickname = text_at(r, 8);
  u.first_name = text_at(r, 9);
  u.last_name = text_at(r, 10);
  u.position = text_at(r, 11);
  u.roles = text_at(r, 12);
  u.locale = text_at(r, 13);
  u.last_password_update = int_at(r, 14);
  u.props = text_at(r, 15);
  u.notify_props = text_at(r, 16);
  u.timezone = text_at(r, 17);
  return u;
}

json::object Session::to_json() const {
  return {{"id", id},
          {"token", token},
          {"create_at", create_at},
          {"expires_at", expires_at},
          {"last_activity_at", last_activity_at},
          {"user_id", user_id},
          {"device_id", device_id},
          {"roles", roles},
          {"is_oauth", false},
          {"props", json::object{}}};
}

Session session_from_row(const std::vector<db::Value>& r) {
  Session s;
  s.id = text_at(r, 0);
  s.token = text_at(r, 1);
  s.create_at = int_at(r, 2);
  s.expires_at = int_at(r, 3);
  s.last_activity_at = int_at(r, 4);
  s.user_id = text_at(r, 5);
  s.device_id = text_at(r, 6);
  s.roles = text_at(r, 7);
  return s;
}

json::object Team::to_json() const {
  return {{"id", id},
          {"create_at", create_at},
          {"update_at", update_at},
          {"delete_at", delete_at},
          {"display_name", display_name},
          {"name", name},
          {"description", description},
          {"email", email},
          {"type", type},
          {"company_name", ""},
          {"allowed_domains", ""},
          {"invite_id", ""},
          {"allow_open_invite", allow_open_invite},
          {"scheme_id", nullptr},
          {"group_constrained", nullptr},
          {"policy_id", nullptr}};
}

Team team_from_row(const std::vector<db::Value>& r) {
  Team t;
  t.id = text_at(r, 0);
  t.create_at = int_at(r, 1);
  t.update_at = int_at(r, 2);
  t.delete_at = int_at(r, 3);
  t.display_name = text_at(r, 4);
  t.name = text_at(r, 5);
  t.description = text_at(r, 6);
  t.email = text_at(r, 7);
  t.type = text_at(r, 8);
  t.allow_open_invite = int_at(r, 9) != 0;
  return t;
}

json::object TeamMember::to_json() const {
  const bool admin = roles.find("team_admin") != std::string::npos;
  return {{"team_id", team_id},  {"user_id", user_id},    {"roles", roles},        {"delete_at", delete_at},
          {"scheme_user", true}, {"scheme_admin", admin}, {"scheme_guest", false}, {"explicit_roles", ""}};
}

TeamMember team_member_from_row(const std::vector<db::Value>& r) {
  return TeamMember{text_at(r, 0), text_at(r, 1), text_at(r, 2), int_at(r, 3)};
}

json::object Channel::to_json() const {
  return {{"id", id},
          {"create_at", create_at},
          {"update_at", update_at},
          {"delete_at", delete_at},
          {"team_id", team_id},
          {"type", type},
          {"display_name", display_name},
          {"name", name},
          {"header", header},
          {"purpose", purpose},
          {"last_post_at", last_post_at},
          {"last_root_post_at", last_post_at},
          {"total_msg_count", total_msg_count},
          {"total_msg_count_root", total_msg_count},
          {"extra_update_at", 0},
          {"creator_id", creator_id},
          {"scheme_id", nullptr},
          {"props", nullptr},
          {"group_constrained", nullptr},
          {"shared", nullptr}};
}

Channel channel_from_row(const std::vector<db::Value>& r) {
  Channel c;
  c.id = text_at(r, 0);
  c.create_at = int_at(r, 1);
  c.update_at = int_at(r, 2);
  c.delete_at = int_at(r, 3);
  c.team_id = text_at(r, 4);
  c.type = text_at(r, 5);
  c.display_name = text_at(r, 6);
  c.name = text_at(r, 7);
  c.header = text_at(r, 8);
  c.purpose = text_at(r, 9);
  c.last_post_at = int_at(r, 10);
  c.total_msg_count = int_at(r, 11);
  c.creator_id = text_at(r, 12);
  return c;
}

json::object ChannelMember::to_json() const {
  const bool admin = roles.find("channel_admin") != std::string::npos;
  return {{"channel_id", channel_id},
          {"user_id", user_id},
          {"roles", roles},
          {"last_viewed_at", last_viewed_at},
          {"msg_count", msg_count},
          {"msg_count_root", msg_count},
          {"mention_count", mention_count},
          {"mention_count_root", mention_count},
          {"urgent_mention_count", 0},
          {"notify_props",
           json::object{{"desktop", "default"}, {"email", "default"}, {"mark_unread", "all"}, {"push", "default"}}},
          {"last_update_at", last_update_at},
          {"scheme_user", true},
          {"scheme_admin", admin},
          {"scheme_guest", false},
          {"explicit_roles", ""}};
}

ChannelMember channel_member_from_row(const std::vector<db::Value>& r) {
  ChannelMember m;
  m.channel_id = text_at(r, 0);
  m.user_id = text_at(r, 1);
  m.roles = text_at(r, 2);
  m.last_viewed_at = int_at(r, 3);
  m.msg_count = int_at(r, 4);
  m.mention_count = int_at(r, 5);
  m.last_update_at = int_at(r, 6);
  return m;
}

json::object FileInfo::to_json() const {
  return {{"id", id},
          {"user_id", creator_id},
          {"post_id", post_id},
          {"channel_id", channel_id},
          {"create_at", create_at},
          {"update_at", update_at},
          {"delete_at", delete_at},
          {"name", name},
          {"extension", extension},
          {"size", size},
          {"mime_type", mime_type},
          {"width", width},
          {"height", height},
          {"has_preview_image", has_preview_image},
          {"archived", false},
          {"remote_id", ""}};
}

FileInfo file_info_from_row(const std::vector<db::Value>& r) {
  FileInfo f;
  f.id = text_at(r, 0);
  f.creator_id = text_at(r, 1);
  f.post_id = text_at(r, 2);
  f.channel_id = text_at(r, 3);
  f.create_at = int_at(r, 4);
  f.update_at = int_at(r, 5);
  f.delete_at = int_at(r, 6);
  f.path = text_at(r, 7);
  f.thumbnail_path = text_at(r, 8);
  f.preview_path = text_at(r, 9);
  f.name = text_at(r, 10);
  f.extension = text_at(r, 11);
  f.mime_type = text_at(r, 12);
  f.size = int_at(r, 13);
  f.width = int_at(r, 14);
  f.height = int_at(r, 15);
  f.has_preview_image = int_at(r, 16) != 0;
  return f;
}

json::object Reaction::to_json() const {
  return {{"user_id", user_id},     {"post_id", post_id},     {"emoji_name", emoji_name}, {"create_at", create_at},
          {"update_at", update_at}, {"delete_at", delete_at}, {"channel_id", channel_id},  {"remote_id", ""}};
}

Reaction reaction_from_row(const std::vector<db::Value>& r) {
  Reaction x;
  x.user_id = text_at(r, 0);
  x.post_id = text_at(r, 1);
  x.emoji_name = text_at(r, 2);
  x.create_at = int_at(r, 3);
  x.update_at = int_at(r, 4);
  x.delete_at = int_at(r, 5);
  x.channel_id = text_at(r, 6);
  return x;
}

json::object Post::to_json() const {
  json::array file_ids_json;
  for (const auto& f : file_ids) file_ids_json.emplace_back(f);
  json::object metadata;
  if (!reactions.empty()) {
    json::array a;
    for (const auto& x : reactions) a.push_back(x.to_json());
    metadata["reactions"] = std::move(a);
  }
  if (!files.empty()) {
    json::array a;
    for (const auto& f : files) a.push_back(f.to_json());
    metadata["files"] = std::move(a);
  }
  return {{"id", id},
          {"create_at", create_at},
          {"update_at", update_at},
          {"edit_at", edit_at},
          {"delete_at", delete_at},
          {"is_pinned", is_pinned},
          {"user_id", user_id},
          {"channel_id", channel_id},
          {"root_id", root_id},
          {"original_id", ""},
          {"message", message},
          {"type", type},
          {"props", object_or_empty(props)},
          {"hashtags", ""},
          {"pending_post_id", pending_post_id},
          {"reply_count", reply_count},
          {"last_reply_at", last_reply_at},
          {"participants", nullptr},
          {"has_reactions", !reactions.empty()},
          {"file_ids", file_ids_json},
          {"metadata", metadata}};
}

Post post_from_row(const std::vector<db::Value>& r) {
  Post p;
  p.id = text_at(r, 0);
  p.create_at = int_at(r, 1);
  p.update_at = int_at(r, 2);
  p.edit_at = int_at(r, 3);
  p.delete_at = int_at(r, 4);
  p.user_id = text_at(r, 5);
  p.channel_id = text_at(r, 6);
  p.root_id = text_at(r, 7);
  p.message = text_at(r, 8);
  p.type = text_at(r, 9);
  p.props = text_at(r, 10);
  p.pending_post_id = text_at(r, 11);
  p.is_pinned = r.size() > 12 && int_at(r, 12) != 0;
  if (r.size() > 13 && text_at(r, 13) != "[]") {
    boost::system::error_code ec;
    auto ids = json::parse(text_at(r, 13), ec);
    if (!ec && ids.is_array())
      for (const auto& id : ids.as_array())
        if (id.is_string()) p.file_ids.emplace_back(id.as_string());
  }
  return p;
}

json::object Status::to_json() const {
  return {{"user_id", user_id},
          {"status", status},
          {"manual", manual},
          {"last_activity_at", last_activity_at},
          {"active_channel", ""}};
}

json::object Preference::to_json() const {
  return {{"user_id", user_id}, {"category", category}, {"name", name}, {"value", value}};
}

Preference preference_from_row(const std::vector<db::Value>& r) {
  return Preference{text_at(r, 0), text_at(r, 1), text_at(r, 2), text_at(r, 3)};
}

json::object SidebarCategory::to_json() const {
  json::array ids;
  for (const auto& c : channel_ids) ids.emplace_back(c);
  return {{"id", id},
          {"user_id", user_id},
          {"team_id", team_id},
          {"type", type},
          {"display_name", display_name},
          {"sorting", sorting},
          {"sort_order", sort_order},
          {"muted", muted},
          {"collapsed", collapsed},
          {"channel_ids", ids}};
}

SidebarCategory sidebar_category_from_row(const std::vector<db::Value>& r) {
  SidebarCategory c;
  c.id = text_at(r, 0);
  c.user_id = text_at(r, 1);
  c.team_id = text_at(r, 2);
  c.type = text_at(r, 3);
  c.display_name = text_at(r, 4);
  c.sorting = text_at(r, 5);
  c.sort_order = int_at(r, 6);
  c.muted = int_at(r, 7) != 0;
  c.collapsed = int_at(r, 8) != 0;
  return c;
}

json::object Role::to_json() const {
  json::array perms;
  for (const auto& p : permissions) perms.emplace_back(p);
  return {{"id", id},
          {"name", name},
          {"display_name", display_name},
          {"description", description},
          {"create_at", 0},
          {"update_at", 0},
          {"delete_at", 0},
          {"permissions", perms},
          {"scheme_managed", scheme_managed},
          {"built_in", built_in}};
}

json::object TeamUnread::to_json() const {
  return {{"team_id", team_id},         {"msg_count", msg_count},       {"mention_count", mention_count},
          {"msg_count_root", msg_count}, {"mention_count_root", mention_count}, {"thread_count", 0},
          {"thread_mention_count", 0},    {"thread_urgent_mention_count", 0}};
}

}  // namespace chorus::app
