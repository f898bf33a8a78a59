// A user's preferences and sidebar categories: what the apps keep per user and build their sidebar from.
// Both live in the database (every node reads the same) and every change goes to all the user's clients,
// on every node, as an event.
#include "server/app/app.h"

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

namespace {

// Every category the apps use is lower-case letters, digits and underscores ("display_settings",
// "direct_channel_show", "favorite_channel", ...); Mattermost's limits are 32, 32 and 2000 characters.
AppError check_preference(const Preference& p, const std::string& user_id) {
  if (p.user_id != user_id)
    return error(403, "api.preference.update_preferences.set.app_error",
                 "Unable to set preferences for another user.", "user_id " + p.user_id);
  if (!valid_name(p.category, 1, 32, true, false) || p.category.find('-') != std::string::npos)
    return error(400, "model.preference.is_valid.category.app_error",
                 "Invalid category: 1 to 32 lower-case letters, digits or underscores.");
  if (p.name.size() > 32) return error(400, "model.preference.is_valid.name.app_error", "Invalid name: 32 at most.");
  if (p.value.size() > 2000)
    return error(400, "model.preference.is_valid.value.app_error", "Value is too long: 2000 at most.");
  return {};
}

std::string category_id(const std::string& type, const std::string& user_id, const std::string& team_id) {
  return type + "_" + user_id + "_" + team_id;
}

boost::json::array preferences_json(const std::vector<Preference>& prefs) {
  boost::json::array a;
  for (const auto& p : prefs) a.push_back(p.to_json());
  return a;
}

}  // namespace

bool App::self_or_admin(const Session& actor, const std::string& user_id, const std::function<void(AppError)>& fail) {
  if (!is_valid_id(user_id)) {
    fail(bad_param("user_id"));
    return false;
  }
  if (actor.user_id == user_id || actor.is_system_admin()) return true;
  fail(forbidden());
  return false;
}

std::vector<db::Statement> App::user_seq_statements(const std::string& user_id) {
  return {Statement{"UPDATE Users SET EventSeq = EventSeq + 1 WHERE Id = $1", {user_id}},
          Statement{"SELECT EventSeq FROM Users WHERE Id = $1", {user_id}}};
}

void App::publish_to_user(const std::string& user_id, std::string event, boost::json::object data, int64_t user_seq) {
  Event ev{std::move(event), std::move(data)};
  ev.user_seq = user_seq;
  ev.broadcast.user_id = user_id;
  ev.recipients = {user_id};
  ev.reliable = true;
  publish(std::move(ev));
}

// ---------------------------------------------------------------------------------------------------
// Preferences.

void App::get_preferences(const Session& actor, const std::string& user_id, const std::string& category,
                          const std::string& name, Callback<std::vector<Preference>> done) {
  using R = std::vector<Preference>;
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<R>(e)); })) return;
  if (!category.empty() && !valid_name(category, 1, 32, true, false)) return done(fail<R>(bad_param("category")));
  if (name.size() > 32) return done(fail<R>(bad_param("name")));
  std::string sql = "SELECT UserId, Category, Name, Value FROM Preferences WHERE UserId = $1";
  std::vector<Value> params{user_id};
  if (!category.empty()) {
    params.emplace_back(category);
    sql += " AND Category = $2";
  }
  if (!name.empty()) {
    params.emplace_back(name);
    sql += " AND Name = $3";
  }
  // From the master: the apps read back what they saved a moment ago, possibly through another node.
  store_.write({Statement{sql + " ORDER BY Category, Name", params}}, false,
               [alive = alive_, done, single = !name.empty()](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<R>(from_db(o.error)));
                 R out;
                 for (const auto& r : o.result().rows) out.push_back(preference_from_row(r));
                 if (single && out.empty()) return done(fail<R>(not_found("preference")));
                 done(ok(std::move(out)));
               });
}

void App::save_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                           Callback<Unit> done) {
  change_preferences(actor, user_id, std::move(prefs), false, std::move(done));
}

void App::delete_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                             Callback<Unit> done) {
  change_preferences(actor, user_id, std::move(prefs), true, std::move(done));
}

// Saves (upserts) or deletes, with the user's event count in the same transaction, then the event.
void App::change_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                             bool remove, Callback<Unit> done) {
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<Unit>(e)); })) return;
  if (prefs.empty() || prefs.size() > 100) return done(fail<Unit>(bad_param("preferences: 1 to 100")));
  for (const auto& p : prefs)
    if (AppError e = check_preference(p, user_id); !e.ok()) return done(fail<Unit>(e));
  std::vector<Statement> s;
  for (const auto& p : prefs)
    s.push_back(remove ? Statement{"DELETE FROM Preferences WHERE UserId = $1 AND Category = $2 AND Name = $3",
                                   {p.user_id, p.category, p.name}}
                       : Statement{"INSERT INTO Preferences (UserId, Category, Name, Value) VALUES ($1, $2, $3, $4)"
                                   " ON CONFLICT (UserId, Category, Name) DO UPDATE SET Value = excluded.Value",
                                   {p.user_id, p.category, p.name, p.value}});
  for (auto& st : user_seq_statements(user_id)) s.push_back(std::move(st));
  store_.write(std::move(s), true, [this, alive = alive_, user_id, prefs, remove, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
    const auto& seq = o.value.back().rows;
    publish_to_user(user_id, remove ? "preferences_deleted" : "preferences_changed",
                    {{"preferences", boost::json::serialize(preferences_json(prefs))}},
                    seq.empty() ? 0 : int_at(seq[0], 0));
    done(ok(Unit{}));
  });
}

// ---------------------------------------------------------------------------------------------------
// Sidebar categories.

void App::get_categories(const Session& actor, const std::string& user_id, const std::string& team_id,
                         Callback<SidebarCategories> done) {
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<SidebarCategories>(e)); })) return;
  if (!is_valid_id(team_id)) return done(fail<SidebarCategories>(bad_param("team_id")));
  get_categories_flow(actor, user_id, team_id, std::move(done)).start();
}

// Top to bottom (server/core/flow.h): the team membership; then, in one transaction on the master, the
// categories, the channels placed in them and the user's channels (with the default categories made
// first, in a second transaction, when they are not there yet).
Flow App::get_categories_flow(Session actor, std::string user_id, std::string team_id,
                              Callback<SidebarCategories> done) {
  auto [e, member] = co_await awaiting<AppError, bool>(
      alive_, [&](auto resume) { is_team_member(team_id, user_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<SidebarCategories>(e));
  if (!member) co_return done(fail<SidebarCategories>(forbidden()));
  auto reads = [&] {
    return std::vector<Statement>{
        Statement{std::string("SELECT ") + kSidebarCategoryColumns +
                      " FROM SidebarCategories WHERE UserId = $1 AND TeamId = $2 ORDER BY SortOrder, Id",
                  {user_id, team_id}},
        Statement{"SELECT sc.CategoryId, sc.ChannelId FROM SidebarChannels sc JOIN SidebarCategories k ON k.Id ="
                  " sc.CategoryId WHERE k.UserId = $1 AND k.TeamId = $2 ORDER BY sc.SortOrder, sc.ChannelId",
                  {user_id, team_id}},
        Statement{"SELECT c.Id, c.Type FROM Channels c JOIN ChannelMembers m ON m.ChannelId = c.Id"
                  " WHERE m.UserId = $1 AND (c.TeamId = $2 OR c.TeamId = '') AND c.DeleteAt = 0"
                  " ORDER BY c.DisplayName, c.Name",
                  {user_id, team_id}}};
  };
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(reads(), true, std::move(resume)); });
  if (!o.ok()) co_return done(fail<SidebarCategories>(from_db(o.error)));
  // The defaults are made by the first read that lacks them; later reads write nothing.
  const std::pair<const char*, const char*> defaults[] = {
      {"favorites", "Favorites"}, {"channels", "Channels"}, {"direct_messages", "Direct Messages"}};
  size_t present = 0;
  for (const auto& r : o.value[0].rows)
    for (const auto& d : defaults) present += text_at(r, 0) == category_id(d.first, user_id, team_id);
  if (present < std::size(defaults)) {
    std::vector<Statement> s;
    int64_t order = 0;
    for (const auto& [type, name] : defaults) {
      s.push_back(Statement{"INSERT INTO SidebarCategories (Id, UserId, TeamId, Type, DisplayName, Sorting, SortOrder)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (Id) DO NOTHING",
                            {category_id(type, user_id, team_id), user_id, team_id, std::string(type),
                             std::string(name), std::string(std::string(type) == "direct_messages" ? "recent" : ""),
                             order}});
      order += 10;
    }
    for (auto& r : reads()) s.push_back(std::move(r));
    o = co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
    if (!o.ok()) co_return done(fail<SidebarCategories>(from_db(o.error)));
  }
  const size_t n = o.value.size();
  SidebarCategories out;
  std::map<std::string, size_t> index;
  for (const auto& r : o.value[n - 3].rows) {
    index[text_at(r, 0)] = out.categories.size();
    out.categories.push_back(sidebar_category_from_row(r));
    out.order.push_back(text_at(r, 0));
  }
  std::map<std::string, std::string> type_of;  // the user's channels
  for (const auto& r : o.value[n - 1].rows) type_of[text_at(r, 0)] = text_at(r, 1);
  std::set<std::string> placed;
  for (const auto& r : o.value[n - 2].rows) {
    const std::string cat = text_at(r, 0), channel = text_at(r, 1);
    auto at = index.find(cat);  // (a category deleted between the two reads: its channels fall back)
    if (at == index.end() || !type_of.contains(channel) || placed.contains(channel)) continue;
    out.categories[at->second].channel_ids.push_back(channel);
    placed.insert(channel);
  }
  const std::string channels_id = category_id("channels", user_id, team_id),
                    dms_id = category_id("direct_messages", user_id, team_id);
  for (const auto& r : o.value[n - 1].rows) {
    const std::string channel = text_at(r, 0), type = text_at(r, 1);
    if (placed.contains(channel)) continue;
    const auto& target = type == "D" || type == "G" ? dms_id : channels_id;
    if (auto it = index.find(target); it != index.end()) out.categories[it->second].channel_ids.push_back(channel);
  }
  done(ok(std::move(out)));
}

void App::create_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                          SidebarCategory category, Callback<SidebarCategory> done) {
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<SidebarCategory>(e)); })) return;
  if (!is_valid_id(team_id)) return done(fail<SidebarCategory>(bad_param("team_id")));
  if (category.display_name.empty() || category.display_name.size() > 64)
    return done(fail<SidebarCategory>(bad_param("display_name")));
  category.id = "custom_" + new_id(env_.random());
  category.user_id = user_id;
  category.team_id = team_id;
  category.type = "custom";
  is_team_member(team_id, user_id, [this, alive = alive_, actor, user_id, team_id, category, done](AppError e,
                                                                                                  bool member) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<SidebarCategory>(e));
    if (!member) return done(fail<SidebarCategory>(forbidden()));
    insert_category(actor, user_id, team_id, category, done);
  });
}

void App::insert_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                          SidebarCategory category, Callback<SidebarCategory> done) {
  std::vector<Statement> s{Statement{
      "INSERT INTO SidebarCategories (Id, UserId, TeamId, Type, DisplayName, Sorting, SortOrder, Muted, Collapsed)"
      " VALUES ($1, $2, $3, 'custom', $4, $5, -10, $6, $7)",
      {category.id, user_id, team_id, category.display_name, category.sorting, int64_t{category.muted},
       int64_t{category.collapsed}}}};
  store_.write(std::move(s), true,
               [this, alive = alive_, actor, user_id, team_id, category, done](db::Outcome o) mutable {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<SidebarCategory>(from_db(o.error)));
                 publish_to_user(user_id, "sidebar_category_created",
                                 {{"category_id", category.id}, {"team_id", team_id}});
                 if (category.channel_ids.empty()) return done(ok(category));
                 // Channels given at creation move into it, as an update would move them.
                 update_categories(actor, user_id, team_id, {category},
                                   [done](Result<std::vector<SidebarCategory>> r) {
                                     if (!r.ok()) return done(fail<SidebarCategory>(r.error));
                                     if (r.value.empty())  // deleted meanwhile
                                       return done(fail<SidebarCategory>(not_found("category")));
                                     done(ok(r.value.front()));
                                   });
               });
}

void App::update_categories(const Session& actor, const std::string& user_id, const std::string& team_id,
                            std::vector<SidebarCategory> categories, Callback<std::vector<SidebarCategory>> done) {
  using R = std::vector<SidebarCategory>;
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<R>(e)); })) return;
  if (!is_valid_id(team_id)) return done(fail<R>(bad_param("team_id")));
  if (categories.empty() || categories.size() > 100) return done(fail<R>(bad_param("categories")));
  for (const auto& c : categories) {
    if (c.id.empty() || c.id.size() > 128) return done(fail<R>(bad_param("category id")));
    if (c.channel_ids.size() > 10000) return done(fail<R>(bad_param("channel_ids")));
    for (const auto& ch : c.channel_ids)
      if (!is_valid_id(ch)) return done(fail<R>(bad_param("channel_ids")));
    if (c.sorting != "" && c.sorting != "alpha" && c.sorting != "recent" && c.sorting != "manual")
      return done(fail<R>(bad_param("sorting")));
    if (c.display_name.size() > 64) return done(fail<R>(bad_param("display_name")));
  }
  update_categories_flow(actor, user_id, team_id, std::move(categories), std::move(done)).start();
}

// Top to bottom: the user's categories and channels now (the categories must be the user's in this team,
// the channels the user's), the changes in one transaction, the event, then the categories as stored.
Flow App::update_categories_flow(Session actor, std::string user_id, std::string team_id,
                                 std::vector<SidebarCategory> categories, Callback<std::vector<SidebarCategory>> done) {
  using R = std::vector<SidebarCategory>;
  auto [e, current] = co_await awaiting<Result<SidebarCategories>>(
      alive_, [&](auto resume) { get_categories(actor, user_id, team_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<R>(e));
  std::map<std::string, const SidebarCategory*> mine;
  std::set<std::string> channels;
  for (const auto& c : current.categories) {
    mine[c.id] = &c;
    channels.insert(c.channel_ids.begin(), c.channel_ids.end());
  }
  std::vector<Statement> s;
  std::set<std::string> moved;
  for (const auto& c : categories) {
    auto it = mine.find(c.id);
    if (it == mine.end()) co_return done(fail<R>(not_found("category " + c.id)));
    for (const auto& ch : c.channel_ids) {
      if (!channels.contains(ch))
        co_return done(fail<R>(error(400, "app.channel.sidebar_categories.app_error",
                                     "A channel in the category is not one of the user's channels.", ch)));
      if (!moved.insert(ch).second)
        co_return done(fail<R>(error(400, "app.channel.sidebar_categories.app_error",
                                     "A channel is in two of the categories.", ch)));
    }
    const bool custom = it->second->type == "custom";
    s.push_back(Statement{"UPDATE SidebarCategories SET DisplayName = $2, Sorting = $3, Muted = $4, Collapsed = $5"
                          " WHERE Id = $1",
                          {c.id, custom && !c.display_name.empty() ? c.display_name : it->second->display_name,
                           c.sorting.empty() ? it->second->sorting : c.sorting, int64_t{c.muted},
                           int64_t{c.collapsed}}});
    s.push_back(Statement{"DELETE FROM SidebarChannels WHERE CategoryId = $1", {c.id}});
  }
  for (const auto& ch : moved)
    s.push_back(Statement{"DELETE FROM SidebarChannels WHERE UserId = $1 AND ChannelId = $2 AND CategoryId IN"
                          " (SELECT Id FROM SidebarCategories WHERE UserId = $1 AND TeamId = $3)",
                          {user_id, ch, team_id}});
  for (const auto& c : categories)
    for (size_t i = 0; i < c.channel_ids.size(); ++i)
      s.push_back(Statement{"INSERT INTO SidebarChannels (CategoryId, ChannelId, UserId, SortOrder) VALUES ($1, $2, "
                            "$3, $4)",
                            {c.id, c.channel_ids[i], user_id, static_cast<int64_t>(i)}});
  for (auto& st : user_seq_statements(user_id)) s.push_back(std::move(st));
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (!o.ok()) co_return done(fail<R>(from_db(o.error)));
  const int64_t seq = o.value.back().rows.empty() ? 0 : int_at(o.value.back().rows[0], 0);
  auto [e2, after] = co_await awaiting<Result<SidebarCategories>>(
      alive_, [&](auto resume) { get_categories(actor, user_id, team_id, std::move(resume)); });
  if (!e2.ok()) co_return done(fail<R>(e2));
  R updated;
  boost::json::array updated_json;
  for (const auto& c : after.categories)
    for (const auto& asked : categories)
      if (asked.id == c.id) {
        updated.push_back(c);
        updated_json.push_back(c.to_json());
      }
  publish_to_user(user_id, "sidebar_category_updated",
                  {{"updatedCategories", boost::json::serialize(updated_json)}, {"team_id", team_id}}, seq);
  done(ok(std::move(updated)));
}

void App::update_category_order(const Session& actor, const std::string& user_id, const std::string& team_id,
                                std::vector<std::string> order, Callback<std::vector<std::string>> done) {
  using R = std::vector<std::string>;
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<R>(e)); })) return;
  if (!is_valid_id(team_id)) return done(fail<R>(bad_param("team_id")));
  get_categories(actor, user_id, team_id,
                 [this, alive = alive_, user_id, team_id, order, done](Result<SidebarCategories> r) {
                   if (!*alive) return;
                   if (!r.ok()) return done(fail<R>(r.error));
                   // Every category of the user's, each once: an order that leaves one out is refused.
                   std::set<std::string> have(r.value.order.begin(), r.value.order.end()),
                       asked(order.begin(), order.end());
                   if (have != asked || asked.size() != order.size())
                     return done(fail<R>(error(400, "api.context.invalid_body_param.app_error",
                                               "The order must name each of the user's categories once.")));
                   std::vector<Statement> s;
                   for (size_t i = 0; i < order.size(); ++i)
                     s.push_back(Statement{"UPDATE SidebarCategories SET SortOrder = $2 WHERE Id = $1",
                                           {order[i], static_cast<int64_t>(i) * 10}});
                   store_.write(std::move(s), true, [this, alive, user_id, team_id, order, done](db::Outcome o) {
                     if (!*alive) return;
                     if (!o.ok()) return done(fail<R>(from_db(o.error)));
                     boost::json::array a;
                     for (const auto& id : order) a.emplace_back(id);
                     publish_to_user(user_id, "sidebar_category_order_updated", {{"order", a}, {"team_id", team_id}});
                     done(ok(order));
                   });
                 });
}

void App::delete_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                          const std::string& category_id, Callback<Unit> done) {
  if (!self_or_admin(actor, user_id, [&](AppError e) { done(fail<Unit>(e)); })) return;
  if (!is_valid_id(team_id)) return done(fail<Unit>(bad_param("team_id")));
  if (category_id.empty() || category_id.size() > 128) return done(fail<Unit>(bad_param("category_id")));
  // Only the user's own categories go; their channels fall back to the default categories.
  store_.write({Statement{"DELETE FROM SidebarChannels WHERE CategoryId IN (SELECT Id FROM SidebarCategories WHERE Id ="
                          " $1 AND UserId = $2 AND TeamId = $3 AND Type = 'custom')",
                          {category_id, user_id, team_id}},
                Statement{"DELETE FROM SidebarCategories WHERE Id = $1 AND UserId = $2 AND TeamId = $3 AND Type = "
                          "'custom'",
                          {category_id, user_id, team_id}}},
               true, [this, alive = alive_, user_id, team_id, category_id, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(fail<Unit>(from_db(o.error)));
                 if (o.value[1].affected == 0)
                   return done(fail<Unit>(error(400, "app.channel.sidebar_categories.app_error",
                                                "No custom category of the user's has that id.")));
                 publish_to_user(user_id, "sidebar_category_deleted",
                                 {{"category_id", category_id}, {"team_id", team_id}});
                 done(ok(Unit{}));
               });
}

}  // namespace chorus::app
