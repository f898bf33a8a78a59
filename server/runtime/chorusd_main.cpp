// chorusd: a production Chorus node.
//
// Today a node loads and validates config.json with its MM_ environment overrides, opens the database
// (SqlSettings: the master must answer; replicas may start offline) and brings the schema up to date
// under the cluster-wide migration lock, then listens on ClusterSettings.GossipPort, keeps connections
// to the peers given with --peer and pings them (server/cluster/ping.h). Discovery through the
// ClusterDiscovery table replaces --peer when the cluster layer lands; the HTTP API comes with the
// production node.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <iostream>

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
  const std::string host = !cs.OverrideHostname.empty() ? cs.OverrideHostname : os_hostname();
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
  chorus::PingNode node(*env, peers, chorus::PingNode::Options{});
  bool node_started = false;
  store->start([&](chorus::db::Error error) {
    if (error.status != chorus::db::Status::ok) {
      log.error("chorusd: cannot start: {}", error.message);
      exit_code = 1;
      io.stop();
      return;
    }
    log.info("chorusd: database ready, schema {}", store->schema_version());
    node.start();
    node_started = true;
  });

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log.info("chorusd: signal {} received, stopping", signo);
    if (!node_started) {
      io.stop();
      return;
    }
    node.stop([&] { io.stop(); });
  });
  io.run();
  store.reset();
  log.info("chorusd: stopped");
  return exit_code;
}
