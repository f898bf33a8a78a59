// chorusctl's HTTP client (ctl_http.h): synchronous from the caller's side, asynchronous underneath so
// that every step has a deadline (Beast's stream timeouts apply to asynchronous operations only).
#include "server/ctl/ctl_http.h"

#include <strings.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <cstdio>

#ifndef CHORUS_VERSION
#define CHORUS_VERSION "0.1.0"
#endif

namespace chorus::ctl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using ms = std::chrono::milliseconds;

namespace {

constexpr uint64_t kBodyLimit = 64ull << 20;
constexpr uint32_t kHeaderLimit = 64u << 10;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string seconds(ms t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(t.count()) / 1000.0);
  return buf;
}

// Runs the operations started on `io` until they complete (each one has a deadline of its own).
void run(asio::io_context& io) {
  io.restart();
  io.run();
}

// A transport failure after the connection was made: no answer, or not all of it.
[[noreturn]] void lost(const beast::error_code& ec, const Endpoint& to, ms timeout, const char* doing) {
  if (ec == beast::error::timeout)
    throw CtlError(kExitUnreachable, to.describe() + " did not answer within " + seconds(timeout) + " (--timeout)");
  if (ec == http::error::end_of_stream)
    throw CtlError(kExitUnreachable, to.describe() + " closed the connection without answering");
  throw CtlError(kExitUnreachable,
                 std::string("lost the connection to ") + to.describe() + " while " + doing + ": " + ec.message());
}

template <class Stream>
HttpResponse exchange(asio::io_context& io, Stream& stream, const Endpoint& to, http::request<http::string_body>& req,
                      ms timeout) {
  beast::error_code ec;
  stream.expires_after(timeout);  // one deadline for sending the request and reading the whole answer
  http::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
  run(io);
  if (ec) lost(ec, to, timeout, "sending the request");
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  parser.header_limit(kHeaderLimit);
  http::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
  run(io);
  if (ec == http::error::body_limit)
    throw CtlError(kExitRefused, "the answer from " + to.describe() + " is over 64 MiB");
  if (ec && ec != http::error::end_of_stream && ec != http::error::partial_message &&
      ec.category() == http::make_error_code(http::error::bad_version).category())
    throw CtlError(kExitRefused, "the answer from " + to.describe() + " is not HTTP (" + ec.message() +
                                     "): is this a Chorus node's API address?");
  if (ec) lost(ec, to, timeout, "reading the answer");
  beast::error_code ignored;
  stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
  HttpResponse out;
  const auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  out.body = res.body();
  return out;
}

}  // namespace

std::string Endpoint::url() const {
  if (local) return "";
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + (port == "80" ? "" : ":" + port) + prefix;
}

std::string Endpoint::describe() const { return local ? "the local socket " + socket_path : url(); }

Endpoint parse_url(const std::string& text) {
  const std::string https_hint =
      "chorusctl talks plain HTTP to a node (http://host:port, its ServiceSettings.ListenAddress); TLS is for the "
      "NGINX in front of the nodes. On the node's own machine, --local needs no URL at all";
  std::string rest = text;
  const auto scheme_end = rest.find("://");
  if (scheme_end != std::string::npos) {
    const std::string scheme = lower(rest.substr(0, scheme_end));
    if (scheme == "https") throw CtlError(kExitUsage, "https:// is not supported (" + text + "): " + https_hint);
    if (scheme != "http")
      throw CtlError(kExitUsage, "the URL must start with http:// (got \"" + text + "\"): " + https_hint);
    rest = rest.substr(scheme_end + 3);
  }
  Endpoint e;
  const auto slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (path.find_first_of("?#") != std::string::npos)
    throw CtlError(kExitUsage, "the URL must not have a query or fragment (got \"" + text + "\")");
  if (authority.find('@') != std::string::npos)
    throw CtlError(kExitUsage, "the URL must not carry a user name or password (got \"" + text + "\")");
  if (authority.empty()) throw CtlError(kExitUsage, "the URL has no host (got \"" + text + "\")");
  std::string port_text;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos)
      throw CtlError(kExitUsage, "the URL's IPv6 address has no \"]\" (\"" + text + "\")");
    e.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') throw CtlError(kExitUsage, "malformed URL \"" + text + "\"");
      port_text = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.rfind(':');
    e.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (e.host.empty()) throw CtlError(kExitUsage, "the URL has no host (got \"" + text + "\")");
  e.port = "80";
  if (!port_text.empty() || authority.back() == ':') {
    int port = 0;
    bool digits = !port_text.empty() && port_text.size() <= 5;
    for (char c : port_text) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) port = std::stoi(port_text);
    if (!digits || port < 1 || port > 65535)
      throw CtlError(kExitUsage, "the URL's port must be 1 to 65535 (got \"" + text + "\")");
    e.port = std::to_string(port);
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() >= 7 && path.compare(path.size() - 7, 7, "/api/v4") == 0) path.resize(path.size() - 7);
  e.prefix = path;
  return e;
}

Endpoint local_endpoint(const std::string& socket_path) {
  Endpoint e;
  e.local = true;
  e.socket_path = socket_path;
  return e;
}

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), name.size()) == 0) return v;
  return "";
}

HttpResponse http_request(const Endpoint& to, const std::string& method, const std::string& target,
                          const std::string& body, const std::string& token, ms timeout) {
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) throw CtlError(kExitUsage, "unknown HTTP method " + method);
  http::request<http::string_body> req{verb, to.prefix + target, 11};
  if (to.local) {
    req.set(http::field::host, "localhost");
  } else {
    const bool v6 = to.host.find(':') != std::string::npos;
    req.set(http::field::host, (v6 ? "[" + to.host + "]" : to.host) + (to.port == "80" ? "" : ":" + to.port));
  }
  req.set(http::field::user_agent, "chorusctl/" CHORUS_VERSION);
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty() || verb == http::verb::post || verb == http::verb::put) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();

  asio::io_context io;
  beast::error_code ec;
  if (to.local) {
    unix_socket::endpoint where;
    try {
      where = unix_socket::endpoint(to.socket_path);
    } catch (const std::exception& e) {
      throw CtlError(kExitUsage, "bad local socket path " + to.socket_path + ": " + e.what());
    }
    beast::basic_stream<unix_socket, asio::any_io_executor, beast::unlimited_rate_policy> stream(io);
    stream.expires_after(timeout);
    stream.async_connect(where, [&](beast::error_code e) { ec = e; });
    run(io);
    if (ec == beast::error::timeout)
      throw CtlError(kExitUnreachable, "no connection to " + to.describe() + " within " + seconds(timeout));
    if (ec)
      throw CtlError(kExitUnreachable, "cannot connect to " + to.describe() + ": " + ec.message() +
                                           " (is chorusd running on this machine with ServiceSettings.EnableLocalMode "
                                           "and this LocalModeSocketLocation? --local-socket-path sets the path)");
    return exchange(io, stream, to, req, timeout);
  }

  // The name lookup, bounded by a timer (getaddrinfo itself cannot be interrupted; numeric hosts skip it).
  tcp::resolver resolver(io);
  tcp::resolver::results_type addresses;
  asio::steady_timer timer(io, timeout);
  bool timed_out = false;
  resolver.async_resolve(to.host, to.port, [&](beast::error_code e, tcp::resolver::results_type r) {
    ec = e;
    addresses = std::move(r);
    timer.cancel();
  });
  timer.async_wait([&](beast::error_code e) {
    if (e) return;
    timed_out = true;
    resolver.cancel();
  });
  run(io);
  if (timed_out) throw CtlError(kExitUnreachable, "cannot resolve " + to.host + " within " + seconds(timeout));
  if (ec) throw CtlError(kExitUnreachable, "cannot resolve " + to.host + ": " + ec.message());
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  stream.async_connect(addresses, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  run(io);
  if (ec == beast::error::timeout)
    throw CtlError(kExitUnreachable, "no connection to " + to.describe() + " within " + seconds(timeout));
  if (ec) throw CtlError(kExitUnreachable, "cannot connect to " + to.describe() + ": " + ec.message());
  return exchange(io, stream, to, req, timeout);
}

std::string excerpt(const std::string& body, size_t n) {
  std::string out = body.substr(0, n);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (body.size() > n) out += "...";
  return out;
}

std::string url_escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

HttpResponse Client::raw(const std::string& method, const std::string& path, const std::string& body) const {
  return http_request(to_, method, "/api/v4" + path, body, token_, timeout_);
}

json::value Client::parse(const HttpResponse& r, const std::string& method, const std::string& path) const {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec)
    throw CtlError(kExitRefused, "the answer from " + to_.describe() + " to " + method + " /api/v4" + path + " (HTTP " +
                                     std::to_string(r.status) + ") is not JSON: \"" + excerpt(r.body) + "\"");
  return v;
}

json::value Client::call(const std::string& method, const std::string& path, const std::string& body) const {
  const HttpResponse r = raw(method, path, body);
  if (r.status < 200 || r.status > 299) throw server_error(r, to_);
  return parse(r, method, path);
}

std::string error_id(const HttpResponse& r) {
  boost::system::error_code ec;
  const json::value v = json::parse(r.body, ec);
  return ec ? "" : str_of(v, "id");
}

CtlError server_error(const HttpResponse& r, const Endpoint& from) {
  boost::system::error_code ec;
  const json::value v = json::parse(r.body, ec);
  const std::string message = ec ? "" : str_of(v, "message");
  if (message.empty()) {
    const std::string what = r.body.empty() ? "an empty body" : "\"" + excerpt(r.body) + "\"";
    return CtlError(kExitRefused, "HTTP " + std::to_string(r.status) + " from " + from.describe() + " with " + what);
  }
  std::string request_id = str_of(v, "request_id");
  if (request_id.empty()) request_id = r.header("X-Request-Id");
  std::string text = message + " (" + str_of(v, "id") + ", HTTP " + std::to_string(r.status) + ", request " +
                     (request_id.empty() ? "-" : request_id) + ")";
  std::string detail = str_of(v, "detailed_error");
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (!detail.empty()) {
    text += "\n  ";
    for (char c : detail) text += c == '\n' ? std::string("\n  ") : std::string(1, c);
  }
  return CtlError(kExitRefused, text);
}

std::string str_of(const json::value& v, std::string_view key) {
  const auto* o = v.if_object();
  if (!o) return "";
  const auto it = o->find(key);
  if (it == o->end() || !it->value().is_string()) return "";
  return std::string(it->value().get_string());
}

int64_t int_of(const json::value& v, std::string_view key) {
  const auto* o = v.if_object();
  if (!o) return 0;
  const auto it = o->find(key);
  if (it == o->end()) return 0;
  const json::value& x = it->value();
  if (x.is_int64()) return x.get_int64();
  if (x.is_uint64())
    return x.get_uint64() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(x.get_uint64());
  if (x.is_double() && std::isfinite(x.get_double()) && std::fabs(x.get_double()) < 9.2e18)
    return static_cast<int64_t>(x.get_double());
  return 0;
}

bool bool_of(const json::value& v, std::string_view key) {
  const auto* o = v.if_object();
  if (!o) return false;
  const auto it = o->find(key);
  return it != o->end() && it->value().is_bool() && it->value().get_bool();
}

}  // namespace chorus::ctl
