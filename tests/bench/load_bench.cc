// stackproc-load: many clients at once against one server, over loopback, bounded in time and
// count. While a long path job runs, `--clients` threads (a connection each) submit small path
// jobs one after another, alternating an output file and an in-memory result (downloaded, then
// deleted), and `--streams` threads stream small stacks through ProcessStream. Every result is
// checked against the core's. A sampler reads the server's RSS (/proc/PID/status) and the long
// job's progress twice a second. Prints jobs/s, latency percentiles, errors, RSS over the run
// and the long job's progress; exits non-zero on any error, or when the long job stalled.
//
//   stackproc-load --server HOST:PORT --server-pid PID --data-root DIR
//                  [--clients 8] [--streams 2] [--jobs 400] [--seconds 30]
//                  [--long-slices 256]   (the long job: that many 1024x1024 uint8 slices)
//                  [--max-rss-mib N]     (fail when the server's RSS ever exceeds N MiB)
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "core/io/stack_io.h"
#include "core/io/tiff_io.h"
#include "core/pipeline/pipeline.h"
#include "core/tiff/tiff_reader.h"
#include "core/tiff/tiff_writer.h"
#include "core/tools/synthetic.h"

namespace stackproc {
namespace {

void Die(const absl::Status& status) {
  std::fprintf(stderr, "stackproc-load: %s\n", status.ToString().c_str());
  std::exit(2);
}

void Check(const absl::Status& status) {
  if (!status.ok()) Die(status);
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) Die(value.status());
  return std::move(value).value();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

uint64_t RssKib(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string key;
  uint64_t value = 0;
  while (status >> key) {
    if (key == "VmRSS:" && status >> value) return value;
    status.ignore(1 << 10, '\n');
  }
  return 0;
}

v1::SubmitJobRequest PathJob(const std::string& input, const std::vector<std::string>& ops,
                             const std::string& output) {
  return *client::PathJobRequest(input, ops, output, /*overwrite=*/true);
}

// Receives a streamed result and compares it with `expected` slice by slice.
class CheckingSink final : public client::Client::StreamSink {
 public:
  explicit CheckingSink(const core::Stack& expected) : expected_(expected) {}
  absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                     const core::StackMetadata&) override {
    if (shape != expected_.shape() || type != expected_.pixel_type()) {
      return absl::DataLossError("streamed result has the wrong shape");
    }
    return absl::OkStatus();
  }
  absl::Status Slice(int64_t z, const uint8_t* data) override {
    if (std::memcmp(data, expected_.slice_data(z), expected_.slice_bytes()) != 0) {
      return absl::DataLossError(absl::StrCat("streamed slice ", z, " differs from the core's"));
    }
    return absl::OkStatus();
  }

 private:
  const core::Stack& expected_;
};

struct Flags {
  std::string server, data_root;
  int server_pid = 0, clients = 8, streams = 2, jobs = 400, seconds = 30;
  int64_t long_slices = 256;
  double max_rss_mib = 0;  // 0: no bound checked
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    bool ok = true;
    if (flag == "--server") {
      f.server = value;
    } else if (flag == "--data-root") {
      f.data_root = value;
    } else if (flag == "--server-pid") {
      ok = absl::SimpleAtoi(value, &f.server_pid);
    } else if (flag == "--clients") {
      ok = absl::SimpleAtoi(value, &f.clients) && f.clients > 0;
    } else if (flag == "--streams") {
      ok = absl::SimpleAtoi(value, &f.streams) && f.streams >= 0;
    } else if (flag == "--jobs") {
      ok = absl::SimpleAtoi(value, &f.jobs) && f.jobs > 0;
    } else if (flag == "--long-slices") {
      ok = absl::SimpleAtoi(value, &f.long_slices) && f.long_slices > 0;
    } else if (flag == "--max-rss-mib") {
      ok = absl::SimpleAtod(value, &f.max_rss_mib) && f.max_rss_mib >= 0;
    } else if (flag == "--seconds") {
      ok = absl::SimpleAtoi(value, &f.seconds) && f.seconds > 0;
    } else {
      ok = false;
    }
    if (!ok) Die(absl::InvalidArgumentError(absl::StrCat("bad flag ", flag, " ", value)));
  }
  if (f.server.empty() || f.data_root.empty() || f.server_pid <= 0) {
    Die(absl::InvalidArgumentError("--server, --server-pid and --data-root are required"));
  }
  return f;
}

// One run of the load: its inputs, the core's results to check against, and what its threads
// measure (under `mutex`).
class Load {
 public:
  explicit Load(Flags flags) : flags_(std::move(flags)) {}

  // Writes the inputs under the data root, works out the expected result, starts the long job.
  void Prepare() {
    small_ = Check(core::MakeSyntheticStack({8, 256, 256}, core::PixelType::kUint16, 3));
    const core::Stack big = Check(
        core::MakeSyntheticStack({flags_.long_slices, 1024, 1024}, core::PixelType::kUint8, 4));
    Check(core::WriteTiff(flags_.data_root + "/load_small.tif", small_));
    Check(core::WriteTiff(flags_.data_root + "/load_long.tif", big));
    core::Pipeline small_pipeline = Check(core::Pipeline::Parse(kSmallOps));
    core::Stack copy = Check(core::Stack::Allocate(small_.shape(), small_.pixel_type()));
    std::memcpy(copy.data(), small_.data(), small_.size_bytes());
    expected_ = Check(core::Execute(std::move(copy), small_pipeline));
    for (const std::string& op : kSmallOps) stream_ops_.push_back(Check(client::ParseOpText(op)));
    long_job_ = Check(control_.Submit(PathJob("load_long.tif", kLongOps, "load_long_out.tif")));
  }

  // The clients and the streams until the time or the jobs run out, while a sampler reads the
  // server's RSS and the long job's progress twice a second. Returns the exit code.
  int Run() {
    start_ = absl::Now();
    deadline_ = start_ + absl::Seconds(flags_.seconds);
    std::vector<std::thread> threads;
    for (int c = 0; c < flags_.clients; ++c) threads.emplace_back([this, c] { SmallJobs(c); });
    for (int s = 0; s < flags_.streams; ++s) threads.emplace_back([this] { Streams(); });
    std::atomic<bool> clients_done{false};
    std::thread sampler([&] {
      while (!clients_done) {
        rss_kib_.push_back(RssKib(flags_.server_pid));
        absl::StatusOr<v1::Job> j = control_.Get(long_job_.id());
        long_done_.push_back(j.ok() ? j->progress().slices_done() : -1);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    });
    for (std::thread& t : threads) t.join();
    const double wall = absl::ToDoubleSeconds(absl::Now() - start_);
    clients_done = true;
    sampler.join();
    const int code = Report(wall);
    (void)control_.Cancel(long_job_.id());
    return code;
  }

 private:
  const std::vector<std::string> kSmallOps = {"gaussian:ksize=5", "invert"};
  const std::vector<std::string> kLongOps = {"bilateral:d=15,sigma_color=50,sigma_space=9"};

  bool More() const { return absl::Now() < deadline_; }
  void Error(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (errors_.size() < 20)
      errors_.push_back(what);
    else
      errors_.back() = absl::StrCat("... and more: ", what);
  }

  // Client `c`: small path jobs one after another, to a file and kept in memory in turn.
  void SmallJobs(int c) {
    client::Client client(flags_.server);  // a connection of its own
    while (More()) {
      const int n = next_job_++;
      if (n >= flags_.jobs) return;
      const bool to_file = n % 2 == 0;
      const std::string output = to_file ? absl::StrCat("load_out_", c, ".tif") : "";
      const absl::Time t0 = absl::Now();
      absl::StatusOr<v1::Job> job = client.Submit(PathJob("load_small.tif", kSmallOps, output));
      if (job.ok()) job = client.Watch(job->id(), nullptr);
      if (!job.ok()) {
        Error(absl::StrCat("small job: ", job.status().ToString()));
        continue;
      }
      if (job->state() != v1::JOB_STATE_SUCCEEDED) {
        Error(absl::StrCat("small job ", job->id(), ": ", job->error().message()));
        continue;
      }
      absl::StatusOr<core::Stack> result =
          to_file ? core::ReadTiff(flags_.data_root + "/" + output) : client.Download(job->id());
      const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
      if (!result.ok() || std::memcmp(result->data(), expected_.data(), expected_.size_bytes())) {
        Error(absl::StrCat("small job ", job->id(), ": result differs from the core's"));
        continue;
      }
      if (!to_file) {
        if (absl::Status s = client.Delete(job->id()); !s.ok()) Error(s.ToString());
      }
      std::lock_guard lock(mutex_);
      (to_file ? file_latency_ : memory_latency_).push_back(seconds);
    }
  }

  // A streaming client: the small stack through ProcessStream, checked as it comes back.
  void Streams() {
    client::Client client(flags_.server);
    client::Client::StreamSource source;
    source.shape = small_.shape();
    source.type = small_.pixel_type();
    source.read_slice = [&](int64_t z, uint8_t* dst) {
      std::memcpy(dst, small_.slice_data(z), small_.slice_bytes());
      return absl::OkStatus();
    };
    while (More()) {
      CheckingSink sink(expected_);
      const absl::Time t0 = absl::Now();
      absl::StatusOr<v1::Job> job = client.ProcessStream(source, stream_ops_, sink, nullptr);
      if (!job.ok() || job->state() != v1::JOB_STATE_SUCCEEDED) {
        Error(
            absl::StrCat("stream: ", job.ok() ? job->error().message() : job.status().ToString()));
        continue;
      }
      std::lock_guard lock(mutex_);
      stream_latency_.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
    }
  }

  // Prints what was measured; 0 when every job succeeded, the long job progressed and the
  // server's RSS stayed within the bound.
  int Report(double wall) {
    const v1::Job long_now = Check(control_.Get(long_job_.id()));
    const size_t small_jobs = file_latency_.size() + memory_latency_.size();
    std::vector<double> all = file_latency_;
    all.insert(all.end(), memory_latency_.begin(), memory_latency_.end());
    absl::PrintF("stackproc-load: %d clients, %d streams, %.1f s, long job %s (%s)\n",
                 flags_.clients, flags_.streams, wall, long_job_.id(), kLongOps[0]);
    absl::PrintF(
        "small path jobs     %5zu done  %6.1f jobs/s  latency p50 %.3f s  p99 %.3f s  max %.3f s\n",
        small_jobs, small_jobs / wall, Percentile(all, 0.5), Percentile(all, 0.99),
        Percentile(all, 1.0));
    absl::PrintF("  to a file         %5zu       p50 %.3f s  p99 %.3f s\n", file_latency_.size(),
                 Percentile(file_latency_, 0.5), Percentile(file_latency_, 0.99));
    absl::PrintF("  in memory + read  %5zu       p50 %.3f s  p99 %.3f s\n", memory_latency_.size(),
                 Percentile(memory_latency_, 0.5), Percentile(memory_latency_, 0.99));
    absl::PrintF("streamed jobs       %5zu done  %6.1f jobs/s  latency p50 %.3f s  p99 %.3f s\n",
                 stream_latency_.size(), stream_latency_.size() / wall,
                 Percentile(stream_latency_, 0.5), Percentile(stream_latency_, 0.99));
    std::vector<double> rss_mib;
    for (uint64_t k : rss_kib_) rss_mib.push_back(static_cast<double>(k) / 1024);
    std::string over_time;
    const size_t step = std::max<size_t>(1, rss_mib.size() / 10);
    for (size_t i = 0; i < rss_mib.size(); i += step)
      absl::StrAppendFormat(&over_time, " %.0f", rss_mib[i]);
    absl::PrintF(
        "server RSS MiB      first %.0f  median %.0f  max %.0f  last %.0f  (over time:%s)\n",
        rss_mib.empty() ? 0 : rss_mib.front(), Percentile(rss_mib, 0.5), Percentile(rss_mib, 1.0),
        rss_mib.empty() ? 0 : rss_mib.back(), over_time);
    const int64_t first_done = long_done_.empty() ? 0 : long_done_.front();
    const int64_t last_done = long_done_.empty() ? 0 : long_done_.back();
    absl::PrintF("long job            slices %lld -> %lld of %lld during the load (%s now)\n",
                 first_done, last_done, long_now.progress().slices_total(),
                 long_now.state() == v1::JOB_STATE_SUCCEEDED ? "succeeded"
                 : long_now.state() == v1::JOB_STATE_RUNNING ? "running"
                                                             : "not running");
    absl::PrintF("errors              %zu\n", errors_.size());
    for (const std::string& e : errors_) absl::PrintF("  %s\n", e);

    // The long job must have moved on while the load ran (or finished within it).
    const bool progressed = last_done > first_done || long_now.state() == v1::JOB_STATE_SUCCEEDED;
    if (!progressed) absl::PrintF("FAIL: the long job did not progress during the load\n");
    const bool bounded = flags_.max_rss_mib == 0 || Percentile(rss_mib, 1.0) <= flags_.max_rss_mib;
    if (!bounded) absl::PrintF("FAIL: the server's RSS exceeded %.0f MiB\n", flags_.max_rss_mib);
    return errors_.empty() && progressed && bounded && small_jobs > 0 ? 0 : 1;
  }

  const Flags flags_;
  client::Client control_{flags_.server};
  core::Stack small_, expected_;
  std::vector<v1::OpSpec> stream_ops_;
  v1::Job long_job_;
  absl::Time start_, deadline_;
  std::atomic<int> next_job_{0};
  std::mutex mutex_;
  std::vector<double> file_latency_, memory_latency_, stream_latency_;
  std::vector<std::string> errors_;
  std::vector<uint64_t> rss_kib_;  // the sampler's
  std::vector<int64_t> long_done_;
};

int Main(int argc, char** argv) {
  core::KeepMessageBuffersInTheHeap();
  Load load(ParseFlags(argc, argv));
  load.Prepare();
  return load.Run();
}

}  // namespace
}  // namespace stackproc

int main(int argc, char** argv) { return stackproc::Main(argc, argv); }
