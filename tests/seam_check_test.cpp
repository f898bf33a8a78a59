// The seam check: code above the seam (everything outside server/runtime, server/ctl and simulator/) must not read
// a clock, sleep, start a thread, draw its own randomness, read the environment or open a socket. It
// scans the source tree; a self-test proves each rule catches what it names.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace {

struct Rule {
  const char* what;
  std::regex pattern;
};

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"reads a clock",
       std::regex(
           R"(\b(steady_clock|system_clock|high_resolution_clock|utc_clock|file_clock)\b|\b(gettimeofday|clock_gettime|timespec_get)\s*\(|\btime\s*\(\s*(NULL|nullptr|0)?\s*\))")},
      {"sleeps", std::regex(R"(\b(sleep_for|sleep_until|usleep|nanosleep)\b|\bsleep\s*\()")},
      {"starts a thread",
       std::regex(R"(std::(thread|jthread|async)\b|\bpthread_create\b|\bfork\s*\(|#\s*include\s*<(thread|future)>)")},
      {"draws its own randomness",
       std::regex(
           R"(\brandom_device\b|(^|[^\w.>:])(rand|srand|srandom|getrandom|arc4random)\s*\(|std::s?rand\s*\(|/dev/u?random|\b(mt19937(_64)?|default_random_engine|minstd_rand)\b)")},
      {"reads the environment", std::regex(R"(\b(getenv|secure_getenv)\s*\(|\benviron\b)")},
      {"opens a socket",
       std::regex(
           R"(\bsocket\s*\(|#\s*include\s*<(sys/socket\.h|netinet/[a-z_]+\.h|arpa/inet\.h|netdb\.h)>|boost/asio|\basio::|\bgetaddrinfo\b)")},
  };
  return r;
}

// Drops // and /* */ comments (a comment may name what it avoids).
std::string strip_comments(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 2, "//") == 0) {
      while (i < text.size() && text[i] != '\n') ++i;
      if (i < text.size()) out += '\n';
    } else if (text.compare(i, 2, "/*") == 0) {
      const size_t end = text.find("*/", i + 2);
      for (size_t j = i; j < std::min(end, text.size()); ++j)
        if (text[j] == '\n') out += '\n';
      i = end == std::string::npos ? text.size() : end + 1;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Violations in one file's text, as "line N: <rule>: <line>".
std::vector<std::string> violations(const std::string& text) {
  std::vector<std::string> found;
  std::istringstream in(strip_comments(text));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    for (const auto& rule : rules())
      if (std::regex_search(line, rule.pattern))
        found.push_back("line " + std::to_string(n) + ": " + rule.what + ": " + line);
  }
  return found;
}

bool above_the_seam(const fs::path& relative) {
  const std::string p = relative.generic_string();
  // server/ctl: chorusctl, a client process of its own (not a node), on the production side like the runtime.
  if (p.rfind("server/runtime/", 0) == 0 || p.rfind("simulator/", 0) == 0 || p.rfind("server/ctl/", 0) == 0)
    return false;
  return p.rfind("server/", 0) == 0 || p.rfind("fault/", 0) == 0 || p.rfind("scenarios/", 0) == 0;
}

}  // namespace

TEST(SeamCheck, EachRuleCatchesWhatItNames) {
  const std::vector<std::string> offending = {
      "auto t = std::chrono::steady_clock::now();",
      "auto t = std::chrono::system_clock::now();",
      "gettimeofday(&tv, nullptr);",
      "time_t t = time(nullptr);",
      "std::this_thread::sleep_for(1s);",
      "usleep(10);",
      "std::thread worker([]{});",
      "auto f = std::async(work);",
      "#include <thread>",
      "std::random_device rd;",
      "int x = rand();",
      "int y = std::rand();",
      "long z = srandom(1);",
      "std::mt19937 gen(42);",
      "const char* v = getenv(\"HOME\");",
      "for (char** e = environ; *e; ++e) {}",
      "int fd = socket(AF_INET, SOCK_STREAM, 0);",
      "#include <sys/socket.h>",
      "#include <boost/asio/ip/tcp.hpp>",
      "boost::asio::ip::tcp::socket s(io);",
  };
  for (const auto& code : offending) EXPECT_FALSE(violations(code).empty()) << "missed: " << code;
  const std::vector<std::string> clean = {
      "MonoTime t = env_.now();",
      "env_.set_timer(Duration{1000}, [this] { tick(); });",
      "uint64_t x = env_.random().next_u64();",
      "env_.transport().send(peer, bytes);",
      "// std::chrono::steady_clock::now() is what we must not call",
      "/* getenv( */ int runtime = 0;",
      "int lifetime = 3;  uint64_t random_u64 = 0;",
  };
  for (const auto& code : clean) EXPECT_TRUE(violations(code).empty()) << "false alarm: " << code;
}

TEST(SeamCheck, CodeAboveTheSeamTakesEverythingFromItsEnv) {
  const fs::path root = CHORUS_SOURCE_DIR;
  ASSERT_TRUE(fs::exists(root / "server/core/env.h")) << "source tree not found at " << root;
  std::vector<std::string> report;
  size_t scanned = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    const fs::path rel = fs::relative(entry.path(), root);
    const std::string ext = rel.extension().string();
    if (ext != ".h" && ext != ".hpp" && ext != ".cpp" && ext != ".cc") continue;
    if (!above_the_seam(rel)) continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    ++scanned;
    for (const auto& v : violations(text.str())) report.push_back(rel.generic_string() + " " + v);
  }
  EXPECT_GT(scanned, 10u) << "the scan found too few files to be meaningful";
  std::string all;
  for (const auto& r : report) all += r + "\n";
  EXPECT_TRUE(report.empty()) << "code above the seam bypasses it (use the node's Env instead):\n" << all;
}
