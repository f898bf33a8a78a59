// Routes: the HA console, System Console > Environment > High Availability as the HA guide names it. Every
// node serves the page, its script and its style sheet (server/api/console/, compiled in by embed.cmake)
// without a session: the page logs in itself and calls the admin routes (cluster status, database, jobs,
// config reload, database recycle) with its token, so an operator can open it on any node directly.
// Never cached, never framed, and no inline script or style (the Content-Security-Policy forbids them).
#include "server/api/api_internal.h"
#include "server/api/console_assets.h"

namespace chorus::api {

namespace {

Response console_asset(std::string_view body, const char* content_type) {
  Response r;
  r.status = 200;
  r.headers = {{"Content-Type", content_type},
               {"Cache-Control", "no-store"},
               {"X-Frame-Options", "DENY"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"}};
  r.body = std::string(body);
  return r;
}

}  // namespace

void Api::routes_console() {
  using C = std::shared_ptr<Call>;
  add("GET", "/admin/ha", false, [](const C& c) {
    // "/admin/ha/" and "/admin//ha" match this route too (empty segments are dropped), but there the page's
    // relative URLs (ha.js, ../api/v4/) would miss: send the browser to the page's own address.
    if (c->request.path != "/admin/ha") {
      Response r;
      r.status = 308;
      r.headers = {{"Location", "/admin/ha"}, {"Cache-Control", "no-store"}};
      return c->respond(std::move(r));
    }
    c->respond(console_asset(kConsoleHtml, "text/html; charset=utf-8"));
  });
  add("GET", "/admin/ha.js", false,
      [](const C& c) { c->respond(console_asset(kConsoleJs, "text/javascript; charset=utf-8")); });
  add("GET", "/admin/ha.css", false,
      [](const C& c) { c->respond(console_asset(kConsoleCss, "text/css; charset=utf-8")); });
}

}  // namespace chorus::api
