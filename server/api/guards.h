// Guards in front of the API, as Mattermost has them: the rate limiter (RateLimitSettings) and the
// WebSocket Origin check (ServiceSettings.AllowCorsFrom and SiteURL). Transport-free and clock-free (the
// caller passes its monotonic time), so they run alike in chorusd and the simulator and are tested alone.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "server/api/http.h"
#include "server/core/time.h"

namespace chorus::config {
struct Config;
}

namespace chorus::api {

// Mattermost's rate limit (the throttled library's GCRA): per key, `max_burst + 1` requests at once, then
// one every 1/per_sec seconds. The key is the client's address and/or a header's value (VaryByHeader:
// X-Forwarded-For behind NGINX, whose own address is every client's). At most `store_size` keys are
// remembered, the least recently seen forgotten first (a forgotten key starts with a full burst).
class RateLimiter {
 public:
  struct Decision {
    bool limited = false;
    int64_t limit = 0, remaining = 0;
    int64_t reset_after_s = 0, retry_after_s = -1;  // seconds, rounded up; -1: no retry needed
  };
  Decision take(const std::string& key, MonoTime now, int64_t per_sec, int64_t max_burst, size_t store_size);
  size_t keys() const { return by_key_.size(); }

 private:
  struct Entry {
    int64_t tat_us = 0;  // the theoretical arrival time of the next request (GCRA)
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Entry> by_key_;
  std::list<std::string> lru_;  // most recently seen first
};

// The key of a request under RateLimitSettings (VaryByRemoteAddr: the address without its port;
// VaryByHeader: that header's value); empty when neither applies.
std::string rate_limit_key(const Request& request, const config::Config& config);
// The 429 Mattermost answers ("limit exceeded", text/plain), or the headers of an allowed request.
void add_rate_limit_headers(const RateLimiter::Decision& d, Response& response);
Response too_many_requests(const RateLimiter::Decision& d);

// Whether a WebSocket upgrade's Origin may open a socket (Mattermost's OriginChecker): no Origin header
// (the mobile app, tools) always may; with AllowCorsFrom empty the Origin's host must be the request's
// Host (same origin); "*" allows any; otherwise the Origin must be one of AllowCorsFrom's space-separated
// origins or SiteURL's origin.
bool origin_allowed(const Request& request, const config::Config& config);

}  // namespace chorus::api
