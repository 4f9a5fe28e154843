// A typed client for stackprocd. The stackproc CLI is a thin layer over it; pipelines can embed
// it. Thread-compatible; each call blocks until its RPC ends.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/stack/stack.h"
#include "core/tiff/tiff_writer.h"
#include "stackproc/v1/service.grpc.pb.h"

namespace stackproc::client {

namespace v1 = ::stackproc::v1;

// gRPC -> absl status, same code and message.
absl::Status ToAbslStatus(const grpc::Status& status);

// "gaussian:ksize=5,sigma=1" -> OpSpec. InvalidArgument for a malformed text.
absl::StatusOr<v1::OpSpec> ParseOpText(const std::string& text);

// A path job's SubmitJob request: `input` through `ops` (ParseOpText's) into `output`, replaced
// when `overwrite` (empty: the result kept in memory). InvalidArgument for a malformed op.
absl::StatusOr<v1::SubmitJobRequest> PathJobRequest(const std::string& input,
                                                    const std::vector<std::string>& ops,
                                                    const std::string& output,
                                                    bool overwrite = false);

// Whether a gRPC target (HOST:PORT, or a URI: dns:, ipv4:, ipv6:, unix:) is this machine:
// localhost, a loopback address or a unix socket.
bool IsLocalTarget(std::string target);

struct ClientOptions {
  // When not empty, goes with every call ("authorization: Bearer TOKEN"; stackprocd
  // --auth-token-file).
  std::string token;
  // TLS: the PEM file of the CA that signed the server's certificate (empty: plaintext), and
  // for a server that wants mutual TLS the client's PEM certificate and key.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
};

class Client {
 public:
  // `target` is HOST:PORT. Connects lazily: errors surface on the first call.
  explicit Client(const std::string& target, std::string token = "");
  // With TLS: InvalidArgument when a PEM file cannot be read.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const std::string& target,
                                                        const ClientOptions& options);

  absl::StatusOr<v1::Job> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<std::vector<v1::Job>> List();
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  // Ends the long calls in flight (ProcessStream, Watch, ReadResult) and every later one with
  // Cancelled: a streamed job is cancelled (CancelJob: else the server would keep it for a
  // resume), its call ends, and its local output is never completed. Thread-safe (the CLI
  // calls it from its signal thread).
  void CancelCalls();
  // Called when a streamed job's call broke and is about to be resumed after `wait`.
  void SetOnResume(
      std::function<void(const std::string& job_id, const absl::Status& why, absl::Duration wait)>
          on_resume) {
    on_resume_ = std::move(on_resume);
  }
  absl::Status Delete(const std::string& job_id);
  absl::StatusOr<v1::Job> Resume(const std::string& job_id);
  absl::StatusOr<std::vector<v1::OperationDescriptor>> ListOperations();
  // The server's version, limits, chunk and message sizes and formats.
  absl::StatusOr<v1::GetServerInfoResponse> ServerInfo();

  // Follows a job until its final state, calling `on_update` for every event; returns the last
  // snapshot. A dropped connection is re-attached (up to `reattach` times) without affecting the
  // job.
  absl::StatusOr<v1::Job> Watch(const std::string& job_id,
                                const std::function<void(const v1::Job&)>& on_update,
                                int reattach = 3);

  // Downloads an in-memory result into a stack (with its metadata), resuming where a broken
  // stream stopped.
  absl::StatusOr<core::Stack> Download(const std::string& job_id);

  // A streamed job (ProcessStream). The source supplies input slices in order as the upload
  // needs them; the sink gets the result's header and then its slices in order as they arrive.
  // The upload runs on a second thread beside the download. Returns the finished job.
  struct StreamSource {
    core::StackShape shape;
    core::PixelType type = core::PixelType::kUint8;
    core::StackMetadata metadata;
    std::string name;  // the input's, for the result's record (StreamHeader.name)
    std::function<absl::Status(int64_t z, uint8_t* dst)> read_slice;
    // How the chunks travel both ways (WireCompressionFor chooses).
    v1::WireCompression wire_compression = v1::WIRE_COMPRESSION_NONE;
  };
  class StreamSink {
   public:
    virtual ~StreamSink() = default;
    virtual absl::Status Begin(const core::StackShape& shape, core::PixelType type,
                               const core::StackMetadata& metadata) = 0;
    // Slice z of the result, z = 0, 1, ... (from the ResumePoint's slice on) in order.
    virtual absl::Status Slice(int64_t z, const uint8_t* data) = 0;
    // The server has the job and would keep it for `grace_seconds` for a resume by
    // `resume_token` if the call broke (before Begin; not on a server without resumes).
    virtual void Attached(const std::string& job_id, const std::string& resume_token,
                          int64_t grace_seconds) {
      (void)job_id;
      (void)resume_token;
      (void)grace_seconds;
    }
  };
  // A streamed job that another process started (it ended, its output kept to this slice): taken
  // up by its resume token, the results from `result_slice` on.
  struct ResumePoint {
    std::string job_id;
    std::string resume_token;
    int64_t result_slice = 0;
  };
  // The wire compression for a streamed job: `asked`, when the server takes it (else
  // InvalidArgument); with nothing asked ("auto"), lz4 when the server takes it and is not on
  // this machine (a loopback or unix-socket target), where the link, not the CPU, is the bound.
  absl::StatusOr<v1::WireCompression> WireCompressionFor(std::optional<v1::WireCompression> asked);
  // What a streamed job has moved so far each way: pixel bytes, and the bytes they took on the
  // wire (fewer with wire compression). Counted as chunks go and come; read from any thread.
  struct WireCounts {
    v1::WireCompression compression = v1::WIRE_COMPRESSION_NONE;  // set before the call
    std::atomic<int64_t> sent{0}, sent_wire{0}, received{0}, received_wire{0};
  };
  absl::StatusOr<v1::Job> ProcessStream(const StreamSource& source,
                                        const std::vector<v1::OpSpec>& ops, StreamSink& sink,
                                        const std::function<void(const v1::Job&)>& on_update,
                                        WireCounts* counts = nullptr,
                                        const ResumePoint* resume = nullptr);

  // ProcessStream from a local stack to a local output: reads `input_path` slice by slice and
  // writes the result to `output_path` as it arrives (a temporary file renamed when the job has
  // succeeded; metadata as the server updated it). Memory: about one input and one output
  // slice. Any failure leaves no file at `output_path`. A TIFF output can be taken up by a later
  // process (resume_job) when this one ends before the job: its temporary file stays, and its
  // record (resume_record.h) says how far it got.
  struct ProcessOptions {
    std::string input_path;
    std::string output_path;
    std::vector<v1::OpSpec> ops;
    std::vector<int64_t> channels;  // only these are sent, in this order; empty: all
    core::WriteOptions write;       // compression, overwrite
    std::optional<v1::WireCompression> wire_compression;  // unset: auto (WireCompressionFor)
    std::function<void(const v1::Job&)> on_update;
    WireCounts* counts = nullptr;  // when set: what went each way, and the compression chosen
    // Where the job's resume record is kept while it runs (ResumeFolder; empty: nowhere).
    std::string resume_folder;
    // When set: takes up this job, which an earlier process started and recorded in
    // resume_folder, instead of starting one (the input, output, channels and write options are
    // the record's; ops are not sent again). NotFound when there is no such record;
    // FailedPrecondition when the input changed, the machine restarted, or the job is gone.
    std::string resume_job;
  };
  absl::StatusOr<v1::Job> Process(const ProcessOptions& options);

  // A preview: its info, then the montage's bytes (PNG) or the raw stacks (RAW: the input's
  // slices first, then each variant's result).
  struct PreviewResult {
    v1::PreviewInfo info;
    std::string png;
    std::vector<core::Stack> stacks;
  };
  absl::StatusOr<PreviewResult> Preview(const v1::PreviewRequest& request);

  // Whether the server's health service reports SERVING.
  absl::StatusOr<bool> Healthy();

 private:
  // The contexts of the long calls in flight, for CancelCalls.
  struct Calls {
    std::mutex mutex;
    std::set<grpc::ClientContext*> active;
    std::map<grpc::ClientContext*, std::string> streamed;  // their streamed jobs
    std::set<grpc::ClientContext*> job_unknown;            // streamed, the job's id not known yet
    std::condition_variable changed;                       // of streamed or job_unknown
    bool cancelled = false;
  };
  // While alive, CancelCalls cancels the call of `context` (at once, if it came first), and
  // the streamed job it carries, once it is known.
  class CallGuard {
   public:
    CallGuard(Calls& calls, grpc::ClientContext& context) : calls_(calls), context_(context) {
      std::lock_guard lock(calls_.mutex);
      if (calls_.cancelled) context_.TryCancel();
      calls_.active.insert(&context_);
    }
    ~CallGuard() {
      std::lock_guard lock(calls_.mutex);
      calls_.active.erase(&context_);
      calls_.streamed.erase(&context_);
      calls_.job_unknown.erase(&context_);
      calls_.changed.notify_all();
    }
    // The call carries a streamed job: its id is not known yet / is `job_id`.
    void AwaitsJob() {
      std::lock_guard lock(calls_.mutex);
      calls_.job_unknown.insert(&context_);
    }
    void Streamed(const std::string& job_id) {
      std::lock_guard lock(calls_.mutex);
      calls_.streamed[&context_] = job_id;
      calls_.job_unknown.erase(&context_);
      calls_.changed.notify_all();
    }
    bool cancelled() {
      std::lock_guard lock(calls_.mutex);
      return calls_.cancelled;
    }

   private:
    Calls& calls_;
    grpc::ClientContext& context_;
  };

  Client(std::string target, std::shared_ptr<grpc::Channel> channel, std::string token);
  // CancelJob for a streamed job this client gives up on (a moment at most; errors ignored).
  void CancelStreamedJob(const std::string& job_id);
  // Waits `wait`, or less when CancelCalls comes: whether it came.
  bool WaitUnlessCancelled(absl::Duration wait);
  // Every call's context: the token.
  void Prepare(grpc::ClientContext& context) const;
  // A unary call of the stub's `method` with this client's metadata: its response, or its status.
  template <typename Response, typename Request, typename Method>
  absl::StatusOr<Response> Unary(Method method, const Request& request);

  Calls calls_;
  std::function<void(const std::string&, const absl::Status&, absl::Duration)> on_resume_;
  std::string target_;
  std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::StackProcessor::Stub> stub_;
};

}  // namespace stackproc::client
