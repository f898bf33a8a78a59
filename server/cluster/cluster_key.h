// The cluster key: a secret every node of a cluster reads from the database (the Systems table, as
// Mattermost keeps ClusterEncryptionKey), so only processes that can reach the cluster's database can
// join its gossip. The first node to start creates it; the others read the same row.
#pragma once

#include <functional>
#include <string>

#include "server/core/env.h"
#include "server/store/store.h"

namespace chorus::cluster {

inline constexpr const char* kClusterKeyName = "ClusterEncryptionKey";

// done(key, error): the key (64 hex characters), or the error.
void load_cluster_key(Env& env, store::Store& store, std::function<void(std::string, db::Error)> done);

}  // namespace chorus::cluster
