// The production side end to end: a real NGINX in front of two real chorusd nodes on real PostgreSQL (a
// primary and a streaming read replica), driven from Node.js. The fixture (ClientThroughNginx) starts that
// cluster for each test and stops it; the tests run a script of tests/js against it:
//  - ha_client.mjs, Mattermost's official JavaScript client (Client4 and WebSocketClient, unchanged): posts
//    and typing cross nodes; the node the posting user is on is SIGKILLed; the client reconnects through
//    NGINX, resumes or re-syncs, and posts again;
//  - app_entry.mjs, the entry sequences of the official mobile and web apps, call for call as their source
//    makes them (the mobile app's own client through one node, the web app's Client4 on session cookies
//    through the other): config, login, entry, unread counts, views, preferences, direct and group
//    messages, bad input.
// Every wait is bounded; everything started here is stopped here.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "server/runtime/s3_files.h"
#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/pg_fixture.h"

using chorus::testing::Child;
using chorus::testing::ChildOptions;
using chorus::testing::free_port;
using chorus::testing::PgCluster;
using chorus::testing::accepts;
using chorus::testing::wait_ms;

namespace {

std::string find_program(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  return "";
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
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

// Two chorusd nodes (HA on) on a PostgreSQL primary with one streaming read replica, each sure the other is
// green, behind an NGINX that listens twice: url_a() prefers node 1, url_b() node 2. The processes write
// their output to files in the test's directory (a pipe nobody reads while a script runs could fill and
// block them); their logs are shown when a check fails.
class ClientThroughNginx : public ::testing::Test {
 protected:
  void SetUp() override {
    nginx_ = find_program({"/usr/sbin/nginx", "/usr/bin/nginx"});
    ASSERT_FALSE(nginx_.empty()) << "nginx is not installed (scripts/install-deps.sh installs nginx-light)";
    node_ = find_program({"/usr/bin/node", "/usr/local/bin/node"});
    ASSERT_FALSE(node_.empty()) << "Node.js is not installed (scripts/install-deps.sh installs it)";
    js_ = std::filesystem::path(CHORUS_SOURCE_DIR) / "tests" / "js";
    ASSERT_TRUE(std::filesystem::exists(js_ / "node_modules" / "@mattermost" / "client"))
        << "the official client is not installed: run `npm ci --prefix tests/js` (make test does)";
    static std::atomic<int> count{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("chorus-client-test-" + std::to_string(::getpid()) + "-" + std::to_string(count++));
    try {
      start_cluster();
    } catch (const std::exception& e) {
      FAIL() << "the cluster did not start: " << e.what() << "\n" << logs();
    }
  }

  void TearDown() override {
    if (proxy_) {
      proxy_->signal(SIGQUIT);
      proxy_->wait_exit(3000);
    }
    proxy_.reset();  // SIGKILL to whatever is still running
    n2_.reset();
    n1_.reset();
    s3_.reset();
    pg_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string url_a() const { return "http://127.0.0.1:" + std::to_string(na_); }
  std::string url_b() const { return "http://127.0.0.1:" + std::to_string(nb_); }

  // Runs `node tests/js/<script> <url-A> <url-B> [extra...]` for at most timeout_ms, prints its timeline, and
  // expects exit code 0 and PASS; on failure, with the nodes' and NGINX's logs.
  void expect_client_passes(const std::string& script, const std::vector<std::string>& extra, int timeout_ms) {
    std::vector<std::string> args{node_, (js_ / script).string(), url_a(), url_b()};
    args.insert(args.end(), extra.begin(), extra.end());
    Child client(args, {}, ChildOptions{.output_file = (dir_ / (script + ".log")).string()});
    const int code = client.wait_exit(timeout_ms);
    std::cout << client.output();  // the client's timeline, for the record
    EXPECT_EQ(code, 0) << (code < 0 ? "the client did not finish within " + std::to_string(timeout_ms) + " ms\n" : "")
                       << "client:\n"
                       << client.output() << "\n"
                       << logs();
    EXPECT_NE(client.output().find("PASS"), std::string::npos) << client.output();
  }

  // The node is still running and stops cleanly on SIGTERM (the drain), within 5 s.
  void expect_stops_cleanly(Child& n, const char* name) {
    if (n.running()) n.signal(SIGTERM);
    EXPECT_EQ(n.wait_exit(5000), 0) << name << " did not stop cleanly:\n" << n.output();
  }

  std::string logs() {
    return "node 1:\n" + (n1_ ? n1_->output() : std::string("(not started)\n")) + "\nnode 2:\n" +
           (n2_ ? n2_->output() : std::string("(not started)\n")) + "\nnginx:\n" +
           read_file(dir_ / "nginx" / "error.log");
  }

  std::unique_ptr<Child> n1_, n2_;
  bool use_s3_ = false;  // set before SetUp: the nodes keep their files in s3rver instead of a shared directory

  // Every file the database lists (FileInfo) is whole in the store: its bytes, of its recorded size, and an
  // image's thumbnail and preview. What a node killed mid-upload wrote must never be listed half-written.
  void expect_every_listed_file_whole() {
    const std::string rows =
        pg_->psql(0, "SELECT Path || '|' || Size || '|' || ThumbnailPath || '|' || PreviewPath FROM FileInfo", db_);
    int checked = 0;
    std::istringstream in(rows);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      std::vector<std::string> f;
      std::stringstream ls(line);
      for (std::string part; std::getline(ls, part, '|');) f.push_back(part);
      f.resize(4);
      const auto bytes = [&](const std::string& path) -> std::optional<std::string> {
        if (!use_s3_) {
          if (!std::filesystem::exists(dir_ / "files" / path)) return std::nullopt;
          return read_file(dir_ / "files" / path);
        }
        chorus::runtime::S3Settings s;
        s.bucket = "chorus";
        s.endpoint = "127.0.0.1:" + std::to_string(s3_port_);
        s.access_key = s.secret_key = "S3RVER";
        s.ssl = false;
        auto a = chorus::runtime::S3Files::request(s, "GET", "chorus-test/" + path, "", ::time(nullptr));
        if (a.status != 200) return std::nullopt;
        return a.body;
      };
      const auto data = bytes(f[0]);
      ASSERT_TRUE(data) << "listed but not in the store: " << f[0];
      EXPECT_EQ(std::to_string(data->size()), f[1]) << "listed with another size than stored: " << f[0];
      for (size_t i = 2; i < 4; ++i)
        if (!f[i].empty()) {
          EXPECT_TRUE(bytes(f[i])) << "listed but not in the store: " << f[i];
        }
      ++checked;
    }
    EXPECT_GE(checked, 2) << "the script's files should be listed";
    std::cout << "every one of the " << checked << " listed files is whole in the store\n";
  }

 private:
  void start_cluster() {
    pg_ = std::make_unique<PgCluster>();
    pg_->start(1);
    const std::string db = pg_->create_database("client_nginx");
    db_ = db;
    std::filesystem::create_directories(dir_ / "nginx");
    for (const char* sub : {"body", "proxy", "fastcgi", "uwsgi", "scgi"})
      std::filesystem::create_directories(dir_ / "nginx" / sub);
    // Every port at once: ports asked for one by one can repeat (none is held until its process binds it),
    // and a node then finds its API port taken by another's gossip port.
    const auto ports = chorus::testing::free_ports(7);
    // The shared file store: a directory both nodes use, or an S3 bucket on s3rver (started here).
    std::string files = R"("FileSettings": {"Directory": ")" + (dir_ / "files").string() + R"(/"},)";
    if (use_s3_) {
      s3_port_ = ports[6];
      s3_ = std::make_unique<Child>(
          std::vector<std::string>{node_, (js_ / "node_modules" / "s3rver" / "bin" / "s3rver.js").string(), "-d",
                                   (dir_ / "s3").string(), "-a", "127.0.0.1", "-p", std::to_string(s3_port_),
                                   "--configure-bucket", "chorus", "--silent"},
          std::vector<std::string>{}, ChildOptions{.output_file = (dir_ / "s3rver.log").string(), .null_stdin = true});
      ASSERT_GE(wait_ms([&] { return accepts(s3_port_); }, 10'000), 0) << "s3rver did not listen:\n" << s3_->output();
      files = R"("FileSettings": {"DriverName": "amazons3", "AmazonS3Bucket": "chorus", "AmazonS3Endpoint": "127.0.0.1:)" +
              std::to_string(s3_port_) +
              R"(", "AmazonS3SSL": false, "AmazonS3AccessKeyId": "S3RVER", "AmazonS3SecretAccessKey": "S3RVER", "AmazonS3PathPrefix": "chorus-test"},)";
    }
    const std::string config = (dir_ / "config.json").string();
    std::ofstream(config) << "{" << files << R"(

    "SqlSettings": {"DriverName": "postgres", "DataSource": ")"
                          << pg_->data_source(0, db) << R"(",
                    "DataSourceReplicas": [")"
                          << pg_->data_source(1, db) << R"("], "ReplicaMonitorIntervalSeconds": 1},
    "ClusterSettings": {"Enable": true, "ClusterName": "client-test", "OverrideHostname": "127.0.0.1", "BindAddress": "127.0.0.1"},
    "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO"}
  })";
    const uint16_t api1 = ports[0], api2 = ports[1], g1 = ports[2], g2 = ports[3];
    na_ = ports[4];
    nb_ = ports[5];
    auto spawn = [&](uint16_t api, uint16_t gossip, const char* log) {
      return std::make_unique<Child>(
          std::vector<std::string>{CHORUSD_PATH, "--config", config},
          std::vector<std::string>{"MM_SERVICESETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(api),
                                   "MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(gossip)},
          ChildOptions{.output_file = (dir_ / log).string()});
    };
    n1_ = spawn(api1, g1, "node1.log");
    n2_ = spawn(api2, g2, "node2.log");
    const std::string a1 = "127.0.0.1:" + std::to_string(g1), a2 = "127.0.0.1:" + std::to_string(g2);
    ASSERT_GE(wait_ms(
                  [&] {
                    return n1_->find("status: " + a2 + " is green") >= 0 &&
                           n2_->find("status: " + a1 + " is green") >= 0;
                  },
                  20000),
              0)
        << "the two nodes did not see each other green within 20 s\n"
        << logs();

    std::ofstream(dir_ / "nginx" / "nginx.conf") << nginx_conf((dir_ / "nginx").string(), na_, nb_, api1, api2);
    proxy_ =
        std::make_unique<Child>(std::vector<std::string>{nginx_, "-p", (dir_ / "nginx").string(), "-c",
                                                         (dir_ / "nginx" / "nginx.conf").string()},
                                std::vector<std::string>{}, ChildOptions{.output_file = (dir_ / "nginx.out").string()});
    ASSERT_GE(wait_ms([&] { return accepts(na_) && accepts(nb_); }, 5000), 0) << "NGINX did not listen within 5 s:\n"
                                                                              << proxy_->output();
  }

  std::string nginx_, node_;
  std::filesystem::path js_, dir_;
  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<Child> proxy_, s3_;
  std::string db_;
  uint16_t na_ = 0, nb_ = 0, s3_port_ = 0;
};

TEST_F(ClientThroughNginx, OfficialClientPostsTypesAndSurvivesTheDeathOfItsNode) {
  // The script SIGKILLs node 1 (its pid is the third argument) half way.
  expect_client_passes("ha_client.mjs", {std::to_string(n1_->pid())}, 90'000);
  // Node 2 carried on and stops cleanly.
  expect_stops_cleanly(*n2_, "node 2");
}

// Files on a directory both nodes share (the HA guide's NAS), then on S3 (s3rver): upload on node 1, post,
// download on node 2, thumbnails and previews, the post's changes, and node 1 SIGKILLed mid-upload.
TEST_F(ClientThroughNginx, FilesOnASharedDirectoryCrossNodesAndSurviveADeathMidUpload) {
  expect_client_passes("files.mjs", {std::to_string(n1_->pid())}, 90'000);
  expect_every_listed_file_whole();
  expect_stops_cleanly(*n2_, "node 2");
}

class ClientThroughNginxOnS3 : public ClientThroughNginx {
 protected:
  void SetUp() override {
    use_s3_ = true;  // before the cluster starts
    ClientThroughNginx::SetUp();
  }
};

TEST_F(ClientThroughNginxOnS3, FilesOnS3CrossNodesAndSurviveADeathMidUpload) {
  expect_client_passes("files.mjs", {std::to_string(n1_->pid())}, 90'000);
  expect_every_listed_file_whole();
  expect_stops_cleanly(*n2_, "node 2");
}

TEST_F(ClientThroughNginx, OfficialAppsEntrySequencesAcrossTwoNodes) {
  // The script has its own 90 s deadline; this bound only catches a script that hangs past it.
  expect_client_passes("app_entry.mjs", {}, 100'000);
  expect_stops_cleanly(*n1_, "node 1");
  expect_stops_cleanly(*n2_, "node 2");
}
