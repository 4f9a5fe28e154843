// Prometheus metrics on a port of their own (--metrics-listen HOST:PORT, GET /metrics):
//
//   stackproc_jobs{state}                   jobs the server knows, by state (at scrape time)
//   stackproc_queue_length                  jobs waiting for memory or a worker
//   stackproc_jobs_submitted_total          jobs accepted
//   stackproc_job_rejections_total{code}    submissions refused, by status code
//                                           (RESOURCE_EXHAUSTED: admission)
//   stackproc_tiff_validation_failures_total  inputs refused by the TIFF validation
//   stackproc_slices_processed_total        slices of finished jobs
//   stackproc_bytes_processed_total         input bytes of finished jobs
//   stackproc_job_duration_seconds{state}   histogram of finished jobs' run time
//   stackproc_grpc_calls_total{method,code} every call the server answered
//   stackproc_job_store_failures_total      job records the state directory could not take
//                                           (the jobs go on; a restart would not list them
//                                           as they are)
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/jobs/job.h"

namespace stackproc::server {

class Metrics {
 public:
  // What the job manager knows at scrape time.
  struct JobCounts {
    std::map<JobState, int> by_state;
    int queued = 0;
  };

  Metrics();
  ~Metrics();

  // Serves /metrics on `listen` ("HOST:PORT"; port 0 picks one); returns the port.
  // `counts` is called at every scrape.
  absl::Status Serve(const std::string& listen, std::function<JobCounts()> counts);
  int port() const { return port_; }

  void JobSubmitted();
  void JobRejected(const absl::Status& status);
  void TiffValidationFailed();
  void JobEnded(const JobSnapshot& job);
  void CallAnswered(const std::string& method, grpc::StatusCode code);
  void JobStoreFailed();

  // Counts every call the server answers (ServerBuilder interceptor).
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> CallCounter();

 private:
  class Collector;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  prometheus::Counter& submitted_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& validation_failures_;
  prometheus::Counter& slices_;
  prometheus::Counter& bytes_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Counter& store_failures_;
};

}  // namespace stackproc::server
