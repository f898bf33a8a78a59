// Membership and failure detection on the gossip port: SWIM with Lifeguard's refinements.
//
// Every probe interval a node pings the next member of a shuffled round-robin. If no ack comes within
// the probe timeout it asks `indirect_probes` other members to ping the target for it (ping-req); if
// none of them gets an ack either by the end of the interval, it suspects the target. A suspicion is
// disseminated at once (sent to every member) and piggybacked on later messages; the suspect refutes it
// by bumping its incarnation. Lifeguard: the suspicion timeout starts at suspicion_max and shrinks
// towards suspicion_min as other members independently confirm it; a node that finds itself suspected
// (it was slow) stretches its own probe timeouts (local health). When the timeout expires the member
// is declared dead. A TCP reset from a member's connection (its process died) is taken as a suspicion
// at once. A dead member that turns out alive (it was paused) is told so and rejoins with a higher
// incarnation; a restarted member comes back with a newer generation (its start time; if its clock
// is behind a record of its previous run, it moves its generation past that record).
//
// The leader (bully): the lowest address among this node and the members not declared dead.
// Addresses are the members' advertised gossip addresses, compared as byte strings: a node keeps its
// place across restarts, so a restarted lowest node takes the leadership back.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "server/core/env.h"

namespace chorus::cluster {

enum class MemberState : uint8_t { alive = 0, suspect = 1, dead = 2 };
const char* to_string(MemberState s);

struct Member {
  std::string address;
  uint64_t generation = 0;   // the member's start time (wall ms): a restart is newer
  uint64_t incarnation = 0;  // bumped by the member to refute a suspicion
  MemberState state = MemberState::alive;
  MonoTime since;      // when the state last changed, on this node's clock
  bool heard = false;  // a message from it has arrived (a seed address until then)
  bool left = false;   // dead by its own word: it announced a clean leave (Membership::leave)
};

struct MembershipOptions {
  Duration probe_interval{200'000};
  Duration probe_timeout{100'000};
  int indirect_probes = 3;
  Duration suspicion_min{400'000};
  Duration suspicion_max{1'500'000};
  int suspicion_confirmations = 3;  // Lifeguard's K
  int gossip_repeat = 4;            // each update rides on this many messages after its broadcast
  size_t piggyback_max = 8;
  int local_health_max = 8;
  size_t members_max = 1024;  // a bound on what messages can make us remember
};

class Membership {
 public:
  // on_change(member) for every state change, when a member is first heard from, and when it restarts
  // (a new generation); on_leader(address) when the leader changes.
  Membership(Env& env, std::string self, uint64_t generation, MembershipOptions options,
             std::function<void(const Member&)> on_change = {}, std::function<void(const std::string&)> on_leader = {});
  ~Membership();

  void start();
  void stop();
  // A clean stop: tell every member we are leaving (as dead), so the leadership moves at once instead
  // of after the detection time. Then stop().
  void leave();
  // A member to join (discovery, configuration). Idempotent.
  void add_seed(const std::string& address);
  // Frames of the membership protocol (first byte 0x10-0x13); false for anything else.
  bool handle_frame(const std::string& from, std::span<const uint8_t> payload);
  // The transport saw the member's connection reset: its process is likely gone.
  void on_connection_lost(const std::string& address);

  const std::map<std::string, Member>& members() const { return members_; }
  const std::string& self() const { return self_; }
  uint64_t incarnation() const { return incarnation_; }
  const std::string& leader() const { return leader_; }
  int local_health() const { return local_health_; }
  uint64_t messages_sent() const { return messages_sent_; }

 private:
  struct Update {
    std::string address;
    uint64_t generation;
    uint64_t incarnation;
    MemberState state;
  };
  struct Queued {
    Update update;
    int remaining;
  };
  void tick();
  void probe_timed_out(uint64_t seq);
  void probe_failed(uint64_t seq);  // the probe's interval ended without an ack
  bool apply(const Update& u, const std::string& reporter);
  void start_suspicion(Member& m, const std::string& reporter);
  void suspicion_expired(const std::string& address, uint64_t generation, uint64_t incarnation);
  void disseminate(const Update& u);
  void send(const std::string& to, uint8_t type, uint64_t seq, const std::string& target = "",
            const Update* extra = nullptr);
  Update self_update() const { return Update{self_, generation_, incarnation_, MemberState::alive}; }
  Update update_of(const Member& m) const { return Update{m.address, m.generation, m.incarnation, m.state}; }
  void recompute_leader();
  Duration scaled(Duration d) const { return d * (1 + local_health_); }

  Env& env_;
  std::string self_;
  uint64_t generation_;
  uint64_t incarnation_ = 0;
  MembershipOptions options_;
  std::function<void(const Member&)> on_change_;
  std::function<void(const std::string&)> on_leader_;
  std::map<std::string, Member> members_;
  std::vector<std::string> rotation_;
  size_t rotation_index_ = 0;
  std::vector<Queued> gossip_;
  // The probe in progress.
  uint64_t next_seq_ = 1;
  uint64_t probe_seq_ = 0;
  std::string probe_target_;
  bool probe_acked_ = true;
  TimerId tick_timer_ = 0, probe_timer_ = 0;
  // Ping-reqs we serve: our ping's seq -> (requester, their seq).
  std::map<uint64_t, std::pair<std::string, uint64_t>> forwards_;
  // Suspicions: address -> (confirming reporters, timer).
  struct Suspicion {
    std::set<std::string> reporters;
    MonoTime started;
    TimerId timer = 0;
  };
  std::map<std::string, Suspicion> suspicions_;
  std::string leader_;
  int local_health_ = 0;
  uint64_t messages_sent_ = 0;
  bool running_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::cluster
