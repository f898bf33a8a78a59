// Posts: created one after the other per channel (in_channel_order) and published with their channel
// seq; read, listed and searched; and the posts the channel sequencer reads to fill a gap.
#include "server/app/app.h"

#include <boost/json.hpp>

#include "server/app/app_internal.h"
#include "server/cluster/messages.h"
#include "server/core/assert.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

// ---------------------------------------------------------------------------------------------------
// Posts in channel order on every node.

// The posts of a channel with after < create_at < before, as posted events to its members (the
// sequencer's gap fill): nullopt when the master, the channel or its members cannot be read.
void App::fetch_posts_between(const std::string& channel, int64_t after, int64_t before,
                              ChannelSequencer::Fetched done) {
  store_.write(
      {Statement{
          std::string("SELECT ") + kPostColumns +
              " FROM Posts WHERE ChannelId = $1 AND CreateAt > $2 AND CreateAt < $3 ORDER BY CreateAt ASC LIMIT 1000",
          {channel, after, before}}},
      false, [this, alive = alive_, channel, done](db::Outcome out) {
        if (!*alive) return;
        if (!out.ok()) return done(std::nullopt);
        std::vector<Post> posts;
        for (const auto& row : out.result().rows) posts.push_back(post_from_row(row));
        if (posts.empty()) return done(std::vector<Event>{});
        load_channel(channel, [this, alive, channel, posts, done](AppError e, std::optional<Channel> c) {
          if (!*alive) return;
          if (!e.ok() || !c) return done(std::nullopt);
          channel_member_ids(
              channel, [this, alive, posts, c, done](AppError e2, std::shared_ptr<const std::set<std::string>> ids) {
                if (!*alive) return;
                if (!e2.ok()) return done(std::nullopt);
                const std::vector<std::string> recipients(ids->begin(), ids->end());
                std::vector<Event> filled;
                for (const auto& p : posts) {
                  filled.push_back(posted_event(*c, p, recipients));
                }
                done(std::move(filled));
              });
        });
      });
}

// ---------------------------------------------------------------------------------------------------
// Posts.

std::string posted_event_id(const std::string& post_id) { return "posted:" + post_id; }

Event posted_event(const Channel& c, const Post& post, const std::vector<std::string>& recipients) {
  Event ev{"posted", boost::json::object{{"channel_display_name", c.display_name},
                                         {"channel_name", c.name},
                                         {"channel_type", c.type},
                                         {"post", boost::json::serialize(post.to_json())},
                                         {"sender_name", ""},
                                         {"set_online", true},
                                         {"team_id", c.team_id}}};
  ev.broadcast.channel_id = c.id;
  ev.recipients = recipients;
  ev.reliable = true;
  ev.create_at = post.create_at;
  ev.post_id = post.id;
  ev.id = posted_event_id(post.id);
  return ev;
}

void App::create_post(const Session& actor, Post post, Callback<Post> done) {
  if (!is_valid_id(post.channel_id)) return done(fail<Post>(bad_param("channel_id")));
  if (post.file_ids.size() > 10) return done(fail<Post>(bad_param("file_ids")));
  for (const auto& f : post.file_ids)
    if (!is_valid_id(f)) return done(fail<Post>(bad_param("file_ids")));
  if ((post.message.empty() && post.file_ids.empty()) || post.message.size() > 16383)
    return done(fail<Post>(error(400, "model.post.is_valid.msg.app_error", "Message must be 1 to 16383 characters.")));
  if (!post.root_id.empty() && !is_valid_id(post.root_id)) return done(fail<Post>(bad_param("root_id")));
  if (post.pending_post_id.size() > 64) return done(fail<Post>(bad_param("pending_post_id")));
  create_post_flow(actor, std::move(post), std::move(done)).start();
}

// The steps of a post, top to bottom (server/core/flow.h): the channel, its members, the channel's turn
// on this node, the transaction, then the event.
Flow App::create_post_flow(Session actor, Post post, Callback<Post> done) {
  auto [e, c] = co_await awaiting<AppError, std::optional<Channel>>(
      alive_, [&](auto resume) { load_channel(post.channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<Post>(e));
  if (!c || c->delete_at != 0) co_return done(fail<Post>(not_found("channel")));
  const std::string channel_id = c->id;  // a plain local for the lambda (see can_read_channel_flow)
  auto [e2, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e2.ok()) co_return done(fail<Post>(e2));
  if (!ids->contains(actor.user_id)) co_return done(fail<Post>(forbidden()));
  if (!post.root_id.empty()) {
    // A reply goes to a thread's root, in the same channel, not deleted (from the master: the root may
    // be seconds old).
    db::Outcome r = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write({Statement{"SELECT ChannelId, RootId, DeleteAt FROM Posts WHERE Id = $1", {post.root_id}}}, false,
                   std::move(resume));
    });
    if (!r.ok()) co_return done(fail<Post>(from_db(r.error)));
    if (r.result().rows.empty() || text_at(r.result().rows[0], 0) != channel_id ||
        !text_at(r.result().rows[0], 1).empty() || int_at(r.result().rows[0], 2) != 0)
      co_return done(fail<Post>(error(400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter.")));
  }
  // Mentions: @channel, @all and @here mention every other member; @name a member by username.
  const Mentions said = mentions_in(post.message);
  std::set<std::string> mentioned;
  if (said.channel_wide) mentioned.insert(ids->begin(), ids->end());
  if (!said.usernames.empty()) {
    std::vector<Value> names(said.usernames.begin(), said.usernames.end());
    db::Outcome u = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.read({Statement{"SELECT Id FROM Users WHERE Username IN (" + placeholders(1, names.size()) + ")", names}},
                  std::move(resume));
    });
    if (!u.ok()) co_return done(fail<Post>(from_db(u.error)));
    for (const auto& row : u.result().rows)
      if (ids->contains(text_at(row, 0))) mentioned.insert(text_at(row, 0));
  }
  mentioned.erase(actor.user_id);
  // Attached files: the author's own uploads to this channel, not deleted (and not attached to another
  // post, unless this is a retry of the post that has them).
  if (!post.file_ids.empty()) {
    std::vector<Value> fids(post.file_ids.begin(), post.file_ids.end());
    db::Outcome f = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write({Statement{"SELECT Id, CreatorId, ChannelId, PostId, DeleteAt FROM FileInfo WHERE Id IN (" +
                                  placeholders(1, fids.size()) + ")",
                              fids}},
                   false, std::move(resume));
    });
    if (!f.ok()) co_return done(fail<Post>(from_db(f.error)));
    std::set<std::string> usable;
    for (const auto& row : f.result().rows)
      if (text_at(row, 1) == actor.user_id && text_at(row, 2) == channel_id && int_at(row, 4) == 0 &&
          (text_at(row, 3).empty() || !post.pending_post_id.empty()))
        usable.insert(text_at(row, 0));
    for (const auto& id : post.file_ids)
      if (!usable.contains(id))
        co_return done(fail<Post>(error(400, "api.post.create_post.file_ids.app_error",
                                        "A file of file_ids is not yours to attach in this channel (or does not exist): " +
                                            id)));
  }
  // The author's name for the event (the apps' notifications show it); cached, so seldom a read.
  auto author = co_await awaiting<Result<User>>(alive_, [&](auto resume) { get_user(actor, actor.user_id, std::move(resume)); });
  post.id = new_id(env_.random());
  post.user_id = actor.user_id;
  const std::vector<std::string> recipients(ids->begin(), ids->end());
  // create_at is this node's clock, but never before the channel's last post: posts in a channel
  // are ordered as they were made even across nodes whose clocks disagree. One transaction: the
  // channel row moves LastPostAt forward (locking it on PostgreSQL; SQLite serialises writers), and
  // the post takes that time. No read first, so concurrent posters queue instead of retrying.
  const int64_t now = now_ms();
  boost::json::array fid_array;
  for (const auto& f : post.file_ids) fid_array.emplace_back(f);
  const std::string file_ids_json = boost::json::serialize(fid_array);
  std::vector<Statement> s{
      Statement{"UPDATE Channels SET LastPostAt = CASE WHEN LastPostAt < $2 THEN $2 ELSE LastPostAt + 1 END,"
                " TotalMsgCount = TotalMsgCount + 1 WHERE Id = $1",
                {post.channel_id, now},
                1},
      Statement{
          "INSERT INTO Posts (Id, CreateAt, UpdateAt, UserId, ChannelId, RootId, Message, Type, Props, PendingPostId,"
          " FileIds) SELECT $1, LastPostAt, LastPostAt, $2, Id, $3, $4, $5, $6, $7, $9 FROM Channels WHERE Id = $8",
          {post.id, post.user_id, post.root_id, post.message, post.type, post.props, post.pending_post_id,
           post.channel_id, file_ids_json},
          1},
      Statement{"SELECT p.CreateAt, c.TotalMsgCount FROM Posts p, Channels c WHERE p.Id = $1 AND c.Id = $2",
                {post.id, post.channel_id}}};
  // The outbox row: until every peer has the post's event, a committed post is never left unpublished
  // (its node dying between the commit and the event): a retry or the sweep publishes it again.
  s.push_back(Statement{"INSERT INTO PostOutbox (PostId, ChannelId, Seq, TouchedAt)"
                        " SELECT $1, Id, TotalMsgCount, LastPostAt FROM Channels WHERE Id = $2",
                        {post.id, post.channel_id}});
  if (!post.file_ids.empty()) {
    std::vector<Value> params{post.id, post.user_id, now};
    params.insert(params.end(), post.file_ids.begin(), post.file_ids.end());
    s.push_back(Statement{"UPDATE FileInfo SET PostId = $1, UpdateAt = $3 WHERE CreatorId = $2 AND PostId = '' AND Id IN (" +
                              placeholders(4, post.file_ids.size()) + ")",
                          std::move(params)});
  }
  // The search index, in the same transaction: search finds a post once its creation is acknowledged.
  if (postgres())
    s.push_back(Statement{"INSERT INTO PostsFts (PostId, ChannelId, Body) VALUES ($1, $2, to_tsvector('simple', $3))",
                          {post.id, post.channel_id, post.message}});
  else
    s.push_back(Statement{"INSERT INTO PostsFts (Message, PostId, ChannelId) VALUES ($1, $2, $3)",
                          {post.message, post.id, post.channel_id}});
  // As Mattermost: the author has read the channel up to their own post, and in a direct or group
  // channel every other member is mentioned (the apps' badge counts).
  s.push_back(Statement{"UPDATE ChannelMembers SET MsgCount = (SELECT TotalMsgCount FROM Channels WHERE Id = $1),"
                        " LastViewedAt = (SELECT LastPostAt FROM Channels WHERE Id = $1), MentionCount = 0,"
                        " LastUpdateAt = (SELECT LastPostAt FROM Channels WHERE Id = $1)"
                        " WHERE ChannelId = $1 AND UserId = $2",
                        {post.channel_id, post.user_id}});
  if (c->type == "D" || c->type == "G") {
    s.push_back(Statement{"UPDATE ChannelMembers SET MentionCount = MentionCount + 1 WHERE ChannelId = $1 AND UserId <> $2",
                          {post.channel_id, post.user_id}});
  } else if (!mentioned.empty()) {
    std::vector<Value> params{post.channel_id};
    params.insert(params.end(), mentioned.begin(), mentioned.end());
    s.push_back(Statement{"UPDATE ChannelMembers SET MentionCount = MentionCount + 1 WHERE ChannelId = $1 AND UserId IN (" +
                              placeholders(2, mentioned.size()) + ")",
                          std::move(params)});
  }
  if (channel_queue_full(post.channel_id)) {
    ++stats_.channel_writes_refused;
    co_return done(
        fail<Post>(error(503, "api.post.create_post.too_many_waiting.app_error",
                         "Too many posts to this channel are waiting to be written on this server; try again.")));
  }
  // The channel's turn on this node (posts to one channel are written one after the other).
  auto next = co_await awaiting<std::function<void()>>(
      alive_, [&](auto resume) { in_channel_order(post.channel_id, std::move(resume)); });
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  next();  // this post's place is settled: the channel's next write may go
  if (o.error.status == db::Status::conflict && !post.pending_post_id.empty()) {
    // A retry of a post already made (same pending id, on any node): answer with the first one.
    const db::Error first_error = o.error;
    // Its outbox row too: still there, the first attempt may have died between its commit and its event,
    // so the post is published again (a copy its first node did send is dropped as a duplicate).
    db::Outcome o2 = co_await awaiting<db::Outcome>(alive_, [&](auto resume) {
      store_.write(
          {Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE UserId = $1 AND PendingPostId = $2",
                     {post.user_id, post.pending_post_id}},
           Statement{"SELECT o.Seq FROM PostOutbox o JOIN Posts p ON p.Id = o.PostId"
                     " WHERE p.UserId = $1 AND p.PendingPostId = $2",
                     {post.user_id, post.pending_post_id}}},
          false, std::move(resume));
    });
    if (!o2.ok() || o2.value[0].rows.empty()) co_return done(fail<Post>(from_db(o2.ok() ? first_error : o2.error)));
    Post first = post_from_row(o2.value[0].rows[0]);
    if (!o2.value[1].rows.empty()) republish_post(first.id, int_at(o2.value[1].rows[0], 0));
    co_return done(ok(std::move(first)));
  }
  if (!o.ok()) co_return done(fail<Post>(from_db(o.error)));
  post.create_at = post.update_at = int_at(o.value[2].rows.at(0), 0);
  ++stats_.posts_created;
  Event ev = posted_event(*c, post, recipients);
  ev.channel_seq = int_at(o.value[2].rows.at(0), 1);
  if (author.ok()) ev.data["sender_name"] = "@" + author.value.username;
  if (!mentioned.empty()) {
    boost::json::array m;
    for (const auto& id : mentioned) m.emplace_back(id);
    ev.data["mentions"] = boost::json::serialize(m);
  }
  publish_post(std::move(ev));
  done(ok(post));
}

// ---------------------------------------------------------------------------------------------------
// The outbox: publication driven by what was committed, not by the request that committed it.

void App::publish_post(Event event) {
  const std::string post_id = event.post_id;
  publish(std::move(event), [this, alive = alive_, post_id] {
    if (!*alive) return;
    outbox_done_.push_back(post_id);
    if (outbox_flush_timer_ == 0)
      outbox_flush_timer_ = env_.set_timer(options_.outbox_flush, [this, alive] {
        if (!*alive) return;
        outbox_flush_timer_ = 0;
        flush_outbox();
      });
  });
}

// Rows of published posts, deleted in batches (a row whose delete is lost is published once more by a
// sweep: a duplicate, which the sequencers and hubs drop).
void App::flush_outbox() {
  while (!outbox_done_.empty()) {
    const size_t n = std::min<size_t>(outbox_done_.size(), 200);
    std::string sql = "DELETE FROM PostOutbox WHERE PostId IN (";
    std::vector<Value> params;
    for (size_t i = 0; i < n; ++i) {
      sql += (i ? ", $" : "$") + std::to_string(i + 1);
      params.emplace_back(outbox_done_[i]);
    }
    outbox_done_.erase(outbox_done_.begin(), outbox_done_.begin() + static_cast<std::ptrdiff_t>(n));
    store_.write({Statement{sql + ")", std::move(params)}}, false, [](db::Outcome) {});
  }
}

// The post as committed, published again with its channel seq (its event id is the post's, so whoever
// got it already drops this copy).
void App::republish_post(const std::string& post_id, int64_t seq) {
  store_.write(
      {Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE Id = $1", {post_id}}}, false,
      [this, alive = alive_, post_id, seq](db::Outcome o) {
        if (!*alive || !o.ok()) return;  // the sweep tries again
        if (o.result().rows.empty()) return;
        Post p = post_from_row(o.result().rows[0]);
        load_channel(p.channel_id, [this, alive, p, seq](AppError e, std::optional<Channel> c) {
          if (!*alive || !e.ok()) return;
          if (!c) {  // gone with its channel: nothing to publish
            outbox_done_.push_back(p.id);
            return flush_outbox();
          }
          channel_member_ids(c->id, [this, alive, p, c, seq](AppError e2,
                                                             std::shared_ptr<const std::set<std::string>> ids) {
            if (!*alive || !e2.ok()) return;
            ++stats_.posts_republished;
            env_.log().info(
                "app: post {} (seq {}) in channel {} published again (its first publication may not have ended)", p.id,
                seq, p.channel_id);
            Event ev = posted_event(*c, p, std::vector<std::string>(ids->begin(), ids->end()));
            ev.channel_seq = seq;
            publish_post(std::move(ev));
          });
        });
      });
}

// Every outbox_sweep: rows untouched for outbox_age are claimed one by one (the claim moves TouchedAt, so
// one node republishes each per outbox_age) and republished; rows past outbox_age_max are dropped.
void App::sweep_outbox() {
  outbox_timer_ = env_.set_timer(options_.outbox_sweep, [this] { sweep_outbox(); });
  sweep_change_outbox();
  const int64_t now = now_ms();
  const int64_t cutoff = now - to_ms(options_.outbox_age);
  store_.write(
      {Statement{"SELECT PostId, Seq, TouchedAt FROM PostOutbox WHERE TouchedAt < $1 ORDER BY TouchedAt LIMIT 100",
                 {cutoff}}},
      false, [this, alive = alive_, now](db::Outcome o) {
        if (!*alive || !o.ok()) return;
        for (const auto& row : o.result().rows) {
          const std::string post_id = std::get<std::string>(row.at(0));
          const int64_t seq = int_at(row, 1), touched = int_at(row, 2);
          if (touched < now - to_ms(options_.outbox_age_max)) {
            ++stats_.outbox_expired;
            env_.log().warn("app: post {} was not published within {} s; dropped from the outbox", post_id,
                            to_ms(options_.outbox_age_max) / 1000);
            outbox_done_.push_back(post_id);
            continue;
          }
          store_.write({Statement{"UPDATE PostOutbox SET TouchedAt = $1 WHERE PostId = $2 AND TouchedAt = $3",
                                  {now, post_id, touched},
                                  1}},
                       true, [this, alive, post_id, seq](db::Outcome claimed) {
                         if (*alive && claimed.ok()) republish_post(post_id, seq);
                       });
        }
        flush_outbox();
      });
}

bool App::channel_queue_full(const std::string& channel_id) const {
  auto it = channel_writes_.find(channel_id);
  return it != channel_writes_.end() && it->second.size() >= options_.channel_write_queue_max;
}

bool App::in_channel_order(const std::string& channel_id, std::function<void(std::function<void()> next)> write) {
  if (channel_queue_full(channel_id)) return false;
  auto& queue = channel_writes_[channel_id];
  auto run = [this, alive = alive_, channel_id, write = std::move(write)]() mutable {
    write([this, alive, channel_id] {
      if (!*alive) return;
      auto it = channel_writes_.find(channel_id);
      if (it == channel_writes_.end()) return;
      it->second.pop_front();
      if (it->second.empty()) {
        channel_writes_.erase(it);
      } else {
        env_.post([front = it->second.front()]() mutable { front(); });  // not inside this write's callback
      }
    });
  };
  queue.push_back(std::move(run));
  if (queue.size() == 1) {
    auto first = queue.front();  // a copy: a write that ends at once pops the queue's entry
    first();
  }
  return true;
}

void App::get_post(const Session& actor, const std::string& post_id, Callback<Post> done) {
  if (!is_valid_id(post_id)) return done(fail<Post>(bad_param("post_id")));
  store_.read(
      {Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE Id = $1 AND DeleteAt = 0", {post_id}}},
      [this, alive = alive_, actor, done](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) return done(fail<Post>(from_db(o.error)));
        if (o.result().rows.empty()) return done(fail<Post>(not_found("post")));
        Post p = post_from_row(o.result().rows[0]);
        can_read_channel(actor, p.channel_id, [this, alive, p, done](AppError e, std::optional<Channel>) {
          if (!*alive) return;
          if (!e.ok()) return done(fail<Post>(e));
          PostList one;
          one.posts.push_back(p);
          add_metadata(std::move(one), false, [done](Result<PostList> l) {
            if (!l.ok()) return done(fail<Post>(l.error));
            done(ok(std::move(l.value.posts.at(0))));
          });
        });
      });
}

void App::get_posts(const Session& actor, const std::string& channel_id, PostQuery q, Callback<PostList> done) {
  done = with_metadata(std::move(done), q.since > 0);  // a re-sync reads the master throughout
  q.per_page = clamp_per_page(q.per_page, options_.per_page_max);
  if (q.page < 0 || q.page > 100000) return done(fail<PostList>(bad_param("page")));
  if ((!q.before.empty() && !is_valid_id(q.before)) || (!q.after.empty() && !is_valid_id(q.after)))
    return done(fail<PostList>(bad_param("before/after")));
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, q, done](AppError e, std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<PostList>(e));
    const std::string cols = std::string("SELECT ") + kPostColumns + " FROM Posts WHERE ChannelId = $1 AND ";
    const int64_t limit = q.per_page, offset = static_cast<int64_t>(q.page) * q.per_page;
    // A page is read with its neighbours: one row more at the far end (the next page's first post) and,
    // past the first page, one at the near end, so that the list says where the apps go on from
    // (next_post_id, prev_post_id; "" at the channel's ends). `ascending`: read oldest first (after a post).
    const int64_t skip = offset > 0 ? offset - 1 : 0, take = limit + 1 + (offset > 0 ? 1 : 0);
    auto finish = [alive, done, limit, offset](db::Outcome o, bool ascending, std::string pivot) {
      if (!*alive) return;
      if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
      std::vector<Post> rows;
      for (const auto& r : o.value.back().rows) rows.push_back(post_from_row(r));
      std::string near = pivot, far;
      if (offset > 0) {
        near = rows.empty() ? "" : rows.front().id;
        if (!rows.empty()) rows.erase(rows.begin());
      }
      if (static_cast<int64_t>(rows.size()) > limit) {
        far = rows[limit].id;
        rows.resize(limit);
      }
      PostList list;
      list.posts = std::move(rows);
      if (ascending) std::reverse(list.posts.begin(), list.posts.end());
      list.next_post_id = ascending ? far : near;
      list.prev_post_id = ascending ? near : far;
      done(ok(std::move(list)));
    };
    if (q.since > 0) {
      // The re-sync after a reconnect: every post changed since, from the master (no replica lag).
      store_.write(
          {Statement{cols + "UpdateAt >= $2 ORDER BY CreateAt DESC, Id DESC LIMIT 1000", {channel_id, q.since}}}, false,
          [alive, done](db::Outcome o) {
            if (!*alive) return;
            if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
            PostList list;
            for (const auto& r : o.value.back().rows) list.posts.push_back(post_from_row(r));
            done(ok(std::move(list)));
          });
    } else if (!q.before.empty() || !q.after.empty()) {
      const bool before = !q.before.empty();
      const std::string pivot = before ? q.before : q.after;
      const std::string cmp =
          before ? "(CreateAt < $2 OR (CreateAt = $2 AND Id < $3))" : "(CreateAt > $2 OR (CreateAt = $2 AND Id > $3))";
      store_.read({Statement{"SELECT CreateAt FROM Posts WHERE Id = $1", {pivot}}}, [this, alive, cols, cmp, before,
                                                                                     pivot, channel_id, take, skip,
                                                                                     finish, done](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
        if (o.result().rows.empty()) return done(ok(PostList{}));
        const int64_t at = int_at(o.result().rows[0], 0);
        store_.read(
            {Statement{cols + cmp + " AND DeleteAt = 0" +
                           (before ? " ORDER BY CreateAt DESC, Id DESC" : " ORDER BY CreateAt ASC, Id ASC") +
                           " LIMIT $4 OFFSET $5",
                       {channel_id, at, pivot, take, skip}}},
            [finish, before, pivot](db::Outcome o2) { finish(std::move(o2), !before, pivot); });
      });
    } else {
      store_.read({Statement{cols + "DeleteAt = 0 ORDER BY CreateAt DESC, Id DESC LIMIT $2 OFFSET $3",
                             {channel_id, take, skip}}},
                  [finish](db::Outcome o) { finish(std::move(o), false, ""); });
    }
  });
}

void App::posts_around_last_read(const Session& actor, const std::string& user_id, const std::string& channel_id,
                                 int before, int after, Callback<PostList> done) {
  if (user_id != actor.user_id && !actor.is_system_admin()) return done(fail<PostList>(forbidden()));
  if (before < 0 || before > options_.per_page_max || after < 0 || after > options_.per_page_max)
    return done(fail<PostList>(bad_param("limit_before or limit_after")));
  done = with_metadata(std::move(done), false);
  channel_member(actor, channel_id, user_id, [this, alive = alive_, channel_id, before, after,
                                              done](Result<ChannelMember> m) {
    if (!*alive) return;
    if (!m.ok()) return done(fail<PostList>(m.error));
    const int64_t seen = m.value.last_viewed_at;
    const std::string cols = std::string("SELECT ") + kPostColumns + " FROM Posts WHERE ChannelId = $1 AND DeleteAt = 0";
    // Read up to `before` posts at or before the last view and `after` after it, each with one more to
    // tell whether the list goes on.
    store_.read(
        {Statement{cols + " AND CreateAt <= $2 ORDER BY CreateAt DESC, Id DESC LIMIT $3",
                   {channel_id, seen, static_cast<int64_t>(before) + 1}},
         Statement{cols + " AND CreateAt > $2 ORDER BY CreateAt ASC, Id ASC LIMIT $3",
                   {channel_id, seen, static_cast<int64_t>(after) + 1}}},
        [alive, before, after, done](db::Outcome o) {
          if (!*alive) return;
          if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
          std::vector<Post> older, newer;
          for (const auto& r : o.value[0].rows) older.push_back(post_from_row(r));
          for (const auto& r : o.value[1].rows) newer.push_back(post_from_row(r));
          PostList list;
          if (static_cast<int>(older.size()) > before) {
            list.prev_post_id = older[before].id;
            older.resize(before);
          }
          if (static_cast<int>(newer.size()) > after) {
            list.next_post_id = newer[after].id;
            newer.resize(after);
          }
          list.posts.assign(newer.rbegin(), newer.rend());
          list.posts.insert(list.posts.end(), older.begin(), older.end());
          done(ok(std::move(list)));
        });
  });
}

void App::search_posts(const Session& actor, const std::string& team_id, const std::string& terms, bool is_or, int page,
                       int per_page, Callback<PostList> done) {
  if (!is_valid_id(team_id)) return done(fail<PostList>(bad_param("team_id")));
  const auto words = words_of(terms);
  if (words.empty()) return done(fail<PostList>(bad_param("terms")));
  per_page = clamp_per_page(per_page, options_.per_page_max);
  done = with_metadata(std::move(done), false);
  // The full-text index (server/jobs/job_kinds.h): PostgreSQL's tsvector, SQLite's FTS5. Words are
  // matched whole (case-folded), all of them or, with is_or_search, any.
  std::string query;
  for (const auto& w : words) {
    if (postgres()) {
      query += (query.empty() ? "" : (is_or ? " or " : " ")) + w;
    } else {
      std::string quoted = "\"";
      for (char ch : w) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      query += (query.empty() ? "" : (is_or ? " OR " : " AND ")) + quoted + "\"";
    }
  }
  std::vector<Value> params{actor.user_id, team_id, query, static_cast<int64_t>(per_page),
                            static_cast<int64_t>(std::max(page, 0)) * per_page};
  const std::string cols = prefixed(kPostColumns, "p.");
  // Only channels the searcher belongs to, in that team.
  const std::string match =
      postgres() ? "JOIN PostsFts f ON f.PostId = p.Id WHERE f.Body @@ websearch_to_tsquery('simple', $3)"
                 : "WHERE p.Id IN (SELECT PostId FROM PostsFts WHERE PostsFts MATCH $3)";
  const std::string sql = "SELECT " + cols +
                          " FROM Posts p JOIN ChannelMembers m ON m.ChannelId = p.ChannelId AND m.UserId = $1"
                          " JOIN Channels c ON c.Id = p.ChannelId AND c.TeamId = $2 " +
                          match + " AND p.DeleteAt = 0 ORDER BY p.CreateAt DESC LIMIT $4 OFFSET $5";
  store_.search({Statement{sql, params}}, [alive = alive_, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
    PostList list;
    for (const auto& r : o.result().rows) list.posts.push_back(post_from_row(r));
    done(ok(std::move(list)));
  });
}

}  // namespace chorus::app
