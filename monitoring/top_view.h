// sparta-top's screen as text (apps/sparta_top.cpp draws it with ncurses, or prints it once with
// --once): a pure function of what the Control service answered, so it is tested without a
// terminal. README "sparta-top" shows a screen.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "monitoring/control_state.h"

namespace sparta::monitoring {

struct TopSnapshot {
  RunStatus status;
  std::vector<MetricValue> metrics;  // one StreamMetrics sample (may be empty)
  std::deque<double> losses;         // recent per-step losses seen, oldest first
  bool unicode = true;               // block characters for the sparkline and heat map
};

// One line per entry, at most `width` columns each (UTF-8 counts one per character).
std::vector<std::string> render_top(const TopSnapshot& s, int width);

// "▁▂▃▅▇" (or "_.-=#" without unicode): one character per value, scaled min..max.
std::string sparkline(const std::deque<double>& values, size_t width, bool unicode);

}  // namespace sparta::monitoring
