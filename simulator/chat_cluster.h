// A whole Chorus cluster in the simulator: N real nodes (server/node, the production node code behind the
// seam) on simulated database servers, and simulated clients that call the same API handlers and hold
// WebSocket connections through simulated sockets. Tests and scenarios drive it in virtual time.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/api/http.h"
#include "server/config/config.h"
#include "server/node/node.h"
#include "simulator/kernel.h"
#include "simulator/sim_database.h"

namespace chorus::sim {

// A WebSocket connection as a simulated client holds it. Frames the node sends are kept in `received`;
// with `reading` false they pile up as queued (a client that stopped reading).
class SimSocket final : public api::SocketSink {
 public:
  ~SimSocket() override;
  // True while the node incarnation that accepted this socket is running.
  bool node_alive() const;
  void send_text(std::string text) override;
  size_t queued_frames() const override { return reading ? 0 : unread; }
  void close(uint16_t code, std::string reason) override;

  bool reading = true;
  size_t unread = 0;
  std::vector<std::string> received;
  std::optional<uint16_t> close_code;
  std::string close_reason;
  std::unique_ptr<api::SocketSession> session;  // the node's side, null once closed
  NodeIndex node = kNoNode;
  Kernel* kernel = nullptr;
  uint32_t incarnation = 0;
};

struct ChatClusterOptions {
  uint64_t seed = 1;
  int nodes = 3;
  std::vector<std::string> replicas;                         // read replica server names
  std::function<void(config::Config&, int node)> configure;  // per-node config tweaks
  jobs::JobServerOptions jobs;                               // job server timings (worker_id is set per node)
  cluster::MessengerOptions messenger;                       // every node's (an injected bug sets one)
  std::function<void(node::Node&, int node)> setup_node;     // after a node (incarnation) is built
  // Whole-cluster scenarios:
  std::vector<std::string> versions;  // per node ("0.1.0" when missing); set_version changes it for the next start
  bool discovery_only = false;        // no fixed peers: nodes find each other in the ClusterDiscovery table
  bool per_node_config = false;       // each node has its own config.json (node_config_file); else one shared file
  // Migrations a version brings besides the built-in ones (a release with a schema change).
  std::function<std::vector<store::Migration>(const std::string& version)> migrations_for;
  bool keep_trace = false;        // keep the kernel's trace records (replay, divergence reports)
  Duration db_service_time{200};  // per statement, on every simulated database server
  LogSink* log_sink = nullptr;    // the nodes' logs (null: discarded)
  // A node gave up (chorusd would exit): it is crashed right after, and this is told why.
  std::function<void(int node, const std::string& why)> on_fatal;
  app::AppOptions app;  // every node's (bcrypt_cost is set to 4)
};

class ChatCluster {
 public:
  explicit ChatCluster(ChatClusterOptions options);
  ~ChatCluster();

  Kernel& kernel() { return *k_; }
  node::Node* node(int i);  // null when down
  const std::string& address(int i) const { return addresses_[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(addresses_.size()); }
  // Starts every node and runs until all serve and see each other alive (false if not within the limit).
  bool start_all(Duration limit = Duration{30'000'000});
  // The shared config.json (nodes read it on reload).
  std::string& config_file() { return config_file_; }
  // Node i's config.json: its own with per_node_config, else the shared one.
  std::string& node_config_file(int i) {
    return options_.per_node_config ? node_files_[static_cast<size_t>(i)] : config_file_;
  }
  const std::string& version(int i) const { return versions_[static_cast<size_t>(i)]; }
  void set_version(int i, std::string version) { versions_[static_cast<size_t>(i)] = std::move(version); }

  // An HTTP call on node i, run until answered (or `limit` of virtual time: status 0).
  api::Response call(int i, const std::string& method, const std::string& target, const std::string& body = "",
                     const std::string& token = "", Duration limit = Duration{30'000'000});
  // The same, without waiting: done runs when the node answers (never, if it dies first). The request
  // is handled on the node's loop, so a paused node answers when it resumes.
  void call_async(int i, const std::string& method, const std::string& target, const std::string& body,
                  const std::string& token, std::function<void(api::Response)> done);
  // A request as built by the caller (headers, query), as call_async sends it; its answer, run until
  // answered (or `limit`: status 0).
  void request_async(int i, api::Request r, std::function<void(api::Response)> done);
  api::Response request(int i, api::Request r, Duration limit = Duration{30'000'000});
  // Creates a user (through the API) and logs in on node i: returns the token and fills user_id.
  std::string signup_and_login(int i, const std::string& username, std::string* user_id = nullptr);
  // Opens a WebSocket on node i (query: connection_id and sequence_number) and authenticates with the
  // challenge, as the official client does.
  std::unique_ptr<SimSocket> connect(int i, const std::string& token, const std::string& connection_id = "",
                                     int64_t sequence_number = 0);
  // The client side goes away (the node sees the socket close).
  void disconnect(SimSocket& socket);
  void send(SimSocket& socket, const std::string& text);

 private:
  ChatClusterOptions options_;
  std::unique_ptr<Kernel> k_;
  std::vector<std::string> addresses_;
  std::string config_file_;
  std::vector<config::Config> configs_;
  std::vector<std::string> node_files_;
  std::vector<std::string> versions_;
};

// The events (frames with an "event") a socket received, in order.
std::vector<std::string> events_of(const SimSocket& s, const std::string& event = "");
// seq of each event frame received.
std::vector<int64_t> seqs_of(const SimSocket& s);

}  // namespace chorus::sim
