// Routes: posts.
#include "server/api/api_internal.h"

namespace chorus::api {

void Api::routes_posts() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

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
    if (auto it = b->o.find("file_ids"); it != b->o.end() && !it->value().is_null()) {
      if (!it->value().is_array()) return c->error(app::bad_param("file_ids"));
      for (const auto& id : it->value().as_array()) {
        if (!id.is_string()) return c->error(app::bad_param("file_ids"));
        p.file_ids.emplace_back(id.as_string());
      }
    }
    if (c->bad_type(*b)) return;
    app.create_post(c->session, p, c->then<app::Post>([c](const app::Post& post) { c->json(201, post.to_json()); }));
  });
  add("GET", v4 + "/posts/{post_id}", true, [&app](const C& c) {
    app.get_post(c->session, c->params["post_id"],
                 c->then<app::Post>([c](const app::Post& p) { c->json(200, p.to_json()); }));
  });
  // Edits: PUT /posts/{id}/patch changes what the body names; PUT /posts/{id} takes the whole post (its
  // id must be the path's) and changes its message and props.
  auto patch_from = [](const C& c, app::App::PostPatch& patch, bool whole) {
    auto b = c->body_object();
    if (!b) return false;
    if (whole && b->str("id") != c->params["post_id"]) {
      c->error(app::bad_param("id"));
      return false;
    }
    if (whole || b->o.contains("message")) patch.message = b->str("message");
    if (auto it = b->o.find("props"); it != b->o.end() && !it->value().is_null()) {
      if (!it->value().is_object()) {
        c->error(app::bad_param("props"));
        return false;
      }
      patch.props = json::serialize(it->value());
    }
    if (!whole && b->o.contains("is_pinned")) patch.is_pinned = b->boolean("is_pinned");
    return !c->bad_type(*b);
  };
  add("PUT", v4 + "/posts/{post_id}/patch", true, [&app, patch_from](const C& c) {
    app::App::PostPatch patch;
    if (!patch_from(c, patch, false)) return;
    app.patch_post(c->session, c->params["post_id"], std::move(patch),
                   c->then<app::Post>([c](const app::Post& p) { c->json(200, p.to_json()); }));
  });
  add("PUT", v4 + "/posts/{post_id}", true, [&app, patch_from](const C& c) {
    app::App::PostPatch patch;
    if (!patch_from(c, patch, true)) return;
    app.patch_post(c->session, c->params["post_id"], std::move(patch),
                   c->then<app::Post>([c](const app::Post& p) { c->json(200, p.to_json()); }));
  });
  add("DELETE", v4 + "/posts/{post_id}", true, [&app](const C& c) {
    app.delete_post(c->session, c->params["post_id"], c->then<app::Post>([c](const app::Post&) { c->respond(ok_status()); }));
  });
  for (const bool pin : {true, false})
    add("POST", v4 + "/posts/{post_id}/" + (pin ? "pin" : "unpin"), true, [&app, pin](const C& c) {
      app::App::PostPatch patch;
      patch.is_pinned = pin;
      app.patch_post(c->session, c->params["post_id"], std::move(patch),
                     c->then<app::Post>([c](const app::Post&) { c->respond(ok_status()); }));
    });
  add("GET", v4 + "/posts/{post_id}/thread", true, [&app](const C& c) {
    app.get_thread(c->session, c->params["post_id"],
                   c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });
  add("GET", v4 + "/channels/{channel_id}/pinned", true, [&app](const C& c) {
    app.pinned_posts(c->session, c->params["channel_id"],
                     c->then<app::PostList>([c](const app::PostList& l) { c->json(200, post_list_json(l)); }));
  });

  // Reactions. The apps remove one with the real user id in the path (not "me").
  add("POST", v4 + "/reactions", true, [&app](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    app::Reaction r;
    r.user_id = b->str("user_id");
    r.post_id = b->str("post_id");
    r.emoji_name = b->str("emoji_name");
    if (c->bad_type(*b)) return;
    app.save_reaction(c->session, r, c->then<app::Reaction>([c](const app::Reaction& x) { c->json(200, x.to_json()); }));
  });
  add("DELETE", v4 + "/users/{user_id}/posts/{post_id}/reactions/{emoji_name}", true, [&app](const C& c) {
    app::Reaction r;
    r.user_id = c->user_param();
    r.post_id = c->params["post_id"];
    r.emoji_name = c->params["emoji_name"];
    app.delete_reaction(c->session, r, c->then<app::Unit>([c](app::Unit) { c->respond(ok_status()); }));
  });
  add("POST", v4 + "/posts/ids/reactions", true, [&app](const C& c) {
    auto ids = c->body_strings();
    if (!ids) return;
    app.reactions_for_posts(c->session, *ids,
                            c->then<std::map<std::string, std::vector<app::Reaction>>>(
                                [c](const std::map<std::string, std::vector<app::Reaction>>& m) {
                                  json::object out;
                                  for (const auto& [id, list] : m) out[id] = to_array(list);
                                  c->json(200, out);
                                }));
  });
  add("GET", v4 + "/posts/{post_id}/reactions", true, [&app](const C& c) {
    app.get_reactions(c->session, c->params["post_id"], c->then<std::vector<app::Reaction>>(
                                                            [c](const std::vector<app::Reaction>& l) { c->json(200, to_array(l)); }));
  });
}

}  // namespace chorus::api
