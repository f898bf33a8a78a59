// chorusctl against a real chorusd (docs/chorusctl.md): local mode without a login, auth login (a wrong
// password stores nothing), a non-admin refused, config set's type conversion (a bad value exits 2 and a
// value the server refuses exits 1, neither changes the config), ReadOnlyConfig on a cluster, cluster
// status as JSON, and the exit codes of an unreachable server and of bad usage. One node on SQLite in a
// temporary directory per test; every wait is short and bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/http_client.h"
#include "tests/temp_dir.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using chorus::testing::Child;
using chorus::testing::http_request;
using chorus::testing::HttpResponse;
using chorus::testing::TempDir;
using chorus::testing::wait_ms;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// What a chorusctl run printed and how it ended.
struct CtlRun {
  int code = -1;  // the exit code; -1 if it had to be killed (over 20 s), 128 + the signal if one killed it
  std::string out, err;
};
std::ostream& operator<<(std::ostream& os, const CtlRun& r) {
  return os << "exit " << r.code << "\n--- stdout\n" << r.out << "--- stderr\n" << r.err;
}

// Runs chorusctl with its stdout and stderr in files (stdin /dev/null), in an environment without the
// caller's MM_/MMCTL_/CHORUSCTL_ variables, HOME in `home`.
CtlRun run_chorusctl(const std::vector<std::string>& args, const std::vector<std::string>& extra_env,
                     const fs::path& scratch, const fs::path& home) {
  static int serial = 0;
  const std::string out_path = (scratch / ("ctl-" + std::to_string(++serial) + ".out")).string();
  const std::string err_path = (scratch / ("ctl-" + std::to_string(serial) + ".err")).string();
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    bool keep = true;
    for (const char* prefix : {"MM_", "MMCTL_", "CHORUSCTL_", "XDG_CONFIG_HOME=", "HOME="})
      keep = keep && kv.rfind(prefix, 0) != 0;
    if (keep) env_strings.push_back(kv);
  }
  env_strings.push_back("HOME=" + home.string());
  for (const auto& e : extra_env) env_strings.push_back(e);
  std::vector<std::string> argv_strings = {CHORUSCTL_PATH};
  for (const auto& a : args) argv_strings.push_back(a);
  std::vector<char*> argv, envp;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  CtlRun r;
  if (spawned != 0) {
    r.err = std::string("cannot run ") + CHORUSCTL_PATH + ": " + std::strerror(spawned);
    return r;
  }
  int status = 0;
  bool exited = false;
  wait_ms([&] { return exited = ::waitpid(pid, &status, WNOHANG) == pid; }, 20000);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  } else {
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

std::string str(const std::string& body, const char* key) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object() || !v.as_object().contains(key) || !v.as_object().at(key).is_string()) return "";
  return std::string(v.as_object().at(key).as_string());
}

json::value setting(const std::string& config, const char* section, const char* name) {
  boost::system::error_code ec;
  const json::value v = json::parse(config, ec);
  if (ec || !v.is_object()) return nullptr;
  const auto* s = v.as_object().if_contains(section);
  const auto* x = s && s->is_object() ? s->as_object().if_contains(name) : nullptr;
  return x ? *x : json::value(nullptr);
}

class Chorusctl : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("chorusctl-test-");
    home_ = fs::path(dir_->path()) / "home";
    fs::create_directories(home_);
    creds_ = (fs::path(dir_->path()) / "creds" / "config").string();
    socket_ = (fs::path(dir_->path()) / "local.socket").string();
    const auto ports = chorus::testing::free_ports(2);  // at once: one by one can repeat
    api_ = ports[0];
    gossip_ = ports[1];
  }
  void TearDown() override {
    if (node_) {
      node_->signal(SIGTERM);
      if (node_->wait_exit(3000) < 0) node_->kill_now();
    }
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(api_); }

  // One node on SQLite with local mode on; `cluster`: high availability on (a one-node cluster) with
  // ReadOnlyConfig. Returns once the API answers and the database is ready.
  void start_node(bool cluster) {
    const fs::path d(dir_->path());
    std::ofstream(d / "config.json") << R"({
      "ServiceSettings": {"ListenAddress": "127.0.0.1:)"
                                     << api_ << R"(", "EnableLocalMode": true,
                          "LocalModeSocketLocation": ")"
                                     << socket_ << R"("},
      "ClusterSettings": {"Enable": )"
                                     << (cluster ? "true" : "false") << R"(, "ReadOnlyConfig": true,
                          "ClusterName": "ctl", "OverrideHostname": "127.0.0.1", "BindAddress": "127.0.0.1",
                          "GossipPort": )"
                                     << gossip_ << R"(},
      "SqlSettings": {"DriverName": "sqlite3", "DataSource": ")"
                                     << (d / "chorus.db").string() << R"("},
      "FileSettings": {"Directory": ")"
                                     << (d / "files").string() << R"(/"},
      "LogSettings": {"ConsoleJson": false, "ConsoleLevel": "INFO", "EnableFile": false}
    })";
    // The node's output goes to a file: a pipe nobody reads while the test waits would fill up and stop it.
    chorus::testing::ChildOptions options;
    options.output_file = (d / "node.log").string();
    node_ = std::make_unique<Child>(std::vector<std::string>{CHORUSD_PATH, "--config", (d / "config.json").string()},
                                    std::vector<std::string>{}, options);
    ASSERT_GE(wait_ms([&] { return node_->find("API on http") >= 0; }, 5000), 0) << node_->output();
    // Ready once the health check passes (one made before the migrations finish fails, and its answer
    // stands for a second).
    ASSERT_GE(
        wait_ms(
            [&] {
              ::usleep(50000);
              return http_request(api_, "GET", "/api/v4/system/ping?get_server_status=true", "", "", 1000).status ==
                     200;
            },
            10000),
        0)
        << node_->output();
  }

  // The first user (a system admin) and its token, through the API.
  std::string make_admin() {
    const auto created =
        http_request(api_, "POST", "/api/v4/users",
                     R"({"username":"admin","email":"admin@example.com","password":"password-admin"})");
    EXPECT_EQ(created.status, 201) << created.body;
    return login("admin", "password-admin");
  }
  std::string login(const std::string& user, const std::string& password) {
    const auto r = http_request(api_, "POST", "/api/v4/users/login",
                                R"({"login_id":")" + user + R"(","password":")" + password + R"("})");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.header("Token");
  }
  std::string config(const std::string& token) {
    const auto r = http_request(api_, "GET", "/api/v4/config", "", token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }

  // chorusctl with this test's credentials file and a short timeout.
  CtlRun ctl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {"--config", creds_, "--timeout", "10"});
    return run_chorusctl(args, env, dir_->path(), home_);
  }
  CtlRun ctl_login(const std::string& user, const std::string& password, const std::string& name = "test") {
    return ctl({"auth", "login", url(), "--name", name, "--username", user, "--password", password});
  }

  std::unique_ptr<TempDir> dir_;
  fs::path home_;
  std::string creds_, socket_;
  uint16_t api_ = 0, gossip_ = 0;
  std::unique_ptr<Child> node_;
};

}  // namespace

TEST_F(Chorusctl, LocalModeCreatesTheFirstUserAndReadsStatusWithoutALogin) {
  start_node(false);
  ASSERT_GE(wait_ms([&] { return fs::exists(socket_); }, 5000), 0) << "no local socket at " << socket_ << "\n"
                                                                   << node_->output();
  CtlRun r = ctl({"--local", "--local-socket-path", socket_, "user", "create", "--email", "admin@example.com",
                  "--username", "admin", "--password", "password-admin"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("Created user admin"), std::string::npos) << r;
  r = ctl({"--local", "--local-socket-path", socket_, "system", "status"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("Server status: OK"), std::string::npos) << r;
  EXPECT_NE(r.out.find("Database status: OK"), std::string::npos) << r;
  // The environment instead of the flags, as mmctl.
  r = ctl({"--json", "system", "status"}, {"MMCTL_LOCAL=true", "MMCTL_LOCAL_SOCKET_PATH=" + socket_});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(str(r.out, "status"), "OK") << r;
  // The socket acts as a system admin: a second user (EnableOpenServer is off) and the config.
  r = ctl({"--local", "--local-socket-path", socket_, "user", "create", "--email", "bob@example.com", "--username",
           "bob", "--password", "password-bob"});
  EXPECT_EQ(r.code, 0) << r;
  r = ctl({"--local", "--local-socket-path", socket_, "config", "get", "SqlSettings.DriverName"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "sqlite3\n") << r;
  EXPECT_FALSE(fs::exists(creds_)) << "local mode stores no credentials";
  // The user made over the socket is real: it logs in over TCP, and as the first user it is a system admin.
  const std::string token = login("admin", "password-admin");
  const auto me = http_request(api_, "GET", "/api/v4/users/me", "", token);
  EXPECT_NE(str(me.body, "roles").find("system_admin"), std::string::npos) << me.body;
}

TEST_F(Chorusctl, AWrongPasswordExitsOneWithTheServersMessageAndStoresNothing) {
  start_node(false);
  make_admin();
  CtlRun r = ctl_login("admin", "wrong-password");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_NE(r.err.find("Error: Enter a valid email or username and/or password."), std::string::npos) << r;
  EXPECT_NE(r.err.find("HTTP 401"), std::string::npos) << r;
  EXPECT_FALSE(fs::exists(creds_)) << "a failed login stores nothing";

  r = ctl_login("admin", "password-admin");
  ASSERT_EQ(r.code, 0) << r;
  struct stat st {};
  ASSERT_EQ(::stat(creds_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the credentials file is the owner's only";
  const std::string stored = slurp(creds_);
  const json::value v = json::parse(stored);
  EXPECT_EQ(v.at("current").as_string(), "test");
  const auto& entry = v.at("credentials").at("test");
  EXPECT_EQ(entry.at("url").as_string(), url());
  EXPECT_EQ(entry.at("username").as_string(), "admin");
  const std::string token(entry.at("token").as_string());
  EXPECT_EQ(http_request(api_, "GET", "/api/v4/users/me", "", token).status, 200) << "the stored token works";
  // A second failed login (another name) leaves the file as it was.
  r = ctl_login("admin", "wrong-again", "other");
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_EQ(slurp(creds_), stored);

  r = ctl({"auth", "current"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("\"admin\""), std::string::npos) << r;
  r = ctl({"system", "status"});
  EXPECT_EQ(r.code, 0) << r;
  // Logout revokes the session on the server and forgets it here.
  r = ctl({"auth", "logout"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(http_request(api_, "GET", "/api/v4/users/me", "", token).status, 401);
  r = ctl({"system", "status"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("run chorusctl auth login first"), std::string::npos) << r;
}

TEST_F(Chorusctl, ANonAdminsConfigReloadExitsOne) {
  start_node(false);
  const std::string admin = make_admin();
  const auto bob = http_request(api_, "POST", "/api/v4/users",
                                R"({"username":"bob","email":"bob@example.com","password":"password-bob"})", admin);
  ASSERT_EQ(bob.status, 201) << bob.body;
  CtlRun r = ctl_login("bob", "password-bob");
  ASSERT_EQ(r.code, 0) << r;
  r = ctl({"config", "reload"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_NE(r.err.find("HTTP 403"), std::string::npos) << r;
}

TEST_F(Chorusctl, ConfigSetTakesTheSettingsTypeAndABadValueChangesNothing) {
  start_node(false);
  const std::string admin = make_admin();
  ASSERT_EQ(ctl_login("admin", "password-admin").code, 0);
  const std::string before = config(admin);

  // Not an integer: refused here (2), nothing sent.
  CtlRun r = ctl({"config", "set", "SqlSettings.MaxOpenConns", "abc"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("SqlSettings.MaxOpenConns is an integer"), std::string::npos) << r;
  r = ctl({"config", "set", "TeamSettings.EnableOpenServer", "maybe"});
  EXPECT_EQ(r.code, 2) << r;
  r = ctl({"config", "set", "NoSuchSettings.Thing", "1"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_EQ(config(admin), before);

  // An integer the server refuses (out of range): 1, with its reason, and nothing changed.
  r = ctl({"config", "set", "SqlSettings.MaxOpenConns", "0"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_NE(r.err.find("out of range"), std::string::npos) << r;
  EXPECT_EQ(config(admin), before);

  // Good values, converted to the settings' types.
  r = ctl({"config", "set", "SqlSettings.MaxOpenConns", "250"});
  EXPECT_EQ(r.code, 0) << r;
  r = ctl({"config", "set", "TeamSettings.EnableOpenServer", "true"});
  EXPECT_EQ(r.code, 0) << r;
  const std::string after = config(admin);
  EXPECT_EQ(setting(after, "SqlSettings", "MaxOpenConns"), json::value(250)) << after;
  EXPECT_EQ(setting(after, "TeamSettings", "EnableOpenServer"), json::value(true)) << after;
  r = ctl({"config", "get", "SqlSettings.MaxOpenConns"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "250\n");
}

TEST_F(Chorusctl, AnUnreachableServerExitsThreeAndBadUsageTwo) {
  const uint16_t dead = chorus::testing::free_port();
  const std::string dead_url = "http://127.0.0.1:" + std::to_string(dead);
  CtlRun r = ctl({"auth", "login", dead_url, "--name", "x", "--username", "admin", "--password", "password-admin"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_NE(r.err.find(dead_url), std::string::npos) << "the message names the address\n" << r;
  EXPECT_FALSE(fs::exists(creds_));
  r = ctl({"auth", "login", "https://127.0.0.1:" + std::to_string(dead), "--name", "x", "--username", "admin",
           "--password", "p"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("NGINX"), std::string::npos) << r;
  r = ctl({"system", "status"});
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_NE(r.err.find("run chorusctl auth login first"), std::string::npos) << r;
  const std::string missing = (fs::path(dir_->path()) / "none.socket").string();
  r = ctl({"--local", "--local-socket-path", missing, "system", "status"});
  EXPECT_EQ(r.code, 3) << r;
  EXPECT_NE(r.err.find(missing), std::string::npos) << r;

  // Stored credentials for a node that is gone.
  fs::create_directories(fs::path(creds_).parent_path());
  std::ofstream(creds_) << R"({"current":"gone","credentials":{"gone":{"url":")" << dead_url
                        << R"(","username":"admin","token":"x"}}})";
  r = ctl({"cluster", "status"});
  EXPECT_EQ(r.code, 3) << r;
  r = ctl({"config", "patch", (fs::path(dir_->path()) / "no-such-file.json").string()});
  EXPECT_EQ(r.code, 2) << "the file is read before the server is asked\n" << r;
  r = ctl({"no-such-command"});
  EXPECT_EQ(r.code, 2) << r;
  r = ctl({"config", "set", "SqlSettings.MaxOpenConns"});
  EXPECT_EQ(r.code, 2) << r;
  r = ctl({"--help"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("Exit codes:"), std::string::npos) << r;
}

TEST_F(Chorusctl, ReadOnlyConfigRefusesChangesAndClusterStatusListsTheNodeGreen) {
  start_node(true);
  const std::string admin = make_admin();
  ASSERT_EQ(ctl_login("admin", "password-admin").code, 0);

  // ReadOnlyConfig with high availability on: the server refuses (403) and says why; nothing changes.
  const std::string before = config(admin);
  CtlRun r = ctl({"config", "set", "TeamSettings.EnableOpenServer", "true"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_NE(r.err.find("ClusterSettings.ReadOnlyConfig"), std::string::npos) << r;
  EXPECT_NE(r.err.find("ent.cluster.save_config.error, HTTP 403"), std::string::npos) << r;
  EXPECT_EQ(config(admin), before);

  // A one-node cluster: its own row, green, the leader.
  wait_ms([&] { return (r = ctl({"--json", "cluster", "status"})).code == 0; }, 5000);
  ASSERT_EQ(r.code, 0) << r;
  boost::system::error_code ec;
  const json::value rows = json::parse(r.out, ec);
  ASSERT_FALSE(ec) << r;
  ASSERT_TRUE(rows.is_array()) << r;
  ASSERT_EQ(rows.as_array().size(), 1u) << r;
  const auto& self = rows.as_array()[0].as_object();
  EXPECT_EQ(self.at("status").as_string(), "green") << r;
  EXPECT_EQ(self.at("reason").as_string(), "") << r;
  EXPECT_EQ(self.at("state").as_string(), "self") << r;
  EXPECT_TRUE(self.at("leader").as_bool()) << r;
  EXPECT_TRUE(self.at("last_seen").is_int64()) << r;
  r = ctl({"cluster", "status"});
  EXPECT_EQ(r.code, 0) << r;
  EXPECT_NE(r.out.find("LAST SEEN"), std::string::npos) << r;
  EXPECT_NE(r.out.find("green"), std::string::npos) << r;
}
