// multipart/form-data (RFC 7578) as browsers and the apps send uploads: the boundary from the
// Content-Type, then parts with Content-Disposition (name, filename) and Content-Type headers. Strict: a
// body that does not follow the format is refused with the reason, never half-read.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::api {

struct Part {
  std::string name, filename, content_type;
  std::string data;
  bool is_file = false;  // it had a filename parameter
};

struct Multipart {
  std::vector<Part> parts;
  std::string error;  // set when the body is not multipart/form-data as the Content-Type says
};

// The boundary of a "multipart/form-data; boundary=..." Content-Type ("" when it is not one).
std::string multipart_boundary(std::string_view content_type);
// At most max_parts parts; each part's headers at most 8 KB.
Multipart parse_multipart(std::string_view body, const std::string& boundary, size_t max_parts = 64);

}  // namespace chorus::api
