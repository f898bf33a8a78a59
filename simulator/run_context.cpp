// The shared state of one scenario run: violations, the truth about the nodes, and node control.
#include "simulator/run_context.h"

#include <algorithm>
#include <boost/json.hpp>

namespace chorus::sim {

namespace json = boost::json;

std::string json_field(const std::string& body, const char* key) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return "";
  const auto* f = v.as_object().if_contains(key);
  return f && f->is_string() ? std::string(f->as_string()) : "";
}

RunContext::RunContext(const Scenario& scenario, const RunOptions& options, ChatCluster& cluster, RunResult& run_result)
    : sc(scenario), o(options), c(cluster), k(cluster.kernel()), result(run_result) {
  start_time.assign(static_cast<size_t>(sc.nodes), Duration{-1});
  loaded_hash.assign(static_cast<size_t>(sc.nodes), "");
}

void RunContext::violation(const std::string& checker, const std::string& what, std::optional<Duration> at,
                           std::string kind) {
  if (result.violations.size() >= 200) return;
  Violation v{at ? *at : k.now() - t0, checker, what, std::move(kind)};
  const auto place = std::upper_bound(result.violations.begin(), result.violations.end(), v.at,
                                      [](Duration t, const Violation& x) { return t < x.at; });
  result.violations.insert(place, std::move(v));  // kept in time order
}

int64_t RunContext::wall_ms() const { return (k.options().wall_epoch_us + k.now().count()) / 1000; }

bool RunContext::live(int n) const {
  auto* nd = c.node(n);
  return nd && nd->started() && k.state(static_cast<NodeIndex>(n)) == NodeState::up;
}

std::optional<bool> RunContext::shown_green(int viewer, int peer) const {
  for (const auto& p : c.node(viewer)->status().peers())
    if (p.info.address == c.address(peer)) return p.green;
  return std::nullopt;
}

void RunContext::boot(int n) {
  start_time[static_cast<size_t>(n)] = k.now();
  loaded(n);
  k.start(static_cast<NodeIndex>(n));
}

void RunContext::loaded(int n) {
  auto cfg = config::load_config_text(c.node_config_file(n), "config.json", {});
  loaded_hash[static_cast<size_t>(n)] = cfg.ok() ? cfg.value.hash : "unloadable";
  if (cfg.ok()) master = cfg.value.config.SqlSettings.DataSource;
}

void RunContext::set_setting(int n, const std::string& key, const std::string& value_json) {
  auto& file = c.node_config_file(n);
  json::value v = json::parse(file);
  const auto dot = key.find('.');
  auto& section = v.as_object()[key.substr(0, dot)];
  if (!section.is_object()) section = json::object{};
  section.as_object()[key.substr(dot + 1)] = json::parse(value_json);
  file = json::serialize(v);
}

void RunContext::on_node(int n, std::function<void(node::Node&)> fn) {
  if (!c.node(n)) return;
  k.call_on_node(static_cast<NodeIndex>(n), k.incarnation(static_cast<NodeIndex>(n)), k.now_us(),
                 [this, n, fn = std::move(fn)] {
                   if (auto* nd = c.node(n)) fn(*nd);
                 });
}

}  // namespace chorus::sim
