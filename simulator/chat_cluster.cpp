#include "simulator/chat_cluster.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "server/core/codec.h"

namespace chorus::sim {

namespace json = boost::json;

SimSocket::~SimSocket() {
  // A client that goes away: the node sees the socket close (if that node still runs).
  if (session && node_alive()) session->on_closed();
}

bool SimSocket::node_alive() const {
  return kernel && kernel->process(node) && kernel->incarnation(node) == incarnation;
}

void SimSocket::send_text(std::string text) {
  if (close_code) return;
  if (kernel)  // what clients receive is part of the run's trace
    kernel->record(TraceKind::client, node, kNoNode,
                   fnv1a64(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  received.push_back(std::move(text));
  if (!reading) ++unread;
}

void SimSocket::close(uint16_t code, std::string reason) {
  if (close_code) return;
  close_code = code;
  close_reason = std::move(reason);
  // As the runtime does: the session learns of the close, then goes.
  if (session) {
    auto s = std::move(session);
    s->on_closed();
  }
}

ChatCluster::ChatCluster(ChatClusterOptions options) : options_(std::move(options)) {
  Kernel::Options o;
  o.seed = options_.seed;
  o.keep_trace = options_.keep_trace;
  o.log_sink = options_.log_sink;
  k_ = std::make_unique<Kernel>(o);
  k_->databases().add(DbServerOptions{.name = "db1", .service_time = options_.db_service_time});
  for (const auto& r : options_.replicas)
    k_->databases().add(DbServerOptions{.name = r, .service_time = options_.db_service_time, .primary = "db1"});
  for (int i = 0; i < options_.nodes; ++i) addresses_.push_back(fmt::format("10.0.0.{}:8074", i + 1));
  config::Config base;
  // The simulated servers are SQLite databases: the nodes speak SQLite's dialect to them (the FTS5 search
  // index, for one), with the same routing, pools and failover as for PostgreSQL.
  base.SqlSettings.DriverName = "sqlite3";
  base.SqlSettings.DataSource = "db1";
  for (const auto& r : options_.replicas) base.SqlSettings.DataSourceReplicas.push_back(r);
  base.SqlSettings.QueryTimeout = 5;
  base.SqlSettings.ReplicaMonitorIntervalSeconds = 1;
  base.ClusterSettings.Enable = true;
  base.ClusterSettings.ClusterName = "sim";
  base.LogSettings.EnableConsole = false;
  config_file_ = config::to_json(base);
  for (int i = 0; i < options_.nodes; ++i) {
    config::Config c = base;
    if (options_.configure) options_.configure(c, i);
    configs_.push_back(c);
    node_files_.push_back(config::to_json(c));
    const auto v = static_cast<size_t>(i);
    versions_.push_back(v < options_.versions.size() && !options_.versions[v].empty() ? options_.versions[v] : "0.1.0");
    k_->add_node(addresses_[static_cast<size_t>(i)], [this, i](Env& env) {
      // A node boots from its config.json as it is now (per_node_config), or from its configured copy.
      const std::string text = options_.per_node_config ? node_files_[static_cast<size_t>(i)]
                                                        : config::to_json(configs_[static_cast<size_t>(i)]);
      auto loaded = config::load_config_text(text, "sim", {});
      if (!loaded.ok())
        throw std::runtime_error("node " + std::to_string(i) +
                                 ": its config.json does not load: " + loaded.error.text());
      node::NodeOptions no;
      no.advertise = env.node_name();
      no.hostname = no.advertise.substr(0, no.advertise.rfind(':'));
      no.version = versions_[static_cast<size_t>(i)];
      if (options_.migrations_for) no.extra_migrations = options_.migrations_for(no.version);
      if (!options_.discovery_only) {
        no.peers = addresses_;
        no.peers.erase(no.peers.begin() + i);
      }
      no.read_config = [this, i] { return Result<std::string, Failure>{{}, node_config_file(i)}; };
      no.write_config = [this, i](const std::string& text) {
        node_config_file(i) = text;
        return Failure{};
      };
      // chorusd exits when it cannot go on: here the node crashes, just after the callback that said so.
      no.on_fatal = [this, i](const std::string& why) {
        const auto index = static_cast<NodeIndex>(i);
        const uint32_t incarnation = k_->incarnation(index);
        k_->at(k_->now(), [this, index, incarnation] {
          if (k_->incarnation(index) == incarnation && k_->state(index) != NodeState::down) k_->crash(index);
        });
        if (options_.on_fatal) options_.on_fatal(i, why);
      };
      no.app = options_.app;
      no.app.bcrypt_cost = 4;
      no.jobs = options_.jobs;
      no.messenger = options_.messenger;
      auto n = std::make_unique<node::Node>(env, std::move(loaded.value), no);
      if (options_.setup_node) options_.setup_node(*n, i);
      return n;
    });
  }
}

ChatCluster::~ChatCluster() = default;

node::Node* ChatCluster::node(int i) { return dynamic_cast<node::Node*>(k_->process(static_cast<NodeIndex>(i))); }

bool ChatCluster::start_all(Duration limit) {
  for (int i = 0; i < size(); ++i) k_->start(static_cast<NodeIndex>(i));
  return k_->run_until(
      [&] {
        for (int i = 0; i < size(); ++i) {
          auto* n = node(i);
          if (!n || !n->started()) return false;
          int alive = 0;
          for (const auto& [addr, m] : n->membership().members()) alive += m.state == cluster::MemberState::alive;
          if (alive != size() - 1) return false;
        }
        return true;
      },
      k_->now() + limit);
}

void ChatCluster::call_async(int i, const std::string& method, const std::string& target, const std::string& body,
                             const std::string& token, std::function<void(api::Response)> done) {
  api::Request r;
  r.method = method;
  const auto q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) {
    std::string rest = target.substr(q + 1);
    size_t pos = 0;
    while (pos <= rest.size()) {
      const size_t end = std::min(rest.find('&', pos), rest.size());
      const std::string kv = rest.substr(pos, end - pos);
      const auto eq = kv.find('=');
      if (!kv.empty()) r.query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
      pos = end + 1;
    }
  }
  r.body = body;
  if (!token.empty()) r.headers.emplace_back("authorization", "BEARER " + token);
  request_async(i, std::move(r), std::move(done));
}

api::Response ChatCluster::request(int i, api::Request r, Duration limit) {
  auto out = std::make_shared<std::optional<api::Response>>();
  request_async(i, std::move(r), [out](api::Response resp) { *out = std::move(resp); });
  k_->run_until([&] { return out->has_value(); }, k_->now() + limit);
  if (!*out) return api::Response{0, {}, "no answer"};
  return **out;
}

void ChatCluster::request_async(int i, api::Request r, std::function<void(api::Response)> done) {
  if (r.remote.empty()) r.remote = "client";
  r.headers.emplace_back("x-requested-with", "XMLHttpRequest");
  auto* n = node(i);
  if (!n) return done(api::Response{0, {}, "node down"});
  // On the node's loop, as a request arriving from the network: held while the node is paused, never
  // handled if the node dies first (the client then sees no answer).
  const auto index = static_cast<NodeIndex>(i);
  // The answer is part of the run's trace (status and body).
  auto traced = [k = k_.get(), index, done = std::move(done)](api::Response resp) {
    const std::string text = std::to_string(resp.status) + ' ' + resp.body;
    k->record(TraceKind::client, index, kNoNode,
              fnv1a64(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
    done(std::move(resp));
  };
  k_->call_on_node(index, k_->incarnation(index), k_->now_us(),
                   [this, i, r = std::move(r), done = std::move(traced)]() mutable {
                     if (auto* live = node(i)) live->api().handle(std::move(r), std::move(done));
                   });
}

api::Response ChatCluster::call(int i, const std::string& method, const std::string& target, const std::string& body,
                                const std::string& token, Duration limit) {
  auto out = std::make_shared<std::optional<api::Response>>();
  call_async(i, method, target, body, token, [out](api::Response resp) { *out = std::move(resp); });
  k_->run_until([&] { return out->has_value(); }, k_->now() + limit);
  if (!*out) return api::Response{0, {}, "no answer"};
  return **out;
}

std::string ChatCluster::signup_and_login(int i, const std::string& username, std::string* user_id) {
  const auto created =
      call(i, "POST", "/api/v4/users",
           json::serialize(json::object{
               {"username", username}, {"email", username + "@example.com"}, {"password", "password-" + username}}));
  auto login = call(i, "POST", "/api/v4/users/login",
                    json::serialize(json::object{{"login_id", username}, {"password", "password-" + username}}));
  if (login.status != 200) return "";
  if (user_id) *user_id = std::string(json::parse(login.body).as_object().at("id").as_string());
  for (const auto& [k, v] : login.headers)
    if (k == "Token") return v;
  return "";
}

std::unique_ptr<SimSocket> ChatCluster::connect(int i, const std::string& token, const std::string& connection_id,
                                                int64_t sequence_number) {
  auto s = std::make_unique<SimSocket>();
  s->node = static_cast<NodeIndex>(i);
  s->kernel = k_.get();
  s->incarnation = k_->incarnation(s->node);
  api::Request r;
  r.method = "GET";
  r.path = "/api/v4/websocket";
  if (!connection_id.empty()) {
    r.query["connection_id"] = connection_id;
    r.query["sequence_number"] = std::to_string(sequence_number);
  }
  auto* n = node(i);
  if (!n) return s;
  api::Response refusal;
  s->session = n->api().open_socket(r, *s, refusal);
  if (!s->session) {
    s->close_code = static_cast<uint16_t>(refusal.status);
    return s;
  }
  send(*s, json::serialize(json::object{
               {"action", "authentication_challenge"}, {"seq", 1}, {"data", json::object{{"token", token}}}}));
  return s;
}

void ChatCluster::disconnect(SimSocket& socket) {
  if (!socket.session) return;
  auto s = std::move(socket.session);
  socket.close_code = 1006;
  if (socket.node_alive()) s->on_closed();
}

void ChatCluster::send(SimSocket& socket, const std::string& text) {
  if (socket.session && socket.node_alive()) socket.session->on_text(text);
}

std::vector<std::string> events_of(const SimSocket& s, const std::string& event) {
  std::vector<std::string> out;
  for (const auto& f : s.received) {
    boost::system::error_code ec;
    auto v = json::parse(f, ec);
    if (ec || !v.is_object() || !v.as_object().contains("event")) continue;
    const std::string e(v.as_object().at("event").as_string());
    if (event.empty() || e == event) out.push_back(f);
  }
  return out;
}

std::vector<int64_t> seqs_of(const SimSocket& s) {
  std::vector<int64_t> out;
  for (const auto& f : events_of(s)) out.push_back(json::parse(f).as_object().at("seq").as_int64());
  return out;
}

}  // namespace chorus::sim
