// The parts of a request target the HTTP server decodes: %XX escapes and the query string. Pure code, shared
// by the runtime (server/runtime/http_server.cpp) and the fuzz target of the HTTP path (fuzz/fuzz_http.cpp),
// so the target exercises the decoder the server runs.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace chorus {

// Decodes %XX (and '+' as a space when plus_is_space). A bad escape is kept as it stands when lenient,
// and makes it fail otherwise.
bool percent_decode(std::string_view in, bool plus_is_space, bool lenient, std::string& out);

// "a=1&b=x%20y&c" -> {a: 1, b: "x y", c: ""}; a repeated key keeps its last value; bad escapes are kept.
void parse_query(std::string_view query, std::map<std::string, std::string>& out);

}  // namespace chorus
