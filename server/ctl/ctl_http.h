// chorusctl's HTTP client: one synchronous HTTP/1.1 request per connection (Boost.Beast) to a node's API,
// over TCP (http://host:port) or over the node's local-mode unix socket; every step bounded by a timeout;
// the server's answers checked and turned into exit codes and messages (docs/chorusctl.md).
// No TLS: a node serves plain HTTP and TLS is NGINX's job in front of it.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

namespace chorus::ctl {

// chorusctl's exit codes (docs/chorusctl.md, and `chorusctl --help`).
enum ExitCode : int {
  kExitOk = 0,
  kExitRefused = 1,      // the server refused or failed the request
  kExitUsage = 2,        // bad usage or bad local input
  kExitUnreachable = 3,  // no connection to the server, or no answer in time
  kExitRed = 4,          // cluster status: a node is red
};

// What ends a command: the message (printed after "Error: ") and the exit code.
struct CtlError : std::runtime_error {
  CtlError(int exit_code, const std::string& message) : std::runtime_error(message), code(exit_code) {}
  int code;
};

// Where requests go: a node's http://host:port[/prefix], or its local-mode unix socket.
struct Endpoint {
  bool local = false;
  std::string host;              // TCP: a name, an IPv4 address, or an IPv6 address without brackets
  std::string port;              // TCP: "80" unless the URL says
  std::string prefix;            // TCP: the path before /api/v4 ("" or "/chat"), no trailing slash
  std::string socket_path;       // local mode
  std::string url() const;       // "http://127.0.0.1:8065" (with the prefix); "" in local mode
  std::string describe() const;  // url(), or "the local socket /var/tmp/mattermost_local.socket"
};

// "http://host[:port][/prefix]" ("host:port" alone means http). https:// and malformed URLs throw
// CtlError(kExitUsage) saying why. A trailing "/" or "/api/v4" is dropped.
Endpoint parse_url(const std::string& url);
Endpoint local_endpoint(const std::string& socket_path);

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string header(std::string_view name) const;  // "" when absent; the name in any case
};

// One request (Connection: close). Connecting (with the name lookup) and then the exchange (sending the
// request and reading the whole answer) are each bounded by `timeout`. Throws CtlError: kExitUnreachable
// when there is no connection or no answer in time (the message names the address), kExitRefused when
// what came back is not HTTP or is over 64 MiB. `body` goes as application/json when not empty.
HttpResponse http_request(const Endpoint& to, const std::string& method, const std::string& target,
                          const std::string& body, const std::string& token, std::chrono::milliseconds timeout);

// The first `n` bytes of a body for a message, control characters shown as spaces.
std::string excerpt(const std::string& body, size_t n = 200);

// A percent-encoded path segment or query value (RFC 3986 unreserved characters kept).
std::string url_escape(std::string_view s);

// A client bound to one endpoint and token: requests under /api/v4 whose answers are checked.
class Client {
 public:
  Client(Endpoint to, std::string token, std::chrono::milliseconds timeout)
      : to_(std::move(to)), token_(std::move(token)), timeout_(timeout) {}

  // The raw exchange; `path` is under /api/v4 ("/system/ping").
  HttpResponse raw(const std::string& method, const std::string& path, const std::string& body = "") const;
  // A 2xx answer's JSON body. Otherwise throws the server's error (server_error), or CtlError(kExitRefused)
  // when a 2xx body is not JSON (its first 200 bytes shown).
  boost::json::value call(const std::string& method, const std::string& path, const std::string& body = "") const;
  // The body of a 2xx answer parsed as JSON, or CtlError(kExitRefused) with an excerpt.
  boost::json::value parse(const HttpResponse& r, const std::string& method, const std::string& path) const;

  const Endpoint& endpoint() const { return to_; }

 private:
  Endpoint to_;
  std::string token_;
  std::chrono::milliseconds timeout_;
};

// The error of an answer that is not 2xx, for "Error: <message>": "<message> (<id>, HTTP <status>, request
// <request_id>)" and, on the next lines, the detailed error when there is one. A body that is not
// Mattermost's error shape is shown as an excerpt. Always exit code kExitRefused.
CtlError server_error(const HttpResponse& r, const Endpoint& from);
// The error id of a non-2xx answer ("" when the body is not Mattermost's error shape).
std::string error_id(const HttpResponse& r);

// Fields of an answer, read without trusting their types: a missing or mistyped field is "" / 0 / false.
std::string str_of(const boost::json::value& v, std::string_view key);
int64_t int_of(const boost::json::value& v, std::string_view key);
bool bool_of(const boost::json::value& v, std::string_view key);

}  // namespace chorus::ctl
