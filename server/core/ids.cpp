#include "server/core/ids.h"

namespace chorus {

namespace {
constexpr char kAlphabet[] = "ybndrfg8ejkmcpqxot1uwisza345h769";
}

std::string new_id(Random& random) {
  // 128 bits read 5 at a time from the top: 25 full characters, and a 26th from the last 3 bits.
  const __uint128_t x = (static_cast<__uint128_t>(random.next_u64()) << 64) | random.next_u64();
  std::string id(26, ' ');
  for (int i = 0; i < 25; ++i) id[i] = kAlphabet[static_cast<unsigned>(x >> (123 - 5 * i)) & 31];
  id[25] = kAlphabet[static_cast<unsigned>(x & 7) << 2];
  return id;
}

bool is_valid_id(const std::string& id) {
  if (id.size() != 26) return false;
  for (char c : id) {
    bool ok = false;
    for (const char* a = kAlphabet; *a; ++a) ok |= *a == c;
    if (!ok) return false;
  }
  return true;
}

}  // namespace chorus
