// The production HTTP/1.1 and WebSocket server (Boost.Beast) in front of the api layer.
//
// Real requests are parsed into api::Request and handed to api::Handler::handle; the answer is written
// when the handler calls its Respond (at once or later, always on the node's loop). A WebSocket upgrade
// (on any path: the handler decides) goes to Handler::open_socket, and the connection's text frames to
// the returned SocketSession. Limits: header and body sizes (431 and 413), a deadline for a request to
// arrive (read_timeout, which also cuts slowloris clients), an idle deadline for keep-alive connections,
// a maximum number of connections and of WebSocket message size. Malformed requests are answered with
// Mattermost's JSON error shape and the connection is closed; nothing a client sends can stop the server.
//
// Everything runs on one io_context (the node's loop); nothing here is thread-safe. Only server/runtime
// and its tests include this header; Beast and Asio stay out of it.
//
// Lifetime: the handler and the Env must outlive the HttpServer. Destroying the server closes every
// connection at once (WebSocket sessions get on_closed() first); stop() is the graceful way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "server/api/http.h"
#include "server/core/env.h"
#include "server/core/time.h"

namespace boost::asio {
class io_context;
}

namespace chorus::runtime {

struct HttpServerOptions {
  std::string bind_host = "0.0.0.0";
  uint16_t port = 8065;                    // 0: any free port (tests); see HttpServer::local_port
  size_t header_size_max = 16 * 1024;      // request line and headers; beyond it: 431
  size_t body_size_max = 8u << 20;         // beyond it: 413
  size_t upload_size_max = 101u << 20;     // the same for POST /api/v4/files (uploads)
  Duration read_timeout{30'000'000};       // a request (headers and body) must arrive within this of its first byte
  Duration idle_timeout{120'000'000};      // a keep-alive connection may wait this long for its next request
  Duration write_timeout{300'000'000};     // a response must be taken by the client within this
  size_t connections_max = 20'000;         // HTTP and WebSocket together; beyond it new ones are closed at once
  size_t ws_message_size_max = 64 * 1024;  // a larger WebSocket message closes the connection (1009)
  Duration ws_close_timeout{5'000'000};    // after SocketSink::close, the close handshake must end within this
  // Local mode (ServiceSettings.EnableLocalMode): listen on this unix socket (mode 0600) instead of TCP;
  // its requests are marked local (api::Request::local) and need no token, as with mmctl --local.
  std::string unix_path;
};

class HttpServer {
 public:
  // Binds the listening socket at once; throws std::runtime_error naming the address when it cannot.
  HttpServer(boost::asio::io_context& io, Env& env, HttpServerOptions options, api::Handler& handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Starts accepting connections.
  void start();

  // Graceful stop: stops accepting; requests being handled get their answer written (with
  // "Connection: close"), then their connections close; idle keep-alive connections and requests still
  // arriving are closed; every WebSocket is closed with 1001 "going away". Calls `done` (posted on the
  // loop) once every connection is gone, or after `grace`, when the rest are closed forcibly. Calling
  // it again adds another `done` to the same stop.
  void stop(Duration grace, std::function<void()> done);

  uint16_t local_port() const;

  struct Stats {
    uint64_t requests = 0;          // requests handed to the handler (HTTP and WebSocket upgrades)
    uint64_t bad_requests = 0;      // malformed, too large, or cut by read_timeout while arriving
    uint64_t websockets_open = 0;   // sessions open now
    uint64_t connections_open = 0;  // connections open now (HTTP and WebSocket)
  };
  Stats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace chorus::runtime
