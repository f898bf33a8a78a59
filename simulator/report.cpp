// Renders a scenario run's record as pages: a self-contained SVG timeline (a lane per node with its
// state, colour and leader bands, the marks as dashed lines with staggered labels, the clients' failed
// share per bucket and a time axis), the run's Markdown summary, and the index of a whole run.
// Numbers go through fmt, which ignores the locale.
#include "simulator/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <string_view>

namespace chorus::sim {
namespace {

std::string xml(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A Markdown table cell: one line, pipes escaped.
std::string cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

// A Markdown code span that survives backticks in its text.
std::string code(const std::string& s) {
  size_t longest = 0, run = 0;
  for (char c : s) longest = std::max(longest, run = c == '`' ? run + 1 : 0);
  const std::string fence(longest + 1, '`');
  const bool pad = longest > 0 && !s.empty() && (s.front() == '`' || s.back() == '`');
  return fence + (pad ? " " : "") + s + (pad ? " " : "") + fence;
}

// Simulated seconds per wall second: "312x", "0.4x"; "-" when the wall time was not measured.
std::string speed(double simulated_s, double wall_s) {
  if (!(wall_s > 0)) return "-";
  const double r = simulated_s / wall_s;
  return r >= 10 ? fmt::format("{:.0f}x", r) : fmt::format("{:.1f}x", r);
}

std::string short_name(const std::string& node) { return node.substr(0, node.find(' ')); }

// Consecutive samples with one value, each holding from its t until the next sample's (the last until end).
struct Run {
  double t0, t1;
  char v;
};
template <class Value>
std::vector<Run> runs(const std::vector<RunRecord::Sample>& samples, double end, Value value) {
  std::vector<Run> out;
  for (size_t k = 0; k < samples.size(); ++k) {
    const char v = value(samples[k]);
    const double t1 = std::min(end, k + 1 < samples.size() ? samples[k + 1].t : end);
    if (!out.empty() && out.back().v == v)
      out.back().t1 = std::max(out.back().t1, t1);
    else if (samples[k].t < end)
      out.push_back({samples[k].t, t1, v});
  }
  std::erase_if(out, [](const Run& r) { return r.t1 <= r.t0; });
  return out;
}

// The tick step: the smallest "nice" step that gives at most 12 ticks over the span (so at least 5).
double tick_step(double span) {
  static constexpr std::array<double, 20> kNice = {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1,   2,   5,    10,
                                                   15,   20,   30,   60,  120, 300, 600, 900, 1800, 3600};
  for (double step : kNice)
    if (span / step <= 11 + 1e-9) return step;
  double step = 3600;
  while (span / step > 11 + 1e-9) step *= 2;
  return step;
}

constexpr double kWidth = 1000, kLeft = 150, kRight = 20, kPlot = kWidth - kLeft - kRight;
constexpr double kBar = 14, kBand = 4, kLane = 28;      // state bar, colour / leader band, lane pitch
constexpr double kAvail = 36, kRow = 12, kCharW = 6.0;  // availability lane; mark label row, char width at 10 px
constexpr const char* kUp = "#b9cde3";
constexpr const char* kDown = "#333333";
constexpr const char* kPaused = "#f0a020";
constexpr const char* kGreen = "#3cb371";
constexpr const char* kRed = "#d62728";
constexpr const char* kLeader = "#8e44ad";
constexpr const char* kMark = "#c2185b";

}  // namespace

std::string render_svg(const RunRecord& run) {
  // The span drawn: the run's duration, or what the record reaches when that is missing.
  double span = run.duration_s;
  if (!(span > 0)) {
    for (const auto& s : run.samples) span = std::max(span, s.t);
    for (const auto& m : run.marks) span = std::max(span, m.t);
    for (const auto& b : run.availability) span = std::max(span, b.t + run.bucket_s);
    if (!(span > 0)) span = 1;
  }
  auto x = [&](double t) { return kLeft + std::clamp(t, 0.0, span) / span * kPlot; };

  // Mark labels: the first row where the label fits after the previous one; past 8 rows, the emptiest.
  struct Label {
    double x, y;
    bool left;  // drawn to the left of its line (it would leave the picture)
  };
  std::vector<Label> labels;
  std::vector<double> row_end;
  for (const auto& m : run.marks) {
    const double mx = x(m.t), w = static_cast<double>(m.text.size()) * kCharW + 4;
    const bool left = mx + w > kWidth;
    const double from = left ? mx - w : mx;
    size_t row = 0;
    while (row < row_end.size() && row_end[row] > from) ++row;
    if (row == row_end.size() && row_end.size() >= 8)
      row = static_cast<size_t>(std::min_element(row_end.begin(), row_end.end()) - row_end.begin());
    if (row == row_end.size()) row_end.push_back(0);
    row_end[row] = std::max(row_end[row], from + w + 4);
    labels.push_back({mx, 24 + kRow * static_cast<double>(row + 1) - 2, left});
  }

  const double lanes_top = 24 + kRow * static_cast<double>(row_end.size()) + 6;
  const double avail_top = lanes_top + kLane * static_cast<double>(run.nodes.size()) + 6;
  const double axis_y = avail_top + kAvail + 4, legend_y = axis_y + 30, height = legend_y + 16;

  std::string out;
  auto o = std::back_inserter(out);
  fmt::format_to(
      o,
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"monospace\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
      "<text x=\"8\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{2} (seed {3}){4}</text>\n",
      kWidth, height, xml(run.scenario), run.seed, run.passed() ? "" : " FAIL");

  auto rect = [&](double t0, double t1, double y, double h, const char* fill, const std::string& title) {
    fmt::format_to(
        o, "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{}</title></rect>\n",
        x(t0), y, std::max(0.5, x(t1) - x(t0)), h, fill, xml(title));
  };
  auto period = [](const std::string& who, const char* what, const Run& r) {
    return fmt::format("{} {} {:.1f}-{:.1f} s", who, what, r.t0, r.t1);
  };

  // A lane per node: state bar, colour band, leader band.
  for (size_t i = 0; i < run.nodes.size(); ++i) {
    const double y = lanes_top + kLane * static_cast<double>(i);
    const std::string name = short_name(run.nodes[i]);
    std::string label = run.nodes[i].size() > 22 ? run.nodes[i].substr(0, 21) + "~" : run.nodes[i];
    fmt::format_to(o,
                   "<g class=\"lane\">\n<text x=\"8\" y=\"{:.1f}\"><title>{}</title>{}</text>\n"
                   "<rect x=\"{:.0f}\" y=\"{:.1f}\" width=\"{:.0f}\" height=\"{:.0f}\" fill=\"#f4f4f4\"/>\n",
                   y + 11, xml(run.nodes[i]), xml(label), kLeft, y, kPlot, kBar + 2 * kBand + 2);
    auto at = [i](const std::string& s) { return i < s.size() ? s[i] : '-'; };
    for (const auto& r : runs(run.samples, span, [&](const auto& s) { return at(s.state); })) {
      if (r.v == 'u')
        rect(r.t0, r.t1, y, kBar, kUp, period(name, "up", r));
      else if (r.v == 'd')
        rect(r.t0, r.t1, y, kBar, kDown, period(name, "down", r));
      else if (r.v == 'p')
        rect(r.t0, r.t1, y, kBar, kPaused, period(name, "paused", r));
    }
    for (const auto& r : runs(run.samples, span, [&](const auto& s) { return at(s.colour); })) {
      if (r.v == 'g')
        rect(r.t0, r.t1, y + kBar + 1, kBand, kGreen, period(name, "green", r));
      else if (r.v == 'r')
        rect(r.t0, r.t1, y + kBar + 1, kBand, kRed, period(name, "red", r));
    }
    for (const auto& r :
         runs(run.samples, span, [&](const auto& s) { return s.leader == static_cast<int>(i) ? 'L' : ' '; }))
      if (r.v == 'L') rect(r.t0, r.t1, y + kBar + kBand + 2, kBand, kLeader, period(name, "leader", r));
    out += "</g>\n";
  }

  // Clients: per bucket with requests, a pale bar and the failed share in red from the bottom.
  int failed = 0, total = 0;
  for (const auto& b : run.availability) failed += b.failed, total += b.ok + b.failed;
  fmt::format_to(
      o,
      "<g class=\"clients\">\n<text x=\"8\" y=\"{:.1f}\">clients{}</text>\n"
      "<text x=\"8\" y=\"{:.1f}\" font-size=\"10\">{}</text>\n"
      "<rect x=\"{:.0f}\" y=\"{:.1f}\" width=\"{:.0f}\" height=\"{:.0f}\" fill=\"none\" stroke=\"#cccccc\"/>\n",
      avail_top + 14, total ? fmt::format(": {:.1f}% failed", 100.0 * failed / total) : "", avail_top + 28,
      total ? fmt::format("{} of {}", failed, total) : "no requests", kLeft, avail_top, kPlot, kAvail);
  for (const auto& b : run.availability) {
    const int n = b.ok + b.failed;
    if (n <= 0) continue;
    const double share = static_cast<double>(b.failed) / n, x0 = x(b.t), w = std::max(0.5, x(b.t + run.bucket_s) - x0);
    fmt::format_to(o,
                   "<g class=\"bucket\"><title>{:.1f}-{:.1f} s: {} of {} failed</title>"
                   "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.0f}\" fill=\"#e3efe3\"/>",
                   b.t, b.t + run.bucket_s, b.failed, n, x0, avail_top, w, kAvail);
    if (b.failed > 0)
      fmt::format_to(o,
                     "<rect class=\"fail\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>",
                     x0, avail_top + kAvail * (1 - share), w, kAvail * share, kRed);
    out += "</g>\n";
  }
  out += "</g>\n";

  // Marks: a dashed line from the label down through the lanes, highlighted on the lanes it touches.
  for (size_t k = 0; k < run.marks.size(); ++k) {
    const auto& m = run.marks[k];
    const Label& l = labels[k];
    fmt::format_to(
        o,
        "<g class=\"mark\"><title>{:.1f} s: {}</title>\n"
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#555555\" stroke-dasharray=\"3,3\"/>\n"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" stroke=\"#ffffff\" stroke-width=\"3\" "
        "paint-order=\"stroke\"{}>{}</text>\n",
        m.t, xml(m.text), l.x, l.y - 8, l.x, avail_top + kAvail, l.left ? l.x - 2 : l.x + 2, l.y,
        l.left ? " text-anchor=\"end\"" : "", xml(m.text));
    auto highlight = [&](size_t lane) {
      fmt::format_to(
          o,
          "<rect class=\"hl\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"3\" height=\"{:.0f}\" fill=\"{}\" opacity=\"0.8\"/>\n",
          l.x - 1.5, lanes_top + kLane * static_cast<double>(lane), kBar + 2 * kBand + 2, kMark);
    };
    for (size_t lane = 0; lane < run.nodes.size(); ++lane)
      if (m.nodes.empty() || std::find(m.nodes.begin(), m.nodes.end(), static_cast<int>(lane)) != m.nodes.end())
        highlight(lane);
    out += "</g>\n";
  }

  // Time axis in seconds.
  const double step = tick_step(span);
  const int decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : step >= 0.01 ? 2 : 3;
  fmt::format_to(
      o, "<g class=\"axis\">\n<line x1=\"{0:.0f}\" y1=\"{1:.1f}\" x2=\"{2:.0f}\" y2=\"{1:.1f}\" stroke=\"#000000\"/>\n",
      kLeft, axis_y, kLeft + kPlot);
  for (int k = 0; k * step <= span * (1 + 1e-9); ++k) {
    const double t = k * step;
    fmt::format_to(
        o,
        "<g class=\"tick\"><line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#000000\"/>"
        "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\" font-size=\"10\">{4:.{5}f} s</text></g>\n",
        x(t), axis_y, axis_y + 4, axis_y + 15, t, decimals);
  }
  out += "</g>\n";

  // Legend.
  struct Item {
    const char* colour;
    const char* text;
  };
  static constexpr std::array<Item, 8> kLegend = {{{kUp, "up"},
                                                   {kDown, "down"},
                                                   {kPaused, "paused"},
                                                   {kGreen, "seen green"},
                                                   {kRed, "seen red"},
                                                   {kLeader, "leader"},
                                                   {kMark, "operation / fault"},
                                                   {"#e3efe3", "client requests (red: failed share)"}}};
  out += "<g class=\"legend\">\n";
  double lx = kLeft;
  for (const auto& item : kLegend) {
    fmt::format_to(o,
                   "<rect x=\"{0:.0f}\" y=\"{1:.1f}\" width=\"10\" height=\"10\" fill=\"{2}\"/><text x=\"{3:.0f}\" "
                   "y=\"{4:.1f}\" font-size=\"10\">{5}</text>\n",
                   lx, legend_y - 9, item.colour, lx + 14, legend_y, item.text);
    lx += 14 + kCharW * static_cast<double>(std::string_view(item.text).size()) + 14;
  }
  out += "</g>\n</svg>\n";
  return out;
}

std::string render_markdown(const RunRecord& run, const std::string& svg_file_name) {
  std::string md;
  auto o = std::back_inserter(md);
  fmt::format_to(o, "# {} (seed {})\n\n", run.scenario, run.seed);
  if (!run.description.empty()) md += run.description + "\n\n";
  fmt::format_to(o, "Result: **{}**\n\n", run.passed() ? "PASS" : "FAIL");
  fmt::format_to(o, "Replay: {}\n\n", code(fmt::format("chorus-sim run {} --seed {}", run.file, run.seed)));
  fmt::format_to(o, "Simulated {:.1f} s in {:.2f} s wall", run.duration_s, run.wall_s);
  md += run.wall_s > 0 ? fmt::format(" ({} real time).\n\n", speed(run.duration_s, run.wall_s)) : ".\n\n";

  md += "## Checks\n\n";
  if (run.checks.empty())
    md += "No checks.\n\n";
  else {
    md += "| check | result | detail |\n|---|---|---|\n";
    for (const auto& c : run.checks)
      fmt::format_to(o, "| {} | {} | {} |\n", cell(c.name), c.passed ? "PASS" : "**FAIL**", cell(c.detail));
    md += "\n";
  }
  if (!run.metrics.empty()) {
    md += "## Metrics\n\n| metric | value |\n|---|---:|\n";
    for (const auto& [name, value] : run.metrics) fmt::format_to(o, "| {} | {} |\n", cell(name), cell(value));
    md += "\n";
  }
  fmt::format_to(o, "## Timeline\n\n![timeline]({})\n\n", svg_file_name);
  if (run.marks.empty()) md += "No operations or faults.\n";
  for (const auto& m : run.marks) fmt::format_to(o, "- {:.1f} s: {}\n", m.t, m.text);
  return md;
}

std::string render_index(const std::vector<IndexRow>& rows, const std::string& command) {
  std::string md = "# Scenario runs\n\n";
  auto o = std::back_inserter(md);
  fmt::format_to(o,
                 "Run as {}. Each scenario's page shows its representative seed and the command that replays it.\n\n",
                 code(command));
  md +=
      "| scenario | result | seeds | failed seeds | simulated s | wall s | speed | description |\n"
      "|---|---|---:|---|---:|---:|---:|---|\n";
  int seeds = 0, failed = 0, failing_scenarios = 0;
  double simulated = 0, wall = 0;
  for (const auto& r : rows) {
    std::string failed_text = std::to_string(r.failed_seeds);
    if (!r.failing.empty()) {
      const size_t shown = std::min<size_t>(r.failing.size(), 10);
      failed_text += fmt::format(
          " ({}{})", fmt::join(r.failing.begin(), r.failing.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
          shown < r.failing.size() ? ", ..." : "");
    }
    const char* result = r.seeds == 0 ? "not run" : r.failed_seeds > 0 ? "**FAIL**" : "PASS";
    const std::string name = r.page.empty() ? cell(r.scenario) : fmt::format("[{}](<{}>)", cell(r.scenario), r.page);
    fmt::format_to(o, "| {} | {} | {} | {} | {:.1f} | {:.2f} | {} | {} |\n", name, result, r.seeds, failed_text,
                   r.simulated_s, r.wall_s, speed(r.simulated_s, r.wall_s), cell(r.description));
    seeds += r.seeds, failed += r.failed_seeds, simulated += r.simulated_s, wall += r.wall_s;
    failing_scenarios += r.failed_seeds > 0 ? 1 : 0;
  }
  const std::string result =
      failing_scenarios ? fmt::format("**FAIL** ({} of {})", failing_scenarios, rows.size()) : std::string("PASS");
  fmt::format_to(o, "| **total** | {} | {} | {} | {:.1f} | {:.2f} | {} | |\n", result, seeds, failed, simulated, wall,
                 speed(simulated, wall));
  return md;
}

}  // namespace chorus::sim
