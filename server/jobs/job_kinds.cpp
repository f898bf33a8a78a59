#include "server/jobs/job_kinds.h"

#include <fmt/format.h>

#include <map>

#include <boost/json.hpp>

#include "server/store/store.h"

namespace chorus::jobs {

namespace json = boost::json;
using db::Statement;
using db::Value;

std::string csv_field(const std::string& value) {
  if (value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

namespace {

int64_t data_int(const JobRun& run, const char* key, int64_t fallback) {
  auto it = run.data().find(key);
  if (it == run.data().end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    return fallback;
  }
}

using db::int_at;
using db::text_at;

std::string placeholders(size_t first, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) out += (i ? ", $" : "$") + std::to_string(first + i);
  return out;
}

// --- data retention

void retention_batch(std::shared_ptr<JobRun> run, int64_t cutoff, int64_t deleted, int64_t batches) {
  if (!run->active()) return;
  const auto& dr = run->config().DataRetentionSettings;
  // One batch, chosen and deleted in the same transaction (no id list: BatchSize may be large).
  const std::string batch = "SELECT Id FROM Posts WHERE CreateAt < $1 ORDER BY CreateAt, Id LIMIT $2";
  // What hangs off a post goes with it, in the same transaction: its index entry, reactions, edit
  // history and unpublished change. The posts go last (each statement reads the same batch).
  // The files' paths are read in the transaction that deletes their rows; the bytes go after the commit
  // (a node dying between leaves them in the store, unreferenced and never shown).
  std::vector<Statement> s{Statement{"SELECT Path, ThumbnailPath, PreviewPath FROM FileInfo WHERE PostId IN (" + batch + ")",
                                     {cutoff, dr.BatchSize}}};
  for (const char* table : {"PostsFts", "Reactions", "PostEdits", "PostChangeOutbox", "FileInfo"})
    s.push_back(Statement{std::string("DELETE FROM ") + table + " WHERE PostId IN (" + batch + ")", {cutoff, dr.BatchSize}});
  s.push_back(Statement{"DELETE FROM Posts WHERE Id IN (" + batch + ")", {cutoff, dr.BatchSize}});
  const size_t posts_at = s.size();  // the outcome's [0] is the fence, so the last statement is at size()
  run->step(
      std::move(s), static_cast<int>(std::min<int64_t>(batches, 99)),
      [run, cutoff, deleted, batches, posts_at](bool ok, db::Outcome o) {
        if (!ok) return;
        const int64_t n = o.value.at(posts_at).affected;
        for (const auto& row : o.value.at(1).rows)  // [0] is the fence, [1] the files' paths
          for (size_t i = 0; i < 3; ++i)
            if (const std::string path = text_at(row, i); !path.empty())
              run->env().files().remove(path, [run, path](std::string error) {
                if (!error.empty()) run->env().log().warn("data retention: cannot remove {}: {}", path, error);
              });
        if (n == 0)
          return run->finish(true, {{"deleted_posts", std::to_string(deleted)}, {"cutoff", std::to_string(cutoff)}});
        const auto pause = Duration{run->config().DataRetentionSettings.TimeBetweenBatchesMilliseconds * 1000};
        run->env().set_timer(
            pause, [run, cutoff, deleted, batches, n] { retention_batch(run, cutoff, deleted + n, batches + 1); });
      });
}

void data_retention(std::shared_ptr<JobRun> run) {
  const auto& dr = run->config().DataRetentionSettings;
  if (!dr.EnableMessageDeletion && !run->data().contains("cutoff"))
    return run->finish(true, {{"skipped", "DataRetentionSettings.EnableMessageDeletion is off"}});
  const int64_t keep_ms =
      dr.MessageRetentionHours > 0 ? dr.MessageRetentionHours * 3'600'000 : dr.MessageRetentionDays * 86'400'000;
  const int64_t cutoff = data_int(*run, "cutoff", run->env().wall_now().millis() - keep_ms);
  retention_batch(run, cutoff, 0, 0);
}

// --- compliance export

struct Export {
  int64_t start = 0, end = 0;
  int64_t last_at = -1;
  std::string last_id;
  std::string csv =
      "post_id,create_at,update_at,edit_at,delete_at,user_id,username,channel_id,channel_name,team_id,root_id,message,"
      "reactions\n";
  json::array rows;
};

// A page of the export: posts made or changed in [start, end) (an edit, delete or reaction moves a post's
// UpdateAt), after the cursor, with their reactions (removed ones too, with when), edit history and files
// (where the store keeps them).
void export_page(std::shared_ptr<JobRun> run, std::shared_ptr<Export> x) {
  if (!run->active()) return;
  const std::string page =
      " FROM Posts p WHERE ((p.CreateAt >= $1 AND p.CreateAt < $2) OR (p.UpdateAt >= $1 AND p.UpdateAt < $2))"
      " AND (p.CreateAt > $3 OR (p.CreateAt = $3 AND p.Id > $4)) ORDER BY p.CreateAt, p.Id LIMIT 1000";
  const std::vector<db::Value> params{x->start, x->end, x->last_at, x->last_id};
  run->store().write(
      {Statement{"SELECT p.Id, p.CreateAt, p.UserId, u.Username, p.ChannelId, c.Name, c.TeamId, p.Message, p.UpdateAt,"
                 " p.EditAt, p.DeleteAt, p.RootId FROM Posts p LEFT JOIN Users u ON u.Id = p.UserId"
                 " LEFT JOIN Channels c ON c.Id = p.ChannelId WHERE p.Id IN (SELECT p.Id" + page + ")"
                 " ORDER BY p.CreateAt, p.Id",
                 params},
       Statement{"SELECT PostId, UserId, EmojiName, CreateAt, DeleteAt FROM Reactions WHERE PostId IN (SELECT p.Id" +
                     page + ") ORDER BY CreateAt, UserId, EmojiName",
                 params},
       Statement{"SELECT PostId, EditAt, UserId, Message FROM PostEdits WHERE PostId IN (SELECT p.Id" + page +
                     ") ORDER BY EditAt",
                 params},
       Statement{"SELECT PostId, Id, Name, Size, MimeType, Path, DeleteAt FROM FileInfo WHERE PostId IN (SELECT p.Id" +
                     page + ") ORDER BY CreateAt, Id",
                 params}},
      false, [run, x](db::Outcome o) {
        if (!o.ok()) return run->finish(false, {{"error", "cannot read posts: " + o.error.message}});
        const auto& rows = o.value[0].rows;
        std::map<std::string, json::array> reactions, edits;
        std::map<std::string, std::string> reactions_csv;
        for (const auto& r : o.value[1].rows) {
          reactions[text_at(r, 0)].push_back(json::object{
              {"user_id", text_at(r, 1)}, {"emoji_name", text_at(r, 2)}, {"create_at", int_at(r, 3)}, {"delete_at", int_at(r, 4)}});
          if (int_at(r, 4) == 0) {
            auto& c = reactions_csv[text_at(r, 0)];
            c += (c.empty() ? "" : " ") + text_at(r, 1) + ":" + text_at(r, 2);
          }
        }
        std::map<std::string, json::array> files;
        for (const auto& r : o.value[3].rows)
          files[text_at(r, 0)].push_back(json::object{{"file_id", text_at(r, 1)},
                                                      {"name", text_at(r, 2)},
                                                      {"size", int_at(r, 3)},
                                                      {"mime_type", text_at(r, 4)},
                                                      {"path", text_at(r, 5)},
                                                      {"delete_at", int_at(r, 6)}});
        for (const auto& r : o.value[2].rows)
          edits[text_at(r, 0)].push_back(
              json::object{{"edit_at", int_at(r, 1)}, {"user_id", text_at(r, 2)}, {"previous_message", text_at(r, 3)}});
        for (const auto& r : rows) {
          const std::string id = text_at(r, 0);
          x->csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(id), int_at(r, 1), int_at(r, 8),
                                int_at(r, 9), int_at(r, 10), csv_field(text_at(r, 2)), csv_field(text_at(r, 3)),
                                csv_field(text_at(r, 4)), csv_field(text_at(r, 5)), csv_field(text_at(r, 6)),
                                csv_field(text_at(r, 11)), csv_field(text_at(r, 7)), csv_field(reactions_csv[id]));
          x->rows.push_back(json::object{{"post_id", id},
                                         {"create_at", int_at(r, 1)},
                                         {"update_at", int_at(r, 8)},
                                         {"edit_at", int_at(r, 9)},
                                         {"delete_at", int_at(r, 10)},
                                         {"user_id", text_at(r, 2)},
                                         {"username", text_at(r, 3)},
                                         {"channel_id", text_at(r, 4)},
                                         {"channel_name", text_at(r, 5)},
                                         {"team_id", text_at(r, 6)},
                                         {"root_id", text_at(r, 11)},
                                         {"message", text_at(r, 7)},
                                         {"reactions", reactions[id]},
                                         {"edits", edits[id]},
                                         {"files", files[id]}});
        }
        if (rows.size() == 1000) {
          x->last_at = int_at(rows.back(), 1);
          x->last_id = text_at(rows.back(), 0);
          // A step with no work of its own: the claim is still ours and the progress shows.
          return run->step({}, 50, [run, x](bool ok, db::Outcome) {
            if (ok) export_page(run, x);
          });
        }
        // Named per attempt: a stale attempt (fenced out, still writing) never overwrites the files the
        // finishing attempt names in its data.
        const std::string base =
            "export/" + run->id() + (run->attempt() > 1 ? "-" + std::to_string(run->attempt()) : "");
        const size_t n = x->rows.size();
        run->env().files().write(base + ".csv", std::move(x->csv), [run, x, base, n](std::string error) {
          if (!error.empty()) return run->finish(false, {{"error", error}});
          const std::string doc =
              json::serialize(json::object{{"start_at", x->start}, {"end_at", x->end}, {"posts", x->rows}});
          run->env().files().write(base + ".json", doc, [run, base, n](std::string error2) {
            if (!error2.empty()) return run->finish(false, {{"error", error2}});
            run->finish(true, {{"csv", base + ".csv"}, {"json", base + ".json"}, {"posts", std::to_string(n)}});
          });
        });
      });
}

void message_export(std::shared_ptr<JobRun> run) {
  auto x = std::make_shared<Export>();
  const int64_t now = run->env().wall_now().millis();
  x->end = data_int(*run, "end_at", data_int(*run, "period_end", now));
  x->start = data_int(*run, "start_at", data_int(*run, "period_start", x->end - 86'400'000));
  if (x->start >= x->end) return run->finish(false, {{"error", "start_at must be before end_at"}});
  export_page(run, x);
}

// --- search indexing

void index_page(std::shared_ptr<JobRun> run, int64_t last_at, std::string last_id, int64_t indexed) {
  if (!run->active()) return;
  run->store().write({Statement{"SELECT Id, CreateAt, ChannelId, Message FROM Posts WHERE DeleteAt = 0 AND (CreateAt > "
                                "$1 OR (CreateAt = $1 AND Id > $2))"
                                " ORDER BY CreateAt, Id LIMIT 500",
                                {last_at, last_id}}},
                     false, [run, indexed](db::Outcome o) {
                       if (!o.ok()) return run->finish(false, {{"error", "cannot read posts: " + o.error.message}});
                       const auto& rows = o.result().rows;
                       if (rows.empty()) {
                         // Entries whose posts are gone (deleted by an older binary, restored backups, ...).
                         return run->step({Statement{"DELETE FROM PostsFts WHERE NOT EXISTS (SELECT 1 FROM Posts p "
                                                     "WHERE p.Id = PostsFts.PostId AND p.DeleteAt = 0)",
                                                     {}}},
                                          99, [run, indexed](bool ok, db::Outcome done) {
                                            if (!ok) return;
                                            run->finish(
                                                true, {{"indexed_posts", std::to_string(indexed)},
                                                       {"removed_entries", std::to_string(done.value.at(1).affected)}});
                                          });
                       }
                       const bool pg = run->store().router().dialect() == db::Dialect::postgres;
                       std::vector<Value> ids, values;
                       std::string tuples;
                       for (const auto& r : rows) {
                         ids.emplace_back(text_at(r, 0));
                         const size_t k = values.size();
                         if (pg) {
                           values.emplace_back(text_at(r, 0));
                           values.emplace_back(text_at(r, 2));
                           values.emplace_back(text_at(r, 3));
                           tuples += fmt::format("{}(${}, ${}, to_tsvector('simple', ${}))", tuples.empty() ? "" : ", ",
                                                 k + 1, k + 2, k + 3);
                         } else {
                           values.emplace_back(text_at(r, 3));
                           values.emplace_back(text_at(r, 0));
                           values.emplace_back(text_at(r, 2));
                           tuples += fmt::format("{}(${}, ${}, ${})", tuples.empty() ? "" : ", ", k + 1, k + 2, k + 3);
                         }
                       }
                       std::vector<Statement> s{
                           Statement{"DELETE FROM PostsFts WHERE PostId IN (" + placeholders(1, ids.size()) + ")", ids},
                           Statement{std::string(pg ? "INSERT INTO PostsFts (PostId, ChannelId, Body) VALUES "
                                                    : "INSERT INTO PostsFts (Message, PostId, ChannelId) VALUES ") +
                                         tuples,
                                     values}};
                       const int64_t at = int_at(rows.back(), 1);
                       const std::string id = text_at(rows.back(), 0);
                       const int64_t n = indexed + static_cast<int64_t>(rows.size());
                       run->step(std::move(s), 50, [run, at, id, n](bool ok, db::Outcome) {
                         if (ok) index_page(run, at, id, n);
                       });
                     });
}

void search_indexing(std::shared_ptr<JobRun> run) { index_page(run, -1, "", 0); }

}  // namespace

void add_standard_kinds(JobServer& server) {
  server.add_kind("data_retention", data_retention);
  server.add_kind("message_export", message_export);
  server.add_kind("search_indexing", search_indexing);
}

}  // namespace chorus::jobs
