// The built-in roles and their permissions: Mattermost's default permission scheme, cut down to what
// Chorus does (system_user, system_admin, team_user, team_admin, channel_user, channel_admin and the
// guest roles). The apps read them (POST /roles/names) to decide which actions to show, so a permission
// is granted here only when its route exists and the server's checks (app_*.cpp) allow it. Fixed:
// Chorus has no permission schemes to edit.
#pragma once

#include <string>
#include <vector>

#include "server/app/model.h"

namespace chorus::app {

const std::vector<Role>& builtin_roles();
const Role* role_by_name(const std::string& name);
const Role* role_by_id(const std::string& id);

}  // namespace chorus::app
