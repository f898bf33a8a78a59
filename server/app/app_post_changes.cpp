// Changes to posts: edits, pins, deletes and reactions (app.h, "Changes to a post"), their events and
// their outbox; threads, pinned lists, and the metadata (reactions, reply counts) the apps read with posts.
#include <algorithm>
#include <boost/json.hpp>

#include "server/app/app.h"
#include "server/app/app_internal.h"
#include "server/core/flow.h"
#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

using namespace detail;

namespace {

// Mattermost's rule for emoji names (model.Reaction.IsValid).
bool valid_emoji_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '_')) return false;
  return true;
}

constexpr size_t kUniqueReactionsMax = 50;  // Mattermost's UniqueEmojiReactionLimitPerPost default

std::string change_event_id(const std::string& post_id, int64_t update_at) {
  return "change:" + post_id + ":" + std::to_string(update_at);
}

// The post with its reactions and files (three statements; post_read puts them together).
std::vector<Statement> post_and_reactions(const std::string& post_id) {
  return {Statement{std::string("SELECT ") + kPostColumns + " FROM Posts WHERE Id = $1", {post_id}},
          Statement{std::string("SELECT ") + kReactionColumns +
                        " FROM Reactions WHERE PostId = $1 AND DeleteAt = 0 ORDER BY CreateAt, UserId, EmojiName",
                    {post_id}},
          Statement{std::string("SELECT ") + kFileInfoColumns +
                        " FROM FileInfo WHERE PostId = $1 AND DeleteAt = 0 ORDER BY CreateAt, Id",
                    {post_id}}};
}

// A post's files in the order of its file_ids (as it attached them).
void order_files(Post& p) {
  auto rank = [&p](const FileInfo& f) {
    return std::find(p.file_ids.begin(), p.file_ids.end(), f.id) - p.file_ids.begin();
  };
  std::stable_sort(p.files.begin(), p.files.end(), [&](const FileInfo& a, const FileInfo& b) { return rank(a) < rank(b); });
}

// The post of a post_and_reactions read (at `at` in the outcome); nullopt when there is none.
std::optional<Post> post_read(const db::Outcome& o, size_t at) {
  if (o.value.size() < at + 3 || o.value[at].rows.empty()) return std::nullopt;
  Post p = post_from_row(o.value[at].rows[0]);
  for (const auto& r : o.value[at + 1].rows) p.reactions.push_back(reaction_from_row(r));
  for (const auto& r : o.value[at + 2].rows) p.files.push_back(file_info_from_row(r));
  order_files(p);
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// One change, top to bottom: the post from the master, the actor's right to change it, the transaction
// (UpdateAt forward, the change, the outbox row, the post read back), then the event.

Flow App::change_post_flow(Session actor, std::string post_id, PostChange change, Callback<Post> done) {
  db::Outcome cur = co_await awaiting<db::Outcome>(
      alive_, [&](auto resume) { store_.write(post_and_reactions(post_id), false, std::move(resume)); });
  if (!cur.ok()) co_return done(fail<Post>(from_db(cur.error)));
  std::optional<Post> current = post_read(cur, 0);
  if (!current || current->delete_at != 0) co_return done(fail<Post>(not_found("post")));
  const std::string channel_id = current->channel_id;
  auto [e, ids] = co_await awaiting<AppError, std::shared_ptr<const std::set<std::string>>>(
      alive_, [&](auto resume) { channel_member_ids(channel_id, std::move(resume)); });
  if (!e.ok()) co_return done(fail<Post>(e));
  if (!ids->contains(actor.user_id) && !actor.is_system_admin()) co_return done(fail<Post>(forbidden()));
  if (change.author_only && current->user_id != actor.user_id && !actor.is_system_admin())
    co_return done(fail<Post>(forbidden()));
  if (change.check)
    if (AppError bad = change.check(*current); !bad.ok()) co_return done(fail<Post>(bad));

  std::vector<Statement> s{
      Statement{"UPDATE Posts SET UpdateAt = CASE WHEN UpdateAt < $2 THEN $2 ELSE UpdateAt + 1 END"
                " WHERE Id = $1 AND DeleteAt = 0",
                {post_id, now_ms()},
                1}};
  for (auto& st : change.statements) s.push_back(std::move(st));
  s.push_back(Statement{"INSERT INTO PostChangeOutbox (PostId, UpdateAt, TouchedAt) SELECT Id, UpdateAt, UpdateAt"
                        " FROM Posts WHERE Id = $1 ON CONFLICT (PostId) DO UPDATE SET UpdateAt = excluded.UpdateAt,"
                        " TouchedAt = excluded.TouchedAt",
                        {post_id}});
  const size_t read_at = s.size();
  for (auto& st : post_and_reactions(post_id)) s.push_back(std::move(st));
  if (change.reaction)
    s.push_back(Statement{std::string("SELECT ") + kReactionColumns +
                              " FROM Reactions WHERE PostId = $1 AND UserId = $2 AND EmojiName = $3",
                          {post_id, change.reaction->user_id, change.reaction->emoji_name}});
  db::Outcome o =
      co_await awaiting<db::Outcome>(alive_, [&](auto resume) { store_.write(std::move(s), true, std::move(resume)); });
  if (o.error.status == db::Status::conflict) {
    // Rolled back: the post was deleted meanwhile, or (nothing_to_change_is_ok) there was nothing to do.
    if (change.nothing_to_change_is_ok) co_return done(ok(*current));
    co_return done(fail<Post>(not_found("post")));
  }
  if (!o.ok()) co_return done(fail<Post>(from_db(o.error)));
  std::optional<Post> post = post_read(o, read_at);
  if (!post) co_return done(fail<Post>(not_found("post")));
  boost::json::object data;
  if (change.reaction) {
    if (o.value.back().rows.empty()) co_return done(fail<Post>(not_found("reaction")));
    Reaction r = reaction_from_row(o.value.back().rows[0]);
    data["reaction"] = boost::json::serialize(r.to_json());
    change.reaction = r;
  } else {
    data["post"] = boost::json::serialize(post->to_json());
    if (change.event == "post_deleted") data["delete_by"] = actor.user_id;
  }
  publish_post_change(change.event, *post, std::vector<std::string>(ids->begin(), ids->end()), std::move(data));
  co_return done(ok(std::move(*post)));
}

void App::publish_post_change(const std::string& event, const Post& post, std::vector<std::string> recipients,
                              boost::json::object data) {
  Event ev{event, std::move(data)};
  ev.broadcast.channel_id = post.channel_id;
  ev.recipients = std::move(recipients);
  ev.reliable = true;
  ev.post_id = post.id;
  ev.post_seq = post.update_at;
  ev.id = change_event_id(post.id, post.update_at);
  const std::string post_id = post.id;
  const int64_t seq = post.update_at;
  publish(std::move(ev), [this, alive = alive_, post_id, seq] {
    if (!*alive) return;
    // Only this change's row: a later change keeps its own until its event is out.
    store_.write({Statement{"DELETE FROM PostChangeOutbox WHERE PostId = $1 AND UpdateAt = $2", {post_id, seq}}}, false,
                 [](db::Outcome) {});
  });
}

// The post as it is now, published as its latest change: post_deleted, or post_edited with its reactions
// (a client that missed a reaction event gets the post's whole state). The event id is the change's, so
// a hub that delivered the first publication drops this one.
void App::republish_post_change(const std::string& post_id) {
  store_.write(post_and_reactions(post_id), false, [this, alive = alive_, post_id](db::Outcome o) {
    if (!*alive || !o.ok()) return;  // the sweep tries again
    std::optional<Post> post = post_read(o, 0);
    if (!post) {  // gone (data retention): nothing to publish
      store_.write({Statement{"DELETE FROM PostChangeOutbox WHERE PostId = $1", {post_id}}}, false, [](db::Outcome) {});
      return;
    }
    channel_member_ids(post->channel_id, [this, alive, post](AppError e, std::shared_ptr<const std::set<std::string>> ids) {
      if (!*alive || !e.ok()) return;
      ++stats_.post_changes_republished;
      env_.log().info("app: the change of post {} at {} published again (its first publication may not have ended)",
                      post->id, post->update_at);
      const std::string event = post->delete_at ? "post_deleted" : "post_edited";
      publish_post_change(event, *post, std::vector<std::string>(ids->begin(), ids->end()),
                          boost::json::object{{"post", boost::json::serialize(post->to_json())}});
    });
  });
}

// With sweep_outbox: rows untouched for outbox_age are claimed (TouchedAt moves) and republished; rows
// past outbox_age_max are dropped.
void App::sweep_change_outbox() {
  const int64_t now = now_ms();
  const int64_t cutoff = now - to_ms(options_.outbox_age);
  store_.write(
      {Statement{"SELECT PostId, UpdateAt, TouchedAt FROM PostChangeOutbox WHERE TouchedAt < $1 ORDER BY TouchedAt"
                 " LIMIT 100",
                 {cutoff}}},
      false, [this, alive = alive_, now](db::Outcome o) {
        if (!*alive || !o.ok()) return;
        for (const auto& row : o.result().rows) {
          const std::string post_id = text_at(row, 0);
          const int64_t seq = int_at(row, 1), touched = int_at(row, 2);
          if (touched < now - to_ms(options_.outbox_age_max)) {
            ++stats_.outbox_expired;
            env_.log().warn("app: the change of post {} at {} was not published within {} s; dropped from the outbox",
                            post_id, seq, to_ms(options_.outbox_age_max) / 1000);
            store_.write({Statement{"DELETE FROM PostChangeOutbox WHERE PostId = $1 AND UpdateAt = $2", {post_id, seq}}},
                         false, [](db::Outcome) {});
            continue;
          }
          store_.write({Statement{"UPDATE PostChangeOutbox SET TouchedAt = $1 WHERE PostId = $2 AND TouchedAt = $3",
                                  {now, post_id, touched},
                                  1}},
                       true, [this, alive, post_id](db::Outcome claimed) {
                         if (*alive && claimed.ok()) republish_post_change(post_id);
                       });
        }
      });
}

// ---------------------------------------------------------------------------------------------------
// The changes.

void App::patch_post(const Session& actor, const std::string& post_id, PostPatch patch, Callback<Post> done) {
  if (!is_valid_id(post_id)) return done(fail<Post>(bad_param("post_id")));
  if (patch.message && (patch.message->empty() || patch.message->size() > 16383))
    return done(fail<Post>(error(400, "model.post.is_valid.msg.app_error", "Message must be 1 to 16383 characters.")));
  if (patch.props && patch.props->size() > 800000) return done(fail<Post>(bad_param("props")));
  PostChange change;
  change.event = "post_edited";
  // Pinning is anyone's in the channel; the message and props are the author's.
  change.author_only = patch.message.has_value() || patch.props.has_value();
  if (patch.message) {
    // The message it replaces is kept (PostEdits), at the time of this edit.
    change.statements.push_back(Statement{"INSERT INTO PostEdits (PostId, EditAt, UserId, Message)"
                                          " SELECT Id, UpdateAt, $2, Message FROM Posts WHERE Id = $1",
                                          {post_id, actor.user_id}});
    change.statements.push_back(
        Statement{"UPDATE Posts SET Message = $2, EditAt = UpdateAt WHERE Id = $1", {post_id, *patch.message}});
    change.statements.push_back(
        postgres() ? Statement{"UPDATE PostsFts SET Body = to_tsvector('simple', $2) WHERE PostId = $1",
                               {post_id, *patch.message}}
                   : Statement{"UPDATE PostsFts SET Message = $2 WHERE PostId = $1", {post_id, *patch.message}});
  }
  if (patch.props)
    change.statements.push_back(Statement{"UPDATE Posts SET Props = $2 WHERE Id = $1", {post_id, *patch.props}});
  if (patch.is_pinned)
    change.statements.push_back(
        Statement{"UPDATE Posts SET IsPinned = $2 WHERE Id = $1", {post_id, static_cast<int64_t>(*patch.is_pinned)}});
  change_post_flow(actor, post_id, std::move(change), std::move(done)).start();
}

void App::delete_post(const Session& actor, const std::string& post_id, Callback<Post> done) {
  if (!is_valid_id(post_id)) return done(fail<Post>(bad_param("post_id")));
  PostChange change;
  change.event = "post_deleted";
  change.author_only = true;
  const int64_t now = now_ms();
  change.statements = {
      Statement{"UPDATE Posts SET DeleteAt = UpdateAt WHERE Id = $1", {post_id}},
      // A thread goes with its root (its replies' own events are not sent: the apps drop the thread).
      Statement{"UPDATE Posts SET DeleteAt = $2, UpdateAt = CASE WHEN UpdateAt < $2 THEN $2 ELSE UpdateAt + 1 END"
                " WHERE RootId = $1 AND DeleteAt = 0",
                {post_id, now}},
      Statement{"DELETE FROM PostsFts WHERE PostId = $1 OR PostId IN (SELECT Id FROM Posts WHERE RootId = $1)",
                {post_id}},
      // Their files too (the bytes stay until data retention: the compliance export may need them).
      Statement{"UPDATE FileInfo SET DeleteAt = $2, UpdateAt = $2"
                " WHERE DeleteAt = 0 AND (PostId = $1 OR PostId IN (SELECT Id FROM Posts WHERE RootId = $1))",
                {post_id, now}}};
  change_post_flow(actor, post_id, std::move(change), std::move(done)).start();
}

void App::save_reaction(const Session& actor, Reaction reaction, Callback<Reaction> done) {
  if (!is_valid_id(reaction.post_id)) return done(fail<Reaction>(bad_param("post_id")));
  if (reaction.user_id != actor.user_id)
    return done(fail<Reaction>(error(403, "api.reaction.save_reaction.user_id.app_error",
                                     "You may only add reactions as yourself.")));
  if (!valid_emoji_name(reaction.emoji_name))
    return done(fail<Reaction>(error(400, "model.reaction.is_valid.emoji_name.app_error",
                                     "Emoji names are 1 to 64 letters, digits, '-', '+' or '_'.")));
  PostChange change;
  change.event = "reaction_added";
  const std::string emoji = reaction.emoji_name;
  change.check = [emoji](const Post& p) {
    std::set<std::string> names;
    for (const auto& r : p.reactions) names.insert(r.emoji_name);
    if (!names.contains(emoji) && names.size() >= kUniqueReactionsMax)
      return error(400, "api.reaction.too_many_reactions.app_error",
                   "This post has the most different reactions a post can have.");
    return AppError{};
  };
  // A new row, or the removed one revived; either takes the post's new update_at.
  change.statements = {
      Statement{"INSERT INTO Reactions (UserId, PostId, EmojiName, CreateAt, UpdateAt, DeleteAt, ChannelId)"
                " SELECT $2, Id, $3, UpdateAt, UpdateAt, 0, ChannelId FROM Posts WHERE Id = $1"
                " ON CONFLICT (PostId, UserId, EmojiName) DO UPDATE SET UpdateAt = excluded.UpdateAt,"
                " CreateAt = CASE WHEN Reactions.DeleteAt = 0 THEN Reactions.CreateAt ELSE excluded.CreateAt END,"
                " DeleteAt = 0",
                {reaction.post_id, reaction.user_id, reaction.emoji_name}}};
  change.reaction = reaction;
  change_post_flow(actor, reaction.post_id, std::move(change),
                   [reaction, done](Result<Post> r) mutable {
                     if (!r.ok()) return done(fail<Reaction>(r.error));
                     for (const auto& x : r.value.reactions)
                       if (x.user_id == reaction.user_id && x.emoji_name == reaction.emoji_name) return done(ok(x));
                     done(fail<Reaction>(not_found("reaction")));
                   })
      .start();
}

void App::delete_reaction(const Session& actor, Reaction reaction, Callback<Unit> done) {
  if (!is_valid_id(reaction.post_id)) return done(fail<Unit>(bad_param("post_id")));
  if (!is_valid_id(reaction.user_id)) return done(fail<Unit>(bad_param("user_id")));
  if (reaction.user_id != actor.user_id && !actor.is_system_admin()) return done(fail<Unit>(forbidden()));
  if (!valid_emoji_name(reaction.emoji_name)) return done(fail<Unit>(bad_param("emoji_name")));
  PostChange change;
  change.event = "reaction_removed";
  change.statements = {
      Statement{"UPDATE Reactions SET DeleteAt = (SELECT UpdateAt FROM Posts WHERE Id = $1),"
                " UpdateAt = (SELECT UpdateAt FROM Posts WHERE Id = $1)"
                " WHERE PostId = $1 AND UserId = $2 AND EmojiName = $3 AND DeleteAt = 0",
                {reaction.post_id, reaction.user_id, reaction.emoji_name},
                1}};
  change.reaction = reaction;
  change.nothing_to_change_is_ok = true;
  change_post_flow(actor, reaction.post_id, std::move(change), [done](Result<Post> r) {
    if (!r.ok()) return done(fail<Unit>(r.error));
    done(ok(Unit{}));
  }).start();
}

void App::get_reactions(const Session& actor, const std::string& post_id, Callback<std::vector<Reaction>> done) {
  get_post(actor, post_id, [this, alive = alive_, post_id, done](Result<Post> p) {
    if (!*alive) return;
    if (!p.ok()) return done(fail<std::vector<Reaction>>(p.error));
    store_.read({Statement{std::string("SELECT ") + kReactionColumns +
                               " FROM Reactions WHERE PostId = $1 AND DeleteAt = 0 ORDER BY CreateAt, UserId, EmojiName",
                           {post_id}}},
                [alive, done](db::Outcome o) {
                  if (!*alive) return;
                  if (!o.ok()) return done(fail<std::vector<Reaction>>(from_db(o.error)));
                  std::vector<Reaction> out;
                  for (const auto& r : o.result().rows) out.push_back(reaction_from_row(r));
                  done(ok(std::move(out)));
                });
  });
}

void App::reactions_for_posts(const Session& actor, const std::vector<std::string>& post_ids,
                              Callback<std::map<std::string, std::vector<Reaction>>> done) {
  using Out = std::map<std::string, std::vector<Reaction>>;
  if (post_ids.empty()) return done(ok(Out{}));
  if (post_ids.size() > 200) return done(fail<Out>(bad_param("post_ids")));
  std::vector<Value> params{actor.user_id};
  for (const auto& id : post_ids) {
    if (!is_valid_id(id)) return done(fail<Out>(bad_param("post_ids")));
    params.emplace_back(id);
  }
  // Only posts in the actor's channels (a system admin's: any).
  const std::string ids = placeholders(2, post_ids.size());
  const std::string sql =
      std::string("SELECT ") + prefixed(kReactionColumns, "r.") + " FROM Reactions r WHERE r.PostId IN (" + ids +
      ") AND r.DeleteAt = 0" +
      (actor.is_system_admin() ? " AND $1 = $1"
                               : " AND EXISTS (SELECT 1 FROM ChannelMembers m WHERE m.ChannelId = r.ChannelId AND"
                                 " m.UserId = $1)") +
      " ORDER BY r.CreateAt, r.UserId, r.EmojiName";
  store_.read({Statement{sql, std::move(params)}}, [alive = alive_, post_ids, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<Out>(from_db(o.error)));
    Out out;
    for (const auto& id : post_ids) out[id];  // every post asked for, [] when it has none
    for (const auto& r : o.result().rows) {
      Reaction x = reaction_from_row(r);
      out[x.post_id].push_back(std::move(x));
    }
    done(ok(std::move(out)));
  });
}

// ---------------------------------------------------------------------------------------------------
// Threads, pins, and the metadata of lists.

// The posts a query reads (a replica's view), as a list with their metadata.
void App::read_post_list(Statement query, Callback<PostList> done) {
  store_.read({std::move(query)}, [alive = alive_, done = with_metadata(std::move(done), false)](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
    PostList list;
    for (const auto& r : o.result().rows) list.posts.push_back(post_from_row(r));
    done(ok(std::move(list)));
  });
}

void App::get_thread(const Session& actor, const std::string& post_id, Callback<PostList> done) {
  get_post(actor, post_id, [this, alive = alive_, done](Result<Post> p) {
    if (!*alive) return;
    if (!p.ok()) return done(fail<PostList>(p.error));
    const std::string root = p.value.root_id.empty() ? p.value.id : p.value.root_id;
    read_post_list(Statement{std::string("SELECT ") + kPostColumns +
                                 " FROM Posts WHERE (Id = $1 OR RootId = $1) AND DeleteAt = 0"
                                 " ORDER BY CreateAt DESC, Id DESC LIMIT 1000",
                             {root}},
                   done);
  });
}

void App::pinned_posts(const Session& actor, const std::string& channel_id, Callback<PostList> done) {
  can_read_channel(actor, channel_id, [this, alive = alive_, channel_id, done](AppError e, std::optional<Channel>) {
    if (!*alive) return;
    if (!e.ok()) return done(fail<PostList>(e));
    read_post_list(Statement{std::string("SELECT ") + kPostColumns +
                                 " FROM Posts WHERE ChannelId = $1 AND IsPinned = 1 AND DeleteAt = 0"
                                 " ORDER BY CreateAt DESC, Id DESC LIMIT 1000",
                             {channel_id}},
                   done);
  });
}

Callback<PostList> App::with_metadata(Callback<PostList> done, bool from_master) {
  return [this, alive = alive_, done, from_master](Result<PostList> r) {
    if (!*alive) return;
    if (!r.ok() || r.value.posts.empty()) return done(std::move(r));
    add_metadata(std::move(r.value), from_master, done);
  };
}

// One read for the whole list: the posts' reactions and files, and the reply count and last reply of each thread
// in it (a reply shows its thread's, as Mattermost).
void App::add_metadata(PostList list, bool from_master, Callback<PostList> done) {
  std::vector<Value> ids, roots;
  std::set<std::string> seen_roots;
  for (const auto& p : list.posts) {
    ids.emplace_back(p.id);
    const std::string& root = p.root_id.empty() ? p.id : p.root_id;
    if (seen_roots.insert(root).second) roots.emplace_back(root);
  }
  std::vector<Statement> s{
      Statement{std::string("SELECT ") + kReactionColumns + " FROM Reactions WHERE PostId IN (" +
                    placeholders(1, ids.size()) + ") AND DeleteAt = 0 ORDER BY CreateAt, UserId, EmojiName",
                ids},
      Statement{"SELECT RootId, COUNT(*), MAX(CreateAt) FROM Posts WHERE RootId IN (" + placeholders(1, roots.size()) +
                    ") AND DeleteAt = 0 GROUP BY RootId",
                roots},
      Statement{std::string("SELECT ") + kFileInfoColumns + " FROM FileInfo WHERE PostId IN (" +
                    placeholders(1, ids.size()) + ") AND DeleteAt = 0 ORDER BY CreateAt, Id",
                ids}};
  auto finish = [alive = alive_, list = std::move(list), done](db::Outcome o) mutable {
    if (!*alive) return;
    if (!o.ok()) return done(fail<PostList>(from_db(o.error)));
    std::map<std::string, std::vector<Reaction>> reactions;
    for (const auto& r : o.value[0].rows) {
      Reaction x = reaction_from_row(r);
      reactions[x.post_id].push_back(std::move(x));
    }
    std::map<std::string, std::pair<int64_t, int64_t>> threads;
    for (const auto& r : o.value[1].rows) threads[text_at(r, 0)] = {int_at(r, 1), int_at(r, 2)};
    std::map<std::string, std::vector<FileInfo>> files;
    for (const auto& r : o.value[2].rows) {
      FileInfo f = file_info_from_row(r);
      files[f.post_id].push_back(std::move(f));
    }
    for (auto& p : list.posts) {
      if (auto it = reactions.find(p.id); it != reactions.end()) p.reactions = std::move(it->second);
      if (auto it = files.find(p.id); it != files.end()) {
        p.files = std::move(it->second);
        order_files(p);
      }
      if (auto it = threads.find(p.root_id.empty() ? p.id : p.root_id); it != threads.end()) {
        p.reply_count = it->second.first;
        p.last_reply_at = it->second.second;
      }
    }
    done(ok(std::move(list)));
  };
  if (from_master)
    store_.write(std::move(s), false, std::move(finish));
  else
    store_.read(std::move(s), std::move(finish));
}

}  // namespace chorus::app
