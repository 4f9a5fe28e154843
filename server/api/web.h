// The server's web page (stackprocd --http-listen): a live view of the jobs, the queue and
// the memory, cancel, and previews of finished outputs; and the JSON it reads.
//
//   GET  /                        the page (HTML, CSS and JavaScript in the binary)
//   GET  /api/status              ServerStatus (service.proto) in protobuf's JSON mapping
//   POST /api/jobs/ID/cancel      cancels the job; its Job, as JSON (with "X-Stackproc: 1", which
//                                 no other site's form can send: 403 without)
//   GET  /api/jobs/ID/preview.png a montage of a few slices of the job's output file
//
// With tokens every /api call carries "Authorization: Bearer TOKEN" (401 without), and a
// caller sees only its jobs unless it is an admin; the page asks for the token.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/api/auth.h"
#include "server/jobs/job_manager.h"

namespace httplib {
class Server;
}

namespace stackproc::server {

struct WebOptions {
  std::string listen;  // HOST:PORT (port 0 picks one)
  const TokenAuth* tokens = nullptr;
  // HTTPS with these PEM files (the gRPC port's); empty: HTTP.
  std::string tls_cert, tls_key;
};

class WebServer {
 public:
  static absl::StatusOr<std::unique_ptr<WebServer>> Start(const WebOptions& options,
                                                          JobManager& jobs);
  ~WebServer();  // stops serving

  int port() const { return port_; }

 private:
  WebServer() = default;
  void Routes(JobManager& jobs, const TokenAuth* tokens);

  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace stackproc::server
