// HTTP requests through the API (server/api: Api::handle): authentication (bearer header, Token scheme,
// cookie with the CSRF rule, access_token), routing of Mattermost's v4 paths, the JSON bodies and query
// parameters of every route, down to the app and the database, on one simulated node (sim_world.h).
//
// Input: up to 8 requests separated by "#~#" (fuzz_input.h), each written as on the wire, without the
// version:
//     POST /api/v4/posts?x=1
//     Authorization: Bearer $A
//     X-Requested-With: XMLHttpRequest
//
//     {"channel_id":"$CH","message":"hi"}
// The target is split and percent-decoded by the runtime's own decoder (server/core/url.h; a path
// that does not decode is answered 400 there and never reaches the API); header names are lower-cased.
// The placeholders of sim_world.h ($A, $B, $UA, $UB, $T, $CH, $CP, $P) are replaced everywhere.
//
// Properties besides the sanitizers and the code's own assertions: every request is answered exactly once,
// within 30 s of virtual time; the status is an HTTP status; the answer carries X-Version-Id; and when the
// request is valid UTF-8, a JSON answer is valid JSON (UTF-8) and an error is Mattermost's error object
// with its status code.
#include "fuzz_input.h"
#include "server/core/url.h"
#include "sim_world.h"

using namespace chorus;
using namespace chorus::fuzz;
namespace json = boost::json;

namespace {

// A request as text, or nullopt when the runtime would not hand it to the API.
std::optional<api::Request> parse_request(const std::string& text) {
  api::Request r;
  size_t pos = 0;
  auto next_line = [&](std::string& line) {
    if (pos >= text.size()) return false;
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    pos = nl + 1;
    return true;
  };
  std::string line;
  if (!next_line(line)) return std::nullopt;
  const size_t sp = line.find(' ');
  r.method = line.substr(0, sp);
  std::string target = sp == std::string::npos ? "/" : line.substr(sp + 1);
  if (const size_t sp2 = target.find(' '); sp2 != std::string::npos) target.resize(sp2);  // " HTTP/1.1"
  const size_t q = target.find('?');
  const std::string raw_path = target.substr(0, q);
  if (raw_path.empty() || raw_path[0] != '/' || !percent_decode(raw_path, false, false, r.path)) return std::nullopt;
  if (q != std::string::npos) {
    parse_query(std::string_view(target).substr(q + 1), r.query);  // the runtime's own decoder
  }
  while (next_line(line) && !line.empty()) {
    const size_t colon = line.find(':');
    std::string name = line.substr(0, colon), value = colon == std::string::npos ? "" : line.substr(colon + 1);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  if (pos < text.size()) r.body = text.substr(pos);
  r.remote = "192.0.2.7:40000";
  return r;
}

void check_response(const api::Response& resp, bool check_json) {
  if (resp.status < 100 || resp.status > 599) property_failed("not an HTTP status", std::to_string(resp.status));
  bool version = false, is_json = false;
  for (const auto& [k, v] : resp.headers) {
    version |= k == "X-Version-Id";
    is_json |= k == "Content-Type" && v == "application/json";
  }
  if (!version) property_failed("no X-Version-Id");
  if (!check_json || !is_json) return;
  boost::system::error_code ec;
  auto v = json::parse(resp.body, ec);
  if (ec) property_failed("a JSON answer that is not JSON", resp.body);
  if (resp.status >= 400) {
    const auto* o = v.if_object();
    const auto* code = o ? o->if_contains("status_code") : nullptr;
    if (!o || !o->contains("id") || !o->contains("message") || !code || !code->is_int64() ||
        code->as_int64() != resp.status)
      property_failed("an error that is not Mattermost's error object", resp.body);
  }
}

std::string req(std::string_view method_target, std::string_view body = "", std::string_view token = "$A",
                std::string_view extra_headers = "") {
  std::string s(method_target);
  s += "\n";
  if (!token.empty()) s += "Authorization: Bearer " + std::string(token) + "\n";
  s += "X-Requested-With: XMLHttpRequest\n";
  s += extra_headers;
  s += "\n";
  s += body;
  return s;
}

void write_seeds(SeedWriter& w) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"ping", req("GET /api/v4/system/ping?get_server_status=true&use_rest_semantics=true", "", "")},
      {"cluster-status", req("GET /api/v4/cluster/status")},
      {"config", InputBuilder()
                     .step(req("GET /api/v4/config"))
                     .step(req("PUT /api/v4/config/patch", R"({"TeamSettings":{"MaxUsersPerTeam":100}})"))
                     .step(req("PUT /api/v4/config", R"({"ServiceSettings":{"SessionCacheInMinutes":5}})"))
                     .step(req("POST /api/v4/config/reload"))
                     .str()},
      {"recycle-analytics", InputBuilder()
                                .step(req("POST /api/v4/database/recycle"))
                                .step(req("GET /api/v4/analytics/old?name=standard"))
                                .str()},
      {"jobs", InputBuilder()
                   .step(req("POST /api/v4/jobs", R"({"type":"data_retention","data":{"k":"v"}})"))
                   .step(req("GET /api/v4/jobs?page=0&per_page=10"))
                   .step(req("GET /api/v4/jobs/type/data_retention"))
                   .step(req("GET /api/v4/jobs/$P"))
                   .step(req("POST /api/v4/jobs/$P/cancel"))
                   .str()},
      {"users", InputBuilder()
                    .step(req("POST /api/v4/users",
                              R"({"username":"carol","email":"carol@example.com","password":"password-carol",)"
                              R"("first_name":"Carol","last_name":"C","nickname":"cc","locale":"en"})"))
                    .step(req("GET /api/v4/users?page=0&per_page=60"))
                    .step(req("POST /api/v4/users/ids", R"(["$UA","$UB"])"))
                    .step(req("GET /api/v4/users/username/bob"))
                    .step(req("GET /api/v4/users/me"))
                    .step(req("GET /api/v4/users/$UB/teams", "", "$B"))
                    .step(req("GET /api/v4/users/me/teams/members"))
                    .step(req("GET /api/v4/users/me/teams/$T/channels"))
                    .str()},
      {"login-logout", InputBuilder()
                           .step(req("POST /api/v4/users/login", R"({"login_id":"alice","password":"password-alice"})", ""))
                           .step(req("POST /api/v4/users/login",
                                     R"({"login_id":"bob@example.com","password":"wrong","deviceId":"d1"})", ""))
                           .step(req("POST /api/v4/users/logout", "", "$B"))
                           .step(req("GET /api/v4/users/me", "", "$B"))
                           .str()},
      {"password", req("PUT /api/v4/users/me/password",
                       R"({"current_password":"password-bob","new_password":"password-bob-2"})", "$B")},
      {"status", InputBuilder()
                     .step(req("GET /api/v4/users/me/status"))
                     .step(req("PUT /api/v4/users/me/status", R"({"user_id":"$UA","status":"dnd"})"))
                     .step(req("POST /api/v4/users/status/ids", R"(["$UA","$UB"])"))
                     .step(req("GET /api/v4/users/$UA/teams/$T/channels/members"))
                     .str()},
      {"teams", InputBuilder()
                    .step(req("POST /api/v4/teams", R"({"name":"ops","display_name":"Ops","type":"I",)"
                                                    R"("description":"d","email":"ops@example.com","allow_open_invite":true})"))
                    .step(req("GET /api/v4/teams"))
                    .step(req("GET /api/v4/teams/$T"))
                    .step(req("GET /api/v4/teams/name/eng"))
                    .step(req("GET /api/v4/teams/$T/members?page=0&per_page=2"))
                    .step(req("DELETE /api/v4/teams/$T/members/$UB"))
                    .step(req("POST /api/v4/teams/$T/members", R"({"team_id":"$T","user_id":"$UB"})"))
                    .str()},
      {"channels", InputBuilder()
                       .step(req("POST /api/v4/channels",
                                 R"({"team_id":"$T","name":"random","display_name":"Random","type":"O",)"
                                 R"("header":"h","purpose":"p"})"))
                       .step(req("GET /api/v4/channels/$CH"))
                       .step(req("GET /api/v4/teams/$T/channels?page=0"))
                       .step(req("GET /api/v4/teams/$T/channels/name/general"))
                       .step(req("GET /api/v4/channels/$CH/members?per_page=1"))
                       .step(req("POST /api/v4/channels/$CP/members", R"({"user_id":"$UB"})"))
                       .step(req("DELETE /api/v4/channels/$CH/members/me", "", "$B"))
                       .str()},
      {"posts", InputBuilder()
                    .step(req("POST /api/v4/posts", R"({"channel_id":"$CH","message":"hi #fuzz","root_id":"$P",)"
                                                    R"("pending_post_id":"pp1","props":{"attachments":[]}})"))
                    .step(req("GET /api/v4/posts/$P"))
                    .step(req("GET /api/v4/channels/$CH/posts?page=0&per_page=5&since=0"))
                    .step(req("GET /api/v4/channels/$CH/posts?before=$P&after=$P"))
                    .step(req("POST /api/v4/teams/$T/posts/search",
                              R"({"terms":"hello world","is_or_search":true,"page":0,"per_page":20})", "$B"))
                    .str()},
      {"conversations", InputBuilder()
                            .step(req("PUT /api/v4/posts/$P/patch", R"({"message":"edited","is_pinned":true,"props":{}})"))
                            .step(req("PUT /api/v4/posts/$P", R"({"id":"$P","message":"whole"})"))
                            .step(req("POST /api/v4/posts/$P/pin"))
                            .step(req("POST /api/v4/reactions", R"({"user_id":"$UB","post_id":"$P","emoji_name":"+1"})", "$B"))
                            .step(req("GET /api/v4/posts/$P/reactions"))
                            .step(req("POST /api/v4/posts/ids/reactions", R"(["$P"])"))
                            .step(req("DELETE /api/v4/users/$UB/posts/$P/reactions/+1", "", "$B"))
                            .step(req("POST /api/v4/posts", R"({"channel_id":"$CH","message":"@bob @channel","root_id":"$P"})"))
                            .step(req("GET /api/v4/posts/$P/thread"))
                            .step(req("GET /api/v4/channels/$CH/pinned"))
                            .step(req("DELETE /api/v4/posts/$P"))
                            .str()},
      {"files", InputBuilder()
                    .step("POST /api/v4/files\nAuthorization: Bearer $A\n"
                          "Content-Type: multipart/form-data; boundary=XyZ\n\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\n$CH\r\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"client_ids\"\r\n\r\nc1\r\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n"
                          "Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n")
                    .step("POST /api/v4/files?channel_id=$CH&filename=b.png\nAuthorization: Bearer $A\n\n"
                          "\x89PNG\r\n\x1a\nnot really a png")
                    .step(req("POST /api/v4/posts", R"({"channel_id":"$CH","message":"","file_ids":["$P"]})"))
                    .step(req("GET /api/v4/files/$P"))
                    .step(req("GET /api/v4/files/$P/thumbnail"))
                    .step(req("GET /api/v4/files/$P/preview?download=1"))
                    .step(req("GET /api/v4/files/$P/info"))
                    .step(req("GET /api/v4/posts/$P/files/info"))
                    .str()},
      {"auth-forms", InputBuilder()
                         .step("GET /api/v4/users/me\nAuthorization: Token $B\n\n")
                         .step("GET /api/v4/users/me?access_token=$A\n\n")
                         .step("POST /api/v4/posts\nCookie: MMAUTHTOKEN=$A; MMCSRF=abc\nX-CSRF-Token: abc\n\n"
                               R"({"channel_id":"$CH","message":"from the cookie"})")
                         .step("POST /api/v4/posts\nCookie: MMAUTHTOKEN=$A\n\n{}")
                         .step("GET /api/v4/nowhere%2Fat%20all?x=%41+b\n\n")
                         .str()},
  };
  for (const auto& [name, text] : seeds) w.add(name, text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_http", write_seeds);
  SimWorld::get();  // built before the first input, outside its time
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& world = SimWorld::get();
  world.reset();
  for (auto step : split_steps({data, size}, 8)) {
    const std::string text = world.substitute(as_string(step));
    auto request = parse_request(text);
    if (!request) continue;
    const bool utf8 = valid_utf8(text);
    int answers = 0;
    auto resp = world.call(std::move(*request), Duration{30'000'000}, &answers);
    if (!resp) property_failed("no answer within 30 s", text.substr(0, 200));
    if (answers != 1) property_failed("answered more than once");
    check_response(*resp, utf8);
  }
  world.restore_config();
  return 0;
}
