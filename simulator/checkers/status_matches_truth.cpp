// Checker "cluster status matches the truth" (simulator/checkers/status_matches_truth.h).
#include "simulator/checkers/status_matches_truth.h"

namespace chorus::sim::checkers {

namespace {
// After the last change: detection (3 s), election and a status announcement (every 5 s).
constexpr Duration kStatusSettle{12'000'000};
}  // namespace

void StatusMatchesTruth::on_sample(const Sample& s) {
  if (faults_.quiet() && s.now - faults_.last_change() >= kStatusSettle &&
      (s.now - ctx_.t0).count() % 1'000'000 < kTick.count())
    check(s.alive);
}

// The colour a viewer should show for a peer: red when it is down or unreachable, or its version or
// config hash differs from the viewer's.
bool StatusMatchesTruth::expected_green(int viewer, int peer) const {
  if (!ctx_.live(peer) || !faults_.reachable(viewer, peer)) return false;
  return ctx_.c.version(peer) == ctx_.c.version(viewer) &&
         ctx_.loaded_hash[static_cast<size_t>(peer)] == ctx_.loaded_hash[static_cast<size_t>(viewer)];
}

void StatusMatchesTruth::check(const std::vector<int>& alive) {
  for (int v : alive)
    for (int p = 0; p < ctx_.sc.nodes; ++p) {
      if (p == v) continue;
      const auto want = expected_green(v, p);
      const auto shown = ctx_.shown_green(v, p);
      if (ctx_.live(p) && faults_.one_way(v, p)) continue;  // cut one way only: either colour can be right
      const bool wrong = ctx_.live(p) && faults_.reachable(v, p) ? (!shown || *shown != want) : (shown && *shown);
      if (wrong && !reported_.count({v, p})) {
        reported_.insert({v, p});
        ctx_.violation(kName, fmt::format("n{} shows n{} {} but it is {} (versions {} / {}, config {} / {})", v, p,
                                          !shown ? "nowhere" : (*shown ? "green" : "red"),
                                          want ? "green" : (ctx_.live(p) ? "red" : "down"), ctx_.c.version(v),
                                          ctx_.c.version(p), ctx_.loaded_hash[static_cast<size_t>(v)].substr(0, 8),
                                          ctx_.loaded_hash[static_cast<size_t>(p)].substr(0, 8)));
      }
    }
}

}  // namespace chorus::sim::checkers
