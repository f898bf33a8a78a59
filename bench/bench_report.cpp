// Turns Google Benchmark's JSON output (reports/bench.json) into reports/bench.md: the figures the
// foundation is judged on, with ratios computed from benchmarks of the same run.
#include <boost/json.hpp>
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace json = boost::json;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: chorus_bench_report bench.json\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  json::value root = json::parse(text.str(), ec);
  if (ec || !root.is_object()) {
    std::cerr << "chorus_bench_report: " << argv[1] << " is not benchmark JSON\n";
    return 2;
  }
  std::map<std::string, json::object> by_name;
  for (const auto& b : root.at("benchmarks").as_array()) by_name[std::string(b.at("name").as_string())] = b.as_object();
  auto num = [&](const std::string& name, const char* field) -> double {
    auto it = by_name.find(name);
    if (it == by_name.end() || !it->second.contains(field)) return 0;
    return it->second.at(field).to_number<double>();
  };
  const auto& ctx = root.at("context").as_object();
  std::cout << "# Benchmarks\n\n";
  std::cout << fmt::format("Run {} on {} CPUs at {} MHz. Chorus built Release (`make bench`); Google Benchmark's own "
                           "library build as Debian ships it: {}.\n\n",
                           std::string(ctx.at("date").as_string()), ctx.at("num_cpus").to_number<int>(),
                           ctx.at("mhz_per_cpu").to_number<int>(), std::string(ctx.at("library_build_type").as_string()));
  std::cout << "## Simulator\n\n| workload | events/s | simulated s per wall s |\n|---|---:|---:|\n";
  for (const char* n : {"5", "25"}) {
    const std::string flood = fmt::format("BM_SimTimerPlusMessageEvents/{}/real_time", n);
    std::cout << fmt::format("| timer + message events, {} nodes | {:.2f} M | |\n", n, num(flood, "events_per_s") / 1e6);
  }
  for (const char* n : {"5", "25"}) {
    const std::string ping = fmt::format("BM_SimPingClusterUnderFaults/{}/real_time", n);
    std::cout << fmt::format("| ping cluster under random faults, {} nodes | {:.2f} M | {:.0f}x |\n", n,
                             num(ping, "events_per_s") / 1e6, num(ping, "sim_s_per_wall_s"));
  }
  std::cout << "\nTarget: at least 5 M timer-plus-message events per second on one core.\n\n";
  std::cout << "## Gossip frames\n\n| payload | encode GB/s | decode GB/s | decode M frames/s | memcpy GB/s | decode / memcpy |\n|---:|---:|---:|---:|---:|---:|\n";
  for (const char* n : {"64", "1024", "65536"}) {
    const double enc = num(fmt::format("BM_FrameEncode/{}", n), "bytes_per_second") / 1e9;
    const double dec = num(fmt::format("BM_FrameDecodeStream/{}", n), "bytes_per_second") / 1e9;
    const double mem = num(fmt::format("BM_MemcpyBaseline/{}", n), "bytes_per_second") / 1e9;
    const double fps = num(fmt::format("BM_FrameDecodeStream/{}", n), "frames_per_s") / 1e6;
    std::cout << fmt::format("| {} B | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |\n", n, enc, dec, fps, mem, mem > 0 ? dec / mem : 0);
  }
  std::cout << "\nDecode is fed 4 KiB reads of a stream of 64 frames, as a socket delivers them; memcpy copies the same "
               "bytes in the same 4 KiB steps. A frame that lies whole in one read is handed out in place (no copy), so "
               "decode beats memcpy for mid-sized frames; small frames pay a per-frame callback; frames larger than a "
               "read are copied once.\n";
  return 0;
}
