// Mattermost-style ids: 26 characters of lowercase base32 (alphabet "ybndrfg8ejkmcpqxot1uwisza345h769")
// over 128 random bits. Randomness comes from the caller's Env, so ids replay in the simulator.
#pragma once

#include <string>

#include "server/core/random.h"

namespace chorus {

std::string new_id(Random& random);
bool is_valid_id(const std::string& id);

}  // namespace chorus
