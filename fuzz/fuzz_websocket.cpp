// WebSocket connections through the API (server/api/api.cpp: Api::open_socket; api_websocket.cpp: its session): the
// upgrade's query (connection_id, sequence_number) and bearer header, the client's messages
// (authentication_challenge, ping, user_typing, anything else, malformed JSON, messages sent while the
// authentication is checked), and the resume: on this node from the hub's dead queue, and after a handover
// from another node - the queue that node exported, imported here (Hub::import_queue, what
// App::find_connection does with a ws_queues reply) - then events from posts and status changes, slow
// readers and disconnects. On one simulated node (sim_world.h).
//
// Input: steps (fuzz_input.h). Step = [op][t][rest], `rest` with the placeholders of sim_world.h and $W0..$W3
// (the connection ids of sockets 0..3, from their hello):
//   op % 8 == 0: a peer's exported queue arrives: import `rest` (a ws_queues reply)
//   op % 8 == 1: socket t % 4 opens with the query `rest` ("connection_id=..&sequence_number=.."); with t & 4
//                it carries alice's (t & 8: bob's) token in the Authorization header
//   op % 8 == 2: socket t % 4 sends the text `rest`
//   op % 8 == 3: socket t % 4's client goes away
//   op % 8 == 4: alice (t & 1: bob) posts `rest` in the public channel (REST)
//   op % 8 == 5: socket t % 4 stops reading (t & 4) or reads again
//   op % 8 == 6: alice's (t & 1: bob's) status becomes online, away, dnd or offline (t / 2 % 4)
//   op % 8 == 7: time passes
// then t ms pass.
//
// Properties besides the sanitizers and the code's own assertions: on every socket the events' seqs are
// consecutive (from wherever a resume starts); and unless a handed-over queue was imported (its frames are
// replayed as they came) or the input is not UTF-8, every frame is valid UTF-8 (a text frame must be: a
// browser drops the connection otherwise) and a JSON object.
#include "fuzz_input.h"
#include "sim_world.h"

using namespace chorus;
using namespace chorus::fuzz;
namespace json = boost::json;

namespace {

constexpr size_t kSockets = 4;

struct Socket {
  std::unique_ptr<sim::SimSocket> s;
  size_t checked = 0;
  int64_t next_seq = -1;  // -1: the first event may have any seq (a resume)
  std::string connection_id;
};

struct Run {
  SimWorld& world = SimWorld::get();
  std::array<Socket, kSockets> sockets;
  bool imported = false;
  bool utf8 = true;

  std::string substitute(std::string s) const {
    for (size_t i = 0; i < kSockets; ++i) {
      const std::string key = "$W" + std::to_string(i);
      for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + sockets[i].connection_id.size()))
        s.replace(at, key.size(), sockets[i].connection_id);
    }
    return world.substitute(std::move(s));
  }

  void open(size_t i, const std::string& query, const std::string& token) {
    auto& sock = sockets[i];
    if (sock.s) world.cluster().disconnect(*sock.s);
    sock = Socket{};
    sock.s = std::make_unique<sim::SimSocket>();
    sock.s->node = 0;
    sock.s->kernel = &world.kernel();
    sock.s->incarnation = world.kernel().incarnation(0);
    api::Request r;
    r.method = "GET";
    r.path = "/api/v4/websocket";
    r.remote = "192.0.2.7:40000";
    size_t pos = 0;
    while (pos < query.size()) {
      const size_t amp = std::min(query.find('&', pos), query.size());
      const std::string kv = query.substr(pos, amp - pos);
      const size_t eq = kv.find('=');
      if (!kv.empty()) r.query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
      pos = amp + 1;
    }
    if (!token.empty()) r.headers.emplace_back("authorization", "Bearer " + token);
    api::Response refusal;
    world.kernel().call_on_node(0, world.kernel().incarnation(0), world.kernel().now_us(), [this, i, r, refusal]() mutable {
      auto& s = *sockets[i].s;
      s.session = world.node().api().open_socket(r, s, refusal);
      if (!s.session) s.close_code = static_cast<uint16_t>(refusal.status);
    });
  }

  // What arrived since the last look: the seq rule, UTF-8 and JSON, and the connection id of a hello.
  void check() {
    for (auto& sock : sockets) {
      if (!sock.s) continue;
      auto& received = sock.s->received;
      for (; sock.checked < received.size(); ++sock.checked) {
        const std::string& f = received[sock.checked];
        const bool strict = !imported && utf8;
        if (strict && !valid_utf8(f)) property_failed("a WebSocket text frame that is not UTF-8", f);
        boost::system::error_code ec;
        auto v = json::parse(f, ec);
        if (ec || !v.is_object()) {
          if (strict) property_failed("a WebSocket frame that is not a JSON object", f);
          continue;
        }
        const auto& o = v.as_object();
        const auto* seq = o.if_contains("seq");
        const auto* event = o.if_contains("event");
        if (!seq || !event) continue;  // a reply
        if (!seq->is_int64()) {
          if (strict) property_failed("an event whose seq is not an integer", f);
          continue;
        }
        if (!imported && sock.next_seq >= 0 && seq->as_int64() != sock.next_seq)
          property_failed("events out of sequence on a socket", f);
        sock.next_seq = seq->as_int64() + 1;
        if (event->is_string() && event->as_string() == "hello") {
          const auto* d = o.if_contains("data");
          const auto* id = d && d->is_object() ? d->as_object().if_contains("connection_id") : nullptr;
          if (id && id->is_string()) sock.connection_id = std::string(id->as_string());
        }
      }
    }
  }

  void rest_call(const std::string& method, const std::string& path, const std::string& body, const std::string& token) {
    api::Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.remote = "192.0.2.7:40000";
    r.headers = {{"authorization", "Bearer " + token}, {"x-requested-with", "XMLHttpRequest"}};
    world.call(std::move(r), Duration{10'000'000});
  }

  ~Run() {
    for (auto& sock : sockets)
      if (sock.s) world.cluster().disconnect(*sock.s);
  }
};

std::string step(uint8_t op, uint8_t t, std::string_view rest) {
  std::string s{static_cast<char>(op), static_cast<char>(t)};
  s += rest;
  return s;
}

std::string msg(const std::string& action, int seq, const std::string& data) {
  return R"({"action":")" + action + R"(","seq":)" + std::to_string(seq) + R"(,"data":)" + data + "}";
}

void write_seeds(SeedWriter& w) {
  // A real handover: alice's socket takes events and goes away; the hub exports its queue as a node does
  // for a peer (ids made placeholders and a fixed connection id, so the seed does not depend on this run).
  auto& world = SimWorld::get();
  world.reset();
  std::string exported;
  {
    Run run;
    run.open(0, "", world.value("$A"));
    world.kernel().run_for(Duration{100'000});
    run.check();
    for (int i = 0; i < 3; ++i)
      run.rest_call("POST", "/api/v4/posts", R"({"channel_id":")" + world.value("$CH") + R"(","message":"m)" +
                                                 std::to_string(i) + R"("})",
                    world.value("$B"));
    world.kernel().run_for(Duration{200'000});
    const std::string conn = run.sockets[0].connection_id;
    world.cluster().disconnect(*run.sockets[0].s);
    run.sockets[0].s.reset();
    world.kernel().run_for(Duration{10'000});
    exported = world.node().hub().export_queue(conn, world.value("$UA")).value_or("");
    for (const auto& [k, v] : {std::pair<std::string, std::string>{conn, "importedconnection00000001"},
                               {world.value("$UA"), "$UA"}, {world.value("$CH"), "$CH"}, {world.value("$T"), "$T"},
                               {world.value("$UB"), "$UB"}})
      for (size_t at = exported.find(k); !k.empty() && at != std::string::npos; at = exported.find(k, at + v.size()))
        exported.replace(at, k.size(), v);
  }
  world.reset();

  const std::string typing = R"({"channel_id":"$CH","parent_id":""})";
  w.add("challenge-ping-typing", InputBuilder()
                                     .step(step(1, 1, ""))
                                     .step(step(1, 14, ""))  // bob's, by header
                                     .step(step(2, 1, msg("ping", 1, "{}")))  // before the challenge: refused
                                     .step(step(2, 1, msg("authentication_challenge", 2, R"({"token":"$A"})")))
                                     .step(step(2, 1, msg("ping", 3, "{}")))
                                     .step(step(2, 1, msg("user_typing", 4, typing)))
                                     .step(step(2, 1, msg("get_statuses", 5, "{}")))
                                     .step(step(7, 50, ""))
                                     .str());
  w.add("queued-behind-auth", InputBuilder()
                                  .step(step(1, 0, ""))
                                  .step(step(2, 0, msg("authentication_challenge", 1, R"({"token":"$B"})")))
                                  .step(step(2, 0, msg("ping", 2, "{}")))
                                  .step(step(2, 0, "not json"))
                                  .step(step(2, 0, msg("user_typing", 3, typing)))
                                  .step(step(7, 20, ""))
                                  .step(step(2, 0, msg("authentication_challenge", 4, R"({"token":"wrong"})")))
                                  .str());
  w.add("resume-same-node", InputBuilder()
                                .step(step(1, 4, ""))
                                .step(step(1, 13, ""))
                                .step(step(4, 1, "one"))
                                .step(step(3, 0, ""))
                                .step(step(4, 1, "two"))
                                .step(step(6, 5, ""))
                                .step(step(1, 6, "connection_id=$W0&sequence_number=1"))
                                .step(step(4, 0, "three"))
                                .step(step(7, 100, ""))
                                .str());
  w.add("handover-import", InputBuilder()
                               .step(step(0, 0, exported))
                               .step(step(1, 4, "connection_id=importedconnection00000001&sequence_number=1"))
                               .step(step(1, 13, ""))
                               .step(step(4, 1, "after the handover"))
                               .step(step(7, 100, ""))
                               .str());
  w.add("slow-reader", InputBuilder()
                           .step(step(1, 4, ""))
                           .step(step(5, 4, ""))
                           .step(step(4, 1, "a"))
                           .step(step(4, 1, "b"))
                           .step(step(2, 0, msg("user_typing", 1, typing)))
                           .step(step(5, 0, ""))
                           .step(step(1, 4, "connection_id=$W0&sequence_number=2"))
                           .step(step(7, 100, ""))
                           .str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_websocket", write_seeds);
  SimWorld::get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& world = SimWorld::get();
  world.reset();
  Run run;
  run.utf8 = valid_utf8(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::array<const char*, 4> statuses{"online", "away", "dnd", "offline"};
  for (auto s : split_steps({data, size}, 48)) {
    StepReader r(s);
    const uint8_t op = r.u8(), t = r.u8();
    const std::string rest = run.substitute(r.rest_string());
    auto& sock = run.sockets[t % kSockets];
    switch (op % 8) {
      case 0:
        world.kernel().call_on_node(0, world.kernel().incarnation(0), world.kernel().now_us(), [&run, rest] {
          if (run.world.node().hub().import_queue(rest)) run.imported = true;
        });
        break;
      case 1:
        run.open(t % kSockets, rest, t & 4 ? world.value(t & 8 ? "$B" : "$A") : "");
        break;
      case 2:
        if (sock.s) world.cluster().send(*sock.s, rest);
        break;
      case 3:
        if (sock.s) world.cluster().disconnect(*sock.s);
        break;
      case 4:
        run.rest_call("POST", "/api/v4/posts",
                      json::serialize(json::object{{"channel_id", world.value("$CH")}, {"message", rest}}),
                      world.value(t & 1 ? "$B" : "$A"));
        break;
      case 5:
        if (sock.s) sock.s->reading = !(t & 4);
        if (sock.s && sock.s->reading) sock.s->unread = 0;
        break;
      case 6:
        run.rest_call("PUT", "/api/v4/users/me/status",
                      json::serialize(json::object{{"status", statuses[t / 2 % 4]}}), world.value(t & 1 ? "$B" : "$A"));
        break;
      case 7:
        break;
    }
    world.kernel().run_for(Duration{t * 1'000});
    run.check();
  }
  world.kernel().run_for(Duration{200'000});
  run.check();
  return 0;
}
