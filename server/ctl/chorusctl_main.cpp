// chorusctl: the admin command line for Chorus, shaped like Mattermost's mmctl, over the API v4
// (docs/chorusctl.md). It talks to one node: over HTTP with the credentials stored by `auth login`, or in
// local mode over the node's unix socket (no login: the node treats the socket as a system admin).
// The HTTP client is in ctl_http.cpp; this file is the command line, the credentials file and the output.
// It is over 700 lines because every command's arguments, requests and output are kept together here, one
// function per command, as chorus-sim's main does for its subcommands.
#include <fcntl.h>
#include <pwd.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "server/ctl/ctl_http.h"

#ifndef CHORUS_VERSION
#define CHORUS_VERSION "0.1.0"
#endif

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace chorus::ctl;

constexpr const char* kDefaultSocket = "/var/tmp/mattermost_local.socket";
constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0  success\n"
    "  1  the server refused or failed the request (its message is printed)\n"
    "  2  bad usage or bad local input: unknown command, missing flag, unreadable file, a value that does not\n"
    "     convert, no stored credentials\n"
    "  3  cannot reach the server: connection refused, no local socket, no answer within --timeout\n"
    "  4  cluster status: at least one node is red\n"
    "See docs/chorusctl.md.";

// --- global options and the connection they lead to

struct Globals {
  bool json = false;
  bool local = false;
  std::string socket_path;
  std::string config_path;
  double timeout_s = 30;
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(std::llround(timeout_s * 1000)));
  }
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool env_true(const char* name) {
  std::string v = env(name);
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return v == "true" || v == "1" || v == "yes" || v == "on";
}

std::string default_config_path() {
  if (const std::string xdg = env("XDG_CONFIG_HOME"); !xdg.empty()) return xdg + "/chorusctl/config";
  std::string home = env("HOME");
  if (home.empty())
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  return home + "/.config/chorusctl/config";
}

// --- the credentials file: {"current": name, "credentials": {name: {"url", "username", "token"}}}

struct Credential {
  std::string url, username, token;
};
struct Credentials {
  std::string current;
  std::map<std::string, Credential> by_name;
};

Credentials load_credentials(const std::string& path) {
  Credentials c;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return c;
    throw CtlError(kExitUsage, "cannot read the credentials file " + path + ": " + std::strerror(errno));
  }
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  boost::system::error_code ec;
  const json::value v = json::parse(text, ec);
  const auto bad = [&](const std::string& why) {
    return CtlError(kExitUsage, "the credentials file " + path + " is not valid (" + why +
                                    "): fix it, or remove it and run chorusctl auth login");
  };
  if (ec || !v.is_object()) throw bad(ec ? ec.message() : "not a JSON object");
  c.current = str_of(v, "current");
  if (const auto* creds = v.as_object().if_contains("credentials")) {
    if (!creds->is_object()) throw bad("\"credentials\" is not an object");
    for (const auto& [name, entry] : creds->get_object()) {
      if (!entry.is_object()) throw bad("the entry \"" + std::string(name) + "\" is not an object");
      c.by_name[std::string(name)] = {str_of(entry, "url"), str_of(entry, "username"), str_of(entry, "token")};
    }
  }
  return c;
}

// Written whole to a temporary file (mode 0600) and renamed over the old one.
void save_credentials(const std::string& path, const Credentials& c) {
  json::object creds;
  for (const auto& [name, e] : c.by_name)
    creds[name] = json::object{{"url", e.url}, {"username", e.username}, {"token", e.token}};
  const std::string text = json::serialize(json::object{{"current", c.current}, {"credentials", creds}}) + "\n";
  const fs::path target(path);
  std::error_code fec;
  if (target.has_parent_path() && !fs::exists(target.parent_path(), fec)) {
    fs::create_directories(target.parent_path(), fec);
    if (fec) throw CtlError(kExitUsage, "cannot create " + target.parent_path().string() + ": " + fec.message());
    ::chmod(target.parent_path().c_str(), 0700);
  }
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw CtlError(kExitUsage, "cannot write the credentials file " + tmp + ": " + std::strerror(errno));
  bool ok = ::fchmod(fd, 0600) == 0;
  for (size_t done = 0; ok && done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  const int saved_errno = errno;
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(ok ? errno : saved_errno);
    ::unlink(tmp.c_str());
    throw CtlError(kExitUsage, "cannot write the credentials file " + path + ": " + why);
  }
}

// The client for a command: local mode, or the current stored credentials.
Client connect(const Globals& g) {
  if (g.local) return Client(local_endpoint(g.socket_path), "", g.timeout());
  const Credentials c = load_credentials(g.config_path);
  const auto it = c.by_name.find(c.current);
  if (it == c.by_name.end())
    throw CtlError(kExitUsage, "no credentials stored in " + g.config_path +
                                   ": run chorusctl auth login first (or --local on the node's machine)");
  return Client(parse_url(it->second.url), it->second.token, g.timeout());
}

// --- output

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

void pretty(std::ostream& os, const json::value& v, int indent = 0) {
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  if (const auto* o = v.if_object()) {
    if (o->empty()) {
      os << "{}";
      return;
    }
    os << "{\n";
    size_t i = 0;
    for (const auto& [k, x] : *o) {
      os << pad << json::serialize(json::string(k)) << ": ";
      pretty(os, x, indent + 2);
      os << (++i < o->size() ? ",\n" : "\n");
    }
    os << std::string(static_cast<size_t>(indent), ' ') << "}";
  } else if (const auto* a = v.if_array()) {
    if (a->empty()) {
      os << "[]";
      return;
    }
    os << "[\n";
    for (size_t i = 0; i < a->size(); ++i) {
      os << pad;
      pretty(os, (*a)[i], indent + 2);
      os << (i + 1 < a->size() ? ",\n" : "\n");
    }
    os << std::string(static_cast<size_t>(indent), ' ') << "]";
  } else {
    os << json::serialize(v);
  }
}

// Columns padded to their widest cell, two spaces apart.
void print_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t i = 0; i < cells.size(); ++i) {
      s += cells[i];
      if (i + 1 < cells.size()) s += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    std::cout << s << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
}

// Milliseconds since the epoch as UTC "2026-01-31 12:00:00Z"; "-" for 0.
std::string utc(int64_t ms) {
  if (ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "3s ago", "5m ago", "2h ago", "4d ago"; "never" for 0.
std::string ago(int64_t ms) {
  if (ms <= 0) return "never";
  const int64_t s = std::max<int64_t>(0, (now_ms() - ms) / 1000);
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  if (s < 172800) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

const json::array& as_array(const json::value& v, const Client& c, const std::string& what) {
  if (!v.is_array())
    throw CtlError(kExitRefused, "the answer from " + c.endpoint().describe() + " to " + what + " is not a list: \"" +
                                     excerpt(json::serialize(v)) + "\"");
  return v.get_array();
}

bool looks_like_id(const std::string& s) {
  if (s.size() != 26) return false;
  for (char c : s)
    if (!std::islower(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// The id of an object the server answered (a user, a team); an answer without one is the server's fault.
std::string id_of(const json::value& v, const Client& c, const std::string& what) {
  std::string id = str_of(v, "id");
  if (id.empty())
    throw CtlError(kExitRefused, "the answer from " + c.endpoint().describe() + " for " + what + " has no id: \"" +
                                     excerpt(json::serialize(v)) + "\"");
  return id;
}

// Every page of a list route (page=0,1,... until an empty page; at most 1000 pages).
json::array all_pages(const Client& c, const std::string& path, int per_page) {
  json::array all;
  const char sep = path.find('?') == std::string::npos ? '?' : '&';
  for (int page = 0; page < 1000; ++page) {
    const std::string p = path + sep + "page=" + std::to_string(page) + "&per_page=" + std::to_string(per_page);
    const json::value v = c.call("GET", p);
    const auto& a = as_array(v, c, "GET /api/v4" + p);
    if (a.empty()) break;
    for (const auto& x : a) all.push_back(x);
  }
  return all;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw CtlError(kExitUsage, std::string("cannot read the ") + what + " " + path + ": " + std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) throw CtlError(kExitUsage, std::string("cannot read the ") + what + " " + path);
  return text;
}

// A password typed at the terminal, without echo.
std::string prompt_password() {
  if (!::isatty(0)) throw CtlError(kExitUsage, "give --password or --password-file (stdin is not a terminal)");
  std::cerr << "Password: " << std::flush;
  termios old{};
  const bool tty = ::tcgetattr(0, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(0, TCSAFLUSH, &quiet);
  }
  std::string password;
  std::getline(std::cin, password);
  if (tty) ::tcsetattr(0, TCSAFLUSH, &old);
  std::cerr << "\n";
  return password;
}

// --- auth

struct LoginArgs {
  std::string url, name, username, password, password_file, access_token;
};

int auth_login(const Globals& g, const LoginArgs& a) {
  const Endpoint to = parse_url(a.url);
  if (a.access_token.empty() && a.username.empty())
    throw CtlError(kExitUsage, "auth login needs --username (with --password or --password-file) or --access-token");
  if (a.name.empty()) throw CtlError(kExitUsage, "auth login needs --name, the name to store the credentials under");
  Credential cred{to.url(), a.username, a.access_token};
  if (!a.access_token.empty()) {
    const Client c(to, a.access_token, g.timeout());
    const json::value me = c.call("GET", "/users/me");
    cred.username = str_of(me, "username");
  } else {
    std::string password;
    if (!a.password_file.empty()) {
      password = read_file(a.password_file, "password file");
      while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
    } else if (!a.password.empty()) {
      password = a.password;
    } else {
      password = prompt_password();
    }
    const Client c(to, "", g.timeout());
    const std::string body = json::serialize(json::object{{"login_id", a.username}, {"password", password}});
    const HttpResponse r = c.raw("POST", "/users/login", body);
    if (r.status != 200) throw server_error(r, to);
    cred.token = r.header("Token");
    if (cred.token.empty())
      throw CtlError(kExitRefused, to.describe() + " accepted the login but sent no Token header");
    if (const std::string u = str_of(c.parse(r, "POST", "/users/login"), "username"); !u.empty()) cred.username = u;
  }
  Credentials all = load_credentials(g.config_path);
  all.by_name[a.name] = cred;
  all.current = a.name;
  save_credentials(g.config_path, all);
  if (g.json)
    print_json(json::object{{"name", a.name}, {"url", cred.url}, {"username", cred.username}});
  else
    std::cout << "Logged in to " << cred.url << " as " << cred.username << "; credentials stored as \"" << a.name
              << "\" in " << g.config_path << "\n";
  return kExitOk;
}

int auth_current(const Globals& g) {
  const Credentials c = load_credentials(g.config_path);
  const auto it = c.by_name.find(c.current);
  if (it == c.by_name.end())
    throw CtlError(kExitUsage, "no current credentials in " + g.config_path + ": run chorusctl auth login first");
  if (g.json)
    print_json(json::object{{"name", it->first}, {"url", it->second.url}, {"username", it->second.username}});
  else
    std::cout << "Found credentials for connection \"" << it->first << "\" as user \"" << it->second.username
              << "\" at \"" << it->second.url << "\"\n";
  return kExitOk;
}

int auth_list(const Globals& g) {
  const Credentials c = load_credentials(g.config_path);
  if (g.json) {
    json::array a;
    for (const auto& [name, e] : c.by_name)
      a.push_back(
          json::object{{"name", name}, {"url", e.url}, {"username", e.username}, {"current", name == c.current}});
    print_json(a);
    return kExitOk;
  }
  if (c.by_name.empty()) {
    std::cout << "No credentials stored in " << g.config_path << ": run chorusctl auth login\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& [name, e] : c.by_name) rows.push_back({name == c.current ? "*" : "", name, e.username, e.url});
  print_table({"CURRENT", "NAME", "USERNAME", "URL"}, rows);
  return kExitOk;
}

int auth_set(const Globals& g, const std::string& name) {
  Credentials c = load_credentials(g.config_path);
  if (!c.by_name.contains(name))
    throw CtlError(kExitUsage, "no credentials named \"" + name + "\" in " + g.config_path + " (chorusctl auth list)");
  c.current = name;
  save_credentials(g.config_path, c);
  if (g.json)
    print_json(json::object{{"current", name}});
  else
    std::cout << "Current credentials: \"" << name << "\"\n";
  return kExitOk;
}

// Revokes the session on the server, then forgets it here whatever the server said (a session the server
// no longer knows is already logged out); the exit code says whether the server revoked it.
int auth_logout(const Globals& g) {
  Credentials c = load_credentials(g.config_path);
  const auto it = c.by_name.find(c.current);
  if (it == c.by_name.end())
    throw CtlError(kExitUsage, "no current credentials in " + g.config_path + ": nothing to log out of");
  const Credential cred = it->second;
  const std::string name = it->first;
  c.by_name.erase(it);
  c.current = c.by_name.empty() ? "" : c.by_name.begin()->first;
  std::optional<CtlError> failed;
  try {
    const Client client(parse_url(cred.url), cred.token, g.timeout());
    const HttpResponse r = client.raw("POST", "/users/logout");
    if (r.status != 200 && r.status != 401) failed = server_error(r, client.endpoint());
  } catch (const CtlError& e) {
    failed = e;
  }
  save_credentials(g.config_path, c);
  if (failed)
    throw CtlError(failed->code, std::string(failed->what()) + "\n  The credentials \"" + name +
                                     "\" were forgotten here, but the server did not revoke the session.");
  if (g.json)
    print_json(json::object{{"name", name}, {"url", cred.url}, {"logged_out", true}});
  else
    std::cout << "Logged out of " << cred.url << " (\"" << name << "\")\n";
  return kExitOk;
}

// --- system, cluster, database

int system_status(const Globals& g) {
  const Client c = connect(g);
  const HttpResponse r = c.raw("GET", "/system/ping?get_server_status=true");
  // 500 with the same body when a check failed: still the statuses to show.
  if (r.status != 200 && r.status != 500) throw server_error(r, c.endpoint());
  const json::value v = c.parse(r, "GET", "/system/ping");
  if (str_of(v, "status").empty()) {
    if (r.status == 500) throw server_error(r, c.endpoint());
    throw CtlError(kExitRefused, "the answer from " + c.endpoint().describe() +
                                     " to GET /api/v4/system/ping has no status: \"" + excerpt(r.body) + "\"");
  }
  if (g.json) {
    print_json(v);
  } else {
    std::cout << "Server status: " << str_of(v, "status") << "\n";
    std::cout << "Database status: " << str_of(v, "database_status") << "\n";
    std::cout << "Filestore status: " << str_of(v, "filestore_status") << "\n";
    if (const std::string cut = str_of(v, "cluster_status"); !cut.empty()) std::cout << "Cluster: " << cut << "\n";
  }
  if (str_of(v, "status") != "OK")
    throw CtlError(kExitRefused, c.endpoint().describe() + " is unhealthy (HTTP " + std::to_string(r.status) +
                                     "): the node's log says why");
  return kExitOk;
}

int system_version(const Globals& g) {
  const Client c = connect(g);
  const HttpResponse r = c.raw("GET", "/system/ping");
  if (r.status != 200 && r.status != 500) throw server_error(r, c.endpoint());
  const json::value ping = c.parse(r, "GET", "/system/ping");
  const std::string version = r.header("X-Version-Id");  // <api version>.<build number>.<config hash>.<licensed>
  std::vector<std::string> parts;
  for (size_t at = 0; at <= version.size();) {
    const size_t dot = std::min(version.find('.', at), version.size());
    parts.push_back(version.substr(at, dot - at));
    at = dot + 1;
  }
  const std::string api = parts.size() >= 3 ? parts[0] + "." + parts[1] + "." + parts[2] : "";
  const std::string build = parts.size() >= 4 ? parts[3] : "";
  if (g.json) {
    print_json(json::object{{"version", version}, {"api_version", api}, {"build_number", build}, {"ping", ping}});
    return kExitOk;
  }
  std::cout << "Server version: " << (version.empty() ? "unknown (no X-Version-Id header)" : version) << "\n";
  if (!api.empty()) std::cout << "Mattermost API: " << api << "\nBuild number: " << build << "\n";
  if (const auto* o = ping.if_object())
    for (const auto& [k, x] : *o)
      std::cout << std::string(k) << ": " << (x.is_string() ? std::string(x.get_string()) : json::serialize(x)) << "\n";
  return kExitOk;
}

int cluster_status(const Globals& g) {
  const Client c = connect(g);
  const json::value v = c.call("GET", "/cluster/status");
  const auto& rows = as_array(v, c, "GET /api/v4/cluster/status");
  bool red = false, unknown = false;
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> restarts;
  for (const auto& row : rows) {
    const std::string status = str_of(row, "status"), reason = str_of(row, "reason"), state = str_of(row, "state");
    red = red || status == "red";
    unknown = unknown || (status != "green" && status != "red");
    const std::string hash = str_of(row, "config_hash");
    const auto* o = row.if_object();
    const json::value* leader = o ? o->if_contains("leader") : nullptr;
    table.push_back({str_of(row, "id"), str_of(row, "hostname"), status.empty() ? "?" : status,
                     reason.empty() ? "-" : reason, str_of(row, "version"), hash.substr(0, 12),
                     state == "self"                         ? "self"
                     : state == "suspect" || state == "dead" ? ago(int_of(row, "last_seen")) + " (" + state + ")"
                                                             : ago(int_of(row, "last_seen")),
                     leader && leader->is_bool() ? (leader->get_bool() ? "yes" : "") : "?"});
    if (const json::value* rr = o ? o->if_contains("restart_required") : nullptr; rr && rr->is_array()) {
      std::string names;
      for (const auto& n : rr->get_array())
        if (n.is_string()) names += (names.empty() ? "" : ", ") + std::string(n.get_string());
      if (!names.empty()) restarts.push_back(str_of(row, "id") + " needs a restart for " + names);
    }
  }
  if (g.json) {
    print_json(v);
  } else if (rows.empty()) {
    std::cout << "No cluster status: high availability is off on this node (ClusterSettings.Enable)\n";
  } else {
    print_table({"NODE", "HOSTNAME", "STATUS", "REASON", "VERSION", "CONFIG", "LAST SEEN", "LEADER"}, table);
    for (const auto& r : restarts) std::cout << r << "\n";
  }
  if (red) return kExitRed;
  if (unknown)
    throw CtlError(kExitRefused,
                   "the server does not say whether its nodes are green (no \"status\" in the rows): "
                   "an older chorusd?");
  return kExitOk;
}

// GET /system/support_packet: a tar of the node's masked config, statuses, log tail and metrics.
int system_supportpacket(const Globals& g, std::string out) {
  const Client c = connect(g);
  const HttpResponse r = c.raw("GET", "/system/support_packet");
  if (r.status < 200 || r.status > 299) throw server_error(r, c.endpoint());
  if (out.empty()) out = "chorus-support-" + std::to_string(now_ms()) + ".tar";
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  if (!f || !f.write(r.body.data(), static_cast<std::streamsize>(r.body.size())) || !f.flush())
    throw CtlError(kExitUsage, "cannot write " + out);
  if (g.json)
    print_json(json::object{{"file", out}, {"bytes", r.body.size()}});
  else
    std::cout << "Support packet written to " << out << " (" << r.body.size() << " bytes; tar xf to open)\n";
  return kExitOk;
}

int db_recycle(const Globals& g) {
  const Client c = connect(g);
  const json::value v = c.call("POST", "/database/recycle");
  if (g.json)
    print_json(v);
  else
    std::cout << "Database connections recycled\n";
  return kExitOk;
}

// --- config

// "Section.Setting" (a whole section too when `min_parts` is 1) as its parts.
std::vector<std::string> setting_path(const std::string& key, size_t min_parts = 2) {
  std::vector<std::string> parts;
  for (size_t at = 0; at <= key.size();) {
    const size_t dot = std::min(key.find('.', at), key.size());
    parts.push_back(key.substr(at, dot - at));
    at = dot + 1;
  }
  for (const auto& p : parts)
    if (p.empty() || parts.size() < min_parts)
      throw CtlError(kExitUsage,
                     "\"" + key + "\" is not a setting: give Section.Setting, e.g. SqlSettings.MaxOpenConns");
  return parts;
}

// The value at Section.Setting in a config, or nullptr.
const json::value* find_setting(const json::value& config, const std::vector<std::string>& path) {
  const json::value* at = &config;
  for (const auto& p : path) {
    const auto* o = at->if_object();
    if (!o || !(at = o->if_contains(p))) return nullptr;
  }
  return at;
}

const json::value& get_setting(const json::value& config, const std::string& key, size_t min_parts = 2) {
  const json::value* v = find_setting(config, setting_path(key, min_parts));
  if (!v) throw CtlError(kExitUsage, "unknown setting " + key + ": the server's config has no such setting");
  return *v;
}

// VALUE(s) as the type `current` has: bool, integer, number, string, or a list of strings.
json::value convert(const std::string& key, const json::value& current, const std::vector<std::string>& values) {
  const auto one = [&](const char* type) -> const std::string& {
    if (values.size() != 1)
      throw CtlError(kExitUsage, key + " is " + type + ": give one value, not " + std::to_string(values.size()));
    return values[0];
  };
  const auto wrong = [&](const char* type) {
    return CtlError(kExitUsage, key + " is " + type + ": \"" + values[0] + "\" is not one; nothing was changed");
  };
  if (current.is_bool()) {
    std::string v = one("a boolean (true or false)");
    for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (v == "true" || v == "1") return true;
    if (v == "false" || v == "0") return false;
    throw wrong("a boolean (true or false)");
  }
  if (current.is_int64() || current.is_uint64()) {
    const std::string& v = one("an integer");
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size()) throw wrong("an integer");
    return n;
  }
  if (current.is_double()) {
    const std::string& v = one("a number");
    char* end = nullptr;
    errno = 0;
    const double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(d)) throw wrong("a number");
    return d;
  }
  if (current.is_string()) return json::string(one("a string"));
  if (current.is_array()) {
    for (const auto& x : current.get_array())
      if (!x.is_string())
        throw CtlError(kExitUsage, key + " is a list of non-strings: use chorusctl config patch FILE");
    json::array a;
    for (const auto& v : values) a.emplace_back(json::string(v));
    return a;
  }
  throw CtlError(kExitUsage,
                 key + " is " + (current.is_object() ? "an object" : "null") + ": use chorusctl config patch FILE");
}

int config_get(const Globals& g, const std::string& key) {
  const Client c = connect(g);
  const json::value config = c.call("GET", "/config");
  const json::value& v = get_setting(config, key, 1);
  if (g.json) {
    print_json(v);
  } else if (v.is_object()) {
    pretty(std::cout, v);
    std::cout << "\n";
  } else if (v.is_string()) {
    std::cout << std::string_view(v.get_string()) << "\n";  // unquoted (json::string's << would quote it)
  } else {
    print_json(v);
  }
  return kExitOk;
}

int config_show(const Globals& g) {
  const Client c = connect(g);
  const json::value v = c.call("GET", "/config");
  if (g.json) {
    print_json(v);
  } else {
    pretty(std::cout, v);
    std::cout << "\n";
  }
  return kExitOk;
}

int config_set(const Globals& g, const std::string& key, const std::vector<std::string>& values) {
  const std::vector<std::string> path = setting_path(key);
  const Client c = connect(g);
  const json::value before = c.call("GET", "/config");
  const json::value value = convert(key, get_setting(before, key), values);
  json::value patch = value;
  for (auto it = path.rbegin(); it != path.rend(); ++it) patch = json::object{{*it, patch}};
  const json::value after = c.call("PUT", "/config/patch", json::serialize(patch));
  const json::value* now = find_setting(after, path);
  // A secret comes back masked ("****..."): nothing to compare.
  const auto masked = [](const json::value& v) {
    const auto star = [](const json::value& x) {
      return x.is_string() && !x.get_string().empty() && x.get_string().find_first_not_of('*') == json::string::npos;
    };
    if (const auto* a = v.if_array()) return !a->empty() && std::all_of(a->begin(), a->end(), star);
    return star(v);
  };
  if (now && *now != value && !masked(*now))
    std::cerr << "Note: the node now reports " << key << " = " << json::serialize(*now)
              << " (an MM_ environment variable may override the file)\n";
  if (g.json)
    print_json(after);
  else
    std::cout << key << " set to " << json::serialize(value) << "\n";
  return kExitOk;
}

int config_patch(const Globals& g, const std::string& file) {
  const std::string text = read_file(file, "config patch file");
  boost::system::error_code ec;
  const json::value patch = json::parse(text, ec);
  if (ec || !patch.is_object())
    throw CtlError(kExitUsage, file + " is not a JSON object of config sections" + (ec ? ": " + ec.message() : ""));
  const Client c = connect(g);
  const json::value after = c.call("PUT", "/config/patch", json::serialize(patch));
  if (g.json)
    print_json(after);
  else
    std::cout << "Config patched from " << file << "\n";
  return kExitOk;
}

int config_reload(const Globals& g) {
  const Client c = connect(g);
  const json::value v = c.call("POST", "/config/reload");
  if (g.json)
    print_json(v);
  else
    std::cout << "Config reloaded from the node's config.json\n";
  return kExitOk;
}

// --- jobs

struct JobArgs {
  std::string type, id;
  int page = 0, per_page = 200;
  std::vector<std::string> data;
};

int job_list(const Globals& g, const JobArgs& a) {
  const Client c = connect(g);
  const std::string path = (a.type.empty() ? "/jobs" : "/jobs/type/" + url_escape(a.type)) +
                           "?page=" + std::to_string(a.page) + "&per_page=" + std::to_string(a.per_page);
  const json::value v = c.call("GET", path);
  const auto& jobs = as_array(v, c, "GET /api/v4" + path);
  if (g.json) {
    print_json(v);
    return kExitOk;
  }
  if (jobs.empty()) {
    std::cout << "No jobs\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& j : jobs)
    rows.push_back({str_of(j, "id"), str_of(j, "type"), str_of(j, "status"),
                    std::to_string(int_of(j, "progress")) + "%", utc(int_of(j, "create_at")),
                    utc(int_of(j, "last_activity_at"))});
  print_table({"ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "LAST ACTIVITY"}, rows);
  return kExitOk;
}

int job_create(const Globals& g, const JobArgs& a) {
  json::object data;
  for (const auto& kv : a.data) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw CtlError(kExitUsage, "--data takes KEY=VALUE (got \"" + kv + "\")");
    data[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  json::object body{{"type", a.type}};
  if (!data.empty()) body["data"] = data;
  const Client c = connect(g);
  const json::value job = c.call("POST", "/jobs", json::serialize(body));
  if (g.json)
    print_json(job);
  else
    std::cout << "Created job " << str_of(job, "id") << " (" << str_of(job, "type") << ", " << str_of(job, "status")
              << ")\n";
  return kExitOk;
}

int job_cancel(const Globals& g, const JobArgs& a) {
  const Client c = connect(g);
  const json::value v = c.call("POST", "/jobs/" + url_escape(a.id) + "/cancel");
  if (g.json)
    print_json(v);
  else
    std::cout << "Cancelled job " << a.id << "\n";
  return kExitOk;
}

// --- users, teams, channels

// A user by email, username or id, as mmctl looks them up.
json::value find_user(const Client& c, const std::string& who) {
  if (who.find('@') != std::string::npos) {
    const HttpResponse r = c.raw("GET", "/users/email/" + url_escape(who));
    if (r.status == 200) return c.parse(r, "GET", "/users/email/...");
    if (r.status != 404) throw server_error(r, c.endpoint());
    if (error_id(r) == "api.context.404.app_error") {  // no such route on this server: search by the email
      const json::value found =
          c.call("POST", "/users/search", json::serialize(json::object{{"term", who}, {"limit", 100}}));
      if (const auto* a = found.if_array())
        for (const auto& u : *a)
          if (strcasecmp(str_of(u, "email").c_str(), who.c_str()) == 0) return u;
    }
    throw CtlError(kExitRefused, "no user with the email " + who);
  }
  const HttpResponse r = c.raw("GET", "/users/username/" + url_escape(who));
  if (r.status == 200) return c.parse(r, "GET", "/users/username/...");
  if (r.status != 404) throw server_error(r, c.endpoint());
  if (looks_like_id(who)) {
    const HttpResponse by_id = c.raw("GET", "/users/" + who);
    if (by_id.status == 200) return c.parse(by_id, "GET", "/users/...");
    if (by_id.status != 404) throw server_error(by_id, c.endpoint());
  }
  throw CtlError(kExitRefused, "no user with the username or id " + who);
}

// A team by id or name, as mmctl looks them up.
json::value find_team(const Client& c, const std::string& team) {
  if (looks_like_id(team)) {
    const HttpResponse r = c.raw("GET", "/teams/" + team);
    if (r.status == 200) return c.parse(r, "GET", "/teams/...");
    if (r.status != 404) throw server_error(r, c.endpoint());
  }
  const HttpResponse r = c.raw("GET", "/teams/name/" + url_escape(team));
  if (r.status == 200) return c.parse(r, "GET", "/teams/name/...");
  if (r.status != 404) throw server_error(r, c.endpoint());
  throw CtlError(kExitRefused, "no team with the name or id " + team);
}

struct UserArgs {
  std::string email, username, password, first_name, last_name, nickname, locale;
  bool system_admin = false, all = false;
  int page = 0, per_page = 200;
  std::vector<std::string> users;
};

int user_create(const Globals& g, const UserArgs& a) {
  json::object body{{"email", a.email}, {"username", a.username}, {"password", a.password}};
  if (!a.first_name.empty()) body["first_name"] = a.first_name;
  if (!a.last_name.empty()) body["last_name"] = a.last_name;
  if (!a.nickname.empty()) body["nickname"] = a.nickname;
  if (!a.locale.empty()) body["locale"] = a.locale;
  const Client c = connect(g);
  json::value user = c.call("POST", "/users", json::serialize(body));
  const std::string id = id_of(user, c, "the new user");
  if (a.system_admin && str_of(user, "roles").find("system_admin") == std::string::npos) {
    try {  // Mattermost's route for roles (mmctl user create --system-admin)
      c.call("PUT", "/users/" + url_escape(id) + "/roles",
             json::serialize(json::object{{"roles", "system_user system_admin"}}));
      user.as_object()["roles"] = "system_user system_admin";
    } catch (const CtlError& e) {
      throw CtlError(e.code, "user " + a.username + " was created (id " + id +
                                 "), but it could not be made a system admin: " + e.what());
    }
  }
  if (g.json)
    print_json(user);
  else
    std::cout << "Created user " << str_of(user, "username") << " (id " << id << ", roles \"" << str_of(user, "roles")
              << "\")\n";
  return kExitOk;
}

int user_list(const Globals& g, const UserArgs& a) {
  const Client c = connect(g);
  json::value v;
  if (a.all) {
    v = all_pages(c, "/users", a.per_page);
  } else {
    const std::string path = "/users?page=" + std::to_string(a.page) + "&per_page=" + std::to_string(a.per_page);
    v = c.call("GET", path);
    as_array(v, c, "GET /api/v4" + path);
  }
  if (g.json) {
    print_json(v);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& u : v.get_array())
    rows.push_back({str_of(u, "id"), str_of(u, "username"), str_of(u, "email"), str_of(u, "roles"),
                    int_of(u, "delete_at") ? "deactivated" : "active"});
  if (rows.empty())
    std::cout << "No users\n";
  else
    print_table({"ID", "USERNAME", "EMAIL", "ROLES", "STATE"}, rows);
  return kExitOk;
}

// Each user in turn (an error is printed and the next one tried); the worst exit code at the end.
int user_deactivate(const Globals& g, const UserArgs& a) {
  const Client c = connect(g);
  int code = kExitOk;
  json::array done;
  for (const auto& who : a.users) {
    try {
      const std::string id = id_of(find_user(c, who), c, "user " + who);
      c.call("PUT", "/users/" + url_escape(id) + "/active", json::serialize(json::object{{"active", false}}));
      done.push_back(json::object{{"user", who}, {"id", id}, {"deactivated", true}});
      if (!g.json) std::cout << "Deactivated user " << who << " (id " << id << ")\n";
    } catch (const CtlError& e) {
      if (e.code == kExitUnreachable) throw;
      std::cerr << "Error: " << who << ": " << e.what() << "\n";
      code = std::max(code, e.code);
    }
  }
  if (g.json) print_json(done);
  return code;
}

struct TeamArgs {
  std::string name, display_name, team, email;
  bool priv = false;
};

int team_create(const Globals& g, const TeamArgs& a) {
  json::object body{{"name", a.name}, {"display_name", a.display_name}, {"type", a.priv ? "I" : "O"}};
  if (!a.email.empty()) body["email"] = a.email;
  const Client c = connect(g);
  const json::value team = c.call("POST", "/teams", json::serialize(body));
  if (g.json)
    print_json(team);
  else
    std::cout << "Created team " << str_of(team, "name") << " (id " << str_of(team, "id") << ")\n";
  return kExitOk;
}

int team_list(const Globals& g) {
  const Client c = connect(g);
  const json::value v = c.call("GET", "/teams");
  const auto& teams = as_array(v, c, "GET /api/v4/teams");
  if (g.json) {
    print_json(v);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : teams)
    rows.push_back({str_of(t, "id"), str_of(t, "name"), str_of(t, "display_name"),
                    str_of(t, "type") == "I" ? "private" : "open", int_of(t, "delete_at") ? "archived" : ""});
  if (rows.empty())
    std::cout << "No teams\n";
  else
    print_table({"ID", "NAME", "DISPLAY NAME", "TYPE", ""}, rows);
  return kExitOk;
}

int channel_create(const Globals& g, const TeamArgs& a) {
  const Client c = connect(g);
  const std::string team_id = id_of(find_team(c, a.team), c, "team " + a.team);
  const json::value ch = c.call(
      "POST", "/channels",
      json::serialize(json::object{
          {"team_id", team_id}, {"name", a.name}, {"display_name", a.display_name}, {"type", a.priv ? "P" : "O"}}));
  if (g.json)
    print_json(ch);
  else
    std::cout << "Created channel " << str_of(ch, "name") << " (id " << str_of(ch, "id") << ") in team " << a.team
              << "\n";
  return kExitOk;
}

int channel_list(const Globals& g, const TeamArgs& a) {
  const Client c = connect(g);
  const std::string team_id = id_of(find_team(c, a.team), c, "team " + a.team);
  const json::array channels = all_pages(c, "/teams/" + url_escape(team_id) + "/channels", 200);
  if (g.json) {
    print_json(channels);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& ch : channels)
    rows.push_back({str_of(ch, "id"), str_of(ch, "name"), str_of(ch, "display_name"),
                    str_of(ch, "type") == "P" ? "private" : "public"});
  if (rows.empty())
    std::cout << "No public channels in team " << a.team << "\n";
  else
    print_table({"ID", "NAME", "DISPLAY NAME", "TYPE"}, rows);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chorusctl: administer a Chorus node (or cluster) over its API, as mmctl does for Mattermost",
               "chorusctl"};
  app.footer(kExitCodes);
  app.fallthrough();  // global flags after the command too (inherited by the subcommands added below)
  app.set_version_flag("--version", CHORUS_VERSION);

  Globals g;
  g.socket_path = env("CHORUSCTL_LOCAL_SOCKET_PATH");
  if (g.socket_path.empty()) g.socket_path = env("MMCTL_LOCAL_SOCKET_PATH");
  if (g.socket_path.empty()) g.socket_path = kDefaultSocket;
  g.config_path = default_config_path();
  app.add_flag("--json", g.json, "Machine output: the server's JSON (or a JSON object for composed output)");
  app.add_flag("--local", g.local,
               "Talk to the node on this machine over its unix socket; no login (env MMCTL_LOCAL or CHORUSCTL_LOCAL)");
  app.add_option("--local-socket-path", g.socket_path, "The node's local-mode socket (env MMCTL_LOCAL_SOCKET_PATH)")
      ->capture_default_str();
  app.add_option("--config", g.config_path, "The credentials file")->capture_default_str();
  app.add_option("--timeout", g.timeout_s, "Seconds allowed to connect, and for each request")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();

  std::function<int()> action;
  auto on = [&action](CLI::App* cmd, std::function<int()> f) { cmd->callback([&action, f] { action = f; }); };

  // auth
  auto* auth = app.add_subcommand("auth", "Log in to nodes and manage the stored credentials");
  LoginArgs login;
  auto* login_cmd = auth->add_subcommand("login", "Log in to a node (POST /users/login) and store the credentials");
  login_cmd->add_option("url", login.url, "The node's API: http://host:port")->required();
  login_cmd->add_option("--name", login.name, "The name to store the credentials under")->required();
  auto* user_opt = login_cmd->add_option("--username", login.username, "Username or email");
  auto* pass_opt =
      login_cmd->add_option("--password", login.password, "Password (visible to ps: prefer --password-file)");
  auto* file_opt = login_cmd->add_option("--password-file", login.password_file, "File holding the password");
  auto* token_opt =
      login_cmd->add_option("--access-token", login.access_token, "A personal access token or session token");
  pass_opt->excludes(file_opt);
  token_opt->excludes(user_opt)->excludes(pass_opt)->excludes(file_opt);
  on(login_cmd, [&] { return auth_login(g, login); });
  on(auth->add_subcommand("current", "Show the current credentials"), [&] { return auth_current(g); });
  on(auth->add_subcommand("list", "List the stored credentials"), [&] { return auth_list(g); });
  std::string set_name;
  auto* set_cmd = auth->add_subcommand("set", "Make stored credentials the current ones");
  set_cmd->add_option("name", set_name, "Their name")->required();
  on(set_cmd, [&] { return auth_set(g, set_name); });
  on(auth->add_subcommand("logout", "Revoke the current session (POST /users/logout) and forget its credentials"),
     [&] { return auth_logout(g); });

  // system, cluster, db
  auto* sys = app.add_subcommand("system", "The node's health and version");
  on(sys->add_subcommand("status", "Server, database and file store health (exit 1 when unhealthy)"),
     [&] { return system_status(g); });
  on(sys->add_subcommand("version", "The server's version (X-Version-Id)"), [&] { return system_version(g); });
  std::string packet_out;
  auto* packet_cmd = sys->add_subcommand("supportpacket", "Save the node's support packet (a tar) for a bug report");
  packet_cmd->add_option("-o,--output", packet_out, "where to write it (default chorus-support-<ms>.tar)");
  on(packet_cmd, [&] { return system_supportpacket(g, packet_out); });
  auto* cluster = app.add_subcommand("cluster", "The cluster");
  on(cluster->add_subcommand("status", "Every node, green or red with the reason (exit 4 when any is red)"),
     [&] { return cluster_status(g); });
  auto* db = app.add_subcommand("db", "The database");
  on(db->add_subcommand("recycle", "Close and reopen the node's database connections"), [&] { return db_recycle(g); });

  // config
  auto* cfg = app.add_subcommand("config", "Read and change the node's config");
  std::string key, patch_file;
  std::vector<std::string> values;
  auto* get_cmd = cfg->add_subcommand("get", "Print one setting");
  get_cmd->add_option("setting", key, "Section.Setting")->required();
  on(get_cmd, [&] { return config_get(g, key); });
  on(cfg->add_subcommand("show", "Print the whole config"), [&] { return config_show(g); });
  auto* set_cfg = cfg->add_subcommand("set",
                                      "Change one setting (the value takes the setting's type; several values "
                                      "make a list)");
  set_cfg->add_option("setting", key, "Section.Setting")->required();
  set_cfg->add_option("values", values, "The new value(s)")->required();
  on(set_cfg, [&] { return config_set(g, key, values); });
  auto* patch_cmd = cfg->add_subcommand("patch", "Apply a JSON file of sections and settings (PUT /config/patch)");
  patch_cmd->add_option("file", patch_file, "The JSON file")->required();
  on(patch_cmd, [&] { return config_patch(g, patch_file); });
  on(cfg->add_subcommand("reload", "Reload the node's config.json"), [&] { return config_reload(g); });

  // job
  auto* job = app.add_subcommand("job", "The job server's jobs");
  JobArgs ja;
  auto* job_list_cmd = job->add_subcommand("list", "List jobs, newest first");
  job_list_cmd->add_option("--type", ja.type, "Only this type (data_retention, message_export, search_indexing)");
  job_list_cmd->add_option("--page", ja.page, "Page")->check(CLI::NonNegativeNumber)->capture_default_str();
  job_list_cmd->add_option("--per-page", ja.per_page, "Jobs per page")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  on(job_list_cmd, [&] { return job_list(g, ja); });
  auto* job_create_cmd = job->add_subcommand("create", "Queue a job now");
  job_create_cmd->add_option("type", ja.type, "data_retention, message_export or search_indexing")->required();
  job_create_cmd->add_option("--data", ja.data, "KEY=VALUE for the job's data (repeatable)");
  on(job_create_cmd, [&] { return job_create(g, ja); });
  auto* job_cancel_cmd = job->add_subcommand("cancel", "Cancel a pending or running job");
  job_cancel_cmd->add_option("id", ja.id, "The job's id")->required();
  on(job_cancel_cmd, [&] { return job_cancel(g, ja); });

  // user
  auto* user = app.add_subcommand("user", "Users");
  UserArgs ua;
  auto* user_create_cmd = user->add_subcommand("create", "Create a user");
  user_create_cmd->add_option("--email", ua.email, "Email")->required();
  user_create_cmd->add_option("--username", ua.username, "Username")->required();
  user_create_cmd->add_option("--password", ua.password, "Password (8 to 72 characters)")->required();
  user_create_cmd->add_option("--firstname", ua.first_name, "First name");
  user_create_cmd->add_option("--lastname", ua.last_name, "Last name");
  user_create_cmd->add_option("--nickname", ua.nickname, "Nickname");
  user_create_cmd->add_option("--locale", ua.locale, "Locale");
  user_create_cmd->add_flag("--system-admin", ua.system_admin, "Make the user a system admin");
  on(user_create_cmd, [&] { return user_create(g, ua); });
  auto* user_list_cmd = user->add_subcommand("list", "List users");
  user_list_cmd->add_option("--page", ua.page, "Page")->check(CLI::NonNegativeNumber)->capture_default_str();
  user_list_cmd->add_option("--per-page", ua.per_page, "Users per page")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  user_list_cmd->add_flag("--all", ua.all, "Every page");
  on(user_list_cmd, [&] { return user_list(g, ua); });
  auto* deactivate_cmd = user->add_subcommand("deactivate", "Deactivate users");
  deactivate_cmd->add_option("users", ua.users, "Each an id, username or email")->required();
  on(deactivate_cmd, [&] { return user_deactivate(g, ua); });

  // team, channel
  auto* team = app.add_subcommand("team", "Teams");
  TeamArgs ta;
  auto* team_create_cmd = team->add_subcommand("create", "Create a team");
  team_create_cmd->add_option("--name", ta.name, "Name (in URLs)")->required();
  team_create_cmd->add_option("--display-name", ta.display_name, "Display name")->required();
  team_create_cmd->add_option("--email", ta.email, "The team's email");
  team_create_cmd->add_flag("--private", ta.priv, "Invite only");
  on(team_create_cmd, [&] { return team_create(g, ta); });
  on(team->add_subcommand("list", "List teams"), [&] { return team_list(g); });
  auto* channel = app.add_subcommand("channel", "Channels");
  auto* channel_create_cmd = channel->add_subcommand("create", "Create a channel");
  channel_create_cmd->add_option("--team", ta.team, "The team's name or id")->required();
  channel_create_cmd->add_option("--name", ta.name, "Name (in URLs)")->required();
  channel_create_cmd->add_option("--display-name", ta.display_name, "Display name")->required();
  channel_create_cmd->add_flag("--private", ta.priv, "Private channel");
  on(channel_create_cmd, [&] { return channel_create(g, ta); });
  auto* channel_list_cmd = channel->add_subcommand("list", "List a team's public channels");
  channel_list_cmd->add_option("team", ta.team, "The team's name or id")->required();
  on(channel_list_cmd, [&] { return channel_list(g, ta); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (env_true("MMCTL_LOCAL") || env_true("CHORUSCTL_LOCAL")) g.local = true;
  if (!action) {  // a group without its command ("chorusctl config"): its help, as usage
    CLI::App* at = &app;
    for (bool deeper = true; deeper;) {
      deeper = false;
      for (CLI::App* sub : at->get_subcommands())
        if (sub->parsed()) at = sub, deeper = true;
    }
    std::cerr << at->help() << "\nError: give a command\n";
    return kExitUsage;
  }
  try {
    return action();
  } catch (const CtlError& e) {
    std::cerr << "Error: " << e.what() << "\n";
    return e.code;
  } catch (const std::exception& e) {  // a bug, not a crash: say what it was
    std::cerr << "Error: " << e.what() << "\n";
    return kExitRefused;
  }
}
