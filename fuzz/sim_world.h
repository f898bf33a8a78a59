// One simulated Chorus node (simulator/chat_cluster.h: the real node code on a simulated SQLite database
// server) with a small world in it, set up once per process for the HTTP and WebSocket targets: alice
// (system admin) and bob, logged in; a team with both; a public channel with both and a post in it; a
// private channel of alice's.
//
// Building it takes a while (migrations, bcrypt), so it is built once; what an input changes is undone
// before the next (reset()): every table it wrote is put back as it was after the setup (copies taken then), the
// app's caches are dropped and the hub forgets every WebSocket connection; a config saved through the API is
// put back (restore_config()). What remains from earlier inputs
// is the node's virtual clock and its random stream (ids differ from run to run, not the outcome), and
// state the node keeps in memory beyond caches (the channels' post order in the sequencer): a crash that
// needs earlier inputs to happen is rare, and then fuzz/run.sh repro replays the inputs in order.
//
// In requests and messages, placeholders stand for the world's ids and tokens ($A, $B: alice's and bob's
// session tokens; $UA, $UB: their user ids; $T: the team; $CH: the public channel; $CP: the private one;
// $P: the post), so the fuzzer reaches past "not found" without guessing 26-character ids.
#pragma once

#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "simulator/chat_cluster.h"

namespace chorus::fuzz {

class SimWorld {
 public:
  static SimWorld& get() {
    static SimWorld* world = new SimWorld();  // never destroyed: the process exits with it
    return *world;
  }

  sim::ChatCluster& cluster() { return *cluster_; }
  sim::Kernel& kernel() { return cluster_->kernel(); }
  node::Node& node() { return *cluster_->node(0); }

  // Replaces the placeholders in s.
  std::string substitute(std::string s) const {
    if (s.find('$') == std::string::npos) return s;
    for (const auto& [key, value] : subs_)
      for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size()))
        s.replace(at, key.size(), value);
    return s;
  }
  const std::string& value(const std::string& key) const {
    for (const auto& [k, v] : subs_)
      if (k == key) return v;
    static const std::string none;
    return none;
  }

  // Puts the database back as it was after the setup (the tables written since: triggers note them), and
  // forgets what the node cached.
  void reset() {
    auto* db = kernel().databases().find("db1");
    auto dirty = db->execute({db::Statement{"SELECT name FROM fuzz_dirty", {}}}, false);
    if (!dirty.ok()) throw std::runtime_error("fuzz: cannot read fuzz_dirty: " + dirty.error.message);
    if (!dirty.result().rows.empty()) {
      std::set<std::string> tables;
      for (const auto& row : dirty.result().rows) {
        const std::string t = db::text_at(row, 0);
        tables.insert(t);
        if (companions_.contains(t)) tables.insert(companions_.at(t));  // Posts, Jobs: the search index too
      }
      std::vector<db::Statement> batch;
      for (const auto& t : tables) {
        batch.push_back(db::Statement{"DELETE FROM " + t, {}});
        batch.push_back(db::Statement{"INSERT INTO " + t + " SELECT * FROM fuzz_copy_" + t, {}});
      }
      batch.push_back(db::Statement{"DELETE FROM fuzz_dirty", {}});
      auto o = db->execute(batch, true);
      if (!o.ok()) throw std::runtime_error("fuzz: cannot restore the database: " + o.error.message);
    }
    node().app().on_membership_change();
    node().hub().reset_all();
  }

  // A config saved through the API stays in the node's config.json: put the original back and reload.
  void restore_config() {
    if (cluster_->node_config_file(0) == config_text_) return;
    cluster_->node_config_file(0) = config_text_;
    const Failure f = node().reload_config();
    if (!f.ok()) throw std::runtime_error("fuzz: cannot restore the config: " + f.message);
  }

  // An HTTP request to the node, as the runtime hands it over; runs until answered (nullopt: no answer
  // within `limit` of virtual time).
  std::optional<api::Response> call(api::Request r, Duration limit = Duration{30'000'000}, int* answers = nullptr) {
    auto out = std::make_shared<std::optional<api::Response>>();
    auto count = std::make_shared<int>(0);
    auto& k = kernel();
    k.call_on_node(0, k.incarnation(0), k.now_us(), [this, r = std::move(r), out, count]() mutable {
      node().api().handle(std::move(r), [out, count](api::Response resp) {
        ++*count;
        *out = std::move(resp);
      });
    });
    k.run_until([&] { return out->has_value(); }, k.now() + limit);
    if (answers) *answers = *count;
    return *out;
  }

 private:
  SimWorld() {
    sim::ChatClusterOptions options{.seed = 1, .nodes = 1};
    // Config changes through the API are allowed (PUT /config reaches the merge and the save); the node's
    // own config.json, which restore_config() puts back.
    options.configure = [](config::Config& c, int) { c.ClusterSettings.ReadOnlyConfig = false; };
    options.per_node_config = true;
    cluster_ = std::make_unique<sim::ChatCluster>(options);
    if (!cluster_->start_all()) throw std::runtime_error("fuzz: the simulated node did not start");
    auto& c = *cluster_;
    std::string alice_id, bob_id;
    const std::string alice = c.signup_and_login(0, "alice", &alice_id);
    auto created = c.call(0, "POST", "/api/v4/users",
                          R"({"username":"bob","email":"bob@example.com","password":"password-bob"})", alice);
    auto login = c.call(0, "POST", "/api/v4/users/login", R"({"login_id":"bob","password":"password-bob"})");
    std::string bob;
    for (const auto& [k, v] : login.headers)
      if (k == "Token") bob = v;
    bob_id = field(login, "id");
    const std::string team =
        field(c.call(0, "POST", "/api/v4/teams", R"({"name":"eng","display_name":"Engineering","type":"O"})", alice), "id");
    c.call(0, "POST", "/api/v4/teams/" + team + "/members",
           R"({"team_id":")" + team + R"(","user_id":")" + bob_id + R"("})", alice);
    const std::string channel = field(
        c.call(0, "POST", "/api/v4/channels",
               R"({"team_id":")" + team + R"(","name":"general","display_name":"General","type":"O"})", alice),
        "id");
    const std::string secret = field(
        c.call(0, "POST", "/api/v4/channels",
               R"({"team_id":")" + team + R"(","name":"secret","display_name":"Secret","type":"P"})", alice),
        "id");
    c.call(0, "POST", "/api/v4/channels/" + channel + "/members", R"({"user_id":")" + bob_id + R"("})", alice);
    const std::string post = field(
        c.call(0, "POST", "/api/v4/posts", R"({"channel_id":")" + channel + R"(","message":"hello world"})", alice),
        "id");
    if (alice.empty() || bob.empty() || team.empty() || channel.empty() || secret.empty() || post.empty())
      throw std::runtime_error("fuzz: the world's setup failed");
    c.kernel().run_for(Duration{1'000'000});
    config_text_ = c.node_config_file(0);
    // Longest first, so $UA is not read as $A followed by "U".
    subs_ = {{"$UA", alice_id}, {"$UB", bob_id}, {"$CH", channel}, {"$CP", secret},
             {"$A", alice},     {"$B", bob},     {"$T", team},     {"$P", post}};
    // A copy of every table (FTS5's own storage tables are the virtual table's business).
    auto* db = kernel().databases().find("db1");
    auto names = db->execute({db::Statement{"SELECT name, sql FROM sqlite_master WHERE type = 'table'", {}}}, false);
    if (!names.ok()) throw std::runtime_error("fuzz: cannot list the tables");
    std::vector<std::string> virtual_tables;
    for (const auto& row : names.result().rows)
      if (db::text_at(row, 1).rfind("CREATE VIRTUAL TABLE", 0) == 0) virtual_tables.push_back(db::text_at(row, 0));
    for (const auto& row : names.result().rows) {
      const std::string name = db::text_at(row, 0);
      bool shadow = name.rfind("sqlite_", 0) == 0;
      for (const auto& v : virtual_tables) shadow |= name.rfind(v + "_", 0) == 0;
      if (!shadow) tables_.push_back(name);
    }
    // Triggers note which tables an input writes (they change no count the node sees: sqlite3_changes()
    // leaves trigger writes out). A virtual table takes none: the search index is restored with Posts.
    std::vector<db::Statement> copies{db::Statement{"CREATE TABLE fuzz_dirty (name TEXT PRIMARY KEY)", {}}};
    for (const auto& t : tables_) {
      copies.push_back(db::Statement{"CREATE TABLE fuzz_copy_" + t + " AS SELECT * FROM " + t, {}});
      if (std::find(virtual_tables.begin(), virtual_tables.end(), t) != virtual_tables.end()) continue;
      for (const char* what : {"INSERT", "UPDATE", "DELETE"})
        copies.push_back(db::Statement{"CREATE TRIGGER fuzz_dirty_" + t + "_" + what + " AFTER " + what + " ON " + t +
                                           " BEGIN INSERT OR IGNORE INTO fuzz_dirty VALUES ('" + t + "'); END",
                                       {}});
    }
    // The search index (FTS5, no triggers) changes with Posts, and in jobs (cleanup, reindex).
    for (const auto& v : virtual_tables) {
      if (v != "PostsFts") throw std::runtime_error("fuzz: a virtual table sim_world.h does not know: " + v);
      companions_["Posts"] = companions_["Jobs"] = v;
    }
    if (!db->execute(copies, true).ok()) throw std::runtime_error("fuzz: cannot copy the tables");
  }

  static std::string field(const api::Response& r, const char* key) {
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    if (ec || !v.is_object()) return "";
    const auto* f = v.as_object().if_contains(key);
    return f && f->is_string() ? std::string(f->as_string()) : "";
  }

  std::unique_ptr<sim::ChatCluster> cluster_;
  std::vector<std::pair<std::string, std::string>> subs_;
  std::vector<std::string> tables_;
  std::map<std::string, std::string> companions_;  // a table whose restore restores another (Posts: PostsFts)
  std::string config_text_;
};

// True when s is valid UTF-8 (what a JSON body and a WebSocket text frame must be).
inline bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace chorus::fuzz
