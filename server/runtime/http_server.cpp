// The production HTTP and WebSocket server (Beast) behind api::Handler. Over 700 lines on purpose: it is
// the one translation unit that compiles Beast (build time on 2 cores: no header drags Beast elsewhere),
// and a connection's HTTP and WebSocket states are one state machine that reads best in one place.
#include "server/runtime/http_server.h"
#include "server/core/url.h"  // percent_decode, parse_query
#include "server/runtime/spdlog_sink.h"  // json_escape

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <boost/asio/io_context.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <deque>
#include <optional>
#include <set>
#include <stdexcept>
#include <vector>

namespace chorus::runtime {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
// TCP and the local-mode unix socket alike (HttpServerOptions::unix_path): one connection type for both.
using Protocol = asio::generic::stream_protocol;
using Socket = Protocol::socket;
using Stream = beast::basic_stream<Protocol>;
using boost::system::error_code;

namespace {

// After an error answer the connection is half-closed and what the client still sends is read and
// dropped for a while, so the answer is not lost to a reset. The byte bound is well above any body a
// proxy would forward (NGINX sends the whole body it buffered, 100 MB in the guide's config, and turns
// a reset into 502 instead of our 413); the time bound is what stops a slow client.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytesMax = 128u << 20;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A response header the handler gave that can go on the wire (Beast also refuses fields over 64 KiB).
bool valid_header(const std::string& name, const std::string& value) {
  if (name.empty() || name.size() > 1024 || value.size() > 60'000) return false;
  if (!std::all_of(name.begin(), name.end(), is_token_char)) return false;
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos;
}

// Mattermost's error shape (model.AppError as JSON), the same as the api's (api::error_response) for what
// never reaches the api: 400, 413 and 431 from the parser, 500 from a handler that threw.
api::Response error_response(int status, std::string_view id, std::string_view message) {
  api::Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = "{\"id\":\"" + json_escape(id) + "\",\"message\":\"" + json_escape(message) +
           "\",\"detailed_error\":\"\",\"request_id\":\"\",\"status_code\":" + std::to_string(status) +
           ",\"is_oauth\":false}";
  return r;
}

std::string endpoint_text(const Socket& s) {
  error_code ec;
  const auto ep = s.remote_endpoint(ec);
  if (ec) return "(unknown)";
  if (ep.protocol().family() == AF_UNIX) return "local";
  tcp::endpoint t;
  if (ep.size() > t.capacity()) return "(unknown)";
  std::memcpy(t.data(), ep.data(), ep.size());
  if (t.address().is_v6()) return "[" + t.address().to_string() + "]:" + std::to_string(t.port());
  return t.address().to_string() + ":" + std::to_string(t.port());
}

bool is_http_error(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

// A peer going away or our own close: no news.
bool is_quiet_error(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
         ec == asio::error::broken_pipe || ec == asio::error::bad_descriptor;
}

}  // namespace

class Connection;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& io, Env& env, HttpServerOptions options, api::Handler& handler)
      : io(io), env(env), options(std::move(options)), handler(handler), acceptor(io), grace_timer(io) {}

  asio::io_context& io;
  Env& env;
  HttpServerOptions options;
  api::Handler& handler;
  asio::basic_socket_acceptor<Protocol> acceptor;
  uint16_t port = 0;
  bool started = false;
  bool stopping = false;
  bool destroyed = false;  // ~HttpServer ran: nothing may touch env or handler any more
  std::set<std::shared_ptr<Connection>> connections;
  Stats stats;
  asio::steady_timer grace_timer;
  std::vector<std::function<void()>> done;
  std::unique_ptr<asio::steady_timer> accept_retry;

  Logger& log() { return env.log(); }

  void listen();
  void listen_unix();
  void unlink_unix();
  bool unix_bound = false;
  void accept();
  void on_accepted(Socket socket);
  void remove(const std::shared_ptr<Connection>& c);
  void stop(Duration grace, std::function<void()> done_fn);
  void finish_stop();
  void shutdown();
};

// One client connection: HTTP requests one at a time, and after an accepted upgrade a WebSocket.
class Connection final : public api::SocketSink, public std::enable_shared_from_this<Connection> {
 public:
  using Server = HttpServer::Impl;
  enum class State { reading, handling, writing, lingering, upgrading, websocket, closed };

  Connection(std::shared_ptr<Server> server, Socket socket)
      : server_(std::move(server)),
        stream_(std::move(socket)),
        buffer_(server_->options.header_size_max + 64 * 1024),
        close_timer_(server_->io) {
    remote_ = endpoint_text(stream_.socket());
  }

  const std::string& remote() const { return remote_; }
  bool closed() const { return state_ == State::closed; }

  void start() { read_request(false); }

  // --- api::SocketSink

  void send_text(std::string text) override {
    if (state_ == State::closed || close_requested_) return;
    out_.push_back(std::move(text));
    pump();
  }

  size_t queued_frames() const override { return out_.size(); }

  void close(uint16_t code, std::string reason) override {
    if (state_ == State::closed || close_requested_) return;
    close_requested_ = true;
    // A close frame's reason is at most 123 bytes.
    if (reason.size() > 123) reason.resize(123);
    // Codes a peer may not send (1004-1006, 1015, below 1000, 1016-2999, from 5000) would fail the
    // client's handshake: 1000 goes instead.
    const bool sendable =
        (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    close_reason_ = websocket::close_reason(sendable ? code : std::uint16_t{1000});
    close_reason_.reason.assign(reason.data(), reason.size());
    if (state_ == State::websocket) arm_close_timer();  // else once the handshake is done
    pump();
  }

  // --- graceful stop

  void stop_gracefully() {
    switch (state_) {
      case State::reading:
        // Idle, or a request still arriving: closed now.
        stream().close();
        break;
      case State::handling:
      case State::writing:
        close_after_response_ = true;
        break;
      case State::upgrading:
      case State::websocket:
        close(1001, "going away");
        break;
      case State::lingering:
      case State::closed:
        break;
    }
  }

  // Ends the connection now (idempotent): closes the socket, tells the WebSocket session, leaves the server.
  void finish() {
    if (state_ == State::closed) return;
    state_ = State::closed;
    error_code ignored;
    close_timer_.cancel();
    stream().socket().close(ignored);
    out_.clear();
    if (session_) {
      auto session = std::move(session_);
      --server_->stats.websockets_open;
      try {
        session->on_closed();
      } catch (const std::exception& e) {
        log().error("http: websocket session of {} threw from on_closed: {}", remote_, e.what());
      } catch (...) {
        log().error("http: websocket session of {} threw from on_closed", remote_);
      }
    }
    server_->remove(shared_from_this());
  }

 private:
  using Parser = http::request_parser<http::string_body>;
  using WebSocket = websocket::stream<Stream>;

  Logger& log() { return server_->log(); }
  const HttpServerOptions& options() const { return server_->options; }
  Stream& stream() { return ws_ ? ws_->next_layer() : stream_; }

  // The queued frames and the close handshake must be done within ws_close_timeout.
  void arm_close_timer() {
    close_timer_.expires_after(options().ws_close_timeout);
    close_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->closed()) return;
      self->log().debug("http: websocket from {}: close not done within {} ms", self->remote_,
                        to_ms(self->options().ws_close_timeout));
      self->finish();
    });
  }

  // --- reading a request

  void read_request(bool after_response) {
    state_ = State::reading;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<size_t>(options().header_size_max, UINT32_MAX)));
    body_limit_ = std::max(options().body_size_max, options().upload_size_max);
    parser_->body_limit(body_limit_);
    if (after_response && buffer_.size() == 0) {
      // Keep-alive: the next request may take idle_timeout to start; once started, read_timeout applies.
      stream_.expires_after(options().idle_timeout);
      stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](const error_code& ec, size_t n) {
        if (self->closed()) return;
        if (ec) {
          if (ec == beast::error::timeout)
            self->log().debug("http: closed idle keep-alive connection from {}", self->remote_);
          else if (ec != asio::error::operation_aborted)
            self->log().debug("http: connection from {} closed: {}", self->remote_, ec.message());
          self->finish();
          return;
        }
        self->buffer_.commit(n);
        self->read_header();
      });
      return;
    }
    read_header();
  }

  void read_header() {
    stream_.expires_after(options().read_timeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->closed()) return;
      if (ec) return self->on_read_error(ec);
      if (self->parser_->is_done()) return self->on_request();
      // Uploads may be larger than other bodies: the header was read with the larger limit (Beast checks a
      // Content-Length against it as the header arrives); any other request gets the smaller one now.
      if (!(self->parser_->get().method() == http::verb::post &&
            self->parser_->get().target().starts_with("/api/v4/files"))) {
        self->body_limit_ = self->options().body_size_max;
        if (const auto length = self->parser_->content_length(); length && *length > self->body_limit_)
          return self->on_read_error(http::error::body_limit);
        self->parser_->body_limit(self->body_limit_);
      }
      const auto expect = self->parser_->get()[http::field::expect];
      if (iequals(expect, "100-continue")) {
        asio::async_write(self->stream_, asio::buffer(kContinue.data(), kContinue.size()),
                          [self](const error_code& ec, size_t) {
                            if (self->closed()) return;
                            if (ec) return self->on_read_error(ec);
                            self->read_body();
                          });
        return;
      }
      self->read_body();
    });
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->closed()) return;
      if (ec) return self->on_read_error(ec);
      self->on_request();
    });
  }

  void on_read_error(const error_code& ec) {
    if (ec == beast::error::timeout) {
      if (buffer_.size() == 0 && !(parser_ && parser_->got_some())) {
        log().debug("http: closed connection from {}: no request within {} ms", remote_, to_ms(options().read_timeout));
        return finish();
      }
      ++server_->stats.bad_requests;
      log().warn("http: closed connection from {}: request not received within {} ms", remote_,
                 to_ms(options().read_timeout));
      return finish();
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
      return bad_request(
          431, "api.context.request_header_too_large.app_error",
          "Request header fields too large (limit " + std::to_string(options().header_size_max) + " bytes).", ec);
    if (ec == http::error::body_limit)
      return bad_request(413, "api.context.request_body_too_large.app_error",
                         "Request body too large (limit " + std::to_string(body_limit_) + " bytes).", ec);
    if (is_http_error(ec) && !is_quiet_error(ec)) {
      const bool body = parser_ && parser_->is_header_done();
      return bad_request(400,
                         body ? "api.context.invalid_body_param.app_error" : "api.context.malformed_request.app_error",
                         std::string("Malformed HTTP request: ") + ec.message() + ".", ec);
    }
    if (!is_quiet_error(ec))
      log().debug("http: connection from {} failed: {}", remote_, ec.message());
    else if (ec == http::error::partial_message)
      log().debug("http: connection from {} closed in the middle of a request", remote_);
    else if (ec != asio::error::operation_aborted)
      log().debug("http: connection from {} closed by the client", remote_);
    finish();
  }

  void bad_request(int status, std::string_view id, const std::string& message, const error_code& ec) {
    ++server_->stats.bad_requests;
    log().warn("http: bad request from {}: {} ({})", remote_, ec.message(), status);
    write_response(error_response(status, id, message), /*close=*/true, /*linger=*/true, 11, false);
  }

  // --- a complete request

  // Converts the parsed request. False (and an error answer) when its target is not usable.
  bool to_api_request(http::request<http::string_body>& req, api::Request& out) {
    out.method.assign(req.method_string().data(), req.method_string().size());
    for (auto& c : out.method) c = upper(c);
    std::string_view target(req.target().data(), req.target().size());
    // The absolute form (a proxy-style request line): keep the path and what follows.
    for (std::string_view scheme : {"http://", "https://"}) {
      if (target.size() >= scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
        const size_t slash = target.find_first_of("/?", scheme.size());
        target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
        break;
      }
    }
    const size_t qmark = target.find('?');
    const std::string_view raw_path = target.substr(0, qmark);
    if (raw_path.empty() || raw_path.front() != '/' || !percent_decode(raw_path, false, false, out.path)) {
      bad_request(400, "api.context.malformed_request.app_error", "Malformed HTTP request: bad request target.",
                  http::make_error_code(http::error::bad_target));
      return false;
    }
    if (qmark != std::string_view::npos) parse_query(target.substr(qmark + 1), out.query);
    for (const auto& field : req)
      out.headers.emplace_back(lower_case(std::string_view(field.name_string().data(), field.name_string().size())),
                               std::string(field.value().data(), field.value().size()));
    out.body = std::move(req.body());
    out.remote = remote_;
    out.local = !server_->options.unix_path.empty();
    return true;
  }

  void on_request() {
    stream_.expires_never();
    auto req = parser_->release();
    parser_.reset();
    const unsigned version = req.version();
    const bool head = req.method() == http::verb::head;
    api::Request request;
    if (!to_api_request(req, request)) return;
    ++server_->stats.requests;

    if (websocket::is_upgrade(req)) return on_upgrade(std::move(req), std::move(request));

    keep_alive_ = version >= 11 && req.keep_alive();
    version_ = version;
    head_ = head;
    state_ = State::handling;
    const uint64_t generation = ++generation_;
    std::weak_ptr<Connection> weak = weak_from_this();
    api::Respond respond = [weak, generation](api::Response response) {
      if (auto self = weak.lock()) self->on_response(generation, std::move(response));
    };
    try {
      server_->handler.handle(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      log().error("http: handler threw on a request from {}: {}", remote_, e.what());
      on_response(generation, error_response(500, "api.context.internal_error.app_error", "Internal server error."));
    } catch (...) {
      log().error("http: handler threw on a request from {}", remote_);
      on_response(generation, error_response(500, "api.context.internal_error.app_error", "Internal server error."));
    }
  }

  void on_response(uint64_t generation, api::Response response) {
    // A client gone meanwhile, or a second call: dropped.
    if (state_ != State::handling || generation != generation_) return;
    const bool close = !keep_alive_ || close_after_response_ || server_->stopping;
    write_response(std::move(response), close, false, version_, head_);
  }

  // --- writing

  void write_response(api::Response r, bool close, bool linger, unsigned version, bool head) {
    state_ = State::writing;
    if (r.status < 200 || r.status > 999) {
      log().warn("http: handler answered {} with status {}; sent 500 instead", remote_, r.status);
      r = error_response(500, "api.context.internal_error.app_error", "Internal server error.");
    }
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version == 10 ? 10 : 11);
    res->result(static_cast<unsigned>(r.status));
    bool has_content_type = false;
    for (auto& [name, value] : r.headers) {
      if (!valid_header(name, value)) {
        log().warn("http: dropped an invalid response header \"{}\" for {}", json_escape(name), remote_);
        continue;
      }
      if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection") ||
          iequals(name, "server"))
        continue;
      has_content_type = has_content_type || iequals(name, "content-type");
      res->insert(name, value);
    }
    res->set(http::field::server, "chorus");
    const bool no_body = r.status == 204 || r.status == 304;
    if (no_body) {
      r.body.clear();
    } else {
      if (!r.body.empty() && !has_content_type) res->set(http::field::content_type, "application/json");
      res->content_length(r.body.size());
      if (!head) res->body() = std::move(r.body);
    }
    if (close) res->set(http::field::connection, "close");
    stream_.expires_after(options().write_timeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res, close, linger](const error_code& ec, size_t) {
      if (self->closed()) return;
      self->stream_.expires_never();
      if (ec) {
        if (!is_quiet_error(ec)) self->log().debug("http: writing to {} failed: {}", self->remote_, ec.message());
        return self->finish();
      }
      if (linger) return self->linger();
      if (close || self->close_after_response_ || self->server_->stopping) {
        error_code ignored;
        self->stream_.socket().shutdown(asio::socket_base::shutdown_both, ignored);
        self->log().debug("http: closed connection from {} after the answer", self->remote_);
        return self->finish();
      }
      self->read_request(true);
    });
  }

  // Half-closes, then reads and drops what the client still sends (for a while), so it sees the answer.
  void linger() {
    state_ = State::lingering;
    error_code ignored;
    stream_.socket().shutdown(asio::socket_base::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(16 * 1024), [self = shared_from_this()](const error_code& ec, size_t n) {
      if (self->closed()) return;
      self->lingered_ += n;
      if (ec || self->lingered_ > kLingerBytesMax) return self->finish();
      self->drain();
    });
  }

  // --- WebSocket

  void on_upgrade(http::request<http::string_body> req, api::Request request) {
    state_ = State::upgrading;
    api::Response refusal;
    refusal.status = 0;
    std::unique_ptr<api::SocketSession> session;
    try {
      session = server_->handler.open_socket(request, *this, refusal);
    } catch (const std::exception& e) {
      log().error("http: handler threw on a websocket upgrade from {}: {}", remote_, e.what());
      session.reset();
      refusal = error_response(500, "api.context.internal_error.app_error", "Internal server error.");
    } catch (...) {
      log().error("http: handler threw on a websocket upgrade from {}", remote_);
      session.reset();
      refusal = error_response(500, "api.context.internal_error.app_error", "Internal server error.");
    }
    if (!session) {
      if (refusal.status == 0)
        refusal = error_response(400, "api.web_socket.connect.upgrade.app_error", "WebSocket upgrade refused.");
      log().debug("http: websocket upgrade from {} refused with {}", remote_, refusal.status);
      close_requested_ = false;
      out_.clear();
      write_response(std::move(refusal), /*close=*/true, /*linger=*/false, req.version(), false);
      return;
    }
    session_ = std::move(session);
    ++server_->stats.websockets_open;
    upgrade_request_ = std::move(req);
    stream_.expires_never();  // the WebSocket stream keeps its own timeouts
    ws_ = std::make_unique<WebSocket>(std::move(stream_));
    ws_->set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "chorus"); }));
    websocket::permessage_deflate pmd;
    pmd.server_enable = false;
    pmd.client_enable = false;
    ws_->set_option(pmd);
    ws_->read_message_max(options().ws_message_size_max);
    ws_->async_accept(upgrade_request_, [self = shared_from_this()](const error_code& ec) {
      if (self->closed()) return;
      if (ec) {
        self->log().debug("http: websocket handshake with {} failed: {}", self->remote_, ec.message());
        return self->finish();
      }
      self->state_ = State::websocket;
      self->upgrade_request_ = {};
      self->log().debug("http: websocket from {} open", self->remote_);
      if (self->close_requested_) self->arm_close_timer();
      self->ws_read();
      self->pump();
    });
  }

  void ws_read() {
    ws_->async_read(read_buffer_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->closed()) return;
      if (ec) {
        if (ec == websocket::error::closed) {
          self->log().debug("http: websocket from {} closed by the client ({})", self->remote_,
                            self->ws_->reason().code);
        } else if (ec == beast::error::timeout || is_quiet_error(ec)) {
          self->log().debug("http: websocket from {} lost: {}", self->remote_, ec.message());
        } else {
          self->log().warn("http: websocket from {} closed: {}", self->remote_, ec.message());
        }
        return self->finish();
      }
      if (!self->ws_->got_text()) {
        self->read_buffer_.consume(self->read_buffer_.size());
        self->log().warn("http: websocket from {} sent a binary message; closing", self->remote_);
        self->close(websocket::close_code::unknown_data, "binary messages are not supported");
      } else if (self->session_) {
        const std::string text = beast::buffers_to_string(self->read_buffer_.data());
        self->read_buffer_.consume(self->read_buffer_.size());
        try {
          self->session_->on_text(text);
        } catch (const std::exception& e) {
          self->log().error("http: websocket session of {} threw from on_text: {}", self->remote_, e.what());
          self->close(websocket::close_code::internal_error, "internal error");
        } catch (...) {
          self->log().error("http: websocket session of {} threw from on_text", self->remote_);
          self->close(websocket::close_code::internal_error, "internal error");
        }
      }
      if (self->closed() || self->close_started_) return;
      self->ws_read();
    });
  }

  // Writes queued frames one at a time; once they are out and a close was asked for, closes.
  void pump() {
    if (state_ != State::websocket || writing_ || close_started_) return;
    if (!out_.empty()) {
      writing_ = true;
      ws_->text(true);
      ws_->async_write(asio::buffer(out_.front()), [self = shared_from_this()](const error_code& ec, size_t) {
        self->writing_ = false;
        if (self->closed()) return;
        if (ec) {
          if (!is_quiet_error(ec) && ec != websocket::error::closed)
            self->log().debug("http: writing to websocket {} failed: {}", self->remote_, ec.message());
          return self->finish();
        }
        self->out_.pop_front();
        self->pump();
      });
      return;
    }
    if (!close_requested_) return;
    close_started_ = true;
    if (!ws_->is_open()) return finish();
    ws_->async_close(close_reason_, [self = shared_from_this()](const error_code& ec) {
      if (self->closed()) return;
      self->log().debug("http: websocket from {} closed ({}){}", self->remote_, self->close_reason_.code,
                        ec ? ": " + ec.message() : std::string());
      self->finish();
    });
  }

  std::shared_ptr<Server> server_;
  Stream stream_;  // moved into ws_ on an accepted upgrade: use stream() where either may hold it
  beast::flat_buffer buffer_;
  std::string remote_;
  State state_ = State::reading;
  std::optional<Parser> parser_;
  size_t body_limit_ = 0;  // of the request being read (uploads may be larger)
  uint64_t generation_ = 0;  // numbers requests: a late or second Respond call compares and bails
  bool keep_alive_ = false;
  bool close_after_response_ = false;
  unsigned version_ = 11;
  bool head_ = false;
  size_t lingered_ = 0;

  // WebSocket
  std::unique_ptr<WebSocket> ws_;
  std::unique_ptr<api::SocketSession> session_;
  http::request<http::string_body> upgrade_request_;
  beast::flat_buffer read_buffer_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_started_ = false;
  websocket::close_reason close_reason_;
  asio::steady_timer close_timer_;
};

// --- the server

void HttpServer::Impl::listen() {
  error_code ec;
  const auto address = asio::ip::make_address(options.bind_host, ec);
  if (ec) throw std::runtime_error("HTTP bind address \"" + options.bind_host + "\" is not an IP address");
  const tcp::endpoint ep(address, options.port);
  acceptor.open(Protocol::endpoint(ep).protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(Protocol::endpoint(ep), ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on HTTP address " + options.bind_host + ":" + std::to_string(options.port) +
                             ": " + ec.message());
  const auto bound = acceptor.local_endpoint(ec);
  tcp::endpoint t;
  if (!ec && bound.size() <= t.capacity()) {
    std::memcpy(t.data(), bound.data(), bound.size());
    port = t.port();
  }
}

// Local mode: a unix socket only this machine's users with access to the file reach (mode 0600). A stale
// socket file of an earlier run is replaced; anything else at the path is left alone and is an error.
void HttpServer::Impl::listen_unix() {
  const std::string& path = options.unix_path;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error("cannot listen on the local-mode socket " + path + ": a file that is not a socket is there");
    ::unlink(path.c_str());
  }
  error_code ec;
  const asio::local::stream_protocol::endpoint ep(path);
  acceptor.open(Protocol::endpoint(ep).protocol(), ec);
  if (!ec) acceptor.bind(Protocol::endpoint(ep), ec);
  if (!ec && ::chmod(path.c_str(), 0600) != 0) ec = error_code(errno, boost::system::system_category());
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on the local-mode socket " + path + ": " + ec.message());
  unix_bound = true;
}

void HttpServer::Impl::accept() {
  if (stopping || destroyed) return;
  acceptor.async_accept([self = shared_from_this()](const error_code& ec, Socket socket) {
    if (self->stopping || self->destroyed) return;
    if (!ec) {
      self->on_accepted(std::move(socket));
      self->accept();
      return;
    }
    if (ec == asio::error::operation_aborted) return;
    // Out of descriptors and the like: do not spin; try again shortly.
    self->log().warn("http: accept failed: {}; retrying in 100 ms", ec.message());
    if (!self->accept_retry) self->accept_retry = std::make_unique<asio::steady_timer>(self->io);
    self->accept_retry->expires_after(std::chrono::milliseconds(100));
    self->accept_retry->async_wait([self](const error_code& e) {
      if (!e && !self->stopping && !self->destroyed) self->accept();
    });
  });
}

void HttpServer::Impl::on_accepted(Socket socket) {
  if (connections.size() >= options.connections_max) {
    log().warn("http: refused connection from {}: {} connections already open", endpoint_text(socket),
               connections.size());
    error_code ignored;
    socket.close(ignored);
    return;
  }
  error_code ignored;
  if (options.unix_path.empty()) socket.set_option(tcp::no_delay(true), ignored);
  auto c = std::make_shared<Connection>(shared_from_this(), std::move(socket));
  connections.insert(c);
  c->start();
}

void HttpServer::Impl::remove(const std::shared_ptr<Connection>& c) {
  connections.erase(c);
  if (stopping && connections.empty()) finish_stop();
}

void HttpServer::Impl::stop(Duration grace, std::function<void()> done_fn) {
  if (destroyed) return;
  if (done_fn) done.push_back(std::move(done_fn));
  if (stopping) {
    if (connections.empty()) finish_stop();
    return;
  }
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  unlink_unix();
  if (accept_retry) accept_retry->cancel();
  log().info("http: stopping; {} connections open, {} ms of grace", connections.size(), to_ms(grace));
  const auto open = connections;  // a copy: connections leave the set as they close
  for (const auto& c : open) c->stop_gracefully();
  if (connections.empty()) return finish_stop();
  grace_timer.expires_after(grace);
  grace_timer.async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec || self->destroyed || self->connections.empty()) return;
    self->log().warn("http: {} connections still open after the grace period; closing them", self->connections.size());
    const auto rest = self->connections;
    for (const auto& c : rest) c->finish();
    if (!self->connections.empty()) self->finish_stop();  // cannot happen; done is called regardless
  });
}

void HttpServer::Impl::finish_stop() {
  grace_timer.cancel();
  auto callbacks = std::move(done);
  done.clear();
  for (auto& fn : callbacks) asio::post(io, std::move(fn));
}

void HttpServer::Impl::shutdown() {
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  unlink_unix();
  if (accept_retry) accept_retry->cancel();
  grace_timer.cancel();
  done.clear();
  const auto open = connections;
  for (const auto& c : open) c->finish();
  connections.clear();
  destroyed = true;
}

HttpServer::HttpServer(boost::asio::io_context& io, Env& env, HttpServerOptions options, api::Handler& handler)
    : impl_(std::make_shared<Impl>(io, env, std::move(options), handler)) {
  if (impl_->options.unix_path.empty())
    impl_->listen();
  else
    impl_->listen_unix();
}

HttpServer::~HttpServer() { impl_->shutdown(); }

void HttpServer::Impl::unlink_unix() {
  if (unix_bound) ::unlink(options.unix_path.c_str());
  unix_bound = false;
}

void HttpServer::start() {
  if (impl_->started || impl_->stopping) return;
  impl_->started = true;
  if (impl_->options.unix_path.empty())
    impl_->log().info("http: listening on {}:{}", impl_->options.bind_host, impl_->port);
  else
    impl_->log().info("http: local mode listening on {}", impl_->options.unix_path);
  impl_->accept();
}

void HttpServer::stop(Duration grace, std::function<void()> done) { impl_->stop(grace, std::move(done)); }

uint16_t HttpServer::local_port() const { return impl_->port; }

HttpServer::Stats HttpServer::stats() const {
  Stats s = impl_->stats;
  s.connections_open = impl_->connections.size();
  return s;
}

}  // namespace chorus::runtime
