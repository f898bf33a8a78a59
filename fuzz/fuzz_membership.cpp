// Membership (SWIM) frames, 0x10-0x13, handed to a running Membership as the node hands them
// (Membership::handle_frame), with time passing between them so probes, suspicions and ping-reqs run.
//
// Input: steps (fuzz_input.h). Step = [op][t][rest]:
//   op % 8 < 5: the frame `rest` arrives from address op % 4 (the frame's own sender field is what counts)
//   op % 8 == 5: the connection to address t % 4 is reset (Membership::on_connection_lost)
//   op % 8 == 6: add_seed(rest)
//   op % 8 == 7: time passes only
// then t * 4 ms of virtual time pass.
//
// Properties besides the sanitizers and the code's own assertions: every frame the node sends decodes
// (a second Membership, never started, is a pure decoder: it says "malformed" or not); the leader is
// always the lowest address not declared dead (us included); what we announce of ourselves, (generation,
// incarnation), never goes back (peers would not believe it: a restart moves the generation on, a refutation
// the incarnation); the members stay within members_max.
#include "cluster_stack.h"
#include "fuzz_input.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

void write_seeds(SeedWriter& w) {
  // What node 1 receives in a real three-node cluster, as steps from their real senders.
  std::vector<std::string> steps;
  for (const auto& [from, to, payload] : real_cluster_frames()) {
    if (to != cluster_addresses()[0] || payload.empty() || payload[0] < 0x10 || payload[0] > 0x13) continue;
    const auto i = static_cast<uint8_t>(std::find(cluster_addresses().begin(), cluster_addresses().end(), from) -
                                        cluster_addresses().begin());
    std::string s{static_cast<char>(i), 5};
    s += as_string(payload);
    steps.push_back(s);
  }
  for (size_t start = 0, n = 0; start < steps.size() && n < 8; start += 12, ++n) {
    InputBuilder b;
    for (size_t i = start; i < std::min(steps.size(), start + 12); ++i) b.step(steps[i]);
    w.add("real-" + std::to_string(n), b.str());
  }
  // A peer that goes silent (probes, ping-reqs, suspicion, death), then comes back.
  InputBuilder silent;
  if (!steps.empty()) silent.step(steps[0]);
  silent.step({7, 255}).step({7, 255}).step({5, 1}).step({7, 255}).step({7, 255});
  if (steps.size() > 1) silent.step(steps[1]);
  w.add("silent-peer", silent.str());
}

struct Run {
  CountingSink sink;
  CountingSink checker_sink{"malformed"};
  FuzzEnv checker_env{"checker", 2, &checker_sink};
  cluster::Membership checker{checker_env, "10.0.0.9:8074", 1, {}};  // never started: decodes only
  StackOptions options;
  std::unique_ptr<FuzzEnv> env;
  std::unique_ptr<cluster::Membership> m;
  uint64_t frames_checked = 0;
  std::pair<uint64_t, uint64_t> announced{0, 0};  // the highest (generation, incarnation) we sent about us

  Run() {
    env = std::make_unique<FuzzEnv>(cluster_addresses()[0], 1, &sink);
    env->on_send = [this](const std::string& to, std::span<const uint8_t> p) {
      if (frames_checked++ < 64) checker.handle_frame(env->node_name(), p);
      // Every frame carries the sender's own record: type, seq, target, then address, generation, incarnation.
      ByteReader r(p);
      r.u8();
      r.varint();
      r.str(255);
      r.str(255);
      const uint64_t generation = r.varint(), incarnation = r.varint();
      if (!r.ok()) return;  // the decoding check above reports it
      const std::pair<uint64_t, uint64_t> now{generation, incarnation};
      if (now < announced)
        property_failed("we announced an older (generation, incarnation) of ourselves",
                        std::to_string(now.first) + "/" + std::to_string(now.second) + " after " +
                            std::to_string(announced.first) + "/" + std::to_string(announced.second));
      announced = now;
    };
    m = std::make_unique<cluster::Membership>(*env, cluster_addresses()[0], options.generation, cluster::MembershipOptions{});
    for (size_t i = 1; i < 3; ++i) m->add_seed(cluster_addresses()[i]);
    m->start();
  }

  void check() {
    if (checker_sink.matching) property_failed("the node sent a membership frame that does not decode");
    std::string lowest = m->self();
    for (const auto& [addr, member] : m->members())
      if (member.state != cluster::MemberState::dead && addr < lowest) lowest = addr;
    if (m->leader() != lowest) property_failed("leader is not the lowest live address", m->leader() + " vs " + lowest);
    if (m->members().size() > cluster::MembershipOptions{}.members_max) property_failed("members beyond members_max");
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_membership", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run run;
  const auto& addr = cluster_addresses();
  for (auto step : split_steps({data, size}, 128)) {
    StepReader r(step);
    const uint8_t op = r.u8(), t = r.u8();
    switch (op % 8) {
      case 5:
        run.m->on_connection_lost(addr[t % 4]);
        break;
      case 6:
        run.m->add_seed(r.rest_string());
        break;
      case 7:
        break;
      default:
        run.m->handle_frame(addr[op % 4], r.rest());
    }
    run.env->run_for(Duration{t * 4'000}, 2'000);
    run.check();
  }
  return 0;
}
