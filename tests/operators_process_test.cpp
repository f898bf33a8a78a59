// What operators run against real chorusd processes (issue 16): /metrics passes promtool and a real
// Prometheus (Debian's) scrapes a three-node cluster and sees a SIGKILLed node go; the log file rotates
// by size and its level follows a reload; the support packet; the local-mode socket. Loopback only;
// every wait is short and bounded.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/http_client.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using chorus::testing::Child;
using chorus::testing::ChildOptions;
using chorus::testing::http_request;
using chorus::testing::wait_ms;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class Operators : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("chorus-operators-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    nodes_.clear();
    fs::remove_all(dir_);
  }

  // n nodes on one SQLite file; each with its API, gossip and metrics ports (all taken at once).
  void write_config(const std::string& extra,
                    const std::string& log = R"("ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": false)",
                    const std::string& service = R"("ListenAddress": "127.0.0.1:0")") {
    config_ = (dir_ / "config.json").string();
    std::ofstream(config_) << R"({
      "ServiceSettings": {)" << service << R"(},
      "ClusterSettings": {"Enable": true, "ClusterName": "ops", "OverrideHostname": "127.0.0.1",
                          "BindAddress": "127.0.0.1"},
      "SqlSettings": {"DriverName": "sqlite3", "DataSource": ")"
                           << (dir_ / "chorus.db").string() << R"("},
      "FileSettings": {"Directory": ")" << (dir_ / "files").string() << R"(/"},
      "LogSettings": {)" << log << "}" << extra << "}";
  }
  void start(int n, std::vector<std::string> extra_env = {}) {
    ports_ = chorus::testing::free_ports(static_cast<size_t>(3 * n));
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> args = {CHORUSD_PATH, "--config", config_};
      for (int j = 0; j < n; ++j)
        if (j != i) {
          args.push_back("--peer");
          args.push_back("127.0.0.1:" + std::to_string(gossip(j)));
        }
      std::vector<std::string> env = {"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(gossip(i)),
                                      "MM_SERVICESETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(api(i)),
                                      "MM_METRICSSETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(metrics(i))};
      for (const auto& e : extra_env) env.push_back(e);
      // Output to a file: a pipe nobody drains would fill and stop the node.
      nodes_.push_back(std::make_unique<Child>(
          args, env, ChildOptions{.output_file = (dir_ / ("node" + std::to_string(i) + ".out")).string()}));
    }
    for (int i = 0; i < n; ++i)
      // (get_server_status: the database answers, migrations done)
      ASSERT_GE(wait_ms([&] {
                  return http_request(api(i), "GET", "/api/v4/system/ping?get_server_status=true").status == 200;
                },
                        15000),
                0)
          << "node " << i << " did not answer:\n"
          << fmt_lines(*nodes_[static_cast<size_t>(i)]);
  }
  static std::string fmt_lines(Child& c) {
    std::string s;
    for (const auto& l : c.lines()) s += l + "\n";
    return s;
  }
  uint16_t api(int i) const { return ports_[static_cast<size_t>(3 * i)]; }
  uint16_t gossip(int i) const { return ports_[static_cast<size_t>(3 * i + 1)]; }
  uint16_t metrics(int i) const { return ports_[static_cast<size_t>(3 * i + 2)]; }

  // The first user of a new server is its system admin: its token.
  std::string admin() {
    http_request(api(0), "POST", "/api/v4/users",
                 R"({"username":"admin","email":"admin@example.com","password":"Admin-password-1"})");
    auto r = http_request(api(0), "POST", "/api/v4/users/login", R"({"login_id":"admin","password":"Admin-password-1"})");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.header("Token");
  }

  // Runs a program to its end (bounded): exit code and output.
  static std::pair<int, std::string> run(const std::vector<std::string>& args, const std::string& stdin_file = "",
                                         int timeout_ms = 20000) {
    std::vector<std::string> a = args;
    if (!stdin_file.empty()) a = {"/bin/sh", "-c", "exec \"$0\" \"$@\" < " + stdin_file, args[0]};
    if (!stdin_file.empty()) a.insert(a.end(), args.begin() + 1, args.end());
    Child c(a, {}, ChildOptions{.output_file = (fs::temp_directory_path() /
                                                  ("chorus-operators-run-" + std::to_string(::getpid()) + ".out"))
                                                     .string()});
    const int code = c.wait_exit(timeout_ms);
    return {code, fmt_lines(c)};
  }

  fs::path dir_;
  std::string config_;
  std::vector<uint16_t> ports_;
  std::vector<std::unique_ptr<Child>> nodes_;
};

}  // namespace

TEST_F(Operators, MetricsPassPromtoolAndARealPrometheusScrapesThreeNodesAndSeesOneDie) {
  write_config(R"(, "MetricsSettings": {"Enable": true})");
  ASSERT_NO_FATAL_FAILURE(start(3));
  const std::string token = admin();
  for (int i = 0; i < 3; ++i) http_request(api(i), "GET", "/api/v4/users/me", "", token);
  http_request(api(1), "GET", "/api/v4/no/such/route", "", token);

  // Every node answers /metrics with what it knows (members alive once the cluster formed).
  std::string text;
  ASSERT_GE(wait_ms(
                [&] {
                  text = http_request(metrics(0), "GET", "/metrics").body;
                  return text.find("chorus_cluster_members{state=\"alive\"} 2") != std::string::npos;
                },
                10000),
            0)
      << text.substr(0, 3000);
  for (const char* want :
       {"chorus_http_requests_total{method=\"GET\",route=\"/api/v4/users/{user_id}\",status=\"200\"}",
        "chorus_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v4/system/ping\",le=\"+Inf\"}",
        "chorus_websocket_connections{state=\"active\"} 0", "chorus_cluster_leader 1",
        ",role=\"master\",state=\"open\"} ", ",role=\"master\"} 1",
        "chorus_gossip_send_queue_frames{peer=\"127.0.0.1:", "chorus_build_info{version=\"",
        "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  EXPECT_NE(http_request(metrics(1), "GET", "/metrics").body.find("route=\"unmatched\",status=\"404\""),
            std::string::npos);

  // promtool (Debian's prometheus package) accepts the exposition, lint included.
  ASSERT_TRUE(fs::exists("/usr/bin/promtool")) << "promtool is missing: apt-get install prometheus";
  const fs::path scraped = dir_ / "metrics.txt";
  std::ofstream(scraped) << text;
  auto [code, out] = run({"/usr/bin/promtool", "check", "metrics"}, scraped.string());
  EXPECT_EQ(code, 0) << out;

  // A real Prometheus scrapes the three every 500 ms.
  const uint16_t prom_port = chorus::testing::free_port();
  std::ofstream(dir_ / "prometheus.yml") << "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
                                         << "scrape_configs:\n  - job_name: chorus\n    static_configs:\n"
                                         << "      - targets: ['127.0.0.1:" << metrics(0) << "', '127.0.0.1:"
                                         << metrics(1) << "', '127.0.0.1:" << metrics(2) << "']\n";
  Child prometheus({"/usr/bin/prometheus", "--config.file=" + (dir_ / "prometheus.yml").string(),
                    "--storage.tsdb.path=" + (dir_ / "tsdb").string(),
                    "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                   {}, ChildOptions{.output_file = (dir_ / "prometheus.out").string()});
  auto query = [&](const std::string& q) -> json::array {
    auto r = http_request(prom_port, "GET", "/api/v1/query?query=" + q);
    if (r.status != 200) return {};
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    if (ec || !v.is_object()) return {};
    return v.as_object().at("data").as_object().at("result").as_array();
  };
  auto values = [&](const std::string& q) {
    std::map<std::string, std::string> by_instance;
    for (const auto& s : query(q))
      by_instance[std::string(s.as_object().at("metric").as_object().at("instance").as_string())] =
          std::string(s.as_object().at("value").as_array()[1].as_string());
    return by_instance;
  };
  const std::string up_all = "up%7Bjob%3D%22chorus%22%7D";  // up{job="chorus"}
  ASSERT_GE(wait_ms(
                [&] {
                  auto up = values(up_all);
                  return up.size() == 3 && std::all_of(up.begin(), up.end(), [](auto& kv) { return kv.second == "1"; });
                },
                20000),
            0)
      << "Prometheus did not scrape all three:\n"
      << fmt_lines(prometheus);
  // chorus_cluster_members{state="alive"}: each node sees the other two.
  const std::string alive = "chorus_cluster_members%7Bstate%3D%22alive%22%7D";
  ASSERT_GE(wait_ms([&] { return values(alive).size() == 3; }, 5000), 0);
  for (const auto& [instance, v] : values(alive)) EXPECT_EQ(v, "2") << instance;

  // SIGKILL node 2: Prometheus sees its target down and the others count it dead.
  nodes_[2]->signal(SIGKILL);
  const std::string dead = "chorus_cluster_members%7Bstate%3D%22dead%22%7D";
  const std::string target2 = "127.0.0.1:" + std::to_string(metrics(2));
  const int64_t took = wait_ms(
      [&] {
        auto up = values(up_all);
        auto d = values(dead);
        return up[target2] == "0" && d["127.0.0.1:" + std::to_string(metrics(0))] == "1" &&
               d["127.0.0.1:" + std::to_string(metrics(1))] == "1";
      },
      10000);
  EXPECT_GE(took, 0) << "Prometheus never saw node 2 go";
  prometheus.signal(SIGTERM);
  prometheus.wait_exit(5000);
}

TEST_F(Operators, TheLogFileRotatesBySizeCarriesTheNodeAndFollowsAReloadedLevel) {
  const fs::path logs = dir_ / "logs";
  write_config("", R"("ConsoleJson": false, "ConsoleLevel": "ERROR", "EnableFile": true,
                  "FileLocation": ")" + logs.string() + R"(", "FileLevel": "DEBUG", "FileJson": true,
                  "FileMaxSizeMB": 1, "FileMaxBackups": 2)");
  ASSERT_NO_FATAL_FAILURE(start(1));
  // Client errors are logged at DEBUG: about 2.5 MB of them.
  for (int i = 0; i < 6000; ++i)
    http_request(api(0), "GET", "/api/v4/nothing/here/" + std::string(200, 'x') + std::to_string(i));
  ASSERT_TRUE(fs::exists(logs / "chorus.log"));
  EXPECT_TRUE(fs::exists(logs / "chorus.1.log")) << "rotated at 1 MB";
  EXPECT_TRUE(fs::exists(logs / "chorus.2.log"));
  EXPECT_FALSE(fs::exists(logs / "chorus.3.log")) << "FileMaxBackups 2";
  for (const char* f : {"chorus.log", "chorus.1.log"})
    EXPECT_LE(fs::file_size(logs / f), (1u << 20) + 4096) << f;
  // JSON lines naming the node.
  const std::string node = "\"node\":\"127.0.0.1:" + std::to_string(gossip(0)) + "\"";
  std::ifstream in(logs / "chorus.1.log");
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    ASSERT_EQ(line.front(), '{') << line;
    ASSERT_NE(line.find(node), std::string::npos) << line;
    boost::system::error_code ec;
    json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
  }
  EXPECT_GT(lines, 1000);

  // FileLevel ERROR through a reload (SIGHUP): client errors stop reaching the file.
  std::string cfg = read_file(config_);
  cfg.replace(cfg.find("\"FileLevel\": \"DEBUG\""), 20, "\"FileLevel\": \"ERROR\"");
  std::ofstream(config_) << cfg;
  nodes_[0]->signal(SIGHUP);
  // The line that starts the reload is the last at DEBUG level: the reload runs to its end before the
  // node's loop takes the next request.
  ASSERT_GE(
      wait_ms([&] { return read_file(logs / "chorus.log").find("reloading config.json (SIGHUP)") != std::string::npos; },
              5000),
      0);
  const auto size = fs::file_size(logs / "chorus.log");
  for (int i = 0; i < 50; ++i) http_request(api(0), "GET", "/api/v4/nothing/after/" + std::to_string(i));
  EXPECT_EQ(read_file(logs / "chorus.log").find("/api/v4/nothing/after/"), std::string::npos);
  EXPECT_EQ(fs::file_size(logs / "chorus.log"), size);
}

TEST_F(Operators, TheSupportPacketHoldsTheMaskedConfigTheStatusTheLogAndTheMetrics) {
  write_config(R"(, "MetricsSettings": {"Enable": true})",
               R"("ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": true, "FileLocation": ")" +
                   (dir_ / "logs").string() + "\"");
  ASSERT_NO_FATAL_FAILURE(start(1));
  const std::string token = admin();
  auto r = http_request(api(0), "GET", "/api/v4/system/support_packet", "", token);
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_EQ(r.header("Content-Type"), "application/x-tar");
  const fs::path tar = dir_ / "packet.tar";
  std::ofstream(tar, std::ios::binary) << r.body;
  const fs::path out = dir_ / "packet";
  fs::create_directories(out);
  auto [code, listing] = run({"/bin/tar", "-xvf", tar.string(), "-C", out.string()});
  ASSERT_EQ(code, 0) << listing;
  for (const char* f : {"config.json", "cluster_status.json", "database.json", "version.txt", "chorus.log", "metrics.txt"})
    EXPECT_TRUE(fs::exists(out / f)) << f << " missing:\n" << listing;
  const std::string cfg = read_file(out / "config.json");
  EXPECT_EQ(cfg.find((dir_ / "chorus.db").string()), std::string::npos) << "the data source is masked";
  EXPECT_NE(read_file(out / "chorus.log").find("chorusd"), std::string::npos);
  EXPECT_NE(read_file(out / "metrics.txt").find("process_cpu_seconds_total"), std::string::npos);
  // Not for anyone else.
  http_request(api(0), "POST", "/api/v4/users", R"({"username":"bob","email":"bob@example.com","password":"Bob-password-1"})",
               token);
  auto login = http_request(api(0), "POST", "/api/v4/users/login", R"({"login_id":"bob","password":"Bob-password-1"})");
  EXPECT_EQ(http_request(api(0), "GET", "/api/v4/system/support_packet", "", login.header("Token")).status, 403);
  EXPECT_EQ(http_request(api(0), "GET", "/api/v4/system/support_packet").status, 401);
}

TEST_F(Operators, LocalModeServesTheApiOnAPrivateUnixSocketWithoutALogin) {
  const fs::path socket_path = dir_ / "local.socket";
  write_config("", R"("ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": false)",
               R"("ListenAddress": "127.0.0.1:0", "EnableLocalMode": true, "LocalModeSocketLocation": ")" +
                   socket_path.string() + "\"");
  std::ofstream(socket_path) << "stale";  // not a socket: refused, and left alone
  {
    Child refused({CHORUSD_PATH, "--config", config_},
                  {"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(chorus::testing::free_port())},
                  ChildOptions{.output_file = (dir_ / "refused.out").string()});
    const int code = refused.wait_exit(10000);
    const std::string out = fmt_lines(refused);
    EXPECT_EQ(code, 1) << out;
    EXPECT_NE(out.find("not a socket"), std::string::npos) << out;
    EXPECT_EQ(read_file(socket_path), "stale");
  }
  fs::remove(socket_path);
  ASSERT_NO_FATAL_FAILURE(start(1));
  ASSERT_GE(wait_ms([&] { return fs::exists(socket_path); }, 5000), 0);
  struct stat st {};
  ASSERT_EQ(::stat(socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "only the node's user may use it";

  auto local = [&](const std::string& method, const std::string& target, const std::string& body) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket_path.c_str());
    std::string answer;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const std::string req = method + " " + target + " HTTP/1.1\r\nHost: local\r\nConnection: close\r\n" +
                              "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + body;
      ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return answer;
  };
  // A system admin without a login: it reads the config and creates a user (no creator needed).
  EXPECT_EQ(local("GET", "/api/v4/config", "").rfind("HTTP/1.1 200", 0), 0u);
  const std::string created =
      local("POST", "/api/v4/users", R"({"username":"carol","email":"carol@example.com","password":"Carol-password-1"})");
  EXPECT_EQ(created.rfind("HTTP/1.1 201", 0), 0u) << created;
  const std::string team = local("POST", "/api/v4/teams", R"({"name":"ops","display_name":"Ops","type":"O"})");
  EXPECT_EQ(team.rfind("HTTP/1.1 201", 0), 0u) << team;
  // Over TCP the same request needs a token.
  EXPECT_EQ(http_request(api(0), "GET", "/api/v4/config").status, 401);
  // A clean stop removes the socket.
  nodes_[0]->signal(SIGTERM);
  EXPECT_EQ(nodes_[0]->wait_exit(10000), 0);
  EXPECT_FALSE(fs::exists(socket_path));
}

// The guide's "Remove a server" walked with chorusctl, then a node's death as chorusctl shows it.
TEST_F(Operators, TheGuidesRemoveAServerWalkedWithChorusctlAndADeadNodeIsRedThereWithinTwoSeconds) {
  write_config("");
  ASSERT_NO_FATAL_FAILURE(start(3));
  admin();
  const std::string creds = (dir_ / "chorusctl.json").string();
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {CHORUSCTL_PATH, "--config", creds});
    return run(args, "", 20000);
  };
  auto [login, login_out] = ctl({"auth", "login", "http://127.0.0.1:" + std::to_string(api(0)), "--name", "ops",
                                 "--username", "admin", "--password", "Admin-password-1"});
  ASSERT_EQ(login, 0) << login_out;
  // 1. Every node green (exit 0).
  std::string out;
  ASSERT_GE(wait_ms(
                [&] {
                  auto [code, text] = ctl({"cluster", "status"});
                  out = text;
                  return code == 0;
                },
                15000),
            0)
      << out;
  // 2. Remove a server: stop it cleanly; the others list the remaining two, green, at once.
  nodes_[2]->signal(SIGTERM);
  ASSERT_EQ(nodes_[2]->wait_exit(10000), 0);
  ASSERT_GE(wait_ms(
                [&] {
                  auto [code, text] = ctl({"cluster", "status", "--json"});
                  out = text;
                  return code == 0 && text.find(std::to_string(gossip(2))) == std::string::npos;
                },
                2000),
            0)
      << out;
  // 3. A node dies: red in chorusctl (exit 4, "dead") within 2 s.
  nodes_[1]->signal(SIGKILL);
  const int64_t took = wait_ms(
      [&] {
        auto [code, text] = ctl({"cluster", "status", "--json"});
        out = text;
        return code == 4 && text.find("\"dead\"") != std::string::npos;
      },
      2000);
  EXPECT_GE(took, 0) << "not red within 2 s:\n" << out;
  std::printf("chorusctl showed the killed node red after %lld ms\n", static_cast<long long>(took));
}
