// The load balancer of a scenario run, modelled on the HA guide's NGINX: round robin over the upstreams
// in rotation, a health check on /api/v4/system/ping every health_interval (an upstream is taken out after
// health_fails failures and back after one success; when every upstream is out it tries them all), and
// the next upstream when a connection is refused. A node's capacity is a pool of workers with a service
// time per request: requests beyond the pool wait their turn, so overload shows as latency and then
// timeouts. The fault injector stops and starts it and narrows its rotation (lb_only).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "simulator/run_context.h"

namespace chorus::sim {

class LoadBalancer {
 public:
  explicit LoadBalancer(RunContext& ctx);

  // The health checks, from time 0 + health_interval on.
  void start();
  // A REST call through the load balancer, with the client's timeout (request_timeout): done runs once,
  // with the status and body, or 0 and "timeout", or 502 when no upstream answered.
  void request(std::string method, std::string target, std::string body, std::string token,
               std::function<void(int status, const std::string& body)> done);
  // The upstreams to try for the next request or connection, in order (each call moves round robin on).
  std::vector<int> upstreams();
  bool up() const { return up_; }

  // The fault injector's controls.
  void set_up(bool up) { up_ = up; }
  void only(const std::vector<uint32_t>& nodes);  // new requests go only to these (empty: to every node)

 private:
  struct Request {
    std::string method, target, body, token;
    std::function<void(int status, const std::string& body)> done;
    Duration sent{0};
    bool finished = false;
    size_t tried = 0;  // upstreams tried so far
  };

  void health_checks();
  void dispatch(const std::shared_ptr<Request>& r, std::vector<int> order);
  void complete(const std::shared_ptr<Request>& r, int status, const std::string& body);

  RunContext& ctx_;
  std::vector<bool> healthy_;
  std::vector<int> health_failures_;  // consecutive failed checks of each upstream
  std::set<int> rotation_;            // lb_only's nodes (empty: every node)
  bool up_ = true;
  uint64_t rr_ = 0;
  std::vector<std::vector<int64_t>> workers_;  // each node's workers: busy until (us)
};

}  // namespace chorus::sim
