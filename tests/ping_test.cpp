// The ping protocol, one test body, two sides of the seam: the simulator (many seeds, virtual time,
// with link jitter and loss) and real TCP on loopback (one process, real clocks, short bounded waits).
// Three nodes see each other and measure round trips; a node killed is seen down by the others within
// 1 s; back, they reconnect.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

#include "server/cluster/ping.h"
#include "server/runtime/asio_env.h"
#include "simulator/kernel.h"
#include "tests/free_port.h"
#include "tests/run_io.h"

using namespace chorus;

namespace {

class Harness {
 public:
  virtual ~Harness() = default;
  virtual size_t size() = 0;
  virtual PingNode* node(size_t i) = 0;  // null while killed
  virtual std::string address(size_t i) = 0;
  // Runs the cluster until pred holds or `timeout` passes (virtual or real). True if pred held.
  virtual bool run_until(const std::function<bool()>& pred, Duration timeout) = 0;
  virtual void kill(size_t i) = 0;
  virtual void restart(size_t i) = 0;
};

bool all_connected(Harness& h) {
  for (size_t i = 0; i < h.size(); ++i)
    if (!h.node(i) || h.node(i)->connected_count() != h.size() - 1) return false;
  return true;
}

bool all_measured(Harness& h) {
  for (size_t i = 0; i < h.size(); ++i)
    for (const auto& [peer, rtt] : h.node(i)->peers())
      if (rtt.srtt_us < 0 || rtt.pongs_received < 3) return false;
  return true;
}

// The shared body.
void ping_cluster_body(Harness& h) {
  ASSERT_TRUE(h.run_until([&] { return all_connected(h); }, Duration{5'000'000})) << "nodes did not connect";
  ASSERT_TRUE(h.run_until([&] { return all_measured(h); }, Duration{3'000'000})) << "no round trips measured";
  for (size_t i = 0; i < h.size(); ++i)
    for (const auto& [peer, rtt] : h.node(i)->peers()) {
      EXPECT_GT(rtt.srtt_us, 0);
      EXPECT_LT(rtt.srtt_us, 100'000) << "loopback/LAN round trips are well under 100 ms";
    }

  // Kill node 2: the others see its connection drop within 1 s.
  const std::string victim = h.address(2);
  h.kill(2);
  auto victim_down_everywhere = [&] {
    for (size_t i = 0; i < 2; ++i)
      if (h.node(i)->peers().at(victim).connected) return false;
    return true;
  };
  ASSERT_TRUE(h.run_until(victim_down_everywhere, Duration{1'000'000}))
      << "a killed node's connection was not seen to drop within 1 s";
  EXPECT_EQ(h.node(0)->peers().at(h.address(1)).connected, true) << "the survivors stay connected";

  // Back: everyone reconnects (reconnect backoff is capped at 1 s).
  h.restart(2);
  ASSERT_TRUE(h.run_until([&] { return all_connected(h); }, Duration{3'000'000})) << "no reconnect after restart";
  ASSERT_TRUE(h.run_until([&] { return all_measured(h); }, Duration{3'000'000}));
  EXPECT_GE(h.node(0)->peers().at(victim).downs, 1u);
}

// --- simulator side

class SimHarness final : public Harness {
 public:
  SimHarness(uint64_t seed, size_t n) {
    sim::Kernel::Options o;
    o.seed = seed;
    o.default_link.latency = sim::LatencyModel{Duration{100}, Duration{300}, Duration{20'000}};
    o.default_link.loss = 0.01;
    kernel_ = std::make_unique<sim::Kernel>(o);
    for (size_t i = 0; i < n; ++i) addresses_.push_back("10.0.0." + std::to_string(i + 1) + ":8074");
    for (size_t i = 0; i < n; ++i)
      kernel_->add_node(addresses_[i],
                        [this](Env& env) { return std::make_unique<PingNode>(env, addresses_, PingNode::Options{}); });
    for (size_t i = 0; i < n; ++i) kernel_->start(static_cast<sim::NodeIndex>(i));
  }
  size_t size() override { return addresses_.size(); }
  PingNode* node(size_t i) override {
    return dynamic_cast<PingNode*>(kernel_->process(static_cast<sim::NodeIndex>(i)));
  }
  std::string address(size_t i) override { return addresses_[i]; }
  bool run_until(const std::function<bool()>& pred, Duration timeout) override {
    return kernel_->run_until(pred, kernel_->now() + timeout);
  }
  void kill(size_t i) override { kernel_->crash(static_cast<sim::NodeIndex>(i)); }
  void restart(size_t i) override { kernel_->start(static_cast<sim::NodeIndex>(i)); }

 private:
  std::unique_ptr<sim::Kernel> kernel_;
  std::vector<std::string> addresses_;
};

// --- real side: three nodes on loopback TCP in this process, one io_context.

class TcpHarness final : public Harness {
 public:
  explicit TcpHarness(size_t n) {
    for (uint16_t port : chorus::testing::free_ports(n)) {  // at once: one by one can repeat
      ports_.push_back(port);
      addresses_.push_back("127.0.0.1:" + std::to_string(port));
    }
    envs_.resize(n);
    nodes_.resize(n);
    for (size_t i = 0; i < n; ++i) restart(i);
  }
  ~TcpHarness() override {
    for (size_t i = 0; i < size(); ++i) kill(i);
    io_.run_for(std::chrono::milliseconds(20));  // let closed sockets' handlers finish
  }
  size_t size() override { return addresses_.size(); }
  PingNode* node(size_t i) override { return nodes_[i].get(); }
  std::string address(size_t i) override { return addresses_[i]; }
  bool run_until(const std::function<bool()>& pred, Duration timeout) override {
    return chorus::testing::run_io_until(io_, pred, std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  }
  void kill(size_t i) override {
    nodes_[i].reset();
    envs_[i].reset();  // closes its sockets, as the OS does for a dead process
  }
  void restart(size_t i) override {
    runtime::TcpTransportOptions t;
    t.bind_host = "127.0.0.1";
    t.port = ports_[i];
    t.advertise_address = addresses_[i];
    envs_[i] = std::make_unique<runtime::AsioEnv>(io_, addresses_[i], sink_, LogLevel::warn, t);
    nodes_[i] = std::make_unique<PingNode>(*envs_[i], addresses_, PingNode::Options{});
    nodes_[i]->start();
  }

 private:
  boost::asio::io_context io_;
  NullLogSink sink_;
  std::vector<uint16_t> ports_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<runtime::AsioEnv>> envs_;
  std::vector<std::unique_ptr<PingNode>> nodes_;
};

}  // namespace

TEST(Ping, InTheSimulatorOverManySeeds) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimHarness h(seed, 3);
    ping_cluster_body(h);
    if (HasFatalFailure()) return;
  }
}

TEST(Ping, OnLoopbackTcp) {
  TcpHarness h(3);
  ping_cluster_body(h);
}

TEST(Ping, MalformedFramesAreCountedNotFatal) {
  sim::Kernel::Options o;
  sim::Kernel k(o);
  std::vector<std::string> addrs = {"a:1", "b:1"};
  k.add_node("a:1", [&](Env& env) { return std::make_unique<PingNode>(env, addrs, PingNode::Options{}); });
  k.add_node("b:1", [&](Env& env) { return std::make_unique<PingNode>(env, addrs, PingNode::Options{}); });
  k.start(0);
  k.start(1);
  k.run_for(Duration{500'000});
  for (const std::vector<uint8_t>& junk :
       std::vector<std::vector<uint8_t>>{{}, {9, 9, 9}, {1}, {2, 0x80}, {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7}}) {
    k.env(0)->transport().send("b:1", junk);
  }
  k.run_for(Duration{500'000});
  auto* b = dynamic_cast<PingNode*>(k.process(1));
  EXPECT_EQ(b->malformed_frames(), 5u);
  EXPECT_EQ(b->connected_count(), 1u);
}
