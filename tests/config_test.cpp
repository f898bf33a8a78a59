// server/config: defaults, file values, MM_ environment overrides, every class of error, the hash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/config/config.h"

using namespace chorus::config;

namespace {
LoadResult load(const std::string& text, const Environment& env = {}) {
  return load_config_text(text, "config.json", env);
}

// True when some error names `setting` and its message contains `fragment`.
bool has_error(const LoadResult& r, const std::string& setting, const std::string& fragment) {
  for (const auto& e : r.error.list)
    if (e.setting == setting && e.to_string().find(fragment) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST(Config, EmptyObjectGivesMattermostDefaults) {
  auto r = load("{}");
  ASSERT_TRUE(r.ok()) << r.error.text();
  const Config& c = r.value.config;
  EXPECT_EQ(c.ServiceSettings.ListenAddress, ":8065");
  EXPECT_EQ(c.ClusterSettings.GossipPort, 8074);
  EXPECT_TRUE(c.ClusterSettings.ReadOnlyConfig);
  EXPECT_TRUE(c.ClusterSettings.UseIpAddress);
  EXPECT_EQ(c.SqlSettings.DriverName, "sqlite3");  // Chorus's embedded default
  EXPECT_EQ(c.SqlSettings.MaxIdleConns, 20);
  EXPECT_EQ(c.SqlSettings.MaxOpenConns, 300);
  EXPECT_EQ(c.SqlSettings.ConnMaxLifetimeMilliseconds, 3600000);
  EXPECT_EQ(c.SqlSettings.ConnMaxIdleTimeMilliseconds, 300000);
  EXPECT_EQ(c.SqlSettings.QueryTimeout, 30);
  EXPECT_EQ(c.SqlSettings.ReplicaMonitorIntervalSeconds, 5);
  EXPECT_TRUE(c.JobSettings.RunScheduler);
  EXPECT_TRUE(c.JobSettings.RunJobs);
  EXPECT_EQ(c.DataRetentionSettings.MessageRetentionDays, 365);
  EXPECT_EQ(c.FileSettings.Directory, "./data/");
  EXPECT_TRUE(r.value.warnings.empty());
}

TEST(Config, ReadsTheGuidesClusterAndSqlBlocks) {
  auto r = load(R"({
    "ClusterSettings": {"Enable": true, "ClusterName": "production", "OverrideHostname": "",
                        "UseIpAddress": true, "ReadOnlyConfig": true, "GossipPort": 8074},
    "SqlSettings": {"DriverName": "postgres",
                    "DataSource": "postgres://mmuser:pw@db:5432/mattermost?sslmode=disable&connect_timeout=10",
                    "DataSourceReplicas": ["postgres://r1/mm", "postgres://r2/mm"],
                    "DataSourceSearchReplicas": [], "MaxIdleConns": 20, "MaxOpenConns": 300,
                    "Trace": false, "AtRestEncryptKey": "", "QueryTimeout": 30}
  })");
  ASSERT_TRUE(r.ok()) << r.error.text();
  EXPECT_TRUE(r.value.config.ClusterSettings.Enable);
  EXPECT_EQ(r.value.config.ClusterSettings.ClusterName, "production");
  EXPECT_EQ(r.value.config.SqlSettings.DataSourceReplicas.size(), 2u);
}

TEST(Config, UnknownSectionsAndSettingsAreWarningsNotErrors) {
  auto r = load(R"({"PluginSettings": {"Enable": true}, "SqlSettings": {"MaxOpenConn": 5}})");
  ASSERT_TRUE(r.ok()) << r.error.text();
  ASSERT_EQ(r.value.warnings.size(), 2u);
  EXPECT_NE(r.value.warnings[0].find("PluginSettings"), std::string::npos);
  EXPECT_NE(r.value.warnings[1].find("SqlSettings.MaxOpenConn"), std::string::npos);
}

TEST(Config, WrongTypesNameTheSetting) {
  auto r = load(R"({"SqlSettings": {"MaxOpenConns": "lots", "Trace": 1, "DataSourceReplicas": "a"},
                    "ClusterSettings": {"GossipPort": 80.5, "Enable": "yes"}, "LogSettings": 3})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has_error(r, "SqlSettings.MaxOpenConns", "expected an integer, got the string \"lots\""));
  EXPECT_TRUE(has_error(r, "SqlSettings.Trace", "expected a boolean"));
  EXPECT_TRUE(has_error(r, "SqlSettings.DataSourceReplicas", "expected a list of strings"));
  EXPECT_TRUE(has_error(r, "ClusterSettings.GossipPort", "expected an integer, got the number 80.5"));
  EXPECT_TRUE(has_error(r, "ClusterSettings.Enable", "expected a boolean"));
  EXPECT_TRUE(has_error(r, "LogSettings", "expected an object"));
  EXPECT_EQ(r.error.list.size(), 6u) << r.error.text();  // every error at once, not just the first
}

TEST(Config, OutOfRangeNamesTheSettingAndTheRange) {
  auto r = load(R"({"ClusterSettings": {"GossipPort": 70000}, "SqlSettings": {"MaxOpenConns": 0},
                    "ServiceSettings": {"ListenAddress": "8065"}, "LogSettings": {"ConsoleLevel": "LOUD"},
                    "DataRetentionSettings": {"DeletionJobStartTime": "25:00"}})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has_error(r, "ClusterSettings.GossipPort", "70000 is out of range: expected 1 to 65535"));
  EXPECT_TRUE(has_error(r, "SqlSettings.MaxOpenConns", "0 is out of range"));
  EXPECT_TRUE(has_error(r, "ServiceSettings.ListenAddress", "expected \"host:port\""));
  EXPECT_TRUE(has_error(r, "LogSettings.ConsoleLevel", "not a log level"));
  EXPECT_TRUE(has_error(r, "DataRetentionSettings.DeletionJobStartTime", "HH:MM"));
}

TEST(Config, UnknownDriverIsNamed) {
  auto r = load(R"({"SqlSettings": {"DriverName": "mysql"}, "FileSettings": {"DriverName": "azure"}})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      has_error(r, "SqlSettings.DriverName", "\"mysql\" is not supported: expected one of \"sqlite3\", \"postgres\""));
  EXPECT_TRUE(has_error(r, "FileSettings.DriverName", "\"azure\" is not supported: expected one of \"local\", \"amazons3\""));
}

TEST(Config, TheS3DriverNeedsABucketAndAnEndpoint) {
  auto r = load(R"({"FileSettings": {"DriverName": "amazons3", "AmazonS3Endpoint": ""}})");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has_error(r, "FileSettings.AmazonS3Bucket", "must name a bucket"));
  EXPECT_TRUE(has_error(r, "FileSettings.AmazonS3Endpoint", "must name the S3 host"));
  EXPECT_TRUE(load(R"({"FileSettings": {"DriverName": "amazons3", "AmazonS3Bucket": "b"}})").ok());
}

TEST(Config, SyntaxErrorsGiveLineAndColumn) {
  auto r = load("{\n  \"SqlSettings\": {\n    \"MaxOpenConns\": 300,\n  }\n}");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.error.list.size(), 1u);
  EXPECT_NE(r.error.list[0].to_string().find("config.json:4:"), std::string::npos) << r.error.list[0].to_string();
  EXPECT_NE(r.error.list[0].to_string().find("not valid JSON"), std::string::npos);
  auto top = load("[1, 2]");
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.error.text().find("expected a JSON object"), std::string::npos);
  auto empty = load("");
  EXPECT_FALSE(empty.ok());
  auto trailing = load("{\"SqlSettings\": {}} {\"SqlSettings\": {\"DriverName\": \"x\"}}");
  ASSERT_FALSE(trailing.ok()) << "text after the JSON object must not be ignored";
  EXPECT_NE(trailing.error.text().find("config.json:1:"), std::string::npos) << trailing.error.text();
}

TEST(Config, MissingFileIsNamed) {
  auto r = load_config_file("/nonexistent/chorus/config.json", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error.text().find("/nonexistent/chorus/config.json"), std::string::npos);
}

TEST(Config, EnvironmentOverridesFollowMattermostRules) {
  Environment env = {
      {"MM_SQLSETTINGS_DATASOURCE", "postgres://env/db"},
      {"mm_clustersettings_gossipport", "9000"},                           // any case
      {"MM_ClusterSettings_Enable", "T"},                                  // Go's ParseBool forms
      {"MM_SQLSETTINGS_DATASOURCEREPLICAS", "postgres://a postgres://b"},  // lists split on spaces
      {"PATH", "/usr/bin"},                                                // not ours
      {"MM_SERVICEENVIRONMENT", "production"},                             // not a setting Chorus has: ignored
  };
  auto r = load(R"({"SqlSettings": {"DataSource": "postgres://file/db"}})", env);
  ASSERT_TRUE(r.ok()) << r.error.text();
  const Config& c = r.value.config;
  EXPECT_EQ(c.SqlSettings.DataSource, "postgres://env/db");
  EXPECT_EQ(c.ClusterSettings.GossipPort, 9000);
  EXPECT_TRUE(c.ClusterSettings.Enable);
  ASSERT_EQ(c.SqlSettings.DataSourceReplicas.size(), 2u);
  EXPECT_EQ(c.SqlSettings.DataSourceReplicas[1], "postgres://b");
  // The file view keeps the file's values.
  EXPECT_EQ(r.value.file_config.SqlSettings.DataSource, "postgres://file/db");
  EXPECT_EQ(r.value.overridden.size(), 4u);
}

TEST(Config, BadEnvironmentValuesNameTheVariable) {
  auto r = load("{}", {{"MM_CLUSTERSETTINGS_GOSSIPPORT", "eighty"},
                       {"MM_SQLSETTINGS_TRACE", "maybe"},
                       {"MM_SQLSETTINGS_DRIVERNAME", "oracle"},
                       {"MM_SQLSETTINGS_MAXOPENCONNS", "-3"}});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(has_error(r, "ClusterSettings.GossipPort", "environment MM_CLUSTERSETTINGS_GOSSIPPORT"));
  EXPECT_TRUE(has_error(r, "ClusterSettings.GossipPort", "expected an integer, got \"eighty\""));
  EXPECT_TRUE(has_error(r, "SqlSettings.Trace", "expected a boolean"));
  EXPECT_TRUE(has_error(r, "SqlSettings.DriverName", "\"oracle\" is not supported"));
  EXPECT_TRUE(has_error(r, "SqlSettings.MaxOpenConns", "out of range"));
}

TEST(ConfigHash, LeavesOutClusterSettingsAndTheEnvironment) {
  auto a = load(R"({"ClusterSettings": {"GossipPort": 8074, "OverrideHostname": "a"}})");
  auto b = load(R"({"ClusterSettings": {"GossipPort": 9999, "OverrideHostname": "b", "Enable": true}})",
                {{"MM_SQLSETTINGS_MAXOPENCONNS", "7"}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value.hash, b.value.hash);
  EXPECT_EQ(a.value.hash.size(), 64u);
}

TEST(ConfigHash, ExplicitDefaultsHashLikeOmittedOnesAndAnyChangeShows) {
  auto omitted = load("{}");
  auto explicit_defaults = load(R"({"SqlSettings": {"MaxOpenConns": 300}, "TeamSettings": {"SiteName": "Chorus"}})");
  auto changed = load(R"({"SqlSettings": {"MaxOpenConns": 301}})");
  auto changed_list = load(R"({"SqlSettings": {"DataSourceReplicas": ["x"]}})");
  ASSERT_TRUE(omitted.ok() && explicit_defaults.ok() && changed.ok() && changed_list.ok());
  EXPECT_EQ(omitted.value.hash, explicit_defaults.value.hash);
  EXPECT_NE(omitted.value.hash, changed.value.hash);
  EXPECT_NE(omitted.value.hash, changed_list.value.hash);
}

TEST(ConfigJson, RoundTripsThroughTheLoader) {
  auto r = load(R"({"SqlSettings": {"DataSourceReplicas": ["a", "b \"quoted\""]}, "JobSettings": {"RunJobs": false}})");
  ASSERT_TRUE(r.ok());
  const std::string json = to_json(r.value.config);
  auto again = load(json);
  ASSERT_TRUE(again.ok()) << again.error.text();
  EXPECT_EQ(to_json(again.value.config), json);
  EXPECT_EQ(again.value.hash, r.value.hash);
}

TEST(ConfigDocument, KeepsWhatChorusDoesNotKnowAndTheHashCoversIt) {
  const std::string known = R"({"TeamSettings": {"SiteName": "A"}})";
  const std::string with = R"({"TeamSettings": {"SiteName": "A", "CustomBrandText": "x"},
                              "PluginSettings": {"Enable": true, "Plugins": {"p": {"b": 2, "a": [1, {"z": null}]}}}})";
  const std::string other = R"({"TeamSettings": {"SiteName": "A", "CustomBrandText": "y"},
                               "PluginSettings": {"Enable": true, "Plugins": {"p": {"b": 2, "a": [1, {"z": null}]}}}})";
  auto k = load(known), w = load(with), o = load(other);
  ASSERT_TRUE(k.ok() && w.ok() && o.ok());
  // A file of known settings alone hashes as before the document existed.
  EXPECT_EQ(k.value.hash, config_hash(k.value.file_config));
  EXPECT_NE(w.value.hash, k.value.hash) << "unknown settings count";
  EXPECT_NE(w.value.hash, o.value.hash) << "a difference in an unknown setting shows";
  EXPECT_EQ(load(w.value.document).value.hash, w.value.hash) << "the document loads to the same hash";
  // The document holds every setting: the known ones at their values, the unknown ones as written.
  const std::string doc = w.value.document;
  EXPECT_NE(doc.find(R"("CustomBrandText":"x")"), std::string::npos) << doc;
  EXPECT_NE(doc.find(R"("Plugins":{"p":{"a":[1,{"z":null}],"b":2}})"), std::string::npos) << doc;
  EXPECT_NE(doc.find(R"("MaxOpenConns":300)"), std::string::npos) << doc;
  // ClusterSettings (what differs per node) stays out of the hash, unknown settings there too.
  auto c1 = load(R"({"ClusterSettings": {"GossipPort": 8074, "Whatever": 1}})");
  auto c2 = load(R"({"ClusterSettings": {"GossipPort": 8075, "Whatever": 2}})");
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ(c1.value.hash, c2.value.hash);
}

TEST(ConfigDocument, TheEffectiveDocumentCarriesEnvironmentValuesAndPrettyJsonParsesBack) {
  auto r = load(R"({"SqlSettings": {"MaxOpenConns": 10, "Unknown": "u"}})", {{"MM_SQLSETTINGS_MAXOPENCONNS", "20"}});
  ASSERT_TRUE(r.ok());
  const std::string effective = document_with(r.value.document, r.value.config);
  EXPECT_NE(effective.find(R"("MaxOpenConns":20)"), std::string::npos);
  EXPECT_NE(effective.find(R"("Unknown":"u")"), std::string::npos);
  EXPECT_NE(r.value.document.find(R"("MaxOpenConns":10)"), std::string::npos) << "the file's value stays the file's";
  const std::string pretty = pretty_json(r.value.document);
  EXPECT_NE(pretty.find("\n  \"SqlSettings\": {\n"), std::string::npos) << pretty.substr(0, 400);
  auto again = load(pretty);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value.document, r.value.document);
}

TEST(ConfigDocument, RestartOnlySettingsAreNamedWhenTheyDiffer) {
  Config a, b;
  EXPECT_TRUE(restart_settings_changed(a, b).empty());
  b.ServiceSettings.ListenAddress = ":9000";
  b.ClusterSettings.GossipPort = 9001;
  b.TeamSettings.SiteName = "live";  // applied at once: not named
  b.LogSettings.ConsoleLevel = "ERROR";
  EXPECT_EQ(restart_settings_changed(a, b),
            (std::vector<std::string>{"ServiceSettings.ListenAddress", "ClusterSettings.GossipPort"}));
}
