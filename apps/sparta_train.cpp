// sparta-train: train a language model from a TOML config. See README.md.
#include <cstdlib>
#include <string>

#include <fmt/core.h>

#include "launch/program.h"
#include "launch/world.h"
#include "trainer/config.h"
#include "trainer/multilevel/vcycle.h"
#include "trainer/trainer.h"
#ifdef SPARTA_HAVE_MPI
#include "parallel/mpi_comm.h"
#endif
#ifdef SPARTA_HAVE_GRPC
#include "monitoring/control_service.h"
#endif

namespace {
bool multi_rank() {
  try {
    return sparta::launch::discover_world().size > 1;
  } catch (const std::exception&) {
    return false;  // reported again, as a usage error, when the trainer starts
  }
}

#ifdef SPARTA_HAVE_MPI
// MPI starts before the config is read, so its start-up bound comes from the environment.
constexpr double kDefaultInitTimeoutS = 120;

double init_timeout_s() {
  const char* v = std::getenv("SPARTA_INIT_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return kDefaultInitTimeoutS;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (*end != '\0' || !(t >= 0) || t > 1e6) {
    fmt::print(stderr,
               "sparta-train: SPARTA_INIT_TIMEOUT_S='{}' is not a number of seconds in [0, 1e6] "
               "(0: wait for ever)\n",
               v);
    std::exit(2);
  }
  return t;
}

std::string who_am_i() {
  const auto w = sparta::launch::discover_world();
  return fmt::format("rank {} of {} (launched by {})", w.rank, w.size, w.launcher);
}
#endif
}  // namespace

int main(int argc, char** argv) {
  sparta::kernels::select_blas_kernel(argv);
#ifdef SPARTA_HAVE_MPI
  // Under mpirun/srun with several ranks: MPI first, and from then on any failure of this rank
  // ends the whole job through MpiRuntime::fail_job (a message on every rank, never a hang).
  const bool mpi = multi_rank();
  if (mpi) sparta::parallel::MpiRuntime::init(&argc, &argv, init_timeout_s(), who_am_i());
  auto fail = [&](int code, const std::string& msg) {
    if (mpi) sparta::parallel::MpiRuntime::fail_job(code, msg);
  };
#else
  auto fail = [](int, const std::string&) {};
#endif
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
  auto body = [&] {
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
#ifdef SPARTA_HAVE_GRPC
    opt.control_endpoint = sparta::monitoring::grpc_control_factory();
#endif
    if (cfg.multilevel.enabled) return sparta::trainer::multilevel::run_vcycle(cfg, opt);
    sparta::trainer::Trainer trainer(cfg, opt);
    return trainer.run().exit_code;  // 75 / 76 after a control stop (trainer/control.h)
  };
  const int rc = sparta::launch::run_main("sparta-train", app, argc, argv, [&] {
    try {
      return body();
    } catch (const sparta::Error& e) {
      fail(e.exit_code(), fmt::format("sparta-train: error: {}", e.what()));
      throw;
    } catch (const std::exception& e) {
      fail(1, fmt::format("sparta-train: internal error: {}", e.what()));
      throw;
    }
  });
#ifdef SPARTA_HAVE_MPI
  if (mpi) sparta::parallel::MpiRuntime::finalize();
#endif
  return rc;
}
