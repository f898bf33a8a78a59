// The workload of a scenario run: setup of its world, then posts, typing and searches
// (simulator/workload.h).
#include "simulator/workload.h"

#include <algorithm>
#include <boost/json.hpp>

namespace chorus::sim {

bool Workload::setup(int admin_node) {
  auto& c = ctx_.c;
  const auto& sc = ctx_.sc;
  const auto& initial = ctx_.initial;
  ctx_.admin = c.signup_and_login(admin_node, "admin");
  const auto& admin = ctx_.admin;
  auto team =
      c.call(admin_node, "POST", "/api/v4/teams", R"({"name":"scenario","display_name":"Scenario","type":"O"})", admin);
  if (team.status != 201) {
    ctx_.violation("setup", "creating the team failed: " + team.body);
    return false;
  }
  ctx_.team = json_field(team.body, "id");
  const auto& team_id = ctx_.team;
  for (int ch = 0; ch < sc.channels; ++ch) {
    auto r = c.call(admin_node, "POST", "/api/v4/channels",
                    fmt::format(R"({{"team_id":"{}","name":"channel-{}","display_name":"Channel {}","type":"O"}})",
                                team_id, ch, ch),
                    admin);
    if (r.status != 201) {
      ctx_.violation("setup", "creating a channel failed: " + r.body);
      return false;
    }
    ctx_.channel_ids.push_back(json_field(r.body, "id"));
    ctx_.channel_index[ctx_.channel_ids.back()] = ch;
  }
  auto& members = ctx_.members;
  members.resize(static_cast<size_t>(sc.channels));
  for (int u = 0; u < sc.users; ++u) {
    Client cl;
    cl.index = u;
    const std::string name = fmt::format("user{}", u);
    auto r = c.call(
        admin_node, "POST", "/api/v4/users",
        fmt::format(R"({{"username":"{}","email":"{}@example.com","password":"password-{}"}})", name, name, name),
        admin);
    if (r.status != 201) {
      ctx_.violation("setup", "creating a user failed: " + r.body);
      return false;
    }
    cl.user_id = json_field(r.body, "id");
    if (c.call(admin_node, "POST", "/api/v4/teams/" + team_id + "/members",
               fmt::format(R"({{"team_id":"{}","user_id":"{}"}})", team_id, cl.user_id), admin)
            .status != 201) {
      ctx_.violation("setup", "adding a user to the team failed");
      return false;
    }
    const int login_node = static_cast<int>(initial[static_cast<size_t>(u) % initial.size()]);
    auto login = c.call(login_node, "POST", "/api/v4/users/login",
                        fmt::format(R"({{"login_id":"{}","password":"password-{}"}})", name, name));
    for (const auto& [key, v] : login.headers)
      if (key == "Token") cl.token = v;
    if (cl.token.empty()) {
      ctx_.violation("setup", "a login failed: " + login.body);
      return false;
    }
    clients_.add(std::move(cl));
  }
  // Channel c's members: `members` users, spread so that every user is in some channel.
  for (int ch = 0; ch < sc.channels; ++ch)
    for (int j = 0; j < sc.members; ++j) {
      const int u = (ch * sc.members + j) % sc.users;
      auto& in = members[static_cast<size_t>(ch)];
      if (std::find(in.begin(), in.end(), u) != in.end()) continue;
      auto r = c.call(admin_node, "POST", "/api/v4/channels/" + ctx_.channel_ids[static_cast<size_t>(ch)] + "/members",
                      fmt::format(R"({{"user_id":"{}"}})", clients_.at(static_cast<size_t>(u)).user_id), admin);
      if (r.status != 201) {
        ctx_.violation("setup", "adding a channel member failed: " + r.body);
        return false;
      }
      in.push_back(u);
      clients_.at(static_cast<size_t>(u)).channels.push_back(ch);
    }
  // Direct channels: user u and user u+1, made by u as the apps make them ([other, self]); their posts are
  // checked as every channel's are.
  if (sc.dms && sc.users >= 2)
    for (int u = 0; u < sc.users; ++u) {
      const int v = (u + 1) % sc.users;
      if (sc.users == 2 && u == 1) break;  // one pair
      auto& cu = clients_.at(static_cast<size_t>(u));
      auto& cv = clients_.at(static_cast<size_t>(v));
      auto r = c.call(admin_node, "POST", "/api/v4/channels/direct",
                      fmt::format(R"(["{}","{}"])", cv.user_id, cu.user_id), cu.token);
      if (r.status != 201) {
        ctx_.violation("setup", "creating a direct channel failed: " + r.body);
        return false;
      }
      const int ch = static_cast<int>(ctx_.channel_ids.size());
      ctx_.channel_ids.push_back(json_field(r.body, "id"));
      ctx_.channel_index[ctx_.channel_ids.back()] = ch;
      members.push_back({u, v});
      cu.channels.push_back(ch);
      cv.channels.push_back(ch);
    }
  return true;
}

void Workload::start() {
  const Duration first = ctx_.t0 + Duration{1'500'000};
  if (ctx_.sc.post_rate > 0) next_post(first);
  if (ctx_.sc.typing_rate > 0) next_typing(first);
  if (ctx_.sc.search_rate > 0) next_search(first);
  if (ctx_.sc.view_rate > 0) next_view(first);
  if (ctx_.sc.preference_rate > 0) next_preference(first);
  every(first, ctx_.sc.reply_rate, [this] { reply(); });
  every(first, ctx_.sc.reaction_rate, [this] { react(); });
  every(first, ctx_.sc.edit_rate, [this] { edit_or_delete(false); });
  every(first, ctx_.sc.delete_rate, [this] { edit_or_delete(true); });
  every(first, ctx_.sc.file_rate, [this] { post_file(); });
}

void Workload::post_file() {
  auto& cl = clients_.at(ctx_.k.random().uniform(clients_.all().size()));
  if (cl.post_in_flight || cl.channels.empty()) return;
  const int ch = cl.channels[ctx_.k.random().uniform(cl.channels.size())];
  cl.post_in_flight = true;  // the upload and its post, one at a time like posts
  const int i = cl.index;
  const int64_t n = cl.posts_made + 1;
  const std::string data = fmt::format("file of client {} for post {}: {}", i, n, std::string(64 + n % 64, 'x'));
  clients_.request(i, "POST",
                   fmt::format("/api/v4/files?channel_id={}&filename=c{}-{}.txt", ctx_.channel_ids[static_cast<size_t>(ch)], i, n),
                   data, [this, i, ch, data](int status, const std::string& body) {
                     auto& c = clients_.at(static_cast<size_t>(i));
                     c.post_in_flight = false;
                     if (status != 201) return;
                     boost::system::error_code ec;
                     auto v = boost::json::parse(body, ec);
                     if (ec || !v.is_object() || !v.as_object().contains("file_infos")) return;
                     const auto& infos = v.as_object().at("file_infos").as_array();
                     if (infos.empty()) return;
                     post(c, ch, "", std::string(infos[0].as_object().at("id").as_string()), data);
                   });
}

void Workload::every(Duration at, double rate, std::function<void()> fn) {
  if (rate <= 0 || at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this, rate, fn] {
    fn();
    every(ctx_.k.now() + Duration{static_cast<int64_t>(ctx_.k.random().exponential(1e6 / rate))}, rate, fn);
  });
}

const Acked* Workload::pick_post(const Client& cl, bool own, bool roots) {
  const auto& acked = ctx_.acked;
  if (acked.empty()) return nullptr;
  for (int attempt = 0; attempt < 8; ++attempt) {
    // Among the last 200 acknowledged: the apps change what is on screen.
    const size_t recent = std::min<size_t>(acked.size(), 200);
    const Acked& a = acked[acked.size() - 1 - ctx_.k.random().uniform(recent)];
    if (own && a.author != cl.index) continue;
    if (roots && !a.root.empty()) continue;
    if (std::find(cl.channels.begin(), cl.channels.end(), a.channel) == cl.channels.end()) continue;
    if (auto k = cl.known.find(a.id); k != cl.known.end() && k->second.delete_at != 0) continue;
    return &a;
  }
  return nullptr;
}

void Workload::change_acked(int client, const std::string& post_id, int channel, std::string what) {
  int64_t update_at = 0;
  if (auto* db = ctx_.k.databases().find(ctx_.master)) {
    auto o = db->execute({db::Statement{"SELECT UpdateAt FROM Posts WHERE Id = $1", {post_id}}}, false);
    if (o.ok() && !o.result().rows.empty()) update_at = db::int_at(o.result().rows[0], 0);
  }
  ctx_.changes_acked.push_back(ChangeAcked{post_id, std::move(what), channel, client, update_at, ctx_.k.now() - ctx_.t0});
}

// A random client replies to a recent post (the reply is checked as every post is).
void Workload::reply() {
  auto& cl = clients_.at(ctx_.k.random().uniform(clients_.all().size()));
  if (cl.post_in_flight) return;
  if (const Acked* a = pick_post(cl, false, true)) post(cl, a->channel, a->id);
}

// A random client toggles one of a few emoji on a recent post: removes it if it knows its reaction is
// there, adds it otherwise.
void Workload::react() {
  auto& cl = clients_.at(ctx_.k.random().uniform(clients_.all().size()));
  if (cl.change_in_flight) return;
  const Acked* a = pick_post(cl, false, false);
  if (!a) return;
  static constexpr const char* kEmoji[] = {"+1", "smile", "tada"};
  const std::string emoji = kEmoji[ctx_.k.random().uniform(3)];
  const auto k = cl.known.find(a->id);
  const bool remove = k != cl.known.end() && k->second.reactions.contains(cl.user_id + " " + emoji);
  cl.change_in_flight = true;
  const int i = cl.index, ch = a->channel;
  const std::string post_id = a->id;
  auto done = [this, i, ch, post_id, remove](int status, const std::string&) {
    clients_.at(static_cast<size_t>(i)).change_in_flight = false;
    if (status == 200) change_acked(i, post_id, ch, remove ? "reaction removed" : "reaction added");
  };
  if (remove)
    clients_.request(i, "DELETE", fmt::format("/api/v4/users/{}/posts/{}/reactions/{}", cl.user_id, post_id, emoji), "",
                     std::move(done));
  else
    clients_.request(i, "POST", "/api/v4/reactions",
                     fmt::format(R"({{"user_id":"{}","post_id":"{}","emoji_name":"{}"}})", cl.user_id, post_id, emoji),
                     std::move(done));
}

// A random client edits or deletes one of its recent posts.
void Workload::edit_or_delete(bool remove) {
  auto& cl = clients_.at(ctx_.k.random().uniform(clients_.all().size()));
  if (cl.change_in_flight) return;
  const Acked* a = pick_post(cl, true, false);
  if (!a) return;
  cl.change_in_flight = true;
  const int i = cl.index, ch = a->channel;
  const std::string post_id = a->id;
  auto done = [this, i, ch, post_id, remove](int status, const std::string&) {
    clients_.at(static_cast<size_t>(i)).change_in_flight = false;
    if (status == 200) change_acked(i, post_id, ch, remove ? "delete" : "edit");
  };
  if (remove)
    clients_.request(i, "DELETE", "/api/v4/posts/" + post_id, "", std::move(done));
  else
    clients_.request(i, "PUT", "/api/v4/posts/" + post_id + "/patch",
                     fmt::format(R"({{"message":"c{}#{} edit {}"}})", i, a->k, ++cl.edits_made), std::move(done));
}

// A client reads one of its channels, as the apps do on opening it.
void Workload::next_view(Duration at) {
  if (at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this] {
    auto& k = ctx_.k;
    auto& cl = clients_.at(k.random().uniform(clients_.all().size()));
    if (!cl.channels.empty()) {
      const int ch = cl.channels[k.random().uniform(cl.channels.size())];
      const int i = cl.index;
      const Duration sent = k.now();
      clients_.request(i, "POST", "/api/v4/channels/members/me/view",
                       fmt::format(R"({{"channel_id":"{}","prev_channel_id":""}})",
                                   ctx_.channel_ids[static_cast<size_t>(ch)]),
                       [this, i, ch, sent](int status, const std::string&) {
                         if (status == 200)
                           clients_.at(static_cast<size_t>(i)).views_acked.push_back(Client::View{ch, sent, ctx_.k.now()});
                       });
    }
    next_view(k.now() + Duration{static_cast<int64_t>(k.random().exponential(1e6 / ctx_.sc.view_rate))});
  });
}

// A client saves its next preference value; the acknowledged ones are checked (no_acked_post_lost.h).
void Workload::next_preference(Duration at) {
  if (at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this] {
    auto& k = ctx_.k;
    auto& cl = clients_.at(k.random().uniform(clients_.all().size()));
    if (!cl.preference_in_flight) {
      cl.preference_in_flight = true;
      const int64_t value = ++cl.preferences_made;
      const int i = cl.index;
      clients_.request(i, "PUT", "/api/v4/users/me/preferences",
                       fmt::format(R"([{{"user_id":"{}","category":"sim","name":"counter","value":"{}"}}])",
                                   cl.user_id, value),
                       [this, i, value](int status, const std::string&) {
                         auto& c = clients_.at(static_cast<size_t>(i));
                         c.preference_in_flight = false;
                         if (status == 200) {
                           c.preference_acked = std::max(c.preference_acked, value);
                           ctx_.preferences_acked_at[i] = ctx_.k.now() - ctx_.t0;
                         } else if (status == 0 || status >= 500) {
                           c.preference_unsure.insert(value);
                         }
                       });
    }
    next_preference(k.now() +
                    Duration{static_cast<int64_t>(k.random().exponential(1e6 / ctx_.sc.preference_rate))});
  });
}

void Workload::next_post(Duration at) {
  if (at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this] {
    auto& k = ctx_.k;
    auto& cl = clients_.at(k.random().uniform(clients_.all().size()));
    if (!cl.post_in_flight && !cl.channels.empty()) post(cl, cl.channels[k.random().uniform(cl.channels.size())]);
    next_post(k.now() + Duration{static_cast<int64_t>(k.random().exponential(1e6 / ctx_.sc.post_rate))});
  });
}

void Workload::post(Client& cl, int ch, const std::string& root, const std::string& file_id,
                    const std::string& file_data) {
  const int64_t n = ++cl.posts_made;
  cl.post_in_flight = true;
  const int i = cl.index;
  clients_.request(i, "POST", "/api/v4/posts",
                   fmt::format(R"({{"channel_id":"{}","message":"c{}#{}","pending_post_id":"{}:{}","root_id":"{}","file_ids":[{}]}})",
                               ctx_.channel_ids[static_cast<size_t>(ch)], i, n, cl.user_id, n, root,
                               file_id.empty() ? "" : "\"" + file_id + "\""),
                   [this, i, ch, n, root, file_id, file_data](int status, const std::string& body) {
                     auto& c = clients_.at(static_cast<size_t>(i));
                     c.post_in_flight = false;
                     if (status != 201) return;
                     ctx_.acked.push_back(
                         Acked{json_field(body, "id"), ch, i, n, ctx_.k.now() - ctx_.t0, root, file_id, file_data});
                     ctx_.ack_time[ctx_.acked.back().id] = ctx_.k.now();
                   });
}

void Workload::next_search(Duration at) {
  if (at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this] {
    auto& k = ctx_.k;
    auto& cl = clients_.at(k.random().uniform(clients_.all().size()));
    const int author = static_cast<int>(k.random().uniform(clients_.all().size()));
    clients_.request(cl.index, "POST", "/api/v4/teams/" + ctx_.team + "/posts/search",
                     fmt::format(R"({{"terms":"c{}","is_or_search":false}})", author), [](int, const std::string&) {});
    next_search(k.now() + Duration{static_cast<int64_t>(k.random().exponential(1e6 / ctx_.sc.search_rate))});
  });
}

void Workload::next_typing(Duration at) {
  if (at >= ctx_.t0 + ctx_.sc.workload_until) return;
  ctx_.k.at(at, [this] {
    auto& k = ctx_.k;
    auto& cl = clients_.at(k.random().uniform(clients_.all().size()));
    if (cl.socket && cl.socket->session && !cl.channels.empty() && k.state(cl.socket->node) == NodeState::up) {
      const int ch = cl.channels[k.random().uniform(cl.channels.size())];
      ctx_.c.send(*cl.socket,
                  fmt::format(R"({{"action":"user_typing","seq":{},"data":{{"channel_id":"{}","parent_id":""}}}})",
                              cl.reply_seq++, ctx_.channel_ids[static_cast<size_t>(ch)]));
    }
    next_typing(k.now() + Duration{static_cast<int64_t>(k.random().exponential(1e6 / ctx_.sc.typing_rate))});
  });
}

}  // namespace chorus::sim
