// Routes: the health check, the cluster's status, the config, jobs and analytics.
#include "server/api/api_internal.h"
#include "server/app/roles.h"

#include <cstdio>
#include <cstring>

namespace chorus::api {

namespace {

json::array cluster_status_json(const NodeControl& node) {
  json::array rows;
  for (const auto& n : node.cluster_status()) {
    json::array restart;
    for (const auto& s : n.restart_required) restart.emplace_back(s);
    rows.push_back(json::object{{"id", n.id},
                                {"version", n.version},
                                {"schema_version", n.schema_version},
                                {"config_hash", n.config_hash},
                                {"ipaddress", n.ipaddress},
                                {"hostname", n.hostname},
                                {"status", n.green ? "green" : "red"},
                                {"reason", n.reason},
                                {"state", n.state},
                                {"leader", n.leader},
                                {"last_seen", n.last_seen},
                                {"restart_required", std::move(restart)}});
  }
  return rows;
}

json::object database_json(const NodeControl& node) {
  json::array servers;
  for (const auto& s : node.database_status())
    servers.push_back(json::object{
        {"role", s.role},
        {"name", s.name},
        {"online", s.online},
        {"reads", s.reads},
        {"failures", s.failures},
        {"pool", json::object{{"open", s.open},
                              {"idle", s.idle},
                              {"busy", s.busy},
                              {"waiting", s.waiting},
                              {"opened", s.opened},
                              {"closed", s.closed},
                              {"connect_failures", s.connect_failures},
                              {"requests", s.requests},
                              {"waited", s.waited},
                              {"rejected", s.rejected}}}});
  return json::object{{"driver", node.database_driver()}, {"servers", std::move(servers)}};
}

// A tar archive (POSIX ustar) of the files, for the support packet: no compression library needed, and
// `tar xf` opens it anywhere.
std::string tar_archive(const std::vector<std::pair<std::string, std::string>>& files, int64_t mtime_seconds) {
  std::string out;
  for (const auto& [name, content] : files) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.substr(0, 99).c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(content.size()));
    std::snprintf(h + 136, 12, "%011llo", static_cast<unsigned long long>(mtime_seconds));
    h[156] = '0';
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char ch : h) sum += ch;
    std::snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    out.append(h, sizeof h);
    out += content;
    out.append((512 - content.size() % 512) % 512, '\0');
  }
  out.append(1024, '\0');
  return out;
}

}  // namespace

void Api::routes_system() {
  using C = std::shared_ptr<Call>;
  auto& app = app_;
  auto& node = node_;
  const std::string v4 = "/api/v4";

  add("GET", v4 + "/system/ping", false, [this](const C& c) {
    const bool full =
        c->request.query.contains("get_server_status") && c->request.query.at("get_server_status") == "true";
    const bool rest =
        c->request.query.contains("use_rest_semantics") && c->request.query.at("use_rest_semantics") == "true";
    auto answer = [c, rest](bool healthy, json::object extra,
                            std::vector<std::pair<std::string, std::string>> headers) {
      extra["status"] = healthy ? "OK" : "UNHEALTHY";
      extra["ActiveSearchBackend"] = "database";
      Response r = json_response(healthy || rest ? 200 : 500, json::serialize(extra));
      for (auto& h : headers) r.headers.push_back(std::move(h));
      c->respond(std::move(r));
    };
    // Cut off by a partition (server/cluster/reach.h): unhealthy, so the load balancer takes it out.
    const std::string cut = node_.cut_off_reason();
    json::object base;
    if (!cut.empty()) base["cluster_status"] = "cut off: " + cut;
    if (!full) return answer(cut.empty(), base, {});
    // The database's error stays in the node's log: this call needs no session, and the text can name
    // hosts, users and databases.
    node_.check_health([this, answer, base, cut](bool db_ok, std::string) {
      // The file store too: a marker written and read back (its error, like the database's, goes to the log).
      app_.check_file_store([this, answer, base, cut, db_ok](std::string files_error) {
        if (!files_error.empty()) env_.log().warn("api: the file store check failed: {}", files_error);
        const char* files = files_error.empty() ? "OK" : "UNHEALTHY";
        json::object extra = base;
        extra["database_status"] = db_ok ? "OK" : "UNHEALTHY";
        extra["filestore_status"] = files;
        answer(db_ok && files_error.empty() && cut.empty(), extra,
               {{"database_status", db_ok ? "OK" : "UNHEALTHY"}, {"filestore_status", files}});
      });
    });
  });
  // What the apps read before anyone logs in (all values strings, as Mattermost's "old" format). Chorus is
  // not licensed (IsLicensed "false": high availability needs no license here), has no collapsed threads,
  // custom emoji or plugins yet, and says so, so the apps hide those features.
  add("GET", v4 + "/config/client", false, [this, &app](const C& c) {
    if (auto f = c->request.query.find("format"); f == c->request.query.end() || f->second != "old")
      return c->error(AppError{501, "api.config.client.old_format.app_error",
                               "New format for the client configuration is not supported yet. Please specify "
                               "format=old in the query string."});
    app.diagnostic_id([this, c, &app](std::string id) {
      if (id.empty())
        return c->error(AppError{503, "api.config.client.diagnostic_id.app_error",
                                 "The database did not answer; the client configuration is not available."});
      const auto& cfg = app.config();
      const auto b = [](bool v) { return std::string(v ? "true" : "false"); };
      json::object o{{"Version", kMattermostApiVersion},
                     {"BuildNumber", "chorus-" + options_.server_version},
                     {"BuildDate", ""},
                     {"BuildHash", "chorus"},
                     {"BuildHashEnterprise", "none"},
                     {"BuildEnterpriseReady", "false"},
                     {"ChorusVersion", options_.server_version},
                     {"DiagnosticId", id},
                     {"TelemetryId", id},
                     {"DiagnosticsEnabled", "false"},
                     {"ServiceEnvironment", "production"},
                     {"SiteURL", cfg.ServiceSettings.SiteURL},
                     {"SiteName", cfg.TeamSettings.SiteName},
                     {"WebsocketURL", ""},
                     {"WebsocketPort", "80"},
                     {"WebsocketSecurePort", "443"},
                     {"EnableReliableWebSockets", "true"},
                     {"EnableSignInWithEmail", "true"},
                     {"EnableSignInWithUsername", "true"},
                     {"EnableSignUpWithEmail", b(cfg.TeamSettings.EnableUserCreation)},
                     {"EnableUserCreation", b(cfg.TeamSettings.EnableUserCreation)},
                     {"EnableOpenServer", b(cfg.TeamSettings.EnableOpenServer)},
                     {"EnableGuestAccounts", "false"},
                     {"EnableLdap", "false"},
                     {"EnableSaml", "false"},
                     {"EnableSignUpWithGitLab", "false"},
                     {"EnableSignUpWithGoogle", "false"},
                     {"EnableSignUpWithOffice365", "false"},
                     {"EnableSignUpWithOpenId", "false"},
                     {"EnableGuestMagicLink", "false"},
                     {"EnableMultifactorAuthentication", "false"},
                     {"EnforceMultifactorAuthentication", "false"},
                     {"PasswordMinimumLength", "8"},
                     {"ExtendSessionLengthWithActivity", "true"},
                     {"CollapsedThreads", "disabled"},
                     {"EnableFileAttachments", cfg.FileSettings.EnableFileAttachments ? "true" : "false"},
                     {"EnableMobileFileUpload", cfg.FileSettings.EnableFileAttachments ? "true" : "false"},
                     {"EnableMobileFileDownload", "true"},
                     {"EnablePublicLink", "false"},
                     {"MaxFileSize", std::to_string(cfg.FileSettings.MaxFileSize)},
                     {"MaxPostSize", "16383"},
                     {"TeammateNameDisplay", "username"},
                     {"LockTeammateNameDisplay", "false"},
                     {"ShowEmailAddress", "true"},
                     {"ShowFullName", "true"},
                     {"RestrictDirectMessage", "any"},
                     {"EnableCustomEmoji", "false"},
                     {"EnableEmojiPicker", "true"},
                     {"EnableGifPicker", "false"},
                     {"EnableLinkPreviews", "false"},
                     {"EnableSVGs", "false"},
                     {"EnableLatex", "false"},
                     {"EnableInlineLatex", "false"},
                     {"EnableCommands", "false"},
                     {"EnableCustomBrand", "false"},
                     {"EnableDeveloper", "false"},
                     {"EnableTesting", "false"},
                     {"PluginsEnabled", "false"},
                     {"AppsPluginEnabled", "false"},
                     {"EnableMarketplace", "false"},
                     {"EnableUserTypingMessages", "true"},
                     {"TimeBetweenUserTypingUpdatesMilliseconds", "5000"},
                     {"EnableChannelViewedMessages", "true"},
                     {"EnableUserStatuses", "true"},
                     {"EnableConfirmNotificationsToChannel", "true"},
                     {"SendEmailNotifications", "false"},
                     {"SendPushNotifications", "false"},
                     {"EnablePreviewFeatures", "true"},
                     {"ExperimentalPrimaryTeam", ""},
                     {"ExperimentalViewArchivedChannels", "false"},
                     {"ExperimentalGroupUnreadChannels", "disabled"},
                     {"PostEditTimeLimit", "-1"},
                     {"DefaultClientLocale", "en"},
                     {"AvailableLocales", ""},
                     {"AllowDownloadLogs", "false"},
                     {"IsLicensed", "false"}};
      c->json(200, o);
    });
  });
  add("GET", v4 + "/license/client", false, [](const C& c) {
    if (auto f = c->request.query.find("format"); f == c->request.query.end() || f->second != "old")
      return c->error(AppError{501, "api.license.client.old_format.app_error",
                               "New format for the client license is not supported yet. Please specify format=old "
                               "in the query string."});
    c->json(200, json::object{{"IsLicensed", "false"}});
  });

  // Roles: the built-in ones (server/app/roles.h).
  add("GET", v4 + "/roles", true, [](const C& c) {
    json::array a;
    for (const auto& r : app::builtin_roles()) a.push_back(r.to_json());
    c->json(200, a);
  });
  add("POST", v4 + "/roles/names", true, [](const C& c) {
    auto names = c->body_strings();
    if (!names) return;
    if (names->size() > 100) return c->error(app::bad_param("role names: 100 at most"));
    json::array a;  // unknown names are left out, as Mattermost does
    for (const auto& n : *names)
      if (const app::Role* r = app::role_by_name(n)) a.push_back(r->to_json());
    c->json(200, a);
  });
  add("GET", v4 + "/roles/name/{role_name}", true, [](const C& c) {
    const app::Role* r = app::role_by_name(c->params["role_name"]);
    if (!r) return c->error(app::not_found("role"));
    c->json(200, r->to_json());
  });
  add("GET", v4 + "/roles/{role_id}", true, [](const C& c) {
    const app::Role* r = app::role_by_id(c->params["role_id"]);
    if (!r) return c->error(app::not_found("role"));
    c->json(200, r->to_json());
  });

  // Custom emoji are off (EnableCustomEmoji "false"): the list is empty and no name is one.
  add("GET", v4 + "/emoji", true, [](const C& c) { c->json(200, json::array{}); });
  add("POST", v4 + "/emoji/names", true, [](const C& c) {
    if (auto names = c->body_strings()) c->json(200, json::array{});
  });
  add("GET", v4 + "/emoji/name/{emoji_name}", true, [](const C& c) { c->error(app::not_found("emoji")); });
  add("GET", v4 + "/emoji/autocomplete", true, [](const C& c) { c->json(200, json::array{}); });
  // No plugins (PluginsEnabled "false"): the web app asks for their bundles and gets none.
  add("GET", v4 + "/plugins/webapp", false, [](const C& c) { c->json(200, json::array{}); });
  add("GET", v4 + "/plugins/statuses", true, [](const C& c) { c->json(200, json::array{}); });

  auto admin_only = [](const C& c) {
    if (c->session.is_system_admin()) return true;
    c->error(app::forbidden());
    return false;
  };
  add("GET", v4 + "/cluster/status", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    c->json(200, cluster_status_json(node));
  });
  // Chorus's: the database servers this node routes to, as the HA console shows them.
  add("GET", v4 + "/cluster/database", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    c->json(200, database_json(node));
  });
  // The support packet (Mattermost's route; a tar here, not a zip): what an operator attaches to a bug
  // report - the config with its secrets masked, the cluster and database status, and the runtime's
  // files (the log file's tail, a metrics snapshot).
  add("GET", v4 + "/system/support_packet", true, [this, &node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    std::vector<std::pair<std::string, std::string>> files{
        {"config.json", node.config_json()},
        {"cluster_status.json", json::serialize(cluster_status_json(node))},
        {"database.json", json::serialize(database_json(node))},
        {"version.txt", options_.server_version + "\n"}};
    for (auto& f : node.support_files()) files.push_back(std::move(f));
    const int64_t now = env_.wall_now().millis();
    Response r;
    r.status = 200;
    r.body = tar_archive(files, now / 1000);
    r.headers.emplace_back("Content-Type", "application/x-tar");
    r.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"chorus-support-" + std::to_string(now) + ".tar\"");
    c->respond(std::move(r));
  });
  add("GET", v4 + "/config", true, [&node, admin_only](const C& c) {
    if (admin_only(c)) c->respond(json_response(200, node.config_json()));
  });
  auto save = [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    if (node.config_read_only())
      return c->error(AppError{403, "ent.cluster.save_config.error",
                               "Config changes through the API are off: ClusterSettings.ReadOnlyConfig is set while "
                               "high availability is on. "
                               "Change config.json on every node and reload."});
    const Failure saved = node.save_config(c->request.body);
    if (!saved.ok())
      return c->error(
          AppError{400, "api.config.update_config.invalid.app_error", "The config is not valid.", saved.message});
    c->respond(json_response(200, node.config_json()));
  };
  add("PUT", v4 + "/config", true, save);
  add("PUT", v4 + "/config/patch", true, save);
  add("POST", v4 + "/config/reload", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    const Failure reloaded = node.reload_config();
    if (!reloaded.ok())
      return c->error(AppError{500, "api.config.reload_config.app_error", "The config file could not be reloaded.",
                               reloaded.message});
    c->respond(ok_status());
  });
  add("POST", v4 + "/database/recycle", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    node.recycle_database();
    c->respond(ok_status());
  });

  add("GET", v4 + "/analytics/old", true, [&app](const C& c) {
    auto name = c->request.query.find("name");
    if (name != c->request.query.end() && name->second != "standard") return c->error(app::bad_param("name"));
    app.analytics(c->session, c->then<app::App::Analytics>([c](const app::App::Analytics& a) {
      json::array rows;
      for (const auto& [n, v] : a.rows) rows.push_back(json::object{{"name", n}, {"value", v}});
      c->json(200, rows);
    }));
  });

  // --- jobs
  auto& jobs = jobs_;
  auto list_jobs = [&jobs](const C& c, const std::string& type) {
    const auto [page, per_page] = query_paging(c->request);
    jobs.list(c->session, type, page, per_page,
              c->then<std::vector<app::Job>>([c](const std::vector<app::Job>& j) { c->json(200, to_array(j)); }));
  };
  add("GET", v4 + "/jobs", true, [list_jobs](const C& c) { list_jobs(c, ""); });
  add("GET", v4 + "/jobs/type/{type}", true, [list_jobs](const C& c) { list_jobs(c, c->params["type"]); });
  add("POST", v4 + "/jobs", true, [&jobs](const C& c) {
    auto b = c->body_object();
    if (!b) return;
    const std::string type = b->str("type");
    json::object data;
    if (auto it = b->o.find("data"); it != b->o.end() && !it->value().is_null()) {
      if (!it->value().is_object()) return c->error(app::bad_param("data"));
      data = it->value().as_object();
    }
    if (c->bad_type(*b)) return;
    jobs.create(c->session, type, data, c->then<app::Job>([c](const app::Job& j) { c->json(201, j.to_json()); }));
  });
  add("GET", v4 + "/jobs/{job_id}", true, [&jobs](const C& c) {
    jobs.get(c->session, c->params["job_id"], c->then<app::Job>([c](const app::Job& j) { c->json(200, j.to_json()); }));
  });
  add("POST", v4 + "/jobs/{job_id}/cancel", true, [&jobs](const C& c) {
    jobs.cancel(c->session, c->params["job_id"], c->then<app::Job>([c](const app::Job&) { c->respond(ok_status()); }));
  });
}

}  // namespace chorus::api
