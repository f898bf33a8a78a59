// The API's guards: rate limiting and the WebSocket Origin check (server/api/guards.h).
#include "server/api/guards.h"

#include <algorithm>
#include <cctype>

#include "server/config/config.h"

namespace chorus::api {

namespace {

int64_t ceil_s(int64_t us) { return us <= 0 ? 0 : (us + 999'999) / 1'000'000; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// "scheme://host[:port]" of a URL (path, query and a trailing slash dropped), lower case.
std::string origin_of(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  const auto end = url.find_first_of("/?#", scheme + 3);
  return lower(url.substr(0, end));
}

// The host[:port] of an origin ("https://chat.example.com:8065" -> "chat.example.com:8065").
std::string_view host_of(std::string_view origin) {
  const auto scheme = origin.find("://");
  return scheme == std::string_view::npos ? origin : origin.substr(scheme + 3);
}

}  // namespace

RateLimiter::Decision RateLimiter::take(const std::string& key, MonoTime now, int64_t per_sec, int64_t max_burst,
                                        size_t store_size) {
  const int64_t interval = 1'000'000 / std::max<int64_t>(per_sec, 1);
  const int64_t tolerance = interval * (max_burst + 1);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    while (!lru_.empty() && by_key_.size() >= std::max<size_t>(store_size, 1)) {
      by_key_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = by_key_.emplace(key, Entry{now.us, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  Decision d;
  d.limit = max_burst + 1;
  const int64_t tat = std::max(e.tat_us, now.us);
  const int64_t next_tat = tat + interval;
  const int64_t allow_at = next_tat - tolerance;
  int64_t ttl;
  if (now.us < allow_at) {
    d.limited = true;
    d.retry_after_s = ceil_s(allow_at - now.us);
    ttl = tat - now.us;
  } else {
    e.tat_us = next_tat;
    ttl = next_tat - now.us;
  }
  const int64_t next = tolerance - ttl;
  d.remaining = next > -interval ? std::max<int64_t>(next / interval, 0) : 0;
  d.reset_after_s = ceil_s(ttl);
  return d;
}

std::string rate_limit_key(const Request& request, const config::Config& config) {
  const auto& rl = config.RateLimitSettings;
  std::string key;
  if (rl.VaryByRemoteAddr) {
    const auto colon = request.remote.rfind(':');
    key = colon == std::string::npos ? request.remote : request.remote.substr(0, colon);
  }
  if (!rl.VaryByHeader.empty()) key += "|" + std::string(request.header(lower(rl.VaryByHeader)));
  return key;
}

void add_rate_limit_headers(const RateLimiter::Decision& d, Response& response) {
  response.headers.emplace_back("X-Ratelimit-Limit", std::to_string(d.limit));
  response.headers.emplace_back("X-Ratelimit-Remaining", std::to_string(d.remaining));
  response.headers.emplace_back("X-Ratelimit-Reset", std::to_string(d.reset_after_s));
  if (d.retry_after_s >= 0) response.headers.emplace_back("Retry-After", std::to_string(d.retry_after_s));
}

Response too_many_requests(const RateLimiter::Decision& d) {
  Response r;
  r.status = 429;
  r.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  r.body = "limit exceeded\n";
  add_rate_limit_headers(d, r);
  return r;
}

bool origin_allowed(const Request& request, const config::Config& config) {
  const std::string_view origin_header = request.header("origin");
  if (origin_header.empty()) return true;
  const std::string origin = origin_of(origin_header);
  if (origin.empty()) return false;  // "null" or garbage
  const std::string& allowed = config.ServiceSettings.AllowCorsFrom;
  if (allowed.empty()) return host_of(origin) == lower(request.header("host"));
  if (allowed == "*") return true;
  std::string list = allowed;
  if (const std::string site = origin_of(config.ServiceSettings.SiteURL); !site.empty()) list += " " + site;
  size_t at = 0;
  while (at < list.size()) {
    const size_t end = std::min(list.find(' ', at), list.size());
    if (end > at && origin_of(std::string_view(list).substr(at, end - at)) == origin) return true;
    at = end + 1;
  }
  return false;
}

}  // namespace chorus::api
