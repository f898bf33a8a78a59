// HTTP requests and WebSocket connections as the API layer sees them: plain data and two small
// interfaces, no sockets. server/runtime (Boost.Beast) parses real requests and frames into these; the
// simulator builds them for its simulated clients. Either way the same api code answers.
//
// Threading: every call in both directions happens on the node's loop (see docs/concurrency.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::api {

struct Request {
  std::string method;                                        // "GET", "POST", ... (upper case)
  std::string path;                                          // "/api/v4/users/me": no query, percent-decoded
  std::map<std::string, std::string> query;                  // decoded; a repeated key keeps its last value
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  std::string remote;  // "ip:port" of the peer (NGINX's, behind a proxy), "local" on the local-mode socket
  bool local = false;  // came over the local-mode unix socket: this machine's operator, as a system admin

  // The first header of that (lower-case) name, or "".
  std::string_view header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return {};
  }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type among them when there is a body
  std::string body;
};

// Called exactly once per request, possibly later (after database work), always on the node's loop. A
// client that went away meanwhile is no error: the answer is dropped.
using Respond = std::function<void(Response)>;

// The socket side of a WebSocket connection: implemented by the runtime (and the simulator).
class SocketSink {
 public:
  virtual ~SocketSink() = default;
  // Queues a text frame. Never blocks; the api layer bounds its own queue with queued_frames().
  virtual void send_text(std::string text) = 0;
  // Text frames queued and not yet written to the socket.
  virtual size_t queued_frames() const = 0;
  // Closes with a WebSocket close code (1000 normal, 1001 going away, 1008 policy, 4001 ...).
  virtual void close(uint16_t code, std::string reason) = 0;
};

// The api side of a WebSocket connection: implemented by server/api.
class SocketSession {
 public:
  virtual ~SocketSession() = default;
  virtual void on_text(std::string_view text) = 0;
  // The connection is gone (closed by either side, or lost). The sink must not be used after this.
  virtual void on_closed() = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void handle(Request request, Respond respond) = 0;
  // A WebSocket upgrade request. Returns the session that will own the connection, or nullptr and sets
  // `refusal` (an HTTP error answered instead of the upgrade). The sink outlives the session's use of it:
  // the runtime calls on_closed() before destroying the sink.
  virtual std::unique_ptr<SocketSession> open_socket(const Request& request, SocketSink& sink, Response& refusal) = 0;
};

}  // namespace chorus::api
