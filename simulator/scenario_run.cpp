// One scenario, one seed: the cluster (real node code on the simulator), the load balancer, the
// clients and their workload, the timeline, and the checkers.
//
// The load balancer behaves as the guide's NGINX: round robin over the upstreams in rotation, a health
// check on /api/v4/system/ping every health_interval (an upstream is taken out after health_fails
// failures and back after one success; when every upstream is out it tries them all), and the next
// upstream when a connection is refused. A node's capacity is a pool of workers with a service time per
// request: requests beyond the pool wait their turn, so overload shows as latency and then timeouts.
//
// Clients behave as the official client (npm @mattermost/client): REST calls through the load balancer
// with a timeout, one WebSocket that resumes with connection_id and sequence_number, reconnects 3 s plus
// up to 2 s of jitter after a close (backing off as failures add up: 3 s x fails^2 past 7 fails, capped
// at 5 min), pings every 30 s and reconnects when a ping goes unanswered, and re-syncs over REST (posts
// since its last sync) when the server issues a new connection.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "server/core/assert.h"
#include "server/jobs/job_server.h"
#include "server/store/schema.h"
#include "simulator/chat_cluster.h"
#include "simulator/faults.h"
#include "simulator/scenario.h"
#include "simulator/sim_database.h"

namespace chorus::sim {

namespace json = boost::json;
using fault::FaultKind;

namespace {

constexpr Duration kTick{100'000};           // clients read their sockets; detection is sampled
constexpr Duration kReportSample{500'000};   // the report's lanes
constexpr Duration kLeaderSettle{6'000'000};  // after the last change: detection (3 s) and election
constexpr Duration kStatusSettle{12'000'000};  // ... and a status announcement (every 5 s)
constexpr Duration kPing{30'000'000};        // the official client's WebSocket ping
constexpr int64_t kQueueMax = 10'000;        // Messenger's per-peer queue bound
constexpr int64_t kResyncMarginMs = 15'000;  // a re-sync asks from this long before the last one: nodes' clocks may disagree (random faults skew them up to 10 s)

double secs(Duration d) { return static_cast<double>(d.count()) / 1e6; }
std::string fmt_s(Duration d) { return fmt::format("{:.2f}s", secs(d)); }

std::vector<store::Migration> simulator_migrations(const std::string& version) {
  // The probe job's record of its runs, for every version; and a release 0.2 with a schema change.
  // Numbered after the server's own migrations, whatever their count.
  const int next = static_cast<int>(store::migrations().size()) + 1;
  std::vector<store::Migration> out{{next, "simulator: the probe job's record of its runs", "0.1",
                                     {"CREATE TABLE ProbeRuns (JobId TEXT NOT NULL, Period TEXT NOT NULL, Node TEXT NOT NULL, Attempt BIGINT NOT NULL)"}}};
  int major = 0, minor = 0, patch = 0;
  std::sscanf(version.c_str(), "%d.%d.%d", &major, &minor, &patch);
  if (major > 0 || minor >= 2)
    out.push_back({next + 1, "simulator: release 0.2's schema change (reactions)", "0.2", {"CREATE TABLE Reactions (UserId VARCHAR(26) NOT NULL, PostId VARCHAR(26) NOT NULL, EmojiName VARCHAR(64) NOT NULL, CreateAt BIGINT NOT NULL, "
                                  "PRIMARY KEY (PostId, UserId, EmojiName))"}});
  return out;
}

struct Request {
  int client = -1;
  std::string method, target, body;
  std::function<void(int status, const std::string& body)> done;
  Duration sent{0};
  bool finished = false;
  size_t tried = 0;
};

struct Client {
  int index = 0;
  std::string user_id, token;
  std::vector<int> channels;
  // WebSocket
  std::unique_ptr<SimSocket> socket;
  size_t read = 0;
  bool connecting = false;       // an attempt is on its way (a paused upstream: it hangs)
  bool reconnect_pending = false;
  int connect_fails = 0;
  std::string connection_id;
  int64_t next_seq = 0;
  std::unordered_set<std::string> seen_on_connection;
  std::map<int, std::pair<int64_t, std::string>> last_create_at;  // channel -> newest (create_at, message) on this connection
  int64_t ping_seq = 0;
  bool ping_outstanding = false;
  Duration next_ping{0};
  int64_t reply_seq = 1;
  // Data
  std::unordered_set<std::string> have;  // post ids received (events or re-syncs)
  int64_t synced_at_ms = 0;  // a re-sync asks for the posts since this (wall ms)
  bool post_in_flight = false;
  int64_t posts_made = 0;
  // Availability
  int ok = 0, failed = 0;
  Duration last_ok{0};           // the last successful answer
  Duration stretch_start{-1};    // the first failed request since then was sent (-1: none)
  Duration longest_gap{0};
  int resumes = 0, resyncs = 0, reconnects = 0;
  bool resync_retry = false;
};

struct Acked {
  std::string id;
  int channel = 0, author = 0;
  int64_t k = 0;
  Duration at{0};
};

class Run {
 public:
  Run(const Scenario& sc, const RunOptions& o) : sc_(sc), o_(o), c_(cluster_options(sc, o)), k_(c_.kernel()) {
    result_.record.scenario = sc.name;
    result_.record.description = sc.description;
    result_.record.file = sc.file;
    result_.record.seed = o.seed;
    result_.record.duration_s = secs(sc.duration);
    for (int i = 0; i < sc.nodes; ++i) result_.record.nodes.push_back(fmt::format("n{} {}", i, c_.address(i)));
    healthy_.assign(static_cast<size_t>(sc.nodes), true);
    health_failures_.assign(static_cast<size_t>(sc.nodes), 0);
    workers_.assign(static_cast<size_t>(sc.nodes), std::vector<int64_t>(static_cast<size_t>(sc.workers), 0));
    cut_.assign(static_cast<size_t>(sc.nodes * sc.nodes), false);
    loaded_hash_.assign(static_cast<size_t>(sc.nodes), "");
    start_time_.assign(static_cast<size_t>(sc.nodes), Duration{-1});
  }

  RunResult go() {
    const auto wall0 = std::chrono::steady_clock::now();
    try {
      if (setup()) {
        result_.record.setup_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
        schedule();
        k_.run_until(t0_ + sc_.duration);
        finish();
      }
    } catch (const AssertionFailure& e) {
      // An always-on assertion (server/core/assert.h): where chorusd would abort, the seed fails here.
      violation("no node crashes", e.what(), std::nullopt, "assertion");
    } catch (const std::exception& e) {
      violation("no node crashes", fmt::format("the node code threw: {}", e.what()));
    }
    result_.record.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    // A known bug's violations are reported as known, not as failures.
    std::vector<Violation> failing;
    for (auto& v : result_.violations) {
      const bool known = std::any_of(sc_.known_bugs.begin(), sc_.known_bugs.end(), [&](const auto& kb) { return kb.first == v.checker; });
      (known ? result_.known : failing).push_back(std::move(v));
    }
    result_.violations = std::move(failing);
    if (!result_.violations.empty() && result_.record.passed())  // stopped before the end (setup, an exception)
      result_.record.checks.push_back(RunRecord::Check{result_.violations.front().checker, false, result_.violations.front().what});
    result_.trace_hash = k_.trace_hash();
    result_.trace_count = k_.trace_count();
    if (o_.keep_trace && !result_.violations.empty()) trace_window(t0_ + result_.violations.front().at);
    if (o_.keep_trace) {
      result_.trace_hashes = k_.trace_hashes();
      if (o_.describe_record && *o_.describe_record < k_.trace().size()) {
        const auto& r = k_.trace()[*o_.describe_record];
        result_.described_record = fmt::format("{:.6f}s {}", secs(Duration{r.time_us} - t0_), k_.describe(r));
      }
    }
    return std::move(result_);
  }

 private:
  ChatClusterOptions cluster_options(const Scenario& sc, const RunOptions& o) {  // on_fatal reaches result_ later, once built
    ChatClusterOptions co;
    co.seed = o.seed;
    co.nodes = sc.nodes;
    for (int i = 1; i <= sc.replicas; ++i) co.replicas.push_back(fmt::format("replica{}", i));
    co.discovery_only = true;
    co.per_node_config = true;
    co.keep_trace = o.keep_trace;
    co.db_service_time = sc.db_service_time;
    co.log_sink = o.log;
    co.versions.assign(static_cast<size_t>(sc.nodes), "0.1.0");
    for (const auto& [n, v] : sc.versions) co.versions[static_cast<size_t>(n)] = v;
    co.migrations_for = simulator_migrations;
    co.messenger.random_stream_ids = o.bug == Bug::random_stream_ids;
    co.on_fatal = [this](int n, const std::string& why) { violation("no node crashes", fmt::format("n{} exited: {}", n, why)); };
    if (sc.job_period > Duration{0}) co.jobs.recurring = {jobs::Recurring{"probe", sc.job_period}};
    co.jobs.stuck_after = Duration{10'000'000};
    co.configure = [&sc](config::Config& c, int) {
      for (int i = 1; i <= sc.search_replicas; ++i) c.SqlSettings.DataSourceSearchReplicas.push_back(fmt::format("search{}", i));
      c.ServiceSettings.SiteURL = "http://chorus.example.com";
    };
    co.setup_node = [](node::Node& n, int) {
      // A recurring probe: some work time, then its record, committed under the job's fence.
      n.job_server().add_kind("probe", [&n](std::shared_ptr<jobs::JobRun> run) {
        run->step({}, 10, [run, &n](bool ok, db::Outcome) {
          if (!ok) return;
          run->env().set_timer(Duration{300'000}, [run, &n] {
            if (!run->active()) return;
            const std::string period = run->data().count("period") ? run->data().at("period") : "";
            run->step({db::Statement{"INSERT INTO ProbeRuns (JobId, Period, Node, Attempt) VALUES ($1, $2, $3, $4)",
                                     {run->id(), period, n.membership().self(), run->attempt()}}},
                      100, [run](bool ok2, db::Outcome) {
                        if (ok2) run->finish(true, {});
                      });
          });
        });
      });
    };
    return co;
  }

  // ---- setup: servers, the first nodes, users, a team, channels, logins (before the scenario's time 0)

  bool setup() {
    auto& dbs = k_.databases();
    for (int i = 1; i <= sc_.replicas; ++i) dbs.find(fmt::format("replica{}", i))->set_replication_lag(sc_.replication_lag);
    for (int i = 1; i <= sc_.search_replicas; ++i)
      dbs.add(DbServerOptions{.name = fmt::format("search{}", i), .service_time = sc_.db_service_time, .primary = "db1", .replication_lag = sc_.replication_lag});
    // Every node's config.json: the scenario's settings on top of the base.
    for (int i = 0; i < sc_.nodes; ++i)
      for (const auto& [key, value] : sc_.config) set_setting(i, key, value);
    initial_ = sc_.initial;
    if (initial_.empty())
      for (int i = 0; i < sc_.nodes; ++i) initial_.push_back(static_cast<uint32_t>(i));
    const auto& initial = initial_;
    for (uint32_t n : initial) boot(static_cast<int>(n));
    const bool up = k_.run_until(
        [&] {
          for (uint32_t n : initial) {
            auto* nd = c_.node(static_cast<int>(n));
            if (!nd || !nd->started()) return false;
            int alive = 0;
            for (const auto& [addr, m] : nd->membership().members()) alive += m.state == cluster::MemberState::alive;
            if (alive < static_cast<int>(initial.size()) - 1) return false;
          }
          return true;
        },
        k_.now() + Duration{60'000'000});
    if (!up) {
      violation("setup", "the initial nodes did not start and find each other within 60 s");
      return false;
    }
    const int admin_node = static_cast<int>(initial[0]);
    admin_ = c_.signup_and_login(admin_node, "admin");
    auto team = c_.call(admin_node, "POST", "/api/v4/teams", R"({"name":"scenario","display_name":"Scenario","type":"O"})", admin_);
    if (team.status != 201) {
      violation("setup", "creating the team failed: " + team.body);
      return false;
    }
    team_ = field(team.body, "id");
    for (int ch = 0; ch < sc_.channels; ++ch) {
      auto r = c_.call(admin_node, "POST", "/api/v4/channels",
                       fmt::format(R"({{"team_id":"{}","name":"channel-{}","display_name":"Channel {}","type":"O"}})", team_, ch, ch), admin_);
      if (r.status != 201) {
        violation("setup", "creating a channel failed: " + r.body);
        return false;
      }
      channel_ids_.push_back(field(r.body, "id"));
      channel_index_[channel_ids_.back()] = ch;
    }
    members_.resize(static_cast<size_t>(sc_.channels));
    for (int u = 0; u < sc_.users; ++u) {
      Client cl;
      cl.index = u;
      const std::string name = fmt::format("user{}", u);
      auto r = c_.call(admin_node, "POST", "/api/v4/users",
                       fmt::format(R"({{"username":"{}","email":"{}@example.com","password":"password-{}"}})", name, name, name), admin_);
      if (r.status != 201) {
        violation("setup", "creating a user failed: " + r.body);
        return false;
      }
      cl.user_id = field(r.body, "id");
      if (c_.call(admin_node, "POST", "/api/v4/teams/" + team_ + "/members", fmt::format(R"({{"team_id":"{}","user_id":"{}"}})", team_, cl.user_id), admin_)
              .status != 201) {
        violation("setup", "adding a user to the team failed");
        return false;
      }
      const int login_node = static_cast<int>(initial[static_cast<size_t>(u) % initial.size()]);
      auto login = c_.call(login_node, "POST", "/api/v4/users/login", fmt::format(R"({{"login_id":"{}","password":"password-{}"}})", name, name));
      for (const auto& [key, v] : login.headers)
        if (key == "Token") cl.token = v;
      if (cl.token.empty()) {
        violation("setup", "a login failed: " + login.body);
        return false;
      }
      clients_.push_back(std::move(cl));
    }
    // Channel c's members: `members` users, spread so that every user is in some channel.
    for (int ch = 0; ch < sc_.channels; ++ch)
      for (int j = 0; j < sc_.members; ++j) {
        const int u = (ch * sc_.members + j) % sc_.users;
        if (std::find(members_[static_cast<size_t>(ch)].begin(), members_[static_cast<size_t>(ch)].end(), u) != members_[static_cast<size_t>(ch)].end()) continue;
        auto r = c_.call(admin_node, "POST", "/api/v4/channels/" + channel_ids_[static_cast<size_t>(ch)] + "/members",
                         fmt::format(R"({{"user_id":"{}"}})", clients_[static_cast<size_t>(u)].user_id), admin_);
        if (r.status != 201) {
          violation("setup", "adding a channel member failed: " + r.body);
          return false;
        }
        members_[static_cast<size_t>(ch)].push_back(u);
        clients_[static_cast<size_t>(u)].channels.push_back(ch);
      }
    t0_ = k_.now();
    for (auto& cl : clients_) cl.synced_at_ms = wall_ms() - kResyncMarginMs;
    return true;
  }

  // ---- the schedule: timeline and random faults, clients, workload, load balancer, samples

  void schedule() {
    std::vector<fault::Fault> all;
    if (o_.schedule) {
      all = *o_.schedule;
    } else {
      all = sc_.timeline;
      if (sc_.random) {
        const auto& rf = *sc_.random;
        std::vector<uint32_t> pool = rf.nodes.empty() ? initial_ : rf.nodes;
        Xoshiro256 rng(o_.seed * 0x9E3779B97F4A7C15ull + 17);
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
    result_.schedule = all;
    last_change_ = t0_;
    for (const auto& f : all) k_.at(t0_ + f.at, [this, f] { apply(f); });
    // Clients connect over the first second.
    for (auto& cl : clients_) {
      const int i = cl.index;
      k_.at(t0_ + Duration{static_cast<int64_t>(k_.random().uniform(1'000'000))}, [this, i] { connect(clients_[static_cast<size_t>(i)]); });
    }
    if (sc_.post_rate > 0) next_post(t0_ + Duration{1'500'000});
    if (sc_.typing_rate > 0) next_typing(t0_ + Duration{1'500'000});
    if (sc_.search_rate > 0) next_search(t0_ + Duration{1'500'000});
    k_.at(t0_ + sc_.health_interval, [this] { health_checks(); });
    k_.at(t0_, [this] { tick(); });
    schedule_bug();
  }

  void apply(const fault::Fault& f, bool retry = false) {
    last_change_ = k_.now();
    if (!retry) mark(f);
    switch (f.kind) {
      case FaultKind::crash: k_.crash(f.nodes[0]); break;
      case FaultKind::restart:
        if (k_.state(f.nodes[0]) == NodeState::down) boot(static_cast<int>(f.nodes[0]));
        break;
      case FaultKind::stop:
        if (k_.state(f.nodes[0]) == NodeState::up) k_.stop(f.nodes[0]);
        break;
      case FaultKind::start:
        if (k_.state(f.nodes[0]) == NodeState::up && !c_.node(static_cast<int>(f.nodes[0]))->started() && start_time_[f.nodes[0]] >= Duration{0}) {
          // Still stopping (draining): the start waits for the stop to finish.
          k_.at(k_.now() + Duration{100'000}, [this, f] { apply(f, true); });
          break;
        }
        if (k_.state(f.nodes[0]) == NodeState::down) {
          if (!f.text.empty()) c_.set_version(static_cast<int>(f.nodes[0]), f.text);
          boot(static_cast<int>(f.nodes[0]));
        }
        break;
      case FaultKind::pause: k_.pause(f.nodes[0]); break;
      case FaultKind::resume: k_.resume(f.nodes[0]); break;
      case FaultKind::partition: {
        std::vector<bool> side(static_cast<size_t>(sc_.nodes), false);
        for (uint32_t n : f.nodes) side[n] = true;
        for (int a = 0; a < sc_.nodes; ++a)
          for (int b = 0; b < sc_.nodes; ++b)
            if (side[static_cast<size_t>(a)] != side[static_cast<size_t>(b)]) cut(a, b);
        apply_fault(k_, f);
        break;
      }
      case FaultKind::isolate:
        for (uint32_t p : f.peers) {
          cut(static_cast<int>(f.nodes[0]), static_cast<int>(p));
          cut(static_cast<int>(p), static_cast<int>(f.nodes[0]));
        }
        apply_fault(k_, f);
        break;
      case FaultKind::block:
        cut(static_cast<int>(f.nodes[0]), static_cast<int>(f.peers[0]));
        apply_fault(k_, f);
        break;
      case FaultKind::heal:
        std::fill(cut_.begin(), cut_.end(), false);
        apply_fault(k_, f);
        break;
      case FaultKind::loss:
        loss_ = f.value;
        apply_fault(k_, f);
        break;
      case FaultKind::clock_skew:
      case FaultKind::clock_drift: apply_fault(k_, f); break;
      case FaultKind::set_config: {
        const auto eq = f.text.find('=');
        for (uint32_t n : f.nodes) set_setting(static_cast<int>(n), f.text.substr(0, eq), f.text.substr(eq + 1));
        break;
      }
      case FaultKind::reload:
        for (uint32_t n : f.nodes) on_node(static_cast<int>(n), [this, n](node::Node& nd) { reload(static_cast<int>(n), nd); });
        break;
      case FaultKind::recycle:
        for (uint32_t n : f.nodes) on_node(static_cast<int>(n), [](node::Node& nd) { nd.recycle_database(); });
        break;
      case FaultKind::db_stop: k_.databases().find(f.text)->stop(); break;
      case FaultKind::db_start: k_.databases().find(f.text)->start(); break;
      case FaultKind::db_promote: k_.databases().find(f.text)->promote(); break;
      case FaultKind::db_lag: k_.databases().find(f.text)->set_replication_lag(f.amount); break;
      case FaultKind::db_slow: k_.databases().find(f.text)->set_slow_factor(f.value); break;
      case FaultKind::lb_only:
        rotation_.clear();
        for (uint32_t n : f.nodes) rotation_.insert(static_cast<int>(n));
        break;
      case FaultKind::lb_stop: lb_up_ = false; break;
      case FaultKind::lb_start: lb_up_ = true; break;
      case FaultKind::drop_clients:
        for (auto& cl : clients_)
          if (cl.socket && cl.socket->session && cl.socket->node == f.nodes[0]) c_.disconnect(*cl.socket);
        break;
    }
  }

  void mark(const fault::Fault& f) {
    RunRecord::Mark m;
    m.t = secs(k_.now() - t0_);
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
    result_.record.marks.push_back(m);
  }

  void boot(int n) {
    start_time_[static_cast<size_t>(n)] = k_.now();
    loaded(n);
    k_.start(static_cast<NodeIndex>(n));
  }

  void reload(int n, node::Node& nd) {
    const auto before = nd.status().self();
    const std::string error = nd.reload_config();
    if (!error.empty()) return violation("config reload", fmt::format("n{} refused its config.json: {}", n, error));
    loaded(n);
    if (o_.bug == Bug::wrong_status && n == bug_node_) nd.status().set_self(before);  // the injected bug: peers keep the old hash
  }

  void on_node(int n, std::function<void(node::Node&)> fn) {
    if (!c_.node(n)) return;
    k_.call_on_node(static_cast<NodeIndex>(n), k_.incarnation(static_cast<NodeIndex>(n)), k_.now_us(), [this, n, fn = std::move(fn)] {
      if (auto* nd = c_.node(n)) fn(*nd);
    });
  }

  void set_setting(int n, const std::string& key, const std::string& value_json) {
    auto& file = c_.node_config_file(n);
    json::value v = json::parse(file);
    const auto dot = key.find('.');
    auto& section = v.as_object()[key.substr(0, dot)];
    if (!section.is_object()) section = json::object{};
    section.as_object()[key.substr(dot + 1)] = json::parse(value_json);
    file = json::serialize(v);
  }

  // Node n has just (re)started or reloaded from its config.json: the truth's hash, and the master the
  // checkers read.
  void loaded(int n) {
    auto cfg = config::load_config_text(c_.node_config_file(n), "config.json", {});
    loaded_hash_[static_cast<size_t>(n)] = cfg.ok() ? cfg.loaded->hash : "unloadable";
    if (cfg.ok()) master_ = cfg.loaded->config.SqlSettings.DataSource;
  }

  void cut(int a, int b) { cut_[static_cast<size_t>(a * sc_.nodes + b)] = true; }
  bool reachable(int a, int b) const { return !cut_[static_cast<size_t>(a * sc_.nodes + b)] && !cut_[static_cast<size_t>(b * sc_.nodes + a)]; }
  bool one_way(int a, int b) const { return cut_[static_cast<size_t>(a * sc_.nodes + b)] != cut_[static_cast<size_t>(b * sc_.nodes + a)]; }
  bool live(int n) const {
    auto* nd = const_cast<ChatCluster&>(c_).node(n);
    return nd && nd->started() && k_.state(static_cast<NodeIndex>(n)) == NodeState::up;
  }

  // ---- the injected bugs (tests show that each checker catches its own)

  void schedule_bug() {
    const Duration at = t0_ + Duration{sc_.duration.count() * 2 / 5};
    switch (o_.bug) {
      case Bug::none: break;
      case Bug::lose_post:
        k_.at(at, [this] {
          if (acked_.empty()) return;
          const auto& id = acked_.back().id;
          k_.databases().find(master_)->execute({db::Statement{"DELETE FROM Posts WHERE Id = $1", {id}}}, false);
        });
        break;
      case Bug::two_leaders:
        k_.at(at, [this] {  // cut n0 off in the kernel only: the checkers believe the network is whole
          for (uint32_t p = 1; p < static_cast<uint32_t>(sc_.nodes); ++p) {
            k_.block(0, p);
            k_.block(p, 0);
          }
        });
        break;
      case Bug::double_job:
        k_.at(at, [this] {
          const std::string cols = "Type, Priority, CreateAt, StartAt, LastActivityAt, Status, Progress, Data, WorkerId, Attempts";
          k_.databases().find(master_)->execute(
              {db::Statement{"INSERT INTO Jobs (Id, ScheduleKey, " + cols + ") SELECT 'dup' || substr(Id, 4), ScheduleKey || ':again', " +
                                 "Type, Priority, CreateAt, 0, 0, 'pending', 0, Data, '', 0 FROM Jobs WHERE Type = 'probe' AND Status = 'success' " +
                                 "ORDER BY CreateAt DESC LIMIT 1",
                             {}}},
              false);
        });
        break;
      case Bug::wrong_status:
        k_.at(at, [this] {
          for (int n = 0; n < sc_.nodes; ++n)
            if (live(n)) bug_node_ = n;  // the highest live node
          if (bug_node_ < 0) return;
          set_setting(bug_node_, "TeamSettings.SiteName", "\"Changed on one node\"");
          on_node(bug_node_, [this](node::Node& nd) { reload(bug_node_, nd); });
          last_change_ = k_.now();
        });
        break;
      case Bug::random_stream_ids: break;  // in every node's messenger from the start (cluster_options)
      case Bug::failed_assertion:
        k_.at(at, [this] {
          on_node(0, [](node::Node&) { CHORUS_ASSERT(1 + 1 == 3, "injected by --bug failed_assertion"); });
        });
        break;
    }
  }

  // ---- load balancer

  std::vector<int> upstreams() {
    std::vector<int> in_rotation;
    for (int n = 0; n < sc_.nodes; ++n)
      if (rotation_.empty() || rotation_.count(n)) in_rotation.push_back(n);
    std::vector<int> healthy;
    for (int n : in_rotation)
      if (healthy_[static_cast<size_t>(n)]) healthy.push_back(n);
    auto& list = healthy.empty() ? in_rotation : healthy;  // NGINX tries them all when every one is out
    if (list.empty()) return list;
    const size_t start = rr_++ % list.size();
    std::rotate(list.begin(), list.begin() + static_cast<long>(start), list.end());
    return list;
  }

  void health_checks() {
    for (int n = 0; n < sc_.nodes; ++n) {
      auto done = std::make_shared<bool>(false);
      auto result = [this, n, done](bool ok) {
        if (*done) return;
        *done = true;
        auto& fails = health_failures_[static_cast<size_t>(n)];
        if (ok) {
          fails = 0;
          healthy_[static_cast<size_t>(n)] = true;
        } else if (++fails >= sc_.health_fails) {
          healthy_[static_cast<size_t>(n)] = false;
        }
      };
      if (!c_.node(n)) {
        result(false);
        continue;
      }
      c_.call_async(n, "GET", "/api/v4/system/ping", "", "", [result](api::Response r) { result(r.status == 200); });
      k_.at(k_.now() + Duration{1'000'000}, [result] { result(false); });
    }
    k_.at(k_.now() + sc_.health_interval, [this] { health_checks(); });
  }

  // A REST call through the load balancer, with the client's timeout.
  void request(int client, std::string method, std::string target, std::string body, std::function<void(int, const std::string&)> done) {
    auto r = std::make_shared<Request>();
    r->client = client;
    r->method = std::move(method);
    r->target = std::move(target);
    r->body = std::move(body);
    r->done = std::move(done);
    r->sent = k_.now();
    k_.at(r->sent + sc_.request_timeout, [this, r] { complete(r, 0, "timeout"); });
    if (!lb_up_) return k_.at(k_.now(), [this, r] { complete(r, 502, "the load balancer is down"); });
    dispatch(r, upstreams());
  }

  void dispatch(const std::shared_ptr<Request>& r, std::vector<int> order) {
    if (r->finished) return;
    if (r->tried >= order.size()) return complete(r, 502, "no upstream answered");
    const int n = order[r->tried++];
    if (!c_.node(n)) return dispatch(r, order);  // refused: the next upstream
    // Capacity: the first free worker serves it; it is busy for the service time.
    auto& pool = workers_[static_cast<size_t>(n)];
    auto it = std::min_element(pool.begin(), pool.end());
    const int64_t start = std::max(*it, k_.now_us());
    *it = start + sc_.service_time.count();
    const std::string token = clients_[static_cast<size_t>(r->client)].token;
    k_.at(Duration{start + sc_.service_time.count()}, [this, r, n, order, token] {
      if (r->finished) return;
      if (!c_.node(n)) return dispatch(r, order);
      if (r->method == "POST" && r->target == "/api/v4/posts") origin_[field(r->body, "message")] = n;
      c_.call_async(n, r->method, r->target, r->body, token, [this, r](api::Response resp) { complete(r, resp.status, resp.body); });
    });
  }

  void complete(const std::shared_ptr<Request>& r, int status, const std::string& body) {
    if (r->finished) return;
    r->finished = true;
    const bool ok = status >= 200 && status < 300;
    auto& cl = clients_[static_cast<size_t>(r->client)];
    const Duration now = k_.now();
    const auto bucket = static_cast<size_t>(std::max<int64_t>(0, (now - t0_).count()) / 1'000'000);
    if (availability_.size() <= bucket) availability_.resize(bucket + 1);
    if (ok) {
      ++availability_[bucket].ok;
      ++cl.ok;
      latencies_.push_back((now - r->sent).count());
      cl.last_ok = now;
      cl.stretch_start = Duration{-1};
      last_global_ok_ = now;
      global_stretch_start_ = Duration{-1};
    } else {
      ++availability_[bucket].failed;
      ++cl.failed;
      // A stretch of failures begins when its first failed request was sent; it ends at a success. At
      // each failure: this client has not been served since the later of the stretch's start and its last
      // success - nor the cluster, counting every client's successes (idle time before a stretch is not
      // counted; a request still waiting when another one succeeds is not downtime).
      if (cl.stretch_start < Duration{0}) cl.stretch_start = r->sent;
      if (global_stretch_start_ < Duration{0}) global_stretch_start_ = r->sent;
      cl.longest_gap = std::max(cl.longest_gap, now - std::max(cl.last_ok, cl.stretch_start));
      downtime_ = std::max(downtime_, now - std::max(last_global_ok_, global_stretch_start_));
      if (failures_.size() < 5) failures_.push_back(fmt::format("{} {} -> {} {}", r->method, r->target.substr(0, 60), status, body.substr(0, 120)));
    }
    r->done(status, body);
  }

  // ---- clients

  void connect(Client& cl) {
    // The pending reconnect is this call, whatever it finds: an attempt still under way (a paused node's
    // upgrade) must be able to schedule the next one when it fails (random-faults seed 11564: it could
    // not, and the client never connected again).
    cl.reconnect_pending = false;
    if (cl.connecting || (cl.socket && cl.socket->session && !cl.socket->close_code)) return;
    if (!lb_up_) return closed(cl);
    for (int n : upstreams()) {
      if (!c_.node(n)) continue;  // refused: the next upstream
      if (k_.state(static_cast<NodeIndex>(n)) == NodeState::paused) {
        // The upgrade request hangs; the client gives up after its timeout.
        if (cl.socket && !cl.socket->session) cl.socket.reset();  // an upstream that refused before this one
        cl.connecting = true;
        const int i = cl.index;
        k_.at(k_.now() + sc_.request_timeout, [this, i] {
          auto& c = clients_[static_cast<size_t>(i)];
          c.connecting = false;
          closed(c);
        });
        return;
      }
      if (cl.socket && cl.socket->session) c_.disconnect(*cl.socket);
      const bool resuming = !cl.connection_id.empty();
      cl.socket = c_.connect(n, cl.token, cl.connection_id, resuming ? cl.next_seq : 0);
      cl.read = 0;
      cl.reply_seq = 2;  // the challenge took 1
      cl.ping_outstanding = false;
      cl.next_ping = k_.now() + kPing;
      if (!cl.socket->session) continue;
      return;
    }
    closed(cl);
  }

  // The official client's onclose: count the failure, back off, jitter, reconnect.
  void closed(Client& cl) {
    if (cl.reconnect_pending) return;
    cl.reconnect_pending = true;
    ++cl.connect_fails;
    ++cl.reconnects;
    int64_t retry = 3'000'000;
    if (cl.connect_fails > 7) retry = std::min<int64_t>(retry * cl.connect_fails * cl.connect_fails, 300'000'000);
    retry += static_cast<int64_t>(k_.random().uniform(2'000'000));
    const int i = cl.index;
    k_.at(k_.now() + Duration{retry}, [this, i] { connect(clients_[static_cast<size_t>(i)]); });
  }

  void tick() {
    for (auto& cl : clients_) pump(cl);
    sample();
    if (k_.now() + kTick <= t0_ + sc_.duration) k_.at(k_.now() + kTick, [this] { tick(); });
  }

  void pump(Client& cl) {
    if (!cl.socket) return;
    auto& frames = cl.socket->received;
    for (; cl.read < frames.size(); ++cl.read) on_frame(cl, frames[cl.read]);
    const bool broken = cl.socket->close_code.has_value() || !cl.socket->node_alive();
    if (broken) {
      if (cl.socket->session) c_.disconnect(*cl.socket);
      cl.socket.reset();
      return closed(cl);
    }
    if (k_.now() >= cl.next_ping && cl.socket->session) {
      if (cl.ping_outstanding) {  // no pong within a ping interval: re-establish
        c_.disconnect(*cl.socket);
        cl.socket.reset();
        return closed(cl);
      }
      cl.ping_outstanding = true;
      cl.ping_seq = cl.reply_seq++;
      // To a paused node the ping sits in the socket's buffers: no pong, and the next interval reconnects.
      if (k_.state(cl.socket->node) == NodeState::up) c_.send(*cl.socket, fmt::format(R"({{"action":"ping","seq":{}}})", cl.ping_seq));
      cl.next_ping = k_.now() + kPing;
    }
  }

  void on_frame(Client& cl, const std::string& text) {
    // Typing and status frames: the event name and seq are enough, without a parse (the fan-out of a
    // busy cluster is most of a client's frames).
    if (text.find("\"event\":\"typing\"") != std::string::npos || text.find("\"event\":\"status_change\"") != std::string::npos) {
      const auto at = text.rfind("\"seq\":");
      if (at != std::string::npos && text.find("\"seq_reply\"") == std::string::npos) {
        return check_seq(cl, std::strtoll(text.c_str() + at + 6, nullptr, 10));
      }
    }
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return violation("WebSocket protocol", fmt::format("client {} got a frame that is not a JSON object: {}", cl.index, text.substr(0, 80)));
    const auto& o = v.as_object();
    if (const auto* reply = o.if_contains("seq_reply")) {
      if (reply->is_int64() && reply->as_int64() == cl.ping_seq) cl.ping_outstanding = false;
      return;
    }
    const auto* ev = o.if_contains("event");
    if (!ev || !ev->is_string()) return;
    const std::string event(ev->as_string());
    const int64_t seq = o.contains("seq") && o.at("seq").is_int64() ? o.at("seq").as_int64() : -1;
    if (event == "hello") {
      const std::string id(o.at("data").as_object().at("connection_id").as_string());
      cl.connect_fails = 0;
      if (!cl.connection_id.empty() && id != cl.connection_id) {
        ++cl.resyncs;
        resync(cl);
      } else if (!cl.connection_id.empty()) {
        ++cl.resumes;
      }
      if (id != cl.connection_id) {
        cl.seen_on_connection.clear();
        cl.last_create_at.clear();
      }
      cl.connection_id = id;
      cl.next_seq = seq + 1;
      return;
    }
    check_seq(cl, seq);
    if (event != "posted") return;
    const auto post = json::parse(o.at("data").as_object().at("post").as_string()).as_object();
    const std::string id(post.at("id").as_string());
    const std::string message(post.at("message").as_string());
    const auto ch = channel_index_.find(std::string(post.at("channel_id").as_string()));
    if (!cl.seen_on_connection.insert(id).second)
      violation("events in order, never twice", fmt::format("client {} got post {} twice on connection {}", cl.index, id, cl.connection_id));
    cl.have.insert(id);
    // A channel's posts are committed with strictly increasing create_at, and every node delivers them
    // in that order (the channel sequencer): a connection gets a channel's posts in create_at order.
    const int64_t create_at = post.contains("create_at") && post.at("create_at").is_int64() ? post.at("create_at").as_int64() : 0;
    if (ch != channel_index_.end()) {
      auto& last = cl.last_create_at[ch->second];
      if (create_at <= last.first) {
        ++crossed_;
        const auto origin = origin_.find(message);
        violation("events in order, never twice",
                  fmt::format("client {} on connection {}: in channel {}, \"{}\" (create_at {}, through n{}) arrived after \"{}\" (create_at {})",
                              cl.index, cl.connection_id, ch->second, message, create_at, origin == origin_.end() ? -1 : origin->second, last.second,
                              last.first));
      }
      if (create_at > last.first) last = {create_at, message};
    }
    if (const auto a = ack_time_.find(id); a != ack_time_.end()) delivery_delay_ = std::max(delivery_delay_, k_.now() - a->second);
  }

  // Each event's seq is the next one on its connection.
  void check_seq(Client& cl, int64_t seq) {
    if (seq != cl.next_seq)
      violation("events in order, never twice", fmt::format("client {} on connection {}: event seq {} where {} was next", cl.index, cl.connection_id, seq, cl.next_seq));
    cl.next_seq = seq + 1;
  }

  // What the webapp does on a new connection: fetch each channel's posts since the last sync.
  void resync(Client& cl) {
    // Since the previous re-sync, not since the last disconnect: events can be lost while a socket still
    // looks healthy (a peer declared its node dead; the reset comes when the peer's new stream arrives),
    // and a client that asks only from its disconnect misses them (random-faults seed 3 showed it).
    const int64_t since = cl.synced_at_ms;
    cl.synced_at_ms = wall_ms() - kResyncMarginMs;  // the margin: another node's clock may lag
    const int i = cl.index;
    for (int ch : cl.channels) {
      request(i, "GET", fmt::format("/api/v4/channels/{}/posts?since={}&per_page=200", channel_ids_[static_cast<size_t>(ch)], since), "",
              [this, i, since](int status, const std::string& body) {
                auto& c = clients_[static_cast<size_t>(i)];
                if (status != 200) {
                  c.synced_at_ms = std::min(c.synced_at_ms, since);  // the next re-sync covers it
                  if (!c.resync_retry) {
                    c.resync_retry = true;
                    k_.at(k_.now() + Duration{2'000'000}, [this, i] {
                      auto& cc = clients_[static_cast<size_t>(i)];
                      cc.resync_retry = false;
                      resync(cc);
                    });
                  }
                  return;
                }
                boost::system::error_code ec;
                auto v = json::parse(body, ec);
                if (ec || !v.is_object() || !v.as_object().contains("posts")) return;
                for (const auto& [id, p] : v.as_object().at("posts").as_object()) c.have.insert(std::string(id));
              });
    }
  }

  void next_post(Duration at) {
    if (at >= t0_ + sc_.workload_until) return;
    k_.at(at, [this] {
      auto& cl = clients_[k_.random().uniform(clients_.size())];
      if (!cl.post_in_flight && !cl.channels.empty()) post(cl);
      next_post(k_.now() + Duration{static_cast<int64_t>(k_.random().exponential(1e6 / sc_.post_rate))});
    });
  }

  void post(Client& cl) {
    const int ch = cl.channels[k_.random().uniform(cl.channels.size())];
    const int64_t k = ++cl.posts_made;
    cl.post_in_flight = true;
    const int i = cl.index;
    request(i, "POST", "/api/v4/posts",
            fmt::format(R"({{"channel_id":"{}","message":"c{}#{}","pending_post_id":"{}:{}"}})", channel_ids_[static_cast<size_t>(ch)], i, k, cl.user_id, k),
            [this, i, ch, k](int status, const std::string& body) {
              auto& c = clients_[static_cast<size_t>(i)];
              c.post_in_flight = false;
              if (status != 201) return;
              acked_.push_back(Acked{field(body, "id"), ch, i, k, k_.now() - t0_});
              ack_time_[acked_.back().id] = k_.now();
            });
  }

  void next_search(Duration at) {
    if (at >= t0_ + sc_.workload_until) return;
    k_.at(at, [this] {
      auto& cl = clients_[k_.random().uniform(clients_.size())];
      const int author = static_cast<int>(k_.random().uniform(clients_.size()));
      request(cl.index, "POST", "/api/v4/teams/" + team_ + "/posts/search", fmt::format(R"({{"terms":"c{}","is_or_search":false}})", author),
              [](int, const std::string&) {});
      next_search(k_.now() + Duration{static_cast<int64_t>(k_.random().exponential(1e6 / sc_.search_rate))});
    });
  }

  void next_typing(Duration at) {
    if (at >= t0_ + sc_.workload_until) return;
    k_.at(at, [this] {
      auto& cl = clients_[k_.random().uniform(clients_.size())];
      if (cl.socket && cl.socket->session && !cl.channels.empty() && k_.state(cl.socket->node) == NodeState::up) {
        const int ch = cl.channels[k_.random().uniform(cl.channels.size())];
        c_.send(*cl.socket, fmt::format(R"({{"action":"user_typing","seq":{},"data":{{"channel_id":"{}","parent_id":""}}}})", cl.reply_seq++,
                                        channel_ids_[static_cast<size_t>(ch)]));
      }
      next_typing(k_.now() + Duration{static_cast<int64_t>(k_.random().exponential(1e6 / sc_.typing_rate))});
    });
  }

  // ---- samples: detection, leaders, status, queues, the report's lanes

  void sample() {
    const Duration now = k_.now();
    const Duration t = now - t0_;
    std::vector<int> alive;
    for (int n = 0; n < sc_.nodes; ++n)
      if (live(n)) alive.push_back(n);
    // Queues stay within their bounds.
    for (int n : alive) {
      auto* nd = c_.node(n);
      for (int p = 0; p < sc_.nodes; ++p) {
        if (p == n) continue;
        const size_t q = nd->messenger().queued(c_.address(p));
        if (q > static_cast<size_t>(kQueueMax)) violation("queues stay bounded", fmt::format("n{} holds {} messages for n{}", n, q, p));
      }
    }
    // A node that should serve does, within a minute of its start.
    for (int n = 0; n < sc_.nodes; ++n) {
      if (k_.state(static_cast<NodeIndex>(n)) != NodeState::up || start_time_[static_cast<size_t>(n)] < Duration{0}) continue;
      auto* nd = c_.node(n);
      if ((!nd || !nd->started()) && now - start_time_[static_cast<size_t>(n)] > Duration{60'000'000} && !not_serving_reported_.count(n)) {
        not_serving_reported_.insert(n);
        violation("no node crashes", fmt::format("n{} was started {} ago and does not serve", n, fmt_s(now - start_time_[static_cast<size_t>(n)])));
      }
    }
    detection(alive, t);
    const bool quiet = loss_ == 0;
    if (quiet && now - last_change_ >= kLeaderSettle) check_leaders(alive);
    if (quiet && now - last_change_ >= kStatusSettle && (now - t0_).count() % 1'000'000 < kTick.count()) check_status(alive);
    for (const auto& x : sc_.expect) {
      const bool timed = x.kind == Expectation::Kind::leader || x.kind == Expectation::Kind::status;
      if (timed && t >= x.at && !expect_done_.count(&x)) {
        expect_done_.insert(&x);
        check_at(x, alive);
      }
    }
    if ((now - t0_).count() % kReportSample.count() < kTick.count()) report_sample(alive, t);
  }

  void detection(const std::vector<int>& alive, Duration t) {
    for (const auto& x : sc_.expect) {
      if (x.kind != Expectation::Kind::detect || detected_.count(x.node)) continue;
      Duration fault_at{-1};
      for (const auto& f : result_.schedule)
        if ((f.kind == FaultKind::crash || f.kind == FaultKind::pause || f.kind == FaultKind::stop || f.kind == FaultKind::isolate) && !f.nodes.empty() &&
            static_cast<int>(f.nodes[0]) == x.node) {
          fault_at = f.at;
          break;
        }
      if (fault_at < Duration{0} || t < fault_at) continue;
      bool all = true;
      int peers = 0;
      for (int n : alive) {
        if (n == x.node) continue;
        ++peers;
        const auto& members = c_.node(n)->membership().members();
        auto it = members.find(c_.address(x.node));
        if (it != members.end() && it->second.state != cluster::MemberState::dead) all = false;
      }
      if (all && peers > 0) detected_[x.node] = t - fault_at;
    }
  }

  // One leader per connected group: every live node of a clique names the clique's lowest address.
  void check_leaders(const std::vector<int>& alive) {
    std::vector<int> group(static_cast<size_t>(sc_.nodes), -1);
    for (int a : alive) {
      if (group[static_cast<size_t>(a)] >= 0) continue;
      std::vector<int> members{a};
      group[static_cast<size_t>(a)] = a;
      for (size_t i = 0; i < members.size(); ++i)
        for (int b : alive)
          if (group[static_cast<size_t>(b)] < 0 && reachable(members[i], b)) {
            group[static_cast<size_t>(b)] = a;
            members.push_back(b);
          }
      bool clique = true;
      for (int x : members)
        for (int y : members) clique = clique && (x == y || reachable(x, y));
      if (!clique) continue;
      std::string lowest = c_.address(members[0]);
      for (int x : members) lowest = std::min(lowest, c_.address(x));
      for (int x : members) {
        const std::string& named = c_.node(x)->membership().leader();
        if (named != lowest && !leader_reported_.count(x)) {
          leader_reported_.insert(x);
          violation("one leader per connected group",
                    fmt::format("n{} names {} leader; its group ({} nodes, stable for {}) should follow {}", x, named.empty() ? "nobody" : named,
                                members.size(), fmt_s(k_.now() - last_change_), lowest));
        }
      }
    }
  }

  // The colour a viewer should show for a peer: red when it is down or unreachable, or its version or
  // config hash differs from the viewer's.
  bool expected_green(int viewer, int peer) const {
    if (!live(peer) || !reachable(viewer, peer)) return false;
    return c_.version(peer) == c_.version(viewer) && loaded_hash_[static_cast<size_t>(peer)] == loaded_hash_[static_cast<size_t>(viewer)];
  }

  // What viewer shows for peer: nullopt when it does not list it.
  std::optional<bool> shown_green(int viewer, int peer) {
    for (const auto& p : c_.node(viewer)->status().peers())
      if (p.info.address == c_.address(peer)) return p.green;
    return std::nullopt;
  }

  void check_status(const std::vector<int>& alive) {
    for (int v : alive)
      for (int p = 0; p < sc_.nodes; ++p) {
        if (p == v) continue;
        const auto want = expected_green(v, p);
        const auto shown = shown_green(v, p);
        if (live(p) && one_way(v, p)) continue;  // cut one way only: either colour can be right
        const bool wrong = live(p) && reachable(v, p) ? (!shown || *shown != want) : (shown && *shown);
        if (wrong && !status_reported_.count({v, p})) {
          status_reported_.insert({v, p});
          violation("cluster status matches the truth",
                    fmt::format("n{} shows n{} {} but it is {} (versions {} / {}, config {} / {})", v, p, !shown ? "nowhere" : (*shown ? "green" : "red"),
                                want ? "green" : (live(p) ? "red" : "down"), c_.version(v), c_.version(p),
                                loaded_hash_[static_cast<size_t>(v)].substr(0, 8), loaded_hash_[static_cast<size_t>(p)].substr(0, 8)));
        }
      }
  }

  void check_at(const Expectation& x, const std::vector<int>& alive) {
    using K = Expectation::Kind;
    if (x.kind == K::leader) {
      std::vector<std::string> wrong;
      for (int n : alive)
        if (viewed_by(x, n) && c_.node(n)->membership().leader() != c_.address(x.node)) wrong.push_back(fmt::format("n{} names {}", n, c_.node(n)->membership().leader()));
      expect_result(x, wrong.empty(), wrong.empty() ? "yes" : fmt::format("{}", fmt::join(wrong, "; ")));
    } else if (x.kind == K::status) {
      std::vector<std::string> wrong;
      const bool want_green = x.colour == "green";
      for (int v : alive)
        for (int p = 0; p < sc_.nodes; ++p) {
          if (p == v || !viewed_by(x, v) || (x.node >= 0 && p != x.node) || (x.node < 0 && !live(p))) continue;
          if (!reachable(v, p)) continue;
          const auto shown = shown_green(v, p);
          const bool green = shown && *shown;
          if (green != want_green) wrong.push_back(fmt::format("n{} shows n{} {}", v, p, !shown ? "nowhere" : (green ? "green" : "red")));
        }
      expect_result(x, wrong.empty(), wrong.empty() ? "yes" : fmt::format("{}", fmt::join(wrong, "; ")));
    }
  }

  static bool viewed_by(const Expectation& x, int n) {
    return x.viewers.empty() || std::find(x.viewers.begin(), x.viewers.end(), static_cast<uint32_t>(n)) != x.viewers.end();
  }

  void expect_result(const Expectation& x, bool ok, const std::string& detail) {
    result_.record.checks.push_back(RunRecord::Check{"expect: " + x.text, ok, detail});
    if (!ok) violation("expect (line " + std::to_string(x.line) + ")", x.text + ": " + detail);
  }

  void report_sample(const std::vector<int>& alive, Duration t) {
    RunRecord::Sample s;
    s.t = secs(t);
    std::map<std::string, int> votes;
    for (int n : alive) ++votes[c_.node(n)->membership().leader()];
    int best = 0;
    for (const auto& [addr, count] : votes)
      if (count > best) {
        best = count;
        s.leader = static_cast<int>(k_.find(addr));
      }
    for (int n = 0; n < sc_.nodes; ++n) {
      const auto st = k_.state(static_cast<NodeIndex>(n));
      s.state += start_time_[static_cast<size_t>(n)] < Duration{0} ? '-' : st == NodeState::paused ? 'p' : st == NodeState::up ? 'u' : 'd';
      int red = 0, green = 0;
      for (int v : alive) {
        if (v == n) continue;
        const auto shown = shown_green(v, n);
        if (!shown) continue;
        (*shown ? green : red)++;
      }
      s.colour += red + green == 0 ? '?' : red > green ? 'r' : 'g';
    }
    result_.record.samples.push_back(s);
  }

  // ---- the end: durability, delivery, jobs, expectations, metrics

  void finish() {
    for (auto& cl : clients_) pump(cl);
    // Durable: every acknowledged post is in the master database.
    std::set<std::string> stored;
    if (auto* db = k_.databases().find(master_)) {
      auto o = db->execute({db::Statement{"SELECT Id FROM Posts", {}}}, false);
      if (o.ok())
        for (const auto& row : o.result().rows) stored.insert(std::get<std::string>(row.at(0)));
    }
    int lost = 0, undelivered = 0;
    Duration first_at = sc_.duration;  // the violation is placed at the first acknowledgement concerned (replay shows the trace there)
    std::string first_lost, first_undelivered;
    bool lost_after_repair = false, undelivered_after_repair = false;
    const Duration repaired_at = result_.schedule.empty() ? Duration{0} : result_.schedule.back().at;
    for (const auto& a : acked_) {  // in acknowledgement order: the first found is the earliest
      if (!stored.count(a.id)) {
        lost_after_repair |= a.at > repaired_at;
        if (lost++ == 0) {
          first_at = std::min(first_at, a.at);
          first_lost = fmt::format("post {} (client {}'s #{}, acknowledged at {}) is not in {}", a.id, a.author, a.k, fmt_s(a.at), master_);
        }
      }
      for (int u : members_[static_cast<size_t>(a.channel)])
        if (!clients_[static_cast<size_t>(u)].have.count(a.id)) {
          undelivered_after_repair |= a.at > repaired_at;
          if (undelivered++ == 0) {
            first_at = std::min(first_at, a.at);
            first_undelivered = fmt::format("client {} never got post {} (\"c{}#{}\" in channel {}, acknowledged at {})", u, a.id, a.author, a.k, a.channel, fmt_s(a.at));
          }
        }
    }
    // The kind says whether the loss needed a fault still in force, or came after the last repair (shrink
    // keeps a candidate schedule only when it fails the same way).
    const auto kind = [&](bool after_repair) { return after_repair ? std::string("acknowledged after the last repair") : std::string("acknowledged during faults"); };
    if (lost) violation("no acknowledged post lost", fmt::format("{} acknowledged posts are not in the database; first: {}", lost, first_lost), first_at, kind(lost_after_repair));
    if (undelivered)
      violation("no acknowledged post lost", fmt::format("{} deliveries missing; first: {}", undelivered, first_undelivered), first_at, kind(undelivered_after_repair));
    jobs_check();
    // Expectations measured over the run.
    using K = Expectation::Kind;
    int ok = 0, failed = 0;
    Duration gap{0};
    for (auto& cl : clients_) {
      ok += cl.ok;
      failed += cl.failed;
      gap = std::max(gap, cl.longest_gap);
    }
    std::sort(latencies_.begin(), latencies_.end());
    auto pct = [&](double p) { return latencies_.empty() ? 0 : latencies_[std::min(latencies_.size() - 1, static_cast<size_t>(p * static_cast<double>(latencies_.size())))]; };
    const double failed_share = ok + failed ? static_cast<double>(failed) / (ok + failed) : 0;
    for (const auto& x : sc_.expect) {
      switch (x.kind) {
        case K::detect: {
          auto it = detected_.find(x.node);
          expect_result(x, it != detected_.end() && it->second <= x.bound, it == detected_.end() ? "never (or never failed)" : fmt_s(it->second));
          break;
        }
        case K::max_failed: expect_result(x, failed_share <= x.value, fmt::format("{:.2f}% ({} of {})", failed_share * 100, failed, ok + failed)); break;
        case K::max_gap: expect_result(x, gap <= x.bound, fmt_s(gap)); break;
        case K::max_downtime: expect_result(x, downtime_ <= x.bound, fmt_s(downtime_)); break;
        case K::max_p99: expect_result(x, Duration{pct(0.99)} <= x.bound, fmt::format("{:.1f} ms", static_cast<double>(pct(0.99)) / 1000)); break;
        case K::min_jobs: expect_result(x, jobs_done_ >= static_cast<int>(x.value), std::to_string(jobs_done_)); break;
        case K::max_resyncs: {
          int resyncs = 0;
          for (const auto& cl : clients_) resyncs += cl.resyncs;
          expect_result(x, resyncs <= static_cast<int>(x.value), std::to_string(resyncs));
          break;
        }
        case K::leader:
        case K::status:
          if (!expect_done_.count(&x)) expect_result(x, false, "the scenario ended before this time");
          break;
      }
    }
    // The always-on checkers, as report rows, ahead of the expectations.
    std::vector<RunRecord::Check> rows;
    for (const char* name : kCheckers) {
      std::string first;
      int count = 0;
      for (const auto& v : result_.violations)
        if (v.checker == name && count++ == 0) first = v.what;
      const auto known = std::find_if(sc_.known_bugs.begin(), sc_.known_bugs.end(), [&](const auto& kb) { return kb.first == name; });
      if (known != sc_.known_bugs.end())
        rows.push_back(RunRecord::Check{std::string(name) + " (KNOWN BUG)", true,
                                        count == 0 ? "did not show in this run; the bug: " + known->second
                                                   : fmt::format("KNOWN BUG ({}): {} violations; first: {}", known->second, count, first)});
      else
        rows.push_back(RunRecord::Check{name, count == 0, count == 0 ? "held" : fmt::format("{} violations; first: {}", count, first)});
    }
    for (const auto& v : result_.violations)
      if (v.checker == "setup" || v.checker == "WebSocket protocol" || v.checker == "config reload") rows.push_back(RunRecord::Check{v.checker, false, v.what});
    rows.insert(rows.end(), result_.record.checks.begin(), result_.record.checks.end());
    result_.record.checks = std::move(rows);
    int resumes = 0, resyncs = 0, reconnects = 0;
    size_t delivered = 0;
    for (const auto& cl : clients_) {
      resumes += cl.resumes;
      resyncs += cl.resyncs;
      reconnects += cl.reconnects;
      delivered += cl.have.size();
    }
    auto& m = result_.record.metrics;
    int open = 0;
    for (const auto& cl : clients_) open += cl.socket && cl.socket->session && !cl.socket->close_code;
    m.emplace_back("clients / nodes", fmt::format("{} / {}", clients_.size(), sc_.nodes));
    m.emplace_back("clients with an open WebSocket at the end", std::to_string(open));
    m.emplace_back("requests ok / failed", fmt::format("{} / {} ({:.2f}% failed)", ok, failed, failed_share * 100));
    m.emplace_back("request latency p50 / p99 / max", fmt::format("{:.1f} / {:.1f} / {:.1f} ms", pct(0.5) / 1e3, pct(0.99) / 1e3, pct(1.0) / 1e3));
    m.emplace_back("longest client gap", fmt_s(gap));
    m.emplace_back("longest cluster downtime", fmt_s(downtime_));
    m.emplace_back("posts acknowledged", std::to_string(acked_.size()));
    m.emplace_back("posts held by clients", std::to_string(delivered));
    m.emplace_back("WebSocket reconnects / resumes / re-syncs", fmt::format("{} / {} / {}", reconnects, resumes, resyncs));
    m.emplace_back("probe jobs completed", std::to_string(jobs_done_));
    m.emplace_back("longest from acknowledgement to event", fmt_s(delivery_delay_));
    m.emplace_back("posts out of channel order on a connection", std::to_string(crossed_));
    uint64_t filled = 0;
    for (int n = 0; n < sc_.nodes; ++n)
      if (auto* nd = c_.node(n)) filled += nd->app().stats().posts_filled;
    m.emplace_back("posts read from the database to fill a gap (live nodes)", std::to_string(filled));
    for (const auto& [n, d] : detected_) m.emplace_back(fmt::format("detection of n{}", n), fmt_s(d));
    for (size_t i = 0; i < failures_.size(); ++i) m.emplace_back(fmt::format("failed request {}", i + 1), failures_[i]);
    m.emplace_back("trace", fmt::format("{} events, hash {:016x}", k_.trace_count(), k_.trace_hash()));
    for (size_t i = 0; i < availability_.size(); ++i) availability_[i].t = static_cast<double>(i);
    result_.record.availability = std::move(availability_);
  }

  void jobs_check() {
    if (sc_.job_period <= Duration{0}) return;
    auto* db = k_.databases().find(master_);
    if (!db) return;
    auto jobs = db->execute({db::Statement{"SELECT Id, ScheduleKey, Status, Attempts, LastActivityAt FROM Jobs WHERE Type = 'probe'", {}}}, false);
    auto runs = db->execute({db::Statement{"SELECT JobId, Period FROM ProbeRuns", {}}}, false);
    if (!jobs.ok() || !runs.ok()) return violation("recurring jobs run once per period", "the jobs tables cannot be read: " + jobs.error.message + runs.error.message);
    std::map<std::string, std::set<std::string>> jobs_of_period;
    std::map<std::string, int> runs_of_job;
    for (const auto& r : runs.result().rows) {
      jobs_of_period[std::get<std::string>(r.at(1))].insert(std::get<std::string>(r.at(0)));
      ++runs_of_job[std::get<std::string>(r.at(0))];
    }
    for (const auto& [period, ids] : jobs_of_period)
      if (ids.size() > 1) violation("recurring jobs run once per period", fmt::format("period {} was run by {} jobs", period, ids.size()));
    std::vector<int64_t> periods;
    const int64_t now_ms = wall_ms();
    for (const auto& r : jobs.result().rows) {
      const auto& id = std::get<std::string>(r.at(0));
      const auto& key = std::get<std::string>(r.at(1));
      const auto& status = std::get<std::string>(r.at(2));
      const int64_t attempts = std::get<int64_t>(r.at(3));
      const int64_t activity = std::get<int64_t>(r.at(4));
      const auto colon = key.rfind(':');
      if (colon != std::string::npos) {
        try {
          periods.push_back(std::stoll(key.substr(colon + 1)));
        } catch (const std::exception&) {
        }
      }
      if (status == "success") {
        ++jobs_done_;
        if (!runs_of_job.count(id)) violation("recurring jobs run once per period", fmt::format("job {} ({}) succeeded without its work", id, key));
      }
      if (runs_of_job[id] > attempts) violation("recurring jobs run once per period", fmt::format("job {} ({}) did its work {} times in {} attempts", id, key, runs_of_job[id], attempts));
      if ((status == "in_progress" || status == "pending") && activity > 0 && now_ms - activity > 30'000)
        violation("recurring jobs run once per period", fmt::format("job {} ({}) is stuck {} since {:.1f} s", id, key, status, (now_ms - activity) / 1e3));
    }
    std::sort(periods.begin(), periods.end());
    for (size_t i = 1; i < periods.size(); ++i)
      if (periods[i] != periods[i - 1] + 1 && periods[i] != periods[i - 1])
        violation("recurring jobs run once per period", fmt::format("periods {} to {} were skipped", periods[i - 1] + 1, periods[i] - 1));
  }

  // ---- helpers

  void violation(const std::string& checker, const std::string& what, std::optional<Duration> at = std::nullopt, std::string kind = {}) {
    if (result_.violations.size() >= 200) return;
    Violation v{at ? *at : k_.now() - t0_, checker, what, std::move(kind)};
    const auto place = std::upper_bound(result_.violations.begin(), result_.violations.end(), v.at, [](Duration t, const Violation& x) { return t < x.at; });
    result_.violations.insert(place, std::move(v));  // kept in time order
  }

  void trace_window(Duration at) {
    const auto& trace = k_.trace();
    auto it = std::lower_bound(trace.begin(), trace.end(), at.count(), [](const TraceRecord& r, int64_t t) { return r.time_us < t; });
    auto from = it - std::min<long>(40, it - trace.begin());
    auto to = it + std::min<long>(10, trace.end() - it);
    for (auto i = from; i != to; ++i) result_.trace_window.push_back(fmt::format("{:>10.3f}s  {}", secs(Duration{i->time_us} - t0_), k_.describe(*i)));
  }

  int64_t wall_ms() const { return (k_.options().wall_epoch_us + k_.now().count()) / 1000; }

  static std::string field(const std::string& body, const char* key) {
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    if (ec || !v.is_object()) return "";
    const auto* f = v.as_object().if_contains(key);
    return f && f->is_string() ? std::string(f->as_string()) : "";
  }

  const Scenario& sc_;
  const RunOptions& o_;
  ChatCluster c_;  // first: destroyed last, after the clients' sockets
  Kernel& k_;
  RunResult result_;
  Duration t0_{0};
  std::vector<uint32_t> initial_;
  std::string admin_, team_;
  std::vector<std::string> channel_ids_;
  std::unordered_map<std::string, int> channel_index_;
  std::vector<std::vector<int>> members_;
  std::vector<Client> clients_;
  std::vector<Acked> acked_;
  // Load balancer
  std::vector<bool> healthy_;
  std::vector<int> health_failures_;
  std::set<int> rotation_;
  bool lb_up_ = true;
  uint64_t rr_ = 0;
  std::vector<std::vector<int64_t>> workers_;
  // Truth
  std::vector<Duration> start_time_;  // of each node's last start (-1: never started)
  std::vector<bool> cut_;
  double loss_ = 0;
  std::vector<std::string> loaded_hash_;
  std::string master_ = "db1";  // the master the nodes were last (re)started or reloaded with
  Duration last_change_{0};
  int bug_node_ = -1;
  // Measurements
  std::vector<RunRecord::Bucket> availability_;
  std::vector<int64_t> latencies_;
  Duration downtime_{0}, last_global_ok_{0}, global_stretch_start_{-1};
  std::map<int, Duration> detected_;
  std::set<const Expectation*> expect_done_;
  std::set<int> leader_reported_, not_serving_reported_;
  std::set<std::pair<int, int>> status_reported_;
  std::vector<std::string> failures_;
  int jobs_done_ = 0;
  std::unordered_map<std::string, int> origin_;  // post message -> the node that handled its request
  std::unordered_map<std::string, Duration> ack_time_;  // post id -> when its author got the 201
  Duration delivery_delay_{0};                   // longest from a 201 to the post's event on any connection
  int64_t crossed_ = 0;                          // posts out of channel order on a connection
};

}  // namespace

RunResult run_scenario(const Scenario& scenario, const RunOptions& options) {
  set_assert_handler(throw_assertion);  // a failed assertion fails the seed instead of aborting chorus-sim
  Run run(scenario, options);
  return run.go();
}

namespace {

// The repair a fault waits for: a crash its node's restart, a pause its resume, a stop its start.
std::optional<fault::FaultKind> repair_of(fault::FaultKind kind) {
  using K = fault::FaultKind;
  switch (kind) {
    case K::crash: return K::restart;
    case K::pause: return K::resume;
    case K::stop: return K::start;
    case K::db_stop: return K::db_start;
    case K::lb_stop: return K::lb_start;
    default: return std::nullopt;
  }
}

// The schedule cut into what shrink removes together: a fault with its repair (a crash and the restart
// of that node, ...), or one fault. The repair phase - the faults at the schedule's last instant, where
// a random-faults scenario repairs everything - is never removed: without it a run fails for another
// reason (a partition that never heals) and the shrunk file reproduces something else.
std::vector<std::vector<size_t>> shrink_units(const std::vector<fault::Fault>& schedule) {
  std::vector<std::vector<size_t>> units;
  if (schedule.empty()) return units;
  const Duration repair_phase = schedule.back().at;
  std::vector<bool> taken(schedule.size(), false);
  for (size_t i = 0; i < schedule.size(); ++i) {
    if (taken[i] || schedule[i].at >= repair_phase) continue;
    taken[i] = true;
    std::vector<size_t> unit{i};
    if (const auto repair = repair_of(schedule[i].kind)) {
      for (size_t j = i + 1; j < schedule.size(); ++j)
        if (!taken[j] && schedule[j].kind == *repair && schedule[j].nodes == schedule[i].nodes && schedule[j].text == schedule[i].text) {
          if (schedule[j].at < repair_phase) {
            taken[j] = true;
            unit.push_back(j);
          }
          break;
        }
    }
    units.push_back(std::move(unit));
  }
  return units;
}

}  // namespace

bool same_failure(const Violation& a, const Violation& b) { return a.checker == b.checker && a.kind == b.kind; }

Shrunk shrink_schedule(const Scenario& scenario, const RunOptions& options, const RunResult& failed, const std::function<void(size_t, int)>& progress) {
  Shrunk out;
  out.schedule = failed.schedule;
  if (failed.violations.empty()) return out;
  out.checker = failed.violations.front().checker;
  out.kind = failed.violations.front().kind;
  const Violation& target = failed.violations.front();
  // ddmin over units (see shrink_units); a candidate counts only when it fails the same way.
  auto units = shrink_units(failed.schedule);
  auto schedule_of = [&](const std::vector<std::vector<size_t>>& kept) {
    std::set<size_t> removed;
    for (const auto& u : units) removed.insert(u.begin(), u.end());
    for (const auto& u : kept)
      for (size_t i : u) removed.erase(i);
    std::vector<fault::Fault> s;
    for (size_t i = 0; i < failed.schedule.size(); ++i)
      if (!removed.count(i)) s.push_back(failed.schedule[i]);
    return s;
  };
  auto fails = [&](const std::vector<fault::Fault>& schedule) {
    RunOptions t = options;
    t.schedule = schedule;
    t.keep_trace = false;
    ++out.runs;
    const auto r = run_scenario(scenario, t);
    return std::any_of(r.violations.begin(), r.violations.end(), [&](const Violation& v) { return same_failure(v, target); });
  };
  auto kept = units;
  for (size_t chunk = std::max<size_t>(1, kept.size() / 2);; chunk /= 2) {
    bool removed = true;
    while (removed && !kept.empty()) {
      removed = false;
      for (size_t at = 0; at < kept.size(); at += chunk) {
        auto candidate = kept;
        candidate.erase(candidate.begin() + static_cast<long>(at), candidate.begin() + static_cast<long>(std::min(kept.size(), at + chunk)));
        auto schedule = schedule_of(candidate);
        if (fails(schedule)) {
          kept = std::move(candidate);
          out.schedule = std::move(schedule);
          removed = true;
          if (progress) progress(kept.size(), out.runs);
          break;
        }
      }
    }
    if (chunk <= 1) break;
  }
  return out;
}

}  // namespace chorus::sim
