// The App: what the API does, above the store and the hub. Its work is split by domain (app.h lists it):
//   app.cpp           construction, the clock and dialect, cache flushes, passwords (bcrypt off the loop)
//   app_users.cpp     sessions and users (authenticate, login, logout, socket revalidation)
//   app_teams.cpp     teams and team members
//   app_channels.cpp  channels and channel members (membership caches, read access)
//   app_posts.cpp     posts: create in channel order, read, search, and the sequencer's gap fill
//   app_statuses.cpp  statuses and typing
//   app_cluster.cpp   the cluster bridge: publish, invalidations, on_cluster_message, handover, analytics
#include "server/app/app.h"

#include <crypt.h>

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/assert.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

AppError bad_param(const std::string& name) {
  return error(400, "api.context.invalid_param.app_error",
               "Invalid or missing " + name + " parameter in request body or URL.");
}
AppError not_found(const std::string& what) {
  return error(404, "app." + what + ".missing.app_error", "Unable to find the " + what + ".");
}
AppError forbidden() {
  return error(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.");
}
AppError from_db(const db::Error& e) {
  switch (e.status) {
    case db::Status::ok:
      return {};
    case db::Status::conflict:
      return error(400, "store.sql.conflict.app_error", "The change conflicts with existing data.", e.message);
    case db::Status::timeout:
      return error(504, "store.sql.timeout.app_error", "The database did not answer in time.", e.message);
    case db::Status::bad_request:
      return error(500, "store.sql.bad_request.app_error", "The database refused a request.", e.message);
    default:
      return error(503, "store.sql.unavailable.app_error", "The database is unavailable; try again.", e.message);
  }
}

App::App(Env& env, store::Store& store, const config::Config& config, Hub& hub, AppOptions options)
    : env_(env), store_(store), config_(&config), hub_(hub), options_(options) {
  sequencer_ = std::make_unique<ChannelSequencer>(
      env_, SequencerOptions{options_.gap_wait, options_.first_wait}, [this](const Event& e) { hub_.deliver(e); },
      [this](const Event& late) { return hub_.reset_users(late.recipients); },
      [this](const std::string& channel, int64_t after, int64_t before, ChannelSequencer::Fetched done) {
        fetch_posts_between(channel, after, before, std::move(done));
      });
  revalidate_timer_ = env_.set_timer(options_.cache_ttl, [this] { revalidate_sockets(); });
  outbox_timer_ = env_.set_timer(options_.outbox_sweep, [this] { sweep_outbox(); });
}

App::~App() {
  *alive_ = false;
  for (TimerId t : {revalidate_timer_, outbox_timer_, outbox_flush_timer_})
    if (t) env_.cancel_timer(t);
}

int64_t App::now_ms() const { return env_.wall_now().us / 1000; }

bool App::postgres() const { return store_.router().dialect() == db::Dialect::postgres; }

Duration App::cache_ttl() const {
  return std::min(options_.cache_ttl, Duration{config_->ServiceSettings.SessionCacheInMinutes * 60'000'000});
}

void App::invalidate_fills() {
  sessions_.invalidate();
  users_.invalidate();
  channels_.invalidate();
  channel_members_.invalidate();
}

// ---------------------------------------------------------------------------------------------------
// Passwords (bcrypt, off the loop).

void App::hash_password(const std::string& password, std::function<void(std::string)> done) {
  std::array<char, 16> salt_bytes;
  for (auto& b : salt_bytes) b = static_cast<char>(env_.random().next_u64());
  auto out = std::make_shared<std::string>();
  const int cost = options_.bcrypt_cost;
  env_.run_blocking(
      [password, salt_bytes, cost, out] {
        char setting[CRYPT_GENSALT_OUTPUT_SIZE];
        if (!crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), salt_bytes.data(),
                              static_cast<int>(salt_bytes.size()), setting, sizeof setting))
          return;
        auto data = std::make_unique<crypt_data>();
        const char* hash = crypt_rn(password.c_str(), setting, data.get(), sizeof(crypt_data));
        if (hash && hash[0] == '$') *out = hash;
      },
      [out, done = std::move(done)] { done(*out); });
}

void App::check_password(const std::string& password, const std::string& hash, std::function<void(bool)> done) {
  auto matches = std::make_shared<bool>(false);
  env_.run_blocking(
      [password, hash, matches] {
        if (hash.rfind("$2", 0) != 0) return;
        auto data = std::make_unique<crypt_data>();
        const char* again = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
        *matches = again && same_secret(again, hash);
      },
      [matches, done = std::move(done)] { done(*matches); });
}

}  // namespace chorus::app
