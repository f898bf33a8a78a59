// chorusd: a production Chorus node.
//
// Today a node loads and validates config.json with its MM_ environment overrides, opens the database
// (SqlSettings: the master must answer; replicas may start offline) and brings the schema up to date
// under the cluster-wide migration lock, then listens on ClusterSettings.GossipPort. With
// ClusterSettings.Enable it registers in the ClusterDiscovery table and finds the peers of its
// ClusterName there (and --peer adds fixed ones); it keeps connections to its peers and pings them
// (server/cluster/ping.h). Membership, election and the HTTP API come with the cluster and production
// node work.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <iostream>

#include "server/cluster/cluster_key.h"
#include "server/cluster/discovery.h"
#include "server/cluster/membership.h"
#include "server/cluster/status.h"
#include "server/cluster/ping.h"
#include "server/config/config.h"
#include "server/runtime/asio_env.h"
#include "server/runtime/spdlog_sink.h"
#include "server/store/store.h"

extern char** environ;

namespace {

chorus::config::Environment read_environment() {
  chorus::config::Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::string os_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// The first IPv4 address that is not loopback or link-local (169.254/16), as Mattermost's UseIpAddress.
std::string first_ipv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* a = list; a && found.empty(); a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    const uint32_t ip = ntohl(in->sin_addr.s_addr);
    if ((ip >> 24) == 127 || (ip >> 16) == 0xa9fe) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    found = text;
  }
  freeifaddrs(list);
  return found;
}

// ClusterSettings: OverrideHostname, else (UseIpAddress) the first non-local IPv4, else the OS hostname.
std::string cluster_hostname(const chorus::config::ClusterSettings& cs) {
  if (!cs.OverrideHostname.empty()) return cs.OverrideHostname;
  if (cs.UseIpAddress) {
    const std::string ip = first_ipv4();
    if (!ip.empty()) return ip;
  }
  return os_hostname();
}

// One transport handler for the node: membership frames to the membership, the rest to ping; both see
// connections go up and down.
class FrameRouter final : public chorus::TransportHandler {
 public:
  FrameRouter(chorus::cluster::Membership& membership, chorus::cluster::ClusterStatus& status, chorus::PingNode& ping)
      : membership_(membership), status_(status), ping_(ping) {}
  void on_frame(const std::string& from, std::span<const uint8_t> payload) override {
    if (!membership_.handle_frame(from, payload) && !status_.handle_frame(from, payload)) ping_.on_frame(from, payload);
  }
  void on_peer_up(const std::string& peer) override { ping_.on_peer_up(peer); }
  void on_peer_down(const std::string& peer) override {
    ping_.on_peer_down(peer);
    membership_.on_connection_lost(peer);
  }

 private:
  chorus::cluster::Membership& membership_;
  chorus::cluster::ClusterStatus& status_;
  chorus::PingNode& ping_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chorusd: a Chorus team-chat cluster node"};
  std::string config_path = "config.json";
  std::vector<std::string> peers;
  bool print_version = false;
  bool check_only = false;
  app.add_option("--config,-c", config_path, "path to config.json")->capture_default_str();
  app.add_option("--peer", peers, "gossip address (host:port) of a peer to connect to; repeatable");
  app.add_flag("--version", print_version, "print the version and exit");
  app.add_flag("--check-config", check_only, "validate the config (with MM_ overrides), print its hash, and exit");
  CLI11_PARSE(app, argc, argv);

  if (print_version) {
    std::printf("chorusd %s\n", CHORUS_VERSION);
    return 0;
  }

  const auto loaded = chorus::config::load_config_file(config_path, read_environment());
  if (!loaded.ok()) {
    std::fprintf(stderr, "chorusd: invalid configuration:\n%s", loaded.error_text().c_str());
    return 2;
  }
  const auto& cfg = loaded.loaded->config;
  if (auto errors = chorus::store::check_data_sources(cfg.SqlSettings); !errors.empty()) {
    std::fprintf(stderr, "chorusd: invalid configuration:\n");
    for (const auto& e : errors) std::fprintf(stderr, "%s: %s\n", config_path.c_str(), e.c_str());
    return 2;
  }
  if (check_only) {
    for (const auto& w : loaded.loaded->warnings) std::printf("warning: %s\n", w.c_str());
    std::printf("config ok, hash %s\n", loaded.loaded->hash.c_str());
    return 0;
  }

  chorus::LogLevel level = chorus::LogLevel::info;
  chorus::parse_log_level(cfg.LogSettings.ConsoleLevel, level);
  chorus::runtime::SpdlogSink sink(cfg.LogSettings.ConsoleJson);
  chorus::NullLogSink null_sink;
  chorus::LogSink& log_sink = cfg.LogSettings.EnableConsole ? static_cast<chorus::LogSink&>(sink) : null_sink;

  const auto& cs = cfg.ClusterSettings;
  const std::string host = cluster_hostname(cs);
  const std::string advertise = !cs.AdvertiseAddress.empty() ? cs.AdvertiseAddress : host + ":" + std::to_string(cs.GossipPort);

  chorus::runtime::TcpTransportOptions topts;
  topts.bind_host = cs.BindAddress.empty() ? "0.0.0.0" : cs.BindAddress;
  topts.port = static_cast<uint16_t>(cs.GossipPort);
  topts.advertise_address = advertise;

  boost::asio::io_context io;
  std::unique_ptr<chorus::runtime::AsioEnv> env;
  try {
    env = std::make_unique<chorus::runtime::AsioEnv>(io, advertise, log_sink, level, topts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorusd: %s\n", e.what());
    return 1;
  }
  auto& log = env->log();
  log.info("chorusd {} starting; gossip on {}:{} as {}; config hash {}", CHORUS_VERSION, topts.bind_host, topts.port,
           advertise, loaded.loaded->hash);
  for (const auto& w : loaded.loaded->warnings) log.warn("config: {}", w);
  for (const auto& o : loaded.loaded->overridden) log.info("config: {} set from the environment", o);

  int exit_code = 0;
  auto store = std::make_unique<chorus::store::Store>(*env, cfg.SqlSettings, chorus::store::StoreOptions{advertise, CHORUS_VERSION, {}});
  chorus::PingNode::Options ping_options;
  ping_options.start_transport = false;
  chorus::PingNode node(*env, peers, ping_options);
  std::unique_ptr<chorus::cluster::ClusterStatus> status;
  chorus::cluster::Membership membership(*env, advertise, static_cast<uint64_t>(env->wall_now().us), chorus::cluster::MembershipOptions{},
                                         [&](const chorus::cluster::Member& m) {
                                           if (status) status->on_member_change(m);
                                         });
  status = std::make_unique<chorus::cluster::ClusterStatus>(
      *env, chorus::cluster::NodeInfo{advertise, CHORUS_VERSION, "", loaded.loaded->hash, host}, membership);
  FrameRouter frames(membership, *status, node);
  bool node_started = false;
  // With ClusterSettings.Enable, peers come from the ClusterDiscovery table (plus any --peer).
  std::unique_ptr<chorus::cluster::Discovery> discovery;
  if (cs.Enable) {
    chorus::cluster::DiscoveryOptions d;
    d.cluster_name = cs.ClusterName;
    d.hostname = host;
    d.gossip_port = cs.GossipPort;
    discovery = std::make_unique<chorus::cluster::Discovery>(*env, *store, d, [&](const std::vector<chorus::cluster::DiscoveredNode>& found) {
      std::vector<std::string> all = peers;
      for (const auto& n : found) all.push_back(n.address());
      log.info("discovery: {} peers in cluster \"{}\"", found.size(), cs.ClusterName);
      node.set_peers(all);
      for (const auto& n : found) membership.add_seed(n.address());
    });
  }
  auto fail = [&](const std::string& why) {
    log.error("chorusd: cannot start: {}", why);
    exit_code = 1;
    io.stop();
  };
  store->start([&](chorus::db::Error error) {
    if (error.status != chorus::db::Status::ok) return fail(error.message);
    log.info("chorusd: database ready, schema {}", store->schema_version());
    chorus::cluster::load_cluster_key(*env, *store, [&](std::string key, chorus::db::Error e) {
      if (e.status != chorus::db::Status::ok) return fail(e.message);
      // Only processes holding the cluster's key (from its database) and its ClusterName may gossip.
      env->tcp().set_cluster(cs.ClusterName, key, cs.EnableExperimentalGossipEncryption);
      if (cs.EnableExperimentalGossipEncryption) log.info("gossip: frames sealed with AES-256-GCM under the cluster key");
      env->transport().start(frames);
      node.start();
      for (const auto& p : peers) membership.add_seed(p);
      membership.start();
      auto info = status->self();
      info.schema_version = store->schema_version();
      status->set_self(info);
      status->start();
      node_started = true;
      if (discovery) discovery->start([&](chorus::db::Error e2) {
        if (e2.status != chorus::db::Status::ok) fail(e2.message);
      });
    });
  });

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(io);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log.info("chorusd: signal {} received, stopping", signo);
    if (!node_started) {
      io.stop();
      return;
    }
    status->stop();
    membership.leave();  // the others move the leadership at once
    // Let the leave notices reach the wire before the sockets close (bounded: 200 ms).
    drain.expires_after(std::chrono::milliseconds(200));
    drain.async_wait([&](const boost::system::error_code&) {
      node.stop([&] {
        env->transport().stop();
        if (!discovery) return io.stop();
        discovery->stop([&] { io.stop(); });  // removes our ClusterDiscovery row
      });
    });
  });
  io.run();
  discovery.reset();
  store.reset();
  log.info("chorusd: stopped");
  return exit_code;
}
