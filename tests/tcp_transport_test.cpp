// The TCP transport on loopback: frames both ways, limits, and bad input on the gossip port (random
// bytes, an oversized length, half a frame, a peer that never speaks, a wrong wire version, an HTTP
// request). Each is logged and dropped, and the node keeps serving good peers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <set>

#include "server/core/codec.h"
#include "server/core/frame.h"
#include "server/runtime/asio_env.h"
#include "tests/capture_sink.h"
#include "tests/free_port.h"
#include "tests/run_io.h"

using namespace chorus;
using namespace chorus::runtime;

namespace {

using chorus::testing::CaptureSink;

struct Recorder : TransportHandler {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> frames;
  std::vector<std::string> ups, downs;
  void on_frame(const std::string& from, std::span<const uint8_t> p) override {
    frames.emplace_back(from, std::vector<uint8_t>(p.begin(), p.end()));
  }
  void on_peer_up(const std::string& peer) override { ups.push_back(peer); }
  void on_peer_down(const std::string& peer) override { downs.push_back(peer); }
};

class TransportTest : public ::testing::Test {
 protected:
  TcpTransportOptions options(const std::string& name) {
    TcpTransportOptions o;
    o.bind_host = "127.0.0.1";
    o.port = 0;
    o.advertise_address = name;
    o.handshake_timeout = Duration{300'000};
    o.partial_frame_timeout = Duration{300'000};
    o.frame_size_max = 1024;
    o.reconnect_base = Duration{20'000};
    o.reconnect_cap = Duration{100'000};
    return o;
  }
  // Runs the loop until pred holds, at most `ms` of wall time.
  bool run_until(const std::function<bool()>& pred, int ms = 2000) {
    return chorus::testing::run_io_until(io, pred, std::chrono::milliseconds(ms));
  }
  // A raw client socket connected to the port.
  int raw_connect(uint16_t port) {
    const int fd = chorus::testing::connect_loopback(port);
    EXPECT_GE(fd, 0) << "connection to port " << port << " refused";
    return fd;
  }
  void raw_send(int fd, const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  // True once the server has closed the raw connection (EOF or reset), running the loop meanwhile.
  bool closed_by_server(int fd, int ms = 2000) {
    return run_until(
        [&] {
          pollfd p{fd, POLLIN, 0};
          if (::poll(&p, 1, 0) <= 0) return false;
          uint8_t b[256];
          const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
          return n == 0 || (n < 0 && errno != EAGAIN);
        },
        ms);
  }
  std::vector<uint8_t> hello(const std::string& addr, uint16_t version = kWireVersion) {
    return encode_frame(encode_hello_payload(Hello{version, addr}));
  }

  boost::asio::io_context io;
  CaptureSink sink;
};

}  // namespace

TEST_F(TransportTest, FramesFlowBetweenTwoNodes) {
  AsioEnv a(io, "a", sink, LogLevel::debug, options("a"));
  AsioEnv b(io, "b", sink, LogLevel::debug, options("b"));
  Recorder ra, rb;
  a.transport().start(ra);
  b.transport().start(rb);
  const std::string b_addr = "127.0.0.1:" + std::to_string(b.tcp().local_port());
  a.transport().add_peer(b_addr);
  ASSERT_TRUE(run_until([&] { return !ra.ups.empty(); }));
  for (uint8_t i = 0; i < 50; ++i)
    EXPECT_EQ(a.transport().send(b_addr, std::vector<uint8_t>(i, i)), SendStatus::queued);
  ASSERT_TRUE(run_until([&] { return rb.frames.size() == 50; }));
  for (uint8_t i = 0; i < 50; ++i) {
    EXPECT_EQ(rb.frames[i].first, "a");                          // the sender's advertised address
    EXPECT_EQ(rb.frames[i].second, std::vector<uint8_t>(i, i));  // in order over one connection
  }
  EXPECT_EQ(a.transport().send(b_addr, std::vector<uint8_t>(2000, 1)), SendStatus::too_large);
  EXPECT_EQ(a.transport().send("127.0.0.1:1", std::vector<uint8_t>(1, 1)), SendStatus::not_connected);
}

TEST_F(TransportTest, SendQueueIsBounded) {
  auto o = options("a");
  o.send_queue_frames_max = 10;
  o.frame_size_max = 1 << 20;
  AsioEnv a(io, "a", sink, LogLevel::info, o);
  Recorder ra;
  a.transport().start(ra);
  // A listener that accepts (kernel backlog) but never reads: the queue must not grow without bound.
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(ls, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string peer = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  a.transport().add_peer(peer);
  ASSERT_TRUE(run_until([&] { return !ra.ups.empty(); }));
  int queued = 0, full = 0;
  const std::vector<uint8_t> big(512 * 1024, 7);
  for (int i = 0; i < 200; ++i) {
    const auto s = a.transport().send(peer, big);
    queued += s == SendStatus::queued;
    full += s == SendStatus::queue_full;
    io.poll();
  }
  EXPECT_GT(full, 0);
  EXPECT_LE(queued, 10 + 64 + 16);  // the queue, one write batch, and what the socket buffers took
  ::close(ls);
}

TEST_F(TransportTest, GarbageOnThePortIsLoggedAndDroppedAndTheNodeKeepsServing) {
  AsioEnv node(io, "node", sink, LogLevel::debug, options("node"));
  Recorder r;
  node.transport().start(r);
  const uint16_t port = node.tcp().local_port();

  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    const char* logged;
  };
  std::vector<uint8_t> random_bytes(300);
  uint64_t x = 12345;
  for (auto& b : random_bytes)
    b = static_cast<uint8_t>((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
  random_bytes[0] = 0;  // a small length, so the garbage is read as a (bad) Hello, not an oversized frame
  random_bytes[1] = 0;
  random_bytes[2] = 0;
  random_bytes[3] = 40;
  std::vector<uint8_t> after_hello_oversized = hello("evil:1");
  for (uint8_t b : {0x00, 0x10, 0x00, 0x00}) after_hello_oversized.push_back(b);  // 1 MiB > 1024
  const std::string http = "GET /api/v4/system/ping HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<Case> cases = {
      {"random bytes", random_bytes, "not a Chorus gossip handshake"},
      {"oversized first length", {0xff, 0xff, 0xff, 0xff, 1, 2, 3}, "exceeds the limit"},
      {"oversized length after hello", after_hello_oversized, "exceeds the limit"},
      {"wrong wire version", hello("future:1", 99), "wire version 99"},
      {"an HTTP request", std::vector<uint8_t>(http.begin(), http.end()), "exceeds the limit"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    sink.lines.clear();
    int fd = raw_connect(port);
    raw_send(fd, c.bytes);
    EXPECT_TRUE(closed_by_server(fd)) << "the connection was not closed";
    EXPECT_TRUE(sink.contains(c.logged)) << "not logged as expected";
    ::close(fd);
  }

  // Half a frame after a good Hello, then silence: closed after partial_frame_timeout.
  {
    sink.lines.clear();
    int fd = raw_connect(port);
    auto bytes = hello("half:1");
    auto frame = encode_frame(std::vector<uint8_t>(100, 1));
    bytes.insert(bytes.end(), frame.begin(), frame.begin() + 50);
    raw_send(fd, bytes);
    EXPECT_TRUE(closed_by_server(fd));
    EXPECT_TRUE(sink.contains("frame not completed within 300 ms"));
    ::close(fd);
  }
  // Connects and never speaks: closed after handshake_timeout.
  {
    sink.lines.clear();
    int fd = raw_connect(port);
    EXPECT_TRUE(closed_by_server(fd));
    EXPECT_TRUE(sink.contains("no handshake within 300 ms"));
    ::close(fd);
  }
  // A peer that vanishes mid-frame (closes with half a frame sent): dropped quietly.
  {
    int fd = raw_connect(port);
    auto bytes = hello("gone:1");
    bytes.push_back(0);
    bytes.push_back(0);
    raw_send(fd, bytes);
    ::close(fd);
    io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(node.transport().stats().connections_refused, 7u);
  EXPECT_TRUE(r.frames.empty()) << "no garbage reached the node";

  // After all that, a good peer still gets through.
  AsioEnv good(io, "good", sink, LogLevel::info, options("good:1"));
  Recorder rg;
  good.transport().start(rg);
  const std::string node_addr = "127.0.0.1:" + std::to_string(port);
  good.transport().add_peer(node_addr);
  ASSERT_TRUE(run_until([&] { return !rg.ups.empty(); }));
  good.transport().send(node_addr, std::vector<uint8_t>{1, 2, 3});
  ASSERT_TRUE(run_until([&] { return r.frames.size() == 1; }));
  EXPECT_EQ(r.frames[0].first, "good:1");
}

TEST_F(TransportTest, ABusyStreamWhoseReadsEndMidFrameIsNotMistakenForAStalledFrame) {
  AsioEnv node(io, "node", sink, LogLevel::info, options("node"));  // partial_frame_timeout 300 ms
  Recorder r;
  node.transport().start(r);
  int fd = raw_connect(node.tcp().local_port());
  raw_send(fd, hello("busy:1"));
  // 1.5 frames every 5 ms for 800 ms: nearly every read ends inside a frame, yet each frame completes fast.
  std::vector<uint8_t> stream;
  for (int i = 0; i < 240; ++i) encode_frame(std::vector<uint8_t>(500, static_cast<uint8_t>(i)), stream);
  const size_t chunk = 756;
  size_t sent = 0;
  const auto start = std::chrono::steady_clock::now();
  while (sent < stream.size()) {
    const size_t n = std::min(chunk, stream.size() - sent);
    raw_send(fd, std::vector<uint8_t>(stream.begin() + sent, stream.begin() + sent + n));
    sent += n;
    run_until([] { return false; }, 5);
  }
  ASSERT_TRUE(run_until([&] { return r.frames.size() == 240; }, 2000));
  EXPECT_GT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(600));
  EXPECT_FALSE(sink.contains("frame not completed"));
  EXPECT_FALSE(closed_by_server(fd, 10));
  ::close(fd);
}

TEST_F(TransportTest, ANewConnectionFromTheSameAddressReplacesTheOld) {
  AsioEnv node(io, "node", sink, LogLevel::debug, options("node"));
  Recorder r;
  node.transport().start(r);
  int first = raw_connect(node.tcp().local_port());
  raw_send(first, hello("peer:1"));
  run_until([] { return false; }, 30);
  int second = raw_connect(node.tcp().local_port());
  raw_send(second, hello("peer:1"));
  EXPECT_TRUE(closed_by_server(first));
  EXPECT_FALSE(closed_by_server(second, 50));
  ::close(first);
  ::close(second);
}

TEST_F(TransportTest, RandomGarbageFuzzNeverStopsTheNode) {
  AsioEnv node(io, "node", sink, LogLevel::error, options("node"));
  Recorder r;
  node.transport().start(r);
  const uint16_t port = node.tcp().local_port();
  uint64_t x = 99;
  for (int round = 0; round < 40; ++round) {
    int fd = raw_connect(port);
    std::vector<uint8_t> bytes(1 + (round * 37) % 2000);
    for (auto& b : bytes) b = static_cast<uint8_t>((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
    if (round % 3 == 0) {  // sometimes a valid Hello first, so garbage hits the frame path
      auto h = hello("fuzz:1");
      bytes.insert(bytes.begin(), h.begin(), h.end());
    }
    raw_send(fd, bytes);
    io.run_for(std::chrono::milliseconds(5));
    ::close(fd);
  }
  io.run_for(std::chrono::milliseconds(50));
  // Still accepting and serving.
  int fd = raw_connect(port);
  auto bytes = hello("after:1");
  auto f = encode_frame(std::vector<uint8_t>{42});
  bytes.insert(bytes.end(), f.begin(), f.end());
  const size_t before = r.frames.size();
  raw_send(fd, bytes);
  ASSERT_TRUE(run_until([&] { return r.frames.size() > before; }));
  EXPECT_EQ(r.frames.back().first, "after:1");
  ::close(fd);
}

TEST_F(TransportTest, ReconnectsWithBackoffWhenThePeerComesBack) {
  AsioEnv a(io, "a", sink, LogLevel::info, options("a"));
  Recorder ra;
  a.transport().start(ra);
  auto ob = options("b");
  auto b = std::make_unique<AsioEnv>(io, "b", sink, LogLevel::info, ob);
  const uint16_t b_port = b->tcp().local_port();
  Recorder rb;
  b->transport().start(rb);
  const std::string b_addr = "127.0.0.1:" + std::to_string(b_port);
  a.transport().add_peer(b_addr);
  ASSERT_TRUE(run_until([&] { return ra.ups.size() == 1; }));
  b.reset();  // b dies
  ASSERT_TRUE(run_until([&] { return ra.downs.size() == 1; }, 1000));
  EXPECT_FALSE(a.transport().connected(b_addr));
  run_until([] { return false; }, 200);  // a few refused attempts
  ob.port = b_port;
  b = std::make_unique<AsioEnv>(io, "b", sink, LogLevel::info, ob);
  Recorder rb2;
  b->transport().start(rb2);
  ASSERT_TRUE(run_until([&] { return ra.ups.size() == 2; }, 2000));
  EXPECT_TRUE(sink.contains("connection to " + b_addr + " lost"));
}

TEST_F(TransportTest, BindFailureIsAClearError) {
  AsioEnv a(io, "a", sink, LogLevel::info, options("a"));
  auto o = options("b");
  o.port = a.tcp().local_port();
  try {
    AsioEnv b(io, "b", sink, LogLevel::info, o);
    // SO_REUSEADDR does not allow two listeners on one port.
    FAIL() << "binding a port in use should fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on gossip address 127.0.0.1:"), std::string::npos) << e.what();
  }
  o.bind_host = "not-an-ip";
  EXPECT_THROW(AsioEnv(io, "c", sink, LogLevel::info, o), std::runtime_error);
}

TEST_F(TransportTest, OnlyPeersOfTheSameClusterHoldingItsKeyGetThrough) {
  auto keyed = [&](const std::string& name, const std::string& cluster, const std::string& key) {
    auto o = options(name);
    o.cluster_name = cluster;
    o.cluster_key = key;
    return o;
  };
  AsioEnv node(io, "node", sink, LogLevel::debug,
               keyed("node:1", "production", "k3y-of-production-cluster-0123456789"));
  Recorder r;
  node.transport().start(r);
  const std::string node_addr = "127.0.0.1:" + std::to_string(node.tcp().local_port());

  // The same cluster and key: frames arrive, authenticated.
  AsioEnv good(io, "good", sink, LogLevel::info, keyed("good:1", "production", "k3y-of-production-cluster-0123456789"));
  Recorder rg;
  good.transport().start(rg);
  good.transport().add_peer(node_addr);
  ASSERT_TRUE(run_until([&] { return !rg.ups.empty(); }));
  for (uint8_t i = 0; i < 20; ++i) good.transport().send(node_addr, std::vector<uint8_t>{i, i});
  ASSERT_TRUE(run_until([&] { return r.frames.size() == 20; }));
  EXPECT_EQ(r.frames[19].second, (std::vector<uint8_t>{19, 19}));

  // A process without the key, or of another cluster, is refused and logged.
  struct Case {
    const char* name;
    std::string cluster, key, logged;
  };
  for (const auto& c : std::vector<Case>{
           {"wrong key", "production", "some-other-key-0000000000000000000", "does not hold the cluster key"},
           {"no key", "production", "", "does not hold the cluster key"},
           {"other cluster", "staging", "k3y-of-production-cluster-0123456789", "belongs to cluster \"staging\""}}) {
    SCOPED_TRACE(c.name);
    sink.lines.clear();
    const size_t before = r.frames.size();
    AsioEnv intruder(io, "intruder", sink, LogLevel::info, keyed("intruder:1", c.cluster, c.key));
    Recorder ri;
    intruder.transport().start(ri);
    intruder.transport().add_peer(node_addr);
    ASSERT_TRUE(run_until([&] { return !ri.ups.empty(); }));
    intruder.transport().send(node_addr, std::vector<uint8_t>{1});
    ASSERT_TRUE(run_until([&] { return sink.contains(c.logged); })) << "not refused as expected";
    run_until([] { return false; }, 50);
    EXPECT_EQ(r.frames.size(), before) << "nothing from the intruder reached the node";
  }

  // A frame whose tag does not verify (forged, replayed, or altered) closes the connection.
  sink.lines.clear();
  int fd = raw_connect(node.tcp().local_port());
  Hello forged{kWireVersion, "forger:1", "production"};
  forged.nonce = "0123456789abcdef";
  forged.proof = hello_proof("k3y-of-production-cluster-0123456789", forged);
  raw_send(fd, encode_frame(encode_hello_payload(forged)));
  const std::string ckey = connection_key("k3y-of-production-cluster-0123456789", forged.nonce);
  const std::vector<uint8_t> body = {42};
  const auto ok_frame = seal_frame(ckey, false, 0, body);
  raw_send(fd, encode_frame(ok_frame));  // frame 0: valid
  raw_send(fd, encode_frame(ok_frame));  // frame 1 with frame 0's tag: a replay
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_TRUE(sink.contains("frame 1 failed authentication"));
  EXPECT_EQ(r.frames.back().first, "forger:1");
  EXPECT_EQ(r.frames.back().second, body) << "the valid frame arrived, the replay did not";
  ::close(fd);
}

// With EnableExperimentalGossipEncryption the bytes on the wire do not show the payload; a node holding
// the key reads them; a flipped bit anywhere in a sealed frame closes the connection; and each
// connection gets its own key, so the same payload never looks the same twice.
TEST_F(TransportTest, EncryptedFramesAreUnreadableOnTheWireAndTamperingIsRefused) {
  const std::string key = "k3y-of-production-cluster-0123456789";
  // A raw listener stands in for the peer and records what the sender puts on the wire.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&la), sizeof la), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof la;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&la), &len);
  const std::string wiretap = "127.0.0.1:" + std::to_string(ntohs(la.sin_port));

  auto o = options("sender:1");
  o.cluster_name = "production";
  o.cluster_key = key;
  o.encrypt = true;
  AsioEnv sender(io, "sender", sink, LogLevel::debug, o);
  Recorder rs;
  sender.transport().start(rs);
  const std::string secret = "the-payload-nobody-may-read";
  auto capture = [&] {
    sender.transport().add_peer(wiretap);
    EXPECT_TRUE(run_until([&] { return !rs.ups.empty(); }));
    rs.ups.clear();
    for (int i = 0; i < 3; ++i) sender.transport().send(wiretap, std::vector<uint8_t>(secret.begin(), secret.end()));
    int conn = -1;
    EXPECT_TRUE(run_until([&] {
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) conn = ::accept(listener, nullptr, nullptr);
      return conn >= 0;
    }));
    std::vector<uint8_t> wire;
    run_until(
        [&] {
          uint8_t b[4096];
          const ssize_t n = ::recv(conn, b, sizeof b, MSG_DONTWAIT);
          if (n > 0) wire.insert(wire.end(), b, b + n);
          return false;
        },
        150);
    ::close(conn);
    sender.transport().remove_peer(wiretap);
    return wire;
  };
  const auto wire = capture();
  ASSERT_GT(wire.size(), 3 * secret.size());
  const std::string text(wire.begin(), wire.end());
  EXPECT_EQ(text.find(secret), std::string::npos) << "the payload is not visible on the wire";
  EXPECT_EQ(text.find("the-payload"), std::string::npos);
  const auto again = capture();
  EXPECT_NE(std::vector<uint8_t>(again.begin() + 100, again.end()),
            std::vector<uint8_t>(wire.begin() + 100, wire.end()))
      << "a new connection seals the same frames differently";
  ::close(listener);

  // Replayed to a node of the cluster, the recorded connection decrypts to the payloads.
  auto ro = options("receiver:1");
  ro.cluster_name = "production";
  ro.cluster_key = key;
  AsioEnv receiver(io, "receiver", sink, LogLevel::debug, ro);
  Recorder rr;
  receiver.transport().start(rr);
  int fd = raw_connect(receiver.tcp().local_port());
  raw_send(fd, wire);
  ASSERT_TRUE(run_until([&] { return rr.frames.size() == 3; }));
  EXPECT_EQ(rr.frames[2].first, "sender:1");
  EXPECT_EQ(std::string(rr.frames[2].second.begin(), rr.frames[2].second.end()), secret);
  ::close(fd);

  // One flipped bit in the ciphertext of the second frame: the first arrives, the connection closes.
  sink.lines.clear();
  auto tampered = wire;
  tampered[tampered.size() - 3] ^= 0x01;  // inside the last frame
  fd = raw_connect(receiver.tcp().local_port());
  raw_send(fd, tampered);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_TRUE(sink.contains("frame 2 failed authentication"));
  ::close(fd);
}

// Issue 13: session tokens, salts, the cluster key and ids came from a xoshiro256** seeded with 64 bits,
// whose state two outputs give away. Production draws every one from the OS's CSPRNG: it has no seed to
// share, two nodes' draws are unrelated, and the bits are balanced.
TEST_F(TransportTest, ProductionRandomnessIsTheOperatingSystemsCsprng) {
  AsioEnv a(io, "a", sink, LogLevel::warn, options("a"));
  AsioEnv b(io, "b", sink, LogLevel::warn, options("b"));
  ASSERT_NE(dynamic_cast<SystemRandom*>(&a.random()), nullptr) << "not a seeded PRNG";
  std::set<uint64_t> seen;
  std::array<int, 64> ones{};
  constexpr int kDraws = 4096;  // several refills of the 512-byte buffer
  for (int i = 0; i < kDraws; ++i) {
    const uint64_t x = a.random().next_u64(), y = b.random().next_u64();
    EXPECT_TRUE(seen.insert(x).second && seen.insert(y).second) << "a repeated 64-bit draw";
    for (int bit = 0; bit < 64; ++bit) ones[static_cast<size_t>(bit)] += static_cast<int>((x >> bit) & 1);
  }
  for (int bit = 0; bit < 64; ++bit)  // mean 2048, sd 32: 6 sd either side
    EXPECT_NEAR(ones[static_cast<size_t>(bit)], kDraws / 2, 192) << "bit " << bit;
}
