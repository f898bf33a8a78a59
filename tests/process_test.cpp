// Real chorusd processes on loopback: three nodes find each other over TCP; SIGKILL one and the others
// see its connection drop within 1 s; restart it and they reconnect; SIGTERM stops each cleanly. Also
// chorusd's answer to a bad config. Waits are bounded and short.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "server/store/schema.h"
#include "tests/child_process.h"
#include "tests/free_port.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using chorus::testing::Child;
using chorus::testing::free_port;
using chorus::testing::wait_ms;

class ChorusdCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("chorus-process-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    config_ = (dir_ / "config.json").string();
    // One config.json for all nodes, as the HA guide asks; what differs per node comes from MM_ variables.
    std::ofstream(config_) << R"({
      "ServiceSettings": {"ListenAddress": "127.0.0.1:0"},
      "ClusterSettings": {"Enable": true, "ClusterName": "test", "OverrideHostname": "127.0.0.1",
                          "BindAddress": "127.0.0.1", "GossipPort": 8074},
      "SqlSettings": {"DriverName": "sqlite3", "DataSource": ")"
                           << (dir_ / "data" / "chorus.db").string() << R"("},
      "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO"}
    })";
    for (uint16_t p : chorus::testing::free_ports(3)) ports_.push_back(p);  // at once: one by one can repeat
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string address(int i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }

  std::unique_ptr<Child> spawn(int i) {
    std::vector<std::string> args = {CHORUSD_PATH, "--config", config_};
    for (int j = 0; j < 3; ++j)
      if (j != i) {
        args.push_back("--peer");
        args.push_back(address(j));
      }
    return std::make_unique<Child>(
        args, std::vector<std::string>{"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(ports_[i])});
  }

  std::filesystem::path dir_;
  std::string config_;
  std::vector<uint16_t> ports_;
};

}  // namespace

TEST_F(ChorusdCluster, ThreeNodesSeeEachOtherLoseAKilledOneWithinASecondAndReconnect) {
  std::vector<std::unique_ptr<Child>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(spawn(i));
  auto sees = [&](int i, int j, const char* state, size_t from = 0) {
    return nodes[i]->find("ping: peer " + address(j) + " " + state, from) >= 0;
  };
  ASSERT_GE(wait_ms(
                [&] {
                  for (int i = 0; i < 3; ++i)
                    for (int j = 0; j < 3; ++j)
                      if (i != j && !sees(i, j, "up")) return false;
                  return true;
                },
                5000),
            0)
      << "nodes did not connect:\n"
      << nodes[0]->output() << nodes[1]->output() << nodes[2]->output();

  // The per-node port came from the environment, and the config hash is the same on every node.
  const int hash_line = nodes[0]->find("config hash ");
  ASSERT_GE(hash_line, 0);
  const std::string out0 = nodes[0]->output();
  const std::string hash = out0.substr(out0.find("config hash ") + 12, 64);
  for (int i = 1; i < 3; ++i)
    EXPECT_GE(nodes[i]->find("config hash " + hash), 0) << "config hashes differ across nodes";
  EXPECT_GE(nodes[1]->find("ClusterSettings.GossipPort set from the environment"), 0);

  // SIGKILL node 2: both others see its connection drop within 1 s.
  const size_t mark0 = nodes[0]->line_count(), mark1 = nodes[1]->line_count();
  nodes[2]->signal(SIGKILL);
  const int64_t took = wait_ms([&] { return sees(0, 2, "down", mark0) && sees(1, 2, "down", mark1); }, 1000);
  ASSERT_GE(took, 0) << "a killed node's connection was not seen to drop within 1 s:\n" << nodes[0]->output();
  std::printf("killed node seen down by both peers after %lld ms\n", static_cast<long long>(took));
  EXPECT_EQ(nodes[2]->wait_exit(1000), 128 + SIGKILL);

  // Back on the same port: the others reconnect (backoff capped at 1 s), and it reaches them.
  nodes[2] = spawn(2);
  const int64_t back = wait_ms(
      [&] { return sees(0, 2, "up", mark0) && sees(1, 2, "up", mark1) && sees(2, 0, "up") && sees(2, 1, "up"); }, 4000);
  ASSERT_GE(back, 0) << "no reconnect:\n" << nodes[0]->output() << nodes[2]->output();
  std::printf("restarted node reconnected in %lld ms\n", static_cast<long long>(back));

  // SIGTERM stops every node cleanly.
  for (auto& n : nodes) n->signal(SIGTERM);
  for (auto& n : nodes) {
    EXPECT_EQ(n->wait_exit(3000), 0) << n->output();
    EXPECT_GE(n->find("chorusd: stopped"), 0);
  }
}

TEST_F(ChorusdCluster, ThreeNodesStartingAtOnceOnOneSqliteFileMigrateItOnce) {
  std::vector<std::unique_ptr<Child>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(spawn(i));
  ASSERT_GE(wait_ms(
                [&] {
                  for (auto& n : nodes)
                    if (n->find("database ready, schema " + std::to_string(chorus::store::migrations().size()) +
                                " (release 0.1)") < 0)
                      return false;
                  return true;
                },
                15000),
            0)
      << nodes[0]->output() << nodes[1]->output() << nodes[2]->output();
  int applied = 0, migrators = 0;
  for (auto& n : nodes) {
    int here = 0;
    for (int line = n->find("applied migration"); line >= 0;
         line = n->find("applied migration", static_cast<size_t>(line) + 1))
      ++here;
    applied += here;
    migrators += here > 0;
  }
  EXPECT_EQ(applied, static_cast<int>(chorus::store::migrations().size()));  // each migration once in the whole cluster
  EXPECT_EQ(migrators, 1);
  for (auto& n : nodes) n->signal(SIGTERM);
  for (auto& n : nodes) EXPECT_EQ(n->wait_exit(3000), 0);
}

TEST_F(ChorusdCluster, AnUnreachableMasterOrABadDataSourceStopsTheNodeWithTheReason) {
  Child bad_source({CHORUSD_PATH, "--config", config_}, {"MM_SQLSETTINGS_DATASOURCE=postgres://x@db/chorus"});
  EXPECT_EQ(bad_source.wait_exit(3000), 2);
  EXPECT_NE(bad_source.output().find("SqlSettings.DataSource: this looks like a URL, but DriverName is sqlite3"),
            std::string::npos)
      << bad_source.output();

  Child unreachable({CHORUSD_PATH, "--config", config_},
                    {"MM_SQLSETTINGS_DRIVERNAME=postgres",
                     "MM_SQLSETTINGS_DATASOURCE=postgres://chorus:secret@127.0.0.1:1/chorus?connect_timeout=2",
                     "MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(ports_[0])});
  EXPECT_EQ(unreachable.wait_exit(10000), 1);
  const std::string out = unreachable.output();
  EXPECT_NE(
      out.find("cannot reach the master database (SqlSettings.DataSource postgres://chorus:****@127.0.0.1:1/chorus"),
      std::string::npos)
      << out;
  EXPECT_EQ(out.find("secret"), std::string::npos) << "the password must not be logged";
}

TEST_F(ChorusdCluster, NodesFindEachOtherThroughClusterDiscoveryWithoutPeerFlags) {
  std::vector<std::unique_ptr<Child>> nodes;
  for (int i = 0; i < 3; ++i)
    nodes.push_back(std::make_unique<Child>(
        std::vector<std::string>{CHORUSD_PATH, "--config", config_},
        std::vector<std::string>{"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(ports_[i])}));
  auto sees = [&](int i, int j, const char* state) {
    return nodes[i]->find("ping: peer " + address(j) + " " + state) >= 0;
  };
  ASSERT_GE(wait_ms(
                [&] {
                  for (int i = 0; i < 3; ++i)
                    for (int j = 0; j < 3; ++j)
                      if (i != j && !sees(i, j, "up")) return false;
                  return true;
                },
                10000),
            0)
      << nodes[0]->output() << nodes[1]->output() << nodes[2]->output();
  // A clean stop removes the node's row; the others drop it from their peers.
  nodes[2]->signal(SIGTERM);
  EXPECT_EQ(nodes[2]->wait_exit(3000), 0);
  ASSERT_GE(wait_ms([&] { return nodes[0]->find("ping: peer " + address(2) + " removed") >= 0; }, 5000), 0)
      << nodes[0]->output();
  for (int i = 0; i < 2; ++i) nodes[i]->signal(SIGTERM);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(nodes[i]->wait_exit(3000), 0);
}

TEST_F(ChorusdCluster, ANodeWithAnotherConfigIsRedWithTheReason) {
  // Node 2 reads a config.json that differs in one setting outside ClusterSettings.
  const std::string other = (dir_ / "other.json").string();
  {
    std::ifstream in(config_);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text.insert(text.rfind('}'), R"(, "TeamSettings": {"SiteName": "Elsewhere"})");
    std::ofstream(other) << text;
  }
  std::vector<std::unique_ptr<Child>> nodes;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> args = {CHORUSD_PATH, "--config", i == 2 ? other : config_};
    nodes.push_back(std::make_unique<Child>(
        args, std::vector<std::string>{"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(ports_[i])}));
  }
  ASSERT_GE(wait_ms(
                [&] {
                  return nodes[0]->find(address(2) + " is red: config hash differs from ours") >= 0 &&
                         nodes[2]->find(address(0) + " is red: config hash differs from ours") >= 0 &&
                         nodes[0]->find(address(1) + " is green") >= 0;
                },
                8000),
            0)
      << nodes[0]->output() << nodes[2]->output();
  for (auto& n : nodes) n->signal(SIGTERM);
  for (auto& n : nodes) EXPECT_EQ(n->wait_exit(3000), 0);
}

TEST_F(ChorusdCluster, BadConfigIsRefusedWithTheSettingNamed) {
  std::ofstream(config_) << R"({"SqlSettings": {"DriverName": "mysql", "MaxOpenConns": "many"}})";
  Child c({CHORUSD_PATH, "--config", config_}, {"MM_CLUSTERSETTINGS_GOSSIPPORT=99999"});
  EXPECT_EQ(c.wait_exit(3000), 2);
  const std::string out = c.output();
  EXPECT_NE(out.find("SqlSettings.DriverName: \"mysql\" is not supported"), std::string::npos) << out;
  EXPECT_NE(out.find("SqlSettings.MaxOpenConns: expected an integer"), std::string::npos) << out;
  EXPECT_NE(out.find("environment MM_CLUSTERSETTINGS_GOSSIPPORT: ClusterSettings.GossipPort: 99999 is out of range"),
            std::string::npos)
      << out;

  Child missing({CHORUSD_PATH, "--config", (dir_ / "nope.json").string()}, {});
  EXPECT_EQ(missing.wait_exit(3000), 2);
  EXPECT_NE(missing.output().find("cannot open the config file"), std::string::npos);
}

TEST_F(ChorusdCluster, PortInUseIsAClearFatalError) {
  auto first = spawn(0);
  ASSERT_GE(wait_ms([&] { return first->find("ping: started") >= 0; }, 3000), 0) << first->output();
  auto second = spawn(0);
  EXPECT_EQ(second->wait_exit(3000), 1);
  EXPECT_NE(second->output().find("cannot listen on gossip address 127.0.0.1:" + std::to_string(ports_[0])),
            std::string::npos)
      << second->output();
}

namespace {
// Whether a TCP connect to ip:port is accepted (loopback: refused at once when nothing listens there).
bool accepts(const char* ip, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}
}  // namespace

// Issue 13: with no BindAddress the gossip port listened on every interface (0.0.0.0). It now listens on
// the address the node advertises to its peers, and nowhere else unless BindAddress says so.
TEST_F(ChorusdCluster, TheGossipPortListensOnlyOnTheAdvertisedAddressUnlessBindAddressSaysOtherwise) {
  const std::string port = std::to_string(ports_[0]);
  Child node({CHORUSD_PATH, "--config", config_},
             {"MM_CLUSTERSETTINGS_GOSSIPPORT=" + port, "MM_CLUSTERSETTINGS_BINDADDRESS="});
  ASSERT_GE(wait_ms([&] { return node.find("ping: started") >= 0; }, 3000), 0) << node.output();
  EXPECT_GE(node.find("gossip on 127.0.0.1:" + port + " as 127.0.0.1:" + port), 0) << node.output();
  EXPECT_TRUE(accepts("127.0.0.1", ports_[0]));
  EXPECT_FALSE(accepts("127.0.0.2", ports_[0])) << "another loopback address reaches a port bound to 0.0.0.0";
  Child any({CHORUSD_PATH, "--config", config_},
            {"MM_CLUSTERSETTINGS_GOSSIPPORT=" + std::to_string(ports_[1]), "MM_CLUSTERSETTINGS_BINDADDRESS=0.0.0.0"});
  ASSERT_GE(wait_ms([&] { return any.find("ping: started") >= 0; }, 3000), 0) << any.output();
  EXPECT_TRUE(accepts("127.0.0.2", ports_[1])) << "asked for: every interface";
}

namespace {
// The leader a node last announced ("membership: ... leader is now X"), or "".
std::string last_leader(Child& c) {
  std::string leader;
  for (int line = c.find("leader is now "); line >= 0; line = c.find("leader is now ", static_cast<size_t>(line) + 1)) {
    const std::string out = c.output();
    size_t pos = 0;
    for (int i = 0; i < line; ++i) pos = out.find('\n', pos) + 1;
    const std::string text = out.substr(pos, out.find('\n', pos) - pos);
    leader = text.substr(text.find("leader is now ") + 14);
  }
  return leader;
}
}  // namespace

TEST_F(ChorusdCluster, KillingTheLeaderMovesLeadershipWithinThreeSecondsAndAStoppedNodeIsDeclaredDeadThenBack) {
  std::vector<std::unique_ptr<Child>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(spawn(i));
  std::vector<int> order = {0, 1, 2};
  std::sort(order.begin(), order.end(), [&](int a, int b) { return address(a) < address(b); });
  const int first = order[0], second = order[1], third = order[2];
  ASSERT_GE(wait_ms(
                [&] {
                  for (auto& n : nodes)
                    if (last_leader(*n) != address(first)) return false;
                  return true;
                },
                8000),
            0)
      << "no agreement on the first leader:\n"
      << nodes[0]->output() << nodes[1]->output() << nodes[2]->output();

  // SIGKILL the leader: the other two agree on the next lowest within 3 s.
  nodes[first]->signal(SIGKILL);
  const int64_t moved = wait_ms(
      [&] { return last_leader(*nodes[second]) == address(second) && last_leader(*nodes[third]) == address(second); },
      3000);
  ASSERT_GE(moved, 0) << "leadership did not move within 3 s:\n" << nodes[second]->output() << nodes[third]->output();
  std::printf("leader killed: both survivors named the new leader after %lld ms\n", static_cast<long long>(moved));

  // SIGSTOP a node: declared dead within 3 s; SIGCONT: alive again.
  const size_t mark = nodes[second]->line_count();
  nodes[third]->signal(SIGSTOP);
  const int64_t dead = wait_ms([&] { return nodes[second]->find(address(third) + " is dead", mark) >= 0; }, 3000);
  nodes[third]->signal(SIGCONT);
  ASSERT_GE(dead, 0) << "a stopped node was not declared dead within 3 s:\n" << nodes[second]->output();
  std::printf("stopped node declared dead after %lld ms\n", static_cast<long long>(dead));
  const int64_t back = wait_ms([&] { return nodes[second]->find(address(third) + " is alive", mark) >= 0; }, 5000);
  ASSERT_GE(back, 0) << "the continued node did not come back:\n" << nodes[second]->output() << nodes[third]->output();
  std::printf("continued node alive again after %lld ms\n", static_cast<long long>(back));
  // A clean stop (SIGTERM) of the leader hands the leadership over at once: no detection wait.
  const size_t before = nodes[third]->line_count();
  nodes[second]->signal(SIGTERM);
  const int64_t handed =
      wait_ms([&] { return nodes[third]->find("leader is now " + address(third), before) >= 0; }, 3000);
  EXPECT_GE(handed, 0) << nodes[third]->output();
  EXPECT_LT(handed, 800)
      << "a leaving leader is replaced without waiting for failure detection (which takes about 1 s)";
  EXPECT_EQ(nodes[second]->wait_exit(3000), 0);
  nodes[third]->signal(SIGTERM);
  EXPECT_EQ(nodes[third]->wait_exit(3000), 0);
}

// SIGHUP reloads config.json (systemctl reload, deploy/chorusd.service): a good change is applied, a file
// that does not load is logged with the reason and the running config stays; the node keeps running.
TEST_F(ChorusdCluster, SighupReloadsTheConfigAndABadFileIsLoggedAndChangesNothing) {
  auto node = spawn(0);
  ASSERT_GE(wait_ms([&] { return node->find("ping: started") >= 0; }, 3000), 0) << node->output();
  std::string text;
  {
    std::ifstream in(config_);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string changed = text;
  changed.insert(changed.rfind('}'), R"(, "TeamSettings": {"SiteName": "Reloaded"})");
  std::ofstream(config_) << changed;
  node->signal(SIGHUP);
  ASSERT_GE(wait_ms([&] { return node->find("config: reloaded; hash") >= 0; }, 3000), 0) << node->output();
  EXPECT_GE(node->find("config: reloading config.json (SIGHUP)"), 0) << node->output();

  std::ofstream(config_) << R"({"SqlSettings": {"MaxOpenConns": "many"}})";
  node->signal(SIGHUP);
  ASSERT_GE(wait_ms([&] { return node->find("config: reload refused, the running config") >= 0; }, 3000), 0)
      << node->output();
  EXPECT_GE(node->find("SqlSettings.MaxOpenConns: expected an integer"), 0) << node->output();
  EXPECT_TRUE(node->running()) << "a bad file does not stop the node";
  node->signal(SIGTERM);
  EXPECT_EQ(node->wait_exit(3000), 0) << node->output();
}
