#include "monitoring/top_view.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "monitoring/metrics_log.h"  // format_duration

namespace sparta::monitoring {

namespace {

const char* const kBlocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                               "\u2585", "\u2586", "\u2587", "\u2588"};
const char kAscii[] = "_.-~=+*#";
const char* const kShades[] = {" ", "\u2591", "\u2592", "\u2593", "\u2588"};
const char kAsciiShades[] = " .:o@";

std::string label(const MetricValue& m, const std::string& key) {
  for (const auto& [k, v] : m.labels)
    if (k == key) return v;
  return "";
}

// Cuts s to n characters (a UTF-8 sequence counts as one).
std::string fit(const std::string& s, int n) {
  std::string out;
  int chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) != 0x80 && chars++ == n) break;
    out += s[i];
  }
  return out;
}

void add_phases(const TopSnapshot& s, std::vector<std::string>& out) {
  std::vector<std::pair<std::string, double>> phases;
  double total = 0, comm = 0;
  for (const auto& m : s.metrics)
    if (m.name == "sparta_phase_seconds_total" && m.value > 0) {
      phases.emplace_back(label(m, "phase"), m.value);
      total += m.value;
      if (label(m, "phase") == "comm_wait") comm = m.value;
    }
  if (total <= 0) return;
  std::string line = "time     ";
  for (const auto& [p, v] : phases) line += fmt::format(" {} {:.0f}%", p, 100 * v / total);
  out.push_back(line);
  out.push_back(
      fmt::format("comm      {:.1f}% of the step time inside collectives", 100 * comm / total));
}

// One row per routed block: an expert per character, shaded by its share of the row's busiest.
void add_experts(const TopSnapshot& s, std::vector<std::string>& out, int width) {
  std::map<std::pair<int, std::string>, std::vector<double>> rows;
  std::map<std::pair<int, std::string>, double> dead;
  for (const auto& m : s.metrics) {
    const auto key = std::make_pair(std::atoi(label(m, "layer").c_str()), label(m, "block"));
    if (m.name == "sparta_expert_tokens_step") {
      auto& row = rows[key];
      const size_t e = static_cast<size_t>(std::atoi(label(m, "expert").c_str()));
      if (row.size() <= e) row.resize(e + 1, 0);
      row[e] = m.value;
    } else if (m.name == "sparta_dead_experts") {
      dead[key] = m.value;
    }
  }
  if (rows.empty()) return;
  out.push_back("experts   last step's tokens per expert (darker: busier), dead = no token");
  for (const auto& [key, row] : rows) {
    const double top = *std::max_element(row.begin(), row.end());
    std::string cells;
    const size_t room = static_cast<size_t>(std::max(8, width - 32));
    for (size_t e = 0; e < row.size() && e < room; ++e) {
      const int level = top > 0 ? static_cast<int>(row[e] / top * 4.0 + 0.5) : 0;
      cells += s.unicode ? kShades[level] : std::string(1, kAsciiShades[level]);
    }
    out.push_back(fmt::format("  L{:<2} {:<8} |{}| dead {:.0f}", key.first, key.second, cells,
                              dead.count(key) ? dead.at(key) : 0.0));
  }
}

}  // namespace

std::string sparkline(const std::deque<double>& values, size_t width, bool unicode) {
  if (values.empty()) return "";
  const size_t n = std::min(width, values.size());
  const auto first = values.end() - static_cast<std::ptrdiff_t>(n);
  const auto [lo, hi] = std::minmax_element(first, values.end());
  std::string out;
  for (auto it = first; it != values.end(); ++it) {
    const int level = *hi > *lo ? static_cast<int>((*it - *lo) / (*hi - *lo) * 7.0 + 0.5) : 3;
    out += unicode ? kBlocks[level] : std::string(1, kAscii[level]);
  }
  return out;
}

std::vector<std::string> render_top(const TopSnapshot& s, int width) {
  const RunStatus& st = s.status;
  std::vector<std::string> out;
  const double pct = st.total_steps > 0 ? 100.0 * static_cast<double>(st.step) /
                                              static_cast<double>(st.total_steps)
                                        : 0;
  out.push_back(fmt::format("sparta-top  {}  [{}]  {}", st.run_dir.empty() ? "-" : st.run_dir,
                            st.state, st.layout));
  out.push_back(fmt::format("step      {} / {} ({:.1f}%)  ETA {}  restarts {}", st.step,
                            st.total_steps, pct, st.eta_s > 0 ? format_duration(st.eta_s) : "-",
                            st.restarts));
  out.push_back(
      fmt::format("loss      {:.4f}  {}", st.loss,
                  sparkline(s.losses, static_cast<size_t>(std::max(8, width - 20)), s.unicode)));
  out.push_back(fmt::format(
      "val loss  {}", st.val_loss > 0 ? fmt::format("{:.4f}", st.val_loss) : std::string("-")));
  out.push_back(
      fmt::format("speed     {:.0f} tokens/s  MFU {:.1f}%", st.tokens_per_s, 100 * st.mfu));
  out.push_back(st.last_checkpoint_step >= 0
                    ? fmt::format("checkpoint step {}", st.last_checkpoint_step)
                    : "checkpoint none yet");
  add_phases(s, out);
  add_experts(s, out, width);
  std::string hb = "ranks    ";
  for (const auto& h : st.heartbeats)
    hb += h.age_s < 0 ? fmt::format(" {}:-", h.rank) : fmt::format(" {}:{:.1f}s", h.rank, h.age_s);
  out.push_back(hb);
  for (auto& l : out) l = fit(l, width);
  return out;
}

}  // namespace sparta::monitoring
