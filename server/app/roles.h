// The built-in roles and their permissions, as Mattermost's default permission scheme grants them (the
// part of it Chorus has): system_user, system_admin, team_user, team_admin, channel_user, channel_admin
// and the guest roles. The apps read them (POST /roles/names) to decide which actions to show; the
// server's own checks (app_*.cpp) grant the same. Fixed: Chorus has no permission schemes to edit.
#pragma once

#include <string>
#include <vector>

#include "server/app/model.h"

namespace chorus::app {

const std::vector<Role>& builtin_roles();
const Role* role_by_name(const std::string& name);
const Role* role_by_id(const std::string& id);

}  // namespace chorus::app
