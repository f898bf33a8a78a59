// chorusd: a production Chorus node.
//
// Loads and validates config.json with its MM_ environment overrides, then runs one node (server/node:
// the store with its migrations, the cluster, the app and the API) on the production side of the seam:
// Asio for the loop, TCP on ClusterSettings.GossipPort, and the Beast HTTP/WebSocket server on
// ServiceSettings.ListenAddress. SIGTERM or SIGINT stops it gracefully: new requests are refused,
// requests in flight finish, WebSockets close with 1001, the node announces its leave to the cluster and
// removes its ClusterDiscovery row. SIGHUP reloads config.json (a file that does not load is logged and
// leaves the running config).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <sstream>

#include "server/config/config.h"
#include "server/node/node.h"
#include "server/runtime/asio_env.h"
#include "server/runtime/s3_files.h"
#include "server/runtime/http_server.h"
#include "server/runtime/metrics.h"
#include "server/runtime/spdlog_sink.h"

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

// Where the gossip port listens: ClusterSettings.BindAddress when set, else the address the node
// advertises to its peers (resolved when it is a name) - not every interface: the gossip port is for
// the cluster's network only (issue 13). "0.0.0.0" must be asked for.
chorus::Result<std::string, chorus::Failure> gossip_bind_host(const chorus::config::ClusterSettings& cs,
                                                              const std::string& advertise) {
  if (!cs.BindAddress.empty()) return {{}, cs.BindAddress};
  std::string host = advertise.substr(0, advertise.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1) return {{}, host};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found)
    return {chorus::Failure{"the gossip address " + advertise + " does not resolve: set ClusterSettings.BindAddress"}};
  char text[INET6_ADDRSTRLEN] = {};
  getnameinfo(found->ai_addr, found->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(found);
  return {{}, text};
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

chorus::Result<std::string, chorus::Failure> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {chorus::Failure{"cannot open the config file " + path}};
  std::stringstream ss;
  ss << in.rdbuf();
  return {{}, ss.str()};
}

// Writes next to the file, then renames: a reader never sees half a config.
chorus::Failure write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return chorus::Failure{"cannot write " + tmp};
    out << text;
    if (!out.flush()) return chorus::Failure{"cannot write " + tmp};
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return chorus::Failure{"cannot replace " + path + ": " + ec.message()};
  return {};
}

// ServiceSettings.ListenAddress: ":8065", "127.0.0.1:8065" or "[::1]:8065".
bool listen_address(const std::string& text, std::string& host, uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  try {
    const int p = std::stoi(text.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

chorus::runtime::LogOutputs log_outputs(const chorus::config::LogSettings& ls) {
  chorus::runtime::LogOutputs o;
  o.console = ls.EnableConsole;
  chorus::parse_log_level(ls.ConsoleLevel, o.console_level);
  o.console_json = ls.ConsoleJson;
  o.file = ls.EnableFile;
  chorus::parse_log_level(ls.FileLevel, o.file_level);
  o.file_json = ls.FileJson;
  o.file_path = chorus::runtime::log_file_path(ls.FileLocation);
  o.file_max_bytes = static_cast<size_t>(ls.FileMaxSizeMB) << 20;
  o.file_backups = static_cast<size_t>(ls.FileMaxBackups);
  return o;
}

// The last `max` bytes of a file, from the start of a line.
std::string file_tail(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const auto size = static_cast<size_t>(in.tellg());
  const size_t from = size > max ? size - max : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string text(size - from, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (from > 0) {
    const auto nl = text.find('\n');
    if (nl != std::string::npos) text.erase(0, nl + 1);
  }
  return text;
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

  const auto environment = read_environment();
  const auto loaded = chorus::config::load_config_file(config_path, environment);
  if (!loaded.ok()) {
    std::fprintf(stderr, "chorusd: invalid configuration:\n%s", loaded.error.text().c_str());
    return 2;
  }
  const auto& cfg = loaded.value.config;
  if (auto errors = chorus::store::check_data_sources(cfg.SqlSettings); !errors.empty()) {
    std::fprintf(stderr, "chorusd: invalid configuration:\n");
    for (const auto& e : errors) std::fprintf(stderr, "%s: %s\n", config_path.c_str(), e.c_str());
    return 2;
  }
  if (check_only) {
    for (const auto& w : loaded.value.warnings) std::printf("warning: %s\n", w.c_str());
    std::printf("config ok, hash %s\n", loaded.value.hash.c_str());
    return 0;
  }

  std::unique_ptr<chorus::runtime::SpdlogSink> sink;
  try {
    sink = std::make_unique<chorus::runtime::SpdlogSink>(log_outputs(cfg.LogSettings));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chorusd: %s\n", e.what());
    return 2;
  }
  const chorus::LogLevel level = sink->outputs().min_level();
  chorus::LogSink& log_sink = *sink;

  const auto& cs = cfg.ClusterSettings;
  const std::string host = cluster_hostname(cs);
  const std::string advertise =
      !cs.AdvertiseAddress.empty() ? cs.AdvertiseAddress : host + ":" + std::to_string(cs.GossipPort);

  chorus::runtime::TcpTransportOptions topts;
  const auto bind = gossip_bind_host(cs, advertise);
  if (!bind.ok()) {
    std::fprintf(stderr, "chorusd: %s\n", bind.error.message.c_str());
    return 2;
  }
  topts.bind_host = bind.value;
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
           advertise, loaded.value.hash);
  for (const auto& w : loaded.value.warnings) log.warn("config: {}", w);
  for (const auto& o : loaded.value.overridden) log.info("config: {} set from the environment", o);

  int exit_code = 0;
  chorus::node::NodeOptions no;
  no.advertise = advertise;
  no.hostname = host;
  no.version = CHORUS_VERSION;
  no.peers = peers;
  no.environment = environment;
  no.read_config = [config_path] { return read_file(config_path); };
  no.write_config = [config_path](const std::string& text) { return write_file(config_path, text); };
  // LogSettings take effect on a reload: levels and forms at once (the file's place at a restart).
  no.on_config_applied = [&](const chorus::config::Config& c) {
    const auto before = sink->outputs();
    sink->configure(log_outputs(c.LogSettings));
    env->log().set_level(sink->outputs().min_level());
    const auto& after = sink->outputs();
    if (before.console_level != after.console_level || before.file_level != after.file_level ||
        before.console != after.console || before.file != after.file)
      env->log().info("config: logging now: console {} at {}, file {} at {}", after.console ? "on" : "off",
                      chorus::to_string(after.console_level), after.file ? "on" : "off",
                      chorus::to_string(after.file_level));
  };
  std::unique_ptr<chorus::runtime::MetricsServer> metrics;
  no.support_files = [&] {
    std::vector<std::pair<std::string, std::string>> files;
    if (sink->outputs().file) files.emplace_back("chorus.log", file_tail(sink->outputs().file_path, 10u << 20));
    if (metrics) files.emplace_back("metrics.txt", metrics->snapshot_text());
    return files;
  };
  no.use_cluster_key = [&](const std::string& name, const std::string& key, bool encrypt) {
    env->tcp().set_cluster(name, key, encrypt);
  };
  no.on_fatal = [&](const std::string&) {
    exit_code = 1;
    io.stop();
  };
  // Uploads and compliance exports, shared by the nodes: a directory (a NAS mount) or an S3 bucket.
  env->local_files().set_root(cfg.FileSettings.Directory);
  if (cfg.FileSettings.DriverName == "amazons3") {
    env->use_s3(std::make_unique<chorus::runtime::S3Files>(*env, chorus::runtime::S3Settings::from(cfg.FileSettings)));
    log.info("chorusd: files in S3 bucket {} at {} ({})", cfg.FileSettings.AmazonS3Bucket,
             cfg.FileSettings.AmazonS3Endpoint, cfg.FileSettings.AmazonS3SSL ? "https" : "http");
  }
  chorus::node::Node node(*env, loaded.value, no);

  const auto& ss = cfg.ServiceSettings;
  chorus::runtime::HttpServerOptions hopts;
  if (!listen_address(ss.ListenAddress, hopts.bind_host, hopts.port)) {
    log.error("chorusd: ServiceSettings.ListenAddress \"{}\" is not host:port", ss.ListenAddress);
    return 2;
  }
  hopts.body_size_max = static_cast<size_t>(ss.MaximumPayloadSizeBytes);
  // An upload carries up to 10 files of MaxFileSize each in one multipart body (the app refuses a file
  // over MaxFileSize with Mattermost's 413; this only bounds what is read at all).
  hopts.upload_size_max = static_cast<size_t>(std::min<int64_t>(cfg.FileSettings.MaxFileSize, int64_t{1} << 34) + (1 << 20));
  hopts.header_size_max = static_cast<size_t>(std::max<int64_t>(ss.MaximumURLLength + 8192, 16384));
  hopts.read_timeout = chorus::Duration{ss.ReadTimeout * 1'000'000};
  hopts.write_timeout = chorus::Duration{ss.WriteTimeout * 1'000'000};
  hopts.idle_timeout = chorus::Duration{ss.IdleTimeout * 1'000'000};
  std::unique_ptr<chorus::runtime::HttpServer> http;
  try {
    http = std::make_unique<chorus::runtime::HttpServer>(io, *env, hopts, node.api());
  } catch (const std::exception& e) {
    log.error("chorusd: {}", e.what());
    return 1;
  }
  // Local mode (mmctl --local, chorusctl --local): the API on a unix socket of this machine.
  std::unique_ptr<chorus::runtime::HttpServer> local_http;
  if (ss.EnableLocalMode) {
    auto lopts = hopts;
    lopts.unix_path = ss.LocalModeSocketLocation;
    try {
      local_http = std::make_unique<chorus::runtime::HttpServer>(io, *env, lopts, node.api());
    } catch (const std::exception& e) {
      log.error("chorusd: {} (ServiceSettings.LocalModeSocketLocation)", e.what());
      return 1;
    }
  }
  if (cfg.MetricsSettings.Enable) {
    try {
      metrics = std::make_unique<chorus::runtime::MetricsServer>(
          io, cfg.MetricsSettings.ListenAddress,
          chorus::runtime::MetricsSources{&node, http.get(), &env->tcp(), CHORUS_VERSION});
    } catch (const std::exception& e) {
      log.error("chorusd: {}", e.what());
      return 1;
    }
    log.info("chorusd: metrics on http://{}/metrics", cfg.MetricsSettings.ListenAddress);
  }
  node.start();
  http->start();
  if (local_http) local_http->start();
  log.info("chorusd: API on http://{}:{}", hopts.bind_host, http->local_port());

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log.info("chorusd: signal {} received, stopping", signo);
    // The HTTP side and the node drain side by side; the process ends when both are done.
    auto remaining = std::make_shared<int>(local_http ? 3 : 2);
    auto one_done = [&io, remaining] {
      if (--*remaining == 0) io.stop();
    };
    node.stop(one_done);
    http->stop(chorus::Duration{5'000'000}, one_done);
    if (local_http) local_http->stop(chorus::Duration{5'000'000}, one_done);
  });
  // SIGHUP reloads config.json, as POST /api/v4/config/reload does (systemctl reload: deploy/chorusd.service).
  boost::asio::signal_set hangups(io, SIGHUP);
  std::function<void()> on_hangup = [&] {
    hangups.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      node.reload_config_for("SIGHUP");
      on_hangup();
    });
  };
  on_hangup();
  io.run();
  metrics.reset();
  local_http.reset();
  http.reset();
  log.info("chorusd: stopped");
  return exit_code;
}
