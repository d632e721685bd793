#include "trainer/multilevel/vcycle.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/check.h"
#include "launch/world.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"

namespace sparta::trainer::multilevel {

namespace fs = std::filesystem;

namespace {

MapOptions map_options(const MultilevelSection& m) {
  MapOptions o;
  o.mode = parse_mode(m.mode);
  o.width_pairing = parse_pairing(m.width_pairing);
  o.depth_pairing = parse_pairing(m.depth_pairing);
  o.embeddings = m.embeddings == "faithful" ? Embeddings::faithful : Embeddings::preserving;
  return o;
}

// The final model of a finished phase: its newest checkpoint's parameters, whole by name.
ModelState final_state(const fs::path& run_dir, const Phase& p) {
  const fs::path dir = run_dir / p.dir / "checkpoints";
  const auto found = checkpoint::find_resumable(dir.string());
  if (!found)
    SPARTA_DATA_ERROR("multilevel: phase {} ({}) has no checkpoint in {} to continue from",
                      p.index + 1, p.dir, dir.string());
  const checkpoint::SafetensorsReader r((fs::path(*found) / "model.safetensors").string());
  ModelState s;
  for (const auto& [name, e] : r.entries()) {
    SPARTA_CHECK(e.dtype == "F32", "multilevel: {} in {} is {}, not F32", name, *found, e.dtype);
    HostTensor t;
    t.shape = e.shape;
    t.v.resize(static_cast<size_t>(t.numel()));
    r.read(name, t.v.data(), e.bytes);
    s[name] = std::move(t);
  }
  return s;
}

// Where phase p starts: the previous phase's model coalesced (down) or de-coalesced and
// interpolated with the model that was at this level last (up).
ModelState initial_state(const fs::path& run_dir, const std::vector<Phase>& phases, size_t p,
                         const MapOptions& o, double alpha) {
  const Phase& prev = phases[p - 1];
  const Phase& cur = phases[p];
  const ModelState from = final_state(run_dir, prev);
  if (cur.level > prev.level) return coalesce(prev.model, from, o);
  size_t q = p - 1;
  while (phases[q].level != cur.level) --q;
  return interpolate(final_state(run_dir, phases[q]), decoalesce(cur.model, from, o),
                     static_cast<float>(alpha));
}

bool phase_done(const fs::path& dir, int64_t steps) {
  std::ifstream in(dir / "status");
  std::string word;
  int code = -1;
  int64_t n = -1;
  in >> word >> code >> n;
  return word == "exited" && code == 0 && n == steps;
}

Config phase_config(const Config& cfg, const Phase& p) {
  Config c = cfg;
  c.model = p.model;
  c.train.steps = p.steps;
  c.optim.lr = p.lr;
  c.optim.warmup_steps = p.warmup;
  c.checkpoint.dir.clear();  // each phase keeps its own: its final one is the boundary state
  c.multilevel.enabled = false;
  return c;
}

std::string describe(const models::ModelConfig& m) {
  return fmt::format("{} layers x d_model {}, {} heads, FFN {}{}", m.n_layers, m.d_model, m.n_heads,
                     m.moe_experts > 0 ? m.expert_ffn() : m.d_ff,
                     m.moe_experts > 0 ? fmt::format(" x {} experts", m.moe_experts) : "");
}

}  // namespace

std::vector<Phase> plan_vcycle(const Config& cfg) {
  const auto& ml = cfg.multilevel;
  const MapOptions o = map_options(ml);
  const int L = static_cast<int>(ml.levels);
  std::vector<models::ModelConfig> level{cfg.model};
  for (int k = 1; k < L; ++k) {
    try {
      level.push_back(small_config(level.back(), o));
    } catch (const Error& e) {
      SPARTA_USAGE_ERROR("multilevel.levels = {}: level {} cannot be made: {}", L, k, e.what());
    }
  }
  std::vector<int> seq;
  for (int k = 0; k < L; ++k) seq.push_back(k);
  for (int k = L - 2; k >= 0; --k) seq.push_back(k);
  const int64_t S = cfg.train.steps;
  const auto part = [&](double f) {
    return static_cast<int64_t>(std::floor(f * static_cast<double>(S)));
  };
  std::vector<Phase> phases;
  int64_t at = 0;
  for (size_t i = 0; i < seq.size(); ++i) {
    Phase p;
    p.index = static_cast<int>(i);
    p.level = seq[i];
    p.model = level[static_cast<size_t>(p.level)];
    const bool last = i + 1 == seq.size(), coarse = p.level == L - 1;
    p.steps = last ? S - at
                   : part(coarse                       ? ml.coarse_fraction
                          : i < static_cast<size_t>(L) ? ml.down_fraction
                                                       : ml.up_fraction);
    if (p.steps < 1 && last)
      SPARTA_USAGE_ERROR(
          "multilevel: the last phase (the full model) gets {} steps of train.steps = {}: "
          "multilevel.down_fraction, coarse_fraction and up_fraction leave nothing for it; "
          "lower them",
          p.steps, S);
    if (p.steps < 1)
      SPARTA_USAGE_ERROR(
          "multilevel: phase {} (level {}) gets no step of train.steps = {}: raise "
          "multilevel.{} or train.steps",
          i + 1, p.level, S,
          coarse                       ? "coarse_fraction"
          : i < static_cast<size_t>(L) ? "down_fraction"
                                       : "up_fraction");
    p.first_step = at;
    p.lr = cfg.optim.lr * std::pow(ml.lr_scale, p.level);
    p.warmup = std::min(i == 0 ? cfg.optim.warmup_steps : ml.warmup_steps, p.steps);
    p.dir = fmt::format("phase-{}-level-{}", i + 1, p.level);
    at += p.steps;
    phases.push_back(std::move(p));
  }
  return phases;
}

int run_vcycle(const Config& cfg, const RunOptions& opt) {
  if (opt.run_dir.empty())
    SPARTA_USAGE_ERROR("multilevel.enabled needs --run-dir: each phase is a run directory in it");
  if (opt.stop_at_step >= 0)
    SPARTA_USAGE_ERROR(
        "--stop-at-step counts the steps of one run; with multilevel.enabled stop with a "
        "control request (README \"Controlling a run\") and continue with --resume auto");
  if (!opt.resume.empty() && opt.resume != "auto")
    SPARTA_USAGE_ERROR("--resume {}: a multi-level run resumes with --resume auto", opt.resume);
  const std::vector<Phase> phases = plan_vcycle(cfg);
  const MapOptions o = map_options(cfg.multilevel);
  const launch::World world = launch::discover_world();
  const bool lead = world.rank == 0;
  const fs::path run(opt.run_dir);
  const auto say = [&](const std::string& line) {
    if (!lead || opt.quiet) return;
    fmt::print("{}\n", line);
    std::fflush(stdout);
  };
  if (lead) {
    fs::create_directories(run);
    std::ofstream(run / "config.toml") << to_toml(cfg);
    std::ofstream(run / "status") << "running\n";
  }
  std::string plan =
      fmt::format("multilevel: {} phases over {} steps:", phases.size(), cfg.train.steps);
  for (const auto& p : phases)
    plan += fmt::format("\n  phase {} level {}: steps {}..{} at lr {:.2e} ({})", p.index + 1,
                        p.level, p.first_step + 1, p.first_step + p.steps, p.lr, describe(p.model));
  say(plan);
  const double full_per_token = models::train_flops_per_token(cfg.model);
  for (size_t i = 0; i < phases.size(); ++i) {
    const Phase& p = phases[i];
    const fs::path dir = run / p.dir;
    const bool resume = opt.resume == "auto";
    if (resume && phase_done(dir, p.steps)) {
      say(fmt::format("multilevel: phase {} (level {}) is done", p.index + 1, p.level));
      continue;
    }
    RunOptions po = opt;
    po.run_dir = dir.string();
    po.metrics_out.clear();
    po.control_dir = opt.run_dir;
    po.data_step_offset = p.first_step;
    po.resume = resume && checkpoint::find_resumable((dir / "checkpoints").string()) ? "auto" : "";
    Trainer t(phase_config(cfg, p), po);
    if (i > 0 && po.resume.empty())
      t.set_parameters(initial_state(run, phases, i, o, cfg.multilevel.alpha));
    say(fmt::format(
        "multilevel: phase {} of {}: level {} ({}, {} parameters), {} steps at lr "
        "{:.2e}{}",
        p.index + 1, phases.size(), p.level, describe(p.model), t.model().num_params(), p.steps,
        p.lr,
        i == 0 ? ""
        : phases[i - 1].level < p.level
            ? ", coalesced from the last phase"
            : fmt::format(", de-coalesced and interpolated (alpha {})", cfg.multilevel.alpha)));
    const RunSummary s = t.run();
    // Counted from the plan, so a resumed cycle reports the same totals as an uninterrupted one.
    double prior = 0;
    for (size_t q = 0; q < i; ++q)
      prior +=
          static_cast<double>(phases[q].steps) * models::train_flops_per_token(phases[q].model);
    const double flops = s.tokens_per_step * (prior + static_cast<double>(s.steps) *
                                                          models::train_flops_per_token(p.model));
    const double full_flops =
        s.tokens_per_step * static_cast<double>(p.first_step + s.steps) * full_per_token;
    if (lead) {
      nlohmann::json rec = {{"phase", p.index + 1},
                            {"level", p.level},
                            {"first_step", p.first_step},
                            {"steps", s.steps},
                            {"params", t.model().num_params()},
                            {"flops", flops},
                            {"full_model_flops", full_flops},
                            {"train_loss", s.final_train_loss},
                            {"val_loss", s.final_val_loss},
                            {"exit_code", s.exit_code}};
      std::ofstream(run / "multilevel.jsonl", std::ios::app) << rec.dump() << '\n';
    }
    say(fmt::format(
        "multilevel: phase {} done: val loss {:.4f}; {:.3e} FLOPs so far ({:.1f}% of "
        "the full model's for the same tokens)",
        p.index + 1, s.final_val_loss, flops, 100.0 * flops / std::max(1.0, full_flops)));
    if (s.stopped_early) {
      if (lead)
        std::ofstream(run / "status")
            << "exited " << s.exit_code << ' ' << p.first_step + s.steps << '\n';
      return s.exit_code;
    }
  }
  if (lead) std::ofstream(run / "status") << "exited 0 " << cfg.train.steps << '\n';
  return 0;
}

}  // namespace sparta::trainer::multilevel
