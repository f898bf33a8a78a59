// The app's read caches (sessions, users, channels, channel members, statuses): a map whose entries
// are trusted for a time-to-live, bounded in size, and with an epoch so that a database read that was in
// flight when an invalidation came cannot put a stale value back (docs/api.md, the staleness bound).
#pragma once

#include <cstdint>
#include <map>

#include "server/core/time.h"

namespace chorus::app {

template <class K, class V>
class TtlCache {
 public:
  explicit TtlCache(size_t entries_max) : entries_max_(entries_max) {}

  // The value if it was stored less than `ttl` before `now`.
  const V* get(const K& key, MonoTime now, Duration ttl) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || !(now - it->second.at < ttl)) return nullptr;
    return &it->second.value;
  }
  // A value this node knows to be current (it just wrote it). At the size bound the cache starts over:
  // memory stays bounded, and every entry is re-read at worst once.
  void put(const K& key, V value, MonoTime now) {
    if (entries_.size() >= entries_max_ && !entries_.contains(key)) entries_.clear();
    entries_[key] = Entry{std::move(value), now};
  }
  // A value read from the database by a read that began when epoch() was `epoch_at_read`: kept only if
  // nothing was invalidated meanwhile (the invalidation may be about this very value).
  void fill(const K& key, V value, MonoTime now, uint64_t epoch_at_read) {
    if (epoch_at_read == epoch_) put(key, std::move(value), now);
  }
  void erase(const K& key) { entries_.erase(key); }
  template <class Pred>
  void erase_if(Pred pred) {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = pred(it->second.value) ? entries_.erase(it) : std::next(it);
  }
  void clear() { entries_.clear(); }
  // Reads in flight no longer fill the cache.
  void invalidate() { ++epoch_; }
  uint64_t epoch() const { return epoch_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    V value;
    MonoTime at;
  };
  size_t entries_max_;
  std::map<K, Entry> entries_;
  uint64_t epoch_ = 0;
};

}  // namespace chorus::app
