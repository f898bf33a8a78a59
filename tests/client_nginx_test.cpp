// The production side end to end: a real NGINX in front of two real chorusd nodes on real PostgreSQL (a
// primary and a streaming read replica), driven by Mattermost's official JavaScript client
// (tests/js/ha_client.mjs: Client4 and WebSocketClient, unchanged). Posts and typing cross nodes; the
// node the posting user is on is SIGKILLed; the client reconnects through NGINX, resumes or re-syncs,
// and posts again. Every wait is bounded; everything started here is stopped here.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/pg_fixture.h"

using chorus::testing::Child;
using chorus::testing::free_port;
using chorus::testing::PgCluster;
using chorus::testing::wait_ms;

namespace {

bool accepts(uint16_t port) {
  const int fd = chorus::testing::connect_loopback(port);
  if (fd >= 0) ::close(fd);
  return fd >= 0;
}

std::string find_program(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  return "";
}

// The HA guide's NGINX locations, twice: A prefers node 1 (node 2 as backup), B prefers node 2.
std::string nginx_conf(const std::string& prefix, uint16_t a, uint16_t b, uint16_t api1, uint16_t api2) {
  auto upstream = [](const char* name, uint16_t primary, uint16_t backup) {
    return std::string("  upstream ") + name + " {\n    server 127.0.0.1:" + std::to_string(primary) +
           " max_fails=1 fail_timeout=30s;\n    server 127.0.0.1:" + std::to_string(backup) +
           " backup;\n    keepalive 16;\n  }\n";
  };
  auto server = [](uint16_t port, const char* up) {
    const std::string common =
        "      proxy_set_header Host $http_host;\n      proxy_set_header X-Real-IP $remote_addr;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto "
        "$scheme;\n"
        "      client_max_body_size 100M;\n      proxy_buffers 256 16k;\n      proxy_buffer_size 16k;\n"
        "      proxy_connect_timeout 2s;\n      proxy_send_timeout 90s;\n      proxy_read_timeout 90s;\n      "
        "proxy_http_version 1.1;\n";
    return "  server {\n    listen 127.0.0.1:" + std::to_string(port) + ";\n" +
           "    location ~ /api/v[0-9]+/(users/)?websocket$ {\n      proxy_set_header Upgrade $http_upgrade;\n"
           "      proxy_set_header Connection \"upgrade\";\n" +
           common + "      proxy_next_upstream error timeout;\n      proxy_pass http://" + up +
           ";\n    }\n    location / {\n      proxy_set_header Connection \"\";\n" + common +
           "      proxy_next_upstream error timeout http_502 http_503 http_504;\n      proxy_pass http://" + up +
           ";\n    }\n  }\n";
  };
  return "worker_processes 1;\nuser root;\ndaemon off;\npid " + prefix + "/nginx.pid;\nerror_log " + prefix +
         "/error.log info;\n" + "events { worker_connections 1024; }\nhttp {\n  access_log " + prefix +
         "/access.log;\n" + "  client_body_temp_path " + prefix + "/body;\n  proxy_temp_path " + prefix +
         "/proxy;\n  fastcgi_temp_path " + prefix + "/fastcgi;\n  uwsgi_temp_path " + prefix +
         "/uwsgi;\n  scgi_temp_path " + prefix + "/scgi;\n" + upstream("node_a", api1, api2) +
         upstream("node_b", api2, api1) + server(a, "node_a") + server(b, "node_b") + "}\n";
}

}  // namespace

TEST(ClientThroughNginx, OfficialClientPostsTypesAndSurvivesTheDeathOfItsNode) {
  const std::string nginx = find_program({"/usr/sbin/nginx", "/usr/bin/nginx"});
  ASSERT_FALSE(nginx.empty()) << "nginx is not installed (scripts/install-deps.sh installs nginx-light)";
  const std::string node = find_program({"/usr/bin/node", "/usr/local/bin/node"});
  ASSERT_FALSE(node.empty()) << "Node.js is not installed (scripts/install-deps.sh installs it)";
  const std::filesystem::path js = std::filesystem::path(CHORUS_SOURCE_DIR) / "tests" / "js";
  ASSERT_TRUE(std::filesystem::exists(js / "node_modules" / "@mattermost" / "client"))
      << "the official client is not installed: run `npm ci --prefix tests/js` (make test does)";

  PgCluster pg;
  pg.start(1);
  const std::string db = pg.create_database("client_nginx");
  const auto dir = std::filesystem::temp_directory_path() / ("chorus-client-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "nginx");
  for (const char* sub : {"body", "proxy", "fastcgi", "uwsgi", "scgi"})
    std::filesystem::create_directories(dir / "nginx" / sub);
  const std::string config = (dir / "config.json").string();
  std::ofstream(config) << R"({
    "SqlSettings": {"DriverName": "postgres", "DataSource": ")"
                        << pg.data_source(0, db) << R"(",
                    "DataSourceReplicas": [")"
                        << pg.data_source(1, db) << R"("], "ReplicaMonitorIntervalSeconds": 1},
    "ClusterSettings": {"Enable": true, "ClusterName": "client-test", "OverrideHostname": "127.0.0.1", "BindAddress": "127.0.0.1"},
    "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO"}
  })";
  const uint16_t api1 = free_port(), api2 = free_port(), g1 = free_port(), g2 = free_port(), na = free_port(),
                 nb = free_port();
  auto spawn = [&](uint16_t api, uint16_t gossip) {
    return std::make_unique<Child>(
        std::vector<std::string>{CHORUSD_PATH, "--config", config},
        std::vector<std::string>{"MM_SERVICESETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(api),
                                 "MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(gossip)});
  };
  auto n1 = spawn(api1, g1);
  auto n2 = spawn(api2, g2);
  const std::string a1 = "127.0.0.1:" + std::to_string(g1), a2 = "127.0.0.1:" + std::to_string(g2);
  ASSERT_GE(
      wait_ms(
          [&] { return n1->find("status: " + a2 + " is green") >= 0 && n2->find("status: " + a1 + " is green") >= 0; },
          20000),
      0)
      << n1->output() << n2->output();

  std::ofstream(dir / "nginx" / "nginx.conf") << nginx_conf((dir / "nginx").string(), na, nb, api1, api2);
  Child proxy({nginx, "-p", (dir / "nginx").string(), "-c", (dir / "nginx" / "nginx.conf").string()}, {});
  ASSERT_GE(wait_ms([&] { return accepts(na) && accepts(nb); }, 5000), 0) << proxy.output();

  Child client({node, (js / "ha_client.mjs").string(), "http://127.0.0.1:" + std::to_string(na),
                "http://127.0.0.1:" + std::to_string(nb), std::to_string(n1->pid())},
               {});
  const int code = client.wait_exit(90'000);
  std::cout << client.output();  // the client's timeline, for the record
  std::string nginx_log;
  {
    std::ifstream in(dir / "nginx" / "error.log");
    nginx_log.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(code, 0) << "client:\n"
                     << client.output() << "\nnode 1:\n"
                     << n1->output() << "\nnode 2:\n"
                     << n2->output() << "\nnginx:\n"
                     << nginx_log;
  EXPECT_NE(client.output().find("PASS"), std::string::npos) << client.output();
  // Node 2 carried on and stops cleanly.
  n2->signal(SIGTERM);
  EXPECT_EQ(n2->wait_exit(5000), 0) << n2->output();
  proxy.signal(SIGQUIT);
  proxy.wait_exit(3000);
  std::filesystem::remove_all(dir);
}
