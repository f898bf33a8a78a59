// A user's default profile image, as Mattermost makes one: the user's initials on a colour of their own
// (from the user id, so every node draws the same picture), as a 128x128 PNG.
#pragma once

#include <string>

namespace chorus::app {

struct User;

std::string default_avatar_png(const User& user);

}  // namespace chorus::app
