#include "server/app/roles.h"

#include <cstdint>

namespace chorus::app {

namespace {

// A stable 26-character id from the name (role ids are ids, and the same on every node and every run).
std::string id_of(const std::string& name) {
  uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull;
  for (unsigned char c : name) {
    h1 = (h1 ^ c) * 1099511628211ull;
    h2 = (h2 + c) * 6364136223846793005ull + 1442695040888963407ull;
  }
  static const char* alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769";
  std::string id;
  for (int i = 0; i < 13; ++i) id += alphabet[(h1 >> (i * 5)) & 31];
  for (int i = 0; i < 13; ++i) id += alphabet[(h2 >> (i * 5)) & 31];
  return id;
}

Role make(const std::string& name, const std::string& display, std::vector<std::string> permissions) {
  return Role{id_of(name), name, display, "authentication.roles." + name + ".description", std::move(permissions),
              true, true};
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

const std::vector<Role>& builtin_roles() {
  static const std::vector<Role> roles = [] {
    // Only what Chorus does (the apps offer what the roles grant).
    const std::vector<std::string> channel_user = {"read_channel",         "read_channel_content",
                                                   "create_post",          "use_channel_mentions",
                                                   "edit_post",            "delete_post",
                                                   "add_reaction",         "remove_reaction",
                                                   "upload_file",
                                                   "manage_public_channel_members", "manage_private_channel_members"};
    const std::vector<std::string> team_user = {"view_team", "list_team_channels", "join_public_channels",
                                                "read_public_channel", "create_public_channel",
                                                "create_private_channel"};
    const std::vector<std::string> system_user = {"create_direct_channel", "create_group_channel", "create_team",
                                                  "list_public_teams",     "join_public_teams",    "view_members",
                                                  "edit_own_profile"};
    const std::vector<std::string> channel_admin = {};
    const std::vector<std::string> team_admin = {"add_user_to_team", "remove_user_from_team"};
    std::vector<std::string> system_admin =
        plus(plus(plus(plus(system_user, team_user), channel_user), team_admin),
             {"manage_system", "edit_other_users", "manage_jobs", "read_other_users_teams", "list_private_teams",
              "join_private_teams", "edit_others_posts", "delete_others_posts", "remove_others_reactions"});
    return std::vector<Role>{
        make("system_user", "authentication.roles.global_user.name", system_user),
        make("system_admin", "authentication.roles.global_admin.name", system_admin),
        make("system_guest", "authentication.roles.global_guest.name", {"create_direct_channel", "create_group_channel"}),
        make("team_user", "authentication.roles.team_user.name", team_user),
        make("team_admin", "authentication.roles.team_admin.name", team_admin),
        make("team_guest", "authentication.roles.team_guest.name", {"view_team"}),
        make("channel_user", "authentication.roles.channel_user.name", channel_user),
        make("channel_admin", "authentication.roles.channel_admin.name", channel_admin),
        make("channel_guest", "authentication.roles.channel_guest.name",
             {"read_channel", "read_channel_content", "create_post", "use_channel_mentions"}),
    };
  }();
  return roles;
}

const Role* role_by_name(const std::string& name) {
  for (const auto& r : builtin_roles())
    if (r.name == name) return &r;
  return nullptr;
}

const Role* role_by_id(const std::string& id) {
  for (const auto& r : builtin_roles())
    if (r.id == id) return &r;
  return nullptr;
}

}  // namespace chorus::app
