// Scenario files: YAML (yaml-cpp) to a Scenario, refusing with file:line:column and what was expected
// anything unknown, misspelt, out of range or out of order.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "simulator/scenario.h"

namespace chorus::sim {

namespace {

struct ParseError {
  std::string text;
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& what) const {
    const auto m = at.Mark();
    if (m.is_null()) throw ParseError{fmt::format("{}: {}", file_, what)};
    throw ParseError{fmt::format("{}:{}:{}: {}", file_, m.line + 1, m.column + 1, what)};
  }

  // A map whose keys must all be known.
  void keys(const YAML::Node& map, std::initializer_list<const char*> known, const char* what) const {
    if (!map.IsMap()) fail(map, fmt::format("{} must be a map", what));
    for (auto it = map.begin(); it != map.end(); ++it) {
      const auto key = it->first.as<std::string>();
      bool ok = false;
      for (const char* k : known) ok = ok || key == k;
      if (!ok)
        fail(it->first,
             fmt::format("unknown key \"{}\" in {}; expected one of: {}", key, what, fmt::join(known, ", ")));
    }
  }

  std::string str(const YAML::Node& n, const char* what) const {
    if (!n.IsScalar()) fail(n, fmt::format("{} must be a single value", what));
    return n.as<std::string>();
  }

  double number(const YAML::Node& n, const char* what, double min, double max) const {
    const std::string s = str(n, what);
    double v = 0;
    try {
      size_t used = 0;
      v = std::stod(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      fail(n, fmt::format("{} must be a number, found \"{}\"", what, s));
    }
    if (!(v >= min && v <= max)) fail(n, fmt::format("{} must be from {} to {}, found {}", what, min, max, s));
    return v;
  }
  int integer(const YAML::Node& n, const char* what, int min, int max) const {
    const double v = number(n, what, min, max);
    if (v != std::floor(v)) fail(n, fmt::format("{} must be a whole number", what));
    return static_cast<int>(v);
  }

  // "10s", "250ms", "2m", "1.5s", or a plain number of seconds.
  Duration duration(const YAML::Node& n, const char* what) const {
    const std::string s = str(n, what);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      fail(n, fmt::format("{} must be a duration such as 10s, 250ms or 2m, found \"{}\"", what, s));
    }
    const std::string unit = s.substr(used);
    double scale = 0;
    if (unit.empty() || unit == "s")
      scale = 1e6;
    else if (unit == "ms")
      scale = 1e3;
    else if (unit == "us")
      scale = 1;
    else if (unit == "m" || unit == "min")
      scale = 60e6;
    else
      fail(n, fmt::format("{}: unknown unit \"{}\" in \"{}\"; expected s, ms, us or m", what, unit, s));
    if (v < 0) fail(n, fmt::format("{} must not be negative, found \"{}\"", what, s));
    return Duration{static_cast<int64_t>(std::llround(v * scale))};
  }

  // A node: 2 or "n2". Must exist.
  uint32_t node(const YAML::Node& n, const char* what) const {
    std::string s = str(n, what);
    if (!s.empty() && s[0] == 'n') s = s.substr(1);
    int v = -1;
    try {
      size_t used = 0;
      v = std::stoi(s, &used);
      if (used != s.size()) v = -1;
    } catch (const std::exception&) {
    }
    if (v < 0)
      fail(n, fmt::format("{}: expected a node number (0 to {}) or n0..n{}, found \"{}\"", what, nodes_ - 1, nodes_ - 1,
                          n.as<std::string>()));
    if (v >= nodes_)
      fail(n, fmt::format("{}: node {} does not exist; the topology has nodes 0 to {}", what, v, nodes_ - 1));
    return static_cast<uint32_t>(v);
  }
  // One node, a list of nodes, or "all".
  std::vector<uint32_t> nodes(const YAML::Node& n, const char* what) const {
    std::vector<uint32_t> out;
    if (n.IsScalar() && n.as<std::string>() == "all") {
      for (int i = 0; i < nodes_; ++i) out.push_back(static_cast<uint32_t>(i));
    } else if (n.IsSequence()) {
      for (const auto& e : n) out.push_back(node(e, what));
    } else {
      out.push_back(node(n, what));
    }
    return out;
  }

  std::string database(const YAML::Node& n, const char* what) const {
    const std::string s = str(n, what);
    if (!databases_.count(s))
      fail(n, fmt::format("{}: database server \"{}\" does not exist; the topology has: {}", what, s,
                          fmt::join(databases_, ", ")));
    return s;
  }

  Scenario parse(const YAML::Node& root) {
    Scenario sc;
    sc.file = file_;
    keys(root,
         {"name", "description", "duration", "seeds", "topology", "workload", "timeline", "random_faults", "expect",
          "known_bugs", "regression_seeds"},
         "the scenario");
    if (!root["name"]) fail(root, "the scenario has no name");
    sc.name = str(root["name"], "name");
    if (root["description"]) sc.description = str(root["description"], "description");
    if (root["duration"]) sc.duration = duration(root["duration"], "duration");
    if (sc.duration < Duration{5'000'000} || sc.duration > Duration{3'600'000'000})
      fail(root["duration"], "duration must be from 5s to 60m");
    if (root["seeds"]) sc.seeds = integer(root["seeds"], "seeds", 1, 10000);
    if (root["regression_seeds"]) {
      const auto& rs = root["regression_seeds"];
      if (!rs.IsSequence()) fail(rs, "regression_seeds must be a list of seeds, such as [3077]");
      for (const auto& e : rs)
        sc.regression_seeds.push_back(
            static_cast<uint64_t>(integer(e, "a regression seed", 1, std::numeric_limits<int>::max())));
    }
    if (root["topology"]) topology(root["topology"], sc);
    nodes_ = sc.nodes;
    databases_ = {"db1"};
    for (int i = 1; i <= sc.replicas; ++i) databases_.insert(fmt::format("replica{}", i));
    for (int i = 1; i <= sc.search_replicas; ++i) databases_.insert(fmt::format("search{}", i));
    if (root["workload"]) workload(root["workload"], sc);
    if (sc.workload_until == Duration{0}) sc.workload_until = sc.duration - Duration{10'000'000};
    if (root["timeline"]) timeline(root["timeline"], sc);
    if (root["random_faults"]) random_faults(root["random_faults"], sc);
    if (root["expect"]) expectations(root["expect"], sc);
    if (root["known_bugs"]) {
      const auto& kb = root["known_bugs"];
      if (!kb.IsSequence()) fail(kb, "known_bugs must be a list of {checker: ..., bug: ...}");
      const std::set<std::string> checkers(kCheckers.begin(), kCheckers.end());
      for (const auto& e : kb) {
        keys(e, {"checker", "bug"}, "a known bug");
        const std::string c = str(e["checker"], "checker");
        if (!checkers.count(c))
          fail(e["checker"], fmt::format("unknown checker \"{}\"; expected one of: {}", c, fmt::join(checkers, ", ")));
        sc.known_bugs.emplace_back(c, e["bug"] ? str(e["bug"], "bug") : "");
      }
    }
    return sc;
  }

 private:
  void topology(const YAML::Node& t, Scenario& sc) {
    keys(t, {"nodes", "initial", "versions", "config", "databases", "load_balancer", "capacity", "boot_time"},
         "topology");
    if (t["nodes"]) sc.nodes = integer(t["nodes"], "topology.nodes", 1, 64);
    nodes_ = sc.nodes;
    if (t["initial"]) {
      sc.initial = nodes(t["initial"], "topology.initial");
      std::set<uint32_t> unique(sc.initial.begin(), sc.initial.end());
      if (unique.size() != sc.initial.size()) fail(t["initial"], "topology.initial names a node twice");
    }
    if (t["versions"]) {
      if (!t["versions"].IsMap()) fail(t["versions"], "topology.versions must map nodes to versions, e.g. {2: 0.1.1}");
      for (auto it = t["versions"].begin(); it != t["versions"].end(); ++it)
        sc.versions[static_cast<int>(node(it->first, "topology.versions"))] = version(it->second);
    }
    if (t["config"]) sc.config = settings(t["config"]);
    if (t["databases"]) {
      const auto& d = t["databases"];
      keys(d, {"replicas", "search_replicas", "replication_lag", "service_time"}, "topology.databases");
      if (d["replicas"]) sc.replicas = integer(d["replicas"], "replicas", 0, 8);
      if (d["search_replicas"]) sc.search_replicas = integer(d["search_replicas"], "search_replicas", 0, 8);
      if (d["replication_lag"]) sc.replication_lag = duration(d["replication_lag"], "replication_lag");
      if (d["service_time"]) sc.db_service_time = duration(d["service_time"], "service_time");
    }
    if (t["load_balancer"]) {
      const auto& l = t["load_balancer"];
      keys(l, {"health_check", "fails"}, "topology.load_balancer");
      if (l["health_check"]) sc.health_interval = duration(l["health_check"], "health_check");
      if (l["fails"]) sc.health_fails = integer(l["fails"], "fails", 1, 100);
    }
    if (t["capacity"]) {
      const auto& c = t["capacity"];
      keys(c, {"workers", "service_time"}, "topology.capacity");
      if (c["workers"]) sc.workers = integer(c["workers"], "workers", 1, 100000);
      if (c["service_time"]) sc.service_time = duration(c["service_time"], "service_time");
    }
    if (t["boot_time"]) sc.boot_time = duration(t["boot_time"], "boot_time");
  }

  std::string version(const YAML::Node& n) const {
    const std::string v = str(n, "version");
    int a, b, c;
    char tail;
    if (std::sscanf(v.c_str(), "%d.%d.%d%c", &a, &b, &c, &tail) != 3)
      fail(n, fmt::format("a version is major.minor.patch, found \"{}\"", v));
    return v;
  }

  std::vector<std::pair<std::string, std::string>> settings(const YAML::Node& n) const {
    if (!n.IsMap()) fail(n, "config must map \"Section.Setting\" to a value");
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = n.begin(); it != n.end(); ++it) out.emplace_back(setting_name(it->first), json_value(it->second));
    return out;
  }
  std::string setting_name(const YAML::Node& n) const {
    const std::string s = str(n, "setting");
    if (s.find('.') == std::string::npos || s.front() == '.' || s.back() == '.')
      fail(n, fmt::format("a setting is Section.Setting (e.g. TeamSettings.SiteName), found \"{}\"", s));
    return s;
  }
  // A YAML scalar as the JSON value config.json holds: numbers and booleans bare, the rest quoted.
  std::string json_value(const YAML::Node& n) const {
    if (n.IsSequence()) {
      std::vector<std::string> items;
      for (const auto& e : n) items.push_back(json_value(e));
      return fmt::format("[{}]", fmt::join(items, ","));
    }
    const std::string s = str(n, "value");
    if (s == "true" || s == "false") return s;
    try {
      size_t used = 0;
      (void)std::stod(s, &used);
      if (used == s.size() && n.Tag() != "!") return s;
    } catch (const std::exception&) {
    }
    std::string q = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') q += '\\';
      q += ch;
    }
    return q + "\"";
  }

  void workload(const YAML::Node& w, Scenario& sc) {
    keys(w,
         {"users", "channels", "members", "post_rate", "typing_rate", "search_rate", "request_timeout", "job_period",
          "until", "dms", "view_rate", "preference_rate", "reply_rate", "reaction_rate", "edit_rate", "delete_rate", "file_rate"},
         "workload");
    if (w["search_rate"]) sc.search_rate = number(w["search_rate"], "search_rate", 0, 100000);
    if (w["users"]) sc.users = integer(w["users"], "users", 1, 100000);
    if (w["channels"]) sc.channels = integer(w["channels"], "channels", 1, 10000);
    if (w["members"]) sc.members = integer(w["members"], "members", 1, 100000);
    if (sc.members > sc.users)
      fail(w["members"] ? w["members"] : w, fmt::format("members ({}) cannot exceed users ({})", sc.members, sc.users));
    if (w["post_rate"]) sc.post_rate = number(w["post_rate"], "post_rate", 0, 100000);
    if (w["typing_rate"]) sc.typing_rate = number(w["typing_rate"], "typing_rate", 0, 100000);
    if (w["view_rate"]) sc.view_rate = number(w["view_rate"], "view_rate", 0, 100000);
    if (w["preference_rate"]) sc.preference_rate = number(w["preference_rate"], "preference_rate", 0, 100000);
    for (auto [key, rate] : {std::pair{"reply_rate", &sc.reply_rate}, std::pair{"reaction_rate", &sc.reaction_rate},
                             std::pair{"edit_rate", &sc.edit_rate}, std::pair{"delete_rate", &sc.delete_rate},
                             std::pair{"file_rate", &sc.file_rate}})
      if (w[key]) *rate = number(w[key], key, 0, 100000);
    if (w["dms"]) {
      if (!w["dms"].IsScalar() || (w["dms"].as<std::string>() != "true" && w["dms"].as<std::string>() != "false"))
        fail(w["dms"], "dms must be true or false");
      else
        sc.dms = w["dms"].as<std::string>() == "true";
    }
    if (w["request_timeout"]) sc.request_timeout = duration(w["request_timeout"], "request_timeout");
    if (w["job_period"]) sc.job_period = duration(w["job_period"], "job_period");
    if (w["until"]) {
      sc.workload_until = duration(w["until"], "until");
      if (sc.workload_until > sc.duration) fail(w["until"], "workload.until is after the end of the scenario");
    }
  }

  // One timeline entry: `at` and exactly one operation.
  void timeline(const YAML::Node& list, Scenario& sc) {
    if (!list.IsSequence()) fail(list, "timeline must be a list of entries such as {at: 10s, kill: 1}");
    Duration previous{0};
    for (const auto& e : list) {
      if (!e.IsMap()) fail(e, "a timeline entry is a map such as {at: 10s, kill: 1}");
      if (!e["at"]) fail(e, "a timeline entry needs `at` (its time)");
      const Duration at = duration(e["at"], "at");
      if (at < previous)
        fail(e["at"], fmt::format("time {} is before the previous entry's {}; the timeline must be in time order",
                                  fmt_s(at), fmt_s(previous)));
      if (at > sc.duration)
        fail(e["at"], fmt::format("time {} is after the end of the scenario ({})", fmt_s(at), fmt_s(sc.duration)));
      previous = at;
      int ops = 0;
      for (auto it = e.begin(); it != e.end(); ++it) {
        const std::string key = it->first.as<std::string>();
        if (key == "at") continue;
        if (++ops > 1) fail(it->first, "one operation per timeline entry");
        operation(key, it->first, it->second, at, sc);
      }
      if (ops == 0) fail(e, "a timeline entry needs an operation (kill, restart, partition, ...)");
    }
  }

  void operation(const std::string& op, const YAML::Node& key, const YAML::Node& v, Duration at, Scenario& sc) {
    using fault::FaultKind;
    auto add = [&](FaultKind kind, std::vector<uint32_t> ns = {}, std::vector<uint32_t> peers = {}, double value = 0,
                   Duration amount = Duration{0}, std::string text = "") {
      sc.timeline.push_back(fault::Fault{at, kind, std::move(ns), std::move(peers), value, amount, std::move(text)});
    };
    if (op == "kill") return add(FaultKind::crash, {node(v, "kill")});
    if (op == "restart") return add(FaultKind::restart, {node(v, "restart")});
    if (op == "stop") return add(FaultKind::stop, {node(v, "stop")});
    if (op == "start") {
      if (v.IsMap()) {
        keys(v, {"node", "version"}, "start");
        return add(FaultKind::start, {node(v["node"], "start.node")}, {}, 0, Duration{0},
                   v["version"] ? version(v["version"]) : "");
      }
      return add(FaultKind::start, {node(v, "start")});
    }
    if (op == "upgrade") {  // stop, then start with the new version after the boot time
      keys(v, {"node", "version"}, "upgrade");
      if (!v["node"] || !v["version"]) fail(v, "upgrade needs node and version");
      const uint32_t n = node(v["node"], "upgrade.node");
      if (at + sc.boot_time > sc.duration)
        fail(v, "the upgraded server would start after the end of the scenario (at + topology.boot_time)");
      add(FaultKind::stop, {n});
      sc.timeline.push_back(
          fault::Fault{at + sc.boot_time, FaultKind::start, {n}, {}, 0, Duration{0}, version(v["version"])});
      return;
    }
    if (op == "pause") return add(FaultKind::pause, {node(v, "pause")});
    if (op == "resume") return add(FaultKind::resume, {node(v, "resume")});
    if (op == "partition") return add(FaultKind::partition, nodes(v, "partition (the nodes of one side)"));
    if (op == "isolate" && v.IsMap()) {  // from some peers only
      keys(v, {"node", "from"}, "isolate");
      if (!v["node"] || !v["from"]) fail(v, "isolate needs node and from (the peers it is cut from)");
      return add(FaultKind::isolate, {node(v["node"], "isolate.node")}, nodes(v["from"], "isolate.from"));
    }
    if (op == "isolate") {
      const uint32_t n = node(v, "isolate");
      std::vector<uint32_t> others;
      for (int i = 0; i < nodes_; ++i)
        if (static_cast<uint32_t>(i) != n) others.push_back(static_cast<uint32_t>(i));
      return add(FaultKind::isolate, {n}, others);
    }
    if (op == "cut") {
      keys(v, {"from", "to"}, "cut (one way)");
      if (!v["from"] || !v["to"]) fail(v, "cut needs from and to");
      return add(FaultKind::block, {node(v["from"], "cut.from")}, {node(v["to"], "cut.to")});
    }
    if (op == "heal") return add(FaultKind::heal);
    if (op == "loss") return add(FaultKind::loss, {}, {}, number(v, "loss", 0, 1));
    if (op == "skew") {
      keys(v, {"node", "by"}, "skew");
      if (!v["node"] || !v["by"]) fail(v, "skew needs node and by (e.g. {node: 1, by: -2s})");
      std::string by = str(v["by"], "skew.by");
      const bool negative = !by.empty() && by[0] == '-';
      Duration d = duration(YAML::Node(negative ? by.substr(1) : by), "skew.by");
      return add(FaultKind::clock_skew, {node(v["node"], "skew.node")}, {}, 0, negative ? -d : d);
    }
    if (op == "drift") {
      keys(v, {"node", "ppm"}, "drift");
      if (!v["node"] || !v["ppm"]) fail(v, "drift needs node and ppm (e.g. {node: 1, ppm: 200})");
      return add(FaultKind::clock_drift, {node(v["node"], "drift.node")}, {},
                 number(v["ppm"], "drift.ppm", -99'999, 99'999));
    }
    if (op == "set_config") {
      keys(v, {"nodes", "setting", "value"}, "set_config");
      if (!v["setting"] || !v["value"]) fail(v, "set_config needs setting and value");
      return add(FaultKind::set_config,
                 v["nodes"] ? nodes(v["nodes"], "set_config.nodes") : nodes(YAML::Node("all"), ""), {}, 0, Duration{0},
                 setting_name(v["setting"]) + "=" + json_value(v["value"]));
    }
    if (op == "reload") return add(FaultKind::reload, nodes(v, "reload"));
    if (op == "recycle") return add(FaultKind::recycle, nodes(v, "recycle"));
    if (op == "switch_datasource") {  // every node's config.json points DataSource at `to`, which leaves the replicas
      keys(v, {"to", "nodes"}, "switch_datasource");
      const std::string to = database(v["to"], "switch_datasource.to");
      return add(FaultKind::set_config,
                 v["nodes"] ? nodes(v["nodes"], "switch_datasource.nodes") : nodes(YAML::Node("all"), ""), {}, 0,
                 Duration{0}, "SqlSettings.DataSource=\"" + to + "\"");
    }
    if (op == "db_stop") return add(FaultKind::db_stop, {}, {}, 0, Duration{0}, database(v, "db_stop"));
    if (op == "db_start") return add(FaultKind::db_start, {}, {}, 0, Duration{0}, database(v, "db_start"));
    if (op == "db_promote") return add(FaultKind::db_promote, {}, {}, 0, Duration{0}, database(v, "db_promote"));
    if (op == "db_lag") {
      keys(v, {"db", "lag"}, "db_lag");
      if (!v["db"] || !v["lag"]) fail(v, "db_lag needs db and lag");
      return add(FaultKind::db_lag, {}, {}, 0, duration(v["lag"], "db_lag.lag"), database(v["db"], "db_lag.db"));
    }
    if (op == "db_slow") {
      keys(v, {"db", "factor"}, "db_slow");
      if (!v["db"] || !v["factor"]) fail(v, "db_slow needs db and factor");
      return add(FaultKind::db_slow, {}, {}, number(v["factor"], "db_slow.factor", 1, 1e6), Duration{0},
                 database(v["db"], "db_slow.db"));
    }
    if (op == "lb_only") return add(FaultKind::lb_only, nodes(v, "lb_only"));
    if (op == "lb_all") return add(FaultKind::lb_only);
    if (op == "lb_stop") return add(FaultKind::lb_stop);
    if (op == "lb_start") return add(FaultKind::lb_start);
    if (op == "drop_clients") return add(FaultKind::drop_clients, {node(v, "drop_clients")});
    if (op == "files_down") return add(FaultKind::files_down);
    if (op == "files_up") return add(FaultKind::files_up);
    if (op == "files_slow") return add(FaultKind::files_slow, {}, {}, 0, duration(v, "files_slow"));
    fail(key, fmt::format("unknown operation \"{}\"; expected one of: kill, restart, stop, start, upgrade, pause, "
                          "resume, partition, isolate, cut, "
                          "heal, loss, skew, drift, set_config, reload, recycle, switch_datasource, db_stop, db_start, "
                          "db_promote, db_lag, db_slow, "
                          "lb_only, lb_all, lb_stop, lb_start, drop_clients, files_down, files_up, files_slow",
                          op));
  }

  void random_faults(const YAML::Node& r, Scenario& sc) {
    keys(r, {"from", "until", "per_second", "families", "nodes"}, "random_faults");
    RandomFaults rf;
    rf.from = r["from"] ? duration(r["from"], "from") : Duration{0};
    rf.until = r["until"] ? duration(r["until"], "until") : sc.workload_until - Duration{10'000'000};
    if (rf.until <= rf.from) fail(r, "random_faults: until must be after from");
    if (rf.until > sc.duration)
      fail(r["until"] ? r["until"] : r, "random_faults.until is after the end of the scenario");
    if (r["per_second"]) rf.per_second = number(r["per_second"], "per_second", 0.001, 100);
    if (!r["families"] || !r["families"].IsSequence())
      fail(r, "random_faults needs families: a list of crash, pause, partition, loss, clock");
    rf.families = fault::SwarmOptions{};
    rf.families.allow_crash = rf.families.allow_pause = rf.families.allow_partition = rf.families.allow_loss =
        rf.families.allow_clock = false;
    for (const auto& f : r["families"]) {
      const std::string name = str(f, "family");
      if (name == "crash")
        rf.families.allow_crash = true;
      else if (name == "pause")
        rf.families.allow_pause = true;
      else if (name == "partition")
        rf.families.allow_partition = true;
      else if (name == "loss")
        rf.families.allow_loss = true;
      else if (name == "clock")
        rf.families.allow_clock = true;
      else
        fail(f,
             fmt::format("unknown fault family \"{}\"; expected one of: crash, pause, partition, loss, clock", name));
    }
    if (r["nodes"]) rf.nodes = nodes(r["nodes"], "random_faults.nodes");
    if (rf.nodes.size() == 1) fail(r["nodes"], "random faults need at least two nodes to choose from");
    if (rf.nodes.empty() && (sc.initial.empty() ? sc.nodes : static_cast<int>(sc.initial.size())) < 2)
      fail(r,
           "random faults need at least two nodes to choose from (the nodes started at time 0, unless `nodes` says)");
    sc.random = rf;
  }

  void expectations(const YAML::Node& list, Scenario& sc) {
    if (!list.IsSequence()) fail(list, "expect must be a list such as [{detect: {node: 1, within: 3s}}]");
    for (const auto& e : list) {
      if (!e.IsMap() || e.size() != 1) fail(e, "an expectation is a map with one key, such as {max_gap: 10s}");
      const auto it = e.begin();
      const std::string kind = it->first.as<std::string>();
      const YAML::Node v = it->second;  // a copy: the iterator hands out a temporary
      Expectation x;
      x.line = static_cast<int>(it->first.Mark().line) + 1;
      using K = Expectation::Kind;
      if (kind == "detect") {
        keys(v, {"node", "within"}, "detect");
        x.kind = K::detect;
        x.node = static_cast<int>(node(v["node"], "detect.node"));
        x.bound = duration(v["within"], "detect.within");
        x.text = fmt::format("n{} declared down by every live peer within {}", x.node, fmt_s(x.bound));
      } else if (kind == "leader") {
        keys(v, {"at", "is", "viewers"}, "leader");
        x.kind = K::leader;
        x.at = duration(v["at"], "leader.at");
        if (x.at > sc.duration) fail(v["at"], "leader.at is after the end of the scenario");
        x.node = static_cast<int>(node(v["is"], "leader.is"));
        if (v["viewers"]) x.viewers = nodes(v["viewers"], "leader.viewers");
        x.text = fmt::format("at {} every live node{} names n{} leader", fmt_s(x.at), viewers_text(x.viewers), x.node);
      } else if (kind == "status") {
        keys(v, {"at", "node", "colour", "viewers"}, "status");
        x.kind = K::status;
        x.at = duration(v["at"], "status.at");
        if (x.at > sc.duration) fail(v["at"], "status.at is after the end of the scenario");
        x.node = v["node"] ? static_cast<int>(node(v["node"], "status.node")) : -1;
        if (v["viewers"]) x.viewers = nodes(v["viewers"], "status.viewers");
        x.colour = str(v["colour"], "status.colour");
        if (x.colour != "red" && x.colour != "green")
          fail(v["colour"], fmt::format("colour is red or green, found \"{}\"", x.colour));
        x.text = x.node >= 0 ? fmt::format("at {} the live peers{} show n{} {}", fmt_s(x.at), viewers_text(x.viewers),
                                           x.node, x.colour)
                             : fmt::format("at {} every live node{} shows every live peer {}", fmt_s(x.at),
                                           viewers_text(x.viewers), x.colour);
      } else if (kind == "max_failed") {
        x.kind = K::max_failed;
        std::string s = str(v, "max_failed");
        const bool percent = !s.empty() && s.back() == '%';
        x.value = number(YAML::Node(percent ? s.substr(0, s.size() - 1) : s), "max_failed", 0, percent ? 100 : 1) /
                  (percent ? 100 : 1);
        x.text = fmt::format("failed client requests at most {:.2f}%", x.value * 100);
      } else if (kind == "max_gap") {
        x.kind = K::max_gap;
        x.bound = duration(v, "max_gap");
        x.text = fmt::format(
            "no client goes unserved for more than {} (from its first failed request to its last one before a success)",
            fmt_s(x.bound));
      } else if (kind == "max_downtime") {
        x.kind = K::max_downtime;
        x.bound = duration(v, "max_downtime");
        x.text = fmt::format(
            "the cluster serves nobody for at most {} (downtime: failures with no success of any client between)",
            fmt_s(x.bound));
      } else if (kind == "max_p99") {
        x.kind = K::max_p99;
        x.bound = duration(v, "max_p99");
        x.text = fmt::format("p99 request latency at most {}", fmt_s(x.bound));
      } else if (kind == "max_resyncs") {
        x.kind = K::max_resyncs;
        x.value = integer(v, "max_resyncs", 0, 100000000);
        x.text = fmt::format("at most {} re-syncs (new connections where a resume was asked for)", x.value);
      } else if (kind == "min_jobs") {
        x.kind = K::min_jobs;
        x.value = integer(v, "min_jobs", 0, 1000000);
        x.text = fmt::format("at least {} probe jobs completed", x.value);
      } else {
        fail(it->first, fmt::format("unknown expectation \"{}\"; expected one of: detect, leader, status, max_failed, "
                                    "max_gap, max_downtime, "
                                    "max_p99, max_resyncs, min_jobs",
                                    kind));
      }
      sc.expect.push_back(x);
    }
  }

  static std::string viewers_text(const std::vector<uint32_t>& v) {
    return v.empty() ? "" : fmt::format(" of n{}", fmt::join(v, ", n"));
  }

  static std::string fmt_s(Duration d) { return fmt::format("{:g}s", static_cast<double>(d.count()) / 1e6); }

  std::string file_;
  int nodes_ = 3;
  std::set<std::string> databases_{"db1"};
};

}  // namespace

ScenarioParse parse_scenario_text(const std::string& text, const std::string& file_name) {
  ScenarioParse out;
  Parser p(file_name);
  try {
    const YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) {
      out.errors.push_back(
          fmt::format("{}:1:1: a scenario file is a YAML map (name, topology, workload, timeline, expect)", file_name));
      return out;
    }
    out.scenario = p.parse(root);
  } catch (const ParseError& e) {
    out.errors.push_back(e.text);
  } catch (const YAML::Exception& e) {
    out.errors.push_back(fmt::format("{}:{}:{}: {}", file_name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  return out;
}

ScenarioParse parse_scenario_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ScenarioParse{std::nullopt, {fmt::format("{}: cannot read the file", path)}};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_scenario_text(ss.str(), path);
}

std::string schedule_yaml(const std::vector<fault::Fault>& schedule) {
  using fault::FaultKind;
  if (schedule.empty()) return "timeline: []\n";  // a bare `timeline:` is null, which a scenario refuses
  std::string out = "timeline:\n";
  for (const auto& f : schedule) {
    const std::string at = fmt::format("{}us", f.at.count());
    auto list = [](const std::vector<uint32_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); };
    const uint32_t n = f.nodes.empty() ? 0 : f.nodes[0];
    std::string op;
    switch (f.kind) {
      case FaultKind::crash:
        op = fmt::format("kill: {}", n);
        break;
      case FaultKind::restart:
        op = fmt::format("restart: {}", n);
        break;
      case FaultKind::stop:
        op = fmt::format("stop: {}", n);
        break;
      case FaultKind::start:
        op = f.text.empty() ? fmt::format("start: {}", n) : fmt::format("start: {{node: {}, version: {}}}", n, f.text);
        break;
      case FaultKind::pause:
        op = fmt::format("pause: {}", n);
        break;
      case FaultKind::resume:
        op = fmt::format("resume: {}", n);
        break;
      case FaultKind::partition:
        op = fmt::format("partition: {}", list(f.nodes));
        break;
      case FaultKind::isolate:
        op = fmt::format("isolate: {{node: {}, from: {}}}", n, list(f.peers));
        break;
      case FaultKind::block:
        op = fmt::format("cut: {{from: {}, to: {}}}", n, f.peers.empty() ? 0 : f.peers[0]);
        break;
      case FaultKind::heal:
        op = "heal: true";
        break;
      case FaultKind::loss:
        op = fmt::format("loss: {}", f.value);
        break;
      case FaultKind::clock_skew:
        op = fmt::format("skew: {{node: {}, by: {}us}}", n, f.amount.count());
        break;
      case FaultKind::clock_drift:
        op = fmt::format("drift: {{node: {}, ppm: {}}}", n, f.value);
        break;
      case FaultKind::set_config: {
        const auto eq = f.text.find('=');
        op = fmt::format("set_config: {{nodes: {}, setting: {}, value: {}}}", list(f.nodes), f.text.substr(0, eq),
                         f.text.substr(eq + 1));  // JSON is YAML
        break;
      }
      case FaultKind::reload:
        op = fmt::format("reload: {}", list(f.nodes));
        break;
      case FaultKind::recycle:
        op = fmt::format("recycle: {}", list(f.nodes));
        break;
      case FaultKind::db_stop:
        op = "db_stop: " + f.text;
        break;
      case FaultKind::db_start:
        op = "db_start: " + f.text;
        break;
      case FaultKind::db_promote:
        op = "db_promote: " + f.text;
        break;
      case FaultKind::db_lag:
        op = fmt::format("db_lag: {{db: {}, lag: {}us}}", f.text, f.amount.count());
        break;
      case FaultKind::db_slow:
        op = fmt::format("db_slow: {{db: {}, factor: {}}}", f.text, f.value);
        break;
      case FaultKind::lb_only:
        op = f.nodes.empty() ? "lb_all: true" : fmt::format("lb_only: {}", list(f.nodes));
        break;
      case FaultKind::lb_stop:
        op = "lb_stop: true";
        break;
      case FaultKind::files_down:
        op = "files_down: true";
        break;
      case FaultKind::files_up:
        op = "files_up: true";
        break;
      case FaultKind::files_slow:
        op = fmt::format("files_slow: {}ms", to_ms(f.amount));
        break;
      case FaultKind::lb_start:
        op = "lb_start: true";
        break;
      case FaultKind::drop_clients:
        op = fmt::format("drop_clients: {}", n);
        break;
    }
    out += fmt::format("  - {{at: {}, {}}}\n", at, op);
  }
  return out;
}

}  // namespace chorus::sim
