// Mattermost's WebSocket protocol over one connection: the authentication challenge (or the session
// cookie or bearer header on the upgrade), hello, ping/pong, typing, and resuming a connection here or
// taking it over from another node (the hub does the rest).
#include "server/api/api_internal.h"

namespace chorus::api {

namespace {

class WebSocket final : public SocketSession, public app::ConnectionSink {
 public:
  WebSocket(Env& env, app::App& app, app::Hub& hub, SocketSink& sink, const Request& request, const ApiOptions& options)
      : env_(env), app_(app), hub_(hub), sink_(sink), options_(options) {
    if (auto it = request.query.find("connection_id"); it != request.query.end()) connection_id_ = it->second;
    if (auto it = request.query.find("sequence_number"); it != request.query.end()) {
      try {
        sequence_number_ = std::stoll(it->second);
      } catch (const std::exception&) {
        sequence_number_ = 0;
      }
    }
    const std::string token = request_token(request);
    if (!token.empty()) authenticate(token, -1);  // the bearer header: no challenge needed
  }
  ~WebSocket() override { *alive_ = false; }

  // ConnectionSink: what the hub sends.
  void send_text(std::string text) override {
    if (!closed_) sink_.send_text(std::move(text));
  }
  size_t queued_frames() const override { return closed_ ? 0 : sink_.queued_frames(); }
  void close(uint16_t code, std::string reason) override {
    closing_ = true;
    if (!closed_) sink_.close(code, std::move(reason));
  }

  // Messages are handled in the order they came, as Mattermost's server reads them: what arrives while the
  // authentication is being checked (the official client sends a ping right behind its challenge) waits for
  // it, rather than being refused as "not authenticated".
  void on_text(std::string_view text) override {
    if (authenticating_) {
      if (waiting_.size() >= kMaxWaiting) return close(1008, "too many messages before authentication");
      waiting_.emplace_back(text);
      return;
    }
    handle(text);
  }

  void on_closed() override {
    closed_ = true;
    if (!registered_.empty()) hub_.closed(registered_, this);
  }

 private:
  static constexpr size_t kMaxWaiting = 64;

  void handle(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      if (++malformed_ > 100) return close(1008, "too many malformed messages");
      env_.log().debug("websocket: ignored a malformed message ({} bytes)", text.size());
      return;
    }
    auto& o = v.as_object();
    const std::string action =
        o.contains("action") && o["action"].is_string() ? std::string(o["action"].as_string()) : "";
    const int64_t seq = o.contains("seq") && o["seq"].is_int64() ? o["seq"].as_int64() : 0;
    json::object data = o.contains("data") && o["data"].is_object() ? o["data"].as_object() : json::object{};
    auto str = [&](const char* key) {
      return data.contains(key) && data[key].is_string() ? std::string(data[key].as_string()) : std::string();
    };
    if (action == "authentication_challenge") {
      if (session_) return reply(seq, true);
      const std::string token = str("token");
      if (token.empty())
        return fail(seq, "api.web_socket_router.no_token.app_error", "No token in the authentication challenge.");
      return authenticate(token, seq);
    }
    if (!session_)
      return fail(seq, "api.web_socket_router.not_authenticated.app_error", "The connection is not authenticated yet.");
    if (action == "ping") {
      return send_reply(json::object{{"status", "OK"},
                                     {"seq_reply", seq},
                                     {"data", json::object{{"text", "pong"},
                                                           {"version", options_.server_version},
                                                           {"server_time", env_.wall_now().us / 1000},
                                                           {"node_id", options_.hostname}}}});
    }
    if (action == "user_typing") {
      app_.user_typing(*session_, str("channel_id"), str("parent_id"));
      return reply(seq, true);
    }
    fail(seq, "api.web_socket_router.bad_action.app_error",
         "Unknown action \"" + valid_utf8(action.substr(0, 64)) + "\".");
  }

  void authenticate(const std::string& token, int64_t seq) {
    if (authenticating_) return;
    authenticating_ = true;
    app_.authenticate(token, [this, alive = alive_, token, seq](Result<Session> r) {
      if (!*alive || closed_) return;
      authenticating_ = false;
      auto waiting = std::exchange(waiting_, {});
      if (!r.ok()) {
        if (seq >= 0) fail(seq, r.error.id, r.error.message);
        for (const auto& text : waiting) fail(seq_of(text), r.error.id, r.error.message);
        return close(1008, "authentication failed");
      }
      session_ = r.value;
      if (seq >= 0) reply(seq, true);
      register_connection();
      for (auto& text : waiting) {
        if (closed_ || !*alive) return;
        handle(text);
      }
    });
  }

  static int64_t seq_of(std::string_view text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return 0;
    const auto* seq = v.as_object().if_contains("seq");
    return seq && seq->is_int64() ? seq->as_int64() : 0;
  }

  // Resume here, or take the connection over from another node, or start afresh with a hello.
  void register_connection() {
    const std::string user = session_->user_id;
    auto open = [this, user] {
      auto alive = alive_;
      const auto opened = hub_.open(user, session_->token, this, connection_id_, sequence_number_);
      if (!*alive) return;  // the socket closed while opening (it may be gone)
      registered_ = opened.connection_id;
      if (opened.resumed)
        env_.log().debug("websocket: connection {} resumed at {} ({} events resent)", registered_, sequence_number_,
                         opened.replayed);
    };
    if (connection_id_.empty() || sequence_number_ <= 0 || hub_.holds(connection_id_)) return open();
    app_.find_connection(connection_id_, user, Duration{1'000'000}, [this, alive = alive_, open](bool) {
      if (!*alive || closed_) return;
      open();
    });
  }

  void reply(int64_t seq, bool ok) { send_reply(json::object{{"status", ok ? "OK" : "FAIL"}, {"seq_reply", seq}}); }
  void fail(int64_t seq, const std::string& id, const std::string& message) {
    send_reply(json::object{
        {"status", "FAIL"}, {"seq_reply", seq}, {"error", json::object{{"id", id}, {"message", message}}}});
  }
  void send_reply(const json::object& o) {
    if (closed_ || closing_) return;
    if (sink_.queued_frames() >= options_.websocket_queue_max) {
      env_.log().info("websocket: closed a connection that does not read its replies ({} frames queued)",
                      sink_.queued_frames());
      return close(1008, "send queue full");
    }
    send_text(json::serialize(o));
  }

  Env& env_;
  app::App& app_;
  app::Hub& hub_;
  SocketSink& sink_;
  const ApiOptions& options_;
  std::optional<Session> session_;
  std::string connection_id_;
  int64_t sequence_number_ = 0;
  std::vector<std::string> waiting_;
  std::string registered_;
  bool authenticating_ = false;
  bool closed_ = false;
  bool closing_ = false;  // a close was asked for: no more replies
  int malformed_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

std::unique_ptr<SocketSession> make_websocket(Env& env, app::App& app, app::Hub& hub, SocketSink& sink,
                                              const Request& request, const ApiOptions& options) {
  return std::make_unique<WebSocket>(env, app, hub, sink, request, options);
}

}  // namespace chorus::api
