#include "server/runtime/s3_files.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <ctime>
#include <limits>
#include <map>
#include <memory>

namespace chorus::runtime {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

S3Settings S3Settings::from(const config::FileSettings& fs) {
  S3Settings s;
  s.bucket = fs.AmazonS3Bucket;
  s.endpoint = fs.AmazonS3Endpoint;
  s.region = fs.AmazonS3Region.empty() ? "us-east-1" : fs.AmazonS3Region;
  s.access_key = fs.AmazonS3AccessKeyId;
  s.secret_key = fs.AmazonS3SecretAccessKey;
  s.prefix = fs.AmazonS3PathPrefix;
  s.ssl = fs.AmazonS3SSL;
  s.timeout_ms = fs.AmazonS3RequestTimeoutMilliseconds;
  return s;
}

// --- Signature Version 4

namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string hmac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &n);
  return std::string(reinterpret_cast<const char*>(out), n);
}

std::string amz_date(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

std::string sha256_hex(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out, &n, EVP_sha256(), nullptr);
  return hex(out, n);
}

std::string uri_encode_path(const std::string& path) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string sigv4_authorization(const SigV4Request& r, const std::string& region, const std::string& service,
                                 const std::string& access_key, const std::string& secret_key) {
  const std::string date = r.amz_date.substr(0, 8);
  std::map<std::string, std::string> headers{
      {"host", r.host}, {"x-amz-content-sha256", r.payload_sha256_hex}, {"x-amz-date", r.amz_date}};
  for (const auto& [k, v] : r.extra_headers) headers[k] = v;
  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : headers) {
    canonical_headers += k + ":" + v + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + k;
  }
  // Method, URI, query (none), headers, the signed headers' names, the payload's hash.
  const std::string canonical =
      r.method + "\n" + r.path + "\n\n" + canonical_headers + "\n" + signed_headers + "\n" + r.payload_sha256_hex;
  const std::string scope = date + "/" + region + "/" + service + "/aws4_request";
  const std::string to_sign = "AWS4-HMAC-SHA256\n" + r.amz_date + "\n" + scope + "\n" + sha256_hex(canonical);
  const std::string key = hmac(hmac(hmac(hmac("AWS4" + secret_key, date), region), service), "aws4_request");
  const std::string sig = hmac(key, to_sign);
  return "AWS4-HMAC-SHA256 Credential=" + access_key + "/" + scope + ",SignedHeaders=" + signed_headers +
         ",Signature=" + hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

// --- one request

S3Files::Answer S3Files::request(const S3Settings& s, const std::string& method, const std::string& key,
                                 const std::string& body, int64_t now_unix_seconds) {
  Answer a;
  std::string host = s.endpoint, port = s.ssl ? "443" : "80";
  if (const auto colon = host.rfind(':'); colon != std::string::npos && host.find(']') == std::string::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  const std::string path = uri_encode_path("/" + s.bucket + "/" + key);
  SigV4Request sr{method, s.endpoint, path, sha256_hex(body), amz_date(now_unix_seconds)};
  http::request<http::string_body> req{http::string_to_verb(method), path, 11};
  req.set(http::field::host, s.endpoint);
  req.set("x-amz-date", sr.amz_date);
  req.set("x-amz-content-sha256", sr.payload_sha256_hex);
  req.set(http::field::authorization, sigv4_authorization(sr, s.region, "s3", s.access_key, s.secret_key));
  req.set(http::field::user_agent, "chorus");
  req.body() = body;
  req.prepare_payload();
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    const auto endpoints = resolver.resolve(host, port);
    // Blocking calls bounded by the socket's timeouts (connect, send and receive each).
    auto bound = [&](tcp::socket& sock, const tcp::endpoint& ep) {
      sock.open(ep.protocol());
      timeval tv{static_cast<time_t>(s.timeout_ms / 1000), static_cast<suseconds_t>((s.timeout_ms % 1000) * 1000)};
      setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      sock.connect(ep);
    };
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    boost::beast::flat_buffer buffer;
    if (s.ssl) {
      asio::ssl::context ctx(asio::ssl::context::tls_client);
      ctx.set_default_verify_paths();
      ctx.set_verify_mode(asio::ssl::verify_peer);
      asio::ssl::stream<tcp::socket> stream(io, ctx);
      SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
      stream.set_verify_callback(asio::ssl::host_name_verification(host));
      bound(stream.next_layer(), *endpoints.begin());
      stream.handshake(asio::ssl::stream_base::client);
      http::write(stream, req);
      http::read(stream, buffer, parser);
    } else {
      tcp::socket sock(io);
      bound(sock, *endpoints.begin());
      http::write(sock, req);
      http::read(sock, buffer, parser);
    }
    a.status = static_cast<int>(parser.get().result_int());
    a.body = std::move(parser.get().body());
  } catch (const std::exception& e) {
    a.status = 0;
    a.error = std::string("S3 ") + method + " " + s.endpoint + path + ": " + e.what();
  }
  return a;
}

// --- the FileStore

std::string S3Files::key(const std::string& path) const {
  std::string prefix = s_.prefix;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return prefix.empty() ? path : prefix + "/" + path;
}

namespace {
bool safe_key(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  size_t pos = 0;
  while (pos <= path.size()) {
    const size_t end = std::min(path.find('/', pos), path.size());
    if (path.compare(pos, end - pos, "..") == 0 && end - pos == 2) return false;
    pos = end + 1;
  }
  return true;
}
std::string failure(const S3Files::Answer& a, const std::string& what) {
  if (a.status == 0) return a.error;
  return what + ": S3 answered " + std::to_string(a.status) + " " + a.body.substr(0, 200);
}
}  // namespace

void S3Files::write(const std::string& path, std::string data, std::function<void(std::string)> done) {
  if (!safe_key(path)) return done("refused file path \"" + path + "\"");
  auto out = std::make_shared<Answer>();
  const int64_t now = env_.wall_now().millis() / 1000;
  env_.run_blocking([s = s_, k = key(path), data = std::move(data), out, now] { *out = request(s, "PUT", k, data, now); },
                    [out, path, done = std::move(done)] {
                      done(out->status / 100 == 2 ? "" : failure(*out, "cannot write " + path));
                    });
}

void S3Files::read(const std::string& path, std::function<void(std::optional<std::string>, std::string)> done) {
  if (!safe_key(path)) return done(std::nullopt, "refused file path \"" + path + "\"");
  auto out = std::make_shared<Answer>();
  const int64_t now = env_.wall_now().millis() / 1000;
  env_.run_blocking([s = s_, k = key(path), out, now] { *out = request(s, "GET", k, "", now); },
                    [out, path, done = std::move(done)] {
                      if (out->status == 200) return done(std::move(out->body), "");
                      done(std::nullopt, failure(*out, "cannot read " + path));
                    });
}

void S3Files::remove(const std::string& path, std::function<void(std::string)> done) {
  if (!safe_key(path)) return done("refused file path \"" + path + "\"");
  auto out = std::make_shared<Answer>();
  const int64_t now = env_.wall_now().millis() / 1000;
  env_.run_blocking([s = s_, k = key(path), out, now] { *out = request(s, "DELETE", k, "", now); },
                    [out, path, done = std::move(done)] {
                      // 404: already gone (S3 itself answers 204 either way).
                      done(out->status / 100 == 2 || out->status == 404 ? "" : failure(*out, "cannot remove " + path));
                    });
}

}  // namespace chorus::runtime
