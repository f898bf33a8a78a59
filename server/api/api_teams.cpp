// Routes: teams, their members and channels, post search.
#include "server/api/api_internal.h"

namespace chorus::api {

void Api::routes_teams() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

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
    const auto [page, per_page] = query_paging(c->request);
    app.team_members(c->session, c->params["team_id"], page, per_page,
                     c->then<std::vector<app::TeamMember>>(
                         [c](const std::vector<app::TeamMember>& m) { c->json(200, to_array(m)); }));
  });
  add("DELETE", v4 + "/teams/{team_id}/members/{user_id}", true, [&app](const C& c) {
    app.remove_team_member(c->session, c->params["team_id"], c->user_param(),
                           c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
  add("GET", v4 + "/teams/{team_id}/channels", true, [&app](const C& c) {
    const auto [page, per_page] = query_paging(c->request);
    app.public_channels(
        c->session, c->params["team_id"], page, per_page,
        c->then<std::vector<app::Channel>>([c](const std::vector<app::Channel>& ch) { c->json(200, to_array(ch)); }));
  });
  add("GET", v4 + "/teams/name/{team_name}/channels/name/{channel_name}", true, [&app](const C& c) {
    const std::string channel = c->params["channel_name"];
    app.get_team_by_name(c->session, c->params["team_name"], c->then<app::Team>([c, &app, channel](const app::Team& t) {
      app.get_channel_by_name(c->session, t.id, channel,
                              c->then<app::Channel>([c](const app::Channel& ch) { c->json(200, ch.to_json()); }));
    }));
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
}

}  // namespace chorus::api
