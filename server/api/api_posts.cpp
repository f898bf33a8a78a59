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
    if (c->bad_type(*b)) return;
    app.create_post(c->session, p, c->then<app::Post>([c](const app::Post& post) { c->json(201, post.to_json()); }));
  });
  add("GET", v4 + "/posts/{post_id}", true, [&app](const C& c) {
    app.get_post(c->session, c->params["post_id"],
                 c->then<app::Post>([c](const app::Post& p) { c->json(200, p.to_json()); }));
  });
}

}  // namespace chorus::api
