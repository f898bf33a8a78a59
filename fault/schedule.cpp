#include "fault/schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

namespace chorus::fault {

const char* to_string(FaultKind kind) {
  switch (kind) {
    case FaultKind::crash:
      return "crash";
    case FaultKind::restart:
      return "restart";
    case FaultKind::pause:
      return "pause";
    case FaultKind::resume:
      return "resume";
    case FaultKind::partition:
      return "partition";
    case FaultKind::isolate:
      return "isolate";
    case FaultKind::block:
      return "block";
    case FaultKind::heal:
      return "heal";
    case FaultKind::loss:
      return "loss";
    case FaultKind::clock_skew:
      return "clock_skew";
    case FaultKind::clock_drift:
      return "clock_drift";
    case FaultKind::stop:
      return "stop";
    case FaultKind::start:
      return "start";
    case FaultKind::set_config:
      return "set_config";
    case FaultKind::reload:
      return "reload";
    case FaultKind::recycle:
      return "recycle";
    case FaultKind::db_stop:
      return "db_stop";
    case FaultKind::db_start:
      return "db_start";
    case FaultKind::db_lag:
      return "db_lag";
    case FaultKind::db_slow:
      return "db_slow";
    case FaultKind::db_promote:
      return "db_promote";
    case FaultKind::lb_only:
      return "lb_only";
    case FaultKind::lb_stop:
      return "lb_stop";
    case FaultKind::lb_start:
      return "lb_start";
    case FaultKind::drop_clients:
      return "drop_clients";
    case FaultKind::files_down:
      return "files_down";
    case FaultKind::files_up:
      return "files_up";
    case FaultKind::files_slow:
      return "files_slow";
  }
  return "?";
}

bool is_network_or_process_fault(FaultKind kind) {
  return static_cast<int>(kind) <= static_cast<int>(FaultKind::clock_drift);
}

std::string to_string(const Fault& f) {
  std::string s = fmt::format("{:>9.3f}s {}", static_cast<double>(f.at.count()) / 1e6, to_string(f.kind));
  if (!f.nodes.empty()) s += fmt::format(" nodes={}", fmt::join(f.nodes, ","));
  if (!f.peers.empty()) s += fmt::format(" peers={}", fmt::join(f.peers, ","));
  if (f.kind == FaultKind::loss || f.kind == FaultKind::clock_drift) s += fmt::format(" value={}", f.value);
  if (f.kind == FaultKind::clock_skew || f.kind == FaultKind::db_lag) s += fmt::format(" amount={}ms", to_ms(f.amount));
  if (f.kind == FaultKind::db_slow) s += fmt::format(" value={}", f.value);
  if (!f.text.empty()) s += " " + f.text;
  return s;
}

std::string to_string(const FaultSchedule& schedule) {
  std::string s;
  for (const auto& f : schedule.faults) s += to_string(f) + "\n";
  return s;
}

std::vector<std::string> check_schedule(const FaultSchedule& schedule, uint32_t node_count) {
  std::vector<std::string> errors;
  Duration previous{0};
  for (size_t i = 0; i < schedule.faults.size(); ++i) {
    const Fault& f = schedule.faults[i];
    auto problem = [&](const std::string& what) {
      errors.push_back(fmt::format("fault {} ({}): {}", i + 1, to_string(f), what));
    };
    if (f.at < previous)
      problem(fmt::format("at {} ms, before the fault ahead of it ({} ms)", to_ms(f.at), to_ms(previous)));
    previous = std::max(previous, f.at);
    for (uint32_t n : f.nodes)
      if (n >= node_count)
        problem(fmt::format("node {} does not exist (the cluster has nodes 0 to {})", n, node_count - 1));
    for (uint32_t n : f.peers)
      if (n >= node_count)
        problem(fmt::format("peer {} does not exist (the cluster has nodes 0 to {})", n, node_count - 1));
    const bool needs_node = f.kind != FaultKind::heal && f.kind != FaultKind::loss && f.kind != FaultKind::lb_only &&
                            f.kind != FaultKind::lb_stop && f.kind != FaultKind::lb_start &&
                            f.kind != FaultKind::files_down && f.kind != FaultKind::files_up &&
                            f.kind != FaultKind::files_slow &&
                            !(f.kind >= FaultKind::db_stop && f.kind <= FaultKind::db_promote);
    const bool needs_text =
        (f.kind >= FaultKind::db_stop && f.kind <= FaultKind::db_promote) || f.kind == FaultKind::set_config;
    if (needs_text && f.text.empty())
      problem(f.kind == FaultKind::set_config ? "names no setting" : "names no database server");
    if (f.kind == FaultKind::db_slow && f.value < 1) problem("a slow factor must be at least 1");
    if (needs_node && f.nodes.empty()) problem("names no node");
    if ((f.kind == FaultKind::block || f.kind == FaultKind::isolate) && f.peers.empty()) problem("names no peer");
    if (f.kind == FaultKind::loss && (f.value < 0 || f.value > 1)) problem("loss must be from 0 to 1");
    if (f.kind == FaultKind::clock_drift && (f.value <= -100'000 || f.value >= 100'000))
      problem("drift must be within +-100000 ppm");
  }
  return errors;
}

namespace {
enum Family { kCrash, kPause, kPartition, kIsolate, kBlock, kLoss, kSkew, kDrift, kFamilies };

std::vector<uint32_t> random_subset(Random& random, uint32_t n, uint32_t min_size, uint32_t max_size) {
  std::vector<uint32_t> all(n);
  for (uint32_t i = 0; i < n; ++i) all[i] = i;
  for (uint32_t i = n; i > 1; --i) std::swap(all[i - 1], all[random.uniform(i)]);  // Fisher-Yates
  const uint32_t size = static_cast<uint32_t>(random.uniform_range(min_size, max_size));
  all.resize(size);
  std::sort(all.begin(), all.end());
  return all;
}
}  // namespace

FaultSchedule random_schedule(Random& random, uint32_t node_count, const SwarmOptions& options) {
  assert(node_count >= 2);
  const bool allowed[kFamilies] = {options.allow_crash,     options.allow_pause,     options.allow_partition,
                                   options.allow_partition, options.allow_partition, options.allow_loss,
                                   options.allow_clock,     options.allow_clock};
  double weight[kFamilies] = {};
  double total = 0;
  for (int f = 0; f < kFamilies; ++f) {
    if (allowed[f] && random.chance(0.5)) weight[f] = 0.2 + random.unit();
    total += weight[f];
  }
  if (total == 0) {  // swarm: at least one family per seed
    for (int f = 0; f < kFamilies; ++f)
      if (allowed[f]) {
        weight[f] = 1;
        total = 1;
        break;
      }
  }
  FaultSchedule schedule;
  schedule.repaired_at = options.horizon;
  if (total == 0) return schedule;

  const int64_t horizon = options.horizon.count();
  std::vector<int64_t> down_until(node_count, -1);  // a crashed or paused node gets no second such fault
  std::vector<Fault> out;
  double t = 0;
  const double mean_gap_us = 1e6 / std::max(options.mean_faults_per_second, 1e-3);
  while (true) {
    t += random.exponential(mean_gap_us);
    if (t >= static_cast<double>(horizon)) break;
    const Duration at{static_cast<int64_t>(t)};
    double pick = random.unit() * total;
    int family = 0;
    while (family < kFamilies - 1 && pick >= weight[family]) pick -= weight[family++];
    if (weight[family] == 0) continue;
    const uint32_t victim = static_cast<uint32_t>(random.uniform(node_count));
    // A repair lands at a random later time, never past the horizon.
    const Duration repair_at{std::min<int64_t>(horizon, at.count() + random.uniform_range(200'000, 5'000'000))};
    switch (family) {
      case kCrash:
      case kPause: {
        if (at.count() <= down_until[victim]) break;
        down_until[victim] = repair_at.count();
        const bool crash = family == kCrash;
        out.push_back(Fault{at, crash ? FaultKind::crash : FaultKind::pause, {victim}, {}, 0, Duration{0}});
        out.push_back(Fault{repair_at, crash ? FaultKind::restart : FaultKind::resume, {victim}, {}, 0, Duration{0}});
        break;
      }
      case kPartition:
        out.push_back(
            Fault{at, FaultKind::partition, random_subset(random, node_count, 1, node_count / 2), {}, 0, Duration{0}});
        out.push_back(Fault{repair_at, FaultKind::heal, {}, {}, 0, Duration{0}});
        break;
      case kIsolate:
        out.push_back(Fault{
            at, FaultKind::isolate, {victim}, random_subset(random, node_count, 1, node_count - 1), 0, Duration{0}});
        out.push_back(Fault{repair_at, FaultKind::heal, {}, {}, 0, Duration{0}});
        break;
      case kBlock: {
        uint32_t other = static_cast<uint32_t>(random.uniform(node_count - 1));
        if (other >= victim) ++other;
        out.push_back(Fault{at, FaultKind::block, {victim}, {other}, 0, Duration{0}});
        out.push_back(Fault{repair_at, FaultKind::heal, {}, {}, 0, Duration{0}});
        break;
      }
      case kLoss:
        out.push_back(Fault{at, FaultKind::loss, {}, {}, 0.01 + random.unit() * 0.3, Duration{0}});
        out.push_back(Fault{repair_at, FaultKind::loss, {}, {}, 0, Duration{0}});
        break;
      case kSkew:
        out.push_back(
            Fault{at, FaultKind::clock_skew, {victim}, {}, 0, Duration{random.uniform_range(-10'000'000, 10'000'000)}});
        break;
      case kDrift:
        out.push_back(Fault{at,
                            FaultKind::clock_drift,
                            {victim},
                            {},
                            static_cast<double>(random.uniform_range(-500, 500)),
                            Duration{0}});
        break;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Fault& a, const Fault& b) { return a.at < b.at; });
  // Final repair: whatever is still cut or lossy is healed at the horizon.
  out.push_back(Fault{options.horizon, FaultKind::heal, {}, {}, 0, Duration{0}});
  out.push_back(Fault{options.horizon, FaultKind::loss, {}, {}, 0, Duration{0}});
  schedule.faults = std::move(out);
  return schedule;
}

}  // namespace chorus::fault
