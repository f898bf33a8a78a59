#include "server/cluster/cluster_key.h"

#include <fmt/format.h>

namespace chorus::cluster {

void load_cluster_key(Env& env, store::Store& store, std::function<void(std::string, db::Error)> done) {
  std::string fresh;
  for (int i = 0; i < 4; ++i) fresh += fmt::format("{:016x}", env.random().next_u64());
  // Insert ours unless one exists, then read whichever won: every node ends up with the same key.
  store.write(
      {{"INSERT INTO Systems (Name, Value) VALUES ($1, $2) ON CONFLICT (Name) DO NOTHING",
        {std::string(kClusterKeyName), fresh}},
       {"SELECT Value FROM Systems WHERE Name = $1", {std::string(kClusterKeyName)}}},
      true, [done = std::move(done)](db::Outcome o) {
        if (!o.ok())
          return done("", db::Error{o.error.status, "cannot read or create the cluster key: " + o.error.message});
        const auto& rows = o.value.at(1).rows;
        if (rows.empty() || !std::holds_alternative<std::string>(rows[0][0]) ||
            std::get<std::string>(rows[0][0]).size() < 32)
          return done(
              "", db::Error{db::Status::bad_request, "the cluster key in the Systems table is missing or too short"});
        done(std::get<std::string>(rows[0][0]), db::Error{});
      });
}

}  // namespace chorus::cluster
