// The asynchronous HTTP and WebSocket clients of async_client.h on Boost.Beast (compiled separately, in
// chorus_runtime's asio_impl.cpp): plain async callbacks, every operation bounded by a timeout.
#include "tests/support/async_client.h"

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <deque>

namespace chorus::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;

int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string truncated(std::string_view s, size_t max) {
  std::string out(s.substr(0, max));
  if (s.size() > max) out += "...";
  for (auto& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

std::string HttpResult::describe() const {
  if (!error.empty()) return timeout ? "timeout" : error;
  return fmt::format("HTTP {} {}", status, truncated(body, 200));
}

// ---------------------------------------------------------------------------------------------------
// HTTP.

class HttpPool::Conn : public std::enable_shared_from_this<HttpPool::Conn> {
 public:
  Conn(asio::io_context& io, uint16_t port, std::chrono::milliseconds timeout, const std::string& user_agent)
      : stream_(io),
        endpoint_(asio::ip::make_address_v4("127.0.0.1"), port),
        host_(fmt::format("127.0.0.1:{}", port)),
        user_agent_(user_agent),
        timeout_(timeout) {}

  void submit(HttpJob job) {
    if (shut_) return;
    queue_.push_back(std::move(job));
    if (!busy_) next();
  }
  size_t load() const { return queue_.size() + (busy_ ? 1 : 0); }
  void shutdown() {
    shut_ = true;
    queue_.clear();
    current_ = {};
    stream_.close();
  }

 private:
  void next() {
    if (shut_ || queue_.empty()) {
      busy_ = false;
      return;
    }
    busy_ = true;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    result_ = {};
    result_.sent_ns = steady_now_ns();
    if (connected_) return write();
    stream_.expires_after(timeout_);
    stream_.async_connect(endpoint_, [self = shared_from_this()](const error_code& ec) {
      if (self->shut_) return;
      if (ec) return self->fail(ec);
      self->connected_ = true;
      error_code ignored;
      self->stream_.socket().set_option(tcp::no_delay(true), ignored);
      self->write();
    });
  }

  void write() {
    req_ = {};
    req_.method_string(current_.method);
    req_.target(current_.target);
    req_.version(11);
    req_.set(http::field::host, host_);
    req_.set(http::field::user_agent, user_agent_);
    if (!current_.token.empty()) req_.set(http::field::authorization, "Bearer " + current_.token);
    result_.sent_ns = steady_now_ns();
    if (current_.body) {
      req_.set(http::field::content_type, "application/json");
      req_.body() = current_.body();
    }
    req_.keep_alive(true);
    req_.prepare_payload();
    stream_.expires_after(timeout_);
    http::async_write(stream_, req_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->shut_) return;
      if (ec) return self->fail(ec);
      self->res_ = {};
      http::async_read(self->stream_, self->buffer_, self->res_, [self](const error_code& ec2, size_t) {
        if (self->shut_) return;
        if (ec2) return self->fail(ec2);
        self->stream_.expires_never();
        self->result_.status = static_cast<int>(self->res_.result_int());
        self->result_.body = std::move(self->res_.body());
        for (const auto& field : self->res_)
          self->result_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        if (!self->res_.keep_alive()) self->reset();
        self->finish();
      });
    });
  }

  void fail(const error_code& ec) {
    result_.error = ec.message();
    result_.timeout = ec == beast::error::timeout;
    reset();
    finish();
  }
  void reset() {
    stream_.close();
    connected_ = false;
    buffer_.clear();
  }
  void finish() {
    result_.done_ns = steady_now_ns();
    auto done = std::move(current_.done);
    current_ = {};
    if (done) done(result_);
    next();
  }

  beast::tcp_stream stream_;
  tcp::endpoint endpoint_;
  std::string host_, user_agent_;
  std::chrono::milliseconds timeout_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  std::deque<HttpJob> queue_;
  HttpJob current_;
  HttpResult result_;
  bool busy_ = false, connected_ = false, shut_ = false;
};

HttpPool::HttpPool(asio::io_context& io, uint16_t port, int size, std::chrono::milliseconds timeout,
                   const std::string& user_agent) {
  for (int i = 0; i < std::max(1, size); ++i) conns_.push_back(std::make_shared<Conn>(io, port, timeout, user_agent));
}

HttpPool::~HttpPool() { shutdown(); }

void HttpPool::submit(HttpJob job) {
  auto best = std::min_element(conns_.begin(), conns_.end(),
                               [](const auto& a, const auto& b) { return a->load() < b->load(); });
  (*best)->submit(std::move(job));
}

void HttpPool::shutdown() {
  for (auto& c : conns_) c->shutdown();
}

// ---------------------------------------------------------------------------------------------------
// WebSocket.

namespace {

class BeastWsConn : public WsConn, public std::enable_shared_from_this<BeastWsConn> {
 public:
  BeastWsConn(asio::io_context& io, uint16_t port, std::string token, int id, WsObserver* observer)
      : ws_(io), port_(port), token_(std::move(token)), id_(id), observer_(observer) {}

  int id() const override { return id_; }
  bool ready() const override { return ready_; }
  bool finished() const override { return done_; }

  void start() override {
    auto& tcp_layer = beast::get_lowest_layer(ws_);
    tcp_layer.expires_after(10s);
    const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port_);
    tcp_layer.async_connect(endpoint, [self = shared_from_this()](const error_code& ec) {
      if (self->done_) return;
      if (ec) return self->failed("connect: " + ec.message());
      auto& lowest = beast::get_lowest_layer(self->ws_);
      lowest.expires_never();
      error_code ignored;
      lowest.socket().set_option(tcp::no_delay(true), ignored);
      websocket::stream_base::timeout t;
      t.handshake_timeout = 10s;  // also the close handshake
      t.idle_timeout = websocket::stream_base::none();
      t.keep_alive_pings = false;
      self->ws_.set_option(t);
      const std::string host = fmt::format("127.0.0.1:{}", self->port_);
      self->ws_.async_handshake(host, "/api/v4/websocket", [self](const error_code& ec2) {
        if (self->done_) return;
        if (ec2) return self->failed("handshake: " + ec2.message());
        self->out_ = json::serialize(
            json::object{{"action", "authentication_challenge"}, {"seq", 1}, {"data", {{"token", self->token_}}}});
        self->ws_.text(true);
        self->writing_ = true;
        self->ws_.async_write(asio::buffer(self->out_), [self](const error_code& ec3, size_t) {
          self->writing_ = false;
          if (self->done_) return;
          if (ec3) return self->failed("authentication challenge: " + ec3.message());
          std::string().swap(self->out_);
        });
        self->read();
      });
    });
  }

  void close() override {
    if (done_) return;
    if (!ready_ || writing_) return hard_close();
    closing_ = true;
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](const error_code&) {});
  }
  void hard_close() override {
    done_ = true;
    beast::get_lowest_layer(ws_).close();
  }
  void detach() override {
    observer_ = nullptr;
    if (!done_) hard_close();
  }

 private:
  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->done_) return;
      if (ec) {
        std::string why = ec.message();
        if (ec == websocket::error::closed) {
          const auto& r = self->ws_.reason();
          why = fmt::format("closed by the server: {} {}", static_cast<unsigned>(r.code),
                            std::string(r.reason.data(), r.reason.size()));
        }
        const bool ours = self->closing_;
        self->done_ = true;
        beast::get_lowest_layer(self->ws_).close();
        if (ours) return;
        if (!self->ready_) return self->report_failure(why);
        if (self->observer_) self->observer_->ws_lost(*self, why);
        return;
      }
      const int64_t received = steady_now_ns();
      const auto data = self->buffer_.cdata();
      const std::string_view text(static_cast<const char*>(data.data()), data.size());
      if (!self->ready_)
        self->greeting(text);
      else if (self->observer_)
        self->observer_->ws_message(*self, text, received);
      self->buffer_.consume(self->buffer_.size());
      if (!self->done_) self->read();
    });
  }

  // Before ready: the reply to the challenge ({"status":"OK","seq_reply":1}) and the hello event.
  void greeting(std::string_view text) {
    error_code ec;
    const json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) return failed("not JSON: " + truncated(text));
    const auto& o = v.as_object();
    if (const auto* reply = o.if_contains("seq_reply")) {
      const auto* status = o.if_contains("status");
      if (reply->is_int64() && reply->as_int64() == 1 && status && status->is_string() && status->as_string() == "OK")
        auth_ok_ = true;
      else
        return failed("authentication refused: " + truncated(text));
    } else if (const auto* event = o.if_contains("event");
               event && event->is_string() && event->as_string() == "hello") {
      hello_ = true;
    }
    if (auth_ok_ && hello_) {
      ready_ = true;
      if (observer_) observer_->ws_ready(*this);
    }
  }

  void failed(const std::string& why) {
    hard_close();
    report_failure(why);
  }
  void report_failure(const std::string& why) {
    if (observer_) observer_->ws_failed(*this, why);
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  uint16_t port_;
  std::string token_;
  std::string out_;
  int id_;
  WsObserver* observer_;
  bool auth_ok_ = false, hello_ = false, ready_ = false, writing_ = false, closing_ = false, done_ = false;
};

}  // namespace

std::shared_ptr<WsConn> make_ws_conn(asio::io_context& io, uint16_t port, std::string token, int id,
                                     WsObserver* observer) {
  return std::make_shared<BeastWsConn>(io, port, std::move(token), id, observer);
}

WsOpener::~WsOpener() {
  for (auto& c : conns) c->detach();
}

void WsOpener::pump() {
  while (inflight < inflight_max && next < conns.size()) {
    ++inflight;
    conns[next++]->start();
  }
}

size_t WsOpener::open_now() const {
  size_t n = 0;
  for (const auto& c : conns) n += c->ready() && !c->finished();
  return n;
}

void WsOpener::ws_ready(WsConn&) {
  ++ready;
  --inflight;
  pump();
}

void WsOpener::ws_failed(WsConn&, const std::string& why) {
  ++failed;
  ++failures[why];
  --inflight;
  pump();
}

void WsOpener::ws_lost(WsConn&, const std::string& why) {
  ++lost;
  ++losses[why];
}

}  // namespace chorus::testing
