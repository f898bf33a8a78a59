// The fault injector of a scenario run: the schedule, every fault kind applied, the injected bugs, and the
// network's truth for the checkers (simulator/fault_injector.h).
#include "simulator/fault_injector.h"

#include <algorithm>

#include "server/app/app.h"
#include "server/app/model.h"
#include "server/core/assert.h"
#include "server/node/node.h"
#include "simulator/faults.h"
#include "simulator/load_balancer.h"
#include "simulator/sim_client.h"

namespace chorus::sim {

using fault::FaultKind;

FaultInjector::FaultInjector(RunContext& ctx, LoadBalancer& lb, SimClients& clients)
    : ctx_(ctx), lb_(lb), clients_(clients) {
  cut_.assign(static_cast<size_t>(ctx.sc.nodes * ctx.sc.nodes), false);
}

// The options' schedule (shrink), or the timeline and the random faults this seed draws, in time order.
std::vector<fault::Fault> FaultInjector::plan() const {
  const auto& sc = ctx_.sc;
  const auto& o = ctx_.o;
  std::vector<fault::Fault> all;
  if (o.schedule) {
    all = *o.schedule;
  } else {
    all = sc.timeline;
    if (sc.random) {
      const auto& rf = *sc.random;
      std::vector<uint32_t> pool = rf.nodes.empty() ? ctx_.initial : rf.nodes;
      Xoshiro256 rng(o.seed * 0x9E3779B97F4A7C15ull + 17);
      fault::SwarmOptions so = rf.families;
      so.horizon = rf.until - rf.from;
      so.mean_faults_per_second = rf.per_second;
      auto drawn = fault::random_schedule(rng, static_cast<uint32_t>(pool.size()), so);
      for (auto f : drawn.faults) {
        f.at += rf.from;
        for (auto& n : f.nodes) n = pool[n];
        for (auto& n : f.peers) n = pool[n];
        all.push_back(f);
      }
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const fault::Fault& a, const fault::Fault& b) { return a.at < b.at; });
  return all;
}

void FaultInjector::schedule() {
  const auto all = plan();
  ctx_.result.schedule = all;
  last_change_ = ctx_.t0;
  for (const auto& f : all) ctx_.k.at(ctx_.t0 + f.at, [this, f] { apply(f); });
}

bool FaultInjector::reachable(int a, int b) const { return !is_cut(a, b) && !is_cut(b, a); }
bool FaultInjector::one_way(int a, int b) const { return is_cut(a, b) != is_cut(b, a); }

Duration FaultInjector::first_death(int n) const {
  for (const auto& f : ctx_.result.schedule)
    if ((f.kind == FaultKind::crash || f.kind == FaultKind::pause || f.kind == FaultKind::stop ||
         f.kind == FaultKind::isolate) &&
        !f.nodes.empty() && static_cast<int>(f.nodes[0]) == n)
      return f.at;
  return Duration{-1};
}

std::optional<FaultKind> FaultInjector::repair_of(FaultKind kind) {
  switch (kind) {
    case FaultKind::crash:
      return FaultKind::restart;
    case FaultKind::pause:
      return FaultKind::resume;
    case FaultKind::stop:
      return FaultKind::start;
    case FaultKind::db_stop:
      return FaultKind::db_start;
    case FaultKind::lb_stop:
      return FaultKind::lb_start;
    case FaultKind::files_down:
      return FaultKind::files_up;
    default:
      return std::nullopt;
  }
}

void FaultInjector::apply(const fault::Fault& f, bool retry) {
  auto& k = ctx_.k;
  auto& c = ctx_.c;
  const int nodes = ctx_.sc.nodes;
  last_change_ = k.now();
  if (!retry) mark(f);
  switch (f.kind) {
    case FaultKind::crash:
      k.crash(f.nodes[0]);
      break;
    case FaultKind::restart:
      if (k.state(f.nodes[0]) == NodeState::down) ctx_.boot(static_cast<int>(f.nodes[0]));
      break;
    case FaultKind::stop:
      if (k.state(f.nodes[0]) == NodeState::up) k.stop(f.nodes[0]);
      break;
    case FaultKind::start:
      if (k.state(f.nodes[0]) == NodeState::up && !c.node(static_cast<int>(f.nodes[0]))->started() &&
          ctx_.start_time[f.nodes[0]] >= Duration{0}) {
        // Still stopping (draining): the start waits for the stop to finish.
        k.at(k.now() + Duration{100'000}, [this, f] { apply(f, true); });
        break;
      }
      if (k.state(f.nodes[0]) == NodeState::down) {
        if (!f.text.empty()) c.set_version(static_cast<int>(f.nodes[0]), f.text);
        ctx_.boot(static_cast<int>(f.nodes[0]));
      }
      break;
    case FaultKind::pause:
      k.pause(f.nodes[0]);
      break;
    case FaultKind::resume:
      k.resume(f.nodes[0]);
      break;
    case FaultKind::partition: {
      std::vector<bool> side(static_cast<size_t>(nodes), false);
      for (uint32_t n : f.nodes) side[n] = true;
      for (int a = 0; a < nodes; ++a)
        for (int b = 0; b < nodes; ++b)
          if (side[static_cast<size_t>(a)] != side[static_cast<size_t>(b)]) cut(a, b);
      apply_fault(k, f);
      break;
    }
    case FaultKind::isolate:
      for (uint32_t p : f.peers) {
        cut(static_cast<int>(f.nodes[0]), static_cast<int>(p));
        cut(static_cast<int>(p), static_cast<int>(f.nodes[0]));
      }
      apply_fault(k, f);
      break;
    case FaultKind::block:
      cut(static_cast<int>(f.nodes[0]), static_cast<int>(f.peers[0]));
      apply_fault(k, f);
      break;
    case FaultKind::heal:
      std::fill(cut_.begin(), cut_.end(), false);
      apply_fault(k, f);
      break;
    case FaultKind::loss:
      loss_ = f.value;
      apply_fault(k, f);
      break;
    case FaultKind::clock_skew:
    case FaultKind::clock_drift:
      apply_fault(k, f);
      break;
    case FaultKind::set_config: {
      const auto eq = f.text.find('=');
      for (uint32_t n : f.nodes) ctx_.set_setting(static_cast<int>(n), f.text.substr(0, eq), f.text.substr(eq + 1));
      break;
    }
    case FaultKind::reload:
      for (uint32_t n : f.nodes)
        ctx_.on_node(static_cast<int>(n), [this, n](node::Node& nd) { reload(static_cast<int>(n), nd); });
      break;
    case FaultKind::recycle:
      for (uint32_t n : f.nodes) ctx_.on_node(static_cast<int>(n), [](node::Node& nd) { nd.recycle_database(); });
      break;
    case FaultKind::db_stop:
      k.databases().find(f.text)->stop();
      break;
    case FaultKind::db_start:
      k.databases().find(f.text)->start();
      break;
    case FaultKind::db_promote:
      k.databases().find(f.text)->promote();
      break;
    case FaultKind::db_lag:
      k.databases().find(f.text)->set_replication_lag(f.amount);
      break;
    case FaultKind::db_slow:
      k.databases().find(f.text)->set_slow_factor(f.value);
      break;
    case FaultKind::lb_only:
      lb_.only(f.nodes);
      break;
    case FaultKind::lb_stop:
      lb_.set_up(false);
      break;
    case FaultKind::lb_start:
      lb_.set_up(true);
      break;
    case FaultKind::drop_clients:
      clients_.drop_on(f.nodes[0]);
      break;
    case FaultKind::files_down:
      k.file_store_faults().down = true;
      break;
    case FaultKind::files_up:
      k.file_store_faults().down = false;
      break;
    case FaultKind::files_slow:
      k.file_store_faults().delay = f.amount;
      break;
  }
}

// The fault as a mark on the report's timeline.
void FaultInjector::mark(const fault::Fault& f) {
  RunRecord::Mark m;
  m.t = secs(ctx_.k.now() - ctx_.t0);
  std::string what = fault::to_string(f.kind);
  if (f.kind == FaultKind::crash) what = "kill";
  if (f.kind == FaultKind::lb_only && f.nodes.empty()) what = "lb_all";
  std::string text = what;
  for (uint32_t n : f.nodes) {
    text += fmt::format(" n{}", n);
    m.nodes.push_back(static_cast<int>(n));
  }
  if (!f.peers.empty()) text += fmt::format(" -> n{}", fmt::join(f.peers, " n"));
  if (!f.text.empty()) text += " " + f.text;
  if (f.kind == FaultKind::loss) text += fmt::format(" {:.0f}%", f.value * 100);
  if (f.kind == FaultKind::clock_skew) text += fmt::format(" {:+.3f}s", secs(f.amount));
  m.text = text;
  ctx_.result.record.marks.push_back(m);
}

void FaultInjector::reload(int n, node::Node& nd) {
  const auto before = nd.status().self();
  const Failure reloaded = nd.reload_config();
  if (!reloaded.ok())
    return ctx_.violation("config reload", fmt::format("n{} refused its config.json: {}", n, reloaded.message));
  ctx_.loaded(n);
  // The injected bug: peers keep the old hash.
  if (ctx_.o.bug == Bug::wrong_status && n == bug_node_) nd.status().set_self(before);
}

// ---- the injected bugs (tests show that each checker catches its own)

void FaultInjector::schedule_bug() {
  auto& k = ctx_.k;
  const Duration at = ctx_.t0 + Duration{ctx_.sc.duration.count() * 2 / 5};
  switch (ctx_.o.bug) {
    case Bug::none:
      break;
    case Bug::lose_post:
      k.at(at, [this] {
        if (ctx_.acked.empty()) return;
        const auto& id = ctx_.acked.back().id;
        ctx_.k.databases().find(ctx_.master)->execute({db::Statement{"DELETE FROM Posts WHERE Id = $1", {id}}}, false);
      });
      break;
    case Bug::two_leaders:
      k.at(at, [this] {  // cut n0 off in the kernel only: the checkers believe the network is whole
        for (uint32_t p = 1; p < static_cast<uint32_t>(ctx_.sc.nodes); ++p) {
          ctx_.k.block(0, p);
          ctx_.k.block(p, 0);
        }
      });
      break;
    case Bug::double_job:
      k.at(at, [this] {
        const std::string cols =
            "Type, Priority, CreateAt, StartAt, LastActivityAt, Status, Progress, Data, WorkerId, Attempts";
        const std::string copy = "INSERT INTO Jobs (Id, ScheduleKey, " + cols +
                                 ") SELECT 'dup' || substr(Id, 4), ScheduleKey || ':again', " +
                                 "Type, Priority, CreateAt, 0, 0, 'pending', 0, Data, '', 0 FROM Jobs " +
                                 "WHERE Type = 'probe' AND Status = 'success' ORDER BY CreateAt DESC LIMIT 1";
        ctx_.k.databases().find(ctx_.master)->execute({db::Statement{copy, {}}}, false);
      });
      break;
    case Bug::wrong_status:
      k.at(at, [this] {
        for (int n = 0; n < ctx_.sc.nodes; ++n)
          if (ctx_.live(n)) bug_node_ = n;  // the highest live node
        if (bug_node_ < 0) return;
        ctx_.set_setting(bug_node_, "TeamSettings.SiteName", "\"Changed on one node\"");
        ctx_.on_node(bug_node_, [this](node::Node& nd) { reload(bug_node_, nd); });
        last_change_ = ctx_.k.now();
      });
      break;
    case Bug::random_stream_ids:
      break;  // in every node's messenger from the start (scenario_run.cpp)
    case Bug::failed_assertion:
      k.at(at, [this] {
        ctx_.on_node(0, [](node::Node&) { CHORUS_ASSERT(1 + 1 == 3, "injected by --bug failed_assertion"); });
      });
      break;
    case Bug::no_acks:
      break;  // in every node's messenger from the start (scenario_run.cpp)
    case Bug::duplicate_event:
      k.at(at, [this] { publish_again(); });
      break;
    case Bug::unfenced_jobs:
      k.at(at, [this] { pause_a_worker(); });
      break;
  }
}

// The last acknowledged post's event, published again by a live node under a fresh event id and without
// its channel seq (so neither the sequencers nor the hubs know it for a copy).
void FaultInjector::publish_again() {
  if (ctx_.acked.empty()) return;
  auto* db = ctx_.k.databases().find(ctx_.master);
  auto p = db->execute({db::Statement{std::string("SELECT ") + app::kPostColumns + " FROM Posts WHERE Id = $1",
                                      {ctx_.acked.back().id}}},
                       false);
  if (!p.ok() || p.result().rows.empty()) return;
  const app::Post post = app::post_from_row(p.result().rows[0]);
  auto c = db->execute({db::Statement{std::string("SELECT ") + app::kChannelColumns + " FROM Channels WHERE Id = $1",
                                      {post.channel_id}},
                        db::Statement{"SELECT UserId FROM ChannelMembers WHERE ChannelId = $1", {post.channel_id}}},
                       false);
  if (!c.ok() || c.value[0].rows.empty()) return;
  std::vector<std::string> members;
  for (const auto& row : c.value[1].rows) members.push_back(std::get<std::string>(row.at(0)));
  app::Event ev = app::posted_event(app::channel_from_row(c.value[0].rows[0]), post, members);
  ev.id = "again";
  ev.channel_seq = 0;
  for (int n = 0; n < ctx_.sc.nodes; ++n)
    if (ctx_.live(n)) return ctx_.on_node(n, [ev](node::Node& nd) { nd.app().publish(ev); });
}

// The first node found running a probe job (any node: which one a seed's jobs land on is chance, and a
// paused leader is replaced and its job handed on too) is paused past the job's stuck_after and resumes:
// its stale attempt goes on. The checkers are not told of the pause.
void FaultInjector::pause_a_worker() {
  auto* db = ctx_.k.databases().find(ctx_.master);
  auto o = db->execute({db::Statement{"SELECT WorkerId FROM Jobs WHERE Type = 'probe' AND Status = 'in_progress'", {}}},
                       false);
  if (o.ok())
    for (const auto& row : o.result().rows)
      for (int n = 0; n < ctx_.sc.nodes; ++n)
        if (ctx_.live(n) && ctx_.c.address(n) == std::get<std::string>(row.at(0))) {
          ctx_.k.pause(static_cast<NodeIndex>(n));
          ctx_.k.at(ctx_.k.now() + Duration{14'000'000}, [this, n] { ctx_.k.resume(static_cast<NodeIndex>(n)); });
          return;
        }
  if (ctx_.k.now() < ctx_.t0 + ctx_.sc.duration / 2)
    ctx_.k.at(ctx_.k.now() + Duration{20'000}, [this] { pause_a_worker(); });
}

}  // namespace chorus::sim
