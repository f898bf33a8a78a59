// Checker "one leader per connected group" (simulator/checkers/one_leader.h).
#include "simulator/checkers/one_leader.h"

#include <algorithm>

namespace chorus::sim::checkers {

namespace {
constexpr Duration kLeaderSettle{6'000'000};  // after the last change: detection (3 s) and election
}  // namespace

void OneLeader::on_sample(const Sample& s) {
  if (faults_.quiet() && s.now - faults_.last_change() >= kLeaderSettle) check(s.alive);
}

// Every live node of a clique names the clique's lowest address.
void OneLeader::check(const std::vector<int>& alive) {
  std::vector<int> group(static_cast<size_t>(ctx_.sc.nodes), -1);
  for (int a : alive) {
    if (group[static_cast<size_t>(a)] >= 0) continue;
    std::vector<int> members{a};
    group[static_cast<size_t>(a)] = a;
    for (size_t i = 0; i < members.size(); ++i)
      for (int b : alive)
        if (group[static_cast<size_t>(b)] < 0 && faults_.reachable(members[i], b)) {
          group[static_cast<size_t>(b)] = a;
          members.push_back(b);
        }
    bool clique = true;
    for (int x : members)
      for (int y : members) clique = clique && (x == y || faults_.reachable(x, y));
    if (!clique) continue;
    std::string lowest = ctx_.c.address(members[0]);
    for (int x : members) lowest = std::min(lowest, ctx_.c.address(x));
    for (int x : members) {
      const std::string& named = ctx_.c.node(x)->membership().leader();
      if (named != lowest && !reported_.count(x)) {
        reported_.insert(x);
        ctx_.violation(kName, fmt::format("n{} names {} leader; its group ({} nodes, stable for {}) should follow {}",
                                          x, named.empty() ? "nobody" : named, members.size(),
                                          fmt_s(ctx_.k.now() - faults_.last_change()), lowest));
      }
    }
  }
}

}  // namespace chorus::sim::checkers
