#include "server/api/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api/listen_address.h"

namespace stackproc::server {
namespace {

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Counts the status of every call, by method, as the server sends it.
class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(Metrics& metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_.CallAnswered(method_, methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  Metrics& metrics_;
  const std::string method_;
};

class CallInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallInterceptorFactory(Metrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallInterceptor(metrics_, info->method());
  }

 private:
  Metrics& metrics_;
};

}  // namespace

// The gauges that are the job manager's state, read at scrape time.
class Metrics::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(std::function<JobCounts()> counts) : counts_(std::move(counts)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    const JobCounts counts = counts_();
    prometheus::MetricFamily jobs{
        "stackproc_jobs", "Jobs the server knows, by state", prometheus::MetricType::Gauge, {}};
    for (JobState state : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                           JobState::kFailed, JobState::kCancelled, JobState::kInterrupted}) {
      prometheus::ClientMetric metric;
      metric.label.push_back({"state", JobStateName(state)});
      auto it = counts.by_state.find(state);
      metric.gauge.value = it == counts.by_state.end() ? 0 : it->second;
      jobs.metric.push_back(std::move(metric));
    }
    prometheus::MetricFamily queue{"stackproc_queue_length",
                                   "Jobs waiting for memory or a worker",
                                   prometheus::MetricType::Gauge,
                                   {}};
    prometheus::ClientMetric queued;
    queued.gauge.value = counts.queued;
    queue.metric.push_back(queued);
    return {std::move(jobs), std::move(queue)};
  }

 private:
  std::function<JobCounts()> counts_;
};

namespace {

prometheus::Family<prometheus::Counter>& Counters(prometheus::Registry& registry,
                                                  const std::string& name,
                                                  const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      submitted_(Counters(*registry_, "stackproc_jobs_submitted_total", "Jobs accepted").Add({})),
      rejected_(Counters(*registry_, "stackproc_job_rejections_total",
                         "Submissions refused, by status code (RESOURCE_EXHAUSTED: admission)")),
      validation_failures_(Counters(*registry_, "stackproc_tiff_validation_failures_total",
                                    "Inputs refused by the TIFF validation")
                               .Add({})),
      slices_(Counters(*registry_, "stackproc_slices_processed_total", "Slices of finished jobs")
                  .Add({})),
      bytes_(Counters(*registry_, "stackproc_bytes_processed_total", "Input bytes of finished jobs")
                 .Add({})),
      durations_(prometheus::BuildHistogram()
                     .Name("stackproc_job_duration_seconds")
                     .Help("Run time of finished jobs, by final state")
                     .Register(*registry_)),
      calls_(Counters(*registry_, "stackproc_grpc_calls_total",
                      "Calls the server answered, by method and status code")),
      store_failures_(Counters(*registry_, "stackproc_job_store_failures_total",
                               "Job records the state directory could not take")
                          .Add({})) {}

Metrics::~Metrics() = default;

absl::Status Metrics::Serve(const std::string& listen, std::function<JobCounts()> counts) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception&) {  // CivetWeb's words ("null context ...") say nothing
    return ListenFailed("metrics-listen", listen);
  }
  collector_ = std::make_shared<Collector>(std::move(counts));
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(collector_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

void Metrics::JobSubmitted() { submitted_.Increment(); }

void Metrics::JobRejected(const absl::Status& status) {
  rejected_.Add({{"code", absl::StatusCodeToString(status.code())}}).Increment();
}

void Metrics::TiffValidationFailed() { validation_failures_.Increment(); }

void Metrics::JobStoreFailed() { store_failures_.Increment(); }

void Metrics::JobEnded(const JobSnapshot& job) {
  slices_.Increment(static_cast<double>(job.progress.slices_done));
  bytes_.Increment(static_cast<double>(job.progress.bytes_done));
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200};
  const double seconds = absl::ToDoubleSeconds(job.end_time - job.start_time);
  durations_.Add({{"state", JobStateName(job.state)}}, kBuckets)
      .Observe(job.start_time == absl::InfinitePast() ? 0 : seconds);
}

void Metrics::CallAnswered(const std::string& method, grpc::StatusCode code) {
  calls_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Metrics::CallCounter() {
  return std::make_unique<CallInterceptorFactory>(*this);
}

}  // namespace stackproc::server
