// Serves a LiveMetrics snapshot at http://<bind>:<port>/metrics in the Prometheus text format
// (prometheus-cpp 1.0.1's Exposer on civetweb; its scrape threads call Collect, which copies the
// state and formats it there, never on the training thread). Built with SPARTA_PROMETHEUS;
// without it, asking for the exporter is a usage error.
#pragma once

#include <memory>
#include <string>

#include "monitoring/live_metrics.h"

namespace sparta::monitoring {

class PrometheusExporter {
 public:
  // Listens on bind:port (port 0: an ephemeral one). A malformed address, a busy port or an
  // address that is not this machine's is a usage error naming them. `metrics` must outlive
  // the exporter.
  PrometheusExporter(const std::string& bind, int port, const LiveMetrics& metrics);
  ~PrometheusExporter();
  PrometheusExporter(const PrometheusExporter&) = delete;
  PrometheusExporter& operator=(const PrometheusExporter&) = delete;
  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// The exposition of a snapshot in the text format (what /metrics serves; for tests).
std::string exposition_text(const MetricsState& s);

}  // namespace sparta::monitoring
