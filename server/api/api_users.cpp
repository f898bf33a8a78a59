// Routes: users, login and logout, statuses.
#include "server/api/api_internal.h"

#include "server/app/avatar.h"
#include "server/core/ids.h"

namespace chorus::api {

void Api::routes_users() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

  add("POST", v4 + "/users", false, [&app](const C& c) {
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
    if (token.empty() && c->request.local) {  // local mode: the machine's operator, a system admin
      c->session = local_session();
      return create(&c->session);
    }
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
  add("PUT", v4 + "/users/{user_id}/roles", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string roles = b->str("roles");
    if (c->bad_type(*b)) return;
    app.update_user_roles(c->session, c->user_param(), roles,
                          c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("PUT", v4 + "/users/{user_id}/active", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    auto it = b->o.find("active");
    if (it == b->o.end() || !it->value().is_bool()) return c->error(app::bad_param("active"));
    app.set_user_active(c->session, c->user_param(), it->value().as_bool(),
                        c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("GET", v4 + "/users", true, [&app](const C& c) {
    app::UserQuery q;
    const Paging paging = query_paging(c->request);
    q.page = paging.page;
    q.per_page = paging.per_page;
    auto text = [&](const char* key) {
      auto it = c->request.query.find(key);
      return it == c->request.query.end() ? std::string() : it->second;
    };
    q.in_team = text("in_team");
    q.not_in_team = text("not_in_team");
    q.in_channel = text("in_channel");
    q.not_in_channel = text("not_in_channel");
    q.without_team = text("without_team") == "true";
    app.list_users(c->session, q, c->then<std::vector<app::User>>([c](const std::vector<app::User>& u) {
      c->json(200, users_json(u, c->session));
    }));
  });
  add("POST", v4 + "/users/usernames", true, [&app](const C& c) {
    auto names = c->body_strings();
    if (!names) return;
    app.get_users_by_usernames(c->session, *names,
                               c->then<std::vector<app::User>>(
                                   [c](const std::vector<app::User>& u) { c->json(200, users_json(u, c->session)); }));
  });
  add("POST", v4 + "/users/search", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::UserSearch q;
    q.term = b->str("term");
    q.in_team = b->str("team_id");
    q.not_in_team = b->str("not_in_team_id");
    q.in_channel = b->str("in_channel_id");
    q.not_in_channel = b->str("not_in_channel_id");
    q.limit = static_cast<int>(std::clamp<int64_t>(b->integer("limit", 100), 0, 100));
    if (c->bad_type(*b)) return;
    app.search_users(c->session, q, c->then<std::vector<app::User>>([c](const std::vector<app::User>& u) {
      c->json(200, users_json(u, c->session));
    }));
  });
  add("GET", v4 + "/users/autocomplete", true, [&app](const C& c) {
    bool bad = false;
    app::UserSearch q;
    auto text = [&](const char* key) {
      auto it = c->request.query.find(key);
      return it == c->request.query.end() ? std::string() : it->second;
    };
    q.term = text("name");
    q.in_team = text("in_team");
    q.in_channel = text("in_channel");
    q.limit = query_int(c->request, "limit", 100, 1, 100, bad);
    if (bad) return c->error(app::bad_param("limit"));
    const bool in_channel = !q.in_channel.empty();
    app.autocomplete_users(c->session, q, c->then<app::Autocomplete>([c, in_channel](const app::Autocomplete& a) {
      json::object o{{"users", users_json(a.users, c->session)}};
      if (in_channel) o["out_of_channel"] = users_json(a.out_of_channel, c->session);
      c->json(200, o);
    }));
  });
  add("PUT", v4 + "/users/sessions/device", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string device = b->str("device_id"), version = b->str("mobile_version"),
                      disabled = b->str("device_notification_disabled");
    if (c->bad_type(*b)) return;
    if (!disabled.empty() && disabled != "true" && disabled != "false")
      return c->error(app::bad_param("device_notification_disabled"));
    if (version.size() > 64) return c->error(app::bad_param("mobile_version"));
    app.attach_device(c->session, device, c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("POST", v4 + "/users/group_channels", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.group_channel_profiles(
        c->session, *ids,
        c->then<std::vector<std::pair<std::string, std::vector<app::User>>>>(
            [c](const std::vector<std::pair<std::string, std::vector<app::User>>>& groups) {
              json::object o;
              for (const auto& [channel, users] : groups) o[channel] = users_json(users, c->session);
              c->json(200, o);
            }));
  });
  add("POST", v4 + "/users/ids", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.get_users_by_ids(c->session, *ids, c->then<std::vector<app::User>>([c](const std::vector<app::User>& u) {
      c->json(200, users_json(u, c->session));
    }));
  });
  add("GET", v4 + "/users/username/{username}", true, [&app](const C& c) {
    app.get_user_by_username(c->session, c->params["username"],
                             c->then<app::User>([c](const app::User& u) { c->json(200, user_json(u, c->session)); }));
  });
  add("GET", v4 + "/users/{user_id}", true, [&app](const C& c) {
    app.get_user(c->session, c->user_param(),
                 c->then<app::User>([c](const app::User& u) { c->json(200, user_json(u, c->session)); }));
  });
  add("PUT", v4 + "/users/{user_id}/patch", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::UserPatch p;
    auto text = [&](const char* key, std::optional<std::string>& out) {
      if (b->o.contains(key)) out = b->str(key);
    };
    text("nickname", p.nickname);
    text("first_name", p.first_name);
    text("last_name", p.last_name);
    text("position", p.position);
    text("locale", p.locale);
    // Objects of strings, stored as Mattermost stores them.
    auto object = [&](const char* key, std::optional<std::string>& out) {
      auto it = b->o.find(key);
      if (it == b->o.end() || it->value().is_null()) return true;
      if (!it->value().is_object()) return false;
      for (const auto& kv : it->value().as_object())
        if (!kv.value().is_string()) return false;
      out = json::serialize(it->value());
      return true;
    };
    if (!object("props", p.props)) return c->error(app::bad_param("props"));
    if (!object("notify_props", p.notify_props)) return c->error(app::bad_param("notify_props"));
    if (!object("timezone", p.timezone)) return c->error(app::bad_param("timezone"));
    if (c->bad_type(*b)) return;
    app.patch_user(c->session, c->user_param(), p,
                   c->then<app::User>([c](const app::User& u) { c->json(200, user_json(u, c->session)); }));
  });
  // The profile image: Chorus has no uploads yet, so every user has the default one (initials on a colour).
  auto image = [&app](const C& c) {
    app.get_user(c->session, c->user_param(), c->then<app::User>([c](const app::User& u) {
      Response r;
      r.status = 200;
      r.headers.emplace_back("Content-Type", "image/png");
      r.headers.emplace_back("Cache-Control", "max-age=300, private");
      r.body = app::default_avatar_png(u);
      c->respond(std::move(r));
    }));
  };
  add("GET", v4 + "/users/{user_id}/image", true, image);
  add("GET", v4 + "/users/{user_id}/image/default", true, image);

  // Preferences.
  auto prefs_body = [](const C& c, const std::string& user_id) -> std::optional<std::vector<app::Preference>> {
    boost::system::error_code ec;
    auto v = json::parse(c->request.body, ec);
    if (ec || !v.is_array()) {
      c->error(AppError{400, "api.context.invalid_body_param.app_error",
                        "Invalid or missing preferences in request body: a JSON array was expected.",
                        ec ? ec.message() : "not an array"});
      return std::nullopt;
    }
    std::vector<app::Preference> out;
    for (const auto& e : v.as_array()) {
      if (!e.is_object()) {
        c->error(app::bad_param("preferences"));
        return std::nullopt;
      }
      Body b{e.as_object(), ""};
      app::Preference p{b.str("user_id"), b.str("category"), b.str("name"), b.str("value")};
      if (c->bad_type(b)) return std::nullopt;
      if (p.user_id.empty()) p.user_id = user_id;
      out.push_back(std::move(p));
    }
    return out;
  };
  auto list_prefs = [&app](const C& c, const std::string& category, const std::string& name) {
    const bool single = !name.empty();
    app.get_preferences(c->session, c->user_param(), category, name,
                        c->then<std::vector<app::Preference>>([c, single](const std::vector<app::Preference>& p) {
                          if (single) return c->json(200, p.at(0).to_json());
                          c->json(200, to_array(p));
                        }));
  };
  add("GET", v4 + "/users/{user_id}/preferences", true, [list_prefs](const C& c) { list_prefs(c, "", ""); });
  add("GET", v4 + "/users/{user_id}/preferences/{category}", true,
      [list_prefs](const C& c) { list_prefs(c, c->params["category"], ""); });
  add("GET", v4 + "/users/{user_id}/preferences/{category}/name/{preference_name}", true, [list_prefs](const C& c) {
    if (c->params["preference_name"].empty()) return c->error(app::bad_param("preference_name"));
    list_prefs(c, c->params["category"], c->params["preference_name"]);
  });
  add("PUT", v4 + "/users/{user_id}/preferences", true, [&app, prefs_body](const C& c) {
    auto prefs = prefs_body(c, c->user_param());
    if (!prefs) return;
    app.save_preferences(c->session, c->user_param(), std::move(*prefs),
                         c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("POST", v4 + "/users/{user_id}/preferences/delete", true, [&app, prefs_body](const C& c) {
    auto prefs = prefs_body(c, c->user_param());
    if (!prefs) return;
    app.delete_preferences(c->session, c->user_param(), std::move(*prefs),
                           c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });

  // Unread counts.
  add("GET", v4 + "/users/{user_id}/teams/unread", true, [&app](const C& c) {
    auto ex = c->request.query.find("exclude_team");
    app.teams_unread(c->session, c->user_param(), "", ex == c->request.query.end() ? "" : ex->second,
                     c->then<std::vector<app::TeamUnread>>(
                         [c](const std::vector<app::TeamUnread>& u) { c->json(200, to_array(u)); }));
  });
  add("GET", v4 + "/users/{user_id}/teams/{team_id}/unread", true, [&app](const C& c) {
    app.teams_unread(c->session, c->user_param(), c->params["team_id"], "",
                     c->then<std::vector<app::TeamUnread>>([c](const std::vector<app::TeamUnread>& u) {
                       if (u.empty()) return c->error(app::not_found("team member"));
                       c->json(200, u[0].to_json());
                     }));
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
