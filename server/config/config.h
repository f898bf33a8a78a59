// config.json as an operator writes it: Mattermost's section and setting names and defaults for what
// Chorus implements, MM_SECTION_SETTING environment overrides, validation that names the setting at
// fault, and the config hash that peers compare (green/red status).
//
// Every setting is declared once, in the lists below; the typed structs, the JSON reader, the
// environment overrides, the validation and the hash are all generated from them. Unknown sections and
// settings are reported as warnings and otherwise left alone: they stay in the document (LoadedConfig::
// document), so a save through the API writes them back unchanged, GET /config shows them, and the
// config hash covers them (a Mattermost config.json has many settings Chorus does not implement; copying
// one over must work, and two nodes whose files differ only there are still told apart). The environment is passed in, never read here: the
// runtime reads it at the seam. Layers above may read a Config; only this component builds one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "server/core/result.h"

namespace chorus::config {

using StringList = std::vector<std::string>;

// X(section, type, name, default, check)
#define CHORUS_SERVICE_SETTINGS(X)                                                      \
  X(ServiceSettings, std::string, SiteURL, "", any())                                   \
  X(ServiceSettings, std::string, ListenAddress, ":8065", listen_address())             \
  X(ServiceSettings, int64_t, ReadTimeout, 300, range(1, 86400))                        \
  X(ServiceSettings, int64_t, WriteTimeout, 300, range(1, 86400))                       \
  X(ServiceSettings, int64_t, IdleTimeout, 60, range(1, 86400))                         \
  X(ServiceSettings, int64_t, MaximumPayloadSizeBytes, 300000, range(1024, 1073741824)) \
  X(ServiceSettings, int64_t, MaximumURLLength, 2048, range(256, 1048576))              \
  X(ServiceSettings, int64_t, SessionLengthWebInHours, 720, range(1, 876000))           \
  X(ServiceSettings, int64_t, SessionCacheInMinutes, 10, range(0, 525600))              \
  X(ServiceSettings, int64_t, MaximumLoginAttempts, 10, range(1, 1000000))             \
  X(ServiceSettings, std::string, AllowCorsFrom, "", any())                             \
  X(ServiceSettings, bool, EnableLocalMode, false, any())                               \
  X(ServiceSettings, std::string, LocalModeSocketLocation, "/var/tmp/mattermost_local.socket", nonempty())

#define CHORUS_SQL_SETTINGS(X)                                                         \
  X(SqlSettings, std::string, DriverName, "sqlite3", one_of({"sqlite3", "postgres"}))  \
  X(SqlSettings, std::string, DataSource, "./data/chorus.db", nonempty())              \
  X(SqlSettings, StringList, DataSourceReplicas, {}, any())                            \
  X(SqlSettings, StringList, DataSourceSearchReplicas, {}, any())                      \
  X(SqlSettings, int64_t, MaxIdleConns, 20, range(0, 100000))                          \
  X(SqlSettings, int64_t, MaxOpenConns, 300, range(1, 100000))                         \
  X(SqlSettings, int64_t, ConnMaxLifetimeMilliseconds, 3600000, range(0, 31536000000)) \
  X(SqlSettings, int64_t, ConnMaxIdleTimeMilliseconds, 300000, range(0, 31536000000))  \
  X(SqlSettings, bool, Trace, false, any())                                            \
  X(SqlSettings, std::string, AtRestEncryptKey, "", any())                             \
  X(SqlSettings, int64_t, QueryTimeout, 30, range(1, 86400))                           \
  X(SqlSettings, bool, DisableDatabaseSearch, false, any())                            \
  X(SqlSettings, int64_t, ReplicaMonitorIntervalSeconds, 5, range(1, 3600))            \
  X(SqlSettings, int64_t, MigrationsStatementTimeoutSeconds, 100000, range(1, 31536000))

#define CHORUS_CLUSTER_SETTINGS(X)                                           \
  X(ClusterSettings, bool, Enable, false, any())                             \
  X(ClusterSettings, std::string, ClusterName, "", any())                    \
  X(ClusterSettings, std::string, OverrideHostname, "", any())               \
  X(ClusterSettings, std::string, NetworkInterface, "", any())               \
  X(ClusterSettings, std::string, BindAddress, "", any())                    \
  X(ClusterSettings, std::string, AdvertiseAddress, "", any())               \
  X(ClusterSettings, bool, UseIpAddress, true, any())                        \
  X(ClusterSettings, bool, EnableGossipCompression, true, any())             \
  X(ClusterSettings, bool, EnableExperimentalGossipEncryption, false, any()) \
  X(ClusterSettings, bool, ReadOnlyConfig, true, any())                      \
  X(ClusterSettings, int64_t, GossipPort, 8074, range(1, 65535))             \
  X(ClusterSettings, int64_t, RemoveDeadNodesAfterSeconds, 3600, range(0, 31536000))

#define CHORUS_FILE_SETTINGS(X)                                        \
  X(FileSettings, bool, EnableFileAttachments, true, any())                                \
  X(FileSettings, std::string, DriverName, "local", one_of({"local", "amazons3"}))        \
  X(FileSettings, std::string, Directory, "./data/", nonempty())                          \
  X(FileSettings, int64_t, MaxFileSize, 104857600, range(1, 1099511627776))               \
  X(FileSettings, std::string, AmazonS3Bucket, "", any())                                 \
  X(FileSettings, std::string, AmazonS3Endpoint, "s3.amazonaws.com", any())               \
  X(FileSettings, std::string, AmazonS3Region, "us-east-1", any())                        \
  X(FileSettings, std::string, AmazonS3AccessKeyId, "", any())                            \
  X(FileSettings, std::string, AmazonS3SecretAccessKey, "", any())                        \
  X(FileSettings, bool, AmazonS3SSL, true, any())                                         \
  X(FileSettings, std::string, AmazonS3PathPrefix, "", any())                             \
  X(FileSettings, int64_t, AmazonS3RequestTimeoutMilliseconds, 30000, range(100, 3600000))

#define CHORUS_JOB_SETTINGS(X)                                              \
  X(JobSettings, bool, RunJobs, true, any())                                \
  X(JobSettings, bool, RunScheduler, true, any())                           \
  X(JobSettings, int64_t, CleanupJobsThresholdDays, -1, range(-1, 36500))   \
  X(JobSettings, int64_t, CleanupConfigThresholdDays, -1, range(-1, 36500)) \
  X(JobSettings, int64_t, WorkerTimeoutSeconds, 15, range(2, 86400))

#define CHORUS_LOG_SETTINGS(X)                                    \
  X(LogSettings, bool, EnableConsole, true, any())                \
  X(LogSettings, std::string, ConsoleLevel, "DEBUG", log_level()) \
  X(LogSettings, bool, ConsoleJson, true, any())                  \
  X(LogSettings, bool, EnableColor, false, any())                 \
  X(LogSettings, bool, EnableFile, true, any())                   \
  X(LogSettings, std::string, FileLevel, "INFO", log_level())     \
  X(LogSettings, bool, FileJson, true, any())                     \
  X(LogSettings, std::string, FileLocation, "", any())            \
  X(LogSettings, int64_t, FileMaxSizeMB, 100, range(1, 1048576))  \
  X(LogSettings, int64_t, FileMaxBackups, 10, range(0, 10000))

// MetricsSettings: Prometheus's /metrics on a port of its own (Mattermost's :8067).
#define CHORUS_METRICS_SETTINGS(X)                                      \
  X(MetricsSettings, bool, Enable, false, any())                        \
  X(MetricsSettings, std::string, ListenAddress, ":8067", listen_address())

#define CHORUS_TEAM_SETTINGS(X)                                      \
  X(TeamSettings, std::string, SiteName, "Chorus", nonempty())       \
  X(TeamSettings, int64_t, MaxUsersPerTeam, 50, range(1, 10000000))  \
  X(TeamSettings, bool, EnableUserCreation, true, any())             \
  X(TeamSettings, bool, EnableOpenServer, false, any())              \
  X(TeamSettings, std::string, RestrictCreationToDomains, "", any()) \
  X(TeamSettings, int64_t, MaxChannelsPerTeam, 2000, range(1, 10000000))

#define CHORUS_DATA_RETENTION_SETTINGS(X)                                            \
  X(DataRetentionSettings, bool, EnableMessageDeletion, false, any())                \
  X(DataRetentionSettings, bool, EnableFileDeletion, false, any())                   \
  X(DataRetentionSettings, int64_t, MessageRetentionDays, 365, range(1, 36500))      \
  X(DataRetentionSettings, int64_t, MessageRetentionHours, 0, range(0, 876000))      \
  X(DataRetentionSettings, int64_t, FileRetentionDays, 365, range(1, 36500))         \
  X(DataRetentionSettings, std::string, DeletionJobStartTime, "02:00", clock_time()) \
  X(DataRetentionSettings, int64_t, BatchSize, 3000, range(1, 1000000))              \
  X(DataRetentionSettings, int64_t, TimeBetweenBatchesMilliseconds, 100, range(0, 3600000))

// Mattermost's rate limit (server/api/guards.h); VaryByUser is not implemented.
#define CHORUS_RATE_LIMIT_SETTINGS(X)                                    \
  X(RateLimitSettings, bool, Enable, false, any())                       \
  X(RateLimitSettings, int64_t, PerSec, 10, range(1, 1000000))           \
  X(RateLimitSettings, int64_t, MaxBurst, 100, range(0, 1000000))        \
  X(RateLimitSettings, int64_t, MemoryStoreSize, 10000, range(1, 10000000)) \
  X(RateLimitSettings, bool, VaryByRemoteAddr, true, any())              \
  X(RateLimitSettings, std::string, VaryByHeader, "", any())

#define CHORUS_ALL_SETTINGS(X)                                                                     \
  CHORUS_SERVICE_SETTINGS(X)                                                                       \
  CHORUS_SQL_SETTINGS(X)                                                                           \
  CHORUS_CLUSTER_SETTINGS(X) CHORUS_FILE_SETTINGS(X) CHORUS_JOB_SETTINGS(X) CHORUS_LOG_SETTINGS(X) \
      CHORUS_TEAM_SETTINGS(X) CHORUS_DATA_RETENTION_SETTINGS(X) CHORUS_RATE_LIMIT_SETTINGS(X)      \
          CHORUS_METRICS_SETTINGS(X)

#define CHORUS_CONFIG_FIELD(section, type, name, def, check) type name = def;
struct ServiceSettings {
  CHORUS_SERVICE_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct SqlSettings {
  CHORUS_SQL_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct ClusterSettings {
  CHORUS_CLUSTER_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct FileSettings {
  CHORUS_FILE_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct JobSettings {
  CHORUS_JOB_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct LogSettings {
  CHORUS_LOG_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct TeamSettings {
  CHORUS_TEAM_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct DataRetentionSettings {
  CHORUS_DATA_RETENTION_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct RateLimitSettings {
  CHORUS_RATE_LIMIT_SETTINGS(CHORUS_CONFIG_FIELD)
};
struct MetricsSettings {
  CHORUS_METRICS_SETTINGS(CHORUS_CONFIG_FIELD)
};
#undef CHORUS_CONFIG_FIELD

// Members are named as the sections in config.json (qualified types keep the names unambiguous).
struct Config {
  config::ServiceSettings ServiceSettings;
  config::SqlSettings SqlSettings;
  config::ClusterSettings ClusterSettings;
  config::FileSettings FileSettings;
  config::JobSettings JobSettings;
  config::LogSettings LogSettings;
  config::TeamSettings TeamSettings;
  config::DataRetentionSettings DataRetentionSettings;
  config::RateLimitSettings RateLimitSettings;
  config::MetricsSettings MetricsSettings;
};

struct ConfigError {
  std::string setting;  // "SqlSettings.MaxOpenConns", or "" for the file as a whole
  std::string source;   // "config.json:12:5" or "environment MM_SQLSETTINGS_MAXOPENCONNS"
  std::string message;  // what was expected and what was found
  std::string to_string() const;
};

struct LoadedConfig {
  Config config;                        // what the node runs with: defaults < file < environment
  Config file_config;                   // defaults < file
  // The whole file as canonical JSON (keys sorted): every known setting at its file_config value, and
  // every section and setting Chorus does not know exactly as the file has it.
  std::string document;
  std::string hash;                     // document_hash(document)
  std::vector<std::string> warnings;    // unknown sections or settings, ignored
  std::vector<std::string> overridden;  // settings taken from the environment ("SqlSettings.DataSource")
};

// Every bad setting, each named (server/core/result.h: config's error type).
struct ConfigErrors {
  std::vector<ConfigError> list;
  bool ok() const { return list.empty(); }
  std::string text() const;  // every error, one per line
};

using LoadResult = Result<LoadedConfig, ConfigErrors>;  // the value is set when there is no error

using Environment = std::map<std::string, std::string>;

// Parses config.json text. `source_name` is used in messages (usually the file's path).
LoadResult load_config_text(const std::string& text, const std::string& source_name, const Environment& environment);
// Reads the file; a missing or unreadable file is an error naming the path.
LoadResult load_config_file(const std::string& path, const Environment& environment);

// SHA-256 (hex) of the canonical JSON of every setting but ClusterSettings.
std::string config_hash(const Config& config);
// The same over a whole document (LoadedConfig::document): unknown settings count, ClusterSettings
// (what differs per node) does not. Equal to config_hash(c) for a document of c's settings alone.
std::string document_hash(const std::string& document);
// The document with every known setting replaced by `config`'s value (the effective config, with the
// environment's values, for GET /config); unknown settings as they are.
std::string document_with(const std::string& document, const Config& config);
// A JSON text indented for people (config.json as written by a save); keys keep their order.
std::string pretty_json(const std::string& json_text);

// The settings a running node applies only when it restarts (listening sockets, the cluster's identity,
// the database driver and file store). Of these, the ones whose values differ between a and b.
std::vector<std::string> restart_settings_changed(const Config& a, const Config& b);
// The config as JSON, sections and settings in sorted order (no environment values mixed in unless the
// caller passes the effective config).
std::string to_json(const Config& config, bool include_cluster_settings = true);

}  // namespace chorus::config
