// Status frames (0x20: version, schema version, config hash, hostname: the HA guide's green or red) and
// the ping layer's frames (0x01 ping, 0x02 pong: round-trip estimates), through the node's dispatch by
// first byte (Node::on_frame, as cluster_stack.h wires it), on a node whose membership holds three peers.
// Any other first byte goes where the node sends it too (membership, messages, or ping for garbage).
//
// Input: steps (fuzz_input.h). Step = [op][t][rest]:
//   op % 8 < 4: the frame `rest` arrives from peer op % 4 (3: an address that is neither member nor peer)
//   op % 8 == 4: the transport's connection to peer t % 3 goes down (5: comes up)
//   op % 8 == 6: our own status changes: version `rest` (set_self)
//   op % 8 == 7: time passes only
// then t * 4 ms pass; after each step every member's colour is evaluated (ClusterStatus::peers).
//
// Properties besides the sanitizers: green exactly when there is no reason; a peer declared dead is never
// green; a round-trip estimate is never negative.
#include "cluster_stack.h"
#include "fuzz_input.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

const std::string kStranger = "10.0.0.9:8074";
const std::string& peer_address(size_t i) { return i < 3 ? cluster_addresses()[i + 1] : kStranger; }

void write_seeds(SeedWriter& w) {
  std::vector<std::string> steps;
  for (const auto& [from, to, payload] : real_cluster_frames()) {
    if (to != cluster_addresses()[0] || payload.empty() || (payload[0] != 0x20 && payload[0] > 0x02)) continue;
    const auto i = static_cast<uint8_t>(std::find(cluster_addresses().begin(), cluster_addresses().end(), from) -
                                        cluster_addresses().begin() - 1);
    std::string s{static_cast<char>(i), 2};
    steps.push_back(s + as_string(payload));
  }
  InputBuilder all;
  for (size_t i = 0; i < steps.size() && i < 40; ++i) all.step(steps[i]);
  w.add("real-frames", all.str());
  // A peer of another version and config, then ours changes; a connection drops.
  ByteWriter st;
  st.u8(0x20);
  for (const char* s : {"10.0.0.3:8074", "0.3.1", "9", "otherhash", "host3"}) st.str(s);
  InputBuilder mixed;
  if (!steps.empty()) mixed.step(steps[0]);
  mixed.step({1, 5}, st.bytes()).step(std::string("\x06\x01") + "0.2.0").step({4, 1}).step({7, 250}).step({5, 1});
  w.add("versions", mixed.str());
}

struct Run {
  CountingSink sink;
  std::unique_ptr<ClusterStack> stack;
  Run() {
    StackOptions o;
    o.peers = {peer_address(0), peer_address(1), peer_address(2)};
    o.sink = &sink;
    stack = std::make_unique<ClusterStack>(o);
    stack->start();
    for (size_t i = 0; i < 3; ++i)
      stack->on_frame(peer_address(i),
                      member_frame(cluster::FrameType::member_gossip, 0, "",
                                   MemberRecord{peer_address(i), o.generation + i + 1, 0, 0}));
    stack->env.run_ready();
  }
  void check() {
    for (const auto& p : stack->status.peers()) {
      if (p.green != p.reason.empty()) property_failed("green and a reason", p.reason);
      if (p.state == cluster::MemberState::dead && p.green) property_failed("a dead peer is green");
    }
    for (const auto& [peer, rtt] : stack->ping.peers())
      if (rtt.last_rtt_us < -1 || rtt.srtt_us < -1 || rtt.rttvar_us < 0) property_failed("a negative round trip");
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_status", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run run;
  auto& s = *run.stack;
  for (auto step : split_steps({data, size}, 128)) {
    StepReader r(step);
    const uint8_t op = r.u8(), t = r.u8();
    switch (op % 8) {
      case 4:
        s.on_peer_down(peer_address(t % 3));
        break;
      case 5:
        s.on_peer_up(peer_address(t % 3));
        break;
      case 6: {
        auto self = s.status.self();
        self.version = r.rest_string();
        s.status.set_self(self);
        break;
      }
      case 7:
        break;
      default:
        s.on_frame(peer_address(op % 4), r.rest());
    }
    s.env.run_for(Duration{t * 4'000}, 2'000);
    run.check();
  }
  return 0;
}
