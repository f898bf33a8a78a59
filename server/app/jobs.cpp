#include "server/app/jobs.h"

#include <boost/json.hpp>

#include "server/core/ids.h"
#include "server/store/store.h"

namespace chorus::app {

namespace json = boost::json;
using db::Statement;

json::object Job::to_json() const {
  boost::system::error_code ec;
  auto d = json::parse(data, ec);
  return {{"id", id},
          {"type", type},
          {"priority", priority},
          {"create_at", create_at},
          {"start_at", start_at},
          {"last_activity_at", last_activity_at},
          {"status", status},
          {"progress", progress},
          {"data", !ec && d.is_object() ? d : json::value(json::object{})}};
}

Job job_from_row(const std::vector<db::Value>& r) {
  Job j;
  j.id = text_at(r, 0);
  j.type = text_at(r, 1);
  j.priority = int_at(r, 2);
  j.create_at = int_at(r, 3);
  j.start_at = int_at(r, 4);
  j.last_activity_at = int_at(r, 5);
  j.status = text_at(r, 6);
  j.progress = int_at(r, 7);
  j.data = text_at(r, 8);
  return j;
}

const std::vector<std::string>& job_types() {
  static const std::vector<std::string> types = {"data_retention", "message_export", "search_indexing"};
  return types;
}

namespace {
template <class T>
Result<T> failed(AppError e) {
  return Result<T>{std::move(e), T{}};
}
}  // namespace

void Jobs::create(const Session& actor, const std::string& type, const json::object& data, Callback<Job> done) {
  if (!actor.is_system_admin()) return done(failed<Job>(forbidden()));
  const auto& known = job_types();
  if (std::find(known.begin(), known.end(), type) == known.end())
    return done(failed<Job>(AppError{
        400, "app.job.create.type.app_error",
        "Unknown job type \"" + type.substr(0, 64) + "\"; known: data_retention, message_export, search_indexing."}));
  for (const auto& [k, v] : data)
    if (!v.is_string() || k.size() > 64 || v.as_string().size() > 1024)
      return done(failed<Job>(
          AppError{400, "model.job.is_valid.data.app_error",
                   "Job data must be an object of short strings; \"" + std::string(k).substr(0, 64) + "\" is not."}));
  Job j;
  j.id = new_id(env_.random());
  j.type = type;
  j.create_at = env_.wall_now().us / 1000;
  j.data = json::serialize(data);
  store_.write(
      {Statement{"INSERT INTO Jobs (Id, Type, Priority, CreateAt, Status, Progress, Data) VALUES ($1, $2, 0, $3, " +
                     jobs::sql(jobs::JobStatus::pending) + ", 0, $4)",
                 {j.id, j.type, j.create_at, j.data}}},
      false, [alive = alive_, j, done](db::Outcome o) {
        if (!*alive) return;
        if (!o.ok()) return done(failed<Job>(from_db(o.error)));
        done(Result<Job>{{}, j});
      });
}

void Jobs::get(const Session& actor, const std::string& id, Callback<Job> done) {
  if (!actor.is_system_admin()) return done(failed<Job>(forbidden()));
  if (!is_valid_id(id)) return done(failed<Job>(bad_param("job_id")));
  store_.write({Statement{std::string("SELECT ") + kJobColumns + " FROM Jobs WHERE Id = $1", {id}}}, false,
               [alive = alive_, done](db::Outcome o) {
                 if (!*alive) return;
                 if (!o.ok()) return done(failed<Job>(from_db(o.error)));
                 if (o.result().rows.empty()) return done(failed<Job>(not_found("job")));
                 done(Result<Job>{{}, job_from_row(o.result().rows[0])});
               });
}

void Jobs::list(const Session& actor, const std::string& type, int page, int per_page,
                Callback<std::vector<Job>> done) {
  if (!actor.is_system_admin()) return done(failed<std::vector<Job>>(forbidden()));
  per_page = std::clamp(per_page, 1, 200);
  std::vector<db::Value> params{static_cast<int64_t>(per_page), static_cast<int64_t>(std::max(page, 0)) * per_page};
  std::string where;
  if (!type.empty()) {
    where = " WHERE Type = $3";
    params.emplace_back(type);
  }
  store_.read({Statement{std::string("SELECT ") + kJobColumns + " FROM Jobs" + where +
                             " ORDER BY CreateAt DESC, Id DESC LIMIT $1 OFFSET $2",
                         params}},
              [alive = alive_, done](db::Outcome o) {
                if (!*alive) return;
                if (!o.ok()) return done(failed<std::vector<Job>>(from_db(o.error)));
                std::vector<Job> jobs;
                for (const auto& r : o.result().rows) jobs.push_back(job_from_row(r));
                done(Result<std::vector<Job>>{{}, std::move(jobs)});
              });
}

void Jobs::cancel(const Session& actor, const std::string& id, Callback<Job> done) {
  if (!actor.is_system_admin()) return done(failed<Job>(forbidden()));
  if (!is_valid_id(id)) return done(failed<Job>(bad_param("job_id")));
  const int64_t now = env_.wall_now().us / 1000;
  // One transaction: a pending job is canceled, a running one asked to stop; then read it back.
  std::vector<Statement> s{
      Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::canceled) +
                    ", LastActivityAt = $2 WHERE Id = $1 AND Status = " + jobs::sql(jobs::JobStatus::pending),
                {id, now}},
      Statement{"UPDATE Jobs SET Status = " + jobs::sql(jobs::JobStatus::cancel_requested) +
                    ", LastActivityAt = $2 WHERE Id = $1 AND Status = " + jobs::sql(jobs::JobStatus::in_progress),
                {id, now}},
      Statement{std::string("SELECT ") + kJobColumns + " FROM Jobs WHERE Id = $1", {id}}};
  store_.write(std::move(s), true, [alive = alive_, done](db::Outcome o) {
    if (!*alive) return;
    if (!o.ok()) return done(failed<Job>(from_db(o.error)));
    if (o.value[2].rows.empty()) return done(failed<Job>(not_found("job")));
    Job j = job_from_row(o.value[2].rows[0]);
    if (o.value[0].affected == 0 && o.value[1].affected == 0 &&
        j.status != jobs::name(jobs::JobStatus::cancel_requested))
      return done(
          failed<Job>(AppError{400, "app.job.cancel.finished.app_error",
                               "The job has already finished (" + j.status + "): there is nothing to cancel."}));
    done(Result<Job>{{}, std::move(j)});
  });
}

}  // namespace chorus::app
