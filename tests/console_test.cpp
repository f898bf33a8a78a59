// The HA console (System Console > Environment > High Availability: GET /admin/ha) in a real browser. Three
// chorusd nodes on one SQLite file on loopback, the first user (a system admin), and headless Chromium driven
// over WebDriver by chromedriver from tests/js/console.mjs: a wrong password is refused on the page, the
// admin logs in, the table shows three green rows; one node is SIGKILLed and its row must turn red within
// 5 s (the script prints the figure); a screenshot goes to reports/ha-console.png. Also the page's headers on
// every node. Every wait is bounded; everything started here is stopped here.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/http_client.h"
#include "tests/temp_dir.h"

using chorus::testing::accepts;
using chorus::testing::Child;
using chorus::testing::ChildOptions;
using chorus::testing::http_request;
using chorus::testing::TempDir;
using chorus::testing::wait_ms;

namespace {

std::string find_program(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  return "";
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The processes whose parent is `parent` (from /proc), with their command lines.
std::vector<std::pair<pid_t, std::string>> children_of(pid_t parent) {
  std::vector<std::pair<pid_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_file(e.path() / "stat");
    const auto close = stat.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    fields >> state >> ppid;
    if (ppid == parent) out.emplace_back(static_cast<pid_t>(std::stol(name)), read_file(e.path() / "cmdline"));
  }
  return out;
}

constexpr int kNodes = 3;

// Three chorusd nodes (HA on, one SQLite file, fixed API and gossip ports on 127.0.0.1), each sure the others
// are green, and chromedriver. Their output goes to files in the test's directory (a pipe nobody reads while
// the script runs could fill and block them); the logs are shown when a check fails.
class HaConsole : public ::testing::Test {
 protected:
  void SetUp() override {
    chromium_ = find_program({"/usr/bin/chromium"});
    chromedriver_ = find_program({"/usr/bin/chromedriver"});
    ASSERT_FALSE(chromium_.empty() || chromedriver_.empty())
        << "Chromium or chromedriver is missing (/usr/bin/chromium, /usr/bin/chromedriver): install Debian's "
           "packages chromium and chromium-driver (apt-get install chromium chromium-driver)";
    node_js_ = find_program({"/usr/bin/node", "/usr/local/bin/node"});
    ASSERT_FALSE(node_js_.empty()) << "Node.js is not installed (Debian's package nodejs; scripts/install-deps.sh)";

    dir_ = std::make_unique<TempDir>("chorus-console-test-");
    const std::filesystem::path dir = dir_->path();
    std::filesystem::create_directories(dir / "data");
    config_ = (dir / "config.json").string();
    // One config.json for all nodes, as the HA guide asks; what differs per node comes from MM_ variables.
    std::ofstream(config_) << R"({
      "ServiceSettings": {"ListenAddress": "127.0.0.1:0"},
      "ClusterSettings": {"Enable": true, "ClusterName": "console-test", "OverrideHostname": "127.0.0.1",
                          "BindAddress": "127.0.0.1", "GossipPort": 8074},
      "SqlSettings": {"DriverName": "sqlite3", "DataSource": ")"
                           << (dir / "data" / "chorus.db").string() << R"("},
      "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO"}
    })";
    // Every port at once: asked for one by one, two could be the same.
    const auto ports = chorus::testing::free_ports(2 * kNodes + 1);
    for (int i = 0; i < kNodes; ++i) {
      api_.push_back(ports[i]);
      gossip_.push_back(ports[kNodes + i]);
    }
    driver_port_ = ports[2 * kNodes];

    try {
      for (int i = 0; i < kNodes; ++i) nodes_.push_back(spawn(i));
    } catch (const std::exception& e) {
      FAIL() << "chorusd did not start: " << e.what();
    }
    ASSERT_GE(wait_ms(
                  [&] {
                    for (int i = 0; i < kNodes; ++i) {
                      if (!accepts(api_[i])) return false;
                      for (int j = 0; j < kNodes; ++j)
                        if (i != j && nodes_[i]->find("status: " + gossip(j) + " is green") < 0) return false;
                    }
                    return true;
                  },
                  20000),
              0)
        << "the nodes did not all see each other green within 20 s\n"
        << logs();
  }

  void TearDown() override {
    stop_chromedriver();
    std::vector<Child*> running;
    for (auto& n : nodes_)
      if (n) running.push_back(n.get());
    chorus::testing::stop_children(running, std::chrono::milliseconds(3000));  // SIGTERM, then SIGKILL
    nodes_.clear();
    dir_.reset();
  }

  std::string gossip(int i) const { return "127.0.0.1:" + std::to_string(gossip_[i]); }
  std::string url(int i) const { return "http://127.0.0.1:" + std::to_string(api_[i]); }

  std::unique_ptr<Child> spawn(int i) {
    std::vector<std::string> args = {CHORUSD_PATH, "--config", config_};
    for (int j = 0; j < kNodes; ++j)
      if (j != i) {
        args.push_back("--peer");
        args.push_back(gossip(j));
      }
    return std::make_unique<Child>(
        args,
        std::vector<std::string>{"MM_SERVICESETTINGS_LISTENADDRESS=127.0.0.1:" + std::to_string(api_[i]),
                                 "MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(gossip_[i])},
        ChildOptions{.output_file = (std::filesystem::path(dir_->path()) / ("node" + std::to_string(i) + ".log")).string(),
                     .null_stdin = true,
                     .die_with_parent = true});
  }

  // chromedriver on its port, answering /status as ready.
  void start_chromedriver() {
    const std::filesystem::path dir = dir_->path();
    chromedriver_child_ = std::make_unique<Child>(
        std::vector<std::string>{chromedriver_, "--port=" + std::to_string(driver_port_)},
        std::vector<std::string>{"TMPDIR=" + dir.string()},  // the browsers' profiles go with the test's directory
        ChildOptions{.output_file = (dir / "chromedriver.log").string(), .null_stdin = true, .die_with_parent = true});
    ASSERT_GE(wait_ms(
                  [&] {
                    if (!chromedriver_child_->running()) return true;  // said below
                    const auto r = http_request(driver_port_, "GET", "/status", "", "", 2000);
                    return r.status == 200 && r.body.find("\"ready\":true") != std::string::npos;
                  },
                  10000),
              0)
        << "chromedriver did not answer /status within 10 s:\n"
        << chromedriver_child_->output();
    ASSERT_TRUE(chromedriver_child_->running()) << "chromedriver exited:\n" << chromedriver_child_->output();
  }

  // Asks chromedriver to quit its browsers and exit (/shutdown); SIGKILL to it and to any browser of its left.
  void stop_chromedriver() {
    if (!chromedriver_child_) return;
    const pid_t pid = chromedriver_child_->pid();
    std::vector<std::pair<pid_t, std::string>> browsers;
    if (chromedriver_child_->running()) browsers = children_of(pid);
    if (chromedriver_child_->running()) http_request(driver_port_, "GET", "/shutdown", "", "", 3000);
    if (chromedriver_child_->wait_exit(3000) < 0) chromedriver_child_->kill_now();
    for (const auto& [child, cmdline] : browsers)
      if (read_file("/proc/" + std::to_string(child) + "/cmdline") == cmdline) ::kill(child, SIGKILL);
    chromedriver_child_.reset();
  }

  std::string logs() {
    std::string s;
    for (size_t i = 0; i < nodes_.size(); ++i)
      s += "node " + std::to_string(i) + " (" + gossip(static_cast<int>(i)) + "):\n" +
           (nodes_[i] ? nodes_[i]->output() : std::string("(not started)\n")) + "\n";
    if (chromedriver_child_) s += "chromedriver:\n" + chromedriver_child_->output();
    return s;
  }

  std::string chromium_, chromedriver_, node_js_, config_;
  std::unique_ptr<TempDir> dir_;
  std::vector<uint16_t> api_, gossip_;
  uint16_t driver_port_ = 0;
  std::vector<std::unique_ptr<Child>> nodes_;
  std::unique_ptr<Child> chromedriver_child_;
};

}  // namespace

TEST_F(HaConsole, EveryNodeServesThePageWithItsSecurityHeaders) {
  const std::filesystem::path console = std::filesystem::path(CHORUS_SOURCE_DIR) / "server" / "api" / "console";
  const struct {
    const char* path;
    const char* file;
    const char* type;
  } assets[] = {{"/admin/ha", "ha.html", "text/html; charset=utf-8"},
                {"/admin/ha.js", "ha.js", "text/javascript; charset=utf-8"},
                {"/admin/ha.css", "ha.css", "text/css; charset=utf-8"}};
  for (int i = 0; i < kNodes; ++i)
    for (const auto& a : assets) {
      const auto r = http_request(api_[i], "GET", a.path);  // no session needed
      ASSERT_EQ(r.status, 200) << url(i) << a.path << "\n" << r.body;
      EXPECT_EQ(r.header("Content-Type"), a.type) << a.path;
      EXPECT_EQ(r.header("Cache-Control"), "no-store") << a.path;
      EXPECT_EQ(r.header("X-Frame-Options"), "DENY") << a.path;
      EXPECT_EQ(r.header("Content-Security-Policy"), "default-src 'self'; frame-ancestors 'none'") << a.path;
      EXPECT_TRUE(r.body == read_file(console / a.file)) << a.path << " is not " << a.file << " as in the source";
    }
  // The data behind it needs an admin's session.
  EXPECT_EQ(http_request(api_[0], "GET", "/api/v4/cluster/status").status, 401);
}

TEST_F(HaConsole, InABrowserAKilledNodeTurnsRedWithinFiveSeconds) {
  // The first user becomes the system admin.
  chorus::testing::HttpResponse created;
  wait_ms(
      [&] {
        created = http_request(api_[0], "POST", "/api/v4/users",
                               R"({"username":"admin","email":"admin@example.com","password":"password-admin"})");
        return created.status != 0 && created.status != 503;
      },
      10000);
  ASSERT_EQ(created.status, 201) << created.body << "\n" << logs();
  ASSERT_NE(created.body.find("system_admin"), std::string::npos) << created.body;

  start_chromedriver();
  if (HasFatalFailure()) return;

  // The page on node 0; node 2 is killed (the script sends the SIGKILL, and times the page's answer to it).
  constexpr int victim = 2;
  const std::filesystem::path source = CHORUS_SOURCE_DIR;
  const std::string shot = (source / "reports" / "ha-console.png").string();
  Child script({node_js_, (source / "tests" / "js" / "console.mjs").string(), url(0) + "/admin/ha", "admin",
                "password-admin", std::to_string(nodes_[victim]->pid()), gossip(victim), shot,
                "http://127.0.0.1:" + std::to_string(driver_port_)},
               {}, ChildOptions{.output_file = (std::filesystem::path(dir_->path()) / "console.log").string(),
                                .null_stdin = true});
  const int code = script.wait_exit(60000);
  if (code < 0) script.kill_now();
  std::cout << script.output();  // the script's timeline and "red after N ms", for the record
  EXPECT_EQ(code, 0) << (code < 0 ? "console.mjs did not finish within 60 s\n" : "") << "console.mjs:\n"
                     << script.output() << "\n"
                     << logs();
  if (code != 0) return;
  EXPECT_NE(script.output().find("red after "), std::string::npos) << script.output();
  EXPECT_EQ(nodes_[victim]->wait_exit(3000), 128 + SIGKILL) << "the script was to SIGKILL node " << victim;
  EXPECT_TRUE(std::filesystem::exists(shot)) << shot;
}
