// The FileStore on S3 or an S3-compatible server (MinIO, s3rver): FileSettings.DriverName "amazons3".
// Objects are `<AmazonS3PathPrefix>/<path>` in AmazonS3Bucket, addressed path-style
// (http[s]://<AmazonS3Endpoint>/<bucket>/<key>) and signed with AWS Signature Version 4 (AmazonS3Region,
// AmazonS3AccessKeyId, AmazonS3SecretAccessKey; unsigned payloads are not used: every request carries
// its body's SHA-256). AmazonS3SSL picks HTTPS (the server's certificate is verified against the system's
// CAs). Each call is one HTTP request on a worker of run_blocking (off the node's loop), bounded by
// AmazonS3RequestTimeoutMilliseconds; completions come back on the loop. Only server/runtime includes it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "server/config/config.h"
#include "server/core/env.h"

namespace chorus::runtime {

struct S3Settings {
  std::string bucket, endpoint, region = "us-east-1", access_key, secret_key, prefix;
  bool ssl = true;
  int64_t timeout_ms = 30'000;
  static S3Settings from(const config::FileSettings& fs);
};

class S3Files final : public FileStore {
 public:
  S3Files(Env& env, S3Settings settings) : env_(env), s_(std::move(settings)) {}
  void write(const std::string& path, std::string data, std::function<void(std::string)> done) override;
  void read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) override;
  void remove(const std::string& path, std::function<void(std::string)> done) override;

  // One signed request, synchronously (tests; the FileStore calls run it on a worker). status 0: it
  // did not get an answer (error says why).
  struct Answer {
    int status = 0;
    std::string body, error;
  };
  static Answer request(const S3Settings& s, const std::string& method, const std::string& key,
                        const std::string& body, int64_t now_unix_seconds);

 private:
  std::string key(const std::string& path) const;
  Env& env_;
  S3Settings s_;
};

// AWS Signature Version 4, exposed for its test against AWS's published example.
struct SigV4Request {
  std::string method, host, path;  // path: the canonical URI, already percent-encoded
  std::string payload_sha256_hex;
  std::string amz_date;  // YYYYMMDD'T'HHMMSS'Z'
  // Headers signed besides host, x-amz-content-sha256 and x-amz-date (lower-case names).
  std::vector<std::pair<std::string, std::string>> extra_headers = {};
};
std::string sigv4_authorization(const SigV4Request& r, const std::string& region, const std::string& service,
                                 const std::string& access_key, const std::string& secret_key);
std::string sha256_hex(const std::string& data);
// Percent-encoding of an S3 key for the URI: unreserved characters and '/' kept.
std::string uri_encode_path(const std::string& path);

}  // namespace chorus::runtime
