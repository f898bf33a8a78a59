// What the App's files share (server/app/app*.cpp), not part of its interface: the error and result
// helpers, name checks, SQL column lists for joins, and the store callback that maps rows.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/app/app.h"

namespace chorus::app::detail {

using db::Statement;
using db::Value;

inline AppError error(int status, std::string id, std::string message, std::string detailed = "") {
  return AppError{status, std::move(id), std::move(message), std::move(detailed)};
}

template <class T>
Result<T> fail(AppError e) {
  return Result<T>{std::move(e), T{}};
}

template <class T>
Result<T> ok(T value) {
  return Result<T>{AppError{}, std::move(value)};
}

inline bool valid_name(const std::string& s, size_t min, size_t max, bool allow_underscore, bool allow_dot) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (allow_underscore && c == '_') ||
                    (allow_dot && c == '.');
    if (!ok) return false;
  }
  return true;
}

// "Id, CreateAt" with prefix "t." -> "t.Id, t.CreateAt" (for joins).
inline std::string prefixed(const char* columns, const char* prefix) {
  std::string out, cols = columns;
  size_t pos = 0;
  while (pos < cols.size()) {
    const size_t end = std::min(cols.find(',', pos), cols.size());
    std::string name = cols.substr(pos, end - pos);
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    out += (out.empty() ? "" : ", ") + std::string(prefix) + name;
    pos = end + 1;
  }
  return out;
}

// Constant-time comparison of two strings of the same length.
inline bool same_secret(const char* a, const std::string& b) {
  if (std::strlen(a) != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// "$first, $first+1, ..." (count of them), for IN lists.
inline std::string placeholders(size_t first, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) out += (i ? ", $" : "$") + std::to_string(first + i);
  return out;
}

// Who a message mentions, as Mattermost reads it: @name (lowercased; letters, digits, '.', '-', '_', a
// trailing '.', '-' or '_' is punctuation), and @channel, @all or @here for the whole channel. At most
// 32 names are looked up.
struct Mentions {
  std::set<std::string> usernames;
  bool channel_wide = false;
};
inline Mentions mentions_in(const std::string& message) {
  Mentions m;
  const auto name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  };
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] != '@' || (i > 0 && name_char(message[i - 1]))) continue;
    size_t j = i + 1;
    std::string name;
    while (j < message.size() && name_char(message[j]))
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(message[j++])));
    while (!name.empty() && (name.back() == '.' || name.back() == '-' || name.back() == '_')) name.pop_back();
    i = j - 1;
    if (name.empty() || name.size() > 64) continue;
    if (name == "channel" || name == "all" || name == "here")
      m.channel_wide = true;
    else if (m.usernames.size() < 32)
      m.usernames.insert(name);
  }
  return m;
}

inline int clamp_per_page(int per_page, int max) { return std::clamp(per_page <= 0 ? 60 : per_page, 1, max); }

inline std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '"') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  if (out.size() > 16) out.resize(16);
  return out;
}

// A store callback that turns every row into a T for `done` (nothing happens once the App is gone).
template <class T>
db::Done rows_as(std::shared_ptr<bool> alive, T (*from_row)(const std::vector<db::Value>&),
                 Callback<std::vector<T>> done) {
  return [alive = std::move(alive), from_row, done = std::move(done)](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<std::vector<T>>(from_db(o.error)));
    std::vector<T> out;
    out.reserve(o.result().rows.size());
    for (const auto& r : o.result().rows) out.push_back(from_row(r));
    done(ok(std::move(out)));
  };
}

}  // namespace chorus::app::detail
