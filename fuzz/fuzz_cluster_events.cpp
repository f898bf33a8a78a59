// The cluster events a node's app reads from its peers (server/cluster/wire.h, App::on_cluster_message):
// publish (Event::from_cluster, then the channel sequencer and the hub), update_status, the cache
// invalidations inv_user, inv_channel, inv_channel_members and clear_session_user; and the requests the app
// serves and makes: cluster_stats, and ws_queues - the WebSocket handover, whose reply a node imports
// (Hub::import_queue: the resume of a connection that moved from another node) and whose request a node
// answers by exporting a connection (Hub::export_queue).
//
// The messages come in as real data frames through the Messenger, wired as server/node/node.cpp wires it,
// on a node with three live peers and four WebSocket connections (users u1..u3; u1's second connection is
// inactive, so it can be handed over). The database is unreachable (FuzzEnv): a gap in a channel's posts
// cannot be filled, as when the master is away.
//
// Input: steps (fuzz_input.h). Step = [op][t][rest]; in `rest`, $C0..$C3 stand for the connection ids, and
// `rest` is split at NUL bytes into data, then property names and values.
//   op % 8 < 5: peer op % 3 sends the event of wire.h numbered t % (events + 1) (the last: the first part names
//               the event, the second is the data) with that data and props
//   op % 8 == 5: a client comes back with connection `data` of user u(t % 3 + 1): find_connection asks the
//                peers (ws_queues), then the hub opens it (resumed or not)
//   op % 8 == 6: peer t % 3 answers the latest request of ours (props _reply_to), with `data` (a queue to import)
//   op % 8 == 7: connection t % 4 stops reading (t & 4), reads again, or closes (t & 8)
// then t * 2 ms pass. At the end, 600 ms pass.
//
// Properties besides the sanitizers and the code's own assertions: every connection opened here receives
// its events numbered without gaps and in order (hello is 0), and nothing once closed; find_connection
// answers exactly once; a connection it says is here is held by the hub.
#include <boost/json.hpp>

#include "cluster_stack.h"
#include "fuzz_input.h"
#include "server/app/app.h"
#include "server/store/store.h"

using namespace chorus;
using namespace chorus::fuzz;
namespace json = boost::json;

namespace {

const std::string& peer_address(size_t i) { return cluster_addresses()[1 + i % 3]; }
constexpr uint64_t kGeneration = 1'700'000'000'000'000;

// The client side of a connection: frames it received, with the seq rule checked as they come.
class Sink final : public app::ConnectionSink {
 public:
  void send_text(std::string text) override {
    if (closed) property_failed("a frame on a closed connection");
    ++received;
    if (!check) return;  // a resumed connection replays what a peer handed over, as it was
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) property_failed("a frame that is not a JSON object", text);
    const auto* seq = v.as_object().if_contains("seq");
    if (!seq) return;  // a reply, not an event
    if (!seq->is_int64()) property_failed("an event whose seq is not an integer", text);
    const int64_t s = seq->as_int64();
    if (s != expected) property_failed("events out of sequence", text);
    expected = s + 1;
  }
  size_t queued_frames() const override { return reading ? 0 : 300; }
  void close(uint16_t, std::string) override { closed = true; }

  bool reading = true, closed = false;
  bool check = true;     // events numbered 0, 1, 2, ... (not for a connection taken over from a peer)
  int64_t expected = 0;  // the next seq
  uint64_t received = 0;
};

struct Run {
  CountingSink sink;
  FuzzEnv env{cluster_addresses()[0], 1, &sink};
  config::Config config;
  store::Store store{env, config.SqlSettings, store::StoreOptions{cluster_addresses()[0], "0.1.0"}};
  app::Hub hub{env, app::HubOptions{.server_version = "0.1.0", .hostname = cluster_addresses()[0]}};
  app::App app{env, store, config, hub, app::AppOptions{.bcrypt_cost = 4}};
  cluster::Membership membership{env, cluster_addresses()[0], kGeneration, cluster::MembershipOptions{},
                                 [this](const cluster::Member& m) { messenger.on_member_change(m); }};
  cluster::Messenger messenger{env, membership};
  std::vector<std::unique_ptr<Sink>> sinks;
  std::vector<std::string> conn_ids, conn_users;
  std::map<std::string, uint64_t> streams, seqs;  // per peer: our made-up stream and its next seq
  uint64_t requests_made = 0;
  int finds = 0, found_calls = 0;

  Run() {
    app.set_messenger(&messenger);
    messenger.subscribe("", [this](const std::string& from, const cluster::ClusterMessage& m) {
      if (m.kind() != cluster::ClusterEvent::config_changed) app.on_cluster_message(from, m);
    });
    messenger.on_new_stream([this](const std::string&, bool) { hub.reset_all(); });
    membership.start();
    for (size_t i = 0; i < 3; ++i)
      membership.handle_frame(peer_address(i), member_frame(cluster::FrameType::member_gossip, 0, "",
                                                            MemberRecord{peer_address(i), kGeneration + i + 1, 0, 0}));
    for (const char* user : {"u1", "u2", "u3", "u1"}) {
      sinks.push_back(std::make_unique<Sink>());
      conn_ids.push_back(hub.open(user, std::string("token-") + user, sinks.back().get(), "", 0).connection_id);
      conn_users.push_back(user);
    }
    hub.closed(conn_ids[3], sinks[3].get());  // inactive: a peer may ask for it
    sinks[3]->closed = true;
    env.run_ready();
  }

  // A reliable data frame from `peer`, numbered in a stream of our own making (one per peer).
  void deliver(const std::string& peer, const cluster::ClusterMessage& m) {
    uint64_t& stream = streams[peer];
    if (stream == 0) stream = (0xABCDEFull + streams.size()) << 24 | 1;
    ByteWriter w;
    w.u8(cluster::to_byte(cluster::FrameType::message_data));
    w.u64(stream);
    w.varint(++seqs[peer]);
    w.u8(1);
    w.str(m.event);
    w.str(m.data);
    w.varint(m.props.size());
    for (const auto& [k, v] : m.props) {
      w.str(k);
      w.str(v);
    }
    messenger.handle_frame(peer, w.bytes());
  }

  std::string substitute(std::string s) const {
    for (size_t i = 0; i < conn_ids.size(); ++i) {
      const std::string key = "$C" + std::to_string(i);
      for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + conn_ids[i].size()))
        s.replace(at, key.size(), conn_ids[i]);
    }
    return s;
  }

  // data, then name/value pairs, split at NUL.
  cluster::ClusterMessage message(std::string event, const std::string& rest) const {
    std::vector<std::string> parts;
    size_t pos = 0;
    while (true) {
      const size_t z = rest.find('\0', pos);
      parts.push_back(substitute(rest.substr(pos, z == std::string::npos ? std::string::npos : z - pos)));
      if (z == std::string::npos) break;
      pos = z + 1;
    }
    cluster::ClusterMessage m{std::move(event), parts[0], {}};
    for (size_t i = 1; i + 1 < parts.size(); i += 2) m.props[parts[i]] = parts[i + 1];
    return m;
  }
};

std::string step(uint8_t op, uint8_t t, std::string_view rest) {
  std::string s{static_cast<char>(op), static_cast<char>(t)};
  s += rest;
  return s;
}

void write_seeds(SeedWriter& w) {
  // Events as a peer's app publishes them (Event::to_cluster) and its other messages.
  app::Event posted;
  posted.event = "posted";
  posted.id = "ev1";
  posted.data = json::object{{"channel_display_name", "General"}, {"post", R"({"id":"p1","message":"hi"})"}};
  posted.broadcast.channel_id = "ch1";
  posted.recipients = {"u1", "u2"};
  posted.reliable = true;
  posted.channel_seq = 1;
  posted.create_at = 1'750'000'000'000;
  posted.post_id = "p1";
  app::Event second = posted;
  second.id = "ev2";
  second.channel_seq = 3;  // a gap: seq 2 is missing
  second.post_id = "p3";
  app::Event typing;
  typing.event = "typing";
  typing.id = "ev3";
  typing.data = json::object{{"parent_id", ""}, {"user_id", "u2"}};
  typing.broadcast.channel_id = "ch1";
  typing.broadcast.omit_users = {"u2"};
  typing.recipients = {"u1", "u2", "u3"};
  const std::string status = R"({"user_id":"u2","status":"away","manual":true,"last_activity_at":1750000000000})";
  // ws_queues: what Hub::export_queue writes for a connection that took 3 events.
  const std::string queue =
      R"({"id":"connXYZ","user_id":"u2","next_seq":3,"dead":[[1,"{\"event\":\"posted\",\"seq\":1}","ev7"],)"
      R"([2,"{\"event\":\"posted\",\"seq\":2}","ev8"]]})";
  using std::string_literals::operator""s;
  const auto kWsMissed = static_cast<uint8_t>(
      std::find_if(cluster::kClusterEvents.begin(), cluster::kClusterEvents.end(),
                   [](const auto& e) { return e.second == "ws_missed"; }) -
      cluster::kClusterEvents.begin());
  w.add("publish", InputBuilder()
                       .step(step(0, 1, posted.to_cluster()))
                       .step(step(1, 1, second.to_cluster()))
                       .step(step(2, 1, typing.to_cluster()))
                       .step(step(7, 200, ""))
                       .str());
  w.add("status-and-invalidations", InputBuilder()
                                        .step(step(0, 2, status))
                                        .step(step(1, 3, "u1"))
                                        .step(step(2, 4, "ch1"))
                                        .step(step(0, 5, "ch1"))
                                        .step(step(1, 6, "u1 token-u1"))
                                        .step(step(2, 6, "u3"))
                                        .str());
  w.add("requests-served", InputBuilder()
                               .step(step(0, 8, "\0_request\0"s "7"))
                               .step(step(1, 9, "$C3\0user_id\0u1\0_request\0"s "8"))
                               .step(step(2, 9, "$C0\0user_id\0u1\0_request\0"s "9"))
                               .step(step(0, 7, ""))
                               .step(step(1, static_cast<uint8_t>(cluster::kClusterEvents.size()), "newer_event\0k\0v"s))
                               .str());
  w.add("handover", InputBuilder()
                        .step(step(5, 1, "connXYZ"))
                        .step(step(6, 0, queue))
                        .step(step(6, 1, ""))
                        .step(step(6, 2, ""))
                        .step(step(7, 100, ""))
                        .step(step(0, 1, posted.to_cluster()))
                        .step(step(1, kWsMissed, "connXYZ\0user_id\0u2\0event_id\0ev9"s))
                        .step(step(2, kWsMissed, "$C0\0user_id\0u1\0event_id\0ev1"s))
                        .str());
  w.add("slow-and-closed", InputBuilder()
                               .step(step(7, 4, ""))
                               .step(step(0, 1, posted.to_cluster()))
                               .step(step(7, 9, ""))
                               .step(step(1, 1, second.to_cluster()))
                               .str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_cluster_events", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run run;
  for (auto s : split_steps({data, size}, 64)) {
    StepReader r(s);
    const uint8_t op = r.u8(), t = r.u8();
    const std::string rest = r.rest_string();
    switch (op % 8) {
      case 5: {
        const std::string user = "u" + std::to_string(t % 3 + 1);
        auto m = run.message("", rest);
        const std::string conn = m.data;
        run.finds++;
        ++run.requests_made;
        auto sink = std::make_shared<Sink>();
        run.app.find_connection(conn, user, Duration{500'000}, [&run, conn, user, sink](bool here) {
          ++run.found_calls;
          if (here && !run.hub.holds(conn)) property_failed("find_connection: here, yet not held");
          run.sinks.push_back(std::make_unique<Sink>());
          run.sinks.back()->check = false;
          auto opened = run.hub.open(user, "token-" + user, run.sinks.back().get(), conn, 1);
          run.conn_ids.push_back(opened.connection_id);
          run.conn_users.push_back(user);
        });
        break;
      }
      case 6: {
        auto m = run.message("ws_queues", rest);
        m.props["_reply_to"] = std::to_string(run.requests_made);
        run.deliver(peer_address(t), m);
        break;
      }
      case 7: {
        const size_t i = t % run.sinks.size();
        auto& sink = *run.sinks[i];
        if (t & 8) {
          if (!sink.closed) {
            sink.closed = true;
            run.hub.closed(run.conn_ids[i], &sink);
          }
        } else {
          sink.reading = !(t & 4);
        }
        break;
      }
      default: {
        const size_t n = cluster::kClusterEvents.size(), e = t % (n + 1);
        auto m = run.message(e < n ? std::string(cluster::kClusterEvents[e].second) : "", rest);
        if (e == n) {  // the first part names the event; the second is the data
          m.event = m.data;
          if (auto it = m.props.begin(); it != m.props.end()) m.data = it->first;
        }
        run.deliver(peer_address(op), m);
      }
    }
    run.env.run_for(Duration{t * 2'000}, 2'000);
  }
  run.env.run_for(Duration{600'000}, 20'000);  // past find_connection's timeout (500 ms)
  if (run.found_calls != run.finds) property_failed("find_connection did not answer exactly once");
  return 0;
}
