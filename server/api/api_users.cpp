// Routes: users, login and logout, statuses.
#include "server/api/api_internal.h"

#include "server/core/ids.h"

namespace chorus::api {

void Api::routes_users() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

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
}

}  // namespace chorus::api
