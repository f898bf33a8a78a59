// The HTTP API (Mattermost's v4 routes and JSON shapes) and the WebSocket protocol, over the app.
//
// Transport-free: the runtime (Boost.Beast) and the simulator hand in parsed requests and WebSocket
// frames (server/api/http.h); answers go back through callbacks on the node's loop. Errors are
// Mattermost's JSON: {id, message, detailed_error, request_id, status_code}. Authentication: the
// `Authorization: Bearer <token>` header (any case of the scheme), the `Token` scheme, the MMAUTHTOKEN
// cookie or the access_token query parameter. Admin routes need the system_admin role.
#pragma once

#include <array>
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "server/api/guards.h"
#include "server/api/http.h"
#include "server/app/app.h"
#include "server/app/hub.h"
#include "server/app/jobs.h"

namespace chorus::api {

// One row of GET /api/v4/cluster/status: Mattermost's ClusterInfo (all strings), then Chorus's view of
// the node: green or red and why, its membership state ("self", "alive", "suspect", "dead"), whether it
// leads, when it was last seen (wall ms; for a dead node, when it was declared dead) and, for this node,
// the settings changed in the file that wait for a restart.
struct ClusterNodeRow {
  std::string id, version, schema_version, config_hash, ipaddress, hostname;
  bool green = true;
  std::string reason;
  std::string state = "self";
  bool leader = false;
  int64_t last_seen = 0;
  std::vector<std::string> restart_required;
};

// One database server as the node routes to it (GET /api/v4/cluster/database).
struct DatabaseServerRow {
  std::string role;  // "master", "replica", "search"
  std::string name;  // the data source without credentials
  bool online = true;
  uint64_t reads = 0, failures = 0;
  int64_t open = 0, idle = 0, busy = 0, waiting = 0;
  uint64_t opened = 0, closed = 0, connect_failures = 0, requests = 0, waited = 0, rejected = 0;
};

// What the API needs from the node around the app: cluster status, config, database and health.
class NodeControl {
 public:
  virtual ~NodeControl() = default;
  virtual bool cluster_enabled() const = 0;
  virtual std::vector<ClusterNodeRow> cluster_status() const = 0;
  virtual std::vector<DatabaseServerRow> database_status() const = 0;
  virtual std::string database_driver() const = 0;
  // The effective config as JSON (secrets masked).
  virtual std::string config_json() const = 0;
  // Merges `json` (sections of settings) over the file's config, saves and applies it (or says why
  // not: server/core/result.h). PUT /config and PUT /config/patch both come here: settings not sent keep their
  // values. Refused (403 by the caller) under ReadOnlyConfig.
  virtual bool config_read_only() const = 0;
  virtual Failure save_config(const std::string& json) = 0;
  virtual Failure reload_config() = 0;
  virtual void recycle_database() = 0;
  // What the runtime adds to the support packet (name, content): log tail, metrics snapshot.
  virtual std::vector<std::pair<std::string, std::string>> support_files() const { return {}; }
  // The health check: writes and deletes a row in the Systems table (get_server_status), at most once a
  // second (callers within it get that answer); the detail is for the log, never for the caller.
  virtual void check_health(std::function<void(bool database_ok, std::string detail)> done) = 0;
  // Why this node does not serve while a partition lasts (server/cluster/reach.h); empty: it serves.
  virtual std::string cut_off_reason() const { return {}; }
};

// The Mattermost server version whose API v4 Chorus implements. The apps read it (the X-Version-Id header,
// config's Version) and refuse servers older than their minimum (the mobile app: 9.11.0); Chorus's own
// version (ApiOptions::server_version) is the build number there, and what cluster status shows and
// compares between nodes. docs/api.md: "Versions".
inline constexpr const char* kMattermostApiVersion = "10.11.0";

// X-Version-Id as Mattermost sends it (<version>.<build number>.<config hash>.<licensed>), with Chorus's
// version as the build number ("10.11.0.chorus-0-1-0.false": its dots would split the header's parts).
std::string version_id_header(const std::string& chorus_version);

struct ApiOptions {
  std::string server_version = "0.0.0";  // Chorus's
  std::string hostname;
  size_t websocket_message_max = 64 * 1024;
  // Replies to a client's own messages (pings, typing) wait in the socket's send queue with the hub's
  // events; a client that sends and never reads is closed (1008 "send queue full") at this many frames,
  // the hub's own bound for events (HubOptions::send_queue_max), so a socket never holds more.
  size_t websocket_queue_max = 256;
  bool secure_cookies = false;  // ServiceSettings.SiteURL is https: cookies get Secure
};

// Requests answered, by method, route (the pattern that matched: "/api/v4/users/{user_id}"; "unmatched"
// for none) and status, with their time from arrival to answer: what the metrics export.
inline constexpr std::array<double, 12> kLatencyBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                           0.25,  0.5,   1,    2.5,   5,    10};
struct RouteKey {
  std::string method, route;
  int status = 0;
  auto operator<=>(const RouteKey&) const = default;
};
struct RouteStat {
  uint64_t count = 0;
  double seconds = 0;
  std::array<uint64_t, kLatencyBuckets.size()> buckets{};  // answered within each bound (not cumulative)
};

class Api final : public Handler {
 public:
  Api(Env& env, app::App& app, app::Hub& hub, app::Jobs& jobs, NodeControl& node, ApiOptions options);
  ~Api() override;

  void handle(Request request, Respond respond) override;
  std::unique_ptr<SocketSession> open_socket(const Request& request, SocketSink& sink, Response& refusal) override;

  // Stop taking new work: requests get 503, upgrades are refused (the graceful stop).
  void drain() { draining_ = true; }
  const std::map<RouteKey, RouteStat>& request_stats() const { return request_stats_; }

  struct Call;
  using Route = std::function<void(const std::shared_ptr<Call>&)>;

 private:
  struct Entry {
    std::string method;
    std::vector<std::string> segments;  // "{name}" matches one segment
    bool auth = true;
    Route run;
    std::string pattern;
  };
  void add(std::string method, const std::string& pattern, bool auth, Route run);
  // The routes, in files by domain (api_internal.h).
  void routes_system();
  void routes_users();
  void routes_teams();
  void routes_channels();
  void routes_posts();
  void routes_files();
  void routes_console();
  void count(const std::string& method, const std::string& route, int status, Duration took);

  Env& env_;
  app::App& app_;
  app::Hub& hub_;
  app::Jobs& jobs_;
  NodeControl& node_;
  ApiOptions options_;
  std::string version_id_;  // the X-Version-Id header
  // Request ids (X-Request-Id, request_id in errors): this node and start, then a count; no randomness,
  // so the simulator's runs stay as they were.
  std::string request_id_prefix_;
  uint64_t requests_ = 0;
  std::string next_request_id();
  std::vector<Entry> routes_;
  std::map<RouteKey, RouteStat> request_stats_;
  RateLimiter limiter_;
  // Calls not answered yet (each keeps itself alive until it is): the node going away releases them.
  std::shared_ptr<std::unordered_set<Call*>> calls_ = std::make_shared<std::unordered_set<Call*>>();
  bool draining_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Mattermost's error body.
Response error_response(int status, const std::string& id, const std::string& message,
                        const std::string& detailed = "");
Response json_response(int status, std::string body);
// The session token of a request (header, cookie or query), or "".
std::string request_token(const Request& request);

}  // namespace chorus::api
