// Jobs as the API sees them: Mattermost's job records in the Jobs table (list, create, get, cancel) with
// Mattermost's statuses (server/jobs/job_status.h). The job server (server/jobs/job_server.h: the
// leader's scheduler and the workers on every node) runs what is created here.
#pragma once

#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "server/app/app.h"
#include "server/jobs/job_status.h"

namespace chorus::app {

struct Job {
  std::string id, type;
  int64_t priority = 0, create_at = 0, start_at = 0, last_activity_at = 0;
  std::string status{jobs::name(jobs::JobStatus::pending)};  // as stored (a newer version's status passes through)
  int64_t progress = 0;
  std::string data = "{}";  // a JSON object of strings, as Mattermost's StringMap
  boost::json::object to_json() const;
};
inline constexpr const char* kJobColumns =
    "Id, Type, Priority, CreateAt, StartAt, LastActivityAt, Status, Progress, Data";
Job job_from_row(const std::vector<db::Value>& row);

// The job types Chorus knows (Mattermost's names).
const std::vector<std::string>& job_types();

class Jobs {
 public:
  Jobs(Env& env, store::Store& store) : env_(env), store_(store) {}
  ~Jobs() { *alive_ = false; }
  // All calls need a system admin (checked here).
  void create(const Session& actor, const std::string& type, const boost::json::object& data, Callback<Job> done);
  void get(const Session& actor, const std::string& id, Callback<Job> done);
  void list(const Session& actor, const std::string& type, int page, int per_page, Callback<std::vector<Job>> done);
  // pending -> canceled; in_progress -> cancel_requested (the worker stops and marks it canceled);
  // anything finished: 400.
  void cancel(const Session& actor, const std::string& id, Callback<Job> done);

 private:
  Env& env_;
  store::Store& store_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace chorus::app
