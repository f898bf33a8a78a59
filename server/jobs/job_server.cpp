#include "server/jobs/job_server.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "server/core/ids.h"
#include "server/jobs/job_status.h"
#include "server/store/store.h"

namespace chorus::jobs {

namespace json = boost::json;
using db::Statement;

std::string schedule_key(const std::string& type, int64_t period) { return fmt::format("{}:{:012d}", type, period); }

std::vector<Recurring> recurring_from_config(const config::Config& config) {
  std::vector<Recurring> out;
  const auto& dr = config.DataRetentionSettings;
  if (dr.EnableMessageDeletion) {
    const int hh = std::stoi(dr.DeletionJobStartTime.substr(0, 2)),
              mm = std::stoi(dr.DeletionJobStartTime.substr(3, 2));
    out.push_back(
        Recurring{"data_retention", Duration{86'400'000'000}, Duration{(hh * 3600LL + mm * 60LL) * 1'000'000}, true});
  }
  out.push_back(Recurring{"search_indexing", Duration{86'400'000'000}, Duration{3LL * 3600 * 1'000'000}, true});
  return out;
}

namespace {

std::map<std::string, std::string> parse_data(const std::string& text) {
  std::map<std::string, std::string> out;
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return out;
  for (const auto& [k, val] : v.as_object())
    if (val.is_string()) out[std::string(k)] = std::string(val.as_string());
  return out;
}

std::string data_text(const std::map<std::string, std::string>& data) {
  json::object o;
  for (const auto& [k, v] : data) o[k] = v;
  return json::serialize(o);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// One claimed run.

class JobServer::Run final : public JobRun, public std::enable_shared_from_this<JobServer::Run> {
 public:
  Run(JobServer& server, std::string id, std::string type, std::map<std::string, std::string> data, int64_t attempt)
      : server_(server), alive_(server.alive_) {
    attempt_ = attempt;
    id_ = std::move(id);
    type_ = std::move(type);
    data_ = std::move(data);
  }

  bool active() const override { return *alive_ && !ended_; }
  Env& env() override { return server_.env_; }
  store::Store& store() override { return server_.store_; }
  const config::Config& config() const override { return *server_.config_; }

  // The fence: this attempt still holds the job and it is still running.
  Statement fence(int progress) const {
    const std::string held = server_.options_.unfenced ? "$4 = $4 AND $5 = $5"  // the injected bug
                                                       : "WorkerId = $4 AND Attempts = $5 AND Status = " +
                                                             jobs::sql(jobs::JobStatus::in_progress);
    return Statement{
        "UPDATE Jobs SET LastActivityAt = $1, Progress = $2 WHERE Id = $3 AND " + held,
        {server_.env_.wall_now().millis(), static_cast<int64_t>(progress), id_, server_.options_.worker_id, attempt_},
        1};
  }

  void step(std::vector<Statement> statements, int progress, std::function<void(bool, db::Outcome)> done) override {
    if (!*alive_ || ended_) return;
    progress_ = std::clamp(progress, 0, 99);
    statements.insert(statements.begin(), fence(progress_));
    ++stepping_;
    auto self = shared_from_this();
    server_.store_.write(std::move(statements), true, [self, done](db::Outcome o) {
      --self->stepping_;
      if (!*self->alive_ || self->ended_) return;
      if (o.ok()) return done(true, std::move(o));
      if (o.error.status == db::Status::conflict) return self->lost_or_canceled();
      if (o.error.status == db::Status::unavailable || o.error.status == db::Status::timeout ||
          o.error.status == db::Status::overloaded) {
        // A database outage: stop here and leave the job in progress; the rule hands it on once the
        // database answers again (a retry, not a failure).
        self->server_.env_.log().warn("jobs: {} {} stops at a database error ({}); the rule will retry it", self->type_,
                                      self->id_, o.error.message);
        self->ended_ = true;
        return self->release();
      }
      self->finish(false, {{"error", std::string(db::to_string(o.error.status)) + ": " + o.error.message}});
    });
  }

  // A fence-only step at least every heartbeat, so a job whose work pauses still shows it is alive.
  void beat() {
    if (!active()) return;
    auto self = shared_from_this();
    heartbeat_timer_ = server_.env_.set_timer(server_.options_.heartbeat, [self] {
      self->heartbeat_timer_ = 0;
      if (!self->active()) return;
      if (self->stepping_ == 0) self->step({}, self->progress_, [](bool, db::Outcome) {});
      self->beat();
    });
  }

  // A clean stop of this node: the job goes back to the queue, and this attempt does not count.
  void hand_back() {
    if (!active()) return;
    ended_ = true;
    if (heartbeat_timer_) server_.env_.cancel_timer(heartbeat_timer_);
    server_.store_.write({Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::pending) +
                                        ", WorkerId = '', Attempts = Attempts - 1, LastActivityAt = $1 WHERE Id = $2"
                                        " AND WorkerId = $3 AND Attempts = $4 AND Status = " +
                                        jobs::sql(jobs::JobStatus::in_progress),
                                    {server_.env_.wall_now().millis(), id_, server_.options_.worker_id, attempt_}}},
                         false, [](db::Outcome) {});
    server_.env_.log().info("jobs: {} {} handed back to the queue (this node stops)", type_, id_);
  }

  void finish(bool success, std::map<std::string, std::string> result) override {
    if (!*alive_ || ended_) return;
    ended_ = true;
    auto data = data_;
    for (auto& [k, v] : result) data[k] = v;
    const std::string status(name(success ? JobStatus::success : JobStatus::error));
    auto self = shared_from_this();
    server_.store_.write(
        {Statement{
            "UPDATE Jobs SET Status = $1, Progress = $2, LastActivityAt = $3, Data = $4 WHERE Id = $5 AND WorkerId = $6"
            " AND Attempts = $7 AND Status = " +
                jobs::sql(jobs::JobStatus::in_progress),
            {status, int64_t{success ? 100 : 0}, server_.env_.wall_now().millis(), data_text(data), id_,
             server_.options_.worker_id, attempt_},
            1}},
        true, [self, success](db::Outcome o) {
          if (!*self->alive_) return;
          if (o.ok()) {
            ++(success ? self->server_.stats_.succeeded : self->server_.stats_.failed);
            ++self->server_.stats_.ended[{self->type_, success ? "success" : "error"}];
            self->server_.env_.log().info("jobs: {} {} ({}) {}", self->type_, self->id_, self->attempt_,
                                          success ? "succeeded" : "failed");
          } else {
            self->ended_ = false;
            return self->lost_or_canceled();
          }
          self->release();
        });
  }

 private:
  // The fence failed: either a cancel was requested (we stop and mark it), or the claim is gone.
  void lost_or_canceled() {
    ended_ = true;
    auto self = shared_from_this();
    server_.store_.write({Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::canceled) +
                                        ", LastActivityAt = $1 WHERE Id = $2 AND WorkerId = $3 AND Attempts = $4"
                                        " AND Status = " +
                                        jobs::sql(jobs::JobStatus::cancel_requested),
                                    {server_.env_.wall_now().millis(), id_, server_.options_.worker_id, attempt_}}},
                         false, [self](db::Outcome o) {
                           if (!*self->alive_) return;
                           if (o.ok() && o.result().affected == 1) {
                             ++self->server_.stats_.canceled;
                             ++self->server_.stats_.ended[{self->type_, "canceled"}];
                             self->server_.env_.log().info("jobs: {} {} canceled", self->type_, self->id_);
                           } else {
                             ++self->server_.stats_.fenced;
                             self->server_.env_.log().warn("jobs: {} {} attempt {} lost its claim; stopping",
                                                           self->type_, self->id_, self->attempt_);
                           }
                           self->release();
                         });
  }

  void release() {
    if (heartbeat_timer_) server_.env_.cancel_timer(heartbeat_timer_);
    heartbeat_timer_ = 0;
    server_.busy_ = false;
    if (server_.current_.get() == this) server_.current_.reset();  // (the caller holds a reference)
    server_.poll();
  }

  JobServer& server_;
  std::shared_ptr<bool> alive_;
  bool ended_ = false;
  int stepping_ = 0;
  int progress_ = 0;
  TimerId heartbeat_timer_ = 0;
};

// ---------------------------------------------------------------------------------------------------

JobServer::JobServer(Env& env, store::Store& store, const config::Config& config, JobServerOptions options)
    : env_(env), store_(store), config_(&config), options_(std::move(options)) {}

JobServer::~JobServer() {
  *alive_ = false;
  stop();
}

void JobServer::add_kind(const std::string& type, JobKind kind) { kinds_[type] = std::move(kind); }

void JobServer::set_leader(bool leader) {
  if (leader && !leader_) env_.log().info("jobs: this node is the leader: it runs the scheduler");
  if (leader != leader_) watched_.clear();  // a new leader watches afresh: stuck_after from now
  leader_ = leader;
}

void JobServer::start() {
  if (running_) return;
  running_ = true;
  tick_timer_ = env_.set_timer(options_.scheduler_tick, [this] { tick(); });
  // Workers start after a random part of the poll interval, so nodes do not poll in step.
  const auto first =
      Duration{static_cast<int64_t>(env_.random().uniform(static_cast<uint64_t>(options_.poll.count()) + 1))};
  poll_timer_ = env_.set_timer(first, [this] {
    poll_timer_ = 0;
    poll();
  });
}

void JobServer::stop() {
  if (running_ && current_) current_->hand_back();
  running_ = false;
  if (tick_timer_) env_.cancel_timer(tick_timer_);
  if (poll_timer_) env_.cancel_timer(poll_timer_);
  tick_timer_ = poll_timer_ = 0;
}

void JobServer::tick() {
  tick_timer_ = env_.set_timer(options_.scheduler_tick, [this] { tick(); });
  if (!leader_ || !config_->JobSettings.RunScheduler || ticks_in_flight_ > 0) return;
  const auto recurring = options_.recurring.empty() ? recurring_from_config(*config_) : options_.recurring;
  for (const auto& r : recurring) schedule(r);
  recover();
}

void JobServer::schedule(const Recurring& r) {
  const int64_t now_us = env_.wall_now().us;
  const int64_t current = (now_us - r.offset.count()) / r.period.count();
  ++ticks_in_flight_;
  store_.write(
      {Statement{"SELECT MAX(ScheduleKey) FROM Jobs WHERE Type = $1 AND ScheduleKey LIKE $2", {r.type, r.type + ":%"}}},
      false, [this, alive = alive_, r, current](db::Outcome o) {
        if (!*alive) return;
        --ticks_in_flight_;
        if (!o.ok()) return;
        int64_t from = current;
        const auto& row = o.result().rows.at(0);
        if (const auto* last = std::get_if<std::string>(&row.at(0))) {
          try {
            from = std::stoll(last->substr(last->rfind(':') + 1)) + 1;
          } catch (const std::exception&) {
          }
        }
        if (from > current) return;
        if (r.latest_only) from = current;
        if (current - from >= options_.catch_up_max) {
          env_.log().warn("jobs: {} periods of {} were not scheduled; scheduling the last {}", current - from + 1,
                          r.type, options_.catch_up_max);
          from = current - options_.catch_up_max + 1;
        }
        std::vector<Statement> inserts;
        for (int64_t k = from; k <= current; ++k) {
          const int64_t start_ms = (r.offset.count() + k * r.period.count()) / 1000;
          const int64_t end_ms = start_ms + r.period.count() / 1000;
          std::map<std::string, std::string> data{{"period", std::to_string(k)},
                                                  {"period_start", std::to_string(start_ms)},
                                                  {"period_end", std::to_string(end_ms)},
                                                  {"scheduled_by", options_.worker_id}};
          inserts.push_back(Statement{
              "INSERT INTO Jobs (Id, Type, Priority, CreateAt, Status, Progress, Data, ScheduleKey)"
              " VALUES ($1, $2, 0, $3, " +
                  jobs::sql(jobs::JobStatus::pending) + ", 0, $4, $5) ON CONFLICT (ScheduleKey) DO NOTHING",
              {new_id(env_.random()), r.type, env_.wall_now().millis(), data_text(data), schedule_key(r.type, k)}});
        }
        ++ticks_in_flight_;
        store_.write(std::move(inserts), true, [this, alive, r](db::Outcome o2) {
          if (!*alive) return;
          --ticks_in_flight_;
          if (!o2.ok()) return;
          int64_t made = 0;
          for (const auto& res : o2.value) made += res.affected;
          stats_.scheduled += static_cast<uint64_t>(made);
          if (made > 0) env_.log().info("jobs: scheduled {} {} job(s)", made, r.type);
        });
      });
}

void JobServer::recover() {
  ++ticks_in_flight_;
  store_.write({Statement{"SELECT Id, LastActivityAt, Status FROM Jobs WHERE Status IN (" +
                              jobs::sql(jobs::JobStatus::in_progress) + ", " +
                              jobs::sql(jobs::JobStatus::cancel_requested) + ")",
                          {}}},
               false, [this, alive = alive_](db::Outcome o) {
                 if (!*alive) return;
                 --ticks_in_flight_;
                 if (!o.ok() || !leader_) return;
                 const MonoTime now = env_.now();
                 std::map<std::string, Seen> still;
                 std::vector<Statement> recoveries;
                 for (const auto& r : o.result().rows) {
                   const std::string id = db::text_at(r, 0), status = db::text_at(r, 2);
                   const int64_t activity = db::int_at(r, 1);
                   auto it = watched_.find(id);
                   if (it == watched_.end() || it->second.activity != activity) {
                     still[id] = Seen{activity, now};
                     continue;
                   }
                   still[id] = it->second;
                   if (now - it->second.since < options_.stuck_after) continue;
                   // Silent for stuck_after on our clock: the rule. Conditional on the value we watched, so a
                   // worker that stepped meanwhile keeps its job.
                   if (job_status(status) == JobStatus::in_progress)
                     recoveries.push_back(Statement{
                         "UPDATE Jobs SET Status = CASE WHEN Attempts >= $1 THEN " + jobs::sql(jobs::JobStatus::error) +
                             " ELSE " + jobs::sql(jobs::JobStatus::pending) +
                             " END, WorkerId = '',"
                             " LastActivityAt = $2 WHERE Id = $3 AND Status = " +
                             jobs::sql(jobs::JobStatus::in_progress) + " AND LastActivityAt = $4",
                         {static_cast<int64_t>(options_.attempts_max), env_.wall_now().millis(), id, activity}});
                   else
                     recoveries.push_back(Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::canceled) +
                                                        ", WorkerId = '', LastActivityAt = $1 WHERE Id = $2"
                                                        " AND Status = " +
                                                        jobs::sql(jobs::JobStatus::cancel_requested) +
                                                        " AND LastActivityAt = $3",
                                                    {env_.wall_now().millis(), id, activity}});
                 }
                 watched_ = std::move(still);
                 if (recoveries.empty()) return;
                 ++ticks_in_flight_;
                 store_.write(std::move(recoveries), false, [this, alive](db::Outcome o2) {
                   if (!*alive) return;
                   --ticks_in_flight_;
                   int64_t n = 0;
                   for (const auto& res : o2.value) n += res.affected;
                   if (n > 0) {
                     stats_.recovered += static_cast<uint64_t>(n);
                     env_.log().warn("jobs: recovered {} job(s) whose worker stopped reporting", n);
                   }
                 });
               });
}

void JobServer::poll() {
  if (!running_ || busy_ || !config_->JobSettings.RunJobs) {
    if (running_ && !poll_timer_)
      poll_timer_ = env_.set_timer(options_.poll, [this] {
        poll_timer_ = 0;
        poll();
      });
    return;
  }
  if (poll_timer_) {
    env_.cancel_timer(poll_timer_);
    poll_timer_ = 0;
  }
  busy_ = true;
  std::string types;
  std::vector<db::Value> params;
  for (const auto& [t, k] : kinds_) {
    params.emplace_back(t);
    types += (types.empty() ? "$" : ", $") + std::to_string(params.size());
  }
  if (params.empty()) {
    busy_ = false;
    poll_timer_ = env_.set_timer(options_.poll, [this] {
      poll_timer_ = 0;
      poll();
    });
    return;
  }
  store_.write(
      {Statement{"SELECT Id, Attempts, Type, Data FROM Jobs WHERE Status = " + jobs::sql(jobs::JobStatus::pending) +
                     " AND Type IN (" + types + ") ORDER BY CreateAt, Id LIMIT 1",
                 params}},
      false, [this, alive = alive_](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok() || o.result().rows.empty()) {
          busy_ = false;
          if (running_)
            poll_timer_ = env_.set_timer(options_.poll, [this] {
              poll_timer_ = 0;
              poll();
            });
          return;
        }
        if (!running_) {
          busy_ = false;
          return;
        }
        const auto& r = o.result().rows[0];
        claim(db::text_at(r, 0), db::int_at(r, 1), db::text_at(r, 2), db::text_at(r, 3));
      });
}

void JobServer::claim(const std::string& id, int64_t attempts, const std::string& type, const std::string& data) {
  const int64_t now = env_.wall_now().millis();
  store_.write({Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::in_progress) +
                              ", StartAt = $1, LastActivityAt = $1, WorkerId = $2, Attempts = Attempts + 1"
                              " WHERE Id = $3 AND Status = " +
                              jobs::sql(jobs::JobStatus::pending) + " AND Attempts = $4",
                          {now, options_.worker_id, id, attempts}}},
               false, [this, alive = alive_, id, attempts, type, data](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok() || o.result().affected != 1) {
                   busy_ = false;  // another worker was quicker: look again at once
                   return poll();
                 }
                 ++stats_.claimed;
                 env_.log().info("jobs: claimed {} {} (attempt {})", type, id, attempts + 1);
                 auto run = std::make_shared<Run>(*this, id, type, parse_data(data), attempts + 1);
                 current_ = run;
                 if (!running_) {  // this node began to stop while claiming
                   run->hand_back();
                   busy_ = false;
                   return;
                 }
                 run->beat();
                 auto kind = kinds_.find(type);
                 if (kind == kinds_.end()) return run->finish(false, {{"error", "no worker for this job type"}});
                 kind->second(run);
               });
}

}  // namespace chorus::jobs
