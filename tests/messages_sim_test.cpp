// Cluster messages in the simulator: reliable ones arrive exactly once and in order across loss,
// duplication and reordering; waiting for all peers ends when each has acknowledged or died; queues are
// bounded; a restarted peer gets a fresh stream; best effort ones simply go.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "server/core/codec.h"
#include "simulator/membership_cluster.h"

using namespace chorus;
using namespace chorus::sim;

namespace {
cluster::ClusterMessage msg(int i) {
  return cluster::ClusterMessage::of(cluster::ClusterEvent::publish, std::to_string(i), {{"k", "v"}});
}

std::vector<int> numbers_from(MemberNode* n, const std::string& from) {
  std::vector<int> out;
  for (const auto& [f, d] : n->received)
    if (f == from) out.push_back(std::stoi(d));
  return out;
}
}  // namespace

TEST(Messages, ReliableArriveExactlyOnceInOrderThroughLossDuplicationAndReordering) {
  int complete_runs = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    MemberCluster c(seed, 4);
    auto& k = c.kernel();
    k.run_for(Duration{2'000'000});
    for (NodeIndex a = 0; a < 4; ++a)
      for (NodeIndex b = 0; b < 4; ++b) {
        auto& l = k.link(a, b);
        l.loss = 0.2;
        l.duplicate = 0.1;
        l.reorder = 0.2;
      }
    int done = 0;
    for (int i = 1; i <= 300; ++i) {
      c.node(0)->messenger->send_to_all(msg(i), cluster::Delivery::reliable, [&] { ++done; });
      k.run_for(Duration{5'000});
    }
    // Loss this heavy makes members suspect each other now and then; nobody is declared dead in
    // practice, and the property holds regardless: what arrives, arrives once and in order.
    ASSERT_TRUE(k.run_until([&] { return done == 300; }, k.now() + Duration{60'000'000}))
        << "seed " << seed << ": " << done;
    for (int peer = 1; peer < 4; ++peer) {
      const auto got = numbers_from(c.node(peer), c.address(0));
      std::vector<int> expected(300);
      for (int i = 0; i < 300; ++i) expected[i] = i + 1;
      if (c.deaths() == 0) {
        EXPECT_EQ(got, expected) << "seed " << seed << " peer " << peer;
      }
      for (size_t i = 1; i < got.size(); ++i) ASSERT_LT(got[i - 1], got[i]) << "out of order or twice";
    }
    EXPECT_GT(c.node(0)->messenger->stats().retransmitted, 0u);
    EXPECT_GT(c.node(1)->messenger->stats().duplicates, 0u);
    complete_runs += c.deaths() == 0;
  }
  EXPECT_GE(complete_runs, 18) << "runs where nobody was (wrongly) declared dead, so every message had to arrive";
}

TEST(Messages, WaitingForAllEndsWhenAPeerDies) {
  MemberCluster c(3, 4);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  k.block(0, 3);  // node 3 never receives: its acknowledgement never comes
  bool done = false;
  c.node(0)->messenger->send_to_all(msg(1), cluster::Delivery::reliable, [&] { done = true; });
  k.run_for(Duration{300'000});
  EXPECT_FALSE(done) << "node 3 has not acknowledged";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(3)), 1u);
  k.crash(3);
  ASSERT_TRUE(k.run_until([&] { return done; }, k.now() + Duration{5'000'000})) << "declared dead: the wait is over";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(3)), 0u);
}

TEST(Messages, QueuesAreBoundedAndARefusalEndsTheStreamSoThePeerIsTold) {
  MemberCluster c(4, 3);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  k.block(0, 2);
  std::vector<std::pair<std::string, bool>> told;
  c.node(2)->messenger->on_new_stream(
      [&](const std::string& from, bool replaced) { told.emplace_back(from, replaced); });
  int queued = 0;
  for (int i = 0; i < 10'050; ++i)
    queued += c.node(0)->messenger->send_to(c.address(2), msg(i), cluster::Delivery::reliable);
  // The 10,001st is refused, and the refusal ends the stream (as a death would): the next 49 go on a new
  // one, behind its opening.
  EXPECT_EQ(queued, 10'049);
  EXPECT_EQ(c.node(0)->messenger->stats().refused_full, 1u);
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(2)), 50u);
  // Before (issue 13), the refusal was silent: node 2's clients never learnt they had missed anything.
  k.unblock(0, 2);
  k.run_for(Duration{1'000'000});
  EXPECT_EQ(told, (std::vector<std::pair<std::string, bool>>{{c.address(0), true}})) << "node 2 resets its clients";
  std::vector<int> expected;
  for (int i = 10'001; i < 10'050; ++i) expected.push_back(i);
  EXPECT_EQ(numbers_from(c.node(2), c.address(0)), expected) << "what came after the refusal arrives, in order";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(2)), 0u);
}

TEST(Messages, ARestartedPeerGetsAFreshStreamAndNothingStale) {
  MemberCluster c(5, 3);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  for (int i = 1; i <= 5; ++i) c.node(0)->messenger->send_to(c.address(1), msg(i), cluster::Delivery::reliable);
  k.run_for(Duration{500'000});
  EXPECT_EQ(numbers_from(c.node(1), c.address(0)).size(), 5u);
  k.block(0, 1);
  for (int i = 6; i <= 8; ++i) c.node(0)->messenger->send_to(c.address(1), msg(i), cluster::Delivery::reliable);
  k.crash(1);
  k.run_for(Duration{200'000});
  k.start(1);  // back quickly: a new generation, before anyone declares it dead
  k.unblock(0, 1);
  ASSERT_TRUE(k.run_until([&] { return c.all_alive(); }, k.now() + Duration{5'000'000}));
  k.run_for(Duration{1'000'000});
  for (int i = 9; i <= 11; ++i) c.node(0)->messenger->send_to(c.address(1), msg(i), cluster::Delivery::reliable);
  k.run_for(Duration{2'000'000});
  EXPECT_EQ(numbers_from(c.node(1), c.address(0)), (std::vector<int>{9, 10, 11}))
      << "the old life's 6-8 are not replayed into the new one";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(1)), 0u);
}

namespace {
// A data frame as a sender writes it (messages.cpp): stream, seq, reliable flag, event, data, props.
std::vector<uint8_t> data_frame(uint64_t stream, uint64_t seq, const std::string& data) {
  ByteWriter w;
  w.u8(0x30);
  w.u64(stream);
  w.varint(seq);
  w.u8(1);
  w.str("publish");
  w.str(data);
  w.varint(0);
  return w.take();
}
}  // namespace

// Random-faults seed 3077: a sender began stream A for a peer, dropped it (a membership change), began
// stream B; a late first frame of A reached the peer after B's first frames. Taken for a newer stream,
// it retired B, whose every later message was then ignored for good. Streams of one life are ordered.
TEST(Messages, ALateFrameOfAnOlderStreamNeverReplacesTheNewerOne) {
  MemberCluster c(8, 2);
  c.kernel().run_for(Duration{1'000'000});
  auto* n = c.node(0);
  const std::string from = c.address(1);
  const uint64_t life = 0xABCDEF;
  const uint64_t older = (life << 24) | 1, newer = (life << 24) | 2;
  n->messenger->handle_frame(from, data_frame(newer, 1, "1"));  // replaces the real stream node 1 opened
  int replaced = 0;
  n->messenger->on_new_stream([&](const std::string&, bool r) { replaced += r; });
  n->messenger->handle_frame(from, data_frame(newer, 2, "2"));
  n->messenger->handle_frame(from, data_frame(older, 1, "late"));  // the late frame
  n->messenger->handle_frame(from, data_frame(newer, 3, "3"));
  EXPECT_EQ(numbers_from(n, from), (std::vector<int>{1, 2, 3})) << "the newer stream goes on";
  EXPECT_EQ(replaced, 0);
  EXPECT_EQ(n->messenger->stats().stale_stream, 1u);
  // A newer stream of the same life does replace it (the sender declared us dead): clients re-sync.
  n->messenger->handle_frame(from, data_frame((life << 24) | 3, 1, "4"));
  EXPECT_EQ(replaced, 1);
  // Another life (the sender restarted) replaces it too, and the old life's frames are stale from then on.
  n->messenger->handle_frame(from, data_frame((0x123456ull << 24) | 1, 1, "5"));
  EXPECT_EQ(replaced, 2);
  n->messenger->handle_frame(from, data_frame((life << 24) | 9, 1, "stale"));
  EXPECT_EQ(numbers_from(n, from), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(n->messenger->stats().stale_stream, 2u);
}

TEST(Messages, BestEffortGoesOnceWithoutAcknowledgements) {
  MemberCluster c(6, 3);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  for (int i = 1; i <= 50; ++i) c.node(0)->messenger->send_to_all(msg(i), cluster::Delivery::best_effort);
  k.run_for(Duration{1'000'000});
  EXPECT_EQ(numbers_from(c.node(1), c.address(0)).size(), 50u);
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(1)), 0u);
  EXPECT_EQ(c.node(0)->messenger->stats().retransmitted, 0u);
}

TEST(Messages, MalformedFramesAreDropped) {
  MemberCluster c(7, 2);
  c.kernel().run_for(Duration{1'000'000});
  auto* n = c.node(0);
  for (const std::vector<uint8_t>& junk :
       std::vector<std::vector<uint8_t>>{{0x30}, {0x31, 1, 2}, {0x30, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff}})
    EXPECT_TRUE(n->messenger->handle_frame(c.address(1), junk));
  EXPECT_TRUE(n->received.empty());
}

// Request/response pairs (cluster_stats, ws_queues): every live peer answers once; a dead or silent peer
// is reported missing (when declared dead, or at the timeout) and the asker never hangs.
TEST(Messages, RequestsCollectOneReplyPerPeerThroughLoss) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    MemberCluster c(seed, 4);
    auto& k = c.kernel();
    k.run_for(Duration{2'000'000});
    for (int i = 0; i < 4; ++i) {
      auto* n = c.node(i);
      const std::string me = c.address(i);
      n->messenger->serve("cluster_stats",
                          [n, me](const std::string& from, const cluster::ClusterMessage& req, auto reply) {
                            reply(cluster::ClusterMessage{"", me + " answers " + req.data + " from " + from, {}});
                          });
    }
    for (NodeIndex a = 0; a < 4; ++a)
      for (NodeIndex b = 0; b < 4; ++b) k.link(a, b).loss = 0.2;
    int answered = 0;
    for (int r = 0; r < 20; ++r) {
      c.node(0)->messenger->request(
          cluster::ClusterMessage{"cluster_stats", std::to_string(r), {}}, Duration{10'000'000},
          [&, r](cluster::Replies got) {
            EXPECT_TRUE(got.missing.empty()) << "seed " << seed;
            ASSERT_EQ(got.replies.size(), 3u);
            for (int i = 1; i < 4; ++i) {
              const auto& m = got.replies.at(c.address(i));
              EXPECT_EQ(m.event, "cluster_stats");
              EXPECT_EQ(m.data, c.address(i) + " answers " + std::to_string(r) + " from " + c.address(0));
              EXPECT_TRUE(m.props.empty()) << "the correlation props are not the caller's business";
            }
            ++answered;
          });
      k.run_for(Duration{10'000});
    }
    ASSERT_TRUE(k.run_until([&] { return answered == 20; }, k.now() + Duration{20'000'000})) << "seed " << seed;
    EXPECT_TRUE(c.node(1)->received.empty()) << "requests and replies are not delivered as plain events";
  }
}

TEST(Messages, ARequestEndsWhenASilentPeerDiesOrTheTimeoutPasses) {
  MemberCluster c(11, 4);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  for (int i = 1; i < 4; ++i) {
    const std::string me = c.address(i);
    // Node 3 keeps every request and never answers.
    c.node(i)->messenger->serve("ws_queues", [me, i](const std::string&, const cluster::ClusterMessage&, auto reply) {
      if (i != 3) reply(cluster::ClusterMessage{"", me, {}});
    });
  }
  std::optional<cluster::Replies> got;
  const Duration asked = k.now();
  c.node(0)->messenger->request(cluster::ClusterMessage{"ws_queues", "conn", {}}, Duration{1'000'000},
                                [&](cluster::Replies r) { got = r; });
  ASSERT_TRUE(k.run_until([&] { return got.has_value(); }, k.now() + Duration{5'000'000}));
  EXPECT_GE((k.now() - asked).count(), 1'000'000) << "only the timeout ends a wait on a live, silent peer";
  EXPECT_EQ(got->replies.size(), 2u);
  EXPECT_EQ(got->missing, std::vector<std::string>{c.address(3)});

  // A peer that dies before answering: the request ends when it is declared dead, not at the timeout.
  got.reset();
  k.block(0, 2);
  k.block(2, 0);
  c.node(0)->messenger->request(cluster::ClusterMessage{"ws_queues", "conn", {}}, Duration{60'000'000},
                                [&](cluster::Replies r) { got = r; }, {c.address(1), c.address(2)});
  k.crash(2);
  ASSERT_TRUE(k.run_until([&] { return got.has_value(); }, k.now() + Duration{10'000'000})) << "no hang on a dead peer";
  EXPECT_EQ(got->replies.size(), 1u);
  EXPECT_EQ(got->missing, std::vector<std::string>{c.address(2)});

  // Nobody to ask: answered at once, empty.
  got.reset();
  c.node(0)->messenger->request(cluster::ClusterMessage{"ws_queues", "", {}}, Duration{1'000'000},
                                [&](cluster::Replies r) { got = r; }, {"nowhere:1"});
  k.run_for(Duration{1'000});
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->replies.empty());
}

// Random-faults seed 14211: a restarted node served clients before a peer saw it alive; a post the peer
// made then never reached them, and nothing told them (the node had no stream to call replaced). A
// sender now opens a stream as soon as it holds a peer alive, so the peer hears of it within a round
// trip - without waiting for a real message - and the node makes its clients re-sync.
TEST(Messages, APeerHeldAliveAgainGetsAStreamAtOnceWithoutARealMessage) {
  MemberCluster c(9, 3);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  EXPECT_GE(c.node(2)->messenger->stats().streams_begun, 2u) << "first sight opens a stream from each peer";
  k.crash(2);
  ASSERT_TRUE(k.run_until([&] { return c.deaths() > 0; }, k.now() + Duration{5'000'000}));
  k.start(2);
  k.run_for(Duration{3'000'000});
  ASSERT_NE(c.node(2), nullptr);
  EXPECT_GE(c.node(2)->messenger->stats().streams_begun, 2u) << "both peers opened a stream to the new life";
  EXPECT_TRUE(c.node(2)->received.empty()) << "the opening message is the messenger's own, never delivered";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(2)), 0u) << "and it was acknowledged";
}

// The opening says whether the peer missed anything: only then do its clients need to re-sync.
TEST(Messages, TheOpeningTellsARestartedPeerWhetherItMissedMessages) {
  for (bool published_while_dead : {false, true}) {
    SCOPED_TRACE(published_while_dead);
    MemberCluster c(10, 3);
    auto& k = c.kernel();
    k.run_for(Duration{2'000'000});
    k.crash(2);
    ASSERT_TRUE(k.run_until([&] { return c.deaths() >= 2; }, k.now() + Duration{5'000'000}));
    if (published_while_dead) c.node(0)->messenger->send_to_all(msg(1), cluster::Delivery::reliable);
    k.start(2);
    ASSERT_NE(c.node(2), nullptr);
    std::vector<std::pair<std::string, bool>> told;
    c.node(2)->messenger->on_new_stream(
        [&](const std::string& from, bool replaced) { told.emplace_back(from, replaced); });
    k.run_for(Duration{3'000'000});
    if (published_while_dead) {
      EXPECT_EQ(told, (std::vector<std::pair<std::string, bool>>{{c.address(0), false}}))
          << "n0 skipped a message for it; n1 did not";
    } else {
      EXPECT_TRUE(told.empty()) << "nothing was missed: no re-sync";
    }
  }
}

// Random-faults seed 42902: a restarted node sent to a peer it knew only as a seed address (its
// generation unknown); the peer's earlier life acknowledged the stream's first message and died; its next
// life got the stream from the second message on, which it could never deliver (the first was gone
// from the sender's queue), and the sender never saw a restart to begin a new stream. A peer whose
// generation is not known gets no stream; once it is heard from, the opening says what it missed.
TEST(Messages, APeerNotHeardFromYetGetsNoStreamAndIsToldWhatItMissed) {
  MemberCluster c(11, 2);  // two: a third node would gossip node 1's generation to node 0
  auto& k = c.kernel();
  k.block(1, 0);  // node 0 never hears node 1 (node 1 hears node 0)
  k.run_for(Duration{1'000'000});
  ASSERT_NE(c.node(0), nullptr);
  ASSERT_NE(c.node(1), nullptr);
  ASSERT_EQ(c.node(0)->membership->members().at(c.address(1)).generation, 0u) << "node 0 knows node 1 as a seed only";
  std::vector<std::pair<std::string, bool>> told;
  c.node(1)->messenger->on_new_stream(
      [&](const std::string& from, bool replaced) { told.emplace_back(from, replaced); });
  EXPECT_FALSE(c.node(0)->messenger->send_to(c.address(1), msg(1), cluster::Delivery::reliable));
  EXPECT_EQ(c.node(0)->messenger->stats().refused_unknown, 1u);
  EXPECT_EQ(c.node(0)->messenger->send_to_all(msg(2), cluster::Delivery::reliable), 0u);
  k.run_for(Duration{1'000'000});
  EXPECT_TRUE(numbers_from(c.node(1), c.address(0)).empty());
  EXPECT_TRUE(told.empty());
  k.unblock(1, 0);
  ASSERT_TRUE(k.run_until([&] { return c.node(0)->membership->members().at(c.address(1)).generation != 0; },
                          k.now() + Duration{5'000'000}));
  k.run_for(Duration{500'000});
  EXPECT_EQ(told, (std::vector<std::pair<std::string, bool>>{{c.address(0), false}})) << "the opening said: missed";
  EXPECT_TRUE(c.node(0)->messenger->send_to(c.address(1), msg(3), cluster::Delivery::reliable));
  k.run_for(Duration{500'000});
  EXPECT_EQ(numbers_from(c.node(1), c.address(0)), (std::vector<int>{3}));
}
