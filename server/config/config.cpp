#include "server/config/config.h"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>
#include <variant>

#include <fmt/format.h>

namespace chorus::config {

namespace json = boost::json;

namespace {

using Value = std::variant<bool, int64_t, std::string, StringList>;

enum class Kind { boolean, integer, string, string_list };
template <typename T>
constexpr Kind kind_of();
template <>
constexpr Kind kind_of<bool>() {
  return Kind::boolean;
}
template <>
constexpr Kind kind_of<int64_t>() {
  return Kind::integer;
}
template <>
constexpr Kind kind_of<std::string>() {
  return Kind::string;
}
template <>
constexpr Kind kind_of<StringList>() {
  return Kind::string_list;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::boolean:
      return "a boolean (true or false)";
    case Kind::integer:
      return "an integer";
    case Kind::string:
      return "a string";
    case Kind::string_list:
      return "a list of strings";
  }
  return "?";
}

struct Check {
  enum Type { any, range, one_of, nonempty, listen_address, log_level, clock_time } type = any;
  int64_t lo = 0, hi = 0;
  std::vector<std::string> choices;
};
Check any() { return {}; }
Check range(int64_t lo, int64_t hi) { return Check{Check::range, lo, hi, {}}; }
Check one_of(std::initializer_list<const char*> c) { return Check{Check::one_of, 0, 0, {c.begin(), c.end()}}; }
Check nonempty() { return Check{Check::nonempty, 0, 0, {}}; }
Check listen_address() { return Check{Check::listen_address, 0, 0, {}}; }
Check log_level() { return Check{Check::log_level, 0, 0, {}}; }
Check clock_time() { return Check{Check::clock_time, 0, 0, {}}; }

struct Spec {
  const char* section;
  const char* name;
  Kind kind;
  Check check;
  Value (*get)(const Config&);
  void (*set)(Config&, const Value&);
  std::string path() const { return std::string(section) + "." + name; }
};

const std::vector<Spec>& specs() {
#define CHORUS_SPEC(SECTION, TYPE, NAME, DEF, CHECK)            \
  Spec{#SECTION,                                                \
       #NAME,                                                   \
       kind_of<TYPE>(),                                         \
       CHECK,                                                   \
       [](const Config& c) -> Value { return c.SECTION.NAME; }, \
       [](Config& c, const Value& v) { c.SECTION.NAME = std::get<TYPE>(v); }},
  static const std::vector<Spec> all = {CHORUS_ALL_SETTINGS(CHORUS_SPEC)};
#undef CHORUS_SPEC
  return all;
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
  return out;
}

// Whether the value passes the setting's check, and if not, why.
Failure check_value(const Spec& spec, const Value& v) {
  const Check& c = spec.check;
  switch (c.type) {
    case Check::any:
      return {};
    case Check::range: {
      const int64_t n = std::get<int64_t>(v);
      if (n < c.lo || n > c.hi) return Failure{fmt::format("{} is out of range: expected {} to {}", n, c.lo, c.hi)};
      return {};
    }
    case Check::one_of: {
      const auto& s = std::get<std::string>(v);
      if (std::find(c.choices.begin(), c.choices.end(), s) != c.choices.end()) return {};
      std::vector<std::string> quoted;
      for (const auto& ch : c.choices) quoted.push_back("\"" + ch + "\"");
      return Failure{fmt::format("\"{}\" is not supported: expected one of {}", s, fmt::join(quoted, ", "))};
    }
    case Check::nonempty:
      return std::get<std::string>(v).empty() ? Failure{"must not be empty"} : Failure{};
    case Check::listen_address: {
      const auto& s = std::get<std::string>(v);
      const auto colon = s.rfind(':');
      if (colon == std::string::npos)
        return Failure{fmt::format("\"{}\" is not an address: expected \"host:port\" or \":port\"", s)};
      const std::string port = s.substr(colon + 1);
      int p = -1;
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
      if (ec != std::errc() || ptr != port.data() + port.size() || p < 0 || p > 65535)
        return Failure{fmt::format("\"{}\" has no valid port: expected \"host:port\" with a port from 0 to 65535", s)};
      return {};
    }
    case Check::log_level: {
      const std::string u = upper(std::get<std::string>(v));
      if (u == "DEBUG" || u == "INFO" || u == "WARN" || u == "ERROR") return {};
      return Failure{
          fmt::format("\"{}\" is not a log level: expected one of DEBUG, INFO, WARN, ERROR", std::get<std::string>(v))};
    }
    case Check::clock_time: {
      const auto& s = std::get<std::string>(v);
      int h = -1, m = -1;
      if (s.size() == 5 && s[2] == ':' && std::isdigit(s[0]) && std::isdigit(s[1]) && std::isdigit(s[3]) &&
          std::isdigit(s[4])) {
        h = (s[0] - '0') * 10 + (s[1] - '0');
        m = (s[3] - '0') * 10 + (s[4] - '0');
      }
      if (h < 0 || h > 23 || m < 0 || m > 59)
        return Failure{fmt::format("\"{}\" is not a time of day: expected \"HH:MM\"", s)};
      return {};
    }
  }
  return {};
}

std::string describe_json(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return v.get_bool() ? "true" : "false";
    case json::kind::int64:
    case json::kind::uint64:
      return "the number " + json::serialize(v);
    case json::kind::double_:
      return fmt::format("the number {}", v.get_double());
    case json::kind::string:
      return "the string " + json::serialize(v);
    case json::kind::array:
      return "a list";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

// Converts a JSON value to the setting's type, or says why it cannot.
Result<Value, Failure> from_json(const Spec& spec, const json::value& v) {
  switch (spec.kind) {
    case Kind::boolean:
      if (v.is_bool()) return {{}, Value{v.get_bool()}};
      break;
    case Kind::integer:
      if (v.is_int64()) return {{}, Value{v.get_int64()}};
      if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX))
        return {{}, Value{static_cast<int64_t>(v.get_uint64())}};
      break;
    case Kind::string:
      if (v.is_string()) return {{}, Value{std::string(v.get_string())}};
      break;
    case Kind::string_list:
      if (v.is_array()) {
        StringList list;
        for (const auto& item : v.get_array()) {
          if (!item.is_string()) {
            return {
                Failure{fmt::format("expected {}, got a list holding {}", kind_name(spec.kind), describe_json(item))}};
          }
          list.emplace_back(item.get_string());
        }
        return {{}, Value{std::move(list)}};
      }
      break;
  }
  return {Failure{fmt::format("expected {}, got {}", kind_name(spec.kind), describe_json(v))}};
}

// Mattermost's environment rules: booleans as Go's strconv.ParseBool, integers in base 10, lists split
// on spaces. Unlike Mattermost, a value that does not parse is an error, not silently ignored.
Result<Value, Failure> from_env(const Spec& spec, const std::string& text) {
  switch (spec.kind) {
    case Kind::boolean: {
      static const char* truthy[] = {"1", "t", "T", "TRUE", "true", "True"};
      static const char* falsy[] = {"0", "f", "F", "FALSE", "false", "False"};
      for (const char* t : truthy)
        if (text == t) return {{}, Value{true}};
      for (const char* f : falsy)
        if (text == f) return {{}, Value{false}};
      return {Failure{fmt::format("expected a boolean (true or false), got \"{}\"", text)}};
    }
    case Kind::integer: {
      int64_t n = 0;
      const char* begin = text.data();
      if (!text.empty() && text[0] == '+') ++begin;
      auto [ptr, ec] = std::from_chars(begin, text.data() + text.size(), n);
      if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        return {Failure{fmt::format("expected an integer, got \"{}\"", text)}};
      }
      return {{}, Value{n}};
    }
    case Kind::string:
      return {{}, Value{text}};
    case Kind::string_list: {
      StringList list;
      std::istringstream in(text);
      std::string item;
      while (in >> item) list.push_back(item);
      return {{}, Value{std::move(list)}};
    }
  }
  return {Failure{"unknown setting kind"}};
}

json::value to_json_value(const Value& v) {
  return std::visit(
      [](const auto& x) -> json::value {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, StringList>) {
          json::array a;
          for (const auto& s : x) a.emplace_back(json::string_view(s));
          return a;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return json::value(json::string_view(x));
        } else {
          return json::value(x);
        }
      },
      v);
}

// Objects with their keys sorted, at every depth: equal documents serialise to equal bytes.
json::value sorted_value(const json::value& v) {
  if (v.is_array()) {
    json::array a;
    for (const auto& x : v.get_array()) a.push_back(sorted_value(x));
    return a;
  }
  if (!v.is_object()) return v;
  std::vector<std::pair<std::string, const json::value*>> keys;
  for (const auto& [k, x] : v.get_object()) keys.emplace_back(std::string(k), &x);
  std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  json::object o;
  for (const auto& [k, x] : keys) o[k] = sorted_value(*x);
  return o;
}

std::string canonical(const json::value& v) { return json::serialize(sorted_value(v)); }

std::string sha256_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

void pretty(const json::value& v, int depth, std::string& out) {
  const std::string pad(static_cast<size_t>(depth + 1) * 2, ' '), close(static_cast<size_t>(depth) * 2, ' ');
  if (v.is_object() && !v.get_object().empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& [k, x] : v.get_object()) {
      if (!first) out += ",\n";
      first = false;
      out += pad + json::serialize(json::value(k)) + ": ";
      pretty(x, depth + 1, out);
    }
    out += "\n" + close + "}";
  } else if (v.is_array() && !v.get_array().empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& x : v.get_array()) {
      if (!first) out += ",\n";
      first = false;
      out += pad;
      pretty(x, depth + 1, out);
    }
    out += "\n" + close + "]";
  } else {
    out += json::serialize(v);
  }
}

std::pair<int, int> line_col(const std::string& text, size_t offset) {
  int line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

}  // namespace

std::string ConfigError::to_string() const {
  if (setting.empty()) return fmt::format("{}: {}", source, message);
  return fmt::format("{}: {}: {}", source, setting, message);
}

std::string ConfigErrors::text() const {
  std::string s;
  for (const auto& e : list) s += e.to_string() + "\n";
  return s;
}

LoadResult load_config_text(const std::string& text, const std::string& source_name, const Environment& environment) {
  LoadResult result;
  LoadedConfig loaded;

  // 1. Parse, with the position of a syntax error.
  json::value root;
  {
    json::stream_parser parser;
    boost::system::error_code ec;
    // write() (not write_some) also refuses anything after the first JSON value.
    size_t consumed = parser.write(text.data(), text.size(), ec);
    if (!ec) parser.finish(ec);
    if (ec) {
      auto [line, col] = line_col(text, consumed);
      result.error.list.push_back(ConfigError{"", fmt::format("{}:{}:{}", source_name, line, col),
                                              fmt::format("not valid JSON: {}", ec.message())});
      return result;
    }
    root = parser.release();
  }
  if (!root.is_object()) {
    result.error.list.push_back(
        ConfigError{"", source_name, fmt::format("expected a JSON object at the top, got {}", describe_json(root))});
    return result;
  }

  // 2. File values over defaults. What Chorus does not know is kept for the document.
  const auto& all = specs();
  json::object unknown;  // section -> whole section (unknown sections) or the unknown settings of a known one
  for (const auto& [section_key, section_value] : root.get_object()) {
    const std::string section(section_key);
    const bool known_section = std::any_of(all.begin(), all.end(), [&](const Spec& s) { return section == s.section; });
    if (!known_section) {
      loaded.warnings.push_back(fmt::format("{}: section {} is not used by Chorus (kept as it is)", source_name, section));
      unknown[section] = section_value;
      continue;
    }
    if (section_value.is_null()) continue;
    if (!section_value.is_object()) {
      result.error.list.push_back(
          ConfigError{section, source_name, fmt::format("expected an object, got {}", describe_json(section_value))});
      continue;
    }
    for (const auto& [name_key, value] : section_value.get_object()) {
      const std::string name(name_key);
      auto spec =
          std::find_if(all.begin(), all.end(), [&](const Spec& s) { return section == s.section && name == s.name; });
      if (spec == all.end()) {
        loaded.warnings.push_back(
            fmt::format("{}: setting {}.{} is not used by Chorus (kept as it is)", source_name, section, name));
        auto& kept = unknown[section];
        if (!kept.is_object()) kept = json::object{};
        kept.as_object()[name] = value;
        continue;
      }
      if (value.is_null()) continue;  // as in Go: null keeps the default
      auto v = from_json(*spec, value);
      if (v.ok()) v.error = check_value(*spec, v.value);
      if (v.ok()) {
        spec->set(loaded.file_config, v.value);
      } else {
        result.error.list.push_back(ConfigError{spec->path(), source_name, v.error.message});
      }
    }
  }

  // 3. Environment over file: MM_<SECTION>_<SETTING>, case-insensitive.
  loaded.config = loaded.file_config;
  for (const auto& [key, text_value] : environment) {
    const std::string name = upper(key);
    if (name.rfind("MM_", 0) != 0) continue;
    const std::string rest = name.substr(3);
    const auto underscore = rest.find('_');
    const std::string section = rest.substr(0, underscore);
    const std::string setting = underscore == std::string::npos ? "" : rest.substr(underscore + 1);
    auto spec = std::find_if(all.begin(), all.end(),
                             [&](const Spec& s) { return upper(s.section) == section && upper(s.name) == setting; });
    if (spec == all.end()) {
      const bool known_section =
          std::any_of(all.begin(), all.end(), [&](const Spec& s) { return upper(s.section) == section; });
      if (known_section)
        loaded.warnings.push_back(fmt::format("environment {}: names no setting Chorus uses (ignored)", key));
      continue;
    }
    auto v = from_env(*spec, text_value);
    if (v.ok()) v.error = check_value(*spec, v.value);
    if (v.ok()) {
      spec->set(loaded.config, v.value);
      loaded.overridden.push_back(spec->path());
    } else {
      result.error.list.push_back(ConfigError{spec->path(), "environment " + key, v.error.message});
    }
  }

  // Settings that only make sense together.
  if (const auto& fs = loaded.config.FileSettings; fs.DriverName == "amazons3") {
    if (fs.AmazonS3Bucket.empty())
      result.error.list.push_back(ConfigError{"FileSettings.AmazonS3Bucket", source_name,
                                              "must name a bucket when FileSettings.DriverName is \"amazons3\""});
    if (fs.AmazonS3Endpoint.empty())
      result.error.list.push_back(ConfigError{"FileSettings.AmazonS3Endpoint", source_name,
                                              "must name the S3 host (host or host:port) when DriverName is \"amazons3\""});
  }
  if (!result.error.list.empty()) return result;
  {
    json::value doc = json::parse(to_json(loaded.file_config));
    for (auto& [section, value] : unknown) {
      json::value& target = doc.as_object()[section];
      if (target.is_object() && value.is_object())
        for (auto& [name, v] : value.as_object()) target.as_object()[name] = v;
      else
        target = value;
    }
    loaded.document = canonical(doc);
  }
  loaded.hash = document_hash(loaded.document);
  result.value = std::move(loaded);
  return result;
}

LoadResult load_config_file(const std::string& path, const Environment& environment) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.error.list.push_back(ConfigError{"", path, "cannot open the config file (missing or unreadable)"});
    return r;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return load_config_text(buf.str(), path, environment);
}

std::string to_json(const Config& config, bool include_cluster_settings) {
  // Sorted sections and settings: a canonical form, so equal configs serialise to equal bytes.
  std::map<std::string, std::map<std::string, const Spec*>> sorted;
  for (const auto& s : specs()) {
    if (!include_cluster_settings && std::string_view(s.section) == "ClusterSettings") continue;
    sorted[s.section][s.name] = &s;
  }
  json::object root;
  for (const auto& [section, settings] : sorted) {
    json::object obj;
    for (const auto& [name, spec] : settings) obj[name] = to_json_value(spec->get(config));
    root[section] = std::move(obj);
  }
  return json::serialize(root);
}

std::string config_hash(const Config& config) { return sha256_hex(to_json(config, /*include_cluster_settings=*/false)); }

std::string document_hash(const std::string& document) {
  boost::system::error_code ec;
  json::value doc = json::parse(document, ec);
  if (ec || !doc.is_object()) return sha256_hex(document);
  doc.as_object().erase("ClusterSettings");
  return sha256_hex(canonical(doc));
}

std::string document_with(const std::string& document, const Config& config) {
  boost::system::error_code ec;
  json::value doc = json::parse(document, ec);
  if (ec || !doc.is_object()) doc = json::object{};
  for (const auto& s : specs()) {
    json::value& section = doc.as_object()[s.section];
    if (!section.is_object()) section = json::object{};
    section.as_object()[s.name] = to_json_value(s.get(config));
  }
  return canonical(doc);
}

std::string pretty_json(const std::string& json_text) {
  boost::system::error_code ec;
  const json::value v = json::parse(json_text, ec);
  if (ec) return json_text;
  std::string out;
  pretty(v, 0, out);
  return out + "\n";
}

std::vector<std::string> restart_settings_changed(const Config& a, const Config& b) {
  static const char* const kRestart[] = {
      "ServiceSettings.ListenAddress",        "ServiceSettings.ReadTimeout",
      "ServiceSettings.WriteTimeout",         "ServiceSettings.IdleTimeout",
      "ServiceSettings.MaximumPayloadSizeBytes", "ServiceSettings.MaximumURLLength",
      "ServiceSettings.EnableLocalMode",      "ServiceSettings.LocalModeSocketLocation",
      "SqlSettings.DriverName",               "ClusterSettings.Enable",
      "ClusterSettings.ClusterName",          "ClusterSettings.OverrideHostname",
      "ClusterSettings.NetworkInterface",     "ClusterSettings.BindAddress",
      "ClusterSettings.AdvertiseAddress",     "ClusterSettings.UseIpAddress",
      "ClusterSettings.GossipPort",           "ClusterSettings.EnableExperimentalGossipEncryption",
      "FileSettings.DriverName",              "FileSettings.Directory",
      "FileSettings.AmazonS3Bucket",          "FileSettings.AmazonS3Endpoint",
      "FileSettings.AmazonS3Region",          "FileSettings.AmazonS3AccessKeyId",
      "FileSettings.AmazonS3SecretAccessKey", "FileSettings.AmazonS3SSL",
      "FileSettings.AmazonS3PathPrefix",      "FileSettings.AmazonS3RequestTimeoutMilliseconds",
      "MetricsSettings.Enable",               "MetricsSettings.ListenAddress",
      "LogSettings.EnableFile",               "LogSettings.FileLocation",
  };
  std::vector<std::string> changed;
  for (const char* path : kRestart)
    for (const auto& s : specs())
      if (s.path() == path && s.get(a) != s.get(b)) changed.push_back(path);
  return changed;
}

}  // namespace chorus::config
