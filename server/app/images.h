// Images of uploaded files (server/app/app_files.cpp): their size, and the thumbnail (at most 120x100) and
// preview (at most 1920 wide) the apps show, both JPEG, made with stb (libstb from Debian). Pure
// functions on bytes: no I/O.
#pragma once

#include <optional>
#include <string>

namespace chorus::app {

// Images above this many pixels get no previews (Mattermost's MaxImageResolution).
inline constexpr long long kMaxImagePixels = 33'177'600;

struct ImageSize {
  int width = 0, height = 0;
};
// The size of a PNG, JPEG, GIF or BMP image, read from its header; nullopt for anything else.
std::optional<ImageSize> image_size(const std::string& data);

struct Previews {
  std::string thumbnail, preview;  // JPEG
  ImageSize size;
};
// nullopt when the bytes are not an image stb decodes, or the image is above kMaxImagePixels.
std::optional<Previews> make_previews(const std::string& data);

// The MIME type Mattermost gives a file by its extension (lowercase, without the dot).
std::string mime_type_of(const std::string& extension);

}  // namespace chorus::app
