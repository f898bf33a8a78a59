// The simulation kernel: a single-threaded discrete-event loop in virtual time that runs whole nodes.
//
// Every node runs its real code (a Process) on a SimEnv: its clock is the kernel's virtual time seen
// through the node's skew and drift, its timers and posts are kernel events, its transport is a set of
// simulated links, and its randomness is the run's one PRNG. Events run one at a time in (time, seq)
// order, so a run is a pure function of its seed and the faults applied to it.
//
// Links carry frames with a latency drawn per frame, and can lose, duplicate, reorder and block them
// (partitions: symmetric, one-way, or one node cut from some peers). Connections follow TCP's visible
// behaviour: connect succeeds after a round trip to a live (even paused) peer, is refused by a dead one,
// times out across a partition; a crash resets its peers' connections; a frame sent on a connection to a
// dead incarnation triggers a reset once the path is open. Frames sent on a live connection across a
// partition are lost (real TCP would retransmit them later: protocols must cope with either).
//
// Faults: crash (memory lost), clean stop, restart, pause/resume (events held and run late on resume),
// clock skew and drift per node. Every delivery, drop, timer and fault goes to the trace, whose running
// hash identifies the run. Only simulator/ and tests use this header.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "server/core/env.h"
#include "server/core/random.h"
#include "server/core/time.h"
#include "server/core/transport.h"

namespace chorus::sim {

using NodeIndex = uint32_t;
inline constexpr NodeIndex kNoNode = UINT32_MAX;

struct LatencyModel {
  Duration min{100};         // propagation floor
  Duration mean_extra{400};  // exponential tail on top of min
  Duration max{100'000};     // cap

  // min plus an exponential draw (not yet capped: a caller may add to it first).
  int64_t draw_us(Random& random) const {
    return min.count() + static_cast<int64_t>(random.exponential(static_cast<double>(mean_extra.count())));
  }
  Duration capped(int64_t us) const { return Duration{std::min<int64_t>(us, std::max(max.count(), min.count()))}; }
  Duration sample(Random& random) const { return capped(draw_us(random)); }
};

struct LinkConfig {
  LatencyModel latency;
  double loss = 0;       // probability a frame is lost
  double duplicate = 0;  // probability a frame is delivered twice
  double reorder = 0;    // probability a frame is held back by reorder_delay more
  Duration reorder_delay{5'000};
  bool blocked = false;  // partitioned: nothing crosses in this direction
};

enum class TraceKind : uint8_t {
  deliver,
  drop_loss,
  drop_blocked,
  drop_down,
  duplicate,
  timer,
  connect_up,
  connect_refused,
  connect_timeout,
  reset,
  crash,
  stop,
  restart,
  pause,
  resume,
  clock_skew,
  clock_drift,
  link_change,
  action,
  db,      // a statement batch reaching a server (its SQL and parameters), and its outcome (rows, status)
  client,  // what a simulated client received: a WebSocket frame or an HTTP answer
};
const char* to_string(TraceKind kind);

struct TraceRecord {
  int64_t time_us;
  TraceKind kind;
  NodeIndex a;      // the node acted on, or the sender
  NodeIndex b;      // the receiver, or kNoNode
  uint64_t detail;  // payload hash, timer id, or a fault's parameter
};

enum class NodeState { down, up, paused };

class SimEnv;
class SimDatabases;

class Kernel {
 public:
  using ProcessFactory = std::function<std::unique_ptr<Process>(Env&)>;

  struct Options {
    uint64_t seed = 1;
    bool keep_trace = true;                // keep records (for divergence reports); the hash is always kept
    size_t trace_records_max = 4'000'000;  // about 160 MB; the hash covers everything past it
    Duration connect_timeout{1'000'000};
    Duration reconnect_base{100'000};
    Duration reconnect_cap{1'000'000};
    uint32_t send_queue_frames_max = kDefaultSendQueueFramesMax;
    uint32_t frame_size_max = kDefaultFrameSizeMax;
    LinkConfig default_link;
    LogSink* log_sink = nullptr;  // null: logs are discarded
    LogLevel log_level = LogLevel::info;
    int64_t wall_epoch_us = 1'767'225'600'000'000;  // 2026-01-01T00:00:00Z: virtual time 0 on the wall
  };

  explicit Kernel(Options options);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Topology. Nodes are added down; start() boots them.
  NodeIndex add_node(std::string address, ProcessFactory factory);
  size_t node_count() const { return nodes_.size(); }
  const std::string& address(NodeIndex i) const;
  NodeIndex find(const std::string& address) const;  // kNoNode when unknown

  // Node lifecycle and faults (take effect now, in virtual time).
  void start(NodeIndex i);                          // boot a down node (first start or restart after crash/stop)
  void crash(NodeIndex i);                          // memory lost, no stop() called; peers see their connections reset
  void stop(NodeIndex i);                           // clean: Process::stop, then down when it reports done
  void pause(NodeIndex i);                          // frozen: its events wait; its connections stay up
  void resume(NodeIndex i);                         // held events run now, late
  void set_clock_skew(NodeIndex i, Duration skew);  // wall clock offset
  void set_clock_drift_ppm(NodeIndex i, double ppm);  // rate error of both its clocks
  NodeState state(NodeIndex i) const;
  uint32_t incarnation(NodeIndex i) const;
  Process* process(NodeIndex i);  // null when down
  Env* env(NodeIndex i);          // null when down

  // Links (directed, from -> to).
  LinkConfig& link(NodeIndex from, NodeIndex to);
  void set_link(NodeIndex from, NodeIndex to, const LinkConfig& config);
  void block(NodeIndex from, NodeIndex to);  // one-way cut
  void unblock(NodeIndex from, NodeIndex to);
  void partition(const std::vector<NodeIndex>& side);             // cut side from the rest, both ways
  void isolate(NodeIndex i, const std::vector<NodeIndex>& from);  // cut i from these peers, both ways
  void heal();                                                    // unblock every link

  // Running.
  int64_t now_us() const { return now_us_; }
  Duration now() const { return Duration{now_us_}; }
  // Runs kernel-level code (a fault, a check) at virtual time t (absolute), in order with node events.
  void at(Duration t, Task fn);
  // Runs fn on a node's loop at virtual time t (absolute), unless that incarnation is gone by then;
  // held while the node is paused. For answers from simulated servers.
  void call_on_node(NodeIndex i, uint32_t incarnation, int64_t time_us, Task fn);
  // What a simulated server holds for a node (a database answer's callback) must not outlive the node's
  // env: its destructors may call into the env. The box is emptied when the node is torn down, while
  // the env still stands; the holder finds it empty and drops the answer.
  template <class T>
  void release_at_teardown(NodeIndex i, const std::shared_ptr<std::shared_ptr<T>>& box) {
    auto& list = node(i).releases;
    if (list.size() >= 64 && list.size() >= 2 * releases_kept_) {  // prune what has gone already
      std::erase_if(list, [](const Release& r) { return r.alive.expired(); });
      releases_kept_ = list.size();
    }
    std::weak_ptr<std::shared_ptr<T>> weak = box;
    list.push_back(Release{weak, [weak] {
                             if (auto b = weak.lock()) b->reset();
                           }});
  }
  // The simulated database servers of this run.
  SimDatabases& databases() { return *databases_; }
  // The shared file storage (a NAS every node mounts): path -> contents. Survives node crashes.
  std::map<std::string, std::string>& shared_files() { return shared_files_; }
  // Faults of the shared file storage: unavailable (every call fails), or slow (every call takes this
  // much longer). Scenario operations files_down / files_up / files_slow.
  struct FileStoreFaults {
    bool down = false;
    Duration delay{0};
  };
  FileStoreFaults& file_store_faults() { return file_faults_; }
  // The files node n sees: the shared ones, or its own (a node set apart with unshare_files, as a node
  // whose FileSettings.Directory is a local disk instead of the NAS), from its next start on.
  void unshare_files(NodeIndex n) { private_files_[n]; }
  std::map<std::string, std::string>& files_of(NodeIndex n) {
    auto it = private_files_.find(n);
    return it == private_files_.end() ? shared_files_ : it->second;
  }
  bool step();                 // runs one event; false when the queue is empty
  void run_until(Duration t);  // runs every event up to and including t, then sets now to t
  void run_for(Duration d) { run_until(now() + d); }
  // Runs until pred() holds (checked after each event) or t is reached. True if pred held.
  bool run_until(const std::function<bool()>& pred, Duration t);
  uint64_t events_processed() const { return events_processed_; }

  Random& random() { return random_; }
  const Options& options() const { return options_; }

  // The trace.
  uint64_t trace_hash() const { return trace_hash_; }
  uint64_t trace_count() const { return trace_count_; }
  const std::vector<TraceRecord>& trace() const { return trace_; }
  const std::vector<uint64_t>& trace_hashes() const { return trace_hashes_; }  // hash after each record
  void record(TraceKind kind, NodeIndex a, NodeIndex b, uint64_t detail);
  std::string describe(const TraceRecord& r) const;

 private:
  friend class SimEnv;

  enum class EventKind : uint8_t { timer, deliver, connect_result, reset_notify, action };
  struct Event {
    int64_t time_us;
    uint64_t seq;
    uint64_t id;           // timer id, message slot, connection token, or action slot
    NodeIndex node;        // the node whose loop runs it (kNoNode for actions)
    uint32_t incarnation;  // the node's incarnation when scheduled; stale events are dropped
    EventKind kind;
    bool operator>(const Event& o) const { return time_us != o.time_us ? time_us > o.time_us : seq > o.seq; }
  };
  struct Message {
    NodeIndex from;
    NodeIndex to;
    uint32_t to_incarnation;
    Bytes payload;
  };
  struct Release {
    std::weak_ptr<void> alive;
    std::function<void()> release;
  };
  struct Node {
    std::vector<Release> releases;  // see release_at_teardown
    std::string address;
    ProcessFactory factory;
    NodeState state = NodeState::down;
    uint32_t incarnation = 0;
    std::unique_ptr<SimEnv> env;
    std::unique_ptr<Process> process;
    std::vector<Event> held;  // events that came due while paused
    // Clocks: mono = anchor_local + (virtual - anchor_virtual) * rate, and the wall clock likewise from
    // anchor_wall, plus skew. A drift change re-anchors both, so neither jumps.
    int64_t anchor_virtual_us = 0;
    double anchor_local_us = 0;
    double anchor_wall_us = 0;
    double rate = 1.0;
    int64_t skew_us = 0;
  };

  void push(int64_t time_us, EventKind kind, NodeIndex node, uint64_t id);
  void dispatch(const Event& e);
  Node& node(NodeIndex i);
  const Node& node(NodeIndex i) const;
  Duration sample_latency(NodeIndex from, NodeIndex to);
  int64_t local_mono_us(NodeIndex i) const;
  int64_t local_wall_us(NodeIndex i) const;
  int64_t virtual_due(NodeIndex i, Duration local_delay) const;
  uint32_t alloc_message(NodeIndex from, NodeIndex to, uint32_t to_incarnation, std::span<const uint8_t> payload);
  void free_message(uint32_t slot);
  void notify_resets_for(NodeIndex dead);
  void teardown(NodeIndex i);  // the node loses its incarnation: memory, held events, connections

  Options options_;
  Xoshiro256 random_;
  int64_t now_us_ = 0;
  uint64_t seq_ = 0;
  uint64_t events_processed_ = 0;
  NodeIndex running_node_ = kNoNode;  // whose callback is on the stack
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::vector<Node> nodes_;
  std::map<std::string, NodeIndex> by_address_;
  std::vector<LinkConfig> links_;  // nodes x nodes, row = from (resized as nodes are added)
  std::vector<Message> messages_;
  std::vector<uint32_t> free_messages_;
  std::vector<Task> actions_;
  std::vector<uint64_t> free_actions_;
  std::vector<TraceRecord> trace_;
  std::vector<uint64_t> trace_hashes_;
  uint64_t trace_hash_ = 0;
  uint64_t trace_count_ = 0;
  NullLogSink null_sink_;
  std::unique_ptr<SimDatabases> databases_;
  std::map<std::string, std::string> shared_files_;
  FileStoreFaults file_faults_;
  std::map<NodeIndex, std::map<std::string, std::string>> private_files_;
  size_t releases_kept_ = 0;
};

}  // namespace chorus::sim
