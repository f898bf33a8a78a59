#include "server/runtime/gossip_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cassert>
#include <memory>

namespace chorus::runtime {

namespace {

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// 12-byte GCM nonce: 4 zero bytes and the frame number, big-endian. Unique per connection key.
std::array<uint8_t, 12> gcm_nonce(uint64_t n) {
  std::array<uint8_t, 12> iv{};
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<uint8_t>(n >> (56 - 8 * i));
  return iv;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

}  // namespace

std::string hmac(const std::string& key, std::span<const uint8_t> data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hello_proof(const std::string& cluster_key, const Hello& hello) {
  const std::string text = "chorus-hello|" + hello.address + "|" + hello.cluster_name + "|" + hello.nonce + "|" +
                           (hello.encrypted ? "aes-256-gcm" : "hmac-sha256");
  return hmac(cluster_key, bytes_of(text));
}

std::string connection_key(const std::string& cluster_key, const std::string& nonce) {
  return hmac(cluster_key, bytes_of("chorus-conn|" + nonce));
}

std::string frame_tag(const std::string& key, uint64_t n, std::span<const uint8_t> body) {
  std::vector<uint8_t> data(8 + body.size());
  for (int i = 0; i < 8; ++i) data[i] = static_cast<uint8_t>(n >> (56 - 8 * i));
  std::copy(body.begin(), body.end(), data.begin() + 8);
  return hmac(key, data).substr(0, kFrameTagSize);
}

std::vector<uint8_t> seal_frame(const std::string& key, bool encrypt, uint64_t n, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kFrameTagSize + payload.size());
  if (!encrypt) {
    const std::string tag = frame_tag(key, n, payload);
    std::copy(tag.begin(), tag.end(), out.begin());
    std::copy(payload.begin(), payload.end(), out.begin() + kFrameTagSize);
    return out;
  }
  assert(key.size() == 32);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  const auto iv = gcm_nonce(n);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                      reinterpret_cast<const uint8_t*>(key.data()), iv.data()) == 1;
  ok = ok && EVP_EncryptUpdate(ctx.get(), out.data() + kFrameTagSize, &len, payload.data(),
                               static_cast<int>(payload.size())) == 1;
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), out.data() + kFrameTagSize + len, &len) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kFrameTagSize, out.data()) == 1;
  if (!ok) throw std::runtime_error("gossip: AES-256-GCM encryption failed (OpenSSL)");
  return out;
}

bool open_frame(const std::string& key, bool encrypted, uint64_t n, std::span<const uint8_t> frame,
                std::vector<uint8_t>& out) {
  if (frame.size() < kFrameTagSize) return false;
  const auto body = frame.subspan(kFrameTagSize);
  if (!encrypted) {
    const std::string expected = frame_tag(key, n, body);
    if (CRYPTO_memcmp(frame.data(), expected.data(), kFrameTagSize) != 0) return false;
    out.assign(body.begin(), body.end());
    return true;
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  const auto iv = gcm_nonce(n);
  out.resize(body.size());
  int len = 0;
  std::array<uint8_t, kFrameTagSize> tag;
  std::copy(frame.begin(), frame.begin() + kFrameTagSize, tag.begin());
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                      reinterpret_cast<const uint8_t*>(key.data()), iv.data()) == 1;
  ok = ok && EVP_DecryptUpdate(ctx.get(), out.data(), &len, body.data(), static_cast<int>(body.size())) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kFrameTagSize, tag.data()) == 1;
  ok = ok && EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) == 1;  // fails when the tag does not verify
  return ok;
}

}  // namespace chorus::runtime
