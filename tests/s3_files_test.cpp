// The S3 file store against a real S3-compatible server (s3rver from npm, tests/js/package.json), started on
// loopback by the test and stopped at its end: objects written, read back byte for byte (binary and 5 MB),
// removed; an unknown key, a missing bucket and no server are clear errors. s3rver does not check V4
// signatures, so the signing is also checked against AWS's worked example.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "server/runtime/s3_files.h"
#include "tests/child_process.h"
#include "tests/free_port.h"
#include "tests/temp_dir.h"

using namespace chorus;
using chorus::runtime::S3Files;
using chorus::runtime::S3Settings;
using chorus::testing::Child;
using chorus::testing::ChildOptions;
using chorus::testing::accepts;
using chorus::testing::wait_ms;

namespace {

class S3 : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string s3rver = std::string(CHORUS_SOURCE_DIR) + "/tests/js/node_modules/s3rver/bin/s3rver.js";
    ASSERT_TRUE(std::filesystem::exists(s3rver)) << "s3rver is not installed: run `make js-deps`";
    ASSERT_EQ(::access("/usr/bin/node", X_OK), 0) << "node is not installed (scripts/install-deps.sh installs it)";
    port_ = chorus::testing::free_port();
    server_ = std::make_unique<Child>(
        std::vector<std::string>{"/usr/bin/node", s3rver, "-d", dir_.path(), "-a", "127.0.0.1", "-p",
                                 std::to_string(port_), "--configure-bucket", "chorus", "--silent"},
        std::vector<std::string>{}, ChildOptions{.output_file = dir_.path() + "/s3rver.log", .null_stdin = true});
    ASSERT_GE(wait_ms([&] { return accepts(port_); }, 10'000), 0) << "s3rver did not listen within 10 s:\n"
                                                                  << server_->output();
    s_.bucket = "chorus";
    s_.endpoint = "127.0.0.1:" + std::to_string(port_);
    s_.region = "us-east-1";
    s_.access_key = "S3RVER";
    s_.secret_key = "S3RVER";
    s_.ssl = false;
    s_.timeout_ms = 5'000;
  }
  S3Files::Answer call(const S3Settings& s, const std::string& method, const std::string& key,
                       const std::string& body = "") {
    return S3Files::request(s, method, key, body, ::time(nullptr));
  }
  chorus::testing::TempDir dir_{"chorus-s3-"};
  uint16_t port_ = 0;
  std::unique_ptr<Child> server_;
  S3Settings s_;
};

}  // namespace

TEST_F(S3, ObjectsAreWrittenReadBackAndRemovedWithSignedRequests) {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary += static_cast<char>(i);
  const std::string key = "20261202/teams/noteam/channels/c/users/u/f/a file (1).png";
  auto put = call(s_, "PUT", key, binary);
  ASSERT_EQ(put.status, 200) << put.error << put.body;
  auto got = call(s_, "GET", key);
  ASSERT_EQ(got.status, 200) << got.error << got.body;
  EXPECT_EQ(got.body, binary);

  std::string big(5 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  ASSERT_EQ(call(s_, "PUT", "big.bin", big).status, 200);
  EXPECT_EQ(call(s_, "GET", "big.bin").body, big);

  auto del = call(s_, "DELETE", key);
  EXPECT_EQ(del.status / 100, 2) << del.body;
  EXPECT_EQ(call(s_, "GET", key).status, 404);
}

TEST_F(S3, AnUnknownKeyOrAMissingBucketOrNoServerIsAClearError) {
  S3Settings wrong = s_;
  wrong.access_key = "NOT-A-KEY";
  auto refused = call(wrong, "PUT", "x.txt", "x");
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("InvalidAccessKeyId"), std::string::npos) << refused.body;
  EXPECT_EQ(call(s_, "GET", "x.txt").status, 404) << "nothing was written";

  S3Settings nobucket = s_;
  nobucket.bucket = "missing";
  EXPECT_EQ(call(nobucket, "PUT", "x.txt", "x").status, 404);

  S3Settings nobody = s_;
  nobody.endpoint = "127.0.0.1:" + std::to_string(chorus::testing::free_port());
  auto down = call(nobody, "GET", "x.txt");
  EXPECT_EQ(down.status, 0);
  EXPECT_NE(down.error.find("Connection refused"), std::string::npos) << down.error;
}

// s3rver does not check Version 4 signatures (it says so), so the signing is checked against AWS's own
// worked example ("Example: GET Object" of the S3 API reference, sig-v4-header-based-auth).
TEST(SigV4, TheSignatureIsAwssOwnExamples) {
  EXPECT_EQ(runtime::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(runtime::uri_encode_path("/b/a file+1.png"), "/b/a%20file%2B1.png");
  runtime::SigV4Request r{"GET", "examplebucket.s3.amazonaws.com", "/test.txt",
                          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "20130524T000000Z",
                          {{"range", "bytes=0-9"}}};
  EXPECT_EQ(runtime::sigv4_authorization(r, "us-east-1", "s3", "AKIAIOSFODNN7EXAMPLE",
                                         "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}
