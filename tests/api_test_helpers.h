// What the API tests on the simulated cluster share: an answer's JSON, its fields and headers, and
// Mattermost's error shape.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "server/api/http.h"

namespace chorus::testing {

inline boost::json::value body(const api::Response& r) {
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  EXPECT_FALSE(ec) << r.body;
  return v;
}

// A string field of a JSON object ("" when absent or not a string).
inline std::string str(const boost::json::value& v, const char* key) {
  if (!v.is_object() || !v.as_object().contains(key) || !v.as_object().at(key).is_string()) return "";
  return std::string(v.as_object().at(key).as_string());
}

inline std::string field(const api::Response& r, const char* key) { return str(body(r), key); }

inline std::string header(const api::Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

inline std::string obj(boost::json::value v) { return boost::json::serialize(v); }

// The Mattermost error shape, with its status code in the body (and an id starting with id_prefix).
inline void expect_error(const api::Response& r, int status, const std::string& id_prefix = "") {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  auto v = body(r);
  ASSERT_TRUE(v.is_object()) << r.body;
  auto& o = v.as_object();
  EXPECT_TRUE(o.contains("id") && o.contains("message") && o.contains("detailed_error") && o.contains("request_id"))
      << r.body;
  EXPECT_EQ(o.at("status_code").as_int64(), status);
  if (!id_prefix.empty()) {
    EXPECT_EQ(str(v, "id").rfind(id_prefix, 0), 0u) << r.body;
  }
}

}  // namespace chorus::testing
