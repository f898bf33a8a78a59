#include "server/cluster/reach.h"

#include <fmt/format.h>

namespace chorus::cluster {

bool reaches_more(const std::set<std::string>& a, const std::set<std::string>& b) {
  if (a.size() != b.size()) return a.size() > b.size();
  if (a.empty()) return false;
  return *a.begin() < *b.begin();
}

ReachVerdict ReachRule::evaluate(const std::string& self, const std::set<std::string>& group,
                                 const std::vector<Heartbeat>& rows) {
  ReachVerdict v;
  std::map<std::string, int64_t> lost;
  std::map<std::string, bool> cut;
  std::map<std::string, Seen> seen;
  std::set<std::string> nodes{self};
  for (const auto& row : rows) nodes.insert(row.address);
  for (const auto& row : rows) {
    if (row.address == self) continue;
    const std::string key = row.id.empty() ? row.address : row.id;
    cut[key] = row.cut_off;
    Seen& s = seen[key];
    if (auto prev = seen_.find(key); prev != seen_.end())
      s = Seen{row.beat, row.beat == prev->second.beat ? prev->second.unchanged + 1 : 0};
    else
      s = Seen{row.beat, 0};
    if (group.contains(row.address)) continue;  // reachable: not lost (or found again)
    auto known = beat_when_lost_.find(key);
    // A Beat below the one we noted is another run's (a row re-inserted): start counting again.
    const int64_t since = known == beat_when_lost_.end() || row.beat < known->second ? row.beat : known->second;
    lost[key] = since;
    if (row.cut_off && !seen_cut_off_[key]) v.stopped_serving.push_back(row.address);
    const bool beating = row.beat - since >= beats_alive_ && s.unchanged < stale_polls_;
    // Y's Reach must leave us out: a Y that says it reaches us is not on the other side of a partition
    // from its point of view (its row predates its loss of us, or the cut is one-way) and proves nothing.
    const bool apart = !row.reach.contains(self);
    const bool a_group = row.reach.size() >= 2 || nodes.size() == 2;  // not gossip broken everywhere
    if (beating && apart && a_group && !row.reach.empty() && reaches_more(row.reach, group) && !v.cut_off) {
      v.cut_off = true;
      v.reason = fmt::format(
          "cut off from the part of the cluster that serves: {} reaches {} node(s) ({}){}, this node reaches {} ({})",
          row.address, row.reach.size(), fmt::join(row.reach, ", "),
          row.reach.size() == group.size() ? " with a lower address" : "", group.size(), fmt::join(group, ", "));
    }
  }
  beat_when_lost_ = std::move(lost);
  seen_cut_off_ = std::move(cut);
  seen_ = std::move(seen);
  cut_off_ = v.cut_off;
  return v;
}

}  // namespace chorus::cluster
