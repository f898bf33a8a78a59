#include "server/api/multipart.h"

#include <algorithm>
#include <cctype>

namespace chorus::api {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A parameter of a header value ("form-data; name=\"files\"; filename=\"a.png\""), unquoted; nullopt when absent.
std::optional<std::string> param(std::string_view value, std::string_view key) {
  size_t pos = 0;
  while (pos < value.size()) {
    size_t semi = pos;
    bool quoted = false;
    for (; semi < value.size(); ++semi) {
      if (value[semi] == '"' && (semi == 0 || value[semi - 1] != '\\')) quoted = !quoted;
      if (value[semi] == ';' && !quoted) break;
    }
    const std::string_view item = trim(value.substr(pos, semi - pos));
    pos = semi + 1;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    if (lower(trim(item.substr(0, eq))) != lower(key)) continue;
    std::string_view v = trim(item.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
      std::string out;
      for (size_t i = 1; i + 1 < v.size(); ++i) {
        if (v[i] == '\\' && i + 2 < v.size()) ++i;
        out += v[i];
      }
      return out;
    }
    return std::string(v);
  }
  return std::nullopt;
}

}  // namespace

std::string multipart_boundary(std::string_view content_type) {
  const auto semi = content_type.find(';');
  if (lower(trim(content_type.substr(0, semi))) != "multipart/form-data" || semi == std::string_view::npos) return "";
  const auto b = param(content_type.substr(semi + 1), "boundary");
  if (!b || b->empty() || b->size() > 70) return "";
  return *b;
}

Multipart parse_multipart(std::string_view body, const std::string& boundary, size_t max_parts) {
  Multipart m;
  auto fail = [&m](std::string why) {
    m.parts.clear();
    m.error = std::move(why);
    return m;
  };
  if (boundary.empty()) return fail("no boundary in the Content-Type");
  const std::string delim = "--" + boundary;
  // The first delimiter (a preamble before it is allowed and ignored).
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) return fail("the body has no boundary line");
  pos += delim.size();
  for (;;) {
    if (body.substr(pos, 2) == "--") return m;  // the close delimiter
    if (body.substr(pos, 2) != "\r\n") return fail("a boundary line is not followed by CRLF");
    pos += 2;
    if (m.parts.size() == max_parts) return fail("more than " + std::to_string(max_parts) + " parts");
    const size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos || headers_end - pos > 8192)
      return fail("a part's headers do not end (or exceed 8 KB)");
    Part part;
    bool disposition = false;
    std::string_view headers = body.substr(pos, headers_end - pos);
    while (!headers.empty()) {
      const size_t eol = std::min(headers.find("\r\n"), headers.size());
      const std::string_view line = headers.substr(0, eol);
      headers.remove_prefix(std::min(eol + 2, headers.size()));
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) return fail("a part header without ':'");
      const std::string name = lower(trim(line.substr(0, colon)));
      const std::string_view value = trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (lower(trim(value.substr(0, value.find(';')))) != "form-data")
          return fail("a part's Content-Disposition is not form-data");
        const auto n = param(value, "name");
        if (!n) return fail("a part's Content-Disposition has no name");
        part.name = *n;
        if (const auto f = param(value, "filename")) {
          part.filename = *f;
          part.is_file = true;
        }
        disposition = true;
      } else if (name == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!disposition) return fail("a part without Content-Disposition");
    const size_t data_start = headers_end + 4;
    const size_t next = body.find("\r\n" + delim, data_start);
    if (next == std::string_view::npos) return fail("the body ends inside a part (no closing boundary)");
    part.data = std::string(body.substr(data_start, next - data_start));
    m.parts.push_back(std::move(part));
    pos = next + 2 + delim.size();
  }
}

}  // namespace chorus::api
