// The schema, as an ordered list of migrations that both SQL dialects run unchanged.
//
// Portable SQL wherever possible (the full-text search index is the exception, with a statement list per
// dialect): VARCHAR, TEXT, BIGINT and INTEGER columns (booleans are 0/1 INTEGERs), PRIMARY KEY
// and UNIQUE constraints, plain indexes. Table and column names are Mattermost's where Mattermost has the
// table, so an operator's queries carry over (SELECT * FROM ClusterDiscovery). Each migration names the
// Chorus version that introduced it: the schema's version is the newest applied migration's, and a
// binary refuses a schema more than one minor version ahead of it (see migrations.h).
#pragma once

#include <string>
#include <vector>

namespace chorus::store {

struct Migration {
  int version;  // 1, 2, 3, ...: applied in order, each exactly once
  const char* name;
  const char* introduced_in;  // "major.minor" of the Chorus release that added it
  std::vector<std::string> statements;
  // Where the dialects must differ (full-text search), the statements for each, run after the common ones.
  std::vector<std::string> postgres = {};
  std::vector<std::string> sqlite = {};
};

const std::vector<Migration>& migrations();

}  // namespace chorus::store
