#include "server/api/web.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <sys/socket.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/process/preview.h"
#include "server/api/listen_address.h"
#include "server/api/proto_convert.h"

namespace stackproc::server {

extern const char kWebPage[];  // web/index.html, made part of the binary by CMake

namespace {

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;  // 0 jobs queued is said, not left out
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// An error as the API's code would say it, in JSON: {"code": 5, "message": "..."}.
void Fail(httplib::Response& response, const absl::Status& status) {
  static const std::map<absl::StatusCode, int> kHttp = {
      {absl::StatusCode::kUnauthenticated, 401}, {absl::StatusCode::kPermissionDenied, 403},
      {absl::StatusCode::kNotFound, 404},        {absl::StatusCode::kFailedPrecondition, 409},
      {absl::StatusCode::kInvalidArgument, 400}, {absl::StatusCode::kResourceExhausted, 429}};
  const auto http = kHttp.find(status.code());
  response.status = http == kHttp.end() ? 500 : http->second;
  v1::JobError error;
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
  response.set_content(Json(error), "application/json");
}

// The caller of a request: by its bearer token when there are tokens, else the one anonymous
// admin.
absl::StatusOr<Caller> CallerOf(const httplib::Request& request, const TokenAuth* tokens) {
  if (tokens == nullptr) return Caller{};
  if (!request.has_header("Authorization")) {
    return absl::UnauthenticatedError("this server needs a token");
  }
  return tokens->AuthenticateHeader(request.get_header_value("Authorization"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WebServer>> WebServer::Start(const WebOptions& options,
                                                            JobManager& jobs) {
  auto web = std::unique_ptr<WebServer>(new WebServer);
  if (options.tls_cert.empty()) {
    web->http_ = std::make_unique<httplib::Server>();
  } else {
    web->http_ =
        std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
  }
  if (!web->http_->is_valid()) {
    return absl::InvalidArgumentError("--http-listen: cannot use the TLS certificate and key");
  }
  web->Routes(jobs, options.tokens);
  // What httplib refuses itself (an unknown page; a POST without Content-Length, which curl -X
  // POST sends) gets the API's JSON error too, not an empty body.
  web->http_->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    const int status = response.status;
    const std::string what = absl::StrCat("HTTP ", status);
    Fail(response,
         status == 404 ? absl::NotFoundError(absl::StrCat("no page ", request.path))
         : status == 400 && request.method == "POST" && !request.has_header("Content-Length")
             ? absl::InvalidArgumentError("a POST needs a body or Content-Length: 0 (curl: -d '')")
         : status == 413 ? absl::ResourceExhaustedError(what)
         : status >= 500 ? absl::InternalError(what)
                         : absl::InvalidArgumentError(what));
    response.status = status;
  });
  STACKPROC_ASSIGN_OR_RETURN(const HostPort address, ParseHostPort("http-listen", options.listen));
  // httplib's default sets SO_REUSEPORT, which lets a second server share a taken port.
  web->http_->set_socket_options([](int socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  web->port_ = address.port == 0 ? web->http_->bind_to_any_port(address.host) : address.port;
  if (web->port_ < 0 ||
      (address.port != 0 && !web->http_->bind_to_port(address.host, address.port))) {
    return ListenFailed("http-listen", options.listen);
  }
  httplib::Server* http = web->http_.get();
  web->thread_ = std::thread([http] { http->listen_after_bind(); });
  return web;
}

WebServer::~WebServer() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void WebServer::Routes(JobManager& jobs, const TokenAuth* tokens) {
  http_->Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(kWebPage, "text/html; charset=utf-8");
  });
  http_->Get("/api/status",
             [&jobs, tokens](const httplib::Request& request, httplib::Response& response) {
               absl::StatusOr<Caller> caller = CallerOf(request, tokens);
               if (!caller.ok()) return Fail(response, caller.status());
               v1::ServerStatus status;
               for (const std::shared_ptr<Job>& job : jobs.List()) {
                 JobSnapshot snapshot = job->Snapshot();
                 if (caller->Sees(snapshot.spec.owner)) ToProto(snapshot, status.add_jobs());
               }
               // The whole server's, counted as /metrics counts them.
               Metrics::JobCounts counts = jobs.Counts();
               status.set_queued(counts.by_state[JobState::kQueued]);
               status.set_running(counts.by_state[JobState::kRunning]);
               status.set_memory_in_use_bytes(static_cast<int64_t>(jobs.memory_in_use()));
               status.set_memory_budget_bytes(static_cast<int64_t>(jobs.memory_budget()));
               status.set_version(STACKPROC_VERSION);
               response.set_header("Cache-Control", "no-store");
               response.set_content(Json(status), "application/json");
             });
  // The job `id` as the caller may see it (NotFound as for an unknown id otherwise).
  auto find = [&jobs, tokens](const httplib::Request& request,
                              const std::string& id) -> absl::StatusOr<std::shared_ptr<Job>> {
    absl::StatusOr<Caller> caller = CallerOf(request, tokens);
    if (!caller.ok()) return caller.status();
    return jobs.Get(id, *caller);
  };
  http_->Post(R"(/api/jobs/([0-9a-z]+)/cancel)", [&jobs, find](const httplib::Request& request,
                                                               httplib::Response& response) {
    // Only the page's script sets this header: a form another site posts to
    // this address (from a browser on this machine) cannot, nor can its script
    // without the browser asking this server first (which it does not answer).
    if (request.get_header_value("X-Stackproc") != "1") {
      return Fail(response, absl::PermissionDeniedError("a cancel carries X-Stackproc: 1"));
    }
    const std::string id = request.matches[1];
    absl::StatusOr<std::shared_ptr<Job>> job = find(request, id);
    if (job.ok()) job = jobs.Cancel(id);
    if (!job.ok()) return Fail(response, job.status());
    v1::Job out;
    ToProto((*job)->Snapshot(), &out);
    response.set_content(Json(out), "application/json");
  });
  http_->Get(R"(/api/jobs/([0-9a-z]+)/preview.png)", [&jobs, find](const httplib::Request& request,
                                                                   httplib::Response& response) {
    absl::StatusOr<std::shared_ptr<Job>> job = find(request, request.matches[1]);
    if (!job.ok()) return Fail(response, job.status());
    const JobSnapshot snapshot = (*job)->Snapshot();
    if (snapshot.state != JobState::kSucceeded || !snapshot.spec.output_path) {
      return Fail(response, absl::FailedPreconditionError(
                                "a preview shows the output file of a job that succeeded"));
    }
    core::PreviewRequest preview;
    preview.input = *snapshot.spec.output_path;
    preview.title = absl::StrCat("job ", snapshot.id, " output");
    absl::StatusOr<core::Preview> made =
        core::RunPreview(jobs.resolver(), preview, jobs.options().limits);
    absl::StatusOr<std::string> png =
        made.ok() ? core::MontagePng(*made, 256) : absl::StatusOr<std::string>(made.status());
    if (!png.ok()) return Fail(response, png.status());
    response.set_content(*png, "image/png");
  });
}

}  // namespace stackproc::server
