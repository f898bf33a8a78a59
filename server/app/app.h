// The application: users, sessions, teams, channels, posts and statuses; who may do what; the caches
// and their cluster-wide invalidation; the events that WebSocket clients receive.
//
// Every change is written to the database first (the master), then announced: the event goes to this
// node's hub and, as a cluster message, to the other nodes' hubs (reliable for posted and membership
// events, best effort for typing and status); cache invalidations go best effort. A node applying a
// message from a peer never sends it on.
//
// Staleness bound: a cached session, user or channel membership is used for at most
// `cache_ttl` (ServiceSettings.SessionCacheInMinutes, capped at 10 s here) after it was read, and every
// cache is dropped whenever membership changes (a peer declared dead or back, which is how a partition
// shows): an invalidation lost in a partition is therefore repaired within min(cache_ttl, detection time
// + cache_ttl). A revoked session stops working on every node within that bound; on the node that
// revoked it, at once.
//
// Runs above the seam: on the simulator as in production. Calls come from server/api on the node's loop;
// results come back through callbacks on the same loop.
//
// One class, its code in files by domain: app_users.cpp (sessions, users), app_teams.cpp,
// app_channels.cpp (channels, members), app_posts.cpp (posts, channel order, search), app_statuses.cpp,
// app_cluster.cpp (publish, invalidations, peers' messages, handover, analytics), app.cpp (the rest);
// channel_sequencer.h orders posted events; ttl_cache.h is the caches.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/app/channel_sequencer.h"
#include "server/app/hub.h"
#include "server/app/model.h"
#include "server/app/ttl_cache.h"
#include "server/cluster/wire.h"
#include "server/config/config.h"
#include "server/core/env.h"
#include "server/core/flow.h"

namespace chorus::store {
class Store;
}
namespace chorus::cluster {
class Messenger;
struct ClusterMessage;
}  // namespace chorus::cluster

namespace chorus::app {

// An error in Mattermost's terms: an HTTP status and a stable id ("api.user.login.invalid_credentials...").
struct AppError {
  int status = 0;
  std::string id;
  std::string message;
  std::string detailed;
  bool ok() const { return status == 0; }
};

template <class T>
using Result = ::chorus::Result<T, AppError>;  // server/core/result.h
template <class T>
using Callback = std::function<void(Result<T>)>;
struct Unit {};

struct AppOptions {
  int bcrypt_cost = 10;            // Mattermost's cost; the simulator uses 4
  Duration cache_ttl{10'000'000};  // see the staleness bound above
  size_t cache_entries_max = 100'000;
  int per_page_max = 200;
  Duration gap_wait{300'000};   // a channel's post ahead of a gap waits this long for the missing ones
  Duration first_wait{50'000};  // the first post of a channel a node sees waits this long for earlier ones
  // Posts to one channel are written one after the other (in_channel_order); past this many waiting on
  // this node, a new post gets 503 (api.post.create_post.too_many_waiting.app_error) and the client retries.
  size_t channel_write_queue_max = 1000;
  // The post outbox (app_posts.cpp): a post's row in PostOutbox, written in its transaction, goes when every
  // peer has its event. A row untouched for `outbox_age` is republished by the first node whose sweep (every
  // `outbox_sweep`) claims it; one older than `outbox_age_max` is dropped unpublished (every client has
  // re-synced since: the nodes were all away that long) and counted.
  Duration outbox_sweep{15'000'000};
  Duration outbox_age{30'000'000};
  Duration outbox_age_max{300'000'000};
  Duration outbox_flush{1'000'000};  // published posts' rows are deleted in batches this often
};

struct NewUser {
  std::string username, email, password, first_name, last_name, nickname, locale;
};

struct PostQuery {
  int page = 0, per_page = 60;
  int64_t since = 0;          // posts changed since (ms): the client's re-sync after a reconnect
  std::string before, after;  // post ids
};

struct PostList {
  std::vector<Post> posts;  // newest first
  // The posts just after the newest and just before the oldest in the list ("" at the channel's ends):
  // the apps page with these and stop when they are empty.
  std::string next_post_id, prev_post_id;
};

// GET /users: who to list (ids empty: no filter) and the page.
struct UserQuery {
  int page = 0, per_page = 60;
  std::string in_team, not_in_team, in_channel, not_in_channel;
  bool without_team = false;
};

// POST /users/search and GET /users/autocomplete: a term matched as a prefix of the username, first
// name, last name, nickname or email, case-insensitively, within the given team or channel.
struct UserSearch {
  std::string term, in_team, not_in_team, in_channel, not_in_channel;
  int limit = 100;
};
struct Autocomplete {
  std::vector<User> users, out_of_channel;
};

// PUT /users/{id}/patch: only the fields sent change.
struct UserPatch {
  std::optional<std::string> nickname, first_name, last_name, position, locale;
  std::optional<std::string> props, notify_props, timezone;  // JSON objects of strings
};

struct SidebarCategories {
  std::vector<SidebarCategory> categories;
  std::vector<std::string> order;
};

class App {
 public:
  App(Env& env, store::Store& store, const config::Config& config, Hub& hub, AppOptions options = {});
  ~App();

  // The cluster (null on a single node): announcements go out through it; peers' come in below.
  void set_messenger(cluster::Messenger* messenger);
  // A cluster message from a peer (publish, inv_*, clear_session_user, update_status).
  void on_cluster_message(const std::string& from, const cluster::ClusterMessage& message);
  // Membership changed (a peer died, came back, or we were cut off): drop every cache.
  void on_membership_change();
  void set_config(const config::Config& config) { config_ = &config; }
  const config::Config& config() const { return *config_; }

  // Sessions. The token may come from a header, a cookie or a query parameter (the api decides).
  void authenticate(const std::string& token, Callback<Session> done);

  // Users.
  void create_user(const Session* actor, NewUser user, Callback<User> done);
  void login(const std::string& login_id, const std::string& password, const std::string& device_id,
             Callback<std::pair<User, Session>> done);
  void logout(const Session& session, Callback<Unit> done);
  // PUT /users/{id}/password: the user (with the current password) or a system admin (without) sets a
  // new one; the account's failed login attempts go back to 0 (the way out of a lock).
  void update_password(const Session& actor, const std::string& user_id, const std::string& current,
                       const std::string& next, Callback<Unit> done);
  void get_user(const Session& actor, const std::string& user_id, Callback<User> done);
  void get_user_by_username(const Session& actor, const std::string& username, Callback<User> done);
  void get_users_by_ids(const Session& actor, const std::vector<std::string>& ids, Callback<std::vector<User>> done);
  void list_users(const Session& actor, UserQuery query, Callback<std::vector<User>> done);
  void get_users_by_usernames(const Session& actor, const std::vector<std::string>& usernames,
                              Callback<std::vector<User>> done);
  void search_users(const Session& actor, UserSearch search, Callback<std::vector<User>> done);
  void autocomplete_users(const Session& actor, UserSearch search, Callback<Autocomplete> done);
  // The user (or a system admin) changes profile fields; every node drops its cached copy, every client
  // gets user_updated.
  void patch_user(const Session& actor, const std::string& user_id, UserPatch patch, Callback<User> done);
  // PUT /users/{id}/roles (system admin): "system_user" or "system_user system_admin"; the user's sessions
  // take the new roles at once, on every node.
  void update_user_roles(const Session& actor, const std::string& user_id, const std::string& roles,
                         Callback<Unit> done);
  // PUT /users/{id}/active (system admin): deactivating sets DeleteAt and ends every session of the user
  // (its sockets close within the session staleness bound); activating clears DeleteAt.
  void set_user_active(const Session& actor, const std::string& user_id, bool active, Callback<Unit> done);
  // PUT /users/sessions/device: the session's push device id.
  void attach_device(const Session& actor, const std::string& device_id, Callback<Unit> done);
  // A per-installation id, the same on every node (the Systems table), made on first use: the apps refuse
  // a server whose client config has none.
  void diagnostic_id(std::function<void(std::string)> done);

  // Preferences (app_preferences.cpp): category "" gets all, name "" all of the category. Saving and
  // deleting tell every client of the user (preferences_changed, preferences_deleted).
  void get_preferences(const Session& actor, const std::string& user_id, const std::string& category,
                       const std::string& name, Callback<std::vector<Preference>> done);
  void save_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                        Callback<Unit> done);
  void delete_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                          Callback<Unit> done);

  // Sidebar categories of a user in a team (app_preferences.cpp). The three defaults (Favorites,
  // Channels, Direct Messages) are made on first read; a channel the user placed nowhere shows in
  // Channels (public and private) or Direct Messages (DMs and group messages, in every team's sidebar).
  void get_categories(const Session& actor, const std::string& user_id, const std::string& team_id,
                      Callback<SidebarCategories> done);
  void create_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                       SidebarCategory category, Callback<SidebarCategory> done);
  // Sets each category's channels (a channel moves out of the category it was in), sorting, collapsed
  // and muted, and a custom category's name; sidebar_category_updated to the user's clients.
  void update_categories(const Session& actor, const std::string& user_id, const std::string& team_id,
                         std::vector<SidebarCategory> categories, Callback<std::vector<SidebarCategory>> done);
  void update_category_order(const Session& actor, const std::string& user_id, const std::string& team_id,
                             std::vector<std::string> order, Callback<std::vector<std::string>> done);
  void delete_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                       const std::string& category_id, Callback<Unit> done);

  // Teams.
  void create_team(const Session& actor, Team team, Callback<Team> done);
  void get_team(const Session& actor, const std::string& team_id, Callback<Team> done);
  void get_team_by_name(const Session& actor, const std::string& name, Callback<Team> done);
  void teams_for_user(const Session& actor, const std::string& user_id, Callback<std::vector<Team>> done);
  void list_teams(const Session& actor, Callback<std::vector<Team>> done);
  // Unread messages and mentions per team of the user's (team_id "": all its teams but exclude_team).
  void teams_unread(const Session& actor, const std::string& user_id, const std::string& team_id,
                    const std::string& exclude_team, Callback<std::vector<TeamUnread>> done);
  void add_team_member(const Session& actor, const std::string& team_id, const std::string& user_id,
                       Callback<TeamMember> done);
  void remove_team_member(const Session& actor, const std::string& team_id, const std::string& user_id,
                          Callback<Unit> done);
  void team_members(const Session& actor, const std::string& team_id, int page, int per_page,
                    Callback<std::vector<TeamMember>> done);
  void team_members_for_user(const Session& actor, const std::string& user_id, Callback<std::vector<TeamMember>> done);

  // Channels.
  void create_channel(const Session& actor, Channel channel, Callback<Channel> done);
  void get_channel(const Session& actor, const std::string& channel_id, Callback<Channel> done);
  void get_channel_by_name(const Session& actor, const std::string& team_id, const std::string& name,
                           Callback<Channel> done);
  void public_channels(const Session& actor, const std::string& team_id, int page, int per_page,
                       Callback<std::vector<Channel>> done);
  // The user's channels in a team, with its direct and group channels (which belong to no team); team ""
  // gives them in every team.
  void channels_for_user(const Session& actor, const std::string& user_id, const std::string& team_id,
                         Callback<std::vector<Channel>> done);
  // A direct channel between two users (the same channel on every call; one of them may be the actor
  // twice, a note to oneself), or a group channel of 3 to 8 users with the actor among them.
  // direct_added / group_added to its members.
  void create_direct_channel(const Session& actor, const std::string& user_a, const std::string& user_b,
                             Callback<Channel> done);
  void create_group_channel(const Session& actor, std::vector<std::string> user_ids, Callback<Channel> done);
  // The members of the actor's group channels among channel_ids (POST /users/group_channels).
  void group_channel_profiles(const Session& actor, const std::vector<std::string>& channel_ids,
                              Callback<std::vector<std::pair<std::string, std::vector<User>>>> done);
  // The actor read these channels (prev may be ""): msg_count catches up with the channel's, mentions
  // go to 0; channel_viewed to the actor's clients. Answers each channel's new last_viewed_at.
  void view_channels(const Session& actor, const std::string& channel_id, const std::string& prev_channel_id,
                     Callback<std::vector<std::pair<std::string, int64_t>>> done);
  void channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                      Callback<ChannelMember> done);
  void channel_member_count(const Session& actor, const std::string& channel_id, Callback<int64_t> done);
  void add_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                          Callback<ChannelMember> done);
  void remove_channel_member(const Session& actor, const std::string& channel_id, const std::string& user_id,
                             Callback<Unit> done);
  void channel_members(const Session& actor, const std::string& channel_id, int page, int per_page,
                       Callback<std::vector<ChannelMember>> done);
  // team "": the user's memberships in every team and its direct and group channels (paged).
  void channel_members_for_user(const Session& actor, const std::string& user_id, const std::string& team_id,
                                Callback<std::vector<ChannelMember>> done, int page = 0, int per_page = 0);

  // Posts.
  void create_post(const Session& actor, Post post, Callback<Post> done);
  void get_post(const Session& actor, const std::string& post_id, Callback<Post> done);
  void get_posts(const Session& actor, const std::string& channel_id, PostQuery query, Callback<PostList> done);
  // The posts around the user's last read (up to `before` read ones and `after` unread ones).
  void posts_around_last_read(const Session& actor, const std::string& user_id, const std::string& channel_id,
                              int before, int after, Callback<PostList> done);
  void search_posts(const Session& actor, const std::string& team_id, const std::string& terms, bool is_or, int page,
                    int per_page, Callback<PostList> done);
  // A post's thread: its root and every reply, oldest last (as the other lists).
  void get_thread(const Session& actor, const std::string& post_id, Callback<PostList> done);
  void pinned_posts(const Session& actor, const std::string& channel_id, Callback<PostList> done);

  // Changes to a post (app_post_changes.cpp): edit, pin, delete, react. Each moves the post's update_at
  // forward in its transaction (strictly: the hubs order a post's changes by it, hub.h post_seq), keeps
  // its latest change in PostChangeOutbox until every peer has the event, and sends the channel's members
  // post_edited, post_deleted, reaction_added or reaction_removed. Only a member of the post's channel
  // (or a system admin) changes a post; only its author (or a system admin) edits or deletes it.
  struct PostPatch {
    std::optional<std::string> message, props;  // props: a JSON object
    std::optional<bool> is_pinned;
  };
  void patch_post(const Session& actor, const std::string& post_id, PostPatch patch, Callback<Post> done);
  // Deletes the post and, for a thread's root, its replies (one post_deleted, as Mattermost).
  void delete_post(const Session& actor, const std::string& post_id, Callback<Post> done);
  void save_reaction(const Session& actor, Reaction reaction, Callback<Reaction> done);
  // Removing a reaction that is not there changes nothing and is no error.
  void delete_reaction(const Session& actor, Reaction reaction, Callback<Unit> done);
  void get_reactions(const Session& actor, const std::string& post_id, Callback<std::vector<Reaction>> done);
  void reactions_for_posts(const Session& actor, const std::vector<std::string>& post_ids,
                           Callback<std::map<std::string, std::vector<Reaction>>> done);

  // Files (app_files.cpp). An upload writes each file, and an image's thumbnail and preview, to the shared
  // file store (Env::files: a shared directory or S3), then records them all in one transaction: a file
  // is visible only once all its bytes are stored. A post attaches the uploader's unattached files of its
  // channel (file_ids); reading a file needs read access to its post's channel (the uploader alone
  // before it is attached).
  struct Upload {
    std::string name, data;  // (the apps' client_ids only go back in the answer: the api keeps them)
  };
  void upload_files(const Session& actor, const std::string& channel_id, std::vector<Upload> files,
                    Callback<std::vector<FileInfo>> done);
  void get_file_info(const Session& actor, const std::string& file_id, Callback<FileInfo> done);
  enum class FileVariant { original, thumbnail, preview };
  void get_file(const Session& actor, const std::string& file_id, FileVariant variant,
                Callback<std::pair<FileInfo, std::string>> done);
  // The store answers: a marker written and read back within 5 s (the ping's filestore_status).
  void check_file_store(std::function<void(std::string error)> done);

  // Statuses and typing.
  void get_status(const Session& actor, const std::string& user_id, Callback<Status> done);
  void get_statuses(const Session& actor, const std::vector<std::string>& user_ids, Callback<std::vector<Status>> done);
  void set_status(const Session& actor, const std::string& user_id, const std::string& status, Callback<Status> done);
  void user_typing(const Session& actor, const std::string& channel_id, const std::string& parent_id);

  // Publishes an event: this node's hub, then the other nodes (the api's WebSocket code and tests).
  // With `all_done` (reliable events), called once every peer has it or was declared dead.
  void publish(Event event);
  void publish(Event event, std::function<void()> all_done);
  // A client resuming a WebSocket connection this node does not hold: asks the other nodes for its
  // queue (ws_queues, at most `timeout`) and takes it over. done(true) when the hub now holds it.
  void find_connection(const std::string& connection_id, const std::string& user_id, Duration timeout,
                       std::function<void(bool)> done);

  // Server-wide figures for the admin (Mattermost's "standard" analytics): counts from the database and
  // the WebSocket connections of every node, gathered with a cluster_stats request (nodes that do not
  // answer within 1 s are left out, and named).
  struct Analytics {
    std::vector<std::pair<std::string, int64_t>> rows;
    std::vector<std::string> nodes_missing;
  };
  void analytics(const Session& actor, Callback<Analytics> done);

  struct Stats {
    uint64_t cache_hits = 0, cache_misses = 0, invalidations_sent = 0, invalidations_received = 0, events_published = 0,
             events_received = 0, cache_flushes = 0;
    uint64_t posts_filled = 0;            // posts read from the database to fill a gap in a channel's order
    uint64_t channel_writes_refused = 0;  // posts refused (503): channel_write_queue_max waited already
    uint64_t channels_evicted = 0;        // idle channel-order entries forgotten
    uint64_t posts_republished = 0;       // committed posts published again (a retry, or the outbox sweep)
    uint64_t outbox_expired = 0;          // outbox rows older than outbox_age_max, dropped unpublished
    uint64_t post_changes_republished = 0;  // committed post changes published again by the outbox sweep
    uint64_t posts_created = 0;           // posts committed by this node
  };
  Stats stats() const {
    Stats s = stats_;
    s.posts_filled = sequencer_->posts_filled();
    s.channels_evicted = sequencer_->evicted();
    return s;
  }

 private:
  Duration cache_ttl() const;  // min(cache_ttl, SessionCacheInMinutes)
  // The multi-step requests as flows (server/core/flow.h): the public method checks its arguments, the
  // flow does the steps. Parameters by value: the caller's objects may be gone while the flow waits.
  Flow create_user_flow(bool admin, NewUser user, Callback<User> done);
  Flow update_password_flow(Session actor, std::string user_id, std::string current, std::string next,
                            Callback<Unit> done);
  Flow login_flow(std::string login_id, std::string password, std::string device_id, AppError invalid,
                  Callback<std::pair<User, Session>> done);
  Flow add_team_member_flow(Session actor, std::string team_id, std::string user_id, Callback<TeamMember> done);
  Flow remove_team_member_flow(Session actor, std::string team_id, std::string user_id, Callback<Unit> done);
  Flow can_read_channel_flow(Session actor, std::string channel_id,
                             std::function<void(AppError, std::optional<Channel>)> done);
  Flow create_channel_flow(Session actor, Channel channel, Callback<Channel> done);
  Flow add_channel_member_flow(Session actor, std::string channel_id, std::string user_id,
                               Callback<ChannelMember> done);
  Flow remove_channel_member_flow(Session actor, std::string channel_id, std::string user_id, Callback<Unit> done);
  Flow analytics_flow(Callback<Analytics> done);
  Flow create_dm_flow(Session actor, std::vector<std::string> user_ids, Callback<Channel> done);
  Flow get_categories_flow(Session actor, std::string user_id, std::string team_id, Callback<SidebarCategories> done);
  Flow update_categories_flow(Session actor, std::string user_id, std::string team_id,
                              std::vector<SidebarCategory> categories, Callback<std::vector<SidebarCategory>> done);
  Flow patch_user_flow(Session actor, std::string user_id, UserPatch patch, Callback<User> done);
  void change_preferences(const Session& actor, const std::string& user_id, std::vector<Preference> prefs,
                          bool remove, Callback<Unit> done);
  void insert_category(const Session& actor, const std::string& user_id, const std::string& team_id,
                       SidebarCategory category, Callback<SidebarCategory> done);
  // Who may filter users by these channels and teams: read access to each channel, membership of each
  // team (or a system admin).
  void read_users(const Session& actor, std::vector<std::string> channels, std::vector<std::string> teams,
                  db::Statement query, Callback<std::vector<User>> done);
  Flow check_user_filters_flow(Session actor, std::vector<std::string> channels, std::vector<std::string> teams,
                               std::function<void(AppError)> done);
  // The user's own data, or a system admin's business: checks, calls done(error) when neither.
  bool self_or_admin(const Session& actor, const std::string& user_id, const std::function<void(AppError)>& fail);
  // An event to every client of one user, on every node.
  // With user_seq (the user's EventSeq after the change: user_seq_statements in its transaction), the
  // hubs keep the user's events in the order of the changes.
  void publish_to_user(const std::string& user_id, std::string event, boost::json::object data, int64_t user_seq = 0);
  static std::vector<db::Statement> user_seq_statements(const std::string& user_id);
  std::optional<std::string> diagnostic_id_;
  // Every cache_ttl: the sessions behind this node's WebSockets are checked against the database, and
  // sockets of revoked or expired sessions are closed (the bound holds for sockets too).
  void revalidate_sockets();
  void invalidate(cluster::ClusterEvent event, const std::string& id);  // locally and cluster-wide
  void apply_invalidation(cluster::ClusterEvent event, const std::string& id);
  void on_published(const std::string& from, const cluster::ClusterMessage& m);  // a peer's event for our clients
  void on_status_update(const cluster::ClusterMessage& m);
  void watch_exports();  // handed-over connections: events that came here afterwards are reported
  // Channel membership: the set of user ids (cached), and the caller's membership.
  void channel_member_ids(const std::string& channel_id,
                          std::function<void(AppError, std::shared_ptr<const std::set<std::string>>)> done);
  void load_channel(const std::string& channel_id, std::function<void(AppError, std::optional<Channel>)> done);
  void is_team_member(const std::string& team_id, const std::string& user_id, std::function<void(AppError, bool)> done);
  // Channel read access: a member, or a team member for a public channel, or a system admin.
  void can_read_channel(const Session& actor, const std::string& channel_id,
                        std::function<void(AppError, std::optional<Channel>)> done);
  void hash_password(const std::string& password, std::function<void(std::string)> done);
  void check_password(const std::string& password, const std::string& hash, std::function<void(bool)> done);
  int64_t now_ms() const;
  bool postgres() const;  // the SQL dialect (the search index differs)

  Env& env_;
  store::Store& store_;
  const config::Config* config_;
  Hub& hub_;
  AppOptions options_;
  cluster::Messenger* messenger_ = nullptr;
  TtlCache<std::string, Session> sessions_{options_.cache_entries_max};  // by token
  TtlCache<std::string, User> users_{options_.cache_entries_max};        // by id
  TtlCache<std::string, std::shared_ptr<const std::set<std::string>>> channel_members_{
      options_.cache_entries_max};                                       // by channel id
  TtlCache<std::string, Channel> channels_{options_.cache_entries_max};  // by id
  TtlCache<std::string, Status> statuses_{
      options_.cache_entries_max};  // by user id (statuses live in memory and the Status table)
  // Any invalidation drops the fills in flight of every cache (they may concern what was invalidated).
  void invalidate_fills();
  TimerId revalidate_timer_ = 0;
  Stats stats_;
  // Posts of one channel are written one at a time on this node, so that this node publishes them in the
  // order they were committed (their create_at order): a connection gets a node's posts in order.
  // Runs `write` when the channel's earlier writes on this node are done; false (and nothing runs) when
  // channel_write_queue_max writes already wait.
  bool in_channel_order(const std::string& channel_id, std::function<void(std::function<void()> next)> write);
  bool channel_queue_full(const std::string& channel_id) const;
  Flow create_post_flow(Session actor, Post post, Callback<Post> done);
  // The outbox: a committed post is published, then its PostOutbox row deleted (batched); a retry of a
  // post whose row is still there, and the sweep of rows left behind, publish it again.
  void publish_post(Event event);
  void republish_post(const std::string& post_id, int64_t seq);
  void sweep_outbox();
  void flush_outbox();
  TimerId outbox_timer_ = 0, outbox_flush_timer_ = 0;
  std::vector<std::string> outbox_done_;  // published: their rows go with the next flush
  std::map<std::string, std::deque<std::function<void()>>> channel_writes_;
  // Delivery in channel order, on every node (channel_sequencer.h); fetches gaps from the master.
  void fetch_posts_between(const std::string& channel, int64_t after, int64_t before, ChannelSequencer::Fetched done);
  std::unique_ptr<ChannelSequencer> sequencer_;
  // Post changes (app_post_changes.cpp).
  struct PostChange {
    std::string event;  // post_edited, post_deleted, reaction_added, reaction_removed
    bool author_only = false;  // edits and deletes: the author or a system admin
    // Checks of the post as the master has it, before the transaction ({} when fine).
    std::function<AppError(const Post& current)> check;
    // The change, after the statement that moves UpdateAt forward ($1 is the post id in each).
    std::vector<db::Statement> statements;
    std::optional<Reaction> reaction;  // reaction events: the reaction read back
    bool nothing_to_change_is_ok = false;  // a statement's expect_rows failing means "nothing to do"
  };
  Flow change_post_flow(Session actor, std::string post_id, PostChange change, Callback<Post> done);
  Flow upload_files_flow(Session actor, std::string channel_id, std::vector<Upload> files,
                         Callback<std::vector<FileInfo>> done);
  // The file's row, readable by the actor; not found for a deleted one.
  void readable_file(const Session& actor, const std::string& file_id, Callback<FileInfo> done);
  // The post's change event, published; its PostChangeOutbox row goes once every peer has it.
  void publish_post_change(const std::string& event, const Post& post, std::vector<std::string> recipients,
                           boost::json::object data);
  void republish_post_change(const std::string& post_id);
  void sweep_change_outbox();
  // Lists as the apps read them: reactions and reply counts filled in (from the master or a replica).
  Callback<PostList> with_metadata(Callback<PostList> done, bool from_master);
  void read_post_list(db::Statement query, Callback<PostList> done);
  void add_metadata(PostList list, bool from_master, Callback<PostList> done);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The posted event of a post in a channel (Mattermost's shape), to the channel's members. Its id is the
// post's (posted_event_id): every publication of one post, and its fill from the database, is one event
// to the hubs' duplicate check.
std::string posted_event_id(const std::string& post_id);
Event posted_event(const Channel& c, const Post& post, const std::vector<std::string>& recipients);

AppError bad_param(const std::string& name);
AppError not_found(const std::string& what);
AppError forbidden();
AppError from_db(const db::Error& e);

}  // namespace chorus::app
