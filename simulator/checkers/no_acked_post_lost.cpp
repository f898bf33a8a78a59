// Checker "no acknowledged post lost" (simulator/checkers/no_acked_post_lost.h).
#include "simulator/checkers/no_acked_post_lost.h"

#include <algorithm>
#include <set>

namespace chorus::sim::checkers {

void NoAckedPostLost::finish() {
  const auto& clients = clients_.all();
  // Durable: every acknowledged post is in the master database.
  std::set<std::string> stored;
  if (auto* db = ctx_.k.databases().find(ctx_.master)) {
    auto o = db->execute({db::Statement{"SELECT Id FROM Posts", {}}}, false);
    if (o.ok())
      for (const auto& row : o.result().rows) stored.insert(std::get<std::string>(row.at(0)));
  }
  int lost = 0, undelivered = 0;
  // The violation is placed at the first acknowledgement concerned (replay shows the trace there).
  Duration first_at = ctx_.sc.duration;
  std::string first_lost, first_undelivered;
  bool lost_after_repair = false, undelivered_after_repair = false;
  const Duration repaired_at = ctx_.result.schedule.empty() ? Duration{0} : ctx_.result.schedule.back().at;
  for (const auto& a : ctx_.acked) {  // in acknowledgement order: the first found is the earliest
    if (!stored.count(a.id)) {
      lost_after_repair |= a.at > repaired_at;
      if (lost++ == 0) {
        first_at = std::min(first_at, a.at);
        first_lost = fmt::format("post {} (client {}'s #{}, acknowledged at {}) is not in {}", a.id, a.author, a.k,
                                 fmt_s(a.at), ctx_.master);
      }
    }
    for (int u : ctx_.members[static_cast<size_t>(a.channel)])
      if (!clients[static_cast<size_t>(u)].have.count(a.id)) {
        undelivered_after_repair |= a.at > repaired_at;
        if (undelivered++ == 0) {
          first_at = std::min(first_at, a.at);
          first_undelivered = fmt::format("client {} never got post {} (\"c{}#{}\" in channel {}, acknowledged at {})",
                                          u, a.id, a.author, a.k, a.channel, fmt_s(a.at));
        }
      }
  }
  // The kind says whether the loss needed a fault still in force, or came after the last repair (shrink
  // keeps a candidate schedule only when it fails the same way).
  const auto kind = [&](bool after_repair) {
    return after_repair ? std::string("acknowledged after the last repair") : std::string("acknowledged during faults");
  };
  // Acknowledged preference saves: stored, and seen by the user's client (event or re-sync).
  for (const auto& cl : clients) {
    if (cl.preference_acked == 0) continue;
    const Duration at = ctx_.preferences_acked_at.count(cl.index) ? ctx_.preferences_acked_at.at(cl.index) : Duration{0};
    int64_t stored_value = 0;
    if (auto* db = ctx_.k.databases().find(ctx_.master)) {
      auto o = db->execute({db::Statement{"SELECT Value FROM Preferences WHERE UserId = $1 AND Category = 'sim' AND"
                                          " Name = 'counter'",
                                          {cl.user_id}}},
                           false);
      if (o.ok() && !o.result().rows.empty())
        stored_value = std::strtoll(std::get<std::string>(o.result().rows[0].at(0)).c_str(), nullptr, 10);
    }
    if (stored_value < cl.preference_acked && !cl.preference_unsure.contains(stored_value))
      ctx_.violation(kName,
                     fmt::format("client {}'s preference save {} was acknowledged but the database holds {}", cl.index,
                                 cl.preference_acked, stored_value),
                     at, kind(at > repaired_at));
    else if (cl.preference_seen < cl.preference_acked)
      ctx_.violation(kName,
                     fmt::format("client {} never saw its acknowledged preference save {} (newest seen: {})", cl.index,
                                 cl.preference_acked, cl.preference_seen),
                     at, kind(at > repaired_at));
  }
  // Acknowledged views: the client heard of each (its channel_viewed after the view was sent) or read
  // its memberships again after the view was acknowledged (a re-sync).
  for (const auto& cl : clients) {
    int missed = 0;
    const Client::View* first = nullptr;
    for (const auto& v : cl.views_acked) {
      const auto ev = cl.viewed_event_at.find(v.channel);
      const bool heard = ev != cl.viewed_event_at.end() && ev->second >= v.sent;
      if (!heard && cl.members_read_at < v.acked && missed++ == 0) first = &v;
    }
    if (first)
      ctx_.violation(kName,
                     fmt::format("client {} never heard of {} acknowledged channel views; first: channel {} viewed at {}",
                                 cl.index, missed, first->channel, fmt_s(first->sent - ctx_.t0)),
                     first->sent - ctx_.t0, kind(first->sent - ctx_.t0 > repaired_at));
  }
  if (lost)
    ctx_.violation(kName, fmt::format("{} acknowledged posts are not in the database; first: {}", lost, first_lost),
                   first_at, kind(lost_after_repair));
  if (undelivered)
    ctx_.violation(kName, fmt::format("{} deliveries missing; first: {}", undelivered, first_undelivered), first_at,
                   kind(undelivered_after_repair));
}

}  // namespace chorus::sim::checkers
