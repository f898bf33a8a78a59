#include "server/node/node.h"

#include <boost/json.hpp>

#include "server/cluster/cluster_key.h"
#include "server/jobs/job_kinds.h"

namespace chorus::node {

namespace json = boost::json;

Node::Node(Env& env, config::LoadedConfig config, NodeOptions options)
    : env_(env), config_(std::move(config)), options_(std::move(options)), started_with_(config_.config) {
  const auto& cfg = config_.config;
  store_ = std::make_unique<store::Store>(
      env_, cfg.SqlSettings, store::StoreOptions{options_.advertise, options_.version, {}, options_.extra_migrations});
  membership_ = std::make_unique<cluster::Membership>(
      env_, options_.advertise, static_cast<uint64_t>(env_.wall_now().us), options_.membership,
      [this](const cluster::Member& m) { on_member_change(m); },
      [this](const std::string& leader) {
        // The bully leader runs the job scheduler (every node keeps RunScheduler on, as in Mattermost).
        if (job_server_) job_server_->set_leader(leader == options_.advertise);
      });
  status_ = std::make_unique<cluster::ClusterStatus>(
      env_, cluster::NodeInfo{options_.advertise, options_.version, "", config_.hash, options_.hostname}, *membership_);
  status_->set_remove_dead_after(Duration{cfg.ClusterSettings.RemoveDeadNodesAfterSeconds * 1'000'000});
  messenger_ = std::make_unique<cluster::Messenger>(env_, *membership_, options_.messenger);
  PingNode::Options ping;
  ping.start_transport = false;
  ping_ = std::make_unique<PingNode>(env_, options_.peers, ping);
  app::HubOptions hub;
  hub.server_version = options_.version;
  hub.hostname = options_.advertise;  // unique per node, also when several share a machine
  hub_ = std::make_unique<app::Hub>(env_, hub);
  app_ = std::make_unique<app::App>(env_, *store_, config_.config, *hub_, options_.app);
  app_->set_messenger(messenger_.get());
  // A peer's new message stream: it declared us dead (while we never thought it dead: an asymmetric
  // failure, random-faults seed 3) and dropped the events it had for us; or it sees us for the first
  // time (we restarted, or joined) and sent nothing to our clients before (seed 14211). Either way our
  // clients re-sync what they missed.
  messenger_->on_new_stream([this](const std::string& from, bool replaced) {
    if (!hub_ || !started_) return;
    const size_t n = hub_->reset_all();
    if (n > 0)
      env_.log().info("hub: {} {}: {} WebSocket connections reset so their clients re-sync", from,
                      replaced ? "started a new message stream to us (it lost what it had for us)"
                               : "opened its message stream to us",
                      n);
  });
  messenger_->subscribe("", [this](const std::string& from, const cluster::ClusterMessage& m) {
    if (m.kind() == cluster::ClusterEvent::config_changed) {
      // A peer saved config.json through the API (ReadOnlyConfig off): read it again.
      reload_config_for(from + " changed the config");
      return;
    }
    app_->on_cluster_message(from, m);
  });
  jobs_ = std::make_unique<app::Jobs>(env_, *store_);
  auto jo = options_.jobs;
  jo.worker_id = options_.advertise;
  // Chorus's own setting: how long a running job may go without a step before the rule recovers it.
  if (jo.stuck_after == jobs::JobServerOptions{}.stuck_after)
    jo.stuck_after = Duration{cfg.JobSettings.WorkerTimeoutSeconds * 1'000'000};
  job_server_ = std::make_unique<jobs::JobServer>(env_, *store_, config_.config, jo);
  jobs::add_standard_kinds(*job_server_);
  api::ApiOptions ao{options_.version, options_.advertise};
  ao.secure_cookies = cfg.ServiceSettings.SiteURL.rfind("https://", 0) == 0;
  api_ = std::make_unique<api::Api>(env_, *app_, *hub_, *jobs_, *this, ao);
  const auto& cs = cfg.ClusterSettings;
  if (cs.Enable) {
    cluster::DiscoveryOptions d;
    d.cluster_name = cs.ClusterName;
    d.hostname = options_.hostname;
    d.gossip_port = cs.GossipPort;
    discovery_ = std::make_unique<cluster::Discovery>(
        env_, *store_, d, [this, name = cs.ClusterName](const std::vector<cluster::DiscoveredNode>& found) {
          std::vector<std::string> all = options_.peers;
          for (const auto& n : found) all.push_back(n.address());
          env_.log().info("discovery: {} peers in cluster \"{}\"", found.size(), name);
          ping_->set_peers(all);
          for (const auto& n : found) membership_->add_seed(n.address());
        });
    discovery_->on_heartbeats([this](const std::vector<cluster::Heartbeat>& beats) { on_heartbeats(beats); });
    discovery_->set_reach(options_.advertise, {options_.advertise}, false);
  }
}

Node::~Node() { *alive_ = false; }

void Node::start() {
  auto fatal = [this](const std::string& why) {
    env_.log().error("chorusd: cannot start: {}", why);
    if (options_.on_fatal) options_.on_fatal(why);
  };
  store_->start([this, alive = alive_, fatal](db::Error error) {
    if (!*alive) return;
    if (error.status != db::Status::ok) return fatal(error.message);
    env_.log().info("chorusd: database ready, schema {}", store_->schema_version());
    cluster::load_cluster_key(env_, *store_, [this, alive, fatal](std::string key, db::Error e) {
      if (!*alive) return;
      if (e.status != db::Status::ok) return fatal(e.message);
      const auto& cs = config_.config.ClusterSettings;
      // Only processes holding the cluster's key (from its database) and its ClusterName may gossip.
      if (options_.use_cluster_key)
        options_.use_cluster_key(cs.ClusterName, key, cs.EnableExperimentalGossipEncryption);
      if (cs.EnableExperimentalGossipEncryption)
        env_.log().info("gossip: frames sealed with AES-256-GCM under the cluster key");
      env_.transport().start(*this);
      ping_->start();
      for (const auto& p : options_.peers) membership_->add_seed(p);
      membership_->start();
      auto info = status_->self();
      info.schema_version = store_->schema_version();
      status_->set_self(info);
      status_->start();
      job_server_->set_leader(membership_->leader() == options_.advertise);
      job_server_->start();
      started_ = true;
      if (cluster_enabled())
        env_.set_timer(options_.shared_files_first, [this, alive] {
          if (*alive) check_shared_files();
        });
      if (discovery_)
        discovery_->start([this, alive, fatal](db::Error e2) {
          if (*alive && e2.status != db::Status::ok) fatal(e2.message);
        });
    });
  });
}

void Node::stop(Task done) {
  if (stopping_) return;
  stopping_ = true;
  api_->drain();
  hub_->shutdown();
  job_server_->stop();  // a job in progress goes back to the queue for another node
  if (!started_) return done();
  status_->stop();
  membership_->leave();  // the others move the leadership at once
  // Let the leave notices (and the last reliable messages) reach the wire before the sockets close.
  env_.set_timer(options_.leave_drain, [this, alive = alive_, done] {
    if (!*alive) return;
    ping_->stop([this, alive, done] {
      if (!*alive) return;
      env_.transport().stop();
      if (!discovery_) return done();
      discovery_->stop(done);  // removes our ClusterDiscovery row
    });
  });
}

// Each frame to its protocol by its first byte (server/cluster/wire.h); the ping layer counts and logs
// what no protocol knows (garbage on the gossip port).
void Node::on_frame(const std::string& from, std::span<const uint8_t> payload) {
  using cluster::FrameType;
  const auto type = cluster::frame_type(payload);
  switch (type.value_or(FrameType::ping)) {
    case FrameType::member_ping:
    case FrameType::member_ack:
    case FrameType::member_ping_req:
    case FrameType::member_gossip:
      membership_->handle_frame(from, payload);
      return;
    case FrameType::status:
      status_->handle_frame(from, payload);
      return;
    case FrameType::message_data:
    case FrameType::message_ack:
      messenger_->handle_frame(from, payload);
      return;
    case FrameType::ping:
    case FrameType::pong:
      ping_->on_frame(from, payload);
      return;
  }
}

void Node::on_peer_up(const std::string& peer) { ping_->on_peer_up(peer); }

void Node::on_peer_down(const std::string& peer) {
  ping_->on_peer_down(peer);
  membership_->on_connection_lost(peer);
}

void Node::on_member_change(const cluster::Member& m) {
  if (status_) status_->on_member_change(m);
  if (messenger_) messenger_->on_member_change(m);
  // A peer declared dead, or back from the dead: whatever invalidations it (or we) missed, the caches
  // forget now (the staleness bound in app.h).
  auto& prev = member_states_[m.address];
  const bool flush = (m.state == cluster::MemberState::dead) != (prev == cluster::MemberState::dead);
  const bool died = m.state == cluster::MemberState::dead && prev != cluster::MemberState::dead;
  const bool revived = m.state != cluster::MemberState::dead && prev == cluster::MemberState::dead;
  auto& generation = member_generations_[m.address];
  const bool restarted = generation != 0 && m.generation != generation;
  generation = m.generation;
  prev = m.state;
  if (flush && app_) app_->on_membership_change();
  // Reliable messages in flight from (or to) that peer are gone with its stream, and while it was
  // declared dead nothing was sent to it: clients on either side may have missed events. They
  // reconnect and re-sync rather than miss them silently.
  if ((died || revived || restarted) && hub_ && started_) {
    const size_t n = hub_->reset_all();
    if (n > 0)
      env_.log().info("hub: {} {}: {} WebSocket connections reset so their clients re-sync", m.address,
                      died      ? "died"
                      : revived ? "is back"
                                : "restarted",
                      n);
  }
}

std::set<std::string> Node::reach_group() const {
  std::set<std::string> group{options_.advertise};
  for (const auto& [address, m] : membership_->members())
    if (m.state != cluster::MemberState::dead && m.heard) group.insert(address);  // a seed never heard is no proof
  return group;
}

void Node::on_heartbeats(const std::vector<cluster::Heartbeat>& beats) {
  if (!started_ || stopping_) return;
  const auto group = reach_group();
  const auto verdict = reach_.evaluate(options_.advertise, group, beats);
  if (verdict.cut_off && cut_off_reason_.empty()) {
    cut_off_reason_ = verdict.reason;
    const size_t n = hub_->reset_all();
    env_.log().warn(
        "cluster: {}; this node stops serving (ping unhealthy, requests 503) and closed {} WebSocket connections",
        verdict.reason, n);
  } else if (!verdict.cut_off && !cut_off_reason_.empty()) {
    cut_off_reason_.clear();
    env_.log().info("cluster: reaching the part of the cluster that serves again; this node serves");
  } else if (verdict.cut_off) {
    cut_off_reason_ = verdict.reason;
  }
  // A node we hold dead has stopped serving: what it acknowledged before, our clients never heard of.
  if (!verdict.stopped_serving.empty() && cut_off_reason_.empty()) {
    const size_t n = hub_->reset_all();
    if (n > 0)
      env_.log().info(
          "hub: {} is cut off from us and stopped serving: {} WebSocket connections reset so their clients re-sync",
          verdict.stopped_serving.front(), n);
  }
  discovery_->set_reach(options_.advertise, group, !cut_off_reason_.empty());
}

// ---------------------------------------------------------------------------------------------------
// Is the file store shared? Each node writes its marker; a live peer's marker that stays missing means
// the nodes do not see the same files (each its own local directory, or different buckets): uploads made
// through one node would be missing through another.

std::string Node::marker_path(const std::string& node) {
  std::string safe;
  for (char c : node) safe += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return "cluster/" + safe + ".marker";
}

void Node::check_shared_files() {
  if (stopping_) return;
  env_.set_timer(options_.shared_files_every, [this, alive = alive_] {
    if (*alive) check_shared_files();
  });
  env_.files().write(marker_path(options_.advertise), options_.advertise, [this, alive = alive_](std::string error) {
    if (!*alive) return;
    if (!error.empty()) return env_.log().warn("files: cannot write this node's marker to the file store: {}", error);
    auto missing = std::make_shared<std::vector<std::string>>();
    auto pending = std::make_shared<size_t>(0);
    std::vector<std::string> peers;
    for (const auto& p : status_->peers())
      if (p.state != cluster::MemberState::dead) peers.push_back(p.info.address);
    *pending = peers.size();
    for (const auto& peer : peers)
      env_.files().read(marker_path(peer), [this, alive, peer, missing, pending](std::optional<std::string> data,
                                                                                std::string) {
        if (!*alive) return;
        if (!data) missing->push_back(peer);
        if (--*pending == 0 && !missing->empty()) recheck_shared_files(*missing);
      });
  });
}

// A marker missing once may be a peer that has just started: read again a little later, then warn.
void Node::recheck_shared_files(std::vector<std::string> missing) {
  env_.set_timer(options_.shared_files_recheck, [this, alive = alive_, missing] {
    if (!*alive) return;
    for (const auto& peer : missing)
      env_.files().read(marker_path(peer), [this, alive, peer](std::optional<std::string> data, std::string) {
        if (!*alive || data || shared_files_warned_.contains(peer)) return;
        shared_files_warned_.insert(peer);
        ++shared_files_warnings_;
        const auto& fs = config_.config.FileSettings;
        env_.log().warn(
            "files: the file store is not shared with {}: its marker ({}) is missing here. Files uploaded through "
            "one node would be missing through the other: point every node's FileSettings at the same {}",
            peer, marker_path(peer),
            fs.DriverName == "amazons3" ? "bucket (AmazonS3Bucket, AmazonS3Endpoint, AmazonS3PathPrefix)"
                                        : "shared directory (FileSettings.Directory on a NAS every node mounts)");
      });
  });
}

// ---------------------------------------------------------------------------------------------------
// The API's view of the node.

std::vector<api::ClusterNodeRow> Node::cluster_status() const {
  std::vector<api::ClusterNodeRow> rows;
  if (!cluster_enabled()) return rows;
  auto host_of = [](const std::string& address) { return address.substr(0, address.rfind(':')); };
  const MonoTime now = env_.now();
  const WallTime wall = env_.wall_now();
  const std::string& leader = membership_->leader();
  const auto& self = status_->self();
  api::ClusterNodeRow me{self.address, self.version, self.schema_version, self.config_hash, host_of(self.address),
                         self.hostname};
  me.leader = leader == self.address;
  me.last_seen = wall.millis();
  me.restart_required = restart_required_;
  if (!restart_required_.empty()) {
    me.green = false;
    me.reason = "settings changed that take effect at a restart: " + fmt::format("{}", fmt::join(restart_required_, ", "));
  }
  rows.push_back(std::move(me));
  for (const auto& p : status_->peers()) {
    api::ClusterNodeRow row{p.info.address, p.info.version, p.info.schema_version, p.info.config_hash,
                            host_of(p.info.address), p.info.hostname};
    row.green = p.green;
    row.reason = p.reason;
    row.state = cluster::to_string(p.state);
    row.leader = leader == p.info.address && p.state != cluster::MemberState::dead;
    row.last_seen = p.state == cluster::MemberState::alive ? wall.millis() : WallTime{wall.us - (now - p.state_since).count()}.millis();
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<api::DatabaseServerRow> Node::database_status() const {
  std::vector<api::DatabaseServerRow> rows;
  for (const auto& s : store_->router().status())
    rows.push_back(api::DatabaseServerRow{store::to_string(s.role), s.name, s.online, s.reads, s.failures, s.pool.open,
                                          s.pool.idle, s.pool.busy, s.pool.waiting, s.pool.opened, s.pool.closed,
                                          s.pool.connect_failures, s.pool.requests, s.pool.waited, s.pool.rejected});
  return rows;
}

namespace {
constexpr const char* kMasked = "********************************";
}

std::string Node::config_json() const {
  boost::system::error_code ec;
  auto v = json::parse(config::document_with(config_.document, config_.config), ec);
  if (ec || !v.is_object()) return "{}";
  auto& sql = v.as_object()["SqlSettings"].as_object();
  sql["DataSource"] = kMasked;
  json::array masked;
  for (size_t i = 0; i < config_.config.SqlSettings.DataSourceReplicas.size(); ++i) masked.emplace_back(kMasked);
  sql["DataSourceReplicas"] = masked;
  masked.clear();
  for (size_t i = 0; i < config_.config.SqlSettings.DataSourceSearchReplicas.size(); ++i) masked.emplace_back(kMasked);
  sql["DataSourceSearchReplicas"] = masked;
  if (!config_.config.SqlSettings.AtRestEncryptKey.empty()) sql["AtRestEncryptKey"] = kMasked;
  if (!config_.config.FileSettings.AmazonS3SecretAccessKey.empty())
    v.as_object()["FileSettings"].as_object()["AmazonS3SecretAccessKey"] = kMasked;
  return json::serialize(v);
}

bool Node::config_read_only() const {
  const auto& cs = config_.config.ClusterSettings;
  return cs.Enable && cs.ReadOnlyConfig;
}

Failure Node::save_config(const std::string& text) {
  if (!options_.write_config) return Failure{"this node has no config file to write"};
  boost::system::error_code ec;
  auto incoming = json::parse(text, ec);
  if (ec || !incoming.is_object()) return Failure{"the body is not a JSON object"};
  // Start from the file's settings (never the environment's; the settings Chorus does not know kept as
  // they are), merge the change over them.
  auto merged = json::parse(config_.document, ec);
  if (ec) return Failure{"internal: the current config does not serialize"};
  for (auto& [section, settings] : incoming.as_object()) {
    if (!settings.is_object()) return Failure{"section " + std::string(section) + " is not an object"};
    auto& target = merged.as_object()[section];
    if (!target.is_object()) target = json::object{};
    for (auto& [name, value] : settings.as_object()) {
      // A masked secret sent back unchanged keeps the current value.
      if (value.is_string() && value.as_string() == kMasked) continue;
      if (value.is_array() && !value.as_array().empty() && value.as_array()[0].is_string() &&
          value.as_array()[0].as_string() == kMasked)
        continue;
      target.as_object()[name] = value;
    }
  }
  const std::string out = config::pretty_json(json::serialize(merged));
  auto loaded = config::load_config_text(out, "config (API)", options_.environment);
  if (!loaded.ok()) return Failure{loaded.error.text()};
  if (auto errors = store::check_data_sources(loaded.value.config.SqlSettings); !errors.empty())
    return Failure{errors.front()};
  if (Failure written = options_.write_config(out); !written.ok()) return written;
  apply(std::move(loaded.value));
  env_.log().info("config: saved through the API; hash {}", config_.hash);
  messenger_->send_to_all(cluster::ClusterMessage::of(cluster::ClusterEvent::config_changed, config_.hash),
                          cluster::Delivery::reliable);
  return {};
}

Failure Node::reload_config() { return reload_config_for("POST /api/v4/config/reload"); }

// Every attempt is logged with what asked for it and how it ended: a refused file leaves the running
// config as it was, and says why.
Failure Node::reload_config_for(const std::string& why) {
  env_.log().info("config: reloading config.json ({})", why);
  auto refused = [this](Failure f) {
    env_.log().error("config: reload refused, the running config (hash {}) stays: {}", config_.hash, f.message);
    return f;
  };
  if (!options_.read_config) return refused(Failure{"this node has no config file"});
  auto text = options_.read_config();
  if (!text.ok()) return refused(text.error);
  auto loaded = config::load_config_text(text.value, "config.json", options_.environment);
  if (!loaded.ok()) return refused(Failure{loaded.error.text()});
  if (auto errors = store::check_data_sources(loaded.value.config.SqlSettings); !errors.empty())
    return refused(Failure{errors.front()});
  apply(std::move(loaded.value));
  env_.log().info("config: reloaded; hash {}", config_.hash);
  return {};
}

void Node::apply(config::LoadedConfig next) {
  config_ = std::move(next);
  app_->set_config(config_.config);
  job_server_->set_config(config_.config);
  // Data sources and pool limits: the router keeps what did not change (DataSource switch = failover).
  for (const auto& e : store_->reload(config_.config.SqlSettings)) env_.log().error("config: {}", e);
  auto info = status_->self();
  info.config_hash = config_.hash;
  status_->set_self(info);  // peers see the new hash: green again when all agree
  status_->set_remove_dead_after(Duration{config_.config.ClusterSettings.RemoveDeadNodesAfterSeconds * 1'000'000});
  // Settings read only at start: say which ones now differ from what the node runs with (the log, and
  // this node's row of the cluster status, red until a restart).
  auto pending = config::restart_settings_changed(started_with_, config_.config);
  if (pending != restart_required_ && !pending.empty())
    env_.log().warn("config: these settings take effect when the node restarts: {}", fmt::join(pending, ", "));
  else if (pending != restart_required_)
    env_.log().info("config: no setting waits for a restart any more");
  restart_required_ = std::move(pending);
  if (options_.on_config_applied) options_.on_config_applied(config_.config);
}

// The write goes to the master at most once a second, whatever the callers' rate (the ping is
// unauthenticated: a loop of them must not load the master); callers within the second share it.
void Node::check_health(std::function<void(bool, std::string)> done) {
  constexpr Duration kFresh{1'000'000};
  if (health_.known && !health_.running && env_.now() - health_.at < kFresh) return done(health_.ok, health_.detail);
  health_.waiting.push_back(std::move(done));
  if (health_.running) return;
  health_.running = true;
  const std::string name = "health_check_" + options_.advertise;
  store_->write(
      {db::Statement{"DELETE FROM Systems WHERE Name = $1", {name}},
       db::Statement{"INSERT INTO Systems (Name, Value) VALUES ($1, $2)", {name, std::to_string(env_.wall_now().us)}},
       db::Statement{"DELETE FROM Systems WHERE Name = $1", {name}}},
      true, [this, alive = alive_](db::Outcome o) {
        if (!*alive) return;
        health_.running = false;
        health_.known = true;
        health_.at = env_.now();
        health_.ok = o.ok();
        health_.detail = o.ok() ? "" : std::string(db::to_string(o.error.status)) + ": " + o.error.message;
        if (!o.ok()) env_.log().warn("health check: the database does not answer: {}", health_.detail);
        auto waiting = std::move(health_.waiting);
        health_.waiting.clear();
        for (auto& w : waiting) w(health_.ok, health_.detail);
      });
}

}  // namespace chorus::node
