#include "server/cluster/discovery.h"

#include <algorithm>

#include "server/core/ids.h"

namespace chorus::cluster {

namespace {
db::Statement stmt(std::string sql, std::vector<db::Value> params = {}) {
  return db::Statement{std::move(sql), std::move(params), -1};
}
std::string text(const db::Value& v) {
  return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : std::string();
}
int64_t number(const db::Value& v) { return std::holds_alternative<int64_t>(v) ? std::get<int64_t>(v) : 0; }
}  // namespace

Discovery::Discovery(Env& env, store::Store& store, DiscoveryOptions options,
                     std::function<void(const std::vector<DiscoveredNode>&)> on_peers)
    : env_(env),
      store_(store),
      options_(std::move(options)),
      on_peers_(std::move(on_peers)),
      id_(new_id(env.random())) {}

Discovery::~Discovery() {
  *alive_ = false;
  if (refresh_timer_) env_.cancel_timer(refresh_timer_);
  if (poll_timer_) env_.cancel_timer(poll_timer_);
}

void Discovery::start(std::function<void(db::Error)> done) {
  const int64_t now = env_.wall_now().millis();
  const int64_t stale_before = now - to_ms(options_.stale_after);
  auto alive = alive_;
  store_.write(
      {stmt("DELETE FROM ClusterDiscovery WHERE Type = $1 AND ClusterName = $2 AND LastPingAt < $3",
            {std::string(kDiscoveryType), options_.cluster_name, stale_before}),
       stmt("DELETE FROM ClusterDiscovery WHERE Type = $1 AND ClusterName = $2 AND Hostname = $3 AND GossipPort = $4",
            {std::string(kDiscoveryType), options_.cluster_name, options_.hostname, options_.gossip_port}),
       stmt("INSERT INTO ClusterDiscovery (Id, Type, ClusterName, Hostname, GossipPort, Port, CreateAt, LastPingAt)"
            " VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
            {id_, std::string(kDiscoveryType), options_.cluster_name, options_.hostname, options_.gossip_port, now})},
      true, [this, alive, done = std::move(done)](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) return done(db::Error{o.error.status, "cannot register in ClusterDiscovery: " + o.error.message});
        running_ = true;
        env_.log().info("discovery: registered as {} ({}:{}) in cluster \"{}\"", id_, options_.hostname,
                        options_.gossip_port, options_.cluster_name);
        refresh_timer_ = env_.set_timer(options_.refresh, [this] { refresh(); });
        poll();
        done(db::Error{});
      });
}

void Discovery::refresh() {
  refresh_timer_ = 0;
  if (!running_) return;
  auto alive = alive_;
  // Also re-inserts the row if something removed it (another node's stale cleanup after a long pause).
  const int64_t now = env_.wall_now().millis();
  store_.write({stmt("UPDATE ClusterDiscovery SET LastPingAt = $1 WHERE Id = $2", {now, id_})}, false,
               [this, alive, now](db::Outcome o) {
                 if (!*alive || !running_) return;
                 if (o.ok() && o.result().affected == 0) {
                   env_.log().warn("discovery: our ClusterDiscovery row was gone; registering again");
                   store_.write({stmt("INSERT INTO ClusterDiscovery (Id, Type, ClusterName, Hostname, GossipPort, "
                                      "Port, CreateAt, LastPingAt)"
                                      " VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
                                      {id_, std::string(kDiscoveryType), options_.cluster_name, options_.hostname,
                                       options_.gossip_port, now})},
                                false, [](db::Outcome) {});
                 } else if (!o.ok()) {
                   env_.log().warn("discovery: cannot refresh LastPingAt: {}", o.error.message);
                 }
                 refresh_timer_ = env_.set_timer(options_.refresh, [this] { refresh(); });
               });
}

void Discovery::set_reach(const std::string& self, const std::set<std::string>& group, bool cut_off) {
  reach_ = self;
  for (const auto& a : group)
    if (a != self) reach_ += "," + a;
  cut_off_ = cut_off;
}

namespace {
// "self,other,..." -> the heartbeat (empty address: a row without one).
Heartbeat heartbeat_of(const std::string& reach, int64_t beat, bool cut_off) {
  Heartbeat h;
  h.beat = beat;
  h.cut_off = cut_off;
  size_t from = 0;
  while (from < reach.size()) {
    const size_t comma = std::min(reach.find(',', from), reach.size());
    std::string a = reach.substr(from, comma - from);
    if (!a.empty()) {
      if (h.address.empty()) h.address = a;
      h.reach.insert(std::move(a));
    }
    from = comma + 1;
  }
  return h;
}
}  // namespace

void Discovery::poll() {
  poll_timer_ = 0;
  if (!running_) return;
  auto alive = alive_;
  const int64_t fresh_after = env_.wall_now().millis() - to_ms(options_.stale_after);
  std::vector<db::Statement> statements;
  if (!reach_.empty())
    statements.push_back(stmt("UPDATE ClusterDiscovery SET Beat = Beat + 1, Reach = $1, CutOff = $2 WHERE Id = $3",
                              {reach_, int64_t{cut_off_ ? 1 : 0}, id_}));
  statements.push_back(
      stmt("SELECT Id, Hostname, GossipPort, CreateAt, LastPingAt, Beat, Reach, CutOff FROM ClusterDiscovery"
           " WHERE Type = $1 AND ClusterName = $2 AND LastPingAt >= $3 AND Id <> $4 ORDER BY Hostname, GossipPort",
           {std::string(kDiscoveryType), options_.cluster_name, fresh_after, id_}));
  store_.write(std::move(statements), false, [this, alive](db::Outcome o) {
    if (!*alive || !running_) return;
    if (o.ok()) {
      std::vector<DiscoveredNode> found;
      std::vector<Heartbeat> beats;
      for (const auto& row : o.value.back().rows) {  // the SELECT (after the heartbeat, if any)
        found.push_back(DiscoveredNode{text(row[0]), text(row[1]), number(row[2]), number(row[3]), number(row[4])});
        auto h = heartbeat_of(text(row[6]), number(row[5]), number(row[7]) != 0);
        h.id = text(row[0]);
        if (!h.address.empty()) beats.push_back(std::move(h));
      }
      if (on_heartbeats_) on_heartbeats_(beats);
      auto same = [](const std::vector<DiscoveredNode>& a, const std::vector<DiscoveredNode>& b) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
          if (a[i].id != b[i].id) return false;
        return true;
      };
      if (!same(found, peers_)) {
        peers_ = std::move(found);
        if (on_peers_) on_peers_(peers_);
      } else {
        peers_ = std::move(found);  // fresher LastPingAt values
      }
    } else {
      env_.log().warn("discovery: cannot read ClusterDiscovery: {}", o.error.message);
    }
    poll_timer_ = env_.set_timer(options_.poll, [this] { poll(); });
  });
}

void Discovery::stop(std::function<void()> done) {
  running_ = false;
  if (refresh_timer_) env_.cancel_timer(refresh_timer_);
  if (poll_timer_) env_.cancel_timer(poll_timer_);
  refresh_timer_ = poll_timer_ = 0;
  auto alive = alive_;
  store_.write({stmt("DELETE FROM ClusterDiscovery WHERE Id = $1", {id_})}, false,
               [this, alive, done = std::move(done)](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) env_.log().warn("discovery: cannot remove our ClusterDiscovery row: {}", o.error.message);
                 done();
               });
}

}  // namespace chorus::cluster
