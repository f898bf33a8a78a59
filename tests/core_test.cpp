// Pure pieces of server/core: the codec, the frame decoder, the Hello, backoff and the PRNG draws.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "server/core/assert.h"
#include "server/core/backoff.h"
#include "server/core/codec.h"
#include "server/core/env.h"
#include "server/core/frame.h"
#include "server/core/log.h"
#include "server/core/random.h"

using namespace chorus;

TEST(Codec, RoundTripsEveryType) {
  ByteWriter w;
  w.u8(7);
  w.u16(0xbeef);
  w.u32(0xdeadbeef);
  w.u64(0x0123456789abcdefULL);
  w.i64(-42);
  w.varint(300);
  w.varint(UINT64_MAX);
  w.str("hello");
  auto bytes = w.take();
  ByteReader r(bytes);
  EXPECT_EQ(r.u8(), 7);
  EXPECT_EQ(r.u16(), 0xbeef);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u64(), 0x0123456789abcdefULL);
  EXPECT_EQ(r.i64(), -42);
  EXPECT_EQ(r.varint(), 300u);
  EXPECT_EQ(r.varint(), UINT64_MAX);
  EXPECT_EQ(r.str(), "hello");
  EXPECT_TRUE(r.done());
}

TEST(Codec, TruncatedInputFailsAndStaysFailed) {
  std::vector<uint8_t> bytes = {1, 2, 3};
  ByteReader r(bytes);
  EXPECT_EQ(r.u64(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.u8(), 0u);  // no read succeeds after a failure
  EXPECT_FALSE(r.ok());
}

TEST(Codec, OverlongVarintAndOversizedStringFail) {
  std::vector<uint8_t> overlong(11, 0xff);
  ByteReader r1(overlong);
  r1.varint();
  EXPECT_FALSE(r1.ok());
  ByteWriter w;
  w.str(std::string(100, 'x'));
  auto bytes = w.take();
  ByteReader r2(bytes);
  r2.str(10);
  EXPECT_FALSE(r2.ok());
}

RC_GTEST_PROP(Codec, ReaderNeverReadsPastRandomInput, (std::vector<uint8_t> bytes)) {
  ByteReader r(bytes);
  while (r.ok() && r.remaining() > 0) {
    r.varint();
    r.str(64);
    r.u32();
  }
  RC_ASSERT(r.remaining() <= bytes.size());
}

TEST(Frame, EncodesBigEndianLength) {
  std::vector<uint8_t> payload = {9, 8, 7};
  auto f = encode_frame(payload);
  ASSERT_EQ(f.size(), 7u);
  EXPECT_EQ(f[0], 0);
  EXPECT_EQ(f[3], 3);
  EXPECT_EQ(f[4], 9);
}

// Any split of a stream of frames into chunks yields the same frames in order.
RC_GTEST_PROP(Frame, DecoderIsIndependentOfChunking,
              (std::vector<std::vector<uint8_t>> payloads, std::vector<uint8_t> cuts)) {
  std::vector<uint8_t> stream;
  for (const auto& p : payloads) encode_frame(p, stream);
  FrameDecoder d(1 << 20);
  std::vector<std::vector<uint8_t>> got;
  size_t pos = 0;
  size_t cut_index = 0;
  while (pos < stream.size()) {
    size_t n = cuts.empty() ? stream.size() : 1 + cuts[cut_index++ % cuts.size()] % 17;
    n = std::min(n, stream.size() - pos);
    auto err = d.feed(std::span<const uint8_t>(stream.data() + pos, n),
                      [&](std::span<const uint8_t> f) { got.emplace_back(f.begin(), f.end()); });
    RC_ASSERT(err == FrameDecoder::Error::none);
    pos += n;
  }
  RC_ASSERT(got == payloads);
  RC_ASSERT(!d.partial());
}

TEST(Frame, OversizedLengthIsRefusedBeforeBuffering) {
  FrameDecoder d(1024);
  std::vector<uint8_t> header = {0x7f, 0xff, 0xff, 0xff};
  int frames = 0;
  EXPECT_EQ(d.feed(header, [&](auto) { ++frames; }), FrameDecoder::Error::oversized);
  EXPECT_EQ(d.last_bad_length(), 0x7fffffffu);
  EXPECT_EQ(frames, 0);
  // The decoder stays failed.
  std::vector<uint8_t> more = {0, 0, 0, 0};
  EXPECT_EQ(d.feed(more, [&](auto) { ++frames; }), FrameDecoder::Error::oversized);
}

TEST(Frame, HalfAFrameIsPartial) {
  FrameDecoder d(1024);
  auto f = encode_frame(std::vector<uint8_t>(100, 1));
  int frames = 0;
  EXPECT_EQ(d.feed(std::span<const uint8_t>(f.data(), 50), [&](auto) { ++frames; }), FrameDecoder::Error::none);
  EXPECT_TRUE(d.partial());
  EXPECT_EQ(frames, 0);
  EXPECT_EQ(d.feed(std::span<const uint8_t>(f.data() + 50, f.size() - 50), [&](auto) { ++frames; }),
            FrameDecoder::Error::none);
  EXPECT_EQ(frames, 1);
  EXPECT_FALSE(d.partial());
}

TEST(Frame, ZeroLengthFrames) {
  FrameDecoder d(16);
  std::vector<uint8_t> stream;
  encode_frame({}, stream);
  encode_frame({}, stream);
  int frames = 0;
  EXPECT_EQ(d.feed(stream,
                   [&](auto f) {
                     EXPECT_TRUE(f.empty());
                     ++frames;
                   }),
            FrameDecoder::Error::none);
  EXPECT_EQ(frames, 2);
}

TEST(Hello, RoundTripAndRejections) {
  auto payload = encode_hello_payload(Hello{kWireVersion, "10.0.0.1:8074"});
  auto h = decode_hello_payload(payload);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->address, "10.0.0.1:8074");
  EXPECT_EQ(h->wire_version, kWireVersion);
  EXPECT_FALSE(h->encrypted);
  Hello sealed{kWireVersion, "a:1", "prod", "proof", std::string("\0\1nonce", 7), true};
  auto back = decode_hello_payload(encode_hello_payload(sealed));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->nonce, sealed.nonce);
  EXPECT_TRUE(back->encrypted);
  auto bad_flags = encode_hello_payload(sealed);
  bad_flags.back() = 7;
  EXPECT_FALSE(decode_hello_payload(bad_flags));
  auto bad_magic = payload;
  bad_magic[0] = 'X';
  EXPECT_FALSE(decode_hello_payload(bad_magic));
  auto trailing = payload;
  trailing.push_back(0);
  EXPECT_FALSE(decode_hello_payload(trailing));
  EXPECT_FALSE(decode_hello_payload(std::span<const uint8_t>(payload.data(), 5)));
  std::vector<uint8_t> http = {'G', 'E', 'T', ' ', '/'};
  EXPECT_FALSE(decode_hello_payload(http));
}

TEST(Backoff, GrowsToTheCapWithJitterAndResets) {
  Xoshiro256 rng(1);
  Backoff b(Duration{100'000}, Duration{1'000'000});
  int64_t ceiling = 100'000;
  for (int i = 0; i < 12; ++i) {
    const Duration d = b.next(rng);
    EXPECT_GE(d.count(), ceiling / 2);
    EXPECT_LE(d.count(), ceiling);
    ceiling = std::min<int64_t>(ceiling * 2, 1'000'000);
  }
  b.reset();
  EXPECT_LE(b.next(rng).count(), 100'000);
  // A huge base does not overflow on doubling.
  Backoff huge(Duration{int64_t{1} << 40}, Duration{int64_t{1} << 50});
  for (int i = 0; i < 100; ++i) EXPECT_LE(huge.next(rng).count(), int64_t{1} << 50);
}

TEST(Random, SameSeedSameSequenceAndUniformBounds) {
  Xoshiro256 a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    differs |= x != c.next_u64();
  }
  EXPECT_TRUE(differs);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 100000; ++i) counts[a.uniform(10)]++;
  for (int c10 : counts) EXPECT_NEAR(c10, 10000, 600);
  for (int i = 0; i < 1000; ++i) {
    const auto v = a.uniform_range(-5, 5);
    EXPECT_GE(v, -5);
    EXPECT_LE(v, 5);
  }
  // Extreme ranges do not overflow.
  for (int i = 0; i < 100; ++i) {
    a.uniform_range(INT64_MIN, INT64_MAX);
    const auto v = a.uniform_range(INT64_MIN, INT64_MIN + 1);
    EXPECT_LE(v, INT64_MIN + 1);
  }
  EXPECT_FALSE(a.chance(0));
  EXPECT_TRUE(a.chance(1));
}

TEST(Log, LinesCarryNodeAndSeamTime) {
  struct FixedClock : Clock {
    MonoTime now() const override { return MonoTime{1'500'000}; }
    WallTime wall_now() const override { return WallTime{1'767'225'600'123'000}; }
  } clock;
  struct Capture : LogSink {
    std::vector<std::string> lines;
    void write(const LogRecord& r) override { lines.push_back(format_log_line(r)); }
  } sink;
  Logger log("node7", clock, sink, LogLevel::info);
  log.debug("hidden {}", 1);
  log.warn("peer {} down", "x:1");
  ASSERT_EQ(sink.lines.size(), 1u);
  EXPECT_EQ(sink.lines[0], "2026-01-01T00:00:00.123Z      1.500 WARN  [node7] peer x:1 down");
  LogLevel l;
  EXPECT_TRUE(parse_log_level("debug", l));
  EXPECT_EQ(l, LogLevel::debug);
  EXPECT_FALSE(parse_log_level("verbose", l));
}

#include "server/core/data_source.h"

TEST(DataSource, PostgresUrlsInMattermostForm) {
  auto p = db::parse_data_source("postgres",
                                 "postgres://mmuser:p%40ss@db.example.com:5433/"
                                 "mattermost?sslmode=disable&connect_timeout=10&binary_parameters=yes");
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_EQ(p.value.user, "mmuser");
  EXPECT_EQ(p.value.password, "p@ss");
  EXPECT_EQ(p.value.host, "db.example.com");
  EXPECT_EQ(p.value.port, 5433);
  EXPECT_EQ(p.value.database, "mattermost");
  EXPECT_EQ(p.value.options.at("binary_parameters"), "yes");
  auto v6 = db::parse_data_source("postgres", "postgresql://u@[::1]:6000/db");
  ASSERT_TRUE(v6.ok()) << v6.error.message;
  EXPECT_EQ(v6.value.host, "::1");
  EXPECT_EQ(v6.value.port, 6000);
  EXPECT_EQ(db::parse_data_source("postgres", "postgres://db/x").value.host, "db");
}

TEST(DataSource, PasswordsNeverShowInRedactionsOrErrors) {
  // '@' and '/' inside an unencoded password: split at the last '@'.
  auto p = db::parse_data_source("postgres", "postgres://chorus:s3/cr@t@db1:5432/chorus?sslpassword=hush");
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_EQ(p.value.password, "s3/cr@t");
  EXPECT_EQ(p.value.host, "db1");
  const std::string r = p.value.redacted();
  EXPECT_EQ(r.find("s3"), std::string::npos) << r;
  EXPECT_EQ(r.find("hush"), std::string::npos) << r;
  EXPECT_NE(r.find("chorus:****@db1:5432/chorus"), std::string::npos) << r;
  for (const char* bad : {"postgres://u:secretpw@db1:notaport/x", "postgres://u:secretpw@db1/x?secretpw",
                          "postgres://u:secret%zz@db/x", "postgres://u:secretpw@db1/x?sslpassword=%zzsecretpw"}) {
    auto e = db::parse_data_source("postgres", bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.error.message.find("secret"), std::string::npos) << e.error.message;
  }
}

TEST(DataSource, ErrorsSayWhatIsWrong) {
  auto err = [](const char* driver, const char* text) { return db::parse_data_source(driver, text).error.message; };
  EXPECT_NE(err("postgres", "db1:5432/chorus").find("without a scheme"), std::string::npos);
  EXPECT_NE(err("postgres", "mysql://db/x").find("expected the scheme postgres://"), std::string::npos);
  EXPECT_NE(err("postgres", "postgres://db:99999/x").find("is not a number from 1 to 65535"), std::string::npos);
  EXPECT_NE(err("postgres", "postgres://db:5432/").find("no database name"), std::string::npos);
  EXPECT_NE(err("postgres", "postgres://db/x?sslmode=sometimes").find("sslmode"), std::string::npos);
  EXPECT_NE(err("postgres", "postgres://db/x?connect_timeout=soon").find("connect_timeout"), std::string::npos);
  EXPECT_NE(err("sqlite3", "postgres://db/x").find("DriverName is sqlite3"), std::string::npos);
  EXPECT_NE(err("sqlite3", ":memory:").find("in-memory"), std::string::npos);
  EXPECT_NE(err("sqlite3", "").find("no file path"), std::string::npos);
  EXPECT_NE(err("mysql", "x").find("the driver \"mysql\" is not supported"), std::string::npos);
  EXPECT_TRUE(db::parse_data_source("sqlite3", "./data/chorus.db").ok());
}

TEST(Assert, OnByDefaultItAbortsWithFileLineAndTheDetail) {
  int checked = 0;
  CHORUS_ASSERT(++checked == 1);  // evaluated once, in every build
  EXPECT_EQ(checked, 1);
  EXPECT_DEATH(
      {
        chorus::set_assert_handler(nullptr);
        CHORUS_ASSERT(checked == 2, "checked is {}", checked);
      },
      "core_test.cpp:[0-9]+: assertion failed: checked == 2 \\(checked is 1\\)");
  // The simulator's handler throws instead, so a seed fails rather than the process.
  chorus::set_assert_handler(chorus::throw_assertion);
  EXPECT_THROW(CHORUS_ASSERT(false), chorus::AssertionFailure);
  chorus::set_assert_handler(nullptr);
}

#include "server/app/ttl_cache.h"

TEST(TtlCache, EntriesLiveForTheirTtlTheSizeIsBoundedAndAFillAfterAnInvalidationIsDropped) {
  chorus::app::TtlCache<std::string, int> c(3);
  const chorus::MonoTime t0{};
  const chorus::Duration ttl{10'000'000};
  c.put("a", 1, t0);
  ASSERT_NE(c.get("a", t0 + chorus::Duration{9'999'999}, ttl), nullptr);
  EXPECT_EQ(*c.get("a", t0, ttl), 1);
  EXPECT_EQ(c.get("a", t0 + ttl, ttl), nullptr) << "stale at the ttl";
  // A read that began before an invalidation does not fill; one that began after does.
  const uint64_t before = c.epoch();
  c.invalidate();
  c.fill("b", 2, t0, before);
  EXPECT_EQ(c.get("b", t0, ttl), nullptr);
  c.fill("b", 2, t0, c.epoch());
  EXPECT_NE(c.get("b", t0, ttl), nullptr);
  // The bound: at 3 entries a new key starts the cache over; an existing key is replaced in place.
  c.put("c", 3, t0);
  c.put("c", 4, t0);
  EXPECT_EQ(c.size(), 3u);
  c.put("d", 5, t0);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(*c.get("d", t0, ttl), 5);
  c.put("e", 6, t0);
  c.erase_if([](int v) { return v == 6; });
  EXPECT_EQ(c.get("e", t0, ttl), nullptr);
}

// The gossip port's catalogue (server/cluster/wire.h) and the job statuses: every name round-trips,
// no two share a name or a byte, and unknown ones are refused.
#include "server/cluster/wire.h"
#include "server/jobs/job_status.h"

TEST(Wire, EveryFrameTypeAndEventNameRoundTripsAndNothingElseIsKnown) {
  int known = 0;
  for (int b = 0; b < 256; ++b) {
    const uint8_t byte = static_cast<uint8_t>(b);
    const auto t = chorus::cluster::frame_type(std::span<const uint8_t>(&byte, 1));
    if (!t) continue;
    ++known;
    EXPECT_EQ(chorus::cluster::to_byte(*t), byte);
  }
  EXPECT_EQ(known, 9);
  EXPECT_FALSE(chorus::cluster::frame_type({}));
  std::set<std::string_view> names;
  for (const auto& [event, name] : chorus::cluster::kClusterEvents) {
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_EQ(chorus::cluster::name(event), name);
    EXPECT_EQ(chorus::cluster::cluster_event(name), event);
  }
  EXPECT_FALSE(chorus::cluster::cluster_event("inv_something_new"))
      << "a newer version's event is not taken for another";
  EXPECT_FALSE(chorus::cluster::cluster_event(""));
}

TEST(JobStatus, NamesRoundTripAndTheSqlLiteralIsQuoted) {
  for (const auto& [status, name] : chorus::jobs::kJobStatuses) EXPECT_EQ(chorus::jobs::job_status(name), status);
  EXPECT_EQ(chorus::jobs::sql(chorus::jobs::JobStatus::cancel_requested), "'cancel_requested'");
  EXPECT_FALSE(chorus::jobs::job_status("Pending"));
}

// Flows (server/core/flow.h): a coroutine over callback operations, with the owner's lifetime in one place.
#include "server/core/flow.h"

namespace {

struct Tracker {  // a flow's local: counts how many flow frames are destroyed
  int* destroyed;
  explicit Tracker(int* d) : destroyed(d) {}
  Tracker(const Tracker&) = delete;
  ~Tracker() { ++*destroyed; }
};

// Two steps through callbacks the test holds; `steps` says how far the flow got.
chorus::Flow two_steps(std::shared_ptr<bool> alive, std::vector<std::function<void(int)>>& pending,
                       std::vector<int>& steps, int* destroyed) {
  Tracker t(destroyed);
  const int a = co_await chorus::awaiting<int>(alive, [&](auto resume) { pending.push_back(std::move(resume)); });
  steps.push_back(a);
  const int b = co_await chorus::awaiting<int>(alive, [&](auto resume) { pending.push_back(std::move(resume)); });
  steps.push_back(b);
}

}  // namespace

TEST(Flow, RunsTopToBottomAsItsCompletionsComeAndEndsItsFrame) {
  auto alive = std::make_shared<bool>(true);
  std::vector<std::function<void(int)>> pending;
  std::vector<int> steps;
  int destroyed = 0;
  two_steps(alive, pending, steps, &destroyed).start();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_TRUE(steps.empty()) << "suspended at its first await";
  auto first = std::move(pending[0]);
  first(7);
  first(8);  // a second completion of the same operation is ignored
  ASSERT_EQ(pending.size(), 2u);
  pending[1](9);
  EXPECT_EQ(steps, (std::vector<int>{7, 9}));
  EXPECT_EQ(destroyed, 1);
}

TEST(Flow, ACompletionAfterTheOwnerIsGoneRunsNothingMoreAndFreesTheFrame) {
  auto alive = std::make_shared<bool>(true);
  std::vector<std::function<void(int)>> pending;
  std::vector<int> steps;
  int destroyed = 0;
  two_steps(alive, pending, steps, &destroyed).start();
  *alive = false;
  pending[0](7);
  EXPECT_TRUE(steps.empty());
  EXPECT_EQ(pending.size(), 1u) << "no second step started";
  EXPECT_EQ(destroyed, 1);
}

TEST(Flow, ACallbackDestroyedUncalledFreesTheFrameWithoutRunningIt) {
  auto alive = std::make_shared<bool>(true);
  std::vector<std::function<void(int)>> pending;
  std::vector<int> steps;
  int destroyed = 0;
  two_steps(alive, pending, steps, &destroyed).start();
  EXPECT_EQ(destroyed, 0);
  pending.clear();  // the operation dropped its callback (a store that stops drops its queue)
  EXPECT_TRUE(steps.empty());
  EXPECT_EQ(destroyed, 1);
}

TEST(Flow, ACompletionInsideTheStartResumesAtOnce) {
  auto alive = std::make_shared<bool>(true);
  std::vector<int> steps;
  [](std::shared_ptr<bool> alive, std::vector<int>& steps) -> chorus::Flow {
    auto [x, y] = co_await chorus::awaiting<int, std::string>(alive, [](auto resume) { resume(3, "cached"); });
    steps.push_back(x);
    steps.push_back(static_cast<int>(y.size()));
  }(alive, steps)
                                                                  .start();
  EXPECT_EQ(steps, (std::vector<int>{3, 6}));
}

namespace {

chorus::Flow throws_after(std::shared_ptr<bool> alive, std::vector<std::function<void(int)>>& pending, bool sync,
                          int* destroyed) {
  Tracker t(destroyed);
  const int a = co_await chorus::awaiting<int>(alive, [&](auto resume) {
    if (sync)
      resume(1);
    else
      pending.push_back(std::move(resume));
  });
  if (a > 0) throw std::runtime_error("broken invariant");
}

}  // namespace

TEST(Flow, AnExceptionGoesToWhoeverRanThatPartOfTheFlowAndTheFrameIsFreed) {
  auto alive = std::make_shared<bool>(true);
  std::vector<std::function<void(int)>> pending;
  int destroyed = 0;
  // Thrown in the part that runs at the start (the completion came at once): to the caller.
  EXPECT_THROW(throws_after(alive, pending, true, &destroyed).start(), std::runtime_error);
  EXPECT_EQ(destroyed, 1);
  // Thrown after a later completion: to the code that completed it (the loop or the kernel).
  throws_after(alive, pending, false, &destroyed).start();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_THROW(pending[0](1), std::runtime_error);
  EXPECT_EQ(destroyed, 2);
  // The same flow, not throwing: no exception anywhere.
  throws_after(alive, pending, false, &destroyed).start();
  pending[1](0);
  EXPECT_EQ(destroyed, 3);
  // A flow never started never runs, and its frame is freed.
  { auto never = throws_after(alive, pending, true, &destroyed); }
  EXPECT_EQ(destroyed, 3) << "its body (and so its locals) never began";
}
