// Cluster message frames (0x30 data, 0x31 ack) handed to a Messenger (Messenger::handle_frame) whose
// membership holds three peers alive, with the node's own traffic mixed in: messages to everyone (best
// effort and reliable), requests with timeouts (request/response: the _request and _reply_to props),
// peers restarting or declared dead, and time passing (retransmissions, timeouts).
//
// Input: steps (fuzz_input.h). Step = [op][t][rest]:
//   op % 8 < 4: the frame `rest` arrives from peer op % 4 (3: an address that is not a member)
//   op % 8 == 4: send_to_all(the event of wire.h numbered t % (events + 1) (the last: `rest` as the name), data
//                `rest`), reliable when t & 0x80
//   op % 8 == 5: request(cluster_stats or ws_queues (t & 1), data `rest`) of every live peer, timeout t * 4 ms
//   op % 8 == 6: peer t % 3 restarts (a new generation: t / 3) or, with t & 0x80, is declared dead by another
//   op % 8 == 7: time passes only
// then t * 2 ms of virtual time pass. At the end, 1.1 s pass.
//
// Properties besides the sanitizers and the code's own assertions: every frame the node sends decodes (a
// second Messenger reads it and must not call it malformed); a request's callback runs exactly once, by its
// timeout at the latest ("never a hang"); each reply comes from a peer that was asked, and a peer is never
// both answered and missing.
#include <set>

#include "cluster_stack.h"
#include "fuzz_input.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

const std::string kStranger = "10.0.0.9:8074";
const std::string& peer_address(size_t i) { return i < 3 ? cluster_addresses()[i + 1] : kStranger; }
constexpr uint64_t kGeneration = 1'700'000'000'000'000;

void write_seeds(SeedWriter& w) {
  // What node 1 receives from the others in a real cluster (opens, acks, best effort, reliable, a
  // request and the replies), as steps from their senders; then a send, a request and time.
  std::vector<std::string> steps;
  for (const auto& [from, to, payload] : real_cluster_frames()) {
    if (to != cluster_addresses()[0] || payload.empty() || (payload[0] != 0x30 && payload[0] != 0x31)) continue;
    const auto i = static_cast<uint8_t>(std::find(cluster_addresses().begin(), cluster_addresses().end(), from) -
                                        cluster_addresses().begin() - 1);
    std::string s{static_cast<char>(i), 1};
    steps.push_back(s + as_string(payload));
  }
  InputBuilder all;
  for (const auto& s : steps) all.step(s);
  w.add("real-frames", all.str());
  InputBuilder mixed;
  for (size_t i = 0; i < steps.size() && i < 4; ++i) mixed.step(steps[i]);
  mixed.step(std::string("\x04\x81") + R"({"id":"e2","event":"posted"})")
      .step(std::string("\x05\x40") + "conn1")
      .step({7, 200})
      .step({6, 0x04})
      .step({6, 0x81})
      .step({7, 255});
  w.add("mixed", mixed.str());
}

struct Run {
  CountingSink sink;
  CountingSink checker_sink{"malformed"};
  FuzzEnv checker_env{kStranger, 2, &checker_sink};
  cluster::Membership checker_membership{checker_env, kStranger, 1, {}};
  cluster::Messenger checker{checker_env, checker_membership};
  std::unique_ptr<FuzzEnv> env;
  std::unique_ptr<cluster::Membership> membership;
  std::unique_ptr<cluster::Messenger> messenger;
  uint64_t checked = 0;
  struct Asked {
    std::set<std::string> peers;
    int done = 0;
  };
  std::vector<Asked> requests;
  uint64_t delivered = 0;

  Run() {
    env = std::make_unique<FuzzEnv>(cluster_addresses()[0], 1, &sink);
    env->on_send = [this](const std::string&, std::span<const uint8_t> p) {
      if (checked++ < 64) checker.handle_frame(env->node_name(), p);
    };
    membership = std::make_unique<cluster::Membership>(*env, cluster_addresses()[0], kGeneration, cluster::MembershipOptions{},
                                                       [this](const cluster::Member& m) {
                                                         if (messenger) messenger->on_member_change(m);
                                                       });
    messenger = std::make_unique<cluster::Messenger>(*env, *membership);
    messenger->subscribe("", [this](const std::string&, const cluster::ClusterMessage&) { ++delivered; });
    messenger->serve(cluster::ClusterEvent::cluster_stats,
                     [](const std::string&, const cluster::ClusterMessage&, cluster::Messenger::Reply reply) {
                       reply(cluster::ClusterMessage{"", "", {{"websocket_connections", "3"}}});
                     });
    // ws_queues answers later, or never (the asker's timeout covers it).
    messenger->serve(cluster::ClusterEvent::ws_queues, [this](const std::string&, const cluster::ClusterMessage& m,
                                                              cluster::Messenger::Reply reply) {
      if (m.data.empty() || m.data[0] != 'x') env->set_timer(Duration{10'000}, [reply] { reply({"", "queue", {}}); });
    });
    membership->start();
    // The peers are heard from: alive, with their generations (the messenger opens a stream to each).
    for (size_t i = 0; i < 3; ++i)
      membership->handle_frame(peer_address(i), member_frame(cluster::FrameType::member_gossip, 0, "",
                                                             MemberRecord{peer_address(i), kGeneration + i + 1, 0, 0}));
    env->run_ready();
  }

  void request(cluster::ClusterEvent e, std::string data, Duration timeout) {
    const size_t id = requests.size();
    requests.push_back({});
    for (const auto& [addr, m] : membership->members())
      if (m.state != cluster::MemberState::dead) requests[id].peers.insert(addr);
    messenger->request(cluster::ClusterMessage::of(e, std::move(data)), timeout, [this, id](cluster::Replies r) {
      auto& a = requests[id];
      if (++a.done > 1) property_failed("a request's callback ran twice");
      for (const auto& [peer, reply] : r.replies) {
        if (!a.peers.contains(peer)) property_failed("a reply from a peer that was not asked", peer);
        if (std::find(r.missing.begin(), r.missing.end(), peer) != r.missing.end())
          property_failed("a peer both answered and missing", peer);
      }
    });
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_messages", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run run;
  std::vector<uint64_t> generations{kGeneration + 1, kGeneration + 2, kGeneration + 3};
  for (auto step : split_steps({data, size}, 128)) {
    StepReader r(step);
    const uint8_t op = r.u8(), t = r.u8();
    switch (op % 8) {
      case 4: {
        const size_t e = (t & 0x7f) % (cluster::kClusterEvents.size() + 1);
        const std::string name =
            e < cluster::kClusterEvents.size() ? std::string(cluster::kClusterEvents[e].second) : r.rest_string();
        run.messenger->send_to_all(cluster::ClusterMessage{name, r.rest_string(), {{"k", "v"}}},
                                   t & 0x80 ? cluster::Delivery::reliable : cluster::Delivery::best_effort);
        break;
      }
      case 5:
        run.request(t & 1 ? cluster::ClusterEvent::ws_queues : cluster::ClusterEvent::cluster_stats, r.rest_string(),
                    Duration{t * 4'000});
        break;
      case 6: {
        const size_t i = t % 3;
        if (t & 0x80) {  // another peer says it is dead
          const auto& m = run.membership->members();
          auto it = m.find(peer_address(i));
          const uint64_t inc = it == m.end() ? 0 : it->second.incarnation;
          run.membership->handle_frame(
              peer_address((i + 1) % 3),
              member_frame(cluster::FrameType::member_gossip, 0, "",
                           MemberRecord{peer_address((i + 1) % 3), generations[(i + 1) % 3], 0, 0},
                           {MemberRecord{peer_address(i), generations[i], inc, 2}}));
        } else {  // it restarted
          generations[i] += 1 + t / 3;
          run.membership->handle_frame(peer_address(i), member_frame(cluster::FrameType::member_gossip, 0, "",
                                                                     MemberRecord{peer_address(i), generations[i], 0, 0}));
        }
        break;
      }
      case 7:
        break;
      default:
        run.messenger->handle_frame(peer_address(op % 4), r.rest());
    }
    run.env->run_for(Duration{t * 2'000}, 2'000);
  }
  run.env->run_for(Duration{1'100'000}, 20'000);  // past the longest request timeout (255 * 4 ms)
  if (run.checker_sink.matching) property_failed("the node sent a message frame that does not decode");
  for (const auto& a : run.requests)
    if (a.done != 1) property_failed("a request's callback did not run by its timeout");
  return 0;
}
