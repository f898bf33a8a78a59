// The jobs Chorus runs, each on real data, in steps that a worker commits fenced by its claim (see
// job_server.h), so a worker that dies, is paused or loses its claim never commits half a step.
//
// - data_retention: deletes the posts older than DataRetentionSettings (MessageRetentionHours if set,
//   else MessageRetentionDays), and their search index entries, in batches of BatchSize with
//   TimeBetweenBatchesMilliseconds between them, so the database is never held for long. The cutoff is
//   fixed when the job starts (data "cutoff", ms), so posts arriving meanwhile are never touched.
//   Idempotent: a retried run deletes what is left.
// - message_export (compliance export): the posts of [start, end) (data "start_at"/"end_at" in ms, or the
//   scheduled period, or the last 24 h) with their user, channel and team, written to file storage as
//   export/<job id>.csv and export/<job id>.json (FileSettings.Directory), then named in the job's data.
// - search_indexing: brings the full-text index (PostgreSQL tsvector + GIN; SQLite FTS5) in line with the
//   posts, in batches: every post is (re)indexed, entries of deleted posts are removed. Posts are also
//   indexed when they are created (in the same transaction), so search finds a post as soon as its
//   creation is acknowledged (plus replica lag when searching on a search replica); this job repairs and
//   rebuilds the index.
#pragma once

#include "server/jobs/job_server.h"

namespace chorus::jobs {

void add_standard_kinds(JobServer& server);

// CSV field quoting (RFC 4180).
std::string csv_field(const std::string& value);

}  // namespace chorus::jobs
