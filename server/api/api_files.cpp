// Routes: files. Uploads as multipart/form-data (the apps: `files` parts, `channel_id` and `client_ids`
// fields) or as one raw body with ?channel_id=&filename= (Mattermost's simple upload); downloads of the
// file, its thumbnail and preview, and its info.
#include "server/api/api_internal.h"
#include "server/api/multipart.h"

namespace chorus::api {

namespace {

// A filename for Content-Disposition: quoted, with what cannot be in a quoted string replaced, and the
// UTF-8 name in filename* (RFC 6266).
std::string disposition(const std::string& kind, const std::string& name) {
  std::string ascii, encoded;
  static const char* digits = "0123456789ABCDEF";
  for (unsigned char c : name) {
    ascii += (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '_' : static_cast<char>(c);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += digits[c >> 4];
      encoded += digits[c & 15];
    }
  }
  return kind + "; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

}  // namespace

void Api::routes_files() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  const std::string v4 = "/api/v4";

  add("POST", v4 + "/files", true, [&app](const C& c) {
    std::string channel_id = c->request.query.count("channel_id") ? c->request.query.at("channel_id") : "";
    std::vector<app::App::Upload> files;
    std::vector<std::string> client_ids;
    const std::string content_type(c->request.header("content-type"));
    if (content_type.rfind("multipart/", 0) == 0) {
      const std::string boundary = multipart_boundary(content_type);
      if (boundary.empty())
        return c->error(AppError{400, "api.file.upload_file.incorrect_content_type.app_error",
                                 "The Content-Type must be multipart/form-data with a boundary.", content_type});
      Multipart m = parse_multipart(c->request.body, boundary);
      if (!m.error.empty())
        return c->error(AppError{400, "api.file.upload_file.read_request.app_error",
                                 "Unable to read the multipart body.", m.error});
      for (auto& p : m.parts) {
        if (p.name == "channel_id" && !p.is_file) channel_id = p.data;
        else if (p.name == "client_ids" && !p.is_file) client_ids.push_back(p.data);
        else if (p.name == "files" && p.is_file) files.push_back(app::App::Upload{p.filename, std::move(p.data)});
      }
    } else {
      // The simple upload: the body is the file.
      const std::string name = c->request.query.count("filename") ? c->request.query.at("filename") : "";
      if (name.empty())
        return c->error(AppError{400, "api.file.upload_file.incorrect_content_type.app_error",
                                 "Send multipart/form-data, or the file as the body with ?channel_id=&filename=."});
      files.push_back(app::App::Upload{name, std::move(c->request.body)});
      if (c->request.query.count("client_id")) client_ids.push_back(c->request.query.at("client_id"));
    }
    if (!client_ids.empty() && client_ids.size() != files.size())
      return c->error(app::bad_param("client_ids"));
    app.upload_files(c->session, channel_id, std::move(files),
                     c->then<std::vector<app::FileInfo>>([c, client_ids](const std::vector<app::FileInfo>& infos) {
                       json::array ids;
                       for (const auto& id : client_ids) ids.emplace_back(id);
                       c->json(201, json::object{{"file_infos", to_array(infos)}, {"client_ids", ids}});
                     }));
  });
  add("GET", v4 + "/posts/{post_id}/files/info", true, [&app](const C& c) {
    app.get_post(c->session, c->params["post_id"],
                 c->then<app::Post>([c](const app::Post& p) { c->json(200, to_array(p.files)); }));
  });
  add("GET", v4 + "/files/{file_id}/info", true, [&app](const C& c) {
    app.get_file_info(c->session, c->params["file_id"],
                      c->then<app::FileInfo>([c](const app::FileInfo& f) { c->json(200, f.to_json()); }));
  });
  using V = app::App::FileVariant;
  for (const auto& route :
       {std::pair{std::string(""), V::original}, std::pair{std::string("/thumbnail"), V::thumbnail},
        std::pair{std::string("/preview"), V::preview}}) {
    const V variant = route.second;  // (a structured binding cannot be captured before C++20 in clang 14)
    add("GET", v4 + "/files/{file_id}" + route.first, true, [&app, variant](const C& c) {
      const bool download = c->request.query.count("download") && c->request.query.at("download") == "1";
      app.get_file(c->session, c->params["file_id"], variant,
                   c->then<std::pair<app::FileInfo, std::string>>(
                       [c, variant, download](const std::pair<app::FileInfo, std::string>& f) {
                         Response r;
                         r.status = 200;
                         const bool original = variant == V::original;
                         r.headers.emplace_back("Content-Type", original ? f.first.mime_type : "image/jpeg");
                         // Never rendered as a page of this origin (a file is the user's content).
                         r.headers.emplace_back("X-Content-Type-Options", "nosniff");
                         r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; sandbox");
                         r.headers.emplace_back("Cache-Control", "max-age=2592000, private");
                         const bool inline_ok = !download && f.first.mime_type.rfind("image/", 0) == 0 &&
                                                f.first.mime_type != "image/svg+xml";
                         if (original)
                           r.headers.emplace_back("Content-Disposition",
                                                  disposition(inline_ok ? "inline" : "attachment", f.first.name));
                         r.body = f.second;
                         c->respond(std::move(r));
                       }));
    });
  }
}

}  // namespace chorus::api
