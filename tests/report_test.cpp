// The scenario run pages: the SVG timeline (well-formed, a lane per node, a rect per state run, escaped
// text, marks, availability, axis), the Markdown summary and the index.
#include "simulator/report.h"

#include <gtest/gtest.h>

#include <regex>

#include <cctype>
#include <set>
#include <sstream>
#include <string_view>

using namespace chorus::sim;

namespace {

size_t count(std::string_view text, std::string_view what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string_view::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// XML well-formedness, as far as this renderer's output goes: tags nest and close, attribute values are
// quoted, and no bare '&' or '<' or '>' is left in text or attributes. Returns the first problem, or "".
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  size_t i = 0;
  auto bad_text = [&](std::string_view text) -> std::string {
    if (text.find('>') != std::string_view::npos) return "bare '>' in text";
    for (size_t a = text.find('&'); a != std::string_view::npos; a = text.find('&', a + 1)) {
      const std::string_view rest = text.substr(a);
      bool entity = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
        entity = entity || rest.substr(0, std::string_view(e).size()) == e;
      if (!entity) return "bare '&' in: " + std::string(text.substr(a, 20));
    }
    return "";
  };
  while (i < s.size()) {
    const size_t lt = s.find('<', i);
    if (auto p = bad_text(std::string_view(s).substr(i, lt == std::string::npos ? std::string::npos : lt - i));
        !p.empty())
      return p;
    if (lt == std::string::npos) break;
    // A tag: scan to its '>' outside quoted attribute values.
    size_t j = lt + 1;
    char quote = 0;
    for (; j < s.size() && (quote || s[j] != '>'); ++j) {
      if (quote && s[j] == quote)
        quote = 0;
      else if (!quote && (s[j] == '"' || s[j] == '\''))
        quote = s[j];
      else if (quote && (s[j] == '<' || s[j] == '>'))
        return "bare '<' or '>' in an attribute";
      else if (!quote && s[j] == '<')
        return "'<' inside a tag at " + std::to_string(j);
    }
    if (j == s.size()) return "unterminated tag";
    const std::string tag = s.substr(lt + 1, j - lt - 1);
    if (auto p = bad_text(tag); !p.empty()) return p;
    i = j + 1;
    const std::string name = tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" \n/", 1) - (tag[0] == '/' ? 1 : 0));
    if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0]))) return "bad tag <" + tag + ">";
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes " + (open.empty() ? "nothing" : "<" + open.back() + ">");
      open.pop_back();
      if (open.empty() && s.find_first_not_of(" \n", i) != std::string::npos) return "content after the root";
    } else if (tag.back() != '/') {
      open.push_back(name);
    }
  }
  return open.empty() ? "" : "<" + open.back() + "> left open";
}

// Three nodes over 20 s sampled every 0.5 s: n1 down 5-8 s and seen red 6-9 s, n2 joins at 2 s and is
// paused 10-12 s; n0 leads until n1 goes down, then n2 leads.
RunRecord sample_run() {
  RunRecord r;
  r.scenario = "leader-crash";
  r.description = "The leader crashes; a new one is elected and posts keep flowing.";
  r.file = "scenarios/leader-crash.toml";
  r.seed = 42;
  r.duration_s = 20;
  r.wall_s = 0.05;  // 400x real time
  r.nodes = {"n0 10.0.0.1:8074", "n1 10.0.0.2:8074", "n2 10.0.0.3:8074"};
  for (int k = 0; k < 40; ++k) {
    const double t = k * 0.5;
    RunRecord::Sample s;
    s.t = t;
    s.state = std::string("u") + (t >= 5 && t < 8 ? 'd' : 'u') + (t < 2 ? '-' : t >= 10 && t < 12 ? 'p' : 'u');
    s.colour = std::string("g") + (t >= 6 && t < 9 ? 'r' : 'g') + (t < 2 ? '?' : 'g');
    s.leader = t < 5 ? 0 : 2;
    r.samples.push_back(s);
  }
  r.marks = {{5, "kill n1", {1}},
             {8, "restart n1", {1}},
             {10, "pause n2", {2}},
             {12, "resume n2", {2}},
             {14, "loss <&>\"' 5%", {}}};
  r.bucket_s = 1;
  for (int k = 0; k < 20; ++k)
    r.availability.push_back({static_cast<double>(k), k == 3 ? 0 : 9, k == 5 || k == 6 ? 3 : 0});
  r.metrics = {{"posts acknowledged", "171"}, {"p99 post latency", "12.5 ms"}};
  r.checks = {{"no acknowledged post lost", true, "171 of 171 found"},
              {"expect: detect n1 within 3s", false, "detected after 3.4 s | by n0 only"}};
  return r;
}

}  // namespace

TEST(Report, SvgIsWellFormedAndSelfContained) {
  const std::string svg = render_svg(sample_run());
  ASSERT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count(svg, "<g"), count(svg, "</g>"));
  EXPECT_NE(svg.find("font-family=\"monospace\""), std::string::npos);
  for (const char* external : {"<style", "<script", "href=", "url(", "@import"})
    EXPECT_EQ(svg.find(external), std::string::npos) << external;
  // The checker itself catches what it is there for.
  EXPECT_NE(xml_problem("<svg><g></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text>a & b</text></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text>a<b</text></svg>"), "");
}

TEST(Report, SvgHasALanePerNodeAndARectPerStateRun) {
  const RunRecord run = sample_run();
  const std::string svg = render_svg(run);
  EXPECT_EQ(count(svg, "class=\"lane\""), 3u);
  for (const auto& n : run.nodes) EXPECT_EQ(count(svg, ">" + n + "</text>"), 1u) << n;
  // n1: up, down, up; each run merged into one rect.
  EXPECT_NE(svg.find("<title>n1 up 0.0-5.0 s</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>n1 down 5.0-8.0 s</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>n1 up 8.0-20.0 s</title>"), std::string::npos);
  EXPECT_EQ(count(svg, "<title>n1 up "), 2u);
  EXPECT_EQ(count(svg, "<title>n1 down "), 1u);
  EXPECT_EQ(count(svg, "<title>n0 up "), 1u);
  // n2 is not in the cluster before 2 s: nothing drawn there, then up, paused, up.
  EXPECT_NE(svg.find("<title>n2 up 2.0-10.0 s</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>n2 paused 10.0-12.0 s</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>n2 up 12.0-20.0 s</title>"), std::string::npos);
  EXPECT_EQ(count(svg, "<title>n2 up "), 2u);
  // Colour bands: n1 green, red, green; n2 has no colour before 2 s.
  EXPECT_NE(svg.find("<title>n1 red 6.0-9.0 s</title>"), std::string::npos);
  EXPECT_EQ(count(svg, "<title>n1 green "), 2u);
  EXPECT_NE(svg.find("<title>n2 green 2.0-20.0 s</title>"), std::string::npos);
  // Leader bands.
  EXPECT_NE(svg.find("<title>n0 leader 0.0-5.0 s</title>"), std::string::npos);
  EXPECT_NE(svg.find("<title>n2 leader 5.0-20.0 s</title>"), std::string::npos);
  EXPECT_EQ(svg.find("<title>n1 leader"), std::string::npos);
  // A state rect per run, no more: 1 (n0) + 3 (n1) + 3 (n2).
  EXPECT_EQ(count(svg, " up ") + count(svg, " down ") + count(svg, " paused "), 7u);
}

TEST(Report, SvgEscapesTextAndDrawsMarks) {
  RunRecord run = sample_run();
  run.scenario = "a<b & \"c\"";
  run.nodes[0] = "n0 <&>";
  const std::string svg = render_svg(run);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_NE(svg.find("loss &lt;&amp;&gt;&quot;&apos; 5%"), std::string::npos);
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(svg.find("n0 &lt;&amp;&gt;"), std::string::npos);
  // A group per mark with its hover text; highlights on the lanes each touches (the last: all three).
  EXPECT_EQ(count(svg, "class=\"mark\""), 5u);
  EXPECT_NE(svg.find("<title>5.0 s: kill n1</title>"), std::string::npos);
  EXPECT_EQ(count(svg, "class=\"hl\""), 4u + 3u);
  EXPECT_EQ(count(svg, "stroke-dasharray"), 5u);
}

TEST(Report, SvgStaggersMarkLabelsThatWouldOverlap) {
  RunRecord run = sample_run();
  run.marks.clear();
  for (int k = 0; k < 4; ++k) run.marks.push_back({10.0 + 0.1 * k, "a fairly long mark label", {}});
  run.marks.push_back({19.0, "far", {}});
  const std::string svg = render_svg(run);
  // The labels' baselines: the four close marks on four rows; the far one back on the first.
  std::regex label("<text x=\"[0-9.]+\" y=\"([0-9.]+)\" font-size=\"10\" stroke=\"#ffffff\"");
  std::vector<std::string> ys;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), label); it != std::sregex_iterator(); ++it)
    ys.push_back((*it)[1]);
  ASSERT_EQ(ys.size(), 5u);
  EXPECT_EQ(std::set<std::string>(ys.begin(), ys.begin() + 4).size(), 4u);
  EXPECT_EQ(ys[4], ys[0]);
}

TEST(Report, SvgAvailabilityAndAxis) {
  const std::string svg = render_svg(sample_run());
  // 20 buckets, one empty: 19 drawn, two with failures.
  EXPECT_EQ(count(svg, "class=\"bucket\""), 19u);
  EXPECT_EQ(count(svg, "class=\"fail\""), 2u);
  EXPECT_NE(svg.find("<title>5.0-6.0 s: 3 of 12 failed</title>"), std::string::npos);
  EXPECT_NE(svg.find(">clients: 3.4% failed</text>"), std::string::npos);
  EXPECT_NE(svg.find(">6 of 177</text>"), std::string::npos);
  // 20 s: a tick every 2 s, 0 to 20.
  EXPECT_EQ(count(svg, "class=\"tick\""), 11u);
  EXPECT_NE(svg.find(">0 s</text>"), std::string::npos);
  EXPECT_NE(svg.find(">20 s</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">21 s</text>"), std::string::npos);
}

TEST(Report, SvgAxisHasFiveToTwelveTicksOverAnySpan) {
  for (double d : {0.3, 1.0, 4.0, 7.0, 13.0, 20.0, 45.0, 60.0, 95.0, 250.0, 600.0, 3600.0, 86400.0}) {
    RunRecord run;
    run.duration_s = d;
    const size_t ticks = count(render_svg(run), "class=\"tick\"");
    EXPECT_GE(ticks, 5u) << d;
    EXPECT_LE(ticks, 12u) << d;
  }
}

TEST(Report, SvgOfAnEmptyRecordIsStillAPicture) {
  const std::string svg = render_svg(RunRecord{});
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count(svg, "class=\"lane\""), 0u);
  EXPECT_NE(svg.find(">no requests</text>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  EXPECT_EQ(render_svg(sample_run()), render_svg(sample_run()));
}

TEST(Report, MarkdownSummary) {
  const std::string md = render_markdown(sample_run(), "leader-crash-42.svg");
  EXPECT_EQ(md.rfind("# leader-crash (seed 42)\n", 0), 0u);
  EXPECT_NE(md.find("The leader crashes; a new one is elected"), std::string::npos);
  EXPECT_NE(md.find("Result: **FAIL**"), std::string::npos);
  EXPECT_NE(md.find("Replay: `chorus-sim run scenarios/leader-crash.toml --seed 42`"), std::string::npos);
  EXPECT_NE(md.find("Simulated 20.0 s in 0.05 s wall (400x real time)"), std::string::npos);
  EXPECT_NE(md.find("| check | result | detail |"), std::string::npos);
  EXPECT_NE(md.find("| no acknowledged post lost | PASS | 171 of 171 found |"), std::string::npos);
  EXPECT_NE(md.find("| expect: detect n1 within 3s | **FAIL** | detected after 3.4 s \\| by n0 only |"),
            std::string::npos);
  EXPECT_NE(md.find("| posts acknowledged | 171 |"), std::string::npos);
  EXPECT_NE(md.find("| p99 post latency | 12.5 ms |"), std::string::npos);
  EXPECT_NE(md.find("![timeline](leader-crash-42.svg)"), std::string::npos);
  EXPECT_NE(md.find("- 5.0 s: kill n1\n- 8.0 s: restart n1\n"), std::string::npos);

  RunRecord passing = sample_run();
  passing.checks[1].passed = true;
  passing.wall_s = 0;
  const std::string ok = render_markdown(passing, "x.svg");
  EXPECT_NE(ok.find("Result: **PASS**"), std::string::npos);
  EXPECT_EQ(ok.find("FAIL"), std::string::npos);
  EXPECT_EQ(ok.find("inf"), std::string::npos);
  EXPECT_EQ(ok.find("real time"), std::string::npos);
}

TEST(Report, IndexListsEveryScenario) {
  std::vector<IndexRow> rows = {
      {"leader-crash", "The leader crashes.", "leader-crash/seed-3.md", 20, 2, {3, 17}, 400, 1.25},
      {"partition | heal", "A partition, then it heals.", "partition/seed-1.md", 20, 0, {}, 600, 2},
  };
  const std::string md = render_index(rows, "chorus-sim run scenarios/ --seeds 1..20");
  EXPECT_EQ(md.rfind("# Scenario runs\n", 0), 0u);
  EXPECT_NE(md.find("`chorus-sim run scenarios/ --seeds 1..20`"), std::string::npos);
  EXPECT_NE(md.find("| [leader-crash](<leader-crash/seed-3.md>) | **FAIL** | 20 | 2 (3, 17) | 400.0 | 1.25 | 320x | "
                    "The leader crashes. |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| [partition \\| heal](<partition/seed-1.md>) | PASS | 20 | 0 | 600.0 | 2.00 | 300x |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| **total** | **FAIL** (1 of 2) | 40 | 2 | 1000.0 | 3.25 | 308x |"), std::string::npos) << md;
  // Every table row has as many cells as the header.
  std::istringstream lines(md);
  size_t header = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '|') continue;
    const size_t cells = count(line, "|") - count(line, "\\|");
    if (header == 0) header = cells;
    EXPECT_EQ(cells, header) << line;
  }
  EXPECT_EQ(header, 9u);
}
