// Frame encode/decode throughput on the gossip wire format, side by side with a plain memcpy of the
// same bytes (the floor any framing pays), so the report can state framing cost as a ratio.
#include <benchmark/benchmark.h>

#include <cstring>

#include "server/core/frame.h"
#include "server/core/transport.h"

using namespace chorus;

namespace {

std::vector<uint8_t> payload_of(size_t n) { return std::vector<uint8_t>(n, 0x5a); }

void BM_FrameEncode(benchmark::State& state) {
  const auto payload = payload_of(static_cast<size_t>(state.range(0)));
  std::vector<uint8_t> out;
  out.reserve(payload.size() + 8);
  for (auto _ : state) {
    out.clear();
    encode_frame(payload, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(payload.size()));
}

// Decoding a stream of 64 frames fed in 4 KiB reads, as a socket delivers them.
void BM_FrameDecodeStream(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> stream;
  for (int i = 0; i < 64; ++i) encode_frame(payload_of(n), stream);
  uint64_t frames = 0;
  for (auto _ : state) {
    FrameDecoder d(kDefaultFrameSizeMax);
    for (size_t pos = 0; pos < stream.size(); pos += 4096) {
      const size_t len = std::min<size_t>(4096, stream.size() - pos);
      d.feed(std::span<const uint8_t>(stream.data() + pos, len), [&](std::span<const uint8_t> f) {
        benchmark::DoNotOptimize(f.data());
        ++frames;
      });
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 64 * static_cast<int64_t>(n));
  state.counters["frames_per_s"] = benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
}

void BM_MemcpyBaseline(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto src = payload_of(64 * (n + 4));
  std::vector<uint8_t> dst(src.size());
  for (auto _ : state) {
    for (size_t pos = 0; pos < src.size(); pos += 4096)
      std::memcpy(dst.data() + pos, src.data() + pos, std::min<size_t>(4096, src.size() - pos));
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 64 * static_cast<int64_t>(n));
}

BENCHMARK(BM_FrameEncode)->Arg(64)->Arg(1024)->Arg(65536);
BENCHMARK(BM_FrameDecodeStream)->Arg(64)->Arg(1024)->Arg(65536);
BENCHMARK(BM_MemcpyBaseline)->Arg(64)->Arg(1024)->Arg(65536);

}  // namespace
