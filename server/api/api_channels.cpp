// Routes: channels, their members and posts; direct and group channels; views and unread; the sidebar's
// categories.
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
    const auto [page, per_page] = query_paging(c->request);
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
    const Paging paging = query_paging(c->request);
    q.page = paging.page;
    q.per_page = paging.per_page;
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
    if (bad) return c->error(app::bad_param("since"));
    app.get_posts(c->session, c->params["channel_id"], q,
                  c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });

  // Direct and group channels.
  add("POST", v4 + "/channels/direct", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    if (ids->size() != 2)
      return c->error(AppError{400, "api.context.invalid_body_param.app_error",
                               "Invalid or missing user_ids in request body: two user ids are needed."});
    app.create_direct_channel(c->session, (*ids)[0], (*ids)[1],
                              c->then<app::Channel>([c](const app::Channel& ch) { c->json(201, ch.to_json()); }));
  });
  add("POST", v4 + "/channels/group", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.create_group_channel(c->session, *ids,
                             c->then<app::Channel>([c](const app::Channel& ch) { c->json(201, ch.to_json()); }));
  });

  // Reading a channel.
  add("POST", v4 + "/channels/members/{user_id}/view", true, [&app](const C& c) {
    if (c->user_param() != c->session.user_id) return c->error(app::forbidden());
    auto b = c->body_object();
    if (!b) return;
    const std::string channel = b->str("channel_id"), prev = b->str("prev_channel_id");
    if (c->bad_type(*b)) return;
    app.view_channels(c->session, channel, prev,
                      c->then<std::vector<std::pair<std::string, int64_t>>>(
                          [c](const std::vector<std::pair<std::string, int64_t>>& times) {
                            json::object t;
                            for (const auto& [id, at] : times) t[id] = at;
                            c->json(200, json::object{{"status", "OK"}, {"last_viewed_at_times", t}});
                          }));
  });
  add("GET", v4 + "/channels/{channel_id}/members/{user_id}", true, [&app](const C& c) {
    app.channel_member(c->session, c->params["channel_id"], c->user_param(),
                       c->then<app::ChannelMember>([c](const app::ChannelMember& m) { c->json(200, m.to_json()); }));
  });
  add("GET", v4 + "/channels/{channel_id}/stats", true, [&app](const C& c) {
    const std::string id = c->params["channel_id"];
    app.channel_member_count(c->session, id, c->then<int64_t>([&app, c, id](const int64_t& n) {
      app.pinned_posts(c->session, id, c->then<app::PostList>([c, id, n](const app::PostList& pinned) {
        c->json(200, json::object{{"channel_id", id},
                                  {"member_count", n},
                                  {"guest_count", 0},
                                  {"pinnedpost_count", pinned.posts.size()},
                                  {"files_count", 0}});
      }));
    }));
  });
  add("GET", v4 + "/users/{user_id}/channels", true, [&app](const C& c) {
    app.channels_for_user(
        c->session, c->user_param(), "",
        c->then<std::vector<app::Channel>>([c](const std::vector<app::Channel>& ch) { c->json(200, to_array(ch)); }));
  });
  add("GET", v4 + "/users/{user_id}/channel_members", true, [&app](const C& c) {
    const auto [page, per_page] = query_paging(c->request, 200, 1000);
    app.channel_members_for_user(c->session, c->user_param(), "",
                                 c->then<std::vector<app::ChannelMember>>(
                                     [c](const std::vector<app::ChannelMember>& m) { c->json(200, to_array(m)); }),
                                 page, per_page);
  });
  add("GET", v4 + "/users/{user_id}/channels/{channel_id}/posts/unread", true, [&app](const C& c) {
    bool bad = false;
    const int before = query_int(c->request, "limit_before", 60, 0, 200, bad),
              after = query_int(c->request, "limit_after", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("limit_before or limit_after"));
    app.posts_around_last_read(c->session, c->user_param(), c->params["channel_id"], before, after,
                               c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });

  // The sidebar's categories.
  const std::string categories = v4 + "/users/{user_id}/teams/{team_id}/channels/categories";
  auto category_of = [](Body& b) {
    app::SidebarCategory k;
    k.id = b.str("id");
    k.display_name = b.str("display_name");
    k.sorting = b.str("sorting");
    k.muted = b.boolean("muted");
    k.collapsed = b.boolean("collapsed");
    if (auto it = b.o.find("channel_ids"); it != b.o.end() && !it->value().is_null()) {
      if (!it->value().is_array()) {
        if (b.bad.empty()) b.bad = "channel_ids";
      } else {
        for (const auto& e : it->value().as_array()) {
          if (!e.is_string()) {
            if (b.bad.empty()) b.bad = "channel_ids";
            break;
          }
          k.channel_ids.emplace_back(e.as_string());
        }
      }
    }
    return k;
  };
  auto categories_json = [](const std::vector<app::SidebarCategory>& list) {
    json::array a;
    for (const auto& k : list) a.push_back(k.to_json());
    return a;
  };
  add("GET", categories, true, [&app, categories_json](const C& c) {
    app.get_categories(c->session, c->user_param(), c->params["team_id"],
                       c->then<app::SidebarCategories>([c, categories_json](const app::SidebarCategories& s) {
                         json::array order;
                         for (const auto& id : s.order) order.emplace_back(id);
                         c->json(200, json::object{{"categories", categories_json(s.categories)}, {"order", order}});
                       }));
  });
  add("POST", categories, true, [&app, category_of](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::SidebarCategory k = category_of(*b);
    if (c->bad_type(*b)) return;
    app.create_category(c->session, c->user_param(), c->params["team_id"], k,
                        c->then<app::SidebarCategory>([c](const app::SidebarCategory& k) { c->json(201, k.to_json()); }));
  });
  add("PUT", categories, true, [&app, category_of, categories_json](const C& c) {
    boost::system::error_code ec;
    auto v = json::parse(c->request.body, ec);
    if (ec || !v.is_array())
      return c->error(AppError{400, "api.context.invalid_body_param.app_error",
                               "Invalid or missing categories in request body: a JSON array was expected."});
    std::vector<app::SidebarCategory> list;
    for (const auto& e : v.as_array()) {
      if (!e.is_object()) return c->error(app::bad_param("categories"));
      Body b{e.as_object(), ""};
      list.push_back(category_of(b));
      if (c->bad_type(b)) return;
    }
    app.update_categories(c->session, c->user_param(), c->params["team_id"], std::move(list),
                          c->then<std::vector<app::SidebarCategory>>(
                              [c, categories_json](const std::vector<app::SidebarCategory>& u) {
                                c->json(200, categories_json(u));
                              }));
  });
  add("GET", categories + "/order", true, [&app](const C& c) {
    app.get_categories(c->session, c->user_param(), c->params["team_id"],
                       c->then<app::SidebarCategories>([c](const app::SidebarCategories& s) {
                         json::array order;
                         for (const auto& id : s.order) order.emplace_back(id);
                         c->json(200, order);
                       }));
  });
  add("PUT", categories + "/order", true, [&app](const C& c) {
    auto order = c->body_strings();
    if (!order) return;
    app.update_category_order(c->session, c->user_param(), c->params["team_id"], *order,
                              c->then<std::vector<std::string>>([c](const std::vector<std::string>& o) {
                                json::array a;
                                for (const auto& id : o) a.emplace_back(id);
                                c->json(200, a);
                              }));
  });
  add("GET", categories + "/{category_id}", true, [&app](const C& c) {
    const std::string id = c->params["category_id"];
    app.get_categories(c->session, c->user_param(), c->params["team_id"],
                       c->then<app::SidebarCategories>([c, id](const app::SidebarCategories& s) {
                         for (const auto& k : s.categories)
                           if (k.id == id) return c->json(200, k.to_json());
                         c->error(app::not_found("category"));
                       }));
  });
  add("PUT", categories + "/{category_id}", true, [&app, category_of](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::SidebarCategory k = category_of(*b);
    if (c->bad_type(*b)) return;
    if (!k.id.empty() && k.id != c->params["category_id"]) return c->error(app::bad_param("id"));
    k.id = c->params["category_id"];
    app.update_categories(c->session, c->user_param(), c->params["team_id"], {k},
                          c->then<std::vector<app::SidebarCategory>>(
                              [c](const std::vector<app::SidebarCategory>& u) {
                                if (u.empty()) return c->error(app::not_found("category"));  // deleted meanwhile
                                c->json(200, u.front().to_json());
                              }));
  });
  add("DELETE", categories + "/{category_id}", true, [&app](const C& c) {
    app.delete_category(c->session, c->user_param(), c->params["team_id"], c->params["category_id"],
                        c->then<app::Unit>([c](const app::Unit&) { c->respond(ok_status()); }));
  });
}

}  // namespace chorus::api
