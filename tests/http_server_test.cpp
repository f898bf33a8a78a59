// The HTTP/WebSocket server on loopback: requests parsed into api::Request (query, percent-encoding,
// headers, bodies, chunked, 100-continue), keep-alive and pipelining, answers given later, clients that
// vanish, malformed and oversized input (JSON errors, then close), random garbage, slow clients cut by
// read_timeout, WebSockets (echo, server close, refusal, vanishing clients), and the graceful stop.
// The server and the clients share one io_context run by this thread; raw POSIX sockets are the HTTP
// clients (non-blocking reads while the loop runs), a Beast client on the same loop is the WebSocket one.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <optional>

#include "server/runtime/asio_env.h"
#include "server/runtime/http_server.h"
#include "tests/capture_sink.h"
#include "tests/free_port.h"
#include "tests/run_io.h"

using namespace chorus;
using namespace chorus::runtime;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;

namespace {

using chorus::testing::CaptureSink;

struct FakeHandler;

// Echoes text frames back; "bye" makes the server close with 4001.
struct EchoSession : api::SocketSession {
  EchoSession(FakeHandler& h, api::SocketSink& sink) : h(h), sink(sink) {}
  void on_text(std::string_view text) override;
  void on_closed() override;
  FakeHandler& h;
  api::SocketSink& sink;
};

struct FakeHandler : api::Handler {
  explicit FakeHandler(asio::io_context& io) : io(io) {}
  asio::io_context& io;
  std::vector<api::Request> requests;
  int async_answered = 0;
  int sockets_opened = 0;
  int sockets_closed = 0;
  std::vector<std::string> texts;

  void handle(api::Request r, api::Respond respond) override {
    requests.push_back(r);
    if (r.path == "/async") {  // answers after 50 ms, as after database work
      auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
      timer->async_wait([this, timer, respond](const error_code&) {
        ++async_answered;
        respond(api::Response{200, {{"Content-Type", "text/plain"}}, "late answer"});
      });
      return;
    }
    if (r.path == "/throw") throw std::runtime_error("boom");
    if (r.path == "/json") return respond(api::Response{201, {}, "{\"ok\":true}"});
    if (r.path == "/weird")  // a 204 with a body, a header trying to inject another, a name that is no token
      return respond(
          api::Response{204, {{"X-Bad", "a\r\nSet-Cookie: x=1"}, {"Bad Name", "v"}, {"X-Good", "g"}}, "dropped"});
    if (r.path == "/twice") {
      respond(api::Response{200, {}, "first"});
      respond(api::Response{200, {}, "second"});  // dropped
      return;
    }
    std::string body = r.method + " " + r.path + "\n";
    for (const auto& [k, v] : r.query) body += "q[" + k + "]=" + v + "\n";
    body += "x-test=" + std::string(r.header("x-test")) + "\n";
    body += "remote=" + std::string(r.remote.rfind("127.0.0.1:", 0) == 0 ? "ok" : r.remote) + "\n";
    body += "body=" + r.body;
    respond(api::Response{200, {{"Content-Type", "text/plain"}, {"X-Reply", "yes"}}, body});
  }

  std::unique_ptr<api::SocketSession> open_socket(const api::Request& r, api::SocketSink& sink,
                                                  api::Response& refusal) override {
    if (r.path == "/refuse") {
      refusal = api::Response{403, {{"Content-Type", "application/json"}}, "{\"id\":\"refused\",\"status_code\":403}"};
      return nullptr;
    }
    ++sockets_opened;
    return std::make_unique<EchoSession>(*this, sink);
  }
};

void EchoSession::on_text(std::string_view text) {
  h.texts.emplace_back(text);
  if (text == "bye") return sink.close(4001, "bye");
  sink.send_text("echo:" + std::string(text));
}
void EchoSession::on_closed() { ++h.sockets_closed; }

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() : env(io, "node", sink, LogLevel::debug, transport_options()), handler(io) {}

  static TcpTransportOptions transport_options() {
    TcpTransportOptions o;
    o.bind_host = "127.0.0.1";
    o.port = 0;
    return o;
  }
  HttpServerOptions options() {
    HttpServerOptions o;
    o.bind_host = "127.0.0.1";
    o.port = 0;
    o.header_size_max = 4096;
    o.body_size_max = 64 * 1024;
    o.read_timeout = Duration{1'000'000};
    o.idle_timeout = Duration{2'000'000};
    return o;
  }
  std::unique_ptr<HttpServer> make_server(HttpServerOptions o) {
    auto s = std::make_unique<HttpServer>(io, env, std::move(o), handler);
    s->start();
    return s;
  }

  bool run_until(const std::function<bool()>& pred, int ms = 2000) {
    return chorus::testing::run_io_until(io, pred, std::chrono::milliseconds(ms));
  }
  void run_for(int ms) {
    run_until([] { return false; }, ms);
  }

  // -1 when the connection is refused.
  int raw_connect(uint16_t port) {
    const int fd = chorus::testing::connect_loopback(port);
    if (fd < 0) return -1;
    fds.push_back(fd);
    return fd;
  }
  void raw_send(int fd, const std::string& bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  // Reads what has arrived on fd into pending. False at EOF or error.
  bool pull(int fd) {
    char b[8192];
    for (;;) {
      const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
      if (n > 0) {
        pending[fd].append(b, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return false;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
  // Takes one whole response off what arrived on fd (a response without Content-Length has no body).
  std::optional<RawResponse> take_response(int fd) {
    std::string& p = pending[fd];
    const size_t end = p.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    RawResponse r;
    const std::string head = p.substr(0, end);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = line.substr(colon + 2);
    }
    const size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    if (p.size() < end + 4 + length) return std::nullopt;
    r.body = p.substr(end + 4, length);
    p.erase(0, end + 4 + length);
    return r;
  }
  // Runs the loop until one response has arrived on fd (at most 2 s).
  RawResponse read_response(int fd) {
    std::optional<RawResponse> r;
    bool open = true;
    run_until([&] {
      if (open) open = pull(fd);
      r = take_response(fd);
      return r.has_value() || !open;
    });
    if (!r) r = take_response(fd);
    EXPECT_TRUE(r.has_value()) << "no response; got: " << pending[fd];
    return r.value_or(RawResponse{});
  }
  RawResponse request(int fd, const std::string& bytes) {
    raw_send(fd, bytes);
    return read_response(fd);
  }
  // True once the server has closed the connection (EOF or reset), running the loop meanwhile.
  bool closed_by_server(int fd, int ms = 2000) {
    return run_until([&] { return !pull(fd); }, ms);
  }

  void TearDown() override {
    for (int fd : fds) ::close(fd);
  }

  asio::io_context io;
  CaptureSink sink;
  AsioEnv env;
  FakeHandler handler;
  std::vector<int> fds;
  std::map<int, std::string> pending;
};

// A WebSocket client on the test's loop.
struct WsClient {
  explicit WsClient(asio::io_context& io) : ws(io) {}
  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buffer;
  bool open = false;
  bool ended = false;
  error_code handshake_ec, read_ec;
  std::vector<std::string> received;
  std::deque<std::string> out;

  void connect(uint16_t port, const std::string& target = "/api/v4/websocket") {
    ws.next_layer().async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  [this, target](const error_code& ec) {
                                    if (ec) {
                                      handshake_ec = ec;
                                      ended = true;
                                      return;
                                    }
                                    ws.async_handshake("127.0.0.1", target, [this](const error_code& ec) {
                                      handshake_ec = ec;
                                      if (ec) {
                                        ended = true;
                                        return;
                                      }
                                      open = true;
                                      read();
                                    });
                                  });
  }
  void read() {
    ws.async_read(buffer, [this](const error_code& ec, size_t) {
      if (ec) {
        read_ec = ec;
        ended = true;
        return;
      }
      received.push_back(beast::buffers_to_string(buffer.data()));
      buffer.consume(buffer.size());
      read();
    });
  }
  void send(std::string text, bool binary = false) {
    out.push_back(std::move(text));
    ws.binary(binary);
    ws.async_write(asio::buffer(out.back()), [](const error_code&, size_t) {});
  }
};

const std::string kUpgrade =
    "GET /api/v4/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

}  // namespace

TEST_F(HttpServerTest, ParsesRequestsAndKeepsConnectionsAlive) {
  auto server = make_server(options());
  int fd = raw_connect(server->local_port());

  // GET with a query and percent-encoding.
  auto r = request(fd,
                   "GET /api/v4/users%2Fme%20x?per_page=60&term=a+b%26c&term2=%E2%9C%93&flag HTTP/1.1\r\nHost: "
                   "x\r\nX-Test: hello\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "GET /api/v4/users/me x\nq[flag]=\nq[per_page]=60\nq[term]=a "
            "b&c\nq[term2]=\xE2\x9C\x93\nx-test=hello\nremote=ok\nbody=");
  EXPECT_EQ(r.header("server"), "chorus");
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.header("x-reply"), "yes");
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  EXPECT_EQ(r.header("connection"), "");

  // POST with a body, on the same connection (lower-case method upper-cased).
  r = request(fd, "post /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo\nx-test=\nremote=ok\nbody=hello world");

  // A chunked body.
  r = request(fd,
              "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(r.body, "PUT /c\nx-test=\nremote=ok\nbody=hello world");

  // A body and no Content-Type from the handler: application/json, exactly.
  r = request(fd, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, "{\"ok\":true}");

  // What cannot go on the wire does not.
  r = request(fd, "GET /weird HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.header("set-cookie"), "");
  EXPECT_EQ(r.header("x-good"), "g");
  EXPECT_EQ(r.headers.size(), 2u);  // x-good and server
  EXPECT_TRUE(sink.contains("dropped an invalid response header"));

  // A second call of Respond is dropped.
  r = request(fd, "GET /twice HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.body, "first");

  // Expect: 100-continue.
  raw_send(fd, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  r = read_response(fd);
  EXPECT_EQ(r.status, 100);
  r = request(fd, "abc");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /e\nx-test=\nremote=ok\nbody=abc");

  // Two pipelined requests in one write: both answered, in order.
  raw_send(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(read_response(fd).body.substr(0, 8), "GET /one");
  EXPECT_EQ(read_response(fd).body.substr(0, 8), "GET /two");

  // A handler that throws: 500 in the JSON error shape; the connection carries on.
  r = request(fd, "GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("\"status_code\":500"), std::string::npos);
  EXPECT_TRUE(sink.contains("handler threw"));

  // Connection: close is honoured.
  r = request(fd, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(handler.requests.size(), 11u);

  // HTTP/1.0: answered, then closed.
  int fd10 = raw_connect(server->local_port());
  r = request(fd10, "GET /old HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(closed_by_server(fd10));

  EXPECT_TRUE(run_until([&] { return server->stats().connections_open == 0; }));
  EXPECT_EQ(server->stats().requests, 12u);
  EXPECT_EQ(server->stats().bad_requests, 0u);
}

TEST_F(HttpServerTest, AnswersGivenLaterArriveAndVanishedClientsAreDroppedQuietly) {
  auto server = make_server(options());
  int fd = raw_connect(server->local_port());
  auto r = request(fd, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "late answer");
  // And the connection is kept alive after a late answer.
  r = request(fd, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);

  // Clients that go away before their late answer: the answer is dropped, nothing breaks.
  for (int i = 0; i < 5; ++i) {
    int gone = raw_connect(server->local_port());
    raw_send(gone, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    run_for(5);
    ::close(gone);
    fds.erase(std::find(fds.begin(), fds.end(), gone));
  }
  // One that goes away in the middle of its request.
  int half = raw_connect(server->local_port());
  raw_send(half, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part");
  run_for(5);
  ::close(half);
  fds.erase(std::find(fds.begin(), fds.end(), half));

  ASSERT_TRUE(run_until([&] { return handler.async_answered == 6; }));
  EXPECT_TRUE(run_until([&] { return server->stats().connections_open == 1; }));
  r = request(fd, "GET /still HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.substr(0, 10), "GET /still");
}

TEST_F(HttpServerTest, MalformedRequestsGetJsonErrorsAndAreClosed) {
  auto server = make_server(options());
  struct Case {
    const char* name;
    std::string bytes;
    int status;
  };
  const std::vector<Case> cases = {
      {"bad request line", "GARBAGE\r\n\r\n", 400},
      {"bad version", "GET / HTTP/9\r\nHost: x\r\n\r\n", 400},
      {"header without a colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", 400},
      {"bad content length", "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
      {"bad percent-encoding in the path", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + std::string(1000, 'x'), 413},
      {"chunked body too large",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
           [] {
             std::string s;
             for (int i = 0; i < 20; ++i) s += "1000\r\n" + std::string(4096, 'y') + "\r\n";
             return s;
           }(),
       413},
      {"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'b') + "\r\n\r\n", 431},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    sink.lines.clear();
    int fd = raw_connect(server->local_port());
    auto r = request(fd, c.bytes);
    EXPECT_EQ(r.status, c.status);
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
    EXPECT_EQ(r.body.rfind("{\"id\":\"api.", 0), 0u) << r.body;
    EXPECT_NE(r.body.find("\"message\":\""), std::string::npos) << r.body;
    EXPECT_NE(
        r.body.find("\"detailed_error\":\"\",\"request_id\":\"\",\"status_code\":" + std::to_string(c.status) +
                    ",\"is_oauth\":false}"),
        std::string::npos)
        << r.body;
    ::shutdown(fd, SHUT_WR);  // as a client does on "Connection: close"; the server stops lingering
    EXPECT_TRUE(closed_by_server(fd));
    EXPECT_TRUE(sink.contains("http: bad request from 127.0.0.1:"));
  }
  EXPECT_EQ(server->stats().bad_requests, cases.size());
  EXPECT_TRUE(handler.requests.empty());
  // Still serving.
  int fd = raw_connect(server->local_port());
  EXPECT_EQ(request(fd, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
}

TEST_F(HttpServerTest, RandomGarbageNeverStopsTheServer) {
  env.log().set_level(LogLevel::error);
  auto server = make_server(options());
  const uint16_t port = server->local_port();
  uint64_t x = 4242;
  auto next = [&] { return static_cast<uint8_t>((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 56); };
  const std::vector<std::string> prefixes = {"", "GET / HTTP/1.1\r\n",
                                             "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                                             "POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n", kUpgrade};
  for (int round = 0; round < 50; ++round) {
    int fd = raw_connect(port);
    std::string bytes = prefixes[static_cast<size_t>(round) % prefixes.size()];
    const size_t n = 1 + (static_cast<size_t>(round) * 397) % 6000;
    for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<char>(next()));
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    run_for(5);
    ::close(fd);
    fds.pop_back();
  }
  run_for(50);
  int fd = raw_connect(port);
  auto r = request(fd, "GET /after-fuzz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.substr(0, 15), "GET /after-fuzz");
  EXPECT_GT(server->stats().bad_requests, 0u);
}

TEST_F(HttpServerTest, SlowRequestsAreCutByReadTimeoutAndIdleConnectionsByIdleTimeout) {
  auto o = options();
  o.read_timeout = Duration{200'000};
  o.idle_timeout = Duration{600'000};
  auto server = make_server(o);

  // Headers trickling in (slowloris): cut after read_timeout although bytes keep coming.
  int slow = raw_connect(server->local_port());
  const auto start = std::chrono::steady_clock::now();
  raw_send(slow, "GET / HTTP/1.1\r\n");
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {
    ::send(slow, "X-A: b\r\n", 8, MSG_NOSIGNAL);
    closed = closed_by_server(slow, 50);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_GE(elapsed, std::chrono::milliseconds(180));
  EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
  // (Beast closes the socket when the deadline passes; the server's handler runs just after.)
  EXPECT_TRUE(run_until([&] { return sink.contains("request not received within 200 ms"); }, 500));
  EXPECT_EQ(server->stats().bad_requests, 1u);

  // A body that does not finish in time: the same.
  int slow_body = raw_connect(server->local_port());
  raw_send(slow_body, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_TRUE(closed_by_server(slow_body, 1000));

  // A keep-alive connection may wait idle_timeout (longer than read_timeout) for its next request.
  int idle = raw_connect(server->local_port());
  EXPECT_EQ(request(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_FALSE(closed_by_server(idle, 350));
  EXPECT_EQ(request(idle, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_TRUE(closed_by_server(idle, 1500));
  EXPECT_TRUE(run_until([&] { return sink.contains("closed idle keep-alive connection"); }, 500));
}

TEST_F(HttpServerTest, WebSocketEchoesAndTheServerClosesWithItsCode) {
  auto server = make_server(options());
  WsClient client(io);
  client.connect(server->local_port());
  ASSERT_TRUE(run_until([&] { return client.open || client.ended; }));
  ASSERT_FALSE(client.handshake_ec) << client.handshake_ec.message();
  EXPECT_EQ(handler.sockets_opened, 1);
  EXPECT_EQ(server->stats().websockets_open, 1u);

  client.send("hello");
  ASSERT_TRUE(run_until([&] { return client.received.size() == 1; }));
  EXPECT_EQ(client.received[0], "echo:hello");
  client.send("again");
  ASSERT_TRUE(run_until([&] { return client.received.size() == 2; }));
  EXPECT_EQ(client.received[1], "echo:again");

  client.send("bye");
  ASSERT_TRUE(run_until([&] { return client.ended; }));
  EXPECT_EQ(client.read_ec, websocket::error::closed) << client.read_ec.message();
  EXPECT_EQ(client.ws.reason().code, 4001);
  EXPECT_EQ(std::string(client.ws.reason().reason.data(), client.ws.reason().reason.size()), "bye");
  ASSERT_TRUE(run_until([&] { return handler.sockets_closed == 1; }));
  EXPECT_TRUE(run_until([&] { return server->stats().websockets_open == 0 && server->stats().connections_open == 0; }));

  // A binary message: closed with 1003.
  WsClient binary(io);
  binary.connect(server->local_port());
  ASSERT_TRUE(run_until([&] { return binary.open; }));
  binary.send("\x01\x02", true);
  ASSERT_TRUE(run_until([&] { return binary.ended; }));
  EXPECT_EQ(binary.ws.reason().code, 1003);

  // A message over ws_message_size_max: closed with 1009.
  WsClient big(io);
  big.connect(server->local_port());
  ASSERT_TRUE(run_until([&] { return big.open; }));
  big.send(std::string(65 * 1024, 'x'));
  ASSERT_TRUE(run_until([&] { return big.ended; }));
  EXPECT_EQ(big.ws.reason().code, 1009);

  // The client closes: on_closed once for each session.
  WsClient polite(io);
  polite.connect(server->local_port());
  ASSERT_TRUE(run_until([&] { return polite.open; }));
  bool closed = false;
  polite.ws.async_close(websocket::close_code::normal, [&](const error_code&) { closed = true; });
  ASSERT_TRUE(run_until([&] { return closed && handler.sockets_closed == 4; }));
  run_for(50);
  EXPECT_EQ(handler.sockets_opened, 4);
  EXPECT_EQ(handler.sockets_closed, 4);
}

TEST_F(HttpServerTest, ARefusedUpgradeGetsTheRefusal) {
  auto server = make_server(options());
  int fd = raw_connect(server->local_port());
  std::string upgrade = kUpgrade;
  upgrade.replace(upgrade.find("/api/v4/websocket"), 17, "/refuse");
  auto r = request(fd, upgrade);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "{\"id\":\"refused\",\"status_code\":403}");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(handler.sockets_opened, 0);
  EXPECT_EQ(server->stats().websockets_open, 0u);
}

TEST_F(HttpServerTest, AWebSocketClientThatVanishesClosesItsSessionOnce) {
  auto server = make_server(options());
  int fd = raw_connect(server->local_port());
  auto r = request(fd, kUpgrade);
  ASSERT_EQ(r.status, 101);
  EXPECT_EQ(r.header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_EQ(r.header("server"), "chorus");
  EXPECT_EQ(server->stats().websockets_open, 1u);
  ::close(fd);
  fds.clear();
  ASSERT_TRUE(run_until([&] { return handler.sockets_closed == 1; }));
  run_for(100);
  EXPECT_EQ(handler.sockets_closed, 1);
  EXPECT_EQ(server->stats().websockets_open, 0u);
  EXPECT_EQ(server->stats().connections_open, 0u);
}

TEST_F(HttpServerTest, GracefulStopFinishesRequestsClosesWebSocketsAndStopsAccepting) {
  auto server = make_server(options());
  const uint16_t port = server->local_port();

  WsClient client(io);
  client.connect(port);
  ASSERT_TRUE(run_until([&] { return client.open; }));
  int idle = raw_connect(port);
  EXPECT_EQ(request(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  int busy = raw_connect(port);
  raw_send(busy, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(run_until([&] { return handler.requests.size() == 2; }));

  bool done = false;
  server->stop(Duration{2'000'000}, [&] { done = true; });
  EXPECT_TRUE(closed_by_server(idle, 500));  // idle keep-alive: closed at once
  auto r = read_response(busy);              // in flight: answered, then closed
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "late answer");
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(closed_by_server(busy));
  ASSERT_TRUE(run_until([&] { return client.ended; }));
  EXPECT_EQ(client.ws.reason().code, 1001);
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(handler.sockets_closed, 1);
  EXPECT_EQ(server->stats().connections_open, 0u);
  EXPECT_EQ(raw_connect(port), -1) << "the port still accepts";
}

TEST_F(HttpServerTest, StopClosesWhatIsLeftAfterTheGracePeriod) {
  auto server = make_server(options());
  // A request whose answer never comes.
  struct Silent : api::Handler {
    void handle(api::Request, api::Respond r) override { kept.push_back(std::move(r)); }
    std::unique_ptr<api::SocketSession> open_socket(const api::Request&, api::SocketSink&, api::Response&) override {
      return nullptr;
    }
    std::vector<api::Respond> kept;
  } silent;
  HttpServer other(io, env, options(), silent);
  other.start();
  int fd = raw_connect(other.local_port());
  raw_send(fd, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(run_until([&] { return silent.kept.size() == 1; }));
  bool done = false;
  const auto start = std::chrono::steady_clock::now();
  other.stop(Duration{150'000}, [&] { done = true; });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(140));
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_TRUE(sink.contains("still open after the grace period"));
  silent.kept[0](api::Response{200, {}, "too late"});  // safe, and dropped
  run_for(10);
  // Stopping with nothing open calls done at once.
  bool done2 = false;
  server->stop(Duration{1'000'000}, [&] { done2 = true; });
  EXPECT_TRUE(run_until([&] { return done2; }, 100));
}

TEST_F(HttpServerTest, ConnectionsBeyondTheMaximumAreClosed) {
  auto o = options();
  o.connections_max = 2;
  auto server = make_server(o);
  int a = raw_connect(server->local_port());
  int b = raw_connect(server->local_port());
  ASSERT_TRUE(run_until([&] { return server->stats().connections_open == 2; }));
  int c = raw_connect(server->local_port());
  EXPECT_TRUE(closed_by_server(c));
  EXPECT_TRUE(sink.contains("2 connections already open"));
  EXPECT_EQ(request(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_EQ(request(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
}

TEST_F(HttpServerTest, BindFailureNamesTheAddress) {
  auto server = make_server(options());
  auto o = options();
  o.port = server->local_port();
  try {
    HttpServer second(io, env, o, handler);
    FAIL() << "binding a port in use should fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on HTTP address 127.0.0.1:" + std::to_string(o.port)),
              std::string::npos)
        << e.what();
  }
  o.bind_host = "not-an-ip";
  EXPECT_THROW(HttpServer(io, env, o, handler), std::runtime_error);
}
