// One Chorus node above the seam: the store, the cluster (discovery, membership, status, messages,
// ping), the app with its WebSocket hub, and the API - wired together, started and stopped in order.
//
// chorusd builds one on the production Env and hands its Api to the Beast server; the simulator builds
// them on simulated Envs. Config file access (reload, save through the API) comes through two
// functions, so the node itself never touches the file system.
//
// Start: the store (migrations), the cluster key, the transport, membership and status, discovery.
// Stop (SIGTERM): the API refuses new work, WebSockets close with 1001, the node announces its leave
// (leadership moves at once), the gossip drains for `leave_drain`, then discovery removes its row.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/api/api.h"
#include "server/app/app.h"
#include "server/app/hub.h"
#include "server/app/jobs.h"
#include "server/cluster/discovery.h"
#include "server/cluster/membership.h"
#include "server/cluster/messages.h"
#include "server/cluster/ping.h"
#include "server/cluster/status.h"
#include "server/config/config.h"
#include "server/core/env.h"
#include "server/jobs/job_server.h"
#include "server/store/store.h"

namespace chorus::node {

struct NodeOptions {
  std::string advertise;  // gossip address "host:port": the node's id in the cluster
  std::string hostname;
  std::string version;
  std::vector<std::string> peers;   // fixed peers (--peer), besides discovery
  config::Environment environment;  // MM_ overrides, kept for reloads
  // The config file: read (its text) and write (server/core/result.h).
  std::function<Result<std::string, Failure>()> read_config;
  std::function<Failure(const std::string& text)> write_config;
  // The runtime's part in the cluster key: the transport must authenticate (and maybe encrypt) with it.
  std::function<void(const std::string& cluster_name, const std::string& key, bool encrypt)> use_cluster_key;
  // The runtime's part of a config taking effect (start and every reload or save): log levels and forms.
  std::function<void(const config::Config&)> on_config_applied;
  // Files for the support packet that only the runtime has (the log file's tail, a metrics snapshot).
  std::function<std::vector<std::pair<std::string, std::string>>()> support_files;
  // Called once if the node cannot start (the reason), so the process can exit.
  std::function<void(const std::string& why)> on_fatal;
  app::AppOptions app;
  cluster::MembershipOptions membership;
  cluster::MessengerOptions messenger;
  jobs::JobServerOptions jobs;  // worker_id is set to `advertise`
  Duration leave_drain{200'000};
  // With HA on: every node writes a marker into the shared file store this long after it starts, then every
  // shared_files_every; each reads its live peers' markers and warns when one is missing twice in a row,
  // shared_files_recheck apart (the directory is not shared, or the nodes point at different buckets).
  Duration shared_files_first{10'000'000};
  Duration shared_files_every{60'000'000};
  Duration shared_files_recheck{15'000'000};
  std::vector<store::Migration> extra_migrations;  // see StoreOptions
};

class Node final : public Process, public TransportHandler, public api::NodeControl {
 public:
  Node(Env& env, config::LoadedConfig config, NodeOptions options);
  ~Node() override;

  void start() override;
  void stop(Task done) override;
  bool started() const { return started_; }

  // TransportHandler
  void on_frame(const std::string& from, std::span<const uint8_t> payload) override;
  void on_peer_up(const std::string& peer) override;
  void on_peer_down(const std::string& peer) override;

  // NodeControl (the API's view of the node)
  bool cluster_enabled() const override { return config_.config.ClusterSettings.Enable; }
  std::vector<api::ClusterNodeRow> cluster_status() const override;
  std::vector<api::DatabaseServerRow> database_status() const override;
  std::string database_driver() const override { return config_.config.SqlSettings.DriverName; }
  // Settings changed in the file since the node started that take effect only at a restart.
  const std::vector<std::string>& restart_required() const { return restart_required_; }
  std::string config_json() const override;
  bool config_read_only() const override;
  Failure save_config(const std::string& json) override;
  Failure reload_config() override;
  // The same, logged as asked for by `why` (the API, a peer's save, SIGHUP).
  Failure reload_config_for(const std::string& why);
  void recycle_database() override { store_->recycle(); }
  std::vector<std::pair<std::string, std::string>> support_files() const override {
    return options_.support_files ? options_.support_files() : std::vector<std::pair<std::string, std::string>>{};
  }
  void check_health(std::function<void(bool, std::string)> done) override;
  std::string cut_off_reason() const override { return cut_off_reason_; }

  api::Api& api() { return *api_; }
  app::App& app() { return *app_; }
  app::Hub& hub() { return *hub_; }
  store::Store& store() { return *store_; }
  cluster::Membership& membership() { return *membership_; }
  cluster::ClusterStatus& status() { return *status_; }
  cluster::Messenger& messenger() { return *messenger_; }
  jobs::JobServer& job_server() { return *job_server_; }
  const config::LoadedConfig& config() const { return config_; }

 private:
  // Takes a validated config: the app, the store's data sources and the status's hash follow it.
  void apply(config::LoadedConfig next);
  void on_member_change(const cluster::Member& m);
  // Each discovery poll: which side of a lasting partition serves (server/cluster/reach.h).
  void on_heartbeats(const std::vector<cluster::Heartbeat>& beats);
  std::set<std::string> reach_group() const;

  Env& env_;
  config::LoadedConfig config_;
  NodeOptions options_;
  config::Config started_with_;                 // the config the node started with
  std::vector<std::string> restart_required_;  // of its restart settings, those the file has changed since
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<cluster::Membership> membership_;
  std::unique_ptr<cluster::ClusterStatus> status_;
  std::unique_ptr<cluster::Messenger> messenger_;
  std::unique_ptr<PingNode> ping_;
  std::unique_ptr<cluster::Discovery> discovery_;
  std::unique_ptr<app::Hub> hub_;
  std::unique_ptr<app::App> app_;
  std::unique_ptr<app::Jobs> jobs_;
  std::unique_ptr<jobs::JobServer> job_server_;
  std::unique_ptr<api::Api> api_;
  std::map<std::string, cluster::MemberState> member_states_;
  std::map<std::string, uint64_t> member_generations_;
  cluster::ReachRule reach_;
  std::string cut_off_reason_;  // non-empty while this node is cut off and does not serve
  bool started_ = false;
  // The shared-files check (NodeOptions::shared_files_first): peers missing once, and those warned about.
  void check_shared_files();
  void recheck_shared_files(std::vector<std::string> missing);
  static std::string marker_path(const std::string& node);
  std::set<std::string> shared_files_warned_;
  uint64_t shared_files_warnings_ = 0;

 public:
  uint64_t shared_files_warnings() const { return shared_files_warnings_; }

 private:
  bool stopping_ = false;
  // The last health check (check_health): answered from here for a second; callers meanwhile wait on
  // the one check under way.
  struct Health {
    bool known = false, running = false, ok = false;
    std::string detail;
    MonoTime at;
    std::vector<std::function<void(bool, std::string)>> waiting;
  } health_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::node
