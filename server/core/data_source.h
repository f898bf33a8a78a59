// DataSource strings in Mattermost's form, parsed and checked before anything connects.
//
//   postgres: postgres://user:password@host:port/database?sslmode=disable&connect_timeout=10
//             (also postgresql://; user, password and port optional; percent-encoding allowed)
//   sqlite3:  a file path ("./data/chorus.db", "/var/lib/chorus/chorus.db"), or file:PATH?options
//
// Errors say what is wrong in words an operator can act on; the caller adds which setting held the
// string. Passwords never appear in messages (redacted()). Used by the store and by the drivers.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "server/core/database.h"

#include "server/core/result.h"

namespace chorus::db {

struct DataSource {
  Dialect dialect = Dialect::sqlite;
  std::string text;  // as given
  // postgres
  std::string user;
  std::string password;
  std::string host;  // "localhost" when omitted
  int port = 5432;
  std::string database;
  std::map<std::string, std::string> options;  // query parameters (sslmode, connect_timeout, ...)
  // sqlite
  std::string path;

  // The string with the password replaced by "****": safe for logs and errors.
  std::string redacted() const;
  // "host:port/database" or the file path: how logs and routing name the server.
  std::string server_name() const;
};

using ParsedDataSource = Result<DataSource, Failure>;  // server/core/result.h

// driver is SqlSettings.DriverName. Unknown drivers are an error too.
ParsedDataSource parse_data_source(const std::string& driver, const std::string& text);

}  // namespace chorus::db
