// Cluster messages in the simulator: reliable ones arrive exactly once and in order across loss,
// duplication and reordering; waiting for all peers ends when each has acknowledged or died; queues are
// bounded; a restarted peer gets a fresh stream; best effort ones simply go.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "simulator/membership_cluster.h"

using namespace chorus;
using namespace chorus::sim;

namespace {
cluster::ClusterMessage msg(int i) { return cluster::ClusterMessage{"publish", std::to_string(i), {{"k", "v"}}}; }

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
    ASSERT_TRUE(k.run_until([&] { return done == 300; }, k.now() + Duration{60'000'000})) << "seed " << seed << ": " << done;
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

TEST(Messages, QueuesAreBounded) {
  MemberCluster c(4, 3);
  auto& k = c.kernel();
  k.run_for(Duration{2'000'000});
  k.block(0, 2);
  int queued = 0;
  for (int i = 0; i < 10'050; ++i) queued += c.node(0)->messenger->send_to(c.address(2), msg(i), cluster::Delivery::reliable);
  EXPECT_EQ(queued, 10'000);
  EXPECT_EQ(c.node(0)->messenger->stats().refused_full, 50u);
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
  EXPECT_EQ(numbers_from(c.node(1), c.address(0)), (std::vector<int>{9, 10, 11})) << "the old life's 6-8 are not replayed into the new one";
  EXPECT_EQ(c.node(0)->messenger->queued(c.address(1)), 0u);
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
  for (const std::vector<uint8_t>& junk : std::vector<std::vector<uint8_t>>{{0x30}, {0x31, 1, 2}, {0x30, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff}})
    EXPECT_TRUE(n->messenger->handle_frame(c.address(1), junk));
  EXPECT_TRUE(n->received.empty());
}
