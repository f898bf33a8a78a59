#include "simulator/membership_cluster.h"

#include <fmt/format.h>

#include <algorithm>

namespace chorus::sim {

MemberNode::MemberNode(Env& env, std::vector<std::string> seeds, cluster::MembershipOptions options,
                       cluster::NodeInfo info, int* deaths)
    : env_(env), seeds_(std::move(seeds)), options_(options), info_(std::move(info)), deaths_(deaths) {}

void MemberNode::start() {
  env_.transport().start(*this);
  membership = std::make_unique<cluster::Membership>(env_, env_.node_name(), static_cast<uint64_t>(env_.wall_now().us),
                                                     options_, [this](const cluster::Member& m) {
                                                       if (m.state == cluster::MemberState::dead && deaths_)
                                                         ++*deaths_;  // (a member first heard of as dead counts too)
                                                       if (status) status->on_member_change(m);
                                                       if (messenger) messenger->on_member_change(m);
                                                     });
  info_.address = env_.node_name();
  status = std::make_unique<cluster::ClusterStatus>(env_, info_, *membership);
  messenger = std::make_unique<cluster::Messenger>(env_, *membership);
  messenger->subscribe(
      "", [this](const std::string& from, const cluster::ClusterMessage& m) { received.emplace_back(from, m.data); });
  for (const auto& a : seeds_) membership->add_seed(a);
  membership->start();
  status->start();
}

void MemberNode::stop(Task done) {
  messenger.reset();
  status->stop();
  membership->leave();
  env_.transport().stop();
  done();
}

cluster::MemberState MemberNode::state_of(const std::string& address) const {
  auto it = membership->members().find(address);
  return it == membership->members().end() ? cluster::MemberState::dead : it->second.state;
}

MemberCluster::MemberCluster(uint64_t seed, int nodes, double loss, cluster::MembershipOptions options,
                             std::function<cluster::NodeInfo(int)> info) {
  Kernel::Options o;
  o.seed = seed;
  o.keep_trace = false;
  o.default_link.loss = loss;
  k_ = std::make_unique<Kernel>(o);
  for (int i = 0; i < nodes; ++i) addresses_.push_back(fmt::format("10.0.{}.{}:8074", i / 200, i % 200 + 1));
  for (int i = 0; i < nodes; ++i)
    infos_.push_back(info ? info(i) : cluster::NodeInfo{"", "0.1.0", "2 (release 0.1)", "same-config", "host"});
  for (int i = 0; i < nodes; ++i) {
    k_->add_node(addresses_[i], [this, options, i](Env& env) {
      return std::make_unique<MemberNode>(env, addresses_, options, infos_[static_cast<size_t>(i)], &deaths_);
    });
  }
  for (int i = 0; i < nodes; ++i) k_->start(static_cast<NodeIndex>(i));
}

bool MemberCluster::all_see(int target, cluster::MemberState s) {
  for (int i = 0; i < size(); ++i)
    if (i != target && live(i) && node(i)->state_of(address(target)) != s) return false;
  return true;
}

bool MemberCluster::all_alive() {
  for (int t = 0; t < size(); ++t)
    if (live(t) && !all_see(t, cluster::MemberState::alive)) return false;
  return true;
}

bool MemberCluster::one_leader(const std::vector<int>& group) {
  std::string lowest;
  for (int i : group)
    if (live(i) && (lowest.empty() || address(i) < lowest)) lowest = address(i);
  for (int i : group)
    if (live(i) && node(i)->membership->leader() != lowest) return false;
  return true;
}

}  // namespace chorus::sim
