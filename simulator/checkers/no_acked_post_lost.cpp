// Checker "no acknowledged post lost" (simulator/checkers/no_acked_post_lost.h).
#include "simulator/checkers/no_acked_post_lost.h"

#include <algorithm>
#include <map>
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
  check_changes(repaired_at);
  check_files(repaired_at);
  if (lost)
    ctx_.violation(kName, fmt::format("{} acknowledged posts are not in the database; first: {}", lost, first_lost),
                   first_at, kind(lost_after_repair));
  if (undelivered)
    ctx_.violation(kName, fmt::format("{} deliveries missing; first: {}", undelivered, first_undelivered), first_at,
                   kind(undelivered_after_repair));
}

// Acknowledged posts with a file: the master lists the file as the post's, and the shared store holds what
// was uploaded, byte for byte.
void NoAckedPostLost::check_files(Duration repaired_at) {
  auto* db = ctx_.k.databases().find(ctx_.master);
  if (!db) return;
  int lost = 0;
  std::string first;
  Duration first_at{0};
  for (const auto& a : ctx_.acked) {
    if (a.file_id.empty()) continue;
    auto o = db->execute({db::Statement{"SELECT PostId, Path FROM FileInfo WHERE Id = $1", {a.file_id}}}, false);
    std::string why;
    if (!o.ok() || o.result().rows.empty()) {
      why = "is not in FileInfo";
    } else if (std::get<std::string>(o.result().rows[0].at(0)) != a.id) {
      why = "is not attached to its post";
    } else {
      const auto& files = ctx_.k.shared_files();
      const auto it = files.find(std::get<std::string>(o.result().rows[0].at(1)));
      if (it == files.end()) why = "is not in the file store";
      else if (it->second != a.file_data) why = "is not what was uploaded";
    }
    if (why.empty()) continue;
    if (lost++ == 0) {
      first = fmt::format("file {} of post {} (client {}'s #{}, acknowledged at {}) {}", a.file_id, a.id, a.author, a.k,
                          fmt_s(a.at), why);
      first_at = a.at;
    }
  }
  if (lost)
    ctx_.violation(kName, fmt::format("{} files of acknowledged posts lost; first: {}", lost, first), first_at,
                   first_at > repaired_at ? "acknowledged after the last repair" : "acknowledged during faults");
}

// Acknowledged changes of posts (edits, deletes, reactions): every member's client knows the post at least
// as new as the master had it when the change was acknowledged, by event or re-sync; and a client that
// knows a changed post as new as the master has it now knows the same message, deletion and reactions.
void NoAckedPostLost::check_changes(Duration repaired_at) {
  const auto& clients = clients_.all();
  auto* db = ctx_.k.databases().find(ctx_.master);
  if (!db) return;
  int missing = 0;
  std::string first;
  Duration first_at{0};
  for (const auto& ch : ctx_.changes_acked) {
    for (int u : ctx_.members[static_cast<size_t>(ch.channel)]) {
      const auto& cl = clients[static_cast<size_t>(u)];
      const auto k = cl.known.find(ch.post_id);
      const int64_t known = k == cl.known.end() ? 0 : k->second.update_at;
      if (known >= ch.update_at) continue;
      if (missing++ == 0) {
        first = fmt::format("client {} never got the {} of post {} by client {} (acknowledged at {}, update_at {}; "
                            "it knows {})",
                            u, ch.what, ch.post_id, ch.client, fmt_s(ch.at), ch.update_at, known);
        first_at = ch.at;
      }
    }
  }
  if (missing)
    ctx_.violation(kName, fmt::format("{} deliveries of acknowledged post changes missing; first: {}", missing, first),
                   first_at, first_at > repaired_at ? "acknowledged after the last repair" : "acknowledged during faults");
  // The master's state of every changed post.
  struct State {
    int64_t update_at = 0, delete_at = 0;
    std::string message;
    int channel = -1;
    std::set<std::string> reactions;
  };
  std::map<std::string, State> truth;
  auto o = db->execute({db::Statement{"SELECT Id, UpdateAt, DeleteAt, Message, ChannelId FROM Posts WHERE UpdateAt > "
                                      "CreateAt",
                                      {}},
                        db::Statement{"SELECT PostId, UserId, EmojiName FROM Reactions WHERE DeleteAt = 0", {}}},
                       false);
  if (!o.ok()) return;
  for (const auto& r : o.value[0].rows) {
    auto& t = truth[std::get<std::string>(r.at(0))];
    t.update_at = db::int_at(r, 1);
    t.delete_at = db::int_at(r, 2);
    t.message = std::get<std::string>(r.at(3));
    const auto c = ctx_.channel_index.find(std::get<std::string>(r.at(4)));
    t.channel = c == ctx_.channel_index.end() ? -1 : c->second;
  }
  for (const auto& r : o.value[1].rows)
    if (auto t = truth.find(std::get<std::string>(r.at(0))); t != truth.end())
      t->second.reactions.insert(std::get<std::string>(r.at(1)) + " " + std::get<std::string>(r.at(2)));
  int differ = 0;
  std::string first_differ;
  for (const auto& [id, t] : truth) {
    if (t.channel < 0) continue;
    for (int u : ctx_.members[static_cast<size_t>(t.channel)]) {
      const auto& cl = clients[static_cast<size_t>(u)];
      const auto k = cl.known.find(id);
      if (k == cl.known.end() || k->second.update_at != t.update_at) continue;
      const auto& kn = k->second;
      if ((kn.delete_at != 0) == (t.delete_at != 0) && (t.delete_at != 0 || ((!kn.message_known || kn.message == t.message) && kn.reactions == t.reactions)))
        continue;
      if (differ++ == 0)
        first_differ = fmt::format("client {} holds post {} at update_at {} as \"{}\" ({} reactions{}) but the master "
                                   "has \"{}\" ({} reactions{})",
                                   u, id, t.update_at, kn.message, kn.reactions.size(), kn.delete_at ? ", deleted" : "",
                                   t.message, t.reactions.size(), t.delete_at ? ", deleted" : "");
    }
  }
  if (differ)
    ctx_.violation(kName, fmt::format("{} clients hold a changed post unlike the master at the same update_at; first: {}",
                                      differ, first_differ));
}

}  // namespace chorus::sim::checkers
