#include "server/app/images.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

namespace chorus::app {

namespace {

constexpr int kThumbWidth = 120, kThumbHeight = 100, kPreviewWidth = 1920;

void append(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

// RGB pixels scaled to fit within max_w x max_h (never up), as JPEG.
std::string scaled_jpeg(const unsigned char* rgb, int w, int h, int max_w, int max_h) {
  const double scale = std::min({1.0, static_cast<double>(max_w) / w, static_cast<double>(max_h) / h});
  const int tw = std::max(1, static_cast<int>(w * scale)), th = std::max(1, static_cast<int>(h * scale));
  std::vector<unsigned char> out(static_cast<size_t>(tw) * static_cast<size_t>(th) * 3);
  if (tw == w && th == h)
    std::copy(rgb, rgb + out.size(), out.begin());
  else
    stbir_resize_uint8(rgb, w, h, 0, out.data(), tw, th, 0, 3);
  std::string jpeg;
  stbi_write_jpg_to_func(append, &jpeg, tw, th, 3, out.data(), 90);
  return jpeg;
}

}  // namespace

std::optional<ImageSize> image_size(const std::string& data) {
  if (data.empty() || data.size() > static_cast<size_t>(INT32_MAX)) return std::nullopt;
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(data.data()), static_cast<int>(data.size()), &w, &h, &n))
    return std::nullopt;
  if (w <= 0 || h <= 0) return std::nullopt;
  return ImageSize{w, h};
}

std::optional<Previews> make_previews(const std::string& data) {
  const auto size = image_size(data);
  if (!size || static_cast<long long>(size->width) * size->height > kMaxImagePixels) return std::nullopt;
  int w = 0, h = 0, n = 0;
  std::unique_ptr<unsigned char, void (*)(void*)> rgb(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(data.data()), static_cast<int>(data.size()), &w, &h, &n, 3),
      stbi_image_free);
  if (!rgb || w <= 0 || h <= 0) return std::nullopt;  // a header that lies, a truncated image
  Previews p;
  p.size = ImageSize{w, h};
  p.thumbnail = scaled_jpeg(rgb.get(), w, h, kThumbWidth, kThumbHeight);
  p.preview = scaled_jpeg(rgb.get(), w, h, kPreviewWidth, 1 << 30);
  if (p.thumbnail.empty() || p.preview.empty()) return std::nullopt;
  return p;
}

std::string mime_type_of(const std::string& extension) {
  static const std::map<std::string, std::string> types = {
      {"jpg", "image/jpeg"},   {"jpeg", "image/jpeg"}, {"png", "image/png"},        {"gif", "image/gif"},
      {"bmp", "image/bmp"},    {"webp", "image/webp"}, {"svg", "image/svg+xml"},    {"tif", "image/tiff"},
      {"tiff", "image/tiff"},  {"txt", "text/plain"},  {"md", "text/markdown"},     {"csv", "text/csv"},
      {"json", "application/json"}, {"pdf", "application/pdf"}, {"zip", "application/zip"},
      {"gz", "application/gzip"},   {"mp4", "video/mp4"},       {"mp3", "audio/mpeg"},
      {"doc", "application/msword"}, {"xls", "application/vnd.ms-excel"}};
  auto it = types.find(extension);
  return it == types.end() ? "application/octet-stream" : it->second;
}

}  // namespace chorus::app
