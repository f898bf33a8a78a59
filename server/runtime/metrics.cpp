#include "server/runtime/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sstream>
#include <stdexcept>

#include "server/node/node.h"
#include "server/runtime/http_server.h"
#include "server/runtime/tcp_transport.h"

namespace chorus::runtime {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type) {
  return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add(MetricFamily& f, double value, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

// The process as Go's client reports it: process_cpu_seconds_total and the rest, from /proc.
void process_metrics(std::vector<MetricFamily>& out) {
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may hold spaces: fields start after it
  if (close == std::string::npos) return;
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; fields >> x;) f.push_back(x);
  // After the name: f[0] is field 3 (state); utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
  auto field = [&](int n) -> double {
    const size_t i = static_cast<size_t>(n - 3);
    return i < f.size() ? std::strtod(f[i].c_str(), nullptr) : 0;
  };
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  double boot = 0;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);)
    if (line.rfind("btime ", 0) == 0) boot = std::strtod(line.c_str() + 6, nullptr);
  size_t fds = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++fds;
    ::closedir(d);
    if (fds > 0) --fds;  // the directory's own descriptor
  }
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);

  auto cpu = family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::Counter);
  add(cpu, (field(14) + field(15)) / ticks);
  auto rss = family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge);
  add(rss, field(24) * page);
  auto vsz = family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge);
  add(vsz, field(23));
  auto open = family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
  add(open, static_cast<double>(fds));
  auto max = family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge);
  add(max, static_cast<double>(limit.rlim_cur));
  auto threads = family("process_threads", "Number of OS threads in the process.", MetricType::Gauge);
  add(threads, field(20));
  auto start = family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                      MetricType::Gauge);
  add(start, boot + field(22) / ticks);
  for (auto* fam : {&cpu, &rss, &vsz, &open, &max, &threads, &start}) out.push_back(std::move(*fam));
}

// Everything the node knows of itself. On the node's loop only.
void node_metrics(const MetricsSources& src, std::vector<MetricFamily>& out) {
  node::Node& n = *src.node;

  auto build = family("chorus_build_info", "The version this node runs (always 1).", MetricType::Gauge);
  add(build, 1, {{"version", src.version}});
  out.push_back(std::move(build));

  // HTTP: counters by method, route and status; the latency histogram by method and route.
  auto requests = family("chorus_http_requests_total", "API requests answered, by method, route and status.",
                         MetricType::Counter);
  auto latency = family("chorus_http_request_duration_seconds",
                        "Time from a request's arrival to its answer, by method and route.", MetricType::Histogram);
  struct Hist {
    uint64_t count = 0;
    double sum = 0;
    std::array<uint64_t, api::kLatencyBuckets.size()> buckets{};
  };
  std::map<std::pair<std::string, std::string>, Hist> hists;
  for (const auto& [key, stat] : n.api().request_stats()) {
    add(requests, static_cast<double>(stat.count),
        {{"method", key.method}, {"route", key.route}, {"status", std::to_string(key.status)}});
    Hist& h = hists[{key.method, key.route}];
    h.count += stat.count;
    h.sum += stat.seconds;
    for (size_t i = 0; i < stat.buckets.size(); ++i) h.buckets[i] += stat.buckets[i];
  }
  for (const auto& [key, h] : hists) {
    ClientMetric m;
    m.label = {{"method", key.first}, {"route", key.second}};
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = h.sum;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      m.histogram.bucket.push_back({cumulative, api::kLatencyBuckets[i]});
    }
    m.histogram.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
    latency.metric.push_back(std::move(m));
  }
  out.push_back(std::move(requests));
  out.push_back(std::move(latency));
  if (src.http) {
    auto conns = family("chorus_http_connections_open", "HTTP and WebSocket connections open.", MetricType::Gauge);
    add(conns, static_cast<double>(src.http->stats().connections_open));
    out.push_back(std::move(conns));
  }

  // WebSockets.
  const auto hub = n.hub().stats();
  auto ws = family("chorus_websocket_connections",
                   "WebSocket connections: active, or inactive (gone, kept for a resume).", MetricType::Gauge);
  add(ws, static_cast<double>(hub.active), {{"state", "active"}});
  add(ws, static_cast<double>(hub.inactive), {{"state", "inactive"}});
  auto sent = family("chorus_websocket_events_sent_total", "Events sent to WebSocket clients.", MetricType::Counter);
  add(sent, static_cast<double>(hub.sent));
  auto dropped = family("chorus_websocket_events_dropped_total",
                        "Events not sent: the client's queue was full (it re-syncs).", MetricType::Counter);
  add(dropped, static_cast<double>(hub.dropped_slow));
  auto resets = family("chorus_websocket_resets_total",
                       "Connections reset so their clients re-sync (late or missed events).", MetricType::Counter);
  add(resets, static_cast<double>(hub.late_user_events + hub.missed_after_export + hub.late_post_changes));
  for (auto* f : {&ws, &sent, &dropped, &resets}) out.push_back(std::move(*f));

  // The cluster.
  if (n.cluster_enabled()) {
    std::map<std::string, int> states{{"alive", 0}, {"suspect", 0}, {"dead", 0}};
    for (const auto& [addr, m] : n.membership().members()) ++states[cluster::to_string(m.state)];
    auto members = family("chorus_cluster_members", "Other members by the state this node holds them in.",
                          MetricType::Gauge);
    for (const auto& [state, count] : states) add(members, count, {{"state", state}});
    int red = 0;
    for (const auto& row : n.cluster_status()) red += row.green ? 0 : 1;
    auto reds = family("chorus_cluster_nodes_red", "Nodes listed red in this node's cluster status (itself included).",
                       MetricType::Gauge);
    add(reds, red);
    auto leader = family("chorus_cluster_leader", "1 while this node is the leader (it runs the job scheduler).",
                         MetricType::Gauge);
    add(leader, n.membership().leader() == n.membership().self() ? 1 : 0);
    const auto& ms = n.messenger().stats();
    auto msent = family("chorus_cluster_messages_sent_total", "Cluster messages sent.", MetricType::Counter);
    add(msent, static_cast<double>(ms.sent));
    auto retried = family("chorus_cluster_messages_retried_total",
                          "Reliable cluster messages sent again (not acknowledged in time).", MetricType::Counter);
    add(retried, static_cast<double>(ms.retransmitted));
    auto delivered = family("chorus_cluster_messages_delivered_total", "Cluster messages received and delivered.",
                            MetricType::Counter);
    add(delivered, static_cast<double>(ms.delivered));
    auto refused = family("chorus_cluster_messages_refused_total",
                          "Reliable cluster messages refused: the peer's queue was full.", MetricType::Counter);
    add(refused, static_cast<double>(ms.refused_full));
    auto depth = family("chorus_cluster_message_queue_depth",
                        "Reliable cluster messages waiting for a peer's acknowledgement.", MetricType::Gauge);
    for (const auto& [addr, m] : n.membership().members())
      add(depth, static_cast<double>(n.messenger().queued(addr)), {{"peer", addr}});
    for (auto* f : {&members, &reds, &leader, &msent, &retried, &delivered, &refused, &depth})
      out.push_back(std::move(*f));
  }
  if (src.transport) {
    const auto ts = src.transport->stats();
    auto frames = family("chorus_gossip_frames_total", "Frames on the gossip port, by direction.", MetricType::Counter);
    add(frames, static_cast<double>(ts.frames_sent), {{"direction", "sent"}});
    add(frames, static_cast<double>(ts.frames_received), {{"direction", "received"}});
    add(frames, static_cast<double>(ts.frames_dropped), {{"direction", "dropped"}});
    auto refused = family("chorus_gossip_connections_refused_total",
                          "Inbound gossip connections closed for bad input.", MetricType::Counter);
    add(refused, static_cast<double>(ts.connections_refused));
    auto qf = family("chorus_gossip_send_queue_frames", "Frames waiting in a peer's send queue.", MetricType::Gauge);
    auto qb = family("chorus_gossip_send_queue_bytes", "Bytes waiting in a peer's send queue.", MetricType::Gauge);
    auto up = family("chorus_gossip_peer_up", "1 while the connection to the peer is up.", MetricType::Gauge);
    for (const auto& [peer, d] : src.transport->queue_depths()) {
      add(qf, static_cast<double>(d.frames), {{"peer", peer}});
      add(qb, static_cast<double>(d.bytes), {{"peer", peer}});
      add(up, d.up ? 1 : 0, {{"peer", peer}});
    }
    for (auto* f : {&frames, &refused, &qf, &qb, &up}) out.push_back(std::move(*f));
  }

  // The database servers.
  auto conns = family("chorus_db_pool_connections", "Connections of a server's pool, by state.", MetricType::Gauge);
  auto waiting = family("chorus_db_pool_waiting", "Requests waiting for a connection.", MetricType::Gauge);
  auto waits = family("chorus_db_pool_waits_total", "Requests that had to wait for a connection.", MetricType::Counter);
  auto timeouts = family("chorus_db_pool_timeouts_total",
                         "Requests refused: no connection within the wait, or the queue full.", MetricType::Counter);
  auto dbreq = family("chorus_db_pool_requests_total", "Requests run on a server's pool.", MetricType::Counter);
  auto connfail = family("chorus_db_connect_failures_total", "Connections to a server that could not be opened.",
                         MetricType::Counter);
  auto online = family("chorus_db_replica_online", "1 while the server is online (the master always counts).",
                       MetricType::Gauge);
  for (const auto& s : n.database_status()) {
    const Labels l{{"server", s.name}, {"role", s.role}};
    auto with = [&](const char* state) {
      Labels x = l;
      x.push_back({"state", state});
      return x;
    };
    add(conns, static_cast<double>(s.open), with("open"));
    add(conns, static_cast<double>(s.idle), with("idle"));
    add(conns, static_cast<double>(s.busy), with("busy"));
    add(waiting, static_cast<double>(s.waiting), l);
    add(waits, static_cast<double>(s.waited), l);
    add(timeouts, static_cast<double>(s.rejected), l);
    add(dbreq, static_cast<double>(s.requests), l);
    add(connfail, static_cast<double>(s.connect_failures), l);
    add(online, s.online ? 1 : 0, l);
  }
  for (auto* f : {&conns, &waiting, &waits, &timeouts, &dbreq, &connfail, &online}) out.push_back(std::move(*f));

  // Jobs this node ran, and posts it created.
  auto jobs = family("chorus_jobs_total", "Jobs this node ran to an end, by type and status.", MetricType::Counter);
  for (const auto& [key, count] : n.job_server().stats().ended)
    add(jobs, static_cast<double>(count), {{"type", key.first}, {"status", key.second}});
  out.push_back(std::move(jobs));
  auto posts = family("chorus_posts_created_total", "Posts created through this node.", MetricType::Counter);
  add(posts, static_cast<double>(n.app().stats().posts_created));
  out.push_back(std::move(posts));
}

// ":8067" -> "0.0.0.0:8067"; "[::1]:8067" as it is (civetweb's form).
std::string civet_address(const std::string& listen) {
  if (!listen.empty() && listen.front() == ':') return "0.0.0.0" + listen;
  return listen;
}

}  // namespace

struct MetricsServer::Impl : prometheus::Collectable, std::enable_shared_from_this<MetricsServer::Impl> {
  Impl(boost::asio::io_context& io, MetricsSources sources, Duration timeout)
      : io(io), sources(std::move(sources)), timeout(timeout) {}

  // On an exposer thread: the node's figures come from its loop.
  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    auto promise = std::make_shared<std::promise<std::vector<MetricFamily>>>();
    auto future = promise->get_future();
    auto self = shared_from_this();
    boost::asio::post(io, [self, promise] {
      std::vector<MetricFamily> families;
      if (!self->closed) node_metrics(self->sources, families);
      promise->set_value(std::move(families));
    });
    if (future.wait_for(std::chrono::microseconds(timeout.count())) == std::future_status::ready) {
      out = future.get();
    } else {
      ++timeouts;
    }
    auto t = family("chorus_scrape_timeouts_total",
                    "Scrapes the node's loop did not answer in time (they got the process metrics alone).",
                    MetricType::Counter);
    add(t, static_cast<double>(timeouts.load()));
    out.push_back(std::move(t));
    process_metrics(out);
    return out;
  }

  boost::asio::io_context& io;
  MetricsSources sources;
  Duration timeout;
  mutable std::atomic<uint64_t> timeouts{0};
  std::atomic<bool> closed{false};  // set on the loop when the server goes: a late collection reads nothing
  std::unique_ptr<prometheus::Exposer> exposer;
};

MetricsServer::MetricsServer(boost::asio::io_context& io, const std::string& listen_address, MetricsSources sources,
                             Duration loop_timeout)
    : impl_(std::make_shared<Impl>(io, std::move(sources), loop_timeout)) {
  try {
    impl_->exposer = std::make_unique<prometheus::Exposer>(civet_address(listen_address), 2);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + listen_address + " (MetricsSettings.ListenAddress): " +
                             e.what());
  }
  impl_->exposer->RegisterCollectable(impl_);
}

MetricsServer::~MetricsServer() {
  impl_->closed = true;
  impl_->exposer.reset();  // joins its threads; a scrape waiting on the loop times out first
}

uint16_t MetricsServer::port() const {
  const auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

std::string MetricsServer::snapshot_text() const {
  std::vector<MetricFamily> families;
  if (!impl_->closed) node_metrics(impl_->sources, families);
  process_metrics(families);
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace chorus::runtime
