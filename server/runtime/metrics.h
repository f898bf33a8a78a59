// Prometheus metrics (MetricsSettings.Enable, ListenAddress: Mattermost's :8067) through prometheus-cpp:
// its HTTP exposer serves /metrics in the text format from threads of its own.
//
// Nothing is counted twice: the node already keeps its figures (the API's requests by route, the hub,
// membership and status, the messenger, the transport's queues, the database pools, the job server),
// and every scrape reads them where they live - on the node's loop: the scrape posts a collection onto
// the loop and waits for it (at most `loop_timeout`; a loop that does not answer in time gives the
// process metrics alone and counts chorus_scrape_timeouts_total, so a stuck node still shows as one).
// Process metrics (CPU, memory, descriptors, threads, start time) come from /proc, as Go's do.
//
// Only server/runtime and chorusd include this header; prometheus-cpp stays out of the other layers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/core/time.h"

namespace boost::asio {
class io_context;
}

namespace chorus::node {
class Node;
}

namespace chorus::runtime {

class HttpServer;
class TcpTransport;

struct MetricsSources {
  node::Node* node = nullptr;
  HttpServer* http = nullptr;        // connections open (may be null)
  TcpTransport* transport = nullptr;  // gossip send queues (may be null)
  std::string version;
};

class MetricsServer {
 public:
  // Listens at once on `listen_address` (":8067", "127.0.0.1:8067", "[::1]:8067"); throws
  // std::runtime_error naming the address when it cannot.
  MetricsServer(boost::asio::io_context& io, const std::string& listen_address, MetricsSources sources,
                Duration loop_timeout = Duration{2'000'000});
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;

  // The text a scrape would get now, collected on the calling thread (which must be the node's loop):
  // for the support bundle.
  std::string snapshot_text() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace chorus::runtime
