// sparta-train: train a language model from a TOML config. See README.md.
#include <fmt/core.h>

#include "apps/cli.h"
#include "trainer/config.h"
#include "trainer/trainer.h"

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
  CLI::App app{"sparta-train: train a sparse/dense decoder language model", "sparta-train"};
  std::string config_file, run_dir, metrics_out;
  std::vector<std::string> overrides;
  bool print_config = false, print_reference = false;
  std::string resume;
  int64_t stop_at_step = -1;
  app.add_option("--config", config_file,
                 "TOML config (default: the embedded configs/default.toml)")
      ->check(CLI::ExistingFile);
  app.add_option("--set", overrides, "override one key: section.key=value (repeatable)");
  app.add_option("--run-dir", run_dir, "directory for config.toml and metrics.jsonl");
  app.add_option("--metrics-out", metrics_out,
                 "JSONL metrics file (default <run-dir>/metrics.jsonl)");
  app.add_option("--resume", resume,
                 "auto: continue from the newest complete checkpoint (fresh if none); or a "
                 "checkpoint directory");
  app.add_option("--stop-at-step", stop_at_step,
                 "save a checkpoint after step N and exit 0 (the schedule still ends at "
                 "train.steps)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--print-config", print_config, "print the effective config and exit");
  app.add_flag("--print-config-reference", print_reference,
               "print the Markdown table of every config key and exit");
  return sparta::apps::run_main("sparta-train", app, argc, argv, [&] {
    if (print_reference) {
      fmt::print("{}", sparta::trainer::config_reference_markdown());
      return 0;
    }
    const auto cfg = sparta::trainer::load_config(config_file, overrides);
    if (print_config) {
      fmt::print("{}", sparta::trainer::to_toml(cfg));
      return 0;
    }
    sparta::trainer::RunOptions opt;
    opt.run_dir = run_dir;
    opt.metrics_out = metrics_out;
    opt.resume = resume;
    opt.stop_at_step = stop_at_step;
    sparta::trainer::Trainer trainer(cfg, opt);
    trainer.run();
    return 0;
  });
}
