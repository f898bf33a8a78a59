// Conversations across a simulated cluster (real node code, simulated database and links, virtual time):
// edits, pins and deletes, reactions, threads and mentions made on one node reach the sockets on another
// in the order they were made, a re-sync reads them back, and bad input changes nothing.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <map>
#include <set>

#include "simulator/chat_cluster.h"
#include "tests/api_test_helpers.h"
#include "tests/chat_world.h"

using namespace chorus;
using namespace chorus::sim;
namespace json = boost::json;
using namespace chorus::testing;

namespace {

json::object inner(const std::string& frame, const char* key) {
  return json::parse(data_of(frame).at(key).as_string()).as_object();
}

std::string post(ChatCluster& c, int node, const World& w, const std::string& token, const std::string& message,
                 const std::string& root = "") {
  auto r = c.call(node, "POST", "/api/v4/posts",
                  obj({{"channel_id", w.channel}, {"message", message}, {"root_id", root}}), token);
  EXPECT_EQ(r.status, 201) << r.body;
  return field(r, "id");
}

int64_t mention_count(ChatCluster& c, int node, const std::string& token, const std::string& channel) {
  auto r = c.call(node, "GET", "/api/v4/channels/" + channel + "/members/me", "", token);
  EXPECT_EQ(r.status, 200) << r.body;
  return body(r).as_object().at("mention_count").as_int64();
}

}  // namespace

TEST(ConversationsSim, EditsPinsAndDeletesMadeOnOneNodeReachTheOtherInOrderAndReadBack) {
  ChatCluster c({.seed = 4, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sb = c.connect(1, w.b);
  c.kernel().run_for(Duration{200'000});
  const std::string id = post(c, 0, w, w.a, "first draft");
  c.kernel().run_for(Duration{500'000});
  const int64_t since = c.call(0, "GET", "/api/v4/posts/" + id, "", w.a).status == 200
                            ? body(c.call(0, "GET", "/api/v4/posts/" + id, "", w.a)).as_object().at("update_at").as_int64()
                            : 0;

  auto edited = c.call(0, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", "second draft"}}), w.a);
  ASSERT_EQ(edited.status, 200) << edited.body;
  const auto e = body(edited).as_object();
  EXPECT_EQ(e.at("message").as_string(), "second draft");
  EXPECT_GT(e.at("edit_at").as_int64(), 0);
  EXPECT_EQ(e.at("edit_at").as_int64(), e.at("update_at").as_int64());
  ASSERT_EQ(c.call(0, "POST", "/api/v4/posts/" + id + "/pin", "", w.a).status, 200);
  // The whole post through PUT /posts/{id}: its id must be the path's.
  expect_error(c.call(0, "PUT", "/api/v4/posts/" + id, obj({{"id", "x"}, {"message", "third"}}), w.a), 400);
  ASSERT_EQ(c.call(0, "PUT", "/api/v4/posts/" + id, obj({{"id", id}, {"message", "third draft"}}), w.a).status, 200);
  c.kernel().run_for(Duration{500'000});

  auto changes = events_of(*sb, "post_edited");
  ASSERT_EQ(changes.size(), 3u);
  int64_t last = 0;
  for (const auto& f : changes) {
    const auto p = inner(f, "post");
    EXPECT_GT(p.at("update_at").as_int64(), last) << "in the order they were made";
    last = p.at("update_at").as_int64();
  }
  EXPECT_EQ(inner(changes[0], "post").at("message").as_string(), "second draft");
  EXPECT_TRUE(inner(changes[1], "post").at("is_pinned").as_bool());
  EXPECT_EQ(inner(changes[2], "post").at("message").as_string(), "third draft");
  auto pinned = c.call(1, "GET", "/api/v4/channels/" + w.channel + "/pinned", "", w.b);
  EXPECT_EQ(body(pinned).as_object().at("order").as_array().size(), 1u) << pinned.body;

  // Not Bob's to edit or delete; empty messages are refused; nothing changed.
  expect_error(c.call(1, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", "mine now"}}), w.b), 403);
  expect_error(c.call(1, "DELETE", "/api/v4/posts/" + id, "", w.b), 403);
  expect_error(c.call(0, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", ""}}), w.a), 400);
  expect_error(c.call(0, "PUT", "/api/v4/posts/" + id + "/patch", "{not json", w.a), 400);
  EXPECT_EQ(str(body(c.call(0, "GET", "/api/v4/posts/" + id, "", w.a)), "message"), "third draft");

  // A reply, then the root's delete takes the thread with it.
  const std::string reply = post(c, 1, w, w.b, "a reply", id);
  ASSERT_EQ(c.call(0, "DELETE", "/api/v4/posts/" + id, "", w.a).status, 200);
  c.kernel().run_for(Duration{500'000});
  auto deleted = events_of(*sb, "post_deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_GT(inner(deleted[0], "post").at("delete_at").as_int64(), 0);
  EXPECT_EQ(str(data_of(deleted[0]), "delete_by"), w.a_id);
  expect_error(c.call(1, "GET", "/api/v4/posts/" + id, "", w.b), 404);
  expect_error(c.call(1, "GET", "/api/v4/posts/" + reply, "", w.b), 404);
  expect_error(c.call(0, "DELETE", "/api/v4/posts/" + id, "", w.a), 404);
  expect_error(c.call(0, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", "undead"}}), w.a), 404);

  // A re-sync (posts since) reads the edits and deletes back, from either node.
  auto re = c.call(1, "GET", fmt::format("/api/v4/channels/{}/posts?since={}", w.channel, since), "", w.b);
  ASSERT_EQ(re.status, 200) << re.body;
  const auto posts = body(re).as_object().at("posts").as_object();
  ASSERT_TRUE(posts.contains(id));
  EXPECT_GT(posts.at(id).as_object().at("delete_at").as_int64(), 0);
  ASSERT_TRUE(posts.contains(reply));
  EXPECT_GT(posts.at(reply).as_object().at("delete_at").as_int64(), 0);
  // The edit history is kept (the compliance export reads it).
  auto hist = c.kernel().databases().find("db1")->execute(
      {db::Statement{"SELECT Message FROM PostEdits WHERE PostId = $1 ORDER BY EditAt", {id}}}, false);
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist.result().rows.size(), 2u);
  EXPECT_EQ(std::get<std::string>(hist.result().rows[0].at(0)), "first draft");
}

TEST(ConversationsSim, ReactionsCrossNodesShowInPostMetadataAndBadOnesAreRefused) {
  ChatCluster c({.seed = 5, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sa = c.connect(0, w.a);
  c.kernel().run_for(Duration{200'000});
  const std::string id = post(c, 0, w, w.a, "react to me");
  c.kernel().run_for(Duration{300'000});
  auto added = c.call(1, "POST", "/api/v4/reactions",
                      obj({{"user_id", w.b_id}, {"post_id", id}, {"emoji_name", "+1"}}), w.b);
  ASSERT_EQ(added.status, 200) << added.body;
  EXPECT_EQ(str(body(added), "emoji_name"), "+1");
  ASSERT_EQ(c.call(1, "POST", "/api/v4/reactions", obj({{"user_id", w.b_id}, {"post_id", id}, {"emoji_name", "tada"}}),
                   w.b)
                .status,
            200);
  c.kernel().run_for(Duration{500'000});
  auto ev = events_of(*sa, "reaction_added");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(inner(ev[0], "reaction").at("emoji_name").as_string(), "+1");
  EXPECT_EQ(inner(ev[0], "reaction").at("user_id").as_string(), w.b_id);

  auto list = c.call(0, "GET", "/api/v4/posts/" + id + "/reactions", "", w.a);
  EXPECT_EQ(body(list).as_array().size(), 2u) << list.body;
  auto page = c.call(0, "GET", "/api/v4/channels/" + w.channel + "/posts", "", w.a);
  const auto p = body(page).as_object().at("posts").as_object().at(id).as_object();
  EXPECT_TRUE(p.at("has_reactions").as_bool());
  EXPECT_EQ(p.at("metadata").as_object().at("reactions").as_array().size(), 2u);
  auto many = c.call(0, "POST", "/api/v4/posts/ids/reactions", obj(json::array{json::string(id)}), w.a);
  EXPECT_EQ(body(many).as_object().at(id).as_array().size(), 2u) << many.body;

  // The apps remove one with the real user id; removing one that is not there changes nothing.
  ASSERT_EQ(c.call(1, "DELETE", fmt::format("/api/v4/users/{}/posts/{}/reactions/+1", w.b_id, id), "", w.b).status, 200);
  ASSERT_EQ(c.call(1, "DELETE", fmt::format("/api/v4/users/{}/posts/{}/reactions/smile", w.b_id, id), "", w.b).status,
            200);
  c.kernel().run_for(Duration{500'000});
  auto removed = events_of(*sa, "reaction_removed");
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_GT(inner(removed[0], "reaction").at("delete_at").as_int64(), 0);
  EXPECT_EQ(body(c.call(0, "GET", "/api/v4/posts/" + id + "/reactions", "", w.a)).as_array().size(), 1u);

  // Bad input: an emoji name Mattermost refuses, a reaction as someone else, another's reaction removed.
  expect_error(c.call(1, "POST", "/api/v4/reactions",
                      obj({{"user_id", w.b_id}, {"post_id", id}, {"emoji_name", "no spaces"}}), w.b),
               400, "model.reaction.is_valid.emoji_name");
  expect_error(c.call(1, "POST", "/api/v4/reactions", obj({{"user_id", w.b_id}, {"post_id", id}, {"emoji_name", ""}}),
                      w.b),
               400);
  expect_error(c.call(1, "POST", "/api/v4/reactions",
                      obj({{"user_id", w.a_id}, {"post_id", id}, {"emoji_name", "smile"}}), w.b),
               403);
  expect_error(c.call(1, "DELETE", fmt::format("/api/v4/users/{}/posts/{}/reactions/tada", w.a_id, id), "", w.b), 403);
  expect_error(c.call(1, "POST", "/api/v4/reactions", "[1,2]", w.b), 400);
  EXPECT_EQ(body(c.call(0, "GET", "/api/v4/posts/" + id + "/reactions", "", w.a)).as_array().size(), 1u);
}

TEST(ConversationsSim, RepliesMakeThreadsAndMentionsCountForTheMentioned) {
  ChatCluster c({.seed = 6, .nodes = 2});
  ASSERT_TRUE(c.start_all());
  World w = make_world(c);
  auto sb = c.connect(1, w.b);
  c.kernel().run_for(Duration{200'000});
  const std::string root = post(c, 0, w, w.a, "a question for @Bob.");
  c.kernel().run_for(Duration{500'000});
  auto posted = events_of(*sb, "posted");
  ASSERT_EQ(posted.size(), 1u);
  const auto d = data_of(posted[0]);
  EXPECT_EQ(d.at("sender_name").as_string(), "@alice");
  EXPECT_EQ(d.at("channel_type").as_string(), "O");
  EXPECT_EQ(d.at("channel_display_name").as_string(), "General");
  ASSERT_TRUE(d.contains("mentions"));
  EXPECT_EQ(json::parse(d.at("mentions").as_string()).as_array(), json::array{json::string(w.b_id)});
  EXPECT_EQ(mention_count(c, 1, w.b, w.channel), 1);
  EXPECT_EQ(mention_count(c, 0, w.a, w.channel), 0);

  const std::string r1 = post(c, 1, w, w.b, "an answer", root);
  const std::string r2 = post(c, 0, w, w.a, "thanks @channel", root);
  EXPECT_EQ(mention_count(c, 1, w.b, w.channel), 1)
      << "@channel mentions every other member (Bob's own reply read the channel: his count went to 0 first)";
  EXPECT_EQ(mention_count(c, 0, w.a, w.channel), 0) << "not the author";
  auto thread = c.call(1, "GET", "/api/v4/posts/" + r1 + "/thread", "", w.b);
  ASSERT_EQ(thread.status, 200) << thread.body;
  const auto t = body(thread).as_object();
  EXPECT_EQ(t.at("order").as_array().size(), 3u);
  EXPECT_EQ(t.at("posts").as_object().at(root).as_object().at("reply_count").as_int64(), 2);
  EXPECT_EQ(t.at("posts").as_object().at(r2).as_object().at("root_id").as_string(), root);

  // A reply to a reply, to a post that does not exist, or in another channel is refused.
  expect_error(c.call(0, "POST", "/api/v4/posts", obj({{"channel_id", w.channel}, {"message", "x"}, {"root_id", r1}}),
                      w.a),
               400, "api.post.create_post.root_id");
  expect_error(c.call(0, "POST", "/api/v4/posts",
                      obj({{"channel_id", w.channel}, {"message", "x"}, {"root_id", std::string(26, 'y')}}), w.a),
               400, "api.post.create_post.root_id");
  // Viewing the channel clears the mentions.
  ASSERT_EQ(c.call(1, "POST", "/api/v4/channels/members/me/view", obj({{"channel_id", w.channel}}), w.b).status, 200);
  EXPECT_EQ(mention_count(c, 1, w.b, w.channel), 0);
}

// Alice and Bob react to one post at once from two nodes, over and over: every socket gets the post's
// changes in the order they were committed (or is reset and re-syncs), never one twice.
TEST(ConversationsSim, ConcurrentChangesOfOnePostOnTwoNodesArriveInCommitOrderOnEverySocket) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 3});
    ASSERT_TRUE(c.start_all());
    World w = make_world(c);
    std::vector<std::unique_ptr<SimSocket>> socks;
    for (int n = 0; n < 3; ++n) {
      socks.push_back(c.connect(n, w.a));
      socks.push_back(c.connect(n, w.b));
    }
    c.kernel().run_for(Duration{200'000});
    const std::string id = post(c, 0, w, w.a, "busy");
    c.kernel().run_for(Duration{300'000});
    int answered = 0;
    for (int i = 0; i < 20; ++i) {
      const bool bob = i % 2;
      const std::string emoji = i % 4 < 2 ? "smile" : "tada";
      c.call_async(bob ? 1 : 0, "POST", "/api/v4/reactions",
                   obj({{"user_id", bob ? w.b_id : w.a_id}, {"post_id", id}, {"emoji_name", emoji}}), bob ? w.b : w.a,
                   [&answered](api::Response r) { answered += r.status == 200; });
      c.call_async(2, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", fmt::format("busy {}", i)}}), w.a,
                   [&answered](api::Response r) { answered += r.status == 200; });
      c.kernel().run_for(Duration{static_cast<int64_t>(c.kernel().random().uniform(3'000))});
    }
    c.kernel().run_for(Duration{2'000'000});
    EXPECT_EQ(answered, 40);
    for (const auto& s : socks) {
      std::map<std::string, int64_t> last;
      int64_t n = 0;
      for (const auto& f : events_of(*s)) {
        const auto o = json::parse(f).as_object();
        const std::string ev(o.at("event").as_string());
        if (ev != "post_edited" && ev != "reaction_added") continue;
        const auto x = inner(f, ev == "post_edited" ? "post" : "reaction");
        const int64_t at = x.at("update_at").as_int64();
        EXPECT_GT(at, last[id]) << "a change twice or out of order";
        last[id] = std::max(last[id], at);
        ++n;
      }
      // A socket reset for a late change (1012) re-syncs; one never reset saw all 40.
      if (!s->close_code) {
        EXPECT_EQ(n, 40);
      }
    }
  }
}

// A node that commits an edit and dies before its event leaves the change in PostChangeOutbox: a live
// node's sweep publishes the post's state (post_edited) within outbox_age + outbox_sweep, once.
TEST(ConversationsSim, AnEditWhoseNodeDiesBetweenItsCommitAndItsEventIsPublishedByTheOutboxSweep) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ChatCluster c({.seed = seed, .nodes = 3});
    ASSERT_TRUE(c.start_all());
    World w = make_world(c);
    const std::string id = post(c, 0, w, w.a, "draft");
    auto* db = c.kernel().databases().find("db1");
    const auto edited = [db, &id] {
      auto o = db->execute({db::Statement{"SELECT Message FROM Posts WHERE Id = $1", {id}}}, false);
      return o.ok() && std::get<std::string>(o.result().rows.at(0).at(0)) == "final";
    };
    bool answered = false;
    c.call_async(2, "PUT", "/api/v4/posts/" + id + "/patch", obj({{"message", "final"}}), w.a,
                 [&answered](api::Response) { answered = true; });
    ASSERT_TRUE(c.kernel().run_until(edited, c.kernel().now() + Duration{5'000'000}));
    c.kernel().crash(2);
    ASSERT_FALSE(answered);
    c.kernel().run_for(Duration{6'000'000});  // n2 declared dead; the sockets reset
    auto sb = c.connect(1, w.b);
    c.kernel().run_for(Duration{1'000'000});
    EXPECT_TRUE(events_of(*sb, "post_edited").empty()) << "not yet: the row is young";
    c.kernel().run_for(Duration{50'000'000});
    auto got = events_of(*sb, "post_edited");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(inner(got[0], "post").at("message").as_string(), "final");
    EXPECT_EQ(c.node(0)->app().stats().post_changes_republished + c.node(1)->app().stats().post_changes_republished, 1u);
    c.kernel().run_for(Duration{60'000'000});
    auto left = db->execute({db::Statement{"SELECT COUNT(*) FROM PostChangeOutbox", {}}}, false);
    ASSERT_TRUE(left.ok());
    EXPECT_EQ(std::get<int64_t>(left.result().rows.at(0).at(0)), 0) << "published: the row went";
    EXPECT_EQ(events_of(*sb, "post_edited").size(), 1u) << "and no later sweep sends it again";
  }
}
