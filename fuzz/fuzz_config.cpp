// config.json and its MM_ environment overrides (server/config: load_config_text).
//
// Input: environment lines (NAME=VALUE, one per line), then a line "===", then the config text; without a
// "===" line the whole input is the config text and the environment is empty.
//
// Properties besides the sanitizers: a config that loads serialises (to_json) to a config that loads again
// to the same JSON and the same hash - the file's part always, the effective config when the environment's
// values are plain ASCII (to_json is what GET /config shows and what a node saves) - and never loads with
// both errors and a value.
#include "fuzz_input.h"
#include "server/config/config.h"

using namespace chorus;
using namespace chorus::fuzz;

namespace {

constexpr std::string_view kEnvEnd = "\n===\n";

void write_seeds(SeedWriter& w) {
  w.add("defaults", config::to_json(config::Config{}));
  w.add("empty-object", "{}");
  w.add("run-cluster", R"({
  "ServiceSettings": {"SiteURL": "http://127.0.0.1:8065"},
  "SqlSettings": {"DriverName": "sqlite3", "DataSource": "/var/lib/chorus/node1/chorus.db"},
  "ClusterSettings": {"Enable": true, "ClusterName": "local", "ReadOnlyConfig": true},
  "TeamSettings": {"EnableOpenServer": true},
  "FileSettings": {"Directory": "/var/lib/chorus/node1/files/"},
  "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": false}
}
)");
  w.add("guide-cluster-sql", R"({
    "ClusterSettings": {"Enable": true, "ClusterName": "production", "OverrideHostname": "",
                        "NetworkInterface": "", "BindAddress": "", "AdvertiseAddress": "", "UseIpAddress": true,
                        "EnableGossipCompression": true, "EnableExperimentalGossipEncryption": false,
                        "ReadOnlyConfig": true, "GossipPort": 8074},
    "SqlSettings": {"DriverName": "postgres",
                    "DataSource": "postgres://mmuser:mostest@db1:5432/mattermost?sslmode=disable&connect_timeout=10",
                    "DataSourceReplicas": ["postgres://mmuser:mostest@db2:5432/mattermost?sslmode=disable"],
                    "DataSourceSearchReplicas": [], "MaxIdleConns": 20, "MaxOpenConns": 300, "Trace": false,
                    "AtRestEncryptKey": "", "QueryTimeout": 30, "ConnMaxLifetimeMilliseconds": 3600000}
})");
  w.add("mattermost-extra-sections", R"({"PluginSettings": {"Enable": true}, "SqlSettings": {"MaxOpenConn": 5},
    "DataRetentionSettings": {"EnableMessageDeletion": true, "MessageRetentionDays": 30, "DeletionJobStartTime": "03:30"},
    "JobSettings": {"RunJobs": true, "RunScheduler": true, "CleanupJobsThresholdDays": 7, "WorkerTimeoutSeconds": 20}})");
  w.add("wrong-types", R"({"SqlSettings": {"MaxOpenConns": "lots", "Trace": 1, "DataSourceReplicas": "a"},
    "ClusterSettings": {"GossipPort": 80.5, "Enable": "yes"}, "LogSettings": 3})");
  w.add("out-of-range", R"({"ClusterSettings": {"GossipPort": 70000}, "SqlSettings": {"MaxOpenConns": 0},
    "ServiceSettings": {"ListenAddress": "8065"}, "LogSettings": {"ConsoleLevel": "LOUD"},
    "DataRetentionSettings": {"DeletionJobStartTime": "25:00"}})");
  w.add("environment",
        "MM_SQLSETTINGS_DATASOURCE=postgres://env/db\nmm_clustersettings_gossipport=9000\nMM_ClusterSettings_Enable=T\n"
        "MM_SQLSETTINGS_DATASOURCEREPLICAS=postgres://a postgres://b\nPATH=/usr/bin\nMM_SERVICEENVIRONMENT=production\n"
        "===\n"
        R"({"SqlSettings": {"DataSource": "postgres://file/db"}})");
  w.add("environment-bad",
        "MM_CLUSTERSETTINGS_GOSSIPPORT=eighty\nMM_SQLSETTINGS_TRACE=maybe\nMM_LOGSETTINGS_CONSOLELEVEL=loud\n"
        "MM_SERVICESETTINGS_MAXIMUMLOGINATTEMPTS=+12\nMM_TEAMSETTINGS_=x\n===\n{}");
}

bool plain_ascii(const config::Environment& env) {
  for (const auto& [k, v] : env)
    for (unsigned char c : v)
      if (c < 0x20 || c > 0x7e) return false;
  return true;
}

void round_trip(const config::Config& c, const char* what) {
  const std::string text = config::to_json(c);
  auto again = config::load_config_text(text, "again.json", {});
  if (!again.ok()) property_failed(what, "does not load again: " + again.error.text() + "\n" + text);
  if (config::to_json(again.value.config) != text) property_failed(what, "loads again differently:\n" + text);
  if (again.value.hash != config::config_hash(c)) property_failed(what, "a different hash once reloaded");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  maybe_write_seeds("fuzz_config", write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  config::Environment env;
  std::string text = input;
  if (const auto end = input.find(kEnvEnd); end != std::string::npos) {
    text = input.substr(end + kEnvEnd.size());
    size_t pos = 0;
    while (pos < end) {
      const size_t nl = std::min(input.find('\n', pos), end);
      const std::string line = input.substr(pos, nl - pos);
      const auto eq = line.find('=');
      if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
      pos = nl + 1;
    }
  }
  auto loaded = config::load_config_text(text, "config.json", env);
  if (!loaded.ok()) {
    if (loaded.error.list.empty()) property_failed("not ok without an error");
    (void)loaded.error.text();
    return 0;
  }
  // The hash is of the whole document (settings Chorus does not know included); of the known settings
  // alone when the file has nothing else (no warnings).
  if (loaded.value.hash != config::document_hash(loaded.value.document)) property_failed("hash is not of the file");
  if (loaded.value.warnings.empty() && loaded.value.hash != config::config_hash(loaded.value.file_config))
    property_failed("a file of known settings hashes differently from its settings");
  round_trip(loaded.value.file_config, "the file's config");
  if (plain_ascii(env)) round_trip(loaded.value.config, "the effective config");
  return 0;
}
