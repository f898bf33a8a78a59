#include "server/core/data_source.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace chorus::db {

const char* to_string(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::unavailable:
      return "unavailable";
    case Status::overloaded:
      return "overloaded";
    case Status::timeout:
      return "timeout";
    case Status::conflict:
      return "conflict";
    case Status::read_only:
      return "read_only";
    case Status::auth_failed:
      return "auth_failed";
    case Status::bad_request:
      return "bad_request";
  }
  return "?";
}

std::string to_string(const Value& v) {
  struct V {
    std::string operator()(Null) const { return "NULL"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(const std::string& s) const { return "'" + s + "'"; }
  };
  return std::visit(V{}, v);
}

namespace {

bool percent_decode(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2])))
      return false;
    out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
    i += 2;
  }
  return true;
}

ParsedDataSource fail(std::string message) { return ParsedDataSource{Failure{std::move(message)}}; }

ParsedDataSource parse_postgres(const std::string& text) {
  DataSource ds;
  ds.dialect = Dialect::postgres;
  ds.text = text;
  std::string rest;
  for (const char* scheme : {"postgres://", "postgresql://"})
    if (text.rfind(scheme, 0) == 0) rest = text.substr(std::string(scheme).size());
  if (rest.empty() && text.find("://") == std::string::npos)
    return fail(
        "expected a URL such as postgres://user:password@host:5432/database?sslmode=disable, got something without a "
        "scheme");
  if (rest.empty())
    return fail(fmt::format("expected the scheme postgres:// or postgresql://, got \"{}\"",
                            text.substr(0, text.find("://") + 3)));

  // Split off the query.
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  // user:password@ ends at the last '@' (a password may hold '@' or '/'); then host:port/database.
  // Nothing from the user information is ever quoted in an error.
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (!percent_decode(userinfo.substr(0, colon), ds.user) ||
        (colon != std::string::npos && !percent_decode(userinfo.substr(colon + 1), ds.password)))
      return fail("the user name or password has a bad percent-encoding");
  }
  std::string authority = rest, path;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    authority = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  std::string host = authority;
  std::optional<std::string> port;
  if (!authority.empty() && authority.front() == '[') {  // [ipv6]:port
    const auto close = authority.find(']');
    if (close == std::string::npos) return fail("an IPv6 host is missing its closing ']'");
    host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') return fail("expected ':' and a port after the IPv6 host");
    if (!after.empty()) port = after.substr(1);
  } else if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (port) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port->data(), port->data() + port->size(), p);
    if (port->empty() || ec != std::errc() || ptr != port->data() + port->size() || p < 1 || p > 65535)
      return fail(fmt::format("the port \"{}\" is not a number from 1 to 65535", *port));
    ds.port = p;
  }
  ds.host = host.empty() ? "localhost" : host;
  if (!percent_decode(path, ds.database)) return fail("the database name has a bad percent-encoding");
  if (ds.database.empty()) return fail("no database name: expected postgres://host:port/DATABASE");
  // Query parameters.
  size_t pos = 0;
  while (pos < query.size()) {
    const auto amp = query.find('&', pos);
    const std::string pair = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    pos = amp == std::string::npos ? query.size() : amp + 1;
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    // Option values may be secrets (sslpassword): errors name the key only.
    if (eq == std::string::npos || eq == 0) return fail("an option after '?' is not key=value");
    std::string value;
    if (!percent_decode(pair.substr(eq + 1), value))
      return fail(fmt::format("the option {} has a bad percent-encoding", pair.substr(0, eq)));
    ds.options[pair.substr(0, eq)] = value;
  }
  if (auto it = ds.options.find("connect_timeout"); it != ds.options.end()) {
    int t = 0;
    auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), t);
    if (ec != std::errc() || ptr != it->second.data() + it->second.size() || t < 0)
      return fail(fmt::format("connect_timeout \"{}\" is not a number of seconds", it->second));
  }
  if (auto it = ds.options.find("sslmode"); it != ds.options.end()) {
    static const char* modes[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
    bool known = false;
    for (const char* m : modes) known |= it->second == m;
    if (!known)
      return fail(fmt::format("sslmode \"{}\" is not one of disable, allow, prefer, require, verify-ca, verify-full",
                              it->second));
  }
  return ParsedDataSource{{}, std::move(ds)};
}

ParsedDataSource parse_sqlite(const std::string& text) {
  DataSource ds;
  ds.dialect = Dialect::sqlite;
  ds.text = text;
  std::string path = text;
  if (path.rfind("file:", 0) == 0) {
    path = path.substr(5);
    if (auto q = path.find('?'); q != std::string::npos) path = path.substr(0, q);
  }
  if (path.find("://") != std::string::npos)
    return fail(
        "this looks like a URL, but DriverName is sqlite3, which takes a file path (set DriverName to postgres for a "
        "PostgreSQL URL)");
  if (path.empty()) return fail("no file path given");
  if (path == ":memory:" || text.find("mode=memory") != std::string::npos)
    return fail(
        "an in-memory SQLite database cannot be shared by a node's connections or by several nodes: give a file path");
  ds.path = path;
  return ParsedDataSource{{}, std::move(ds)};
}

}  // namespace

ParsedDataSource parse_data_source(const std::string& driver, const std::string& text) {
  if (driver == "postgres") return parse_postgres(text);
  if (driver == "sqlite3") return parse_sqlite(text);
  return fail(fmt::format("the driver \"{}\" is not supported: expected \"sqlite3\" or \"postgres\"", driver));
}

std::string DataSource::redacted() const {
  if (dialect != Dialect::postgres) return text;
  // Rebuilt from the parsed parts, so no secret survives whatever the original looked like.
  std::string out = "postgres://";
  if (!user.empty() || !password.empty()) out += user + (password.empty() ? "" : ":****") + "@";
  out += (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" + database;
  char sep = '?';
  for (const auto& [k, v] : options) {
    const bool secret = k.find("password") != std::string::npos;
    out += sep + k + "=" + (secret ? "****" : v);
    sep = '&';
  }
  return out;
}

std::string DataSource::server_name() const {
  if (dialect == Dialect::sqlite) return path;
  return fmt::format("{}:{}/{}", host, port, database);
}

}  // namespace chorus::db
