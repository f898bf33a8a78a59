// Statuses (online, away, dnd, offline) and typing.
#include "server/app/app.h"

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/assert.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

// ---------------------------------------------------------------------------------------------------
// Statuses and typing.

void App::get_status(const Session& actor, const std::string& user_id, Callback<Status> done) {
  if (!is_valid_id(user_id)) return done(fail<Status>(bad_param("user_id")));
  if (const Status* cached = statuses_.get(user_id, env_.now(), cache_ttl())) return done(ok(*cached));
  store_.read({Statement{"SELECT UserId, Status, Manual, LastActivityAt FROM Status WHERE UserId = $1", {user_id}}},
              [this, alive = alive_, user_id, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(fail<Status>(from_db(o.error)));
                Status s;
                s.user_id = user_id;
                if (!o.result().rows.empty()) {
                  const auto& r = o.result().rows[0];
                  s.status = text_at(r, 1);
                  s.manual = int_at(r, 2) != 0;
                  s.last_activity_at = int_at(r, 3);
                }
                statuses_.put(user_id, s, env_.now());
                done(ok(s));
              });
}

void App::get_statuses(const Session& actor, const std::vector<std::string>& user_ids,
                       Callback<std::vector<Status>> done) {
  if (user_ids.size() > 1000) return done(fail<std::vector<Status>>(bad_param("user_ids")));
  auto out = std::make_shared<std::vector<Status>>();
  auto remaining = std::make_shared<size_t>(user_ids.size());
  auto failed = std::make_shared<bool>(false);
  if (user_ids.empty()) return done(ok(std::vector<Status>{}));
  for (const auto& id : user_ids)
    get_status(actor, id, [out, remaining, failed, done](Result<Status> r) {
      if (*failed) return;
      if (!r.ok()) {
        *failed = true;
        return done(fail<std::vector<Status>>(r.error));
      }
      out->push_back(r.value);
      if (--*remaining == 0) done(ok(std::move(*out)));
    });
}

void App::set_status(const Session& actor, const std::string& user_id, const std::string& status,
                     Callback<Status> done) {
  if (!is_valid_id(user_id)) return done(fail<Status>(bad_param("user_id")));
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<Status>(forbidden()));
  if (status != "online" && status != "away" && status != "dnd" && status != "offline")
    return done(fail<Status>(bad_param("status")));
  Status s{user_id, status, true, now_ms()};
  store_.write({Statement{"INSERT INTO Status (UserId, Status, Manual, LastActivityAt) VALUES ($1, $2, 1, $3)"
                          " ON CONFLICT (UserId) DO UPDATE SET Status = $2, Manual = 1, LastActivityAt = $3",
                          {user_id, status, s.last_activity_at}}},
               false, [this, alive = alive_, s, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Status>(from_db(o.error)));
                 statuses_.put(s.user_id, s, env_.now());
                 if (messenger_)
                   messenger_->send_to_all(cluster::ClusterMessage::of(cluster::ClusterEvent::update_status,
                                                                       boost::json::serialize(s.to_json())),
                                           cluster::Delivery::best_effort);
                 Event ev{"status_change", boost::json::object{{"status", s.status}, {"user_id", s.user_id}}};
                 ev.broadcast.user_id = s.user_id;
                 publish(std::move(ev));
                 done(ok(s));
               });
}

void App::user_typing(const Session& actor, const std::string& channel_id, const std::string& parent_id) {
  if (!is_valid_id(channel_id)) return;
  channel_member_ids(channel_id, [this, alive = alive_, actor, channel_id, parent_id](
                                     AppError e, std::shared_ptr<const std::set<std::string>> ids) {
    if (!*alive || !e.ok() || !ids->contains(actor.user_id)) return;
    Event ev{"typing", boost::json::object{{"parent_id", parent_id}, {"user_id", actor.user_id}}};
    ev.broadcast.channel_id = channel_id;
    ev.broadcast.omit_users = {actor.user_id};
    ev.recipients.assign(ids->begin(), ids->end());
    publish(std::move(ev));
  });
}

}  // namespace chorus::app
