// Routing a request to its route (the routes are in files by domain: api_internal.h lists them), the
// helpers the route files share, and the upgrade to a WebSocket (api_websocket.cpp).
#include "server/api/api.h"

#include "server/api/api_internal.h"

namespace chorus::api {

std::string version_id_header(const std::string& chorus_version) {
  std::string build = "chorus-" + chorus_version;
  std::replace(build.begin(), build.end(), '.', '-');
  return std::string(kMattermostApiVersion) + "." + build + ".false";
}

// ---------------------------------------------------------------------------------------------------
// Responses.

Response json_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

Response error_response(int status, const std::string& id, const std::string& message, const std::string& detailed) {
  return json_response(status, json::serialize(json::object{{"id", id},
                                                            {"message", message},
                                                            {"detailed_error", detailed},
                                                            {"request_id", ""},
                                                            {"status_code", status},
                                                            {"is_oauth", false}}));
}

Response ok_status() { return json_response(200, R"({"status":"OK"})"); }

// Client bytes quoted in a message (a percent-decoded path may hold any): what is not UTF-8 becomes U+FFFD, as
// Go's encoding/json makes it, so the JSON stays valid (and a WebSocket text frame too).
std::string valid_utf8(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80                 ? 0
                     : c >= 0xC2 && c <= 0xDF ? 1
                     : c >= 0xE0 && c <= 0xEF ? 2
                     : c >= 0xF0 && c <= 0xF4 ? 3
                                              : 4;
    bool ok = n < 4 && s.size() - i > n;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; ok && k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    ok = ok && !(n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) &&
         !(n == 3 && (cp < 0x10000 || cp > 0x10FFFF));
    out.append(ok ? s.substr(i, n + 1) : std::string_view("\xEF\xBF\xBD"));
    i += ok ? n + 1 : 1;
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    const size_t end = std::min(path.find('/', pos), path.size());
    if (end > pos) out.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

int query_int(const Request& r, const char* key, int def, int lo, int hi, bool& bad) {
  auto it = r.query.find(key);
  if (it == r.query.end() || it->second.empty()) return def;
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < lo || v > hi) throw std::out_of_range(key);
    return static_cast<int>(v);
  } catch (const std::exception&) {
    bad = true;
    return def;
  }
}

Paging query_paging(const Request& r, int def_per_page, int max_per_page) {
  auto read = [&r](const char* key) -> long long {
    auto it = r.query.find(key);
    if (it == r.query.end() || it->second.empty()) return -1;
    try {
      size_t used = 0;
      const long long v = std::stoll(it->second, &used);
      return used == it->second.size() ? v : -1;
    } catch (const std::exception&) {
      return -1;
    }
  };
  Paging p;
  const long long page = read("page"), per_page = read("per_page");
  p.page = page < 0 ? 0 : static_cast<int>(std::min<long long>(page, 100000));  // past it every page is empty
  p.per_page = per_page <= 0 ? def_per_page : static_cast<int>(std::min<long long>(per_page, max_per_page));
  return p;
}

json::object post_list_json(const app::PostList& list) {
  json::array order;
  json::object posts;
  for (const auto& p : list.posts) {
    order.emplace_back(p.id);
    posts[p.id] = p.to_json();
  }
  return {{"order", order},
          {"posts", posts},
          {"next_post_id", list.next_post_id},
          {"prev_post_id", list.prev_post_id},
          {"has_next", false}};
}

// The value of cookie `name` ("" when absent).
std::string cookie(const Request& r, std::string_view name) {
  const std::string_view cookies = r.header("cookie");
  for (size_t pos = 0; pos < cookies.size();) {
    size_t end = cookies.find(';', pos);
    if (end == std::string_view::npos) end = cookies.size();
    std::string_view c = cookies.substr(pos, end - pos);
    while (!c.empty() && c.front() == ' ') c.remove_prefix(1);
    if (c.size() > name.size() && c.starts_with(name) && c[name.size()] == '=')
      return std::string(c.substr(name.size() + 1));
    pos = end + 1;
  }
  return "";
}

// The session token: the Authorization header, else the MMAUTHTOKEN cookie, else access_token.
std::string find_token(const Request& r, bool* from_cookie) {
  if (from_cookie) *from_cookie = false;
  const std::string_view auth = r.header("authorization");
  if (!auth.empty()) {
    const auto space = auth.find(' ');
    if (space != std::string_view::npos) {
      const std::string scheme = lower(auth.substr(0, space));
      if (scheme == "bearer" || scheme == "token") return std::string(auth.substr(space + 1));
    }
  }
  if (std::string c = cookie(r, "MMAUTHTOKEN"); !c.empty()) {
    if (from_cookie) *from_cookie = true;
    return c;
  }
  if (auto it = r.query.find("access_token"); it != r.query.end()) return it->second;
  return "";
}


std::string request_token(const Request& r) { return find_token(r, nullptr); }

// As Mattermost: a request that changes state with only the session cookie to show must say it comes from
// the app's own pages - the X-CSRF-Token header equal to the MMCSRF cookie (which another site can neither
// read nor send as a header), or X-Requested-With: XMLHttpRequest (which a cross-site form cannot set).
bool csrf_ok(const Request& r) {
  if (r.method == "GET" || r.method == "HEAD" || r.method == "OPTIONS") return true;
  if (r.header("x-requested-with") == "XMLHttpRequest") return true;
  const std::string expected = cookie(r, "MMCSRF");
  return !expected.empty() && r.header("x-csrf-token") == expected;
}

// ---------------------------------------------------------------------------------------------------
// Routing.

Api::Api(Env& env, app::App& app, app::Hub& hub, app::Jobs& jobs, NodeControl& node, ApiOptions options)
    : env_(env),
      app_(app),
      hub_(hub),
      jobs_(jobs),
      node_(node),
      options_(std::move(options)),
      version_id_(version_id_header(options_.server_version)) {
  uint32_t h = 2166136261u;  // FNV-1a of the node's name
  for (char ch : env_.node_name()) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  request_id_prefix_ = fmt::format("{:08x}{:08x}", h, static_cast<uint32_t>(env_.wall_now().millis() / 1000));
  routes_system();
  routes_users();
  routes_teams();
  routes_channels();
  routes_posts();
  routes_files();
  routes_console();
}

// A call never answered (its node is going away under it) would keep itself alive for good.
Api::~Api() {
  *alive_ = false;
  auto pending = std::move(*calls_);
  calls_->clear();
  for (Call* c : pending) {
    auto release = std::move(c->keep_alive);
  }
}

std::string Api::next_request_id() { return fmt::format("{}{:010x}", request_id_prefix_, ++requests_); }

void Api::add(std::string method, const std::string& pattern, bool auth, Route run) {
  routes_.push_back(Entry{std::move(method), split_path(pattern), auth, std::move(run), pattern});
}

void Api::count(const std::string& method, const std::string& route, int status, Duration took) {
  // Methods outside HTTP's own set would make a label per client whim: one bucket for them.
  static const char* const kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
  const bool known = std::any_of(std::begin(kMethods), std::end(kMethods), [&](const char* m) { return method == m; });
  RouteStat& s = request_stats_[RouteKey{known ? method : "OTHER", route, status}];
  const double seconds = static_cast<double>(took.count()) / 1e6;
  ++s.count;
  s.seconds += seconds;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i)
    if (seconds <= kLatencyBuckets[i]) {
      ++s.buckets[i];
      break;
    }
}

void Api::handle(Request request, Respond respond) {
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  const std::string request_id = next_request_id();
  // RateLimitSettings (guards.h): a client over its rate gets Mattermost's 429; every answer says where
  // the client stands.
  std::optional<RateLimiter::Decision> rate;
  if (const auto& rl = app_.config().RateLimitSettings; rl.Enable) {
    rate = limiter_.take(rate_limit_key(call->request, app_.config()), env_.now(), rl.PerSec, rl.MaxBurst,
                         static_cast<size_t>(rl.MemoryStoreSize));
    if (rate->limited) {
      Response r = too_many_requests(*rate);
      r.headers.emplace_back("X-Version-Id", version_id_header(options_.server_version));
      r.headers.emplace_back("X-Request-Id", request_id);
      return respond(std::move(r));
    }
  }
  // The call lives until it is answered. Every answer names the request (X-Request-Id, and request_id in
  // an error's body), and an error is logged with it, so that what a client saw can be found in the log.
  // (The call outlives its respond_fn: Call::respond keeps it alive while this runs.)
  call->respond_fn = [this, alive = alive_, respond = std::move(respond), version = version_id_, rate, request_id,
                      c = call.get(), arrived = env_.now()](Response r) {
    if (*alive) {
      static const std::string kUnmatched = "unmatched";
      count(c->request.method, c->route ? *c->route : kUnmatched, r.status, env_.now() - arrived);
    }
    r.headers.emplace_back("X-Version-Id", version);  // the client notes the server's version
    r.headers.emplace_back("X-Request-Id", request_id);
    if (rate) add_rate_limit_headers(*rate, r);
    if (r.status >= 400) {
      if (const auto at = r.body.find("\"request_id\":\"\""); at != std::string::npos)
        r.body.insert(at + 14, request_id);
      // (The arguments are made only when the line is wanted: this runs for every error answer.)
      const bool server_side = r.status >= 500;
      if (*alive && env_.log().enabled(server_side ? LogLevel::warn : LogLevel::debug)) {
        const std::string path = valid_utf8(c->request.path), what = r.body.substr(0, 200);
        if (server_side)
          env_.log().warn("api: request {} {} {} answered {}: {}", request_id, c->request.method, path, r.status, what);
        else
          env_.log().debug("api: request {} {} {} answered {}: {}", request_id, c->request.method, path, r.status, what);
      }
    }
    respond(std::move(r));
  };
  call->keep_alive = call;
  call->registry = calls_;
  calls_->insert(call.get());
  if (draining_)
    return call->respond(error_response(503, "api.server.shutting_down.app_error", "The server is shutting down."));
  // Cut off from the larger part of the cluster: only the health check, the cluster status and what the
  // HA console needs to show it (its page, login, users/me) answer (an operator asks this node why); whatever it acknowledged, other nodes' clients would not hear of.
  if (const std::string why = node_.cut_off_reason();
      !why.empty() && call->request.path != "/api/v4/system/ping" && call->request.path != "/api/v4/cluster/status" &&
      !call->request.path.starts_with("/admin/ha") && call->request.path != "/api/v4/users/login" &&
      call->request.path != "/api/v4/users/me")
    return call->respond(error_response(503, "api.server.cut_off.app_error",
                                        "This server is cut off from the rest of the cluster.", why));
  const auto segments = split_path(call->request.path);
  bool path_matched = false;
  for (const auto& e : routes_) {
    if (e.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const auto& p = e.segments[i];
      if (p.size() > 2 && p.front() == '{' && p.back() == '}')
        params[p.substr(1, p.size() - 2)] = segments[i];
      else
        match = p == segments[i];
    }
    if (!match) continue;
    path_matched = true;
    if (e.method != call->request.method) continue;
    call->params = std::move(params);
    call->route = &e.pattern;
    if (!e.auth) return e.run(call);
    bool from_cookie = false;
    const std::string token = find_token(call->request, &from_cookie);
    // Local mode (mmctl --local): whoever can open the node's unix socket is this machine's operator.
    // No user behind it: what it creates has no creator (as Mattermost's local mode).
    if (token.empty() && call->request.local) {
      call->session = local_session();
      return e.run(call);
    }
    if (token.empty())
      return call->respond(error_response(401, "api.context.session_expired.app_error",
                                          "Invalid or expired session, please login again.", "token not provided"));
    if (from_cookie && !csrf_ok(call->request))
      return call->respond(error_response(401, "api.context.session_expired.app_error",
                                          "Invalid or expired session, please login again.",
                                          "a cookie-authenticated change without a CSRF token or X-Requested-With"));
    auto run = e.run;
    app_.authenticate(token, [call, run](Result<Session> r) {
      if (!r.ok()) return call->error(r.error);
      call->session = r.value;
      run(call);
    });
    return;
  }
  if (path_matched)
    return call->respond(
        error_response(405, "api.context.method_not_allowed.app_error", "Method not allowed for this route."));
  call->respond(
      error_response(404, "api.context.404.app_error", "Sorry, we could not find the page.",
                     "There doesn't appear to be an api call for the url='" + valid_utf8(call->request.path) + "'."));
}

std::unique_ptr<SocketSession> Api::open_socket(const Request& request, SocketSink& sink, Response& refusal) {
  if (draining_) {
    refusal = error_response(503, "api.server.shutting_down.app_error", "The server is shutting down.");
    return nullptr;
  }
  if (request.path != "/api/v4/websocket") {
    refusal = error_response(404, "api.context.404.app_error", "Sorry, we could not find the page.");
    return nullptr;
  }
  if (const std::string why = node_.cut_off_reason(); !why.empty()) {
    refusal = error_response(503, "api.server.cut_off.app_error",
                             "This server is cut off from the rest of the cluster.", why);
    return nullptr;
  }
  // Another site's page must not open a socket with this site's cookie (guards.h: Mattermost's check).
  if (!origin_allowed(request, app_.config())) {
    refusal = error_response(403, "api.web_socket.connect.origin.app_error",
                             "The WebSocket's Origin is not this site's and not allowed by AllowCorsFrom.",
                             "origin " + std::string(request.header("origin")));
    return nullptr;
  }
  return make_websocket(env_, app_, hub_, sink, request, options_);
}


}  // namespace chorus::api
