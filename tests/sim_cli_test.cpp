// chorus-sim as a user types it: --version, an unknown subcommand, and `list` of the shipped scenarios
// (issue 20: these all said "A subcommand is required").
#include <gtest/gtest.h>

#include "tests/child_process.h"
#include "tests/temp_dir.h"

#include <fstream>

using chorus::testing::Child;

namespace {

struct Ran {
  int code;
  std::string out;
};

Ran sim(std::vector<std::string> args) {
  args.insert(args.begin(), CHORUS_SIM_PATH);
  Child c(args, {});
  const int code = c.wait_exit(20'000);
  return {code, c.output()};
}

}  // namespace

TEST(SimCli, VersionUnknownSubcommandsAndTheListOfScenarios) {
  auto version = sim({"--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out.rfind("chorus-sim ", 0), 0u) << version.out;

  auto unknown = sim({"frobnicate"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.out.find("unknown subcommand \"frobnicate\"; expected one of: run, replay"), std::string::npos)
      << unknown.out;

  auto list = sim({"list", std::string(CHORUS_SOURCE_DIR) + "/scenarios"});
  EXPECT_EQ(list.code, 0) << list.out;
  EXPECT_NE(list.out.find("random-faults.yaml (16 seeds)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("file-store-outage.yaml"), std::string::npos) << list.out;

  chorus::testing::TempDir dir("chorus-sim-list-");
  std::ofstream(dir.path() + "/broken.yaml") << "name: x\nduration: soon\n";
  auto broken = sim({"list", dir.path()});
  EXPECT_EQ(broken.code, 2);
  EXPECT_NE(broken.out.find("broken.yaml\n    does not parse:"), std::string::npos) << broken.out;
}
