// Mattermost's v4 routes and WebSocket protocol over the app (api.h). Over 600 lines on purpose: the
// route table (routes()) is one list a reader scans for a path, and the WebSocket session shares the
// request helpers; both compile in one translation unit with Boost.JSON (build time on 2 cores).
#include "server/api/api.h"

#include <boost/json.hpp>
#include <optional>
#include <utility>

#include "server/core/ids.h"

namespace chorus::api {

namespace json = boost::json;
using app::AppError;
using app::Result;
using app::Session;

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

namespace {

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

// Body helpers: strings, ints and bools of a JSON object, tolerant of absent keys and strict on types.
struct Body {
  json::object o;
  std::string bad;  // the first field of the wrong type
  std::string str(const char* key) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return "";
    if (!it->value().is_string()) {
      if (bad.empty()) bad = key;
      return "";
    }
    return std::string(it->value().as_string());
  }
  bool boolean(const char* key) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return false;
    if (!it->value().is_bool()) {
      if (bad.empty()) bad = key;
      return false;
    }
    return it->value().as_bool();
  }
  int64_t integer(const char* key, int64_t def) {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return def;
    if (it->value().is_int64()) return it->value().as_int64();
    if (it->value().is_uint64()) return static_cast<int64_t>(it->value().as_uint64());
    if (bad.empty()) bad = key;
    return def;
  }
};

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

template <class T>
json::array to_array(const std::vector<T>& items) {
  json::array a;
  a.reserve(items.size());
  for (const auto& i : items) a.push_back(i.to_json());
  return a;
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

}  // namespace

namespace {

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

}  // namespace

std::string request_token(const Request& r) { return find_token(r, nullptr); }

namespace {

// As Mattermost: a request that changes state with only the session cookie to show must say it comes from
// the app's own pages - the X-CSRF-Token header equal to the MMCSRF cookie (which another site can neither
// read nor send as a header), or X-Requested-With: XMLHttpRequest (which a cross-site form cannot set).
bool csrf_ok(const Request& r) {
  if (r.method == "GET" || r.method == "HEAD" || r.method == "OPTIONS") return true;
  if (r.header("x-requested-with") == "XMLHttpRequest") return true;
  const std::string expected = cookie(r, "MMCSRF");
  return !expected.empty() && r.header("x-csrf-token") == expected;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// One request in flight.

struct Api::Call {
  Request request;
  Respond respond_fn;
  std::map<std::string, std::string> params;
  Session session;
  bool answered = false;

  void respond(Response r) {
    if (answered) return;
    answered = true;
    if (auto calls = registry.lock()) calls->erase(this);
    auto self = std::move(keep_alive);  // alive until this returns
    respond_fn(std::move(r));
  }
  void error(const AppError& e) { respond(error_response(e.status, e.id, e.message, e.detailed)); }
  void json(int status, const json::value& v) { respond(json_response(status, json::serialize(v))); }
  // The parsed JSON body (an object), or an error answered and nullopt.
  std::optional<Body> body_object() {
    boost::system::error_code ec;
    auto v = json::parse(request.body, ec);
    if (ec || !v.is_object()) {
      error(AppError{400, "api.context.invalid_body_param.app_error",
                     "Invalid or missing body in request: a JSON object was expected.",
                     ec ? ec.message() : "not an object"});
      return std::nullopt;
    }
    return Body{std::move(v.as_object()), ""};
  }
  std::optional<std::vector<std::string>> body_strings() {
    boost::system::error_code ec;
    auto v = json::parse(request.body, ec);
    if (ec || !v.is_array()) {
      error(AppError{400, "api.context.invalid_body_param.app_error",
                     "Invalid or missing body in request: a JSON array of strings was expected.",
                     ec ? ec.message() : "not an array"});
      return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& e : v.as_array()) {
      if (!e.is_string()) {
        error(app::bad_param("body"));
        return std::nullopt;
      }
      out.emplace_back(e.as_string());
    }
    return out;
  }
  bool bad_type(const Body& b) {
    if (b.bad.empty()) return false;
    error(app::bad_param(b.bad));
    return true;
  }
  // "me" stands for the session's user.
  std::string user_param() {
    const std::string& u = params["user_id"];
    return u == "me" ? session.user_id : u;
  }
  template <class T, class F>
  std::function<void(Result<T>)> then(F f) {
    return [self = this, keep = keep_alive, f](Result<T> r) {
      if (!r.ok()) return self->error(r.error);
      f(r.value);
    };
  }
  std::shared_ptr<Call> keep_alive;  // set while routed; released when answered
  std::weak_ptr<std::unordered_set<Call*>> registry;  // the Api's calls not answered yet
};

// ---------------------------------------------------------------------------------------------------
// Routing.

Api::Api(Env& env, app::App& app, app::Hub& hub, app::Jobs& jobs, NodeControl& node, ApiOptions options)
    : env_(env), app_(app), hub_(hub), jobs_(jobs), node_(node), options_(std::move(options)) {
  routes();
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

void Api::add(std::string method, const std::string& pattern, bool auth, Route run) {
  routes_.push_back(Entry{std::move(method), split_path(pattern), auth, std::move(run)});
}

void Api::handle(Request request, Respond respond) {
  auto call = std::make_shared<Call>();
  call->request = std::move(request);
  // RateLimitSettings (guards.h): a client over its rate gets Mattermost's 429; every answer says where
  // the client stands.
  std::optional<RateLimiter::Decision> rate;
  if (const auto& rl = app_.config().RateLimitSettings; rl.Enable) {
    rate = limiter_.take(rate_limit_key(call->request, app_.config()), env_.now(), rl.PerSec, rl.MaxBurst,
                         static_cast<size_t>(rl.MemoryStoreSize));
    if (rate->limited) {
      Response r = too_many_requests(*rate);
      r.headers.emplace_back("X-Version-Id", options_.server_version);
      return respond(std::move(r));
    }
  }
  // The call lives until it is answered.
  call->respond_fn = [respond = std::move(respond), version = options_.server_version, rate](Response r) {
    r.headers.emplace_back("X-Version-Id", version);  // the client notes the server's version
    if (rate) add_rate_limit_headers(*rate, r);
    respond(std::move(r));
  };
  call->keep_alive = call;
  call->registry = calls_;
  calls_->insert(call.get());
  if (draining_)
    return call->respond(error_response(503, "api.server.shutting_down.app_error", "The server is shutting down."));
  // Cut off from the larger part of the cluster: only the health check and the cluster status answer
  // (an operator asks this node why); whatever it acknowledged, other nodes' clients would not hear of.
  if (const std::string why = node_.cut_off_reason();
      !why.empty() && call->request.path != "/api/v4/system/ping" && call->request.path != "/api/v4/cluster/status")
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
    if (!e.auth) return e.run(call);
    bool from_cookie = false;
    const std::string token = find_token(call->request, &from_cookie);
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

// ---------------------------------------------------------------------------------------------------
// The routes.

void Api::routes() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  auto& node = node_;
  const std::string v4 = "/api/v4";

  // --- system and cluster
  add("GET", v4 + "/system/ping", false, [this](const C& c) {
    const bool full =
        c->request.query.contains("get_server_status") && c->request.query.at("get_server_status") == "true";
    const bool rest =
        c->request.query.contains("use_rest_semantics") && c->request.query.at("use_rest_semantics") == "true";
    auto answer = [c, rest](bool healthy, json::object extra,
                            std::vector<std::pair<std::string, std::string>> headers) {
      extra["status"] = healthy ? "OK" : "UNHEALTHY";
      extra["ActiveSearchBackend"] = "database";
      Response r = json_response(healthy || rest ? 200 : 500, json::serialize(extra));
      for (auto& h : headers) r.headers.push_back(std::move(h));
      c->respond(std::move(r));
    };
    // Cut off by a partition (server/cluster/reach.h): unhealthy, so the load balancer takes it out.
    const std::string cut = node_.cut_off_reason();
    json::object base;
    if (!cut.empty()) base["cluster_status"] = "cut off: " + cut;
    if (!full) return answer(cut.empty(), base, {});
    // The database's error stays in the node's log: this call needs no session, and the text can name
    // hosts, users and databases.
    node_.check_health([answer, base, cut](bool db_ok, std::string) {
      json::object extra = base;
      extra["database_status"] = db_ok ? "OK" : "UNHEALTHY";
      extra["filestore_status"] = "OK";
      answer(db_ok && cut.empty(), extra,
             {{"database_status", db_ok ? "OK" : "UNHEALTHY"}, {"filestore_status", "OK"}});
    });
  });
  auto admin_only = [](const C& c) {
    if (c->session.is_system_admin()) return true;
    c->error(app::forbidden());
    return false;
  };
  add("GET", v4 + "/cluster/status", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    json::array rows;
    for (const auto& n : node.cluster_status())
      rows.push_back(json::object{{"id", n.id},
                                  {"version", n.version},
                                  {"schema_version", n.schema_version},
                                  {"config_hash", n.config_hash},
                                  {"ipaddress", n.ipaddress},
                                  {"hostname", n.hostname}});
    c->json(200, rows);
  });
  add("GET", v4 + "/config", true, [&node, admin_only](const C& c) {
    if (admin_only(c)) c->respond(json_response(200, node.config_json()));
  });
  auto save = [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    if (node.config_read_only())
      return c->error(AppError{403, "ent.cluster.save_config.error",
                               "Config changes through the API are off: ClusterSettings.ReadOnlyConfig is set while "
                               "high availability is on. "
                               "Change config.json on every node and reload."});
    const Failure saved = node.save_config(c->request.body);
    if (!saved.ok())
      return c->error(
          AppError{400, "api.config.update_config.invalid.app_error", "The config is not valid.", saved.message});
    c->respond(json_response(200, node.config_json()));
  };
  add("PUT", v4 + "/config", true, save);
  add("PUT", v4 + "/config/patch", true, save);
  add("POST", v4 + "/config/reload", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    const Failure reloaded = node.reload_config();
    if (!reloaded.ok())
      return c->error(AppError{500, "api.config.reload_config.app_error", "The config file could not be reloaded.",
                               reloaded.message});
    c->respond(ok_status());
  });
  add("POST", v4 + "/database/recycle", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    node.recycle_database();
    c->respond(ok_status());
  });

  add("GET", v4 + "/analytics/old", true, [&app](const C& c) {
    auto name = c->request.query.find("name");
    if (name != c->request.query.end() && name->second != "standard") return c->error(app::bad_param("name"));
    app.analytics(c->session, c->then<app::App::Analytics>([c](const app::App::Analytics& a) {
      json::array rows;
      for (const auto& [n, v] : a.rows) rows.push_back(json::object{{"name", n}, {"value", v}});
      c->json(200, rows);
    }));
  });

  // --- jobs
  auto& jobs = jobs_;
  auto list_jobs = [&jobs](const C& c, const std::string& type) {
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
    jobs.list(c->session, type, page, per_page,
              c->then<std::vector<app::Job>>([c](const std::vector<app::Job>& j) { c->json(200, to_array(j)); }));
  };
  add("GET", v4 + "/jobs", true, [list_jobs](const C& c) { list_jobs(c, ""); });
  add("GET", v4 + "/jobs/type/{type}", true, [list_jobs](const C& c) { list_jobs(c, c->params["type"]); });
  add("POST", v4 + "/jobs", true, [&jobs](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string type = b->str("type");
    json::object data;
    if (auto it = b->o.find("data"); it != b->o.end() && !it->value().is_null()) {
      if (!it->value().is_object()) return c->error(app::bad_param("data"));
      data = it->value().as_object();
    }
    if (c->bad_type(*b)) return;
    jobs.create(c->session, type, data, c->then<app::Job>([c](const app::Job& j) { c->json(201, j.to_json()); }));
  });
  add("GET", v4 + "/jobs/{job_id}", true, [&jobs](const C& c) {
    jobs.get(c->session, c->params["job_id"], c->then<app::Job>([c](const app::Job& j) { c->json(200, j.to_json()); }));
  });
  add("POST", v4 + "/jobs/{job_id}/cancel", true, [&jobs](const C& c) {
    jobs.cancel(c->session, c->params["job_id"], c->then<app::Job>([c](const app::Job&) { c->respond(ok_status()); }));
  });

  // --- users
  add("POST", v4 + "/users", false, [this, &app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::NewUser u{b->str("username"),  b->str("email"),    b->str("password"), b->str("first_name"),
                   b->str("last_name"), b->str("nickname"), b->str("locale")};
    if (c->bad_type(*b)) return;
    auto create = [c, &app, u](const Session* actor) {
      app.create_user(actor, u, c->then<app::User>([c](const app::User& user) { c->json(201, user.to_json()); }));
    };
    bool from_cookie = false;
    const std::string token = find_token(c->request, &from_cookie);
    if (token.empty()) return create(nullptr);
    if (from_cookie && !csrf_ok(c->request))
      return c->respond(error_response(401, "api.context.session_expired.app_error",
                                       "Invalid or expired session, please login again.",
                                       "a cookie-authenticated change without a CSRF token or X-Requested-With"));
    app.authenticate(token, [c, create](Result<Session> r) {
      if (!r.ok()) return c->error(r.error);
      c->session = r.value;
      create(&c->session);
    });
  });
  add("POST", v4 + "/users/login", false, [this, &app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string login_id = b->str("login_id"), password = b->str("password");
    const std::string device =
        b->o.contains("deviceId") ? b->str("deviceId") : b->str("device_id");  // the client sends deviceId
    if (c->bad_type(*b)) return;
    app.login(login_id, password, device,
              c->then<std::pair<app::User, Session>>([this, c](const std::pair<app::User, Session>& r) {
                Response resp = json_response(200, json::serialize(r.first.to_json()));
                resp.headers.emplace_back("Token", r.second.token);
                // Secure when the site is served over https (ServiceSettings.SiteURL); the token's cookie is
                // HttpOnly; MMCSRF is for the app's script to send back as X-CSRF-Token (csrf_ok).
                const std::string secure = options_.secure_cookies ? "; Secure" : "";
                resp.headers.emplace_back(
                    "Set-Cookie", "MMAUTHTOKEN=" + r.second.token + "; Path=/; HttpOnly; SameSite=Lax" + secure);
                resp.headers.emplace_back("Set-Cookie", "MMUSERID=" + r.first.id + "; Path=/; SameSite=Lax" + secure);
                resp.headers.emplace_back("Set-Cookie",
                                          "MMCSRF=" + new_id(env_.random()) + "; Path=/; SameSite=Lax" + secure);
                c->respond(std::move(resp));
              }));
  });
  add("POST", v4 + "/users/logout", true, [&app](const C& c) {
    app.logout(c->session, c->then<app::Unit>([c](const app::Unit&) {
      Response r = ok_status();
      r.headers.emplace_back("Set-Cookie", "MMAUTHTOKEN=; Path=/; Max-Age=0");
      c->respond(std::move(r));
    }));
  });
  add("PUT", v4 + "/users/{user_id}/password", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string current = b->str("current_password"), next = b->str("new_password");
    if (c->bad_type(*b)) return;
    app.update_password(c->session, c->user_param(), current, next,
                        c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("GET", v4 + "/users", true, [&app](const C& c) {
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
    app.list_users(c->session, page, per_page, c->then<std::vector<app::User>>([c](const std::vector<app::User>& u) {
      c->json(200, to_array(u));
    }));
  });
  add("POST", v4 + "/users/ids", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.get_users_by_ids(c->session, *ids, c->then<std::vector<app::User>>([c](const std::vector<app::User>& u) {
      c->json(200, to_array(u));
    }));
  });
  add("GET", v4 + "/users/username/{username}", true, [&app](const C& c) {
    app.get_user_by_username(c->session, c->params["username"],
                             c->then<app::User>([c](const app::User& u) { c->json(200, u.to_json()); }));
  });
  add("GET", v4 + "/users/{user_id}", true, [&app](const C& c) {
    app.get_user(c->session, c->user_param(),
                 c->then<app::User>([c](const app::User& u) { c->json(200, u.to_json()); }));
  });
  add("GET", v4 + "/users/{user_id}/teams", true, [&app](const C& c) {
    app.teams_for_user(
        c->session, c->user_param(),
        c->then<std::vector<app::Team>>([c](const std::vector<app::Team>& t) { c->json(200, to_array(t)); }));
  });
  add("GET", v4 + "/users/{user_id}/teams/members", true, [&app](const C& c) {
    app.team_members_for_user(c->session, c->user_param(),
                              c->then<std::vector<app::TeamMember>>(
                                  [c](const std::vector<app::TeamMember>& m) { c->json(200, to_array(m)); }));
  });
  add("GET", v4 + "/users/{user_id}/teams/{team_id}/channels", true, [&app](const C& c) {
    app.channels_for_user(
        c->session, c->user_param(), c->params["team_id"],
        c->then<std::vector<app::Channel>>([c](const std::vector<app::Channel>& ch) { c->json(200, to_array(ch)); }));
  });
  add("GET", v4 + "/users/{user_id}/teams/{team_id}/channels/members", true, [&app](const C& c) {
    app.channel_members_for_user(c->session, c->user_param(), c->params["team_id"],
                                 c->then<std::vector<app::ChannelMember>>(
                                     [c](const std::vector<app::ChannelMember>& m) { c->json(200, to_array(m)); }));
  });
  add("GET", v4 + "/users/{user_id}/status", true, [&app](const C& c) {
    app.get_status(c->session, c->user_param(),
                   c->then<app::Status>([c](const app::Status& s) { c->json(200, s.to_json()); }));
  });
  add("PUT", v4 + "/users/{user_id}/status", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string status = b->str("status"), user = b->str("user_id");
    if (c->bad_type(*b)) return;
    if (!user.empty() && user != c->user_param()) return c->error(app::bad_param("user_id"));
    app.set_status(c->session, c->user_param(), status,
                   c->then<app::Status>([c](const app::Status& s) { c->json(200, s.to_json()); }));
  });
  add("POST", v4 + "/users/status/ids", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.get_statuses(c->session, *ids, c->then<std::vector<app::Status>>([c](const std::vector<app::Status>& s) {
      c->json(200, to_array(s));
    }));
  });

  // --- teams
  add("POST", v4 + "/teams", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::Team t;
    t.name = b->str("name");
    t.display_name = b->str("display_name");
    t.type = b->str("type");
    t.description = b->str("description");
    t.email = b->str("email");
    t.allow_open_invite = b->boolean("allow_open_invite");
    if (t.type.empty()) t.type = "O";
    if (c->bad_type(*b)) return;
    app.create_team(c->session, t, c->then<app::Team>([c](const app::Team& team) { c->json(201, team.to_json()); }));
  });
  add("GET", v4 + "/teams", true, [&app](const C& c) {
    app.list_teams(c->session, c->then<std::vector<app::Team>>(
                                   [c](const std::vector<app::Team>& t) { c->json(200, to_array(t)); }));
  });
  add("GET", v4 + "/teams/{team_id}", true, [&app](const C& c) {
    app.get_team(c->session, c->params["team_id"],
                 c->then<app::Team>([c](const app::Team& t) { c->json(200, t.to_json()); }));
  });
  add("GET", v4 + "/teams/name/{name}", true, [&app](const C& c) {
    app.get_team_by_name(c->session, c->params["name"],
                         c->then<app::Team>([c](const app::Team& t) { c->json(200, t.to_json()); }));
  });
  add("POST", v4 + "/teams/{team_id}/members", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string team = b->str("team_id"), user = b->str("user_id");
    if (c->bad_type(*b)) return;
    if (team != c->params["team_id"]) return c->error(app::bad_param("team_id"));
    app.add_team_member(c->session, team, user,
                        c->then<app::TeamMember>([c](const app::TeamMember& m) { c->json(201, m.to_json()); }));
  });
  add("GET", v4 + "/teams/{team_id}/members", true, [&app](const C& c) {
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
    app.team_members(c->session, c->params["team_id"], page, per_page,
                     c->then<std::vector<app::TeamMember>>(
                         [c](const std::vector<app::TeamMember>& m) { c->json(200, to_array(m)); }));
  });
  add("DELETE", v4 + "/teams/{team_id}/members/{user_id}", true, [&app](const C& c) {
    app.remove_team_member(c->session, c->params["team_id"], c->user_param(),
                           c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("GET", v4 + "/teams/{team_id}/channels", true, [&app](const C& c) {
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
    app.public_channels(
        c->session, c->params["team_id"], page, per_page,
        c->then<std::vector<app::Channel>>([c](const std::vector<app::Channel>& ch) { c->json(200, to_array(ch)); }));
  });
  add("GET", v4 + "/teams/{team_id}/channels/name/{channel_name}", true, [&app](const C& c) {
    app.get_channel_by_name(c->session, c->params["team_id"], c->params["channel_name"],
                            c->then<app::Channel>([c](const app::Channel& ch) { c->json(200, ch.to_json()); }));
  });
  add("POST", v4 + "/teams/{team_id}/posts/search", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string terms = b->str("terms");
    const bool is_or = b->boolean("is_or_search");
    const int64_t page = b->integer("page", 0), per_page = b->integer("per_page", 60);
    if (c->bad_type(*b)) return;
    if (page < 0 || page > 100000 || per_page < 1 || per_page > 200)
      return c->error(app::bad_param("page or per_page"));
    app.search_posts(c->session, c->params["team_id"], terms, is_or, static_cast<int>(page), static_cast<int>(per_page),
                     c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });

  // --- channels
  add("POST", v4 + "/channels", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::Channel ch;
    ch.team_id = b->str("team_id");
    ch.name = b->str("name");
    ch.display_name = b->str("display_name");
    ch.type = b->str("type");
    ch.header = b->str("header");
    ch.purpose = b->str("purpose");
    if (ch.type.empty()) ch.type = "O";
    if (c->bad_type(*b)) return;
    app.create_channel(c->session, ch,
                       c->then<app::Channel>([c](const app::Channel& created) { c->json(201, created.to_json()); }));
  });
  add("GET", v4 + "/channels/{channel_id}", true, [&app](const C& c) {
    app.get_channel(c->session, c->params["channel_id"],
                    c->then<app::Channel>([c](const app::Channel& ch) { c->json(200, ch.to_json()); }));
  });
  add("POST", v4 + "/channels/{channel_id}/members", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string user = b->str("user_id");
    if (c->bad_type(*b)) return;
    app.add_channel_member(
        c->session, c->params["channel_id"], user,
        c->then<app::ChannelMember>([c](const app::ChannelMember& m) { c->json(201, m.to_json()); }));
  });
  add("GET", v4 + "/channels/{channel_id}/members", true, [&app](const C& c) {
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
    app.channel_members(c->session, c->params["channel_id"], page, per_page,
                        c->then<std::vector<app::ChannelMember>>(
                            [c](const std::vector<app::ChannelMember>& m) { c->json(200, to_array(m)); }));
  });
  add("DELETE", v4 + "/channels/{channel_id}/members/{user_id}", true, [&app](const C& c) {
    app.remove_channel_member(c->session, c->params["channel_id"], c->user_param(),
                              c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("GET", v4 + "/channels/{channel_id}/posts", true, [&app](const C& c) {
    bool bad = false;
    app::PostQuery q;
    q.page = query_int(c->request, "page", 0, 0, 100000, bad);
    q.per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (auto it = c->request.query.find("since"); it != c->request.query.end() && !it->second.empty()) {
      try {
        size_t used = 0;
        q.since = std::stoll(it->second, &used);
        if (used != it->second.size() || q.since < 0) bad = true;
      } catch (const std::exception&) {
        bad = true;
      }
    }
    if (auto it = c->request.query.find("before"); it != c->request.query.end()) q.before = it->second;
    if (auto it = c->request.query.find("after"); it != c->request.query.end()) q.after = it->second;
    if (bad) return c->error(app::bad_param("page, per_page or since"));
    app.get_posts(c->session, c->params["channel_id"], q,
                  c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });

  // --- posts
  add("POST", v4 + "/posts", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::Post p;
    p.channel_id = b->str("channel_id");
    p.message = b->str("message");
    p.root_id = b->str("root_id");
    p.pending_post_id = b->str("pending_post_id");
    if (auto it = b->o.find("props"); it != b->o.end() && it->value().is_object())
      p.props = json::serialize(it->value());
    if (c->bad_type(*b)) return;
    app.create_post(c->session, p, c->then<app::Post>([c](const app::Post& post) { c->json(201, post.to_json()); }));
  });
  add("GET", v4 + "/posts/{post_id}", true, [&app](const C& c) {
    app.get_post(c->session, c->params["post_id"],
                 c->then<app::Post>([c](const app::Post& p) { c->json(200, p.to_json()); }));
  });
}

// ---------------------------------------------------------------------------------------------------
// WebSocket: Mattermost's protocol over one connection.

namespace {

class WebSocket final : public SocketSession, public app::ConnectionSink {
 public:
  WebSocket(Env& env, app::App& app, app::Hub& hub, SocketSink& sink, const Request& request, const ApiOptions& options)
      : env_(env), app_(app), hub_(hub), sink_(sink), options_(options) {
    if (auto it = request.query.find("connection_id"); it != request.query.end()) connection_id_ = it->second;
    if (auto it = request.query.find("sequence_number"); it != request.query.end()) {
      try {
        sequence_number_ = std::stoll(it->second);
      } catch (const std::exception&) {
        sequence_number_ = 0;
      }
    }
    const std::string token = request_token(request);
    if (!token.empty()) authenticate(token, -1);  // the bearer header: no challenge needed
  }
  ~WebSocket() override { *alive_ = false; }

  // ConnectionSink: what the hub sends.
  void send_text(std::string text) override {
    if (!closed_) sink_.send_text(std::move(text));
  }
  size_t queued_frames() const override { return closed_ ? 0 : sink_.queued_frames(); }
  void close(uint16_t code, std::string reason) override {
    closing_ = true;
    if (!closed_) sink_.close(code, std::move(reason));
  }

  // Messages are handled in the order they came, as Mattermost's server reads them: what arrives while the
  // authentication is being checked (the official client sends a ping right behind its challenge) waits for
  // it, rather than being refused as "not authenticated".
  void on_text(std::string_view text) override {
    if (authenticating_) {
      if (waiting_.size() >= kMaxWaiting) return close(1008, "too many messages before authentication");
      waiting_.emplace_back(text);
      return;
    }
    handle(text);
  }

  void on_closed() override {
    closed_ = true;
    if (!registered_.empty()) hub_.closed(registered_, this);
  }

 private:
  static constexpr size_t kMaxWaiting = 64;

  void handle(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      if (++malformed_ > 100) return close(1008, "too many malformed messages");
      env_.log().debug("websocket: ignored a malformed message ({} bytes)", text.size());
      return;
    }
    auto& o = v.as_object();
    const std::string action =
        o.contains("action") && o["action"].is_string() ? std::string(o["action"].as_string()) : "";
    const int64_t seq = o.contains("seq") && o["seq"].is_int64() ? o["seq"].as_int64() : 0;
    json::object data = o.contains("data") && o["data"].is_object() ? o["data"].as_object() : json::object{};
    auto str = [&](const char* key) {
      return data.contains(key) && data[key].is_string() ? std::string(data[key].as_string()) : std::string();
    };
    if (action == "authentication_challenge") {
      if (session_) return reply(seq, true);
      const std::string token = str("token");
      if (token.empty())
        return fail(seq, "api.web_socket_router.no_token.app_error", "No token in the authentication challenge.");
      return authenticate(token, seq);
    }
    if (!session_)
      return fail(seq, "api.web_socket_router.not_authenticated.app_error", "The connection is not authenticated yet.");
    if (action == "ping") {
      return send_reply(json::object{{"status", "OK"},
                                     {"seq_reply", seq},
                                     {"data", json::object{{"text", "pong"},
                                                           {"version", options_.server_version},
                                                           {"server_time", env_.wall_now().us / 1000},
                                                           {"node_id", options_.hostname}}}});
    }
    if (action == "user_typing") {
      app_.user_typing(*session_, str("channel_id"), str("parent_id"));
      return reply(seq, true);
    }
    fail(seq, "api.web_socket_router.bad_action.app_error",
         "Unknown action \"" + valid_utf8(action.substr(0, 64)) + "\".");
  }

  void authenticate(const std::string& token, int64_t seq) {
    if (authenticating_) return;
    authenticating_ = true;
    app_.authenticate(token, [this, alive = alive_, token, seq](Result<Session> r) {
      if (!*alive || closed_) return;
      authenticating_ = false;
      auto waiting = std::exchange(waiting_, {});
      if (!r.ok()) {
        if (seq >= 0) fail(seq, r.error.id, r.error.message);
        for (const auto& text : waiting) fail(seq_of(text), r.error.id, r.error.message);
        return close(1008, "authentication failed");
      }
      session_ = r.value;
      if (seq >= 0) reply(seq, true);
      register_connection();
      for (auto& text : waiting) {
        if (closed_ || !*alive) return;
        handle(text);
      }
    });
  }

  static int64_t seq_of(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return 0;
    const auto* seq = v.as_object().if_contains("seq");
    return seq && seq->is_int64() ? seq->as_int64() : 0;
  }

  // Resume here, or take the connection over from another node, or start afresh with a hello.
  void register_connection() {
    const std::string user = session_->user_id;
    auto open = [this, user] {
      auto alive = alive_;
      const auto opened = hub_.open(user, session_->token, this, connection_id_, sequence_number_);
      if (!*alive) return;  // the socket closed while opening (it may be gone)
      registered_ = opened.connection_id;
      if (opened.resumed)
        env_.log().debug("websocket: connection {} resumed at {} ({} events resent)", registered_, sequence_number_,
                         opened.replayed);
    };
    if (connection_id_.empty() || sequence_number_ <= 0 || hub_.holds(connection_id_)) return open();
    app_.find_connection(connection_id_, user, Duration{1'000'000}, [this, alive = alive_, open](bool) {
      if (!*alive || closed_) return;
      open();
    });
  }

  void reply(int64_t seq, bool ok) { send_reply(json::object{{"status", ok ? "OK" : "FAIL"}, {"seq_reply", seq}}); }
  void fail(int64_t seq, const std::string& id, const std::string& message) {
    send_reply(json::object{
        {"status", "FAIL"}, {"seq_reply", seq}, {"error", json::object{{"id", id}, {"message", message}}}});
  }
  void send_reply(const json::object& o) {
    if (closed_ || closing_) return;
    if (sink_.queued_frames() >= options_.websocket_queue_max) {
      env_.log().info("websocket: closed a connection that does not read its replies ({} frames queued)",
                      sink_.queued_frames());
      return close(1008, "send queue full");
    }
    send_text(json::serialize(o));
  }

  Env& env_;
  app::App& app_;
  app::Hub& hub_;
  SocketSink& sink_;
  const ApiOptions& options_;
  std::optional<Session> session_;
  std::string connection_id_;
  int64_t sequence_number_ = 0;
  std::vector<std::string> waiting_;
  std::string registered_;
  bool authenticating_ = false;
  bool closed_ = false;
  bool closing_ = false;  // a close was asked for: no more replies
  int malformed_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

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
  return std::make_unique<WebSocket>(env_, app_, hub_, sink, request, options_);
}

}  // namespace chorus::api
