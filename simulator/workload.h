// The workload of a scenario run: the world it runs in (a team, channels, users with their memberships
// and logins, set up before time 0) and what the clients do from 1.5 s until workload_until - posts,
// typing and searches, each a Poisson process at the scenario's rate, by random clients.
#pragma once

#include <functional>

#include "simulator/run_context.h"
#include "simulator/sim_client.h"

namespace chorus::sim {

class Workload {
 public:
  Workload(RunContext& ctx, SimClients& clients) : ctx_(ctx), clients_(clients) {}

  // The team, channels and users, through admin_node directly (not the load balancer); each user logs in
  // on one of the initial nodes in turn. False (with a "setup" violation) when a step fails.
  bool setup(int admin_node);
  // Posts, typing and searches from 1.5 s on.
  void start();

 private:
  void next_post(Duration at);
  void post(Client& cl, int channel, const std::string& root = "", const std::string& file_id = "",
            const std::string& file_data = "");
  // A random client uploads a small file to one of its channels, then posts it.
  void post_file();
  // fn at a Poisson rate (per second) from `at` until workload_until.
  void every(Duration at, double rate, std::function<void()> fn);
  void reply();
  void react();
  void edit_or_delete(bool remove);
  // A recent acknowledged post in one of cl's channels that cl does not know deleted (own: cl's own;
  // roots: not a reply); nullptr when a few tries find none.
  const Acked* pick_post(const Client& cl, bool own, bool roots);
  // A change the client got a 200 for: recorded with the post's update_at in the master now.
  void change_acked(int client, const std::string& post_id, int channel, std::string what);
  void next_search(Duration at);
  void next_typing(Duration at);
  void next_view(Duration at);
  void next_preference(Duration at);

  RunContext& ctx_;
  SimClients& clients_;
};

}  // namespace chorus::sim
