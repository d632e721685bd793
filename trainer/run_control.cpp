// The trainer's side of the control word (trainer/control.h): what an agreed word does at a step
// boundary, and the diagnostics dump.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "trainer/trainer.h"

namespace sparta::trainer {

namespace fs = std::filesystem;

bool Trainer::act_on_control(const ControlWord& w, int64_t done, bool saved, double tokens_per_step,
                             RunSummary& sum, bool during_eval) {
  if (!w.any()) return false;
  if (w.has(kDump)) dump_diagnostics(done, done > 0 ? &last_step_ : nullptr);
  const bool finished = done == cfg_.train.steps;
  const bool stopping = (w.has(kStop) || w.has(kStopNow)) && !finished;
  // A stop without saving skips the checkpoint, unless a checkpoint was asked for as well.
  const bool wants_save = w.has(kCheckpoint) && !(w.has(kStopNow) && !w.has(kStop));
  const std::string dir = checkpoint_dir();
  bool have_checkpoint = saved;
  if (wants_save && !saved) {
    if (dir.empty()) {
      const std::string warn =
          "a checkpoint was requested, but the run has nowhere to save it (give --run-dir or "
          "checkpoint.dir)";
      say("control: " + warn);
      plane_->event(monitoring::EventKind::warning, done, warn);
    } else {
      save_checkpoint(done, tokens_per_step, sum, w.has(kFromSignal) ? 3 : 4);
      have_checkpoint = true;
    }
  }
  int code = stopping ? w.exit_code() : -1;
  // Requeueing a job that saved nothing would start it over: report an unsaved stop instead.
  if (stopping && w.has(kStop) && !have_checkpoint) code = kExitStoppedUnsaved;
  if (monitor_) monitor_->after_control(ControlInbox::signal_counts(), w.bits);
  if (w.has(kFromSignal))
    plane_->event(monitoring::EventKind::signal_received, done,
                  w.signal > 0 ? signal_name(w.signal) : "signal");
  monitoring::ControlRecord rec;
  rec.step = done;
  rec.actions = w.actions();
  rec.sources = w.sources();
  rec.exit_code = code;
  rec.during_eval = during_eval;
  metrics_->write(rec);
  std::string from;
  for (const auto& src : rec.sources) from += (from.empty() ? "" : ", ") + src;
  std::string what;
  for (const auto& a : rec.actions) what += (what.empty() ? "" : "+") + a;
  const std::string line = fmt::format(
      "control: {} at step {} (from {}){}", what, done, from,
      finished && (w.has(kStop) || w.has(kStopNow)) ? "; the run is complete anyway" : "");
  say(line);
  if (!stopping) {
    plane_->event(monitoring::EventKind::control, done, line.substr(9));
    return false;
  }
  plane_->drain(done, line.substr(9));
  sum.stopped_early = true;
  sum.exit_code = code;
  if (code == kExitRequeue)
    say(
        fmt::format("stopping after step {}: checkpointed, exit {} (requeue me; continue with "
                    "--resume auto)",
                    done, code));
  else if (code == 0)
    say(fmt::format("stopping after step {} as asked; continue with --resume auto", done));
  else
    say(fmt::format("stopping after step {} without saving as asked (exit {})", done, code));
  return true;
}

// Every rank writes what it knows: where each communicator's last collectives stood, their
// totals, and the last step's phase times (a straggler shows as the rank with the most compute).
void Trainer::dump_diagnostics(int64_t done, const StepResult* last) const {
  std::string text = fmt::format("sparta-train diagnostics: rank {} of {}, after step {}\n",
                                 world_.rank, world_.size, done);
  if (last) {
    text += fmt::format("last step: {:.1f} ms;", last->seconds * 1e3);
    for (size_t p = 0; p < monitoring::kPhases; ++p)
      if (last->phases[p] > 0)
        text +=
            fmt::format(" {} {:.1f} ms", monitoring::to_string(static_cast<monitoring::Phase>(p)),
                        last->phases[p] * 1e3);
    text += "\n";
  }
  for (const parallel::Comm* c : groups_->comms()) {
    text += fmt::format("communicator {} (rank {} of {}):\n", c->name(), c->rank(), c->size());
    for (size_t k = 0; k < parallel::kCollKinds; ++k) {
      const auto& st = c->stats(static_cast<parallel::CollKind>(k));
      if (st.calls > 0)
        text += fmt::format("  {} {} calls, {} bytes, {:.3f} s\n",
                            parallel::to_string(static_cast<parallel::CollKind>(k)), st.calls,
                            st.bytes, st.seconds);
    }
    text += c->flight().tail(16);
    if (!text.empty() && text.back() != '\n') text += "\n";
  }
  if (opt_.run_dir.empty()) {
    fmt::print(stderr, "{}", text);
    return;
  }
  const fs::path dir = fs::path(opt_.run_dir) / "diagnostics";
  fs::create_directories(dir);
  const fs::path file = dir / fmt::format("step{}-rank{}.txt", done, world_.rank);
  std::ofstream(file) << text;
  say(fmt::format("diagnostics: every rank's in {}/step{}-rank*.txt", dir.string(), done));
}

}  // namespace sparta::trainer
