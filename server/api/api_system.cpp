// Routes: the health check, the cluster's status, the config, jobs and analytics.
#include "server/api/api_internal.h"

namespace chorus::api {

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
    node_.check_health([answer, base, cut](bool db_ok, std::string) {
      json::object extra = base;
      extra["database_status"] = db_ok ? "OK" : "UNHEALTHY";
      extra["filestore_status"] = "OK";
      answer(db_ok && cut.empty(), extra,
             {{"database_status", db_ok ? "OK" : "UNHEALTHY"}, {"filestore_status", "OK"}});
    });
  });
  auto admin_only = [](const C& c) {
    if (c->session.is_system_admin()) return true;
    c->error(app::forbidden());
    return false;
  };
  add("GET", v4 + "/cluster/status", true, [&node, admin_only](const C& c) {
    if (!admin_only(c)) return;
    json::array rows;
    for (const auto& n : node.cluster_status())
      rows.push_back(json::object{{"id", n.id},
                                  {"version", n.version},
                                  {"schema_version", n.schema_version},
                                  {"config_hash", n.config_hash},
                                  {"ipaddress", n.ipaddress},
                                  {"hostname", n.hostname}});
    c->json(200, rows);
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
    bool bad = false;
    const int page = query_int(c->request, "page", 0, 0, 100000, bad),
              per_page = query_int(c->request, "per_page", 60, 1, 200, bad);
    if (bad) return c->error(app::bad_param("page or per_page"));
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
