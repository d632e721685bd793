// sparta-top: a terminal dashboard over a run's sparta.v1.Control service (README "sparta-top").
//   sparta-top RUN_DIR | HOST:PORT [--token-file F] [--once] [--interval S]
// Keys: c checkpoint at the end of the step in progress; s stop after a checkpoint (asks y/N);
// q quit. --once prints one text snapshot and exits (for scripts).
// Exit: 0; 1 the run is unreachable, ended or refused the call; 2 bad usage.
#include <grpcpp/grpcpp.h>
#include <langinfo.h>

#include <chrono>
#include <clocale>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "control.grpc.pb.h"
#include "monitoring/top_view.h"

// Last: curses defines macros (OK, ERR, timeout, ...) that clash with gRPC's names.
#include <curses.h>
#undef OK

namespace {

namespace fs = std::filesystem;
namespace v1 = sparta::v1;
namespace mon = sparta::monitoring;

// Not reachable, ended, refused: exit 1 with the message.
struct Unreachable {
  std::string message;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  std::string t = s.str();
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

// A run directory's address, or why there is none; a HOST:PORT as given.
std::string resolve(const std::string& target) {
  if (!fs::is_directory(target)) {
    if (target.find(':') == std::string::npos)
      throw Unreachable{fmt::format("'{}' is neither a run directory nor HOST:PORT", target)};
    return target;
  }
  const fs::path dir(target);
  if (fs::exists(dir / "control.address")) return slurp(dir / "control.address");
  const std::string status = fs::exists(dir / "status") ? slurp(dir / "status") : "";
  if (status.rfind("exited", 0) == 0) {
    int code = 0;
    long long steps = 0;
    std::sscanf(status.c_str(), "exited %d %lld", &code, &steps);
    throw Unreachable{
        fmt::format("the run in {} has ended: exit {} after {} steps", target, code, steps)};
  }
  throw Unreachable{
      fmt::format("{} has no control.address: the run is not serving (not started yet, killed, or "
                  "[control] grpc_bind = \"none\")",
                  target)};
}

class Client {
 public:
  Client(const std::string& address, std::string token)
      : address_(address),
        stub_(
            v1::Control::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        token_(std::move(token)) {}

  // Status and one metrics sample; false (with *error) when the service did not answer.
  bool fetch(mon::TopSnapshot* s, std::string* error) {
    grpc::ClientContext ctx;
    prepare(&ctx);
    v1::Status st;
    const grpc::Status rc = stub_->GetStatus(&ctx, v1::GetStatusRequest(), &st);
    if (!rc.ok()) {
      *error = describe(rc);
      return false;
    }
    auto& r = s->status;
    r.state = st.state();
    r.step = st.step();
    r.total_steps = st.total_steps();
    r.eta_s = st.eta_s();
    r.loss = st.loss();
    r.val_loss = st.val_loss();
    r.tokens_per_s = st.tokens_per_s();
    r.mfu = st.mfu();
    r.last_checkpoint_step = st.last_checkpoint_step();
    r.restarts = st.restarts();
    r.layout = st.layout();
    r.run_dir = st.run_dir();
    r.heartbeats.clear();
    for (const auto& h : st.heartbeats()) r.heartbeats.push_back({h.rank(), h.age_s()});
    if (r.step > last_step_ && r.step > 0) {
      s->losses.push_back(r.loss);
      if (s->losses.size() > 512) s->losses.pop_front();
      last_step_ = r.step;
    }
    grpc::ClientContext mctx;
    prepare(&mctx);
    v1::StreamMetricsRequest req;
    req.set_interval_ms(100);
    auto reader = stub_->StreamMetrics(&mctx, req);
    v1::MetricsSample m;
    if (reader->Read(&m)) {
      s->metrics.clear();
      for (const auto& x : m.metrics()) {
        mon::MetricValue v{x.name(), {}, x.value()};
        for (const auto& [k, val] : x.labels()) v.labels.emplace_back(k, val);
        s->metrics.push_back(std::move(v));
      }
    }
    mctx.TryCancel();
    (void)reader->Finish();
    return true;
  }

  std::string checkpoint() {
    grpc::ClientContext ctx;
    prepare(&ctx);
    v1::RequestCheckpointReply r;
    const auto rc = stub_->RequestCheckpoint(&ctx, v1::RequestCheckpointRequest(), &r);
    return rc.ok() ? fmt::format("checkpoint requested: at the end of step {}", r.step())
                   : "checkpoint refused: " + describe(rc);
  }

  std::string stop() {
    grpc::ClientContext ctx;
    prepare(&ctx);
    v1::RequestStopRequest req;
    req.set_mode(v1::RequestStopRequest::AFTER_CHECKPOINT);
    v1::RequestStopReply r;
    const auto rc = stub_->RequestStop(&ctx, req, &r);
    return rc.ok() ? fmt::format("stop requested: checkpoint and stop after step {}", r.step())
                   : "stop refused: " + describe(rc);
  }

 private:
  void prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }
  std::string describe(const grpc::Status& rc) const {
    if (rc.error_code() == grpc::StatusCode::UNAVAILABLE ||
        rc.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      return fmt::format(
          "cannot reach sparta.v1.Control at {} (the run ended, or is on "
          "another host?): {}",
          address_, rc.error_message());
    return fmt::format("{} ({})", rc.error_message(), static_cast<int>(rc.error_code()));
  }
  std::string address_;
  std::unique_ptr<v1::Control::Stub> stub_;
  std::string token_;
  int64_t last_step_ = 0;
};

void draw(const mon::TopSnapshot& s, const std::string& message, bool connected) {
  erase();
  const int width = COLS;
  int row = 0;
  for (const auto& line : mon::render_top(s, width)) mvaddstr(row++, 0, line.c_str());
  ++row;
  if (!connected) mvaddstr(row++, 0, "(not connected: showing the last answer)");
  if (!message.empty()) mvaddnstr(row++, 0, message.c_str(), width);
  mvaddstr(LINES - 1, 0, "c checkpoint   s stop (after a checkpoint)   q quit");
  refresh();
}

int interactive(Client& client, mon::TopSnapshot& snap, double interval_s) {
  initscr();
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  timeout(100);
  std::string message, error;
  bool connected = true, confirming = false;
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    if (std::chrono::steady_clock::now() >= next) {
      connected = client.fetch(&snap, &error);
      if (!connected)
        message = error;
      else if (snap.status.state == "finished")
        message = "the run has finished; q quits";
      next = std::chrono::steady_clock::now() +
             std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(interval_s));
      draw(snap, message, connected);
    }
    const int ch = getch();
    if (ch == ERR) continue;
    if (confirming) {
      confirming = false;
      message = (ch == 'y' || ch == 'Y') ? client.stop() : "stop cancelled";
    } else if (ch == 'q' || ch == 'Q') {
      break;
    } else if (ch == 'c') {
      message = client.checkpoint();
    } else if (ch == 's') {
      confirming = true;
      message = "stop the run after a checkpoint? y/N";
    }
    draw(snap, message, connected);
  }
  endwin();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setlocale(LC_ALL, "");
  CLI::App app{"sparta-top: watch and steer a running sparta-train (README \"sparta-top\")"};
  std::string target, token_file;
  bool once = false;
  double interval = 1.0;
  app.add_option("target", target, "the run directory (its control.address) or HOST:PORT")
      ->required();
  app.add_option("--token-file", token_file, "file holding the run's [control] token");
  app.add_flag("--once", once, "print one snapshot as text and exit");
  app.add_option("--interval", interval, "seconds between refreshes")
      ->check(CLI::Range(0.1, 3600.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    std::string token;
    if (!token_file.empty()) {
      if (!fs::exists(token_file)) {
        fmt::print(stderr, "sparta-top: --token-file {}: no such file\n", token_file);
        return 2;
      }
      token = slurp(token_file);
    }
    Client client(resolve(target), token);
    mon::TopSnapshot snap;
    snap.unicode = std::strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    std::string error;
    if (!client.fetch(&snap, &error)) throw Unreachable{error};
    if (!once) return interactive(client, snap, interval);
    for (const auto& line : mon::render_top(snap, 100)) fmt::print("{}\n", line);
    return 0;
  } catch (const Unreachable& u) {
    fmt::print(stderr, "sparta-top: {}\n", u.message);
    return 1;
  }
}
