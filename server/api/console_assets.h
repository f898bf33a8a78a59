// The HA console's page, script and style sheet (server/api/console/ha.html, ha.js, ha.css), compiled in:
// server/api/console/embed.cmake generates their definitions (generated/console_assets.cpp in the build
// folder), and server/api/api_console.cpp serves them at /admin/ha, /admin/ha.js and /admin/ha.css.
#pragma once

#include <string_view>

namespace chorus::api {

extern const std::string_view kConsoleHtml, kConsoleJs, kConsoleCss;

}  // namespace chorus::api
