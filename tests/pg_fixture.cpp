#include "tests/pg_fixture.h"
#include "tests/free_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace chorus::testing {

namespace {

const char* kBin = "/usr/lib/postgresql/15/bin";

// Runs a shell command; returns (exit status, combined output).
std::pair<int, std::string> shell(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

PgCluster::PgCluster() {
  if (!std::filesystem::exists(std::string(kBin) + "/initdb"))
    throw std::runtime_error(
        "PostgreSQL 15 is not installed (no /usr/lib/postgresql/15/bin/initdb): apt-get install postgresql-15");
  char tmpl[] = "/tmp/chorus-pg-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("cannot create a temporary directory for PostgreSQL");
  root_ = tmpl;
  socket_dir_ = root_ + "/sock";
  std::filesystem::create_directories(socket_dir_);
  if (::geteuid() == 0) {
    // initdb refuses root: run the servers as a dedicated unprivileged user.
    user_ = "chorus-pg";
    auto [rc, out] = shell("id -u " + user_ +
                           " >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin " + user_);
    if (rc != 0) throw std::runtime_error("cannot create the user " + user_ + " for PostgreSQL: " + out);
    shell("chown -R " + user_ + " " + quote(root_));
    ::chmod(root_.c_str(), 0755);
  }
}

PgCluster::~PgCluster() {
  for (size_t i = 0; i < servers_.size(); ++i)
    if (servers_[i].running)
      shell(std::string(user_.empty() ? "" : "runuser -u " + user_ + " -- ") + kBin + "/pg_ctl -D " +
            quote(servers_[i].dir) + " -m immediate -w -t 10 stop");
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

std::string PgCluster::run_as_pg(const std::string& command) const {
  const std::string full = user_.empty() ? command : "runuser -u " + user_ + " -- " + command;
  auto [rc, out] = shell(full);
  if (rc != 0)
    throw std::runtime_error("PostgreSQL command failed (" + std::to_string(rc) + "): " + command + "\n" + out);
  return out;
}

void PgCluster::start_server(int i) {
  auto& s = servers_.at(i);
  try {
    run_as_pg(std::string(kBin) + "/pg_ctl -D " + quote(s.dir) + " -l " + quote(s.dir + ".log") + " -w -t 30 start");
  } catch (const std::exception& e) {
    std::ifstream log(s.dir + ".log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    throw std::runtime_error(std::string(e.what()) + "\nserver log:\n" + text);
  }
  s.running = true;
}

void PgCluster::start(int replicas) {
  // Primary.
  Server primary{root_ + "/s0", free_port(), false};
  servers_.push_back(primary);
  run_as_pg(std::string(kBin) + "/initdb -D " + quote(primary.dir) +
            " -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync");
  {
    std::ofstream conf(primary.dir + "/postgresql.conf", std::ios::app);
    conf << "listen_addresses = '127.0.0.1'\nport = " << primary.port << "\nunix_socket_directories = '" << socket_dir_
         << "'\n"
         << "wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\nfsync = off\nfull_page_writes = off\n"
         << "max_connections = 200\nshared_buffers = 32MB\nlog_min_messages = warning\n";
  }
  start_server(0);
  psql(0, "CREATE ROLE chorus LOGIN PASSWORD 'chorus-pw'", "postgres");
  psql(0, "CREATE DATABASE chorus OWNER chorus", "postgres");
  // Replicas: base backups of the primary, streaming from it.
  for (int r = 1; r <= replicas; ++r) {
    Server s{root_ + "/s" + std::to_string(r), free_port(), false};
    servers_.push_back(s);
    run_as_pg(std::string(kBin) + "/pg_basebackup -h " + quote(socket_dir_) + " -p " + std::to_string(primary.port) +
              " -U postgres -D " + quote(s.dir) + " -R -X stream -c fast --no-sync");
    {
      std::ofstream conf(s.dir + "/postgresql.conf", std::ios::app);
      conf << "port = " << s.port << "\n";
    }
    start_server(r);
  }
}

std::string PgCluster::create_database(const std::string& name) {
  psql(0, "CREATE DATABASE " + name + " OWNER chorus", "postgres");
  for (size_t r = 1; r < servers_.size(); ++r)
    if (servers_[r].running) wait_caught_up(static_cast<int>(r));  // usable on the replicas too
  return name;
}

std::string PgCluster::data_source(int server, const std::string& database, const std::string& password) const {
  return "postgres://chorus:" + password + "@127.0.0.1:" + std::to_string(servers_.at(server).port) + "/" + database +
         "?sslmode=disable&connect_timeout=5";
}

void PgCluster::stop(int server, bool crash) {
  run_as_pg(std::string(kBin) + "/pg_ctl -D " + quote(servers_.at(server).dir) +
            (crash ? " -m immediate" : " -m fast") + " -w -t 30 stop");
  servers_.at(server).running = false;
}

void PgCluster::restart(int server) { start_server(server); }

void PgCluster::promote(int server) {
  run_as_pg(std::string(kBin) + "/pg_ctl -D " + quote(servers_.at(server).dir) + " -w -t 30 promote");
}

void PgCluster::freeze(int server) {
  const std::string pidfile = servers_.at(server).dir + "/postmaster.pid";
  auto [rc, out] = shell("P=$(head -1 " + quote(pidfile) + ") && kill -STOP $P $(pgrep -P $P)");
  if (rc != 0) throw std::runtime_error("cannot freeze server " + std::to_string(server) + ": " + out);
}

void PgCluster::thaw(int server) {
  const std::string pidfile = servers_.at(server).dir + "/postmaster.pid";
  shell("P=$(head -1 " + quote(pidfile) + ") && kill -CONT $P $(pgrep -P $P)");
}

std::string PgCluster::psql(int server, const std::string& sql, const std::string& database) const {
  std::string out =
      run_as_pg("/usr/bin/psql -X -q -A -t -v ON_ERROR_STOP=1 -h " + quote(socket_dir_) + " -p " +
                std::to_string(servers_.at(server).port) + " -U postgres -d " + database + " -c " + quote(sql));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

void PgCluster::wait_caught_up(int replica, int timeout_ms) const {
  const std::string target = psql(0, "SELECT pg_current_wal_lsn()");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string ok = psql(replica, "SELECT pg_last_wal_replay_lsn() >= '" + target + "'::pg_lsn");
    if (ok == "t") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("replica " + std::to_string(replica) + " did not catch up with the primary within " +
                           std::to_string(timeout_ms) + " ms");
}

}  // namespace chorus::testing
