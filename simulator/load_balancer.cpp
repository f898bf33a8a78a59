// The load balancer of a scenario run: health checks, round robin, dispatch with capacity, retry on a
// refused connection, and the client's timeout (simulator/load_balancer.h).
#include "simulator/load_balancer.h"

#include <algorithm>

namespace chorus::sim {

LoadBalancer::LoadBalancer(RunContext& ctx) : ctx_(ctx) {
  const auto nodes = static_cast<size_t>(ctx.sc.nodes);
  healthy_.assign(nodes, true);
  health_failures_.assign(nodes, 0);
  workers_.assign(nodes, std::vector<int64_t>(static_cast<size_t>(ctx.sc.workers), 0));
}

void LoadBalancer::start() {
  ctx_.k.at(ctx_.t0 + ctx_.sc.health_interval, [this] { health_checks(); });
}

void LoadBalancer::only(const std::vector<uint32_t>& nodes) {
  rotation_.clear();
  for (uint32_t n : nodes) rotation_.insert(static_cast<int>(n));
}

std::vector<int> LoadBalancer::upstreams() {
  std::vector<int> in_rotation;
  for (int n = 0; n < ctx_.sc.nodes; ++n)
    if (rotation_.empty() || rotation_.count(n)) in_rotation.push_back(n);
  std::vector<int> healthy;
  for (int n : in_rotation)
    if (healthy_[static_cast<size_t>(n)]) healthy.push_back(n);
  auto& list = healthy.empty() ? in_rotation : healthy;  // NGINX tries them all when every one is out
  if (list.empty()) return list;
  const size_t start = rr_++ % list.size();
  std::rotate(list.begin(), list.begin() + static_cast<long>(start), list.end());
  return list;
}

void LoadBalancer::health_checks() {
  auto& k = ctx_.k;
  for (int n = 0; n < ctx_.sc.nodes; ++n) {
    auto done = std::make_shared<bool>(false);
    auto result = [this, n, done](bool ok) {
      if (*done) return;
      *done = true;
      auto& fails = health_failures_[static_cast<size_t>(n)];
      if (ok) {
        fails = 0;
        healthy_[static_cast<size_t>(n)] = true;
      } else if (++fails >= ctx_.sc.health_fails) {
        healthy_[static_cast<size_t>(n)] = false;
      }
    };
    if (!ctx_.c.node(n)) {
      result(false);
      continue;
    }
    ctx_.c.call_async(n, "GET", "/api/v4/system/ping", "", "", [result](api::Response r) { result(r.status == 200); });
    k.at(k.now() + Duration{1'000'000}, [result] { result(false); });
  }
  k.at(k.now() + ctx_.sc.health_interval, [this] { health_checks(); });
}

void LoadBalancer::request(std::string method, std::string target, std::string body, std::string token,
                           std::function<void(int, const std::string&)> done) {
  auto& k = ctx_.k;
  auto r = std::make_shared<Request>();
  r->method = std::move(method);
  r->target = std::move(target);
  r->body = std::move(body);
  r->token = std::move(token);
  r->done = std::move(done);
  r->sent = k.now();
  k.at(r->sent + ctx_.sc.request_timeout, [this, r] { complete(r, 0, "timeout"); });
  if (!up_) return k.at(k.now(), [this, r] { complete(r, 502, "the load balancer is down"); });
  dispatch(r, upstreams());
}

void LoadBalancer::dispatch(const std::shared_ptr<Request>& r, std::vector<int> order) {
  if (r->finished) return;
  if (r->tried >= order.size()) return complete(r, 502, "no upstream answered");
  const int n = order[r->tried++];
  if (!ctx_.c.node(n)) return dispatch(r, order);  // refused: the next upstream
  // Capacity: the first free worker serves it; it is busy for the service time.
  auto& pool = workers_[static_cast<size_t>(n)];
  auto it = std::min_element(pool.begin(), pool.end());
  const int64_t start = std::max(*it, ctx_.k.now_us());
  *it = start + ctx_.sc.service_time.count();
  ctx_.k.at(Duration{start + ctx_.sc.service_time.count()}, [this, r, n, order] {
    if (r->finished) return;
    if (!ctx_.c.node(n)) return dispatch(r, order);
    if (r->method == "POST" && r->target == "/api/v4/posts") ctx_.origin[json_field(r->body, "message")] = n;
    ctx_.c.call_async(n, r->method, r->target, r->body, r->token,
                      [this, r](api::Response resp) { complete(r, resp.status, resp.body); });
  });
}

void LoadBalancer::complete(const std::shared_ptr<Request>& r, int status, const std::string& body) {
  if (r->finished) return;
  r->finished = true;
  r->done(status, body);
}

}  // namespace chorus::sim
