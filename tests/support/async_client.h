// Asynchronous HTTP/1.1 and WebSocket clients for chorusd on loopback, for many connections on one io_context
// (plain callbacks, no coroutines, one thread): keep-alive HTTP connections in small pools, one request at a time
// each; WebSocket connections that authenticate as Mattermost's clients do (the challenge, its reply, the hello)
// and hand every later message to an observer. The load tool (bench/chorus_load.cpp) runs on them; tests can too
// (link chorus_test_support). Beast stays in async_client.cpp: this header has no Boost in it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/http_client.h"

namespace boost::asio {
class io_context;
}

namespace chorus::testing {

// The steady clock in nanoseconds: the time base of HttpResult's times and of WebSocket receive times.
int64_t steady_now_ns();

// s on one line (CR and LF as spaces), cut to `max` characters with "..." after.
std::string truncated(std::string_view s, size_t max = 300);

// ---------------------------------------------------------------------------------------------------
// HTTP: keep-alive connections, one request at a time each, in a small pool per server.

// An answer (status, headers, body), or why there is none.
struct HttpResult : HttpResponse {
  std::string error;                 // the connection's error message; empty when an answer came
  bool timeout = false;              // the error is the request's timeout
  int64_t sent_ns = 0, done_ns = 0;  // steady_now_ns(): writing the request began; the answer or error came
  bool ok(int want) const { return error.empty() && status == want; }
  bool timed_out() const { return timeout; }
  std::string describe() const;  // "timeout", the error, or "HTTP <status> <the body, truncated>"
};

struct HttpJob {
  std::string method = "GET";
  std::string target;
  std::string token;                  // when set: "Authorization: Bearer <token>"
  std::function<std::string()> body;  // when set: a JSON body, built just before the request is written
  std::function<void(HttpResult&)> done;
};

class HttpPool {
 public:
  // `size` connections (at least 1) to 127.0.0.1:port, opened on first use and again after an error; each
  // request (connect included) must be answered within `timeout`.
  HttpPool(boost::asio::io_context& io, uint16_t port, int size, std::chrono::milliseconds timeout,
           const std::string& user_agent = "chorus-test");
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // To the least loaded connection; `done` runs on the io_context's thread.
  void submit(HttpJob job);
  // Closes every connection; queued and pending jobs are dropped without their callbacks.
  void shutdown();

 private:
  class Conn;
  std::vector<std::shared_ptr<Conn>> conns_;
};

// ---------------------------------------------------------------------------------------------------
// WebSocket clients: connect, authenticate with the challenge, wait for its reply and the hello.

class WsConn;

class WsObserver {
 public:
  virtual ~WsObserver() = default;
  virtual void ws_ready(WsConn&) = 0;                             // authenticated and hello received
  virtual void ws_failed(WsConn&, const std::string& why) = 0;    // before ready
  virtual void ws_message(WsConn&, std::string_view, int64_t) {}  // after ready: text and receive time
  virtual void ws_lost(WsConn&, const std::string& why) {}        // after ready, not closed by us
};

// One connection to ws://127.0.0.1:port/api/v4/websocket. Made by make_ws_conn; it stays alive while an
// operation is pending, so detach() it before its observer goes.
class WsConn {
 public:
  virtual ~WsConn() = default;
  virtual int id() const = 0;  // the number the caller gave it
  virtual bool ready() const = 0;
  virtual bool finished() const = 0;  // failed, lost or closed
  virtual void start() = 0;           // connect (10 s at most), handshake (10 s), authenticate
  // The close handshake (1000); an unready connection is cut at once.
  virtual void close() = 0;
  virtual void hard_close() = 0;
  // No more callbacks; the connection is cut.
  virtual void detach() = 0;
};

std::shared_ptr<WsConn> make_ws_conn(boost::asio::io_context& io, uint16_t port, std::string token, int id,
                                     WsObserver* observer);

// Opens a set of connections, at most `inflight_max` being set up at once, and counts how they end. Its
// connections are detached when it goes.
class WsOpener : public WsObserver {
 public:
  WsOpener() = default;
  ~WsOpener() override;
  WsOpener(const WsOpener&) = delete;
  WsOpener& operator=(const WsOpener&) = delete;

  std::vector<std::shared_ptr<WsConn>> conns;  // made with this opener as their observer
  size_t next = 0, inflight = 0, ready = 0, failed = 0, lost = 0;
  size_t inflight_max = 200;
  std::map<std::string, size_t> failures, losses;  // reason -> count

  void pump();  // starts connections up to inflight_max at once
  bool all_settled() const { return ready + failed == conns.size(); }
  size_t open_now() const;  // ready and not finished
  void ws_ready(WsConn&) override;
  void ws_failed(WsConn&, const std::string& why) override;
  void ws_lost(WsConn&, const std::string& why) override;
};

}  // namespace chorus::testing
