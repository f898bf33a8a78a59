// Routes: channels, their members and posts.
#include "server/api/api_internal.h"

namespace chorus::api {

void Api::routes_channels() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

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
}

}  // namespace chorus::api
