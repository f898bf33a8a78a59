// What the targets share: cutting an input into steps, reading small numbers off a step, and writing
// the seed corpus.
//
// A target that runs a sequence of steps (frames from peers, client messages, requests) takes its input
// as steps separated by kSep: a separator survives the fuzzer's insertions and deletions far better than
// length prefixes do, and seeds stay easy to write. Each step usually begins with a byte or two that say
// what to do with the rest.
//
// Seeds: every target writes its own seed inputs (built with the real encoders, so they are real frames
// and real requests) when the environment variable CHORUS_FUZZ_WRITE_SEEDS names a directory; fuzz/run.sh
// seeds does it for all of them into fuzz/corpus/<target>/.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chorus::fuzz {

inline constexpr std::string_view kSep = "#~#";

inline std::vector<std::span<const uint8_t>> split_steps(std::span<const uint8_t> data, size_t max_steps = 256) {
  std::vector<std::span<const uint8_t>> out;
  const std::string_view all(reinterpret_cast<const char*>(data.data()), data.size());
  size_t pos = 0;
  while (out.size() < max_steps) {
    const size_t at = all.find(kSep, pos);
    const size_t end = at == std::string_view::npos ? all.size() : at;
    out.push_back(data.subspan(pos, end - pos));
    if (at == std::string_view::npos) break;
    pos = at + kSep.size();
  }
  return out;
}

// Reads a step front to back; past its end every read gives 0 and rest() is empty.
class StepReader {
 public:
  explicit StepReader(std::span<const uint8_t> step) : s_(step) {}
  uint8_t u8() { return pos_ < s_.size() ? s_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return u16() | (static_cast<uint32_t>(u16()) << 16); }
  std::span<const uint8_t> rest() { return s_.subspan(std::min(pos_, s_.size())); }
  std::string rest_string() {
    auto r = rest();
    return std::string(reinterpret_cast<const char*>(r.data()), r.size());
  }

 private:
  std::span<const uint8_t> s_;
  size_t pos_ = 0;
};

inline std::string as_string(std::span<const uint8_t> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }
inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Builds a stepped input: steps joined by kSep.
class InputBuilder {
 public:
  InputBuilder& step(std::string_view bytes) {
    if (!first_) out_ += kSep;
    first_ = false;
    out_ += bytes;
    return *this;
  }
  InputBuilder& step(std::span<const uint8_t> bytes) {
    return step(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  // A step that begins with header bytes, then the payload.
  InputBuilder& step(std::initializer_list<uint8_t> head, std::span<const uint8_t> payload = {}) {
    std::string s(head.begin(), head.end());
    s.append(reinterpret_cast<const char*>(payload.data()), payload.size());
    return step(std::string_view(s));
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
  bool first_ = true;
};

// Seeds: set by seeds_requested() when the run only writes the corpus.
class SeedWriter {
 public:
  explicit SeedWriter(std::string dir) : dir_(std::move(dir)) { std::filesystem::create_directories(dir_); }
  void add(const std::string& name, std::string_view bytes) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ++count_;
  }
  void add(const std::string& name, std::span<const uint8_t> bytes) {
    add(name, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  size_t count() const { return count_; }

 private:
  std::string dir_;
  size_t count_ = 0;
};

// Call from LLVMFuzzerInitialize: with CHORUS_FUZZ_WRITE_SEEDS=<dir> set, writes the target's seeds there
// and exits; otherwise returns and fuzzing goes on.
template <class F>
void maybe_write_seeds(const char* target, F write) {
  const char* dir = std::getenv("CHORUS_FUZZ_WRITE_SEEDS");
  if (!dir || !*dir) return;
  SeedWriter w(dir);
  write(w);
  std::fprintf(stderr, "%s: wrote %zu seeds to %s\n", target, w.count(), dir);
  std::exit(0);
}

// A failed property of a target (not a crash of the code under test, but as serious): print and abort,
// so libFuzzer keeps the input.
[[noreturn]] inline void property_failed(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz property failed: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace chorus::fuzz
