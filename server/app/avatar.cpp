#include "server/app/avatar.h"

#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <vector>

#include "server/app/model.h"

namespace chorus::app {

namespace {

constexpr int kSize = 128;

std::string initials(const User& u) {
  std::string out;
  auto first = [](const std::string& s) { return s.empty() ? '\0' : s[0]; };
  if (!u.first_name.empty() && !u.last_name.empty()) {
    out += first(u.first_name);
    out += first(u.last_name);
  } else {
    out = u.username.substr(0, std::min<size_t>(2, u.username.size()));
  }
  std::string printable;
  for (char c : out)
    if (c > ' ' && c < 127) printable += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return printable.empty() ? "?" : printable;
}

}  // namespace

std::string default_avatar_png(const User& user) {
  // The background: a hue from the id (FNV-1a), dark enough for white letters.
  uint32_t h = 2166136261u;
  for (unsigned char c : user.id) h = (h ^ c) * 16777619u;
  const uint8_t bg[3] = {static_cast<uint8_t>(40 + (h & 0x7F)), static_cast<uint8_t>(40 + ((h >> 8) & 0x7F)),
                         static_cast<uint8_t>(40 + ((h >> 16) & 0x7F))};
  std::vector<uint8_t> pixels(kSize * kSize * 3);
  for (size_t i = 0; i < pixels.size(); i += 3) std::copy(bg, bg + 3, pixels.begin() + static_cast<long>(i));

  // The letters: stb_easy_font's quads (a small bitmap font), scaled up and filled in white.
  std::string text = initials(user);
  std::vector<char> vertices(4096);
  unsigned char white[4] = {255, 255, 255, 255};
  const int quads = stb_easy_font_print(0, 0, text.data(), white, vertices.data(), static_cast<int>(vertices.size()));
  const float w = static_cast<float>(stb_easy_font_width(text.data())), height = 7.0f;
  const float scale = std::min(72.0f / std::max(w, 1.0f), 56.0f / height);
  const float ox = (kSize - w * scale) / 2, oy = (kSize - height * scale) / 2;
  for (int q = 0; q < quads; ++q) {
    const float* v = reinterpret_cast<const float*>(vertices.data() + static_cast<size_t>(q) * 64);
    // Vertices are 16 bytes (x, y, z, colour); a quad's first and third are opposite corners.
    const int x0 = static_cast<int>(ox + v[0] * scale), y0 = static_cast<int>(oy + v[1] * scale);
    const int x1 = static_cast<int>(ox + v[8] * scale), y1 = static_cast<int>(oy + v[9] * scale);
    for (int y = std::max(0, std::min(y0, y1)); y < std::min(kSize, std::max(y0, y1)); ++y)
      for (int x = std::max(0, std::min(x0, x1)); x < std::min(kSize, std::max(x0, x1)); ++x)
        std::fill_n(pixels.begin() + (static_cast<long>(y) * kSize + x) * 3, 3, uint8_t{255});
  }
  std::string png;
  stbi_write_png_to_func(
      [](void* context, void* data, int size) {
        static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
      },
      &png, kSize, kSize, 3, pixels.data(), kSize * 3);
  return png;
}

}  // namespace chorus::app
