// What the api's files share (not for use outside server/api): one request in flight (Api::Call), the body and
// query helpers, the session token and CSRF rules. The routes are in files by domain, as the app's are:
// api_system.cpp (ping, client config and license, cluster, config, jobs, analytics), api_users.cpp,
// api_teams.cpp, api_channels.cpp, api_posts.cpp; the WebSocket protocol is api_websocket.cpp; api.cpp
// routes a request to them.
#pragma once

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "server/api/api.h"

namespace chorus::api {

namespace json = boost::json;
using app::AppError;
using app::Result;
using app::Session;

Response ok_status();
// Client bytes quoted in a message: what is not UTF-8 becomes U+FFFD (the JSON stays valid).
std::string valid_utf8(std::string_view s);
std::string lower(std::string_view s);
std::vector<std::string> split_path(const std::string& path);
// An integer query parameter in [lo, hi] (def when absent); sets bad otherwise.
int query_int(const Request& r, const char* key, int def, int lo, int hi, bool& bad);
json::object post_list_json(const app::PostList& list);
// page and per_page as Mattermost reads them (web/params.go): absent, not a number or negative gives the
// default (page 0, per_page def); per_page above max is max; never an error.
struct Paging {
  int page = 0, per_page = 60;
};
Paging query_paging(const Request& r, int def_per_page = 60, int max_per_page = 200);
// The value of cookie `name` ("" when absent).
std::string cookie(const Request& r, std::string_view name);
// The session token: the Authorization header, else the MMAUTHTOKEN cookie, else access_token.
std::string find_token(const Request& r, bool* from_cookie);
// A state-changing request authenticated by cookie only must prove it comes from the app's pages.
bool csrf_ok(const Request& r);

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

template <class T>
json::array to_array(const std::vector<T>& items) {
  json::array a;
  a.reserve(items.size());
  for (const auto& i : items) a.push_back(i.to_json());
  return a;
}


// One request in flight.
// The session of a local-mode request (http.h: Request::local): this machine's operator, a system admin
// with no user behind it, as Mattermost's local mode.
inline Session local_session() {
  Session s;
  s.id = "local";
  s.roles = "system_user system_admin";
  return s;
}

struct Api::Call {
  Request request;
  Respond respond_fn;
  const std::string* route = nullptr;  // the pattern that matched (metrics)
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


// Users as the session's user sees them (app::User::to_json_for).
inline json::object user_json(const app::User& u, const Session& s) { return u.to_json_for(s.user_id, s.is_system_admin()); }
inline json::array users_json(const std::vector<app::User>& users, const Session& s) {
  json::array a;
  a.reserve(users.size());
  for (const auto& u : users) a.push_back(user_json(u, s));
  return a;
}

// The WebSocket session of one upgraded connection (api_websocket.cpp).
std::unique_ptr<SocketSession> make_websocket(Env& env, app::App& app, app::Hub& hub, SocketSink& sink,
                                              const Request& request, const ApiOptions& options);

}  // namespace chorus::api
