// Built instead of prometheus_exporter.cpp when SPARTA_PROMETHEUS is off (e.g. the GPU image):
// asking for the exporter is a usage error.
#include "kernels/check.h"
#include "monitoring/prometheus_exporter.h"

namespace sparta::monitoring {

struct PrometheusExporter::Impl {};

PrometheusExporter::PrometheusExporter(const std::string&, int, const LiveMetrics&) {
  SPARTA_USAGE_ERROR(
      "monitoring.prometheus = true, but this sparta was built without prometheus-cpp "
      "(configure with -DSPARTA_PROMETHEUS=ON)");
}

PrometheusExporter::~PrometheusExporter() = default;

std::string exposition_text(const MetricsState&) {
  return "";
}

}  // namespace sparta::monitoring
